// What the inference tests compare against: the last position's logits of the training graph's
// forward over a whole sequence (no cache), and the largest difference relative to the largest
// reference value.
#pragma once
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "hp/core/rng.hpp"
#include "hp/io/json.hpp"
#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/executor.hpp"

namespace hp::test {

inline std::vector<float> recompute(const io::ModelConfig& cfg, const io::TensorMap& params,
                                    const std::vector<int64_t>& tokens) {
  const int64_t T = int64_t(tokens.size());
  nn::Traced tr = nn::trace(cfg, 1, T, false);
  runtime::Program prog = runtime::compile(*tr.graph, {tr.logits.id});
  runtime::Executor ex(prog, default_allocator(), runtime::Context{1});
  const auto infos = nn::param_infos(cfg);
  for (size_t i = 0; i < infos.size(); ++i) ex.bind(tr.params[i].id, params.at(infos[i].name));
  ex.bind(tr.tokens.id, Tensor::from_i64({1, T}, tokens));
  ex.run();
  const float* l = ex.get(tr.logits.id).f32() + (T - 1) * cfg.vocab;
  return std::vector<float>(l, l + cfg.vocab);
}

// A small Llama with GQA (4 query heads over 2 kv heads, 2 layers of 32) and `positions`
// positions.
inline io::ModelConfig small_llama(int64_t positions) {
  io::Json j = io::parse_json(R"({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32,
                                  "intermediate_size": 48, "num_attention_heads": 4,
                                  "num_key_value_heads": 2, "vocab_size": 50, "rms_norm_eps": 1e-6,
                                  "rope_theta": 10000.0, "tie_word_embeddings": false})",
                              "llama");
  j["max_position_embeddings"] = positions;
  return io::ModelConfig::from_json(j, "llama");
}

// Random weights large enough that attention is far from uniform: init value + N(0, 0.2).
inline io::TensorMap random_params(const io::ModelConfig& cfg, uint64_t seed) {
  io::TensorMap out;
  for (const auto& pi : nn::param_infos(cfg)) {
    Tensor t(pi.shape, DType::kF32);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.f32()[i] = float(pi.init_value +
                         0.2 * rng::normal(seed, rng::stream_of(pi.name.c_str()), uint64_t(i)));
    out.emplace(pi.name, std::move(t));
  }
  return out;
}

// max |a - b| / max |b|; infinite when a holds a NaN.
inline double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i]));
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    scale = std::max(scale, double(std::abs(b[i])));
  }
  return diff / scale;
}

}  // namespace hp::test
