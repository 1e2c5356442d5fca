// The option tables of the hp commands: every option's name, kind, default, range, help text
// and group, in one place. The parser checks values against them, --help is generated from
// them and each command fills its typed options from them once (docs/cli.md lists the same).
// Header-only so that the YAML config fuzz target reads configs against hp train's own table.
// Not the meaning of the options: each command's reader (read_job, ...) applies them.
#pragma once
#include <cstdio>
#include <limits>
#include <string>

#include "cli/args.hpp"
#include "cli/generate.hpp"
#include "hp/infer/engine.hpp"

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

// hp train's devices: --strategy also takes `auto` (the planner's choice on --cluster).
inline OptionGroup train_devices_group() {
  OptionGroup g = devices_group();
  g.options[1].help =
      "a strategy file, a preset (dp2, fsdp4, tp2, dp2xtp2, ...), or auto: the planner's best "
      "on --cluster for this job, printed before training (docs/planner.md)";
  g.options.push_back({.name = "cluster",
                       .meta = "local|FILE",
                       .computed = "local",
                       .help = "with --strategy auto: the cluster searched, hp calibrate's file by "
                               "default; its device count is --devices'"});
  return g;
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

// --ckpt, --model and --init: where hp generate and hp serve take the model from
// (model_source in generate.hpp).
// --tokenizer of generate and serve.
inline Option tokenizer_option() {
  return {.name = "tokenizer",
          .meta = "DIR|FILE",
          .computed = "bytes",
          .help =
              "a GPT-2 vocab.json + merges.txt directory or an HF tokenizer.json: prompts "
              "encoded and output decoded with it"};
}

// hp generate's and hp serve's device budget: what leaves the device and where it goes
// (docs/inference.md, "KV offload").
inline OptionGroup inference_offload_group() {
  return {"Device memory",
          {{.name = "device-memory",
            .meta = "SIZE|P%",
            .computed = "none",
            .help = "device budget (64MiB, or a share of what the whole cache needs); KV blocks "
                    "that do not fit go to the host"},
           {.name = "kv-offload",
            .kind = Kind::kEnum,
            .dflt = "auto",
            .choices = {"auto", "host", "direct", "disk", "none"},
            .help = "host: fetched per layer; direct: attended in the host tier; disk: fetched "
                    "per layer from a memory-mapped file in --offload-dir; none: all resident"},
           {.name = "offload-dir",
            .meta = "DIR",
            .computed = "the system's temporary directory",
            .help = "with --kv-offload disk: where the offloaded blocks' file goes (unlinked at "
                    "once: nothing is left there)"},
           {.name = "offload-weights",
            .kind = Kind::kFlag,
            .help = "weights may stay in the host tier too, read there: the gathered embedding "
                    "tables first, others only when the KV cannot fit even fully offloaded"}}};
}

// hp generate's devices: the model cut over tp, the requests over dp (docs/inference.md).
inline OptionGroup inference_devices_group() {
  OptionGroup g = devices_group();
  g.options[1].help =
      "a strategy file or preset over dp and tp (tp2, dp2, dp2xtp2): tp splits the weights, "
      "heads and KV pool, dp the requests";
  return g;
}

inline OptionGroup model_group() {
  return {"Model",
          {{.name = "ckpt",
            .meta = "DIR",
            .computed = "none",
            .help = "a checkpoint directory (its latest) or one step-<N> inside it"},
           {.name = "model",
            .meta = "CONFIG|NAME",
            .computed = "none",
            .help = "a built-in model or a HF config.json, instead of --ckpt"},
           {.name = "init",
            .meta = "FILE",
            .computed = "random weights (seed 1)",
            .help = "safetensors weights for --model"}}};
}

// An integer option with a default and a lower bound.
inline Option count_option(const char* name, int64_t dflt, int64_t min, const char* help) {
  return Option{.name = name,
                .kind = Kind::kInt,
                .meta = "N",
                .dflt = std::to_string(dflt),
                .min = double(min),
                .help = help};
}

// --block-tokens: unless given, infer::block_tokens_for the model.
inline Option block_tokens_option() {
  return Option{.name = "block-tokens",
                .kind = Kind::kInt,
                .meta = "N",
                .computed = "chosen per model",
                .min = 1,
                .help = "positions per KV pool block"};
}

// --threads: unless given, the cores of the process shared among the ranks it holds
// (threads_per_rank).
inline Option threads_option(const char* help) {
  return Option{.name = "threads",
                .kind = Kind::kInt,
                .meta = "K",
                .computed = "the cores shared among the ranks of the process",
                .min = 1,
                .help = help};
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
          .help = "built-in (gpt2-kjv, gpt2-tiny, gpt2-124m, llama-kjv, vlm-tiny), a HF "
                  "config.json, or a "
                  "directory holding one"},
         {.name = "init",
          .meta = "W.safetensors",
          .computed = "fresh init",
          .help = "initial weights with HF names"},
         {.name = "data",
          .meta = "kjv|random|images|PATH",
          .dflt = "kjv",
          .help = "the KJV text, uniform random tokens, a file, or (a vision-language model's "
                  "default) synthetic captioned images"},
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
         threads_option("CPU threads of the kernels, per rank")}},
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
          .help = "bytes of sample text printed at the end"},
         {.name = "trace",
          .meta = "FILE.json",
          .computed = "none",
          .help = "every rank's measured timeline of every step (pipeline actions, or the step's "
                  "program and optimizer), gathered to rank 0, as Chrome-trace JSON (Perfetto)"},
         {.name = "reorder-pipeline",
          .kind = Kind::kFlag,
          .help = "a pipeline strategy: after the second step, run the schedule's policy ordered "
                  "at that step's measured action times when the simulator finds it faster"}}},
       offload_group(),
       train_devices_group()}};
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
      "hp plan --model NAME|CONFIG (--strategy FILE|PRESET | --device-memory SIZE|P% | --cluster "
      "C) [options]",
      "Plans a training step without running it: on a mesh, the layouts, collectives and memory "
      "of each\nrank; on one device under offload, the offload plan. With --cluster, searches "
      "the strategies of\na cluster instead (--strategy, --micro-batch, --schedule, --recompute "
      "and --offload fix\nwhat they name) and predicts each one's step time and memory.",
      {{"Step",
        {{.name = "model",
          .meta = "NAME|CONFIG.json|DIR",
          .dflt = "gpt2-tiny",
          .help = "built-in, a HF config.json, or a directory holding one"},
         {.name = "batch", .kind = Kind::kInt, .meta = "B", .dflt = "8", .min = 1},
         {.name = "seq",
          .kind = Kind::kInt,
          .meta = "T",
          .computed = "128 or the model's positions if fewer; with --cluster, the model's "
                      "positions (less a vision model's image tokens)",
          .min = 1},
         {.name = "threads",
          .kind = Kind::kInt,
          .meta = "K",
          .computed = "all cores",
          .min = 1,
          .help = "threads per device, as hp train runs (sizes the kernels' workspace)"},
         {.name = "explain",
          .kind = Kind::kFlag,
          .help = "every value's layout, or the offload plan's memory timeline and transfers"},
         {.name = "timeline",
          .meta = "FILE.svg",
          .computed = "none",
          .help = "a pipeline strategy: its simulated timeline, one row per rank"},
         {.name = "profile",
          .kind = Kind::kFlag,
          .help = "a pipeline strategy: simulate with the costs of a profiling step run on "
                  "--devices (fresh weights, random tokens) instead of modelled costs"},
         {.name = "infer-context",
          .kind = Kind::kInt,
          .meta = "N",
          .computed = "none",
          .min = 1,
          .help = "plan inference instead: the KV offload of N positions under --device-memory"},
         {.name = "infer-batch",
          .kind = Kind::kInt,
          .meta = "B",
          .dflt = "1",
          .min = 1,
          .help = "with --infer-context: sequences decoded together"},
         {.name = "kv-offload",
          .kind = Kind::kEnum,
          .dflt = "auto",
          .choices = {"auto", "host", "direct", "disk", "none"},
          .help = "with --infer-context: as hp generate's"},
         {.name = "offload-weights",
          .kind = Kind::kFlag,
          .help = "with --infer-context: as hp generate's"}}},
       devices_group(),
       offload_group(),
       {"Planner (with --cluster: search strategies for a cluster; docs/planner.md)",
        {{.name = "cluster",
          .meta = "NAME[:N]|FILE",
          .computed = "none: plan the given strategy on threads",
          .help = "a preset (a100-selene, h100-dgx, gb200-nvl72, cloudmatrix384) with an optional "
                  "device count, local (this machine as hp calibrate measured it), or a cluster "
                  "YAML"},
         {.name = "global-batch",
          .kind = Kind::kInt,
          .meta = "B",
          .dflt = "512",
          .min = 1,
          .help = "sequences per optimizer step"},
         {.name = "micro-batch",
          .kind = Kind::kInt,
          .meta = "M",
          .computed = "searched",
          .min = 1,
          .help = "sequences per micro-batch"},
         {.name = "schedule",
          .meta = "S[,S...]",
          .computed = "searched",
          .help = "pipeline schedules to consider: gpipe, 1f1b, interleaved, zb-h1, zbv"},
         {.name = "recompute",
          .kind = Kind::kEnum,
          .computed = "searched",
          .choices = {"none", "selective", "full"},
          .help = "activation recomputation (full: whole blocks, how many is --recompute-blocks)"},
         {.name = "recompute-blocks",
          .meta = "N|all",
          .computed = "searched",
          .help = "with --recompute full: blocks recomputed per pipeline stage, as Megatron's "
                  "--recompute-num-layers; all: every block"},
         {.name = "offload",
          .kind = Kind::kEnum,
          .computed = "searched",
          .choices = {"on", "off", "optimizer", "activations", "all"},
          .help = "what lives on the host: on = optimizer state (activations searched), "
                  "optimizer, activations, all, off"},
         {.name = "top",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = "1",
          .min = 1,
          .help = "plans shown, best first"},
         {.name = "json", .kind = Kind::kFlag, .help = "one JSON record per plan on stdout"},
         {.name = "emit",
          .meta = "FILE.yaml",
          .computed = "none",
          .help = "write the best plan's strategy YAML"}}}}};
  return c;
}

inline const Command& generate_command() {
  static const SampleOptions d;
  static const infer::EngineOptions e;
  constexpr double inf = std::numeric_limits<double>::infinity();
  auto num = [](const char* name, const char* meta, double dflt, double min, double max,
                const char* help) {
    return Option{.name = name,
                  .kind = Kind::kFloat,
                  .meta = meta,
                  .dflt = default_number(dflt),
                  .min = min,
                  .max = max,
                  .help = help};
  };
  constexpr auto count = count_option;
  static const Command c{
      "hp generate (--ckpt DIR | --model CONFIG|NAME [--init W.safetensors])\n"
      "            (--prompt TEXT | --prompt-file F | --prompt-tokens N) [options]",
      "Generates tokens with a KV cache (docs/inference.md): prefill of each prompt in chunks, "
      "then\none decoded token per step for every running sequence (continuous batching).",
      {model_group(),
       {"Prompts",
        {{.name = "prompt", .meta = "TEXT", .dflt = "And God said"},
         tokenizer_option(),
         {.name = "prompt-file",
          .meta = "FILE",
          .computed = "none",
          .help = "the prompt's text; with --batch, one prompt per line"},
         {.name = "prompt-tokens",
          .kind = Kind::kInt,
          .meta = "N",
          .computed = "none",
          .min = 1,
          .help = "N seeded random token ids per sequence (benchmarks)"},
         count("batch", e.max_batch, 1, "sequences decoded together")}},
       {"Sampling",
        {count("tokens", d.tokens, 0, "tokens to generate per sequence"),
         num("temperature", "T", d.temperature, 0, inf, "0: greedy"),
         count("top-k", d.top_k, 0, "0: all"),
         num("top-p", "P", 1, 0, 1, "nucleus: the smallest set holding P, in (0, 1]"),
         num("min-p", "P", 0, 0, 1, "drop tokens below P x the top probability"),
         num("repetition-penalty", "R", 1, 0, inf, "> 0; 1: none (prompt and output tokens)"),
         num("presence-penalty", "X", 0, -inf, inf, "subtracted once per generated token id"),
         num("frequency-penalty", "X", 0, -inf, inf, "subtracted per occurrence"),
         {.name = "stop", .meta = "STR", .computed = "none", .help = "stop before this text"},
         {.name = "eos",
          .kind = Kind::kInt,
          .meta = "ID",
          .dflt = "-1",
          .min = -1,
          .help = "end-of-sequence token id; -1: none"},
         {.name = "seed",
          .kind = Kind::kInt,
          .meta = "S",
          .dflt = std::to_string(d.seed),
          .min = 0}}},
       {"Engine",
        {block_tokens_option(),
         count("prefill-chunk", e.prefill_chunk, 1, "prompt tokens per program run at most"),
         count("token-budget", e.token_budget, 0, "tokens per step; 0: prefill-chunk + batch"),
         threads_option("compute threads of the engine, per rank"),
         {.name = "recompute",
          .kind = Kind::kFlag,
          .help = "no KV cache: recompute the padded window per token (for comparison)"},
         {.name = "json",
          .kind = Kind::kFlag,
          .help = "one JSON record per sequence instead of the text"}}},
       inference_offload_group(),
       inference_devices_group()}};
  return c;
}

inline const Command& serve_command() {
  static const infer::EngineOptions e;
  constexpr auto count = count_option;
  static const Command c{
      "hp serve (--ckpt DIR | --model CONFIG|NAME [--init W.safetensors]) [options]",
      "An OpenAI-compatible HTTP server on the KV-cache engine (docs/inference.md): "
      "/v1/completions and\n/v1/chat/completions (stream: true as server-sent events), "
      "/v1/models, /health, /metrics.\nSIGINT or SIGTERM end the requests in flight (503) and "
      "stop it with exit code 0.",
      {model_group(),
       {"Server",
        {tokenizer_option(),
         {.name = "host", .meta = "ADDR", .dflt = "127.0.0.1", .help = "the address to listen on"},
         {.name = "port",
          .kind = Kind::kInt,
          .meta = "P",
          .dflt = "8000",
          .min = 0,
          .max = 65535,
          .help = "0: a free port; the address is printed on stdout"},
         count("max-queue", 16, 0, "requests waiting beyond the running ones; more get 429"),
         {.name = "request-timeout",
          .kind = Kind::kFloat,
          .meta = "S",
          .dflt = "300",
          .min = 0.001,
          .help = "seconds a request may take, queue included; then 504 and cancelled"}}},
       {"Engine",
        {count("max-batch", 4, 1, "requests running at once, each with its whole context"),
         count("max-batch-tokens", 0, 0, "tokens per engine step; 0: prefill-chunk + max-batch"),
         block_tokens_option(),
         count("prefill-chunk", e.prefill_chunk, 1, "prompt tokens per program run at most"),
         threads_option("compute threads of the engine")}},
       inference_offload_group()}};
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

inline const Command& calibrate_command() {
  static const Command c{
      "hp calibrate [options]",
      "Measures this machine as the planner's `local` cluster (docs/planner.md): matmul by shape "
      "and its\npeak, attention, element-wise kernels and memory bandwidth, the communicator's "
      "all-reduce and\nthe offload host link, every rank of --devices at once with one thread "
      "each; writes a\ncluster YAML that `hp plan --cluster local` and `hp train --strategy "
      "auto` read.",
      {{"Run",
        {{.name = "out",
          .meta = "FILE.yaml",
          .computed = "$XDG_CONFIG_HOME/hp/cluster-local.yaml",
          .help = "where to write (without XDG_CONFIG_HOME: ~/.config/hp/cluster-local.yaml)"},
         {.name = "devices",
          .meta = "threads:N|mpi",
          .dflt = "threads:2",
          .help = "the ranks measured at once, one thread each (the cluster's device count)"},
         {.name = "quick",
          .kind = Kind::kFlag,
          .help = "fewer repetitions and smaller messages (a few seconds; for tests)"}}}}};
  return c;
}

}  // namespace hp::cli
