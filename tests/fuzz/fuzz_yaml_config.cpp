// Fuzz target: a training config YAML as `hp train --config` reads it: apply_yaml checks every
// key against hp train's option table and every value as the command line's would be (kind,
// range, choices); the `offload:` map is parsed into OffloadOptions.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "cli/args.hpp"
#include "cli/options.hpp"
#include "hp/core/error.hpp"
#include "hp/io/yaml.hpp"
#include "hp/memory/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto y = hp::io::YamlNode::parse(std::string(reinterpret_cast<const char*>(data), size),
                                           "train.yaml");
    hp::cli::Args a({}, hp::cli::train_command());
    std::optional<hp::io::YamlNode> offload;
    hp::cli::apply_yaml(a, y, offload);
    if (offload) hp::memory::parse_offload(*offload);
  } catch (const hp::Error&) {
    // rejected, naming the file, line and key
  }
  return 0;
}
