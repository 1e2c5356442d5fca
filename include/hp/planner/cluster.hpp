// Cluster: what the planner knows of a machine it does not run on: the device (peak bf16 FLOP/s,
// memory and its bandwidth), the host link, and the tiers of the network innermost first, each
// with its domain (consecutive devices that share it), per-device bandwidth and latency. Read
// from YAML (examples/clusters/*.yaml, embedded as presets so they work without the source tree).
// Not a measurement: the numbers are the vendors' datasheet figures the files cite.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hp/io/yaml.hpp"

namespace hp::planner {

struct Tier {
  std::string name;
  int64_t devices = 0;   // consecutive devices per domain; 0: every device (the outermost tier)
  double bandwidth = 0;  // bytes/s per device and direction
  double latency = 0;    // seconds per message
};

struct Cluster {
  std::string name;
  std::string file;              // where it was read from, for messages
  int64_t devices = 0;           // devices planned over
  std::string device_name;       // "H100 SXM5 80GB"
  double peak_flops = 0;         // dense bf16 FLOP/s per device
  double memory_bytes = 0;       // device memory
  double memory_bandwidth = 0;   // bytes/s of device memory
  double host_bandwidth = 0;     // bytes/s per device and direction to host memory
  double host_memory_bytes = 0;  // host memory per device
  std::vector<Tier> tiers;       // innermost first; the last has devices 0

  // The innermost tier whose domain holds `span` consecutive devices (the last tier if none).
  const Tier& tier_for_span(int64_t span) const;
  // "h100-dgx: 8192 x H100 SXM5 80GB (989 TFLOP/s bf16, 80.0 GiB) | nvlink 8: 450 GB/s, 3 us | ..."
  std::string str() const;
};

// Parses a cluster document. Errors name the file, line and key: unknown or missing keys,
// non-positive numbers, tiers whose domains do not nest (each a multiple of the one inside),
// an outermost tier that is not `devices: 0`.
Cluster parse_cluster(const io::YamlNode& root);
Cluster parse_cluster_text(const std::string& text, const std::string& file);
Cluster load_cluster(const std::filesystem::path& path);

// Names of the embedded presets, comma-separated ("a100-selene, cloudmatrix384, ...").
std::string cluster_presets();
// "NAME[:DEVICES]" naming a preset, or a path to a cluster YAML (with an optional ":DEVICES").
// DEVICES replaces the file's count; it must be at least 1 and a multiple of every inner tier's
// domain that it exceeds (8192 on 8-GPU nodes, not 8193).
Cluster resolve_cluster(const std::string& spec);

// The embedded presets: (name, YAML text), generated from examples/clusters by hp_embed.
const std::vector<std::pair<std::string, std::string>>& embedded_clusters();

}  // namespace hp::planner
