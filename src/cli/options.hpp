// The option tables of the hp commands: every option's name, kind, default, range, help text
// and group, in one place. The parser checks values against them, --help is generated from
// them and each command fills its typed options from them once (docs/cli.md lists the same).
// Header-only so that the YAML config fuzz target reads configs against hp train's own table.
// Not the meaning of the options: each command's reader (read_job, ...) applies them.
#pragma once
#include <cstdio>
#include <string>

#include "cli/args.hpp"
#include "cli/generate.hpp"

namespace hp::cli {

// A number as its option's default: 0.8, 1e-08.
inline std::string default_number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// --devices and --strategy: which world runs the step, and how it is cut.
inline OptionGroup devices_group() {
  return {"Devices",
          {{.name = "devices",
            .meta = "threads:N|mpi",
            .computed = "one device",
            .help = "N ranks as threads of this process (at most 256), or one rank per process "
                    "under mpirun"},
           {.name = "strategy",
            .meta = "FILE|PRESET",
            .computed = "dpN",
            .help = "a strategy file or a preset (dp2, fsdp4, tp2, dp2xtp2, ...)"}}};
}

// The offload options over a YAML `offload:` map (hp::memory's keys; see docs/offload.md).
inline OptionGroup offload_group() {
  return {"Memory (offload; per rank on a mesh)",
          {{.name = "device-memory",
            .kind = Kind::kBudget,
            .meta = "SIZE|P%",
            .computed = "unlimited",
            .help = "the offload budget: bytes (512MiB, > 0) or a share of the unconstrained peak "
                    "(25%)"},
           {.name = "host-memory",
            .kind = Kind::kBytes,
            .meta = "SIZE",
            .computed = "unlimited",
            .help = "host tier budget"},
           {.name = "optimizer-state",
            .kind = Kind::kEnum,
            .computed = "device, host under a budget",
            .choices = {"device", "host", "disk"},
            .help = "where AdamW's moments live"},
           {.name = "offload-dir",
            .meta = "DIR",
            .computed = "offload",
            .help = "directory of the disk tier"}}};
}

inline const Command& train_command() {
  static const Command c{
      "hp train [options]",
      "Trains a GPT-2 or Llama model. With neither --config nor --model, runs the embedded "
      "default job\n(examples/train_kjv.yaml). Every valued option is also a key of the YAML "
      "config (resume: for\n--resume-mode, offload: for a map of offload keys); options given "
      "here override the file.",
      {{"Job",
        {{.name = "config", .meta = "FILE.yaml", .help = "the job as a YAML config"},
         {.name = "model",
          .meta = "NAME|CONFIG.json|DIR",
          .dflt = "gpt2-kjv",
          .help = "built-in (gpt2-kjv, gpt2-tiny, gpt2-124m, llama-kjv), a HF config.json, or a "
                  "directory holding one"},
         {.name = "init",
          .meta = "W.safetensors",
          .computed = "fresh init",
          .help = "initial weights with HF names"},
         {.name = "data",
          .meta = "kjv|random|PATH",
          .dflt = "kjv",
          .help = "the KJV text, uniform random tokens, or a file"},
         {.name = "data-format",
          .kind = Kind::kEnum,
          .dflt = "text",
          .choices = {"text", "u16", "u32"},
          .help = "bytes as tokens, or a flat little-endian token file"},
         {.name = "steps",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "100",
          .min = 0,
          .help = "optimizer steps, resumed ones included"},
         {.name = "seed",
          .kind = Kind::kInt,
          .meta = "S",
          .dflt = "1",
          .min = 0,
          .help = "initialisation and data order"},
         {.name = "json",
          .kind = Kind::kFlag,
          .help = "one JSON record per step on stdout; the human lines go to stderr"}}},
       {"Batch",
        {{.name = "batch",
          .kind = Kind::kInt,
          .meta = "B",
          .dflt = "8",
          .min = 1,
          .help = "micro-batch size (the global batch on a mesh)"},
         {.name = "seq",
          .kind = Kind::kInt,
          .meta = "T",
          .computed = "128 or the model's positions if fewer",
          .min = 1,
          .help = "sequence length"},
         {.name = "grad-accum",
          .kind = Kind::kInt,
          .meta = "M",
          .dflt = "1",
          .min = 1,
          .help = "micro-batches per optimizer step"},
         {.name = "threads",
          .kind = Kind::kInt,
          .meta = "K",
          .computed = "the cores shared among the ranks of the process",
          .min = 1,
          .help = "CPU threads of the kernels, per rank"}}},
       {"Optimizer (AdamW, linear warm-up then cosine decay to lr * min-lr-ratio)",
        {{.name = "lr", .kind = Kind::kFloat, .dflt = "3e-4", .min = 0, .help = "peak rate"},
         {.name = "warmup",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "0",
          .min = 0,
          .help = "warm-up steps"},
         {.name = "min-lr-ratio",
          .kind = Kind::kFloat,
          .dflt = "0.1",
          .min = 0,
          .max = 1,
          .help = "final rate over peak rate"},
         {.name = "beta1", .kind = Kind::kFloat, .dflt = "0.9", .min = 0, .max = 1},
         {.name = "beta2", .kind = Kind::kFloat, .dflt = "0.95", .min = 0, .max = 1},
         {.name = "eps", .kind = Kind::kFloat, .dflt = "1e-8", .min = 0},
         {.name = "weight-decay",
          .kind = Kind::kFloat,
          .dflt = "0.1",
          .min = 0,
          .help = "on parameters of 2 or more dims"},
         {.name = "clip",
          .kind = Kind::kFloat,
          .dflt = "1.0",
          .min = 0,
          .help = "global grad-norm clipping (0: off)"}}},
       {"Validation",
        {{.name = "val-fraction",
          .kind = Kind::kFloat,
          .meta = "F",
          .dflt = "0.05",
          .min = 0,
          .max = 1,
          .help = "share of the data held out, below 1"},
         {.name = "val-every",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "0",
          .min = 0,
          .help = "steps between validations (0: none)"},
         {.name = "val-batches",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = "4",
          .min = 1,
          .help = "batches per validation"}}},
       {"Checkpoints and output",
        {{.name = "ckpt-dir",
          .meta = "DIR",
          .computed = "none",
          .help = "checkpoints (also written at the end and on Ctrl-C)"},
         {.name = "ckpt-every",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "0",
          .min = 0,
          .help = "steps between checkpoints (0: only at the end)"},
         {.name = "keep",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = "3",
          .min = 0,
          .help = "checkpoints kept (0: all)"},
         {.name = "ckpt-format",
          .kind = Kind::kEnum,
          .dflt = "sharded",
          .choices = {"sharded", "single"},
          .help = "sharded: each rank writes its pieces; single: gathered to rank 0"},
         {.name = "ckpt-mode",
          .kind = Kind::kEnum,
          .dflt = "async",
          .choices = {"async", "sync"},
          .help = "async: training goes on while shards are written"},
         {.name = "resume", .kind = Kind::kFlag, .help = "continue from the latest checkpoint"},
         {.name = "no-resume",
          .kind = Kind::kFlag,
          .help = "start afresh whatever the config says"},
         {.name = "resume-mode",
          .kind = Kind::kEnum,
          .dflt = "false",
          .choices = {"false", "true", "auto"},
          .help = "auto: resume when a checkpoint exists"},
         {.name = "log-every",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "10",
          .min = 1,
          .help = "progress line cadence (a TTY gets a live line)"},
         {.name = "sample-tokens",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "0",
          .min = 0,
          .help = "bytes of sample text printed at the end"}}},
       offload_group(),
       devices_group()}};
  return c;
}

inline const Command& check_command() {
  static const Command c{
      "hp check DIR [options]",
      "Replays the reference case in DIR (case.json) and compares everything in its expected "
      "file.",
      {{"Run",
        {{.name = "threads",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = "1",
          .min = 1,
          .help = "CPU threads of the kernels, per rank"},
         {.name = "steps",
          .kind = Kind::kInt,
          .meta = "N",
          .computed = "the case's",
          .min = 1,
          .help = "steps to replay (the case's when comparing)"}}},
       devices_group(),
       offload_group()}};
  return c;
}

inline const Command& plan_command() {
  static const Command c{
      "hp plan --model NAME|CONFIG (--strategy FILE|PRESET | --device-memory SIZE|P%) [options]",
      "Plans a training step without running it: on a mesh, the layouts, collectives and memory "
      "of each\nrank; on one device under offload, the offload plan.",
      {{"Step",
        {{.name = "model",
          .meta = "NAME|CONFIG.json|DIR",
          .dflt = "gpt2-tiny",
          .help = "built-in, a HF config.json, or a directory holding one"},
         {.name = "batch", .kind = Kind::kInt, .meta = "B", .dflt = "8", .min = 1},
         {.name = "seq",
          .kind = Kind::kInt,
          .meta = "T",
          .computed = "128 or the model's positions if fewer",
          .min = 1},
         {.name = "threads",
          .kind = Kind::kInt,
          .meta = "K",
          .computed = "all cores",
          .min = 1,
          .help = "threads per device, as hp train runs (sizes the kernels' workspace)"},
         {.name = "explain",
          .kind = Kind::kFlag,
          .help = "every value's layout, or the offload plan's memory timeline and transfers"}}},
       devices_group(),
       offload_group()}};
  return c;
}

inline const Command& generate_command() {
  static const SampleOptions d;
  static const Command c{
      "hp generate --ckpt DIR [options]",
      "Samples text from a checkpoint: DIR is a checkpoint directory (its latest) or one\nstep-<N> "
      "inside it.",
      {{"Sampling",
        {{.name = "ckpt", .meta = "DIR", .required = true, .help = "the checkpoint"},
         {.name = "prompt", .meta = "TEXT", .dflt = "And God said"},
         {.name = "tokens",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = std::to_string(d.tokens),
          .min = 0,
          .help = "bytes to generate"},
         {.name = "temperature",
          .kind = Kind::kFloat,
          .meta = "T",
          .dflt = default_number(d.temperature),
          .min = 0,
          .help = "0: greedy"},
         {.name = "top-k",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = std::to_string(d.top_k),
          .min = 0,
          .help = "0: all"},
         {.name = "seed",
          .kind = Kind::kInt,
          .meta = "S",
          .dflt = std::to_string(d.seed),
          .min = 0},
         {.name = "threads",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = std::to_string(d.threads),
          .min = 1}}}}};
  return c;
}

inline const Command& ckpt_command() {
  static const Command c{
      "hp ckpt info|export|import PATH [options]",
      "Sharded checkpoints. info DIR: tensors, shapes, boxes, sizes, step and strategy of DIR (a\n"
      "checkpoint directory: its latest; or one step-<N>), every checksum verified. export DIR\n"
      "--to FILE: one safetensors file of the model with Hugging Face names and shapes. import\n"
      "HF_DIR --to DIR: a Hugging Face model (config.json with model.safetensors, or sharded\n"
      "model-*-of-*.safetensors and model.safetensors.index.json) as a step-0 checkpoint.",
      {{"Tools",
        {{.name = "to",
          .meta = "PATH",
          .computed = "none",
          .help = "export: the safetensors file; import: the checkpoint directory"}}}}};
  return c;
}

// A positive integer option of the benchmarks.
inline Option bench_int(const char* name, const char* dflt, const char* help = "") {
  return {.name = name, .kind = Kind::kInt, .meta = "N", .dflt = dflt, .min = 1, .help = help};
}

inline const Command& bench_spmd_command() {
  static const Command c{
      "hp bench spmd [options]",
      "One GPT-2 step on one device with --threads threads against dpN, tpN and tpN+sp on "
      "threads:N\nwith --threads/N threads per rank, same global batch and data.",
      {{"Model",
        {bench_int("layers", "4"), bench_int("d", "256", "model width"), bench_int("heads", "4"),
         bench_int("vocab", "256")}},
       {"Run",
        {bench_int("seq", "128"),
         bench_int("batch", "8", "global batch"),
         bench_int("threads", "2", "threads of the one-device run, shared by the ranks"),
         {.name = "steps",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "8",
          .min = 2,
          .help = "steps per round, the first a warm-up"},
         {.name = "rounds",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "3",
          .min = 1,
          .help = "rounds, each running every row once in turn; a row reports its median step"},
         {.name = "devices", .meta = "threads:N", .dflt = "threads:2"}}}}};
  return c;
}

inline const Command& bench_offload_command() {
  static const Command c{
      "hp bench offload [options]",
      "GPT-2 training under no budget, 50% and 25% of the unconstrained peak, and optimizer "
      "state on disk.",
      {{"Model",
        {bench_int("layers", "12"), bench_int("d-model", "768"), bench_int("heads", "12"),
         bench_int("vocab", "50304")}},
       {"Run",
        {bench_int("seq", "128"),
         bench_int("batch", "2"),
         bench_int("steps", "3", "timed steps"),
         bench_int("threads", "2"),
         {.name = "offload-dir",
          .meta = "DIR",
          .dflt = "offload_bench",
          .help = "the disk tier (removed afterwards)"},
         {.name = "explain", .kind = Kind::kFlag, .help = "print each offload plan"}}}}};
  return c;
}

}  // namespace hp::cli
