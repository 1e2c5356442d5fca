// Offload on the command line: the options --device-memory, --host-memory, --optimizer-state and
// --offload-dir (offload_group in options.hpp) over a YAML `offload:` section (of the config or
// the strategy file), and the one-line summary of what a trainer offloads.
// Not the offload logic (hp::memory) and not a loop: parsing and printing only.
#pragma once
#include <optional>
#include <string>

#include "cli/args.hpp"
#include "hp/io/yaml.hpp"
#include "hp/memory/options.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

// `section` (an `offload:` map, or none) overridden by the command-line options.
memory::OffloadOptions offload_options(const Args& a, const std::optional<io::YamlNode>& section);
// One line about a one-device trainer's offload ("" when nothing is offloaded).
std::string offload_summary(const train::Trainer& tr);

}  // namespace hp::cli
