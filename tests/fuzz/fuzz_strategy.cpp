// Fuzz target: a strategy YAML file (and the same text as a --strategy preset expression),
// parsed, then applied to the tensor names of a GPT-2 and a Llama model.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hp/core/error.hpp"
#include "hp/shard/strategy.hpp"

namespace {

const std::vector<hp::shard::NamedTensor>& tensors() {
  static const std::vector<hp::shard::NamedTensor> t = {
      {"wte.weight", {256, 64}},
      {"h.0.attn.c_attn.weight", {64, 192}},
      {"h.0.attn.c_proj.bias", {64}},
      {"h.0.mlp.c_fc.weight", {64, 256}},
      {"model.layers.0.self_attn.k_proj.weight", {32, 64}},
      {"model.layers.0.mlp.down_proj.weight", {64, 128}},
      {"lm_head.weight", {256, 64}},
  };
  return t;
}

void use(hp::shard::Strategy& s) {
  hp::shard::fit_presets_to_kv_heads(s, 2);
  hp::shard::validate(s, tensors());
  for (const auto& t : tensors()) s.layout_for(t.name, t.shape.size()).str();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    hp::shard::Strategy s = hp::shard::parse_strategy(text, 8, "strategy.yaml");
    use(s);
  } catch (const hp::Error&) {
    // rejected, naming the file, line and key
  }
  try {
    hp::shard::Strategy s = hp::shard::preset_strategy(text, 8);
    use(s);
  } catch (const hp::Error&) {
  }
  return 0;
}
