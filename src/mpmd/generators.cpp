// The named schedules: each is a placement of chunks on ranks plus a list-scheduling policy (cap on
// micro-batches in flight, backward split or fused, weight gradients deferred), ordered under unit
// costs, then given its sends and receives. Works for any ranks p, micro-batches m and chunks v.
// Not tuned per case: the caps are the schedules' published memory bounds.
#include <algorithm>

#include "hp/error.hpp"
#include "hp/mpmd/list_schedule.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

namespace {

void check_counts(const ChunkGraph& g, int microbatches, const char* what) {
  g.check();
  HP_CHECK(microbatches >= 1, "[mpmd] ", what, ": micro-batches must be >= 1, got ", microbatches);
}

// Under the schedule's unit costs (F = B = W = 1; BW = 2).
Schedule ordered(const std::string& name, const ChunkGraph& g, int m, const ListPolicy& p) {
  auto compute = list_schedule(g, m, p, ListCosts::unit(g));
  return with_communication(name, g, m, p.split_backward, std::move(compute));
}

// 1F1B's bound per rank: a rank starts at most as many micro-batches as there are ranks from its
// first chunk to the end of the chain before it must run a backward. For chunks placed by hand
// (several per rank) the interleaved bound below applies.
std::vector<int> one_f_one_b_caps(const ChunkGraph& g) {
  std::vector<int> cap(size_t(g.ranks));
  for (int r = 0; r < g.ranks; ++r) {
    auto mine = g.chunks_on(r);
    int v = int(mine.size());
    if (v == 1) {
      cap[size_t(r)] = g.chunks() - mine[0];
    } else {
      // Megatron's warm-up for virtual pipelines plus the one forward of the steady phase.
      cap[size_t(r)] = (v - 1) * g.ranks + 2 * (g.ranks - r - 1) + 1;
    }
  }
  return cap;
}

}  // namespace

Schedule gpipe(const ChunkGraph& g, int microbatches) {
  check_counts(g, microbatches, "gpipe");
  ListPolicy p;
  p.forward_first.assign(size_t(g.ranks), true);
  return ordered("gpipe", g, microbatches, p);
}

Schedule one_f_one_b(const ChunkGraph& g, int microbatches) {
  check_counts(g, microbatches, "1f1b");
  ListPolicy p;
  p.cap = one_f_one_b_caps(g);
  return ordered("1f1b", g, microbatches, p);
}

Schedule interleaved(int ranks, int v, int microbatches) {
  HP_CHECK(v >= 1, "[mpmd] interleaved: virtual chunks per rank must be >= 1, got ", v);
  ChunkGraph g = chain_graph(ranks, v);
  check_counts(g, microbatches, "interleaved");
  ListPolicy p;
  p.cap = one_f_one_b_caps(g);
  p.round = ranks;
  p.alternate = true;
  return ordered("interleaved", g, microbatches, p);
}

Schedule zb_h1(const ChunkGraph& g, int microbatches) {
  check_counts(g, microbatches, "zb-h1");
  ListPolicy p;
  p.split_backward = true;
  // B as in 1F1B; W deferred while a rank holds fewer than 1F1B's peak (ranks) micro-batches.
  p.cap = one_f_one_b_caps(g);
  p.hold_cap.assign(size_t(g.ranks), *std::max_element(p.cap.begin(), p.cap.end()));
  p.alternate = true;
  return ordered("zb-h1", g, microbatches, p);
}

Schedule zbv(int ranks, int microbatches) {
  ChunkGraph g = v_graph(ranks);
  check_counts(g, microbatches, "zbv");
  ListPolicy p;
  p.split_backward = true;
  // Each chunk is half a stage: 2p chunk activations are 1F1B's p stage activations.
  p.hold_cap.assign(size_t(ranks), 2 * ranks);
  return ordered("zbv", g, microbatches, p);
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
