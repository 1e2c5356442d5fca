// Text sampling shared by `hp generate` and the end of `hp train`.
// Not a tokenizer-agnostic API: byte-level vocabulary only.
#pragma once
#include <string>

#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"

namespace hp::cli {

struct SampleOptions {
  int64_t tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: all
  uint64_t seed = 1;
  int threads = 1;
};

// Continues `prompt` by `o.tokens` bytes; returns only the continuation.
std::string sample_text(const io::ModelConfig& cfg, const io::TensorMap& params,
                        const std::string& prompt, const SampleOptions& o);

}  // namespace hp::cli
