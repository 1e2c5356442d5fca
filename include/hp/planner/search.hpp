// The planner's search: every configuration of a model on a cluster (dp x tp x pp = devices in
// each mesh order, sp, optimizer sharding, micro-batch, schedule with its virtual stages,
// recomputation, offload), pruned by lower bounds, best first. Only plans that fit in device
// memory are returned.
// Not a tuner of the cost model: estimate() is taken as given.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hp/planner/cost.hpp"

namespace hp::planner {

inline constexpr int64_t kAllBlocks = int64_t(1) << 40;  // more blocks than any stage has

// What is fixed; everything left empty or unset is searched.
struct Space {
  int64_t dp = 0, tp = 0, pp = 0;  // fixed degrees (all three or none); 0: searched
  std::string order;               // fixed mesh order ("dpt"); empty: every order
  std::optional<bool> sp;
  std::optional<Zero> zero;
  std::vector<Zero> zeros;             // the sharding choices allowed (empty: all)
  std::vector<int64_t> micro_batches;  // empty: every divisor of the batch per replica
  std::vector<Schedule> schedules;     // pipelined layouts: among these (empty: all); pp 1: none
  int64_t virtual_stages = 0;          // interleaved's v; 0: every v in [2, max_virtual]
  int64_t max_virtual = 8;
  std::vector<Recompute> recomputes;      // empty: all
  int64_t recompute_blocks = 0;           // with full: blocks per stage recomputed; 0: searched;
                                          // kAllBlocks: all of them
  std::vector<bool> offloads;             // optimizer state on the host; empty: off and on
  std::vector<bool> activation_offloads;  // activations on the host; empty: off and on
  // What a runtime that cannot run every configuration allows (hp train --strategy auto):
  // pp > 1 only as the one axis (a stage per device), or only as the outermost axis (stages on
  // consecutive ranks), and without pp one micro-batch per replica per step (no accumulation:
  // micro-batch = global batch / dp).
  bool pipeline_alone = false;
  bool pipeline_outermost = false;
  bool one_microbatch = false;
};

struct Plan {
  Config config;
  Estimate estimate;
};

struct SearchOptions {
  int64_t top = 1;    // plans returned
  bool prune = true;  // false: evaluate every configuration (for tests)
  Efficiency efficiency{};
};

struct SearchResult {
  std::vector<Plan> plans;  // best (shortest step) first; all fit in memory
  int64_t covered = 0;      // configurations the space holds, pruned ones included
  int64_t evaluated = 0;    // configurations costed by estimate()
  int64_t fitting = 0;      // evaluated configurations that fit in memory
  double search_s = 0;      // wall time of the search
};

SearchResult search(const Workload& w, const Cluster& c, const Space& space,
                    const SearchOptions& options = {});

// A strategy expression in mesh order, outermost first ("dp6xpp64xtp8", "fsdp8xtp8+sp"): fixes
// the degrees and the order; fsdp fixes Zero::kFull and +sp fixes sp. Axes left out have size
// 1; one size may be left out (dpxtp8) and is filled from `devices`. Throws naming the term.
void fix_layout(Space& space, const std::string& expr, int64_t devices);
// A strategy YAML as strategy_yaml writes it (mesh, presets, pipeline, micro_batch, recompute,
// zero, offload): fixes everything it states; its pipeline section is checked by mpmd's parser.
void fix_from_yaml(Space& space, const std::string& text, const std::string& file,
                   const Workload& w, int64_t devices);
// The strategy of a plan as YAML: the mesh in order, the presets, the `pipeline:` section
// (docs/mpmd.md) when pp > 1, and the keys micro_batch, recompute, zero and offload.
std::string strategy_yaml(const Plan& p, const Workload& w, const Cluster& c);

}  // namespace hp::planner
