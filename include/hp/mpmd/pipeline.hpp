// The pipeline section of a strategy: which schedule, how many micro-batches, and the stages, each
// with its transformer blocks (one range per chunk), its device count and its own HyperShard
// strategy. Parsed from YAML (`pipeline:`) or from a preset expression whose outermost term is
// `ppN` ("pp2xdp2"); without explicit stages the blocks are balanced automatically.
// Not the stage's strategy itself: `strategy` stays text for HyperShard to parse over the stage's
// own devices.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hp/io/yaml.hpp"
#include "hp/mpmd/balance.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

struct StageSpec {
  std::vector<BlockRange> blocks;  // one per chunk of this stage, as written (or balanced)
  int64_t devices = 1;
  int64_t first_rank = 0;     // the stage runs on ranks [first_rank, first_rank + devices)
  std::string strategy;       // a preset expression ("tp2"); empty: none or `strategy_rules`
  YAML::Node strategy_rules;  // a strategy written as a map (mesh/rules/presets), kept raw
  std::string where;          // "file:line:col" of the stage, for messages
};

struct PipelineSpec {
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int64_t microbatches = 1;
  int64_t virtual_chunks = 1;  // chunks per stage (v)
  std::vector<StageSpec> stages;
  bool balanced = false;  // blocks were placed by balance_blocks
  std::string file = "<pipeline>";

  int64_t world_size() const;
  // Every chunk in model order (by first block) with the stage holding it.
  std::vector<std::pair<BlockRange, int>> chunks() const;
  // The chain of chunks in model order, placed on their stages: the schedule's ranks are stages.
  ChunkGraph chunk_graph() const;
  // "1f1b, 4 micro-batches: stage 0 blocks 0 on 2 devices (tp2) | stage 1 blocks 1-2 on 1 ..."
  std::string str() const;
};

// Per-block costs for balancing when `stages` is absent (cost, bytes, first/last extras, caps);
// `parts`, and `speed` unless given, are filled in from the stages. Null: every block costs 1.
struct PipelineParseOptions {
  const BalanceInput* costs = nullptr;
  int64_t mesh_pp = 0;  // a `pp` mesh axis: its size is the stage count (0: none)
};

// Parses a `pipeline:` node. Errors name the file, line and field: an unknown schedule or key,
// micro-batches < 1, a malformed, out-of-range, overlapping or missing block, devices that do not
// add up to `world_size`, `virtual` on a schedule without chunks, a stage with the wrong number
// of block ranges for its chunks.
PipelineSpec parse_pipeline(const io::YamlNode& node, int64_t world_size, int64_t num_blocks,
                            const PipelineParseOptions& options = {});
// The `pipeline:` section of a strategy document (which may also hold mesh/rules/presets; a `pp`
// axis in `mesh:` sets the stage count when stages are not listed). Throws when it has none.
PipelineSpec parse_pipeline_text(const std::string& text, int64_t world_size, int64_t num_blocks,
                                 const std::string& file = "<strategy>",
                                 const BalanceInput* costs = nullptr);
PipelineSpec load_pipeline(const std::filesystem::path& path, int64_t world_size,
                           int64_t num_blocks, const BalanceInput* costs = nullptr);

// A preset expression split at its outermost `ppN` term: "pp2xdp2" on 4 devices is 2 stages of
// 2 devices, each "dp2"; "pp4" on 4 devices is 4 stages of one device and no strategy. The pp size
// may be omitted when the other sizes are given ("ppxtp2" on 8: pp4). Throws when pp is not the
// outermost term, sizes do not divide the world, or a multi-device stage has no strategy.
struct PresetStages {
  int64_t stages = 1;
  int64_t devices_per_stage = 1;
  std::string stage_preset;  // the expression without its pp term ("" when nothing is left)
};
// True when the expression's outermost term is pp.
bool is_pipeline_preset(const std::string& expr);
PresetStages split_pp_preset(const std::string& expr, int64_t world_size);
// The pipeline a preset gives: its stages with balanced blocks and the stage preset.
PipelineSpec pipeline_from_preset(const std::string& expr, int64_t world_size, int64_t num_blocks,
                                  ScheduleKind schedule, int64_t microbatches, int64_t v = 2,
                                  const BalanceInput* costs = nullptr);

}  // namespace hp::mpmd
