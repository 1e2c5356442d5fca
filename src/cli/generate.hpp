// Text sampling shared by `hp generate`, `hp serve` and the end of `hp train`, and the model
// source of generate and serve (--ckpt DIR | --model CONFIG|NAME [--init W.safetensors]).
// Not a tokenizer-agnostic API: byte-level vocabulary only.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "cli/args.hpp"

#include "hp/infer/kv_plan.hpp"
#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/memory/options.hpp"
#include "hp/memory/tiers.hpp"

namespace hp::cli {

struct SampleOptions {
  int64_t tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: all
  uint64_t seed = 1;
  int threads = 1;
};

// Where the model comes from: a checkpoint directory, or a config (built-in name or
// config.json) with random weights (seed 1) or the --init safetensors.
struct ModelSource {
  std::string ckpt, model, init;
};
// From --ckpt, --model and --init; throws unless exactly one of --ckpt and --model is given.
ModelSource model_source(const Args& a);
// The model's config and weights (a checkpoint's latest step, or the step-<N> directory given).
std::pair<io::ModelConfig, io::TensorMap> load_model(const ModelSource& m);

// --block-tokens, else the model's (infer::block_tokens_for).
int64_t block_tokens_of(const Args& a, const io::ModelConfig& cfg);

// The text of generated ids: the byte of each id below 256 (the byte vocabulary).
std::string text_of(const std::vector<int64_t>& tokens);

// A run of the engine under a device budget (docs/inference.md, "KV offload"): the KV plan for
// the requests' longest context, the weights copied into a device allocator of the budget (less
// the kernels' scratch, which it does not see), the offloaded blocks in the host tier.
struct PlannedRun {
  infer::KvPlan plan;
  std::vector<infer::Result> results;
  size_t peak_device_bytes = 0;      // the device allocator's measured peak
  size_t kv_offloaded_bytes = 0;     // the host pool
  size_t kv_disk_bytes = 0;          // of it, what the disk tier's file held (its allocator's peak)
  size_t planner_bytes_fetched = 0;  // stagings and streamed weights the offload planner copied
};
// What may leave the device: `mode` as --kv-offload; `dir`: where "disk" puts the offloaded
// blocks' file (empty: the system's temporary directory); `weights` as --offload-weights.
struct OffloadChoice {
  std::string mode = "auto", dir;
  bool weights = false;
};
// What a KV plan runs on, for an engine built on it (and outliving it): the device allocator
// holds what the plan places (its budget less the kernels' scratch, which it does not see), the
// offloaded blocks go to the host tier or the disk tier's file, the weights to the device or, as
// the plan says, to the host tier. Throws hp::OutOfMemory when the plan cannot meet the budget
// (`budget` as --device-memory: a percentage is of the plan's unconstrained device bytes).
struct PlannedModel {
  infer::KvPlan plan;
  std::shared_ptr<Allocator> device, disk;
  std::unique_ptr<memory::TieredPool> tiers;
  std::unique_ptr<memory::TransferEngine> copies;  // the stagings' and streamed weights' (inline)
  infer::EngineOptions engine;                     // with the plan's pool and placement
  io::TensorMap params;                            // the weights where the plan keeps them
};
// --kv-offload, --offload-dir and --offload-weights of `a`.
OffloadChoice offload_choice(const Args& a);
PlannedModel place_model(const io::ModelConfig& cfg, const io::TensorMap& params,
                         infer::EngineOptions eo, int64_t context, const memory::Budget& budget,
                         const OffloadChoice& offload);

// Throws hp::OutOfMemory before running when the plan cannot meet the budget.
PlannedRun run_planned(const io::ModelConfig& cfg, const io::TensorMap& params,
                       const std::vector<infer::Request>& reqs, infer::EngineOptions eo,
                       const memory::Budget& budget, const OffloadChoice& offload);
// The budget in bytes: a percentage of what the whole cache needs on the device at `context`.
size_t resolve_budget(const io::ModelConfig& cfg, const infer::EngineOptions& eo, int64_t context,
                      const memory::Budget& budget);

// Continues `prompt` by `o.tokens` bytes; returns only the continuation.
std::string sample_text(const io::ModelConfig& cfg, const io::TensorMap& params,
                        const std::string& prompt, const SampleOptions& o);

}  // namespace hp::cli
