// The static KV offload plan of an inference job (docs/inference.md, "KV offload"): from the model
// config, the engine options, the longest context and a device budget, where each sequence's KV
// blocks live (its first `resident` blocks on the device, the rest in the host tier), how much
// device memory the weights, the programs and their scratch take, and what one decode token reads
// and fetches. Computed before running; a budget changes only where blocks live, never the block
// size, the prefill chunks or the arithmetic.
// Not the engine: it sizes and places, the engine (engine.hpp) runs what it sized.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hp/infer/engine.hpp"
#include "hp/io/model_config.hpp"

namespace hp::infer {

constexpr double kKvInt8BytesPerElement = 34.0 / 32.0;  // q8_0: 32 int8 and one f16 scale

// The pool's positions per block for a model, chosen once per model and never per budget: a
// multiple of 8 (the attention kernel's vectors of keys), at least 16, and the fewest with which
// one layer's keys (or values) of a block fill a 4 KiB page, so that each is at least a page to
// fetch, write back and prefetch; at most 256, and no more than the model's positions need.
int64_t block_tokens_for(const io::ModelConfig& cfg);

// How host blocks are attended: fetched into device staging per layer ("fetch"), or read where
// they live by the attention kernel ("direct"); "resident": no host blocks.
struct KvPlan {
  std::string mode;
  // Where the offloaded blocks live: "host" memory, or "disk": a file in the offload directory,
  // memory-mapped (infer::disk_tier), fetched as host blocks are.
  std::string tier = "host";
  int64_t batch = 1, context = 0, block_tokens = 16, layers = 1;
  int64_t blocks_per_seq = 0;  // ceil(context / block_tokens)
  int64_t resident = 0;        // per sequence, on the device
  int64_t fetch_slots = 0;     // per sequence, staged on the device for one layer (fetch)
  size_t budget = 0;           // 0: unlimited
  size_t block_bytes = 0;      // one block, every layer
  size_t weight_bytes = 0, program_bytes = 0, scratch_bytes = 0;
  // Weights left in the host tier and read there by the kernels (weights = true in plan_kv):
  // first the tables a token only gathers a row of (untied input embeddings, positions), which
  // cost a decode token nearly nothing, then, only when the KV cannot fit even fully offloaded,
  // the largest others until it does.
  std::vector<std::string> host_weights;
  size_t weight_host_bytes = 0;
  // Fetch mode: of host_weights, those a decode token reads whole, prefetched for each program
  // run by the offload planner of training (memory::plan_offload, with each layer's staging;
  // fixed: every other source) and dropped after, within `stream_budget` device bytes for a
  // program's own values and them (the largest smallest budget of the programs; counted once in
  // program_bytes).
  std::vector<std::string> streamed_weights;
  size_t stream_budget = 0;
  size_t kv_device_bytes = 0, kv_host_bytes = 0;  // resident and offloaded blocks
  // Fetch: a layer's staging (every sequence's host blocks of one layer), which the offload
  // planner places among the program's values: part of program_bytes, not counted apart.
  size_t staging_bytes = 0;
  size_t min_budget = 0;  // the smallest budget this mode fits in at this context
  // Per decode token at the full context: bytes read on the device (weights, resident and staged
  // KV), bytes read in the host tier by the attention (direct), bytes copied host to device.
  double decode_device_bytes = 0, decode_host_bytes = 0, decode_fetch_bytes = 0;
  // The alternative of int8 KV (llama.cpp's q8_0: blocks of 32 int8 values and an f16 scale,
  // kKvInt8BytesPerElement), costed, not built: with every block on the device, the longest
  // context whose blocks fit beside the weights, programs and scratch (the whole one when it
  // fits: then int8 would need no offload at all), and the bytes one decode token reads then.
  int64_t int8_resident_context = 0;
  double int8_decode_device_bytes = 0;

  // Device memory the plan holds: weights, resident KV, programs (arenas, outputs, inputs, or
  // under the offload planner one run's values and what it streams) and the largest kernel
  // scratch.
  size_t device_bytes() const {
    return weight_bytes - weight_host_bytes + kv_device_bytes + program_bytes + scratch_bytes;
  }
  // Seconds per decode token when device and host share one memory that reads `bw` bytes/s and
  // copies run on the compute cores (nothing overlaps): the two byte terms, device and link, over
  // it. A fetched byte is read once in the host tier; its copy in the staging is read among the
  // device bytes.
  double shared_memory_s(double bw) const {
    return (decode_device_bytes + decode_host_bytes + decode_fetch_bytes) / bw;
  }
  // With a link `rho` times slower than the device memory, fetches overlapped with compute:
  // max(device bytes / bw, link bytes / (bw / rho)) (host reads count as link bytes).
  double overlapped_s(double bw, double rho) const;
  // The engine options that run this plan (the host allocator still to set in kv.host).
  EngineOptions engine(EngineOptions base) const;
  // The plan in words, one line per item, with the decode time at `bw` bytes/s (0: not shown).
  std::string explain(double bw = 0) const;
};

// mode: "none" (every block on the device), "host" (fetch), "direct", "disk" (fetch, the
// offloaded blocks in a file), or "auto" (the fastest that fits: resident first, then direct on
// a backend whose kernels read host memory, which the CPU's do, else fetch). Throws
// hp::OutOfMemory before anything runs when the budget cannot hold the plan, naming the smallest
// budget that could ("none" at a too-long context: the budget the whole cache needs), and
// hp::Error for a mode it does not know.
// With `weights`, weights may stay in the host tier too (KvPlan::host_weights); an unmeetable
// budget then names the smallest feasible one with every weight there.
KvPlan plan_kv(const io::ModelConfig& cfg, const EngineOptions& engine, int64_t context,
               size_t budget, const std::string& mode, bool weights = false);

}  // namespace hp::infer
