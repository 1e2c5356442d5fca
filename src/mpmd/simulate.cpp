// The event simulator (see simulate.hpp): the blocking replay with costs, then busy time, bubbles
// and the activation memory step function per rank.
// Not a renderer: timeline.cpp draws the result.
#include "hp/mpmd/simulate.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "hp/core/error.hpp"
#include "hp/mpmd/verify.hpp"
#include "mpmd/replay.hpp"

namespace hp::mpmd {

double Simulation::mean_bubble() const {
  if (bubble.empty()) return 0;
  return std::accumulate(bubble.begin(), bubble.end(), 0.0) / double(bubble.size());
}

double Simulation::bubble_vs_ideal() const {
  double most = busy.empty() ? 0 : *std::max_element(busy.begin(), busy.end());
  return most > 0 ? step_time / most - 1 : 0;
}

std::string Simulation::str() const {
  std::ostringstream os;
  os << name << ": step " << step_time << ", bubble " << 100 * mean_bubble() << "% of the step ("
     << 100 * bubble_vs_ideal() << "% over the busiest rank's work); per rank";
  for (double b : bubble) os << " " << 100 * b << "%";
  os << "; peak memory";
  for (double p : peak_memory) os << " " << p;
  return os.str();
}

namespace {

// Memory after each compute action, in list order (a rank runs one action at a time, so list
// order is time order): F and RELOAD allocate at their start, B / W / BW and OFFLOAD free at
// their end.
void memory_of(Simulation& sim, const CostModel& costs) {
  for (size_t r = 0; r < sim.timeline.size(); ++r) {
    double held = 0;
    auto& pts = sim.memory[r];
    pts.push_back({0, 0});
    for (const auto& iv : sim.timeline[r]) {
      const Action& a = iv.action;
      if (a.kind == ActionKind::kOpt) continue;
      const ChunkCost& c = costs.chunks[size_t(a.chunk)];
      double t = iv.end;
      if (a.kind == ActionKind::kF) held += c.act_bytes, t = iv.start;
      if (a.kind == ActionKind::kB) held -= c.act_bytes - c.w_bytes;
      if (a.kind == ActionKind::kW) held -= c.w_bytes;
      if (a.kind == ActionKind::kBW) held -= c.act_bytes;
      if (a.kind == ActionKind::kOffload) held -= c.act_bytes;  // on the host once copied
      if (a.kind == ActionKind::kReload) held += c.act_bytes, t = iv.start;
      if (pts.back().time == t)
        pts.back().bytes = held;
      else
        pts.push_back({t, held});
      sim.peak_memory[r] = std::max(sim.peak_memory[r], held);
    }
  }
}

}  // namespace

Simulation simulate(const Schedule& s, const CostModel& costs) {
  CostModel unbudgeted = costs;
  unbudgeted.memory_budget.clear();
  verify(s, unbudgeted);
  auto duration = [&](int r, const Action& a) {
    if (a.kind == ActionKind::kOpt) return costs.opt.empty() ? 0.0 : costs.opt[size_t(r)];
    return costs.duration(a);
  };
  auto transfer = [&](int from, int to, const Action& send) {
    return costs.transfer_time(from, to, costs.chunks[size_t(send.chunk)].out_bytes);
  };
  detail::Replay rp = detail::replay(s, duration, transfer);
  HP_CHECK(rp.complete, "[mpmd] simulate '", s.name, "': replay stopped after verification");
  size_t n = s.actions.size();
  Simulation sim;
  sim.name = s.name;
  sim.microbatches = s.microbatches;
  sim.timeline.resize(n);
  sim.busy.assign(n, 0.0);
  sim.peak_memory.assign(n, 0.0);
  sim.memory.resize(n);
  for (size_t r = 0; r < n; ++r) {
    for (size_t i = 0; i < s.actions[r].size(); ++i) {
      const Action& a = s.actions[r][i];
      const auto& t = rp.times[r][i];
      sim.step_time = std::max(sim.step_time, t.end);
      if (!is_compute(a.kind)) continue;
      sim.timeline[r].push_back({t.start, t.end, a});
      sim.busy[r] += t.end - t.start;
    }
  }
  for (const auto& x : rp.transfers) {
    sim.transfers.push_back(
        {x.from, x.to, x.start, x.end, s.actions[size_t(x.from)][x.send_index]});
    sim.step_time = std::max(sim.step_time, x.end);
  }
  for (size_t r = 0; r < n; ++r)
    sim.bubble.push_back(sim.step_time > 0 ? (sim.step_time - sim.busy[r]) / sim.step_time : 0);
  memory_of(sim, costs);
  return sim;
}

}  // namespace hp::mpmd
