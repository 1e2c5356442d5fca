// Redistribution planner: the cheapest sequence of one-axis steps (slice, all-gather,
// reduce-scatter, all-reduce, all-to-all, make-partial) or a general send/recv permutation that
// turns a tensor from one layout into another on the same mesh, found by a shortest-path search
// over layouts under the topology's alpha-beta cost model.
// Not an executor: plans are data; see simulate.hpp for a reference that runs them in memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hp/shard/layout.hpp"
#include "hp/shard/topology.hpp"

namespace hp::shard {

enum class StepKind {
  kSlice,          // R -> S(dim) on `axis`: keep this rank's piece; no communication
  kMakePartial,    // R or S(dim) -> P on `axis`: pad with the reduction's identity; local
  kAllGather,      // S(dim) -> R on `axis` (the innermost axis of that dim)
  kReduceScatter,  // P -> S(dim) on `axis`
  kAllReduce,      // P -> R on `axis`
  kAllToAll,       // S(src_dim) -> S(dim) on `axis`
  kSendRecv,       // any layout -> `after` with the same partial axes: point-to-point copies
};
std::string step_kind_name(StepKind k);  // "slice", "all_gather", ...

struct Step {
  StepKind kind = StepKind::kSlice;
  std::string axis;      // mesh axis the step works along; empty for kSendRecv
  int64_t dim = -1;      // tensor dim the axis joins (slice, reduce-scatter, all-to-all) or
                         // leaves (all-gather, make-partial from S); -1 when none
  int64_t src_dim = -1;  // all-to-all: the dim the axis leaves
  Layout before, after;
  int64_t bytes = 0;        // bytes received by the busiest rank in this step
  double time = 0;          // seconds under the alpha-beta model
  std::string str() const;  // "all_gather(tp, dim 1): [-, tp] -> [-, -]  1.0 KiB  2.1 us"
};

struct Plan {
  Shape shape;  // global shape
  int64_t elem_bytes = 4;
  Layout from, to;
  std::vector<Step> steps;
  double time = 0;                // sum of step times (s)
  int64_t bytes = 0;              // sum of step bytes
  int64_t lower_bound_bytes = 0;  // bytes the busiest rank must receive whatever the plan
  double lower_bound = 0;         // seconds: lower_bound_bytes / fastest link + its latency
  // Several lines: the layouts, each step, the total and the lower bound.
  std::string str() const;
};

struct PlanOptions {
  bool allow_send_recv = true;  // offer the general permutation as a step
};

// Cheapest plan from `from` to `to` for a tensor of `global` shape with `elem_bytes`-byte
// elements. Ties in time go to the plan with fewer steps. Throws when either layout does not fit
// the mesh or the shape, or when `to` cannot be reached (never, with send/recv allowed).
Plan plan_redistribution(const Shape& global, int64_t elem_bytes, const Layout& from,
                         const Layout& to, const Mesh& mesh, const Topology& topo,
                         const PlanOptions& options = {});

// The bytes the busiest rank must receive to go from `from` to `to`, and the matching time.
struct LowerBound {
  int64_t bytes = 0;
  double time = 0;
};
LowerBound redistribution_lower_bound(const Shape& global, int64_t elem_bytes, const Layout& from,
                                      const Layout& to, const Mesh& mesh, const Topology& topo);

}  // namespace hp::shard
