// Fuzz target: a Hugging Face config.json, parsed into a ModelConfig; what validates must write
// back and parse again to the same sizes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hp/core/error.hpp"
#include "hp/io/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using hp::io::ModelConfig;
  try {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const ModelConfig c = ModelConfig::from_json(hp::io::parse_json(text, "config.json"));
    const ModelConfig back = ModelConfig::from_json(c.to_json(), "to_json()");
    if (back.parameter_count() != c.parameter_count()) __builtin_trap();
  } catch (const hp::Error&) {
    // rejected, naming the file and the key
  }
  return 0;
}
