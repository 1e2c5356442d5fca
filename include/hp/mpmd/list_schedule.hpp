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
  // Per rank: at most this many chunk micro-batches whose forward has started and whose backward
  // (B or BW) has not finished; <= 0 or absent: unbounded. When every rank is stuck behind its
  // caps the rank with the most urgent forward exceeds them, so the result never deadlocks; the
  // verifier's memory check is what enforces a budget.
  std::vector<int> cap;
  // Per rank, split schedules: the same count up to the end of W (activations a deferred W still
  // needs); <= 0 or absent: unbounded.
  std::vector<int> hold_cap;
  // Micro-batches per round of the priority order: among ready actions, forwards go by (round,
  // chunk, micro-batch) and backwards by (round, deeper chunk first, micro-batch), as Megatron's
  // virtual pipeline orders them (a last partial round joins the one before); <= 1: by
  // micro-batch first (depth first).
  int round = 1;
  // When both a forward and a backward are ready, take the kind the rank did not run last (the
  // steady phase of 1F1B), so that backwards do not starve the forwards downstream ranks need.
  bool alternate = false;
  // Per rank, split schedules: W runs before a ready F or B once more than this many W are
  // pending (0: right after its B); otherwise only when nothing else is ready. Absent or
  // negative: no limit.
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

// The policy behind a named schedule on graph g for m micro-batches (kAuto: throws): gpipe runs
// forwards first with no cap; 1f1b caps each rank at the chunks from its first to the end of the
// chain (Megatron's warm-up where a rank holds several chunks); interleaved adds Megatron's round
// order and alternation; zb-h1 splits the backward and defers W up to 1F1B's peak; zbv caps at 2 *
// ranks half-stage chunks.
ListPolicy policy_for(ScheduleKind kind, const ChunkGraph& g, int m);

// Per-rank compute orders (F, B, W or BW actions) for `microbatches` micro-batches. Forwards,
// backwards and weight gradients of one chunk run in micro-batch order.
std::vector<std::vector<Action>> list_schedule(const ChunkGraph& g, int microbatches,
                                               const ListPolicy& policy, const ListCosts& costs);

}  // namespace hp::mpmd
