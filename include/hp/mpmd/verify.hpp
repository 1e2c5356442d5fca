// The verifier run on every schedule before it runs: each action exactly once on the rank holding
// its chunk, dependencies in order, sends and receives matched per pair and in the same order, no
// deadlock when ranks block on receives, peak activation memory within each rank's budget.
// Not a timing model: memory is counted in list order (the simulator gives it over time).
#pragma once
#include <string>
#include <vector>

#include "hp/mpmd/cost.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

struct VerifyReport {
  std::vector<double> peak_memory;  // per rank, in the cost model's act_bytes units
  size_t actions = 0;
};

// Throws hp::Error on the first failure, with the shortest trace that shows it: the action and
// its missing or misplaced counterpart, the pair whose orders differ, the cycle of ranks that wait
// on each other (each with the receive it blocks at and where its send sits), or the allocations
// live when a rank passes its budget. Semantics: a SEND posts its message and does not block; a
// RECV blocks until its message has been sent.
VerifyReport verify(const Schedule& s, const CostModel& costs);
// The same with unit activation memory per chunk and no budget.
VerifyReport verify(const Schedule& s);

}  // namespace hp::mpmd
