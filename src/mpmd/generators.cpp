// The named schedules: each is a placement of chunks on ranks plus a list-scheduling policy (cap on
// micro-batches in flight, backward split or fused, weight gradients deferred), ordered under unit
// costs, then given its sends and receives. Works for any ranks p, micro-batches m and chunks v.
// Not tuned per case: the caps are the schedules' published memory bounds.
#include <algorithm>

#include "hp/core/error.hpp"
#include "hp/mpmd/list_schedule.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

namespace {

void check_counts(const ChunkGraph& g, int microbatches, const char* what) {
  g.check();
  HP_CHECK(microbatches >= 1, "[mpmd] ", what, ": micro-batches must be >= 1, got ", microbatches);
}

// 1F1B's bound per rank: a rank starts at most as many micro-batches as there are chunks from its
// first chunk to the end of the chain before it must run a backward. A rank holding several
// chunks gets Megatron's virtual-pipeline warm-up plus the one forward of the steady phase, over
// rounds of R micro-batches: R = ranks, or ranks + m % ranks for the last round when m is not a
// multiple (see ListPolicy::round), which keeps the bubble at Megatron's for any m.
std::vector<int> one_f_one_b_caps(const ChunkGraph& g, int m) {
  std::vector<int> cap(size_t(g.ranks));
  int R = m >= g.ranks ? g.ranks + m % g.ranks : g.ranks;
  for (int r = 0; r < g.ranks; ++r) {
    auto mine = g.chunks_on(r);
    int v = int(mine.size());
    cap[size_t(r)] = v == 1 ? g.chunks() - mine[0] : (v - 1) * R + 2 * (g.ranks - r - 1) + 1;
  }
  return cap;
}

// Under the schedule's unit costs (F = B = W = 1; BW = 2).
Schedule ordered(ScheduleKind kind, const ChunkGraph& g, int m) {
  check_counts(g, m, schedule_name(kind).c_str());
  ListPolicy p = policy_for(kind, g, m);
  auto compute = list_schedule(g, m, p, ListCosts::unit(g));
  return with_communication(schedule_name(kind), g, m, p.split_backward, std::move(compute));
}

}  // namespace

ListPolicy policy_for(ScheduleKind kind, const ChunkGraph& g, int m) {
  g.check();
  ListPolicy p;
  switch (kind) {
    case ScheduleKind::kGpipe:
      p.forward_first.assign(size_t(g.ranks), true);
      break;
    case ScheduleKind::k1F1B:
      p.cap = one_f_one_b_caps(g, m);
      break;
    case ScheduleKind::kInterleaved:
      p.cap = one_f_one_b_caps(g, m);
      p.round = g.ranks;
      p.alternate = true;
      break;
    case ScheduleKind::kZbH1:
      // B as in 1F1B; W deferred while a rank holds fewer than 1F1B's peak micro-batches.
      p.split_backward = true;
      p.cap = one_f_one_b_caps(g, m);
      p.hold_cap.assign(size_t(g.ranks), *std::max_element(p.cap.begin(), p.cap.end()));
      p.alternate = true;
      break;
    case ScheduleKind::kZbV:
      // Each chunk is half a stage: 2p chunk activations are 1F1B's p stage activations.
      p.split_backward = true;
      p.hold_cap.assign(size_t(g.ranks), 2 * g.ranks);
      break;
    case ScheduleKind::kAuto:
      throw Error("[mpmd] 'auto' has no fixed policy: call synthesise (hp/mpmd/synth.hpp)");
  }
  return p;
}

Schedule gpipe(const ChunkGraph& g, int microbatches) {
  return ordered(ScheduleKind::kGpipe, g, microbatches);
}

Schedule one_f_one_b(const ChunkGraph& g, int microbatches) {
  return ordered(ScheduleKind::k1F1B, g, microbatches);
}

Schedule interleaved(int ranks, int v, int microbatches) {
  HP_CHECK(v >= 1, "[mpmd] interleaved: virtual chunks per rank must be >= 1, got ", v);
  return ordered(ScheduleKind::kInterleaved, chain_graph(ranks, v), microbatches);
}

Schedule zb_h1(const ChunkGraph& g, int microbatches) {
  return ordered(ScheduleKind::kZbH1, g, microbatches);
}

Schedule zbv(int ranks, int microbatches) {
  return ordered(ScheduleKind::kZbV, v_graph(ranks), microbatches);
}

Schedule schedule_on(ScheduleKind kind, const ChunkGraph& g, int microbatches) {
  return ordered(kind, g, microbatches);
}

Schedule make_schedule(ScheduleKind kind, int ranks, int microbatches, int v) {
  switch (kind) {
    case ScheduleKind::kGpipe:
      return gpipe(chain_graph(ranks), microbatches);
    case ScheduleKind::k1F1B:
      return one_f_one_b(chain_graph(ranks), microbatches);
    case ScheduleKind::kInterleaved:
      return interleaved(ranks, v, microbatches);
    case ScheduleKind::kZbH1:
      return zb_h1(chain_graph(ranks), microbatches);
    case ScheduleKind::kZbV:
      return zbv(ranks, microbatches);
    case ScheduleKind::kAuto:
      break;
  }
  throw Error("[mpmd] make_schedule: 'auto' needs costs; call synthesise (hp/mpmd/synth.hpp)");
}

}  // namespace hp::mpmd
