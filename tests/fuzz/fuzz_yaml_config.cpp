// Fuzz target: a training config YAML as `hp train --config` reads it: every key but `offload`
// becomes the string default of the same-named option, read back as a number where the option
// is one; the `offload:` map is parsed into OffloadOptions.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/args.hpp"
#include "hp/error.hpp"
#include "hp/io/yaml.hpp"
#include "hp/memory/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto y = hp::io::YamlNode::parse(std::string(reinterpret_cast<const char*>(data), size),
                                           "train.yaml");
    hp::cli::Args a({}, {}, {});
    for (auto& [key, value] : y.entries()) {
      if (key == "offload") {
        hp::memory::parse_offload(value);
        continue;
      }
      a.set_default(key, value.as_string());
      try {
        a.i64(key, 0);
      } catch (const hp::Error&) {
      }
      try {
        a.f64(key, 0);
      } catch (const hp::Error&) {
      }
    }
  } catch (const hp::Error&) {
    // rejected, naming the file, line and key
  }
  return 0;
}
