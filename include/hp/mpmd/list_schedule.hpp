// List scheduling of a micro-batched chunk graph: each rank, when idle, starts the ready action its
// policy ranks first (a cap on micro-batches in flight, backward or forward first, weight gradients
// deferred or eager). The generators and the synthesiser produce their compute orders with it.
// Not a verifier or a simulator of communication: delays are per edge and links never contend.
#pragma once
#include <functional>
#include <vector>

#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

struct ListPolicy {
  bool split_backward = false;  // emit B and W (else BW)
  // Per rank: at most this many chunk micro-batches whose forward has started and whose weight
  // gradient (W or BW) has not finished; <= 0 or absent: unbounded. When every rank is stuck
  // behind its cap the cap of the rank with the most urgent forward is exceeded, so the result
  // never deadlocks; the verifier's memory check is what enforces a budget.
  std::vector<int> cap;
  // Per rank, split schedules: W runs before a ready F or B once more than this many W are
  // pending (0: right after its B); otherwise only when nothing else is ready. Absent: no limit.
  std::vector<int> w_lag;
  // Per rank: a ready F goes before a ready B (GPipe); absent: backward first.
  std::vector<bool> forward_first;
};

struct ListCosts {
  std::vector<double> f, b, w;  // per chunk; BW costs b + w
  // Delay between a producer on one rank and its consumer on another (from chunk, to chunk);
  // empty: none.
  std::function<double(int, int)> delay;
  // Unit costs F = B = W = 1 for every chunk of g.
  static ListCosts unit(const ChunkGraph& g);
};

// Per-rank compute orders (F, B, W or BW actions) for `microbatches` micro-batches. Forwards,
// backwards and weight gradients of one chunk run in micro-batch order.
std::vector<std::vector<Action>> list_schedule(const ChunkGraph& g, int microbatches,
                                               const ListPolicy& policy, const ListCosts& costs);

}  // namespace hp::mpmd
