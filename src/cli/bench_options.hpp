// The option tables of `hp bench`'s benchmarks (bench_*.cpp), beside the commands' own in
// options.hpp, whose groups (devices, offload, inference) they reuse.
#pragma once

#include "cli/options.hpp"

namespace hp::cli {

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

inline const Command& bench_steps_command() {
  static const Command c{
      "hp bench steps --strategies S[,S...] [options]",
      "The step time of each strategy (a file or a preset) of one model on the same devices, "
      "their steps\ninterleaved in one process (one step of each in turn); one JSON record per "
      "strategy: the timed\nsteps' wall seconds (rank 0) and CPU seconds per rank.",
      {{"Run",
        {{.name = "strategies",
          .meta = "S[,S...]",
          .required = true,
          .help = "strategy files or presets, comma-separated"},
         {.name = "model", .meta = "NAME|CONFIG.json|DIR", .dflt = "gpt2-kjv"},
         bench_int("batch", "8", "global batch"),
         bench_int("seq", "128"),
         bench_int("steps", "6", "timed steps per strategy, after one warm-up step each"),
         threads_option("threads per rank"),
         {.name = "devices", .meta = "threads:N", .dflt = "threads:2"}}}}};
  return c;
}

inline const Command& bench_comm_command() {
  static const Command c{
      "hp bench comm [options]",
      "nccl-tests style table (size, count, time, algbw, busbw) of all-reduce, all-gather and\n"
      "reduce-scatter per message size (sizes double from --min-bytes to --max-bytes). threads:\n"
      "busbw also as a share of what this machine's memcpy bandwidth allows; mpi: the same MPI\n"
      "call made directly, and our overhead.",
      {{"Run",
        {{.name = "devices",
          .meta = "threads:N|mpi",
          .dflt = "threads:4",
          .help = "N ranks as threads of this process, or one rank per process under mpirun"},
         {.name = "min-bytes", .kind = Kind::kBytes, .meta = "SIZE", .dflt = "1KiB"},
         {.name = "max-bytes", .kind = Kind::kBytes, .meta = "SIZE", .dflt = "64MiB"},
         {.name = "iters",
          .kind = Kind::kInt,
          .meta = "K",
          .dflt = "20",
          .min = 1,
          .help = "timed calls per size, averaged"},
         {.name = "warmup", .kind = Kind::kInt, .meta = "W", .dflt = "3", .min = 0}}}}};
  return c;
}

inline const Command& bench_pipeline_command() {
  static const Command c{
      "hp bench pipeline [options]",
      "A GPT-2 pipeline over --devices threads:N (one stage per rank, --threads threads each)\n"
      "under each schedule: the step the schedule simulator predicts from chunk costs measured\n"
      "before the run, against the step measured, and the bubble of each.",
      {{"Model",
        {bench_int("layers", "4"), bench_int("d", "256", "model width"), bench_int("heads", "4"),
         bench_int("vocab", "256")}},
       {"Run",
        {bench_int("seq", "128"),
         bench_int("batch", "8", "global batch"),
         bench_int("microbatches", "4"),
         bench_int("threads", "1", "threads per rank"),
         {.name = "steps",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "6",
          .min = 2,
          .help = "steps per schedule, the first a warm-up; the median of the others is reported"},
         {.name = "profile-steps",
          .kind = Kind::kInt,
          .meta = "N",
          .dflt = "5",
          .min = 1,
          .help = "profiling steps after the warm-up: the median of their action times is the "
                  "simulator's costs (five outvote two steps slowed by a neighbour)"},
         {.name = "schedules",
          .meta = "LIST",
          .dflt = "gpipe,1f1b,interleaved,zb-h1,zbv",
          .help = "comma-separated schedules"},
         {.name = "reorder",
          .kind = Kind::kFlag,
          .help = "after profiling, run each schedule's policy ordered at the profiled costs "
                  "(mpmd::schedule_at_costs) instead of its unit-cost order"},
         {.name = "devices", .meta = "threads:N", .dflt = "threads:2"},
         {.name = "timeline",
          .meta = "DIR",
          .computed = "none",
          .help = "per schedule, DIR/<schedule>-predicted.svg and -measured.svg (the median "
                  "timed step) on one time scale"}}}}};
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

inline const Command& bench_context_command() {
  static const infer::EngineOptions e;
  static const Command c{
      "hp bench context (--ckpt DIR | --model CONFIG|NAME [--init W.safetensors]) "
      "--device-memory SIZE [options]",
      "The longest prompt that prefills and then decodes --tokens greedy tokens under the device "
      "budget,\n"
      "found by running (a binary search on the prompt length): with every KV block "
      "resident\n"
      "(--kv-offload none) and with offload; prints both and their ratio (f32 KV).",
      {model_group(),
       {"Run",
        {{.name = "device-memory", .meta = "SIZE", .help = "the device budget, e.g. 96MiB"},
         count_option("tokens", 16, 1, "tokens decoded after each prompt"),
         {.name = "kv-offload",
          .kind = Kind::kEnum,
          .dflt = "auto",
          .choices = {"auto", "host", "direct", "disk"},
          .help = "the offload of the second search (auto: the plan's choice)"},
         {.name = "offload-dir",
          .meta = "DIR",
          .computed = "the system's temporary directory",
          .help = "with --kv-offload disk: where the offloaded blocks' file goes"},
         count_option("max-prompt", 0, 0, "the longest prompt tried; 0: max positions - tokens"),
         block_tokens_option(),
         count_option("prefill-chunk", e.prefill_chunk, 1, "prompt tokens per program run"),
         threads_option("compute threads of the engine"),
         {.name = "json", .kind = Kind::kFlag, .help = "one JSON record on stdout"}}}}};
  return c;
}

}  // namespace hp::cli
