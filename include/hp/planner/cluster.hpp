// Cluster: what the planner knows of a machine it does not run on: the device (peak bf16 FLOP/s,
// memory and its bandwidth), the host link, and the tiers of the network innermost first, each
// with its domain (consecutive devices that share it), per-device bandwidth and latency. Read
// from YAML (examples/clusters/*.yaml, embedded as presets so they work without the source tree).
// The presets are not measurements: their numbers are the vendors' datasheet figures the files
// cite. `hp calibrate` writes the same schema for this machine (`local`), with an `efficiency:`
// section of measured shares that replaces the planner's table for that cluster.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
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

inline constexpr double kMaxMemoryShare = 8;

// One GEMM measured: rows m, inner dimension k, columns n, and the share of the device's peak
// it reached.
struct GemmShape {
  double m = 0, k = 0, n = 0, share = 0;
};

// The achieved share of each peak. The defaults are the planner's one table for every preset
// (docs/planner.md says why these values); a cluster file's `efficiency:` section (what
// hp calibrate measures) replaces it for that cluster. Memory: the share of device memory a plan
// may fill (the rest is the runtime's context, fragmentation and workspace).
struct Efficiency {
  double gemm = 0.7;  // of the dense peak, for the matrix multiplications
  // Measured GEMMs, by shape; when present a GEMM's share is a measured shape's own, else the
  // shares weighted by 1/d^4, d the distance in (log m, log k, log n) (the nearest dominate),
  // instead of `gemm`. Shapes of one size m*k*n differ: 512 x 256 x 1024 reached 0.85 of the peak
  // where 1024 x 256 x 512 reached 0.91 (hp calibrate on the 2-core AMD EPYC).
  std::vector<GemmShape> gemm_shapes;
  double attention = 0.5;  // of the peak, for the attention core (s^2 terms, flash-style)
  // The attention core writes its scores and probabilities to memory instead of fusing them
  // away (flash-style): the runtimes before FlashAttention (2022), Megatron-LM's on Selene among
  // them, ran QK^T, a fused scale-mask-softmax, dropout and AV as kernels apart. Every score is
  // then written and read several times at the memory's rate, and the scores of the blocks not
  // recomputed are kept for the backward (Korthikanti et al.'s 5as^2b).
  bool attention_in_memory = false;
  // Of the memory bandwidth, for element-wise work (and the optimizer without `optimizer`); a
  // measured one may exceed 1 (up to kMaxMemoryShare) where the element-wise work runs from cache.
  double memory = 0.7;
  // The same for the element-wise work on the tp-split width (the activation function, RoPE);
  // 0: `memory`. hp calibrate measures the two apart: per byte counted, the norms and residual
  // adds on the model's width ran 3.3-4.0 times faster than the activation function here (GPT's
  // count includes dropouts, which this runtime does not run).
  double memory_split = 0;
  // Of the memory bandwidth, for the optimizer step (32 bytes a parameter: AdamW's 28 and the
  // clipping norm's read of the gradient; 34 writing a bf16 copy); 0: the `memory` share, at
  // most 1 (the state streams from memory). hp calibrate times the trainer's AdamW.
  double optimizer = 0;
  double network = 0.8;  // of each tier's bandwidth, for collectives and point-to-point
  double usable_memory = 0.9;
  // Whether collectives run beside compute (a GPU's copy engines, spare cores): without it the
  // full-sharding gathers are exposed as the other collectives are.
  bool overlap = true;
  // Whether the runtime issues one collective per parameter tensor (the gradients' all-reduce,
  // full sharding's gathers and reduce-scatters) rather than one per bucket, as this project's
  // trainer does: each call then pays the tiers' latency. hp calibrate sets it.
  bool per_tensor_collectives = false;
  // What a pipeline stage's actions take over the same blocks and rows run as one fused forward
  // and backward: F and a fused BW (gpipe, 1f1b, interleaved), or F, B and W
  // (zb-h1, zbv). The cut step copies the values it keeps, accumulates gradients per micro-batch
  // and switches programs between micro-batches. hp calibrate measures them; 1 for the presets,
  // whose runtimes fuse the accumulation into the GEMMs.
  double pipeline_fused = 1, pipeline_split = 1;
  // The share of the peak a GEMM of m x k times k x n reaches.
  double gemm_share(double m, double k, double n) const;
};

struct Cluster {
  std::string name;
  std::string file;                      // where it was read from, for messages
  int64_t devices = 0;                   // devices planned over
  std::string device_name;               // "H100 SXM5 80GB"
  double peak_flops = 0;                 // dense FLOP/s per device in its training precision
  double element_bytes = 2;              // bytes of that precision: 2 (peak_bf16_tflops), 4 (f32)
  double memory_bytes = 0;               // device memory
  double memory_bandwidth = 0;           // bytes/s of device memory
  double host_bandwidth = 0;             // bytes/s per device and direction to host memory
  double host_memory_bytes = 0;          // host memory per device
  std::vector<Tier> tiers;               // innermost first; the last has devices 0
  std::optional<Efficiency> efficiency;  // measured (hp calibrate); absent: the planner's table

  // The innermost tier whose domain holds `span` consecutive devices (the last tier if none).
  const Tier& tier_for_span(int64_t span) const;
  // "h100-dgx: 8192 x H100 SXM5 80GB (989 TFLOP/s bf16, 80.0 GiB) | nvlink 8: 450 GB/s, 3 us | ..."
  std::string str() const;
};

// Parses a cluster document. Errors name the file, line and key: unknown or missing keys,
// non-positive numbers, tiers whose domains do not nest (each a multiple of the one inside),
// an outermost tier that is not `devices: 0`, both or neither of peak_bf16_tflops and
// peak_f32_tflops, efficiency shares outside (0, 1].
Cluster parse_cluster(const io::YamlNode& root);
Cluster parse_cluster_text(const std::string& text, const std::string& file);
Cluster load_cluster(const std::filesystem::path& path);
// The cluster as YAML in the schema parse_cluster reads (what hp calibrate writes); `comment`
// opens the file, one "# " line per line of it.
std::string cluster_yaml(const Cluster& c, const std::string& comment = "");

// Where `--cluster local` is read from and hp calibrate writes by default:
// $XDG_CONFIG_HOME/hp/cluster-local.yaml, or ~/.config/hp/cluster-local.yaml without it.
std::filesystem::path local_cluster_path();

// Names of the embedded presets, comma-separated ("a100-selene, cloudmatrix384, ...").
std::string cluster_presets();
// "NAME[:DEVICES]" naming a preset, `local` (local_cluster_path(); an error telling to run
// hp calibrate when it is absent), or a path to a cluster YAML (with an optional ":DEVICES").
// DEVICES replaces the file's count; it must be at least 1 and a multiple of every inner tier's
// domain that it exceeds (8192 on 8-GPU nodes, not 8193).
Cluster resolve_cluster(const std::string& spec);

// The embedded presets: (name, YAML text), generated from examples/clusters by hp_embed.
const std::vector<std::pair<std::string, std::string>>& embedded_clusters();

}  // namespace hp::planner
