// Pieces shared by the hp subcommands: built-in model configs, the embedded default training
// job, the sgemm peak probe, the stop signals, and small formatting helpers.
// Not library API: the library proper reads no configuration.
#pragma once
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "hp/io/model_config.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

// A built-in model name ("gpt2-kjv", "gpt2-124m", "llama-kjv", ...) or a path to a config.json,
// a directory holding one, or a reference case's directory (its case.json's "model").
io::ModelConfig resolve_model(const std::string& name_or_path);
// Names of the built-in models, comma-separated.
std::string builtin_models();
// hp train --strategy auto (plan_search.cpp): the planner's best plan for a [batch, seq] step of
// `cfg` on `devices` devices of `cluster` ("local", a preset or a cluster file), searched among
// what the runtime runs; `yaml` is the strategy file (as hp plan --emit writes it), `summary`
// one line naming it and its predicted step.
struct AutoStrategy {
  std::string yaml, summary;
};
AutoStrategy auto_strategy(const io::ModelConfig& cfg, int64_t batch, int64_t seq, int devices,
                           const std::string& cluster);
// The model configs of examples/models (gpt3-175b, megatron-1t, llama3-70b, llama3-405b):
// (name, config.json text), embedded by hp_embed (src/cli/CMakeLists.txt).
const std::vector<std::pair<std::string, std::string>>& embedded_models();

// A --strategy that names a file (a path with '/' or a .yaml/.yml name) must exist: otherwise it
// would be read as a preset expression and refused for its terms.
void check_strategy_path(const std::string& spec);

// The embedded default job of `hp train`: examples/train_kjv.yaml, compiled in.
extern const char* kDefaultTrainYaml;

// The median of timings (0 for none): what the benchmarks report, robust to the steps another
// process on the machine slowed.
double median(std::vector<double> v);

// Achieved sgemm GFLOP/s at [m, k] x [k, n] with `threads`, measured for about `seconds`.
double sgemm_peak_gflops(int threads, int64_t m, int64_t n, int64_t k, double seconds = 0.3);

// One training step as hp train reports it; rates and the ETA are derived from these.
struct StepReport {
  int64_t step = 0;   // 0-based index of the step just done
  int64_t steps = 0;  // total steps of the run
  train::StepResult result;
  double tokens = 0;              // tokens of the step (all micro-batches)
  double flops = 0;               // FLOPs of the step
  double step_s = 0;              // its wall time
  double mean_step_s = 0;         // the run's mean step time so far (for the ETA)
  double peak_gflops = 1;         // the sgemm peak measured at start-up
  size_t peak_bytes = 0;          // the device allocator's peak (per device)
  size_t rss_increase_bytes = 0;  // the process's max RSS now minus its RSS when the command began
};

// The process's maximum resident set size so far (getrusage), in bytes.
size_t max_rss_bytes();

// Prints the --json record (stdout) and/or the progress line (`human`): every step on a TTY,
// else every `log_every` steps, the first step of the run (`first`) and the last.
void report_step(const StepReport& r, bool json, bool tty, int64_t log_every, int64_t first,
                 FILE* human, const char* memory_unit);

// This machine's memory in bytes: physical RAM, or the cgroup's limit when lower; 0 if unknown.
uint64_t machine_memory_bytes();
// Fails fast, before anything is allocated, when `need` bytes (what, e.g. "parameters,
// gradients and AdamW state") cannot fit in machine_memory_bytes(); names both byte counts.
void check_fits_in_memory(uint64_t need, const std::string& what);

// While alive, SIGINT (Ctrl-C), SIGTERM (what mpirun forwards to its ranks, and what schedulers
// send) and SIGHUP ask the command to stop: received() says which came last (0: none), and the
// command decides what stopping means (hp train: after the step in flight, then save; hp serve:
// refuse new requests, end those in flight, exit 0). A second signal only asks again.
// The signals are blocked in every thread (threads made later, OpenMP's, oneDNN's and the HTTP
// server's included, inherit the mask) and taken by a watcher thread with sigtimedwait: a handler
// may not run on a compute thread, because Debian's oneDNN JIT GEMM kernels point rsp into the
// heap while they run and a signal frame written there corrupts it (oneDNN issue #4845).
// Construct it before any other thread exists; one at a time. Signals still pending at the end
// are consumed, not delivered.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received() { return stop_; }

 private:
  static inline std::atomic<int> stop_{0};
  sigset_t set_{}, old_{};
  std::atomic<bool> done_{false};
  std::thread watcher_;
};

std::string human_bytes(double b);    // "12.3 MiB"
std::string human_seconds(double s);  // "1h02m", "3m05s", "12s"

}  // namespace hp::cli
