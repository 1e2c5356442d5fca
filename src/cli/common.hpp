// Pieces shared by the hp subcommands: built-in model configs, the embedded default training
// job, the sgemm peak probe, and small formatting helpers.
// Not library API: the library proper reads no configuration.
#pragma once
#include <string>

#include "hp/io/model_config.hpp"

namespace hp::cli {

// A built-in model name ("gpt2-kjv", "gpt2-124m", "llama-kjv", ...) or a path to a config.json
// or a directory holding one.
io::ModelConfig resolve_model(const std::string& name_or_path);
// Names of the built-in models, comma-separated.
std::string builtin_models();

// The embedded default job of `hp train`: examples/train_kjv.yaml, compiled in.
extern const char* kDefaultTrainYaml;

// Achieved sgemm GFLOP/s at [m, k] x [k, n] with `threads`, measured for about `seconds`.
double sgemm_peak_gflops(int threads, int64_t m, int64_t n, int64_t k, double seconds = 0.3);

std::string human_bytes(double b);     // "12.3 MiB"
std::string human_seconds(double s);  // "1h02m", "3m05s", "12s"

}  // namespace hp::cli
