// The small models and batch the SPMD and checkpoint tests of train share: one layer, d=32, a
// vocabulary of 61 (uneven over 2 and 4 ranks), and a [4, 8] batch with ignored targets.
#pragma once
#include "hp/core/tensor.hpp"
#include "hp/io/model_config.hpp"

namespace hp::train {

inline io::ModelConfig tiny(io::Architecture arch) {
  io::ModelConfig c;
  c.arch = arch;
  c.n_layer = 1;
  c.d_model = 32;
  c.n_head = 4;
  c.n_kv_head = arch == io::Architecture::kLlama ? 2 : 4;
  c.head_dim = 8;
  c.d_ff = 64;
  c.max_seq = 8;
  c.vocab = 61;  // not a multiple of the ranks: uneven vocabulary shards
  c.tied_embeddings = arch == io::Architecture::kGpt2;
  if (arch == io::Architecture::kLlama) c.activation = "silu";
  c.validate();
  return c;
}

// Tokens and targets [4, 8]; every target of the first row and half of the third are ignored.
inline std::pair<Tensor, Tensor> batch(int64_t vocab) {
  Tensor tokens({4, 8}, DType::kI64), targets({4, 8}, DType::kI64);
  for (int64_t i = 0; i < 32; ++i) {
    tokens.i64()[i] = (i * 37 + 11) % vocab;
    const bool ignored = i < 8 || (i >= 16 && i < 20);
    targets.i64()[i] = ignored ? -100 : (i * 53 + 5) % vocab;
  }
  return {tokens, targets};
}

}  // namespace hp::train
