// The `auto` schedule: a synthesiser for any chain or DAG of chunks placed on ranks, from
// per-action costs (measured by a profiling step or modelled) and per-rank memory budgets. It
// list-schedules under every built-in policy that applies, then searches locally over policies
// (caps, split or fused backward, deferred weight gradients, priorities), keeping the fastest
// simulated schedule that passes the verifier, and reports its gap to the lower bound. Not an exact
// optimiser and not a placement search: chunks stay on the ranks the graph gives.
#pragma once
#include <cstdint>
#include <string>

#include "hp/mpmd/cost.hpp"
#include "hp/mpmd/list_schedule.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

struct LowerBound {
  double critical_path = 0;  // one micro-batch through every chunk and back, transfers included
  double busiest = 0;        // the largest per-rank sum of compute (all micro-batches, optimizer)
  // A tighter bound of the same kind: per rank, the earliest its first forward can start (the
  // forwards and transfers before it) plus all of its compute; the largest over ranks.
  double busiest_from_start = 0;
  double value() const;  // the largest of the three
};
// max(critical path, busiest rank, busiest rank from its earliest start) of m micro-batches of g
// under `costs`.
LowerBound lower_bound(const ChunkGraph& g, int microbatches, const CostModel& costs);

struct SynthOptions {
  int evaluations = 300;  // local-search candidates simulated after the built-ins
  uint64_t seed = 1;      // the search is deterministic for a seed
};

struct SynthResult {
  Schedule schedule;
  ListPolicy policy;
  double step_time = 0;
  std::string best_builtin;  // the best built-in policy on this graph, and its step time
  double best_builtin_time = 0;
  LowerBound bound;
  int evaluated = 0;
  double gap() const { return bound.value() > 0 ? step_time / bound.value() - 1 : 0; }
  // "auto: step 75 (best built-in zb-h1: 75); lower bound 75 = max(critical path 15, busiest
  // rank 72, from its earliest start 75): gap 0%".
  std::string str() const;
};

// A named schedule's policy (its caps and B/W split) ordered at `costs` instead of unit costs:
// the list scheduler's order when each action takes its modelled or measured time, improved by
// hill climbing over the policy's ordering knobs alone (when W runs, forward or backward first,
// alternation, rounds), the event simulator judging; the generator's own order when none is
// faster. A schedule generated under unit costs can leave a bubble the same policy avoids at the
// real costs (zbv over 4 micro-batches on 2 ranks: 11.9% against 3.4%, the lower bound, at one
// profiled set of GPT-2 chunk costs; with B 1.37 times F and W, 30.44 against 28.33, the bound
// 27.96). Deterministic; the search shrinks with the schedule's size (about 2 s for zbv over
// 32 ranks and 256 micro-batches). kAuto: synthesised at `costs`.
Schedule schedule_at_costs(ScheduleKind kind, const ChunkGraph& g, int microbatches,
                           const CostModel& costs);

// Throws when no candidate fits the memory budgets, naming the smallest peak found.
SynthResult synthesise(const ChunkGraph& g, int microbatches, const CostModel& costs,
                       const SynthOptions& options = {});

}  // namespace hp::mpmd
