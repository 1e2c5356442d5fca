// Fuzz target: a .safetensors file's bytes, validated and every tensor loaded.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hp/core/error.hpp"
#include "hp/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    hp::io::SafetensorsReader r(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
    for (const auto& [name, t] : r.load_all()) {
      if (r.info(name).shape != t.shape()) __builtin_trap();
    }
  } catch (const hp::Error&) {
    // rejected, naming the file: the expected outcome for malformed input
  }
  return 0;
}
