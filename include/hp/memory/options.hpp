// OffloadOptions: the typed `offload:` configuration (YAML section or CLI strings such as
// "64MiB" and "25%"), parsed once by the caller and handed to the planner and trainer.
// Not the planner: options say what is allowed and how much memory there is, not what moves.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>

#include "hp/core/allocator.hpp"
#include "hp/io/yaml.hpp"
#include "hp/memory/transfer.hpp"

namespace hp::memory {

// A memory budget: absolute bytes, or a fraction of the unconstrained peak. Neither: unlimited.
struct Budget {
  size_t bytes = 0;
  double fraction = 0;  // (0, 1]
  bool unlimited() const { return bytes == 0 && fraction == 0; }
  // Bytes for a run whose unconstrained peak is `peak` (0 when unlimited).
  size_t resolve(size_t peak) const;
  std::string str() const;  // "64.00 MiB", "25%", "unlimited"
};

// "1234", "64KiB", "64MiB", "1.5GiB", "2GB", or "none"/"unlimited" (0); throws naming the text,
// also for sizes that round to 0 bytes.
size_t parse_bytes(const std::string& text);
// parse_bytes, or a percentage "25%" (of the unconstrained peak).
Budget parse_budget(const std::string& text);
// "1.00 MiB"-style rendering of a byte count.
std::string format_bytes(size_t bytes);

struct OffloadOptions {
  Budget device_budget;                           // what the step may use on the device
  size_t host_budget = 0;                         // bytes (0: unlimited)
  Tier optimizer_state = Tier::kDevice;           // where AdamW's m and v live
  std::filesystem::path offload_dir = "offload";  // disk tier files
  bool params = true;                             // what the planner may move off the device
  bool grads = true;
  bool activations = true;
  bool recompute = true;        // re-run cheap elementwise producers instead of a transfer
  bool auto_mode = false;       // `auto`: offload only when the step does not fit
  double gflops = 50;           // cost model: achieved compute rate
  double link_gbps = 8;         // cost model: device<->host bandwidth, GB/s
  double link_latency_us = 10;  // cost model: fixed cost of one transfer
  int transfer_threads = 2;
  // Device<->host copies: on the compute cores where issued (inline: "device" memory is host
  // DRAM on the CPU backend, so a copy needs the kernels' cores anyway), or on the transfer
  // threads overlapped with compute (threads: a device with copy engines). Disk I/O always runs
  // on the transfer threads.
  CopyMode copies = CopyMode::kInline;
  int64_t timeout_ms = 60000;  // every wait on a transfer

  // True when anything may leave the device (a budget, off-device optimizer state, or auto).
  bool enabled() const {
    return !device_budget.unlimited() || optimizer_state != Tier::kDevice || auto_mode;
  }
  std::string str() const;  // one line per key, as YAML
};

// Sets one key ("device_budget", "host_budget", "optimizer_state", "offload_dir", "offload"
// (comma list of params,grads,activations or "all"/"none"), "recompute", "auto", "gflops",
// "link_gbps", "link_latency_us", "transfer_threads", "copies" (inline, threads), "timeout_ms")
// from its text; throws naming key and text.
void set_option(OffloadOptions& o, const std::string& key, const std::string& value);
// The `offload:` section of a YAML config (the section node itself); unknown keys are rejected.
OffloadOptions parse_offload(const io::YamlNode& section);
// "key=value" strings, as given on the command line (--offload device_budget=25%).
OffloadOptions parse_offload_args(const std::vector<std::string>& kv);

}  // namespace hp::memory
