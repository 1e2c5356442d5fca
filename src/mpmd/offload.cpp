// Activation offload of a schedule (see offload.hpp): a replay of each rank's list with the bytes
// its micro-batches hold, moving the furthest-needed one to the host whenever the next action
// would pass the budget.
#include "hp/mpmd/offload.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::mpmd {

namespace {

using Flight = std::pair<int, int>;  // (chunk, micro-batch)

bool backward(ActionKind k) {
  return k == ActionKind::kB || k == ActionKind::kBW;
}

Action move(ActionKind kind, Flight f) {
  Action a;
  a.kind = kind;
  a.chunk = f.first;
  a.microbatch = f.second;
  return a;
}

}  // namespace

std::vector<double> least_offload_budget(const Schedule& s, const CostModel& costs) {
  costs.check(s.graph);
  std::vector<double> least(s.actions.size(), 0.0);
  for (size_t r = 0; r < s.actions.size(); ++r) {
    double after_b = 0;  // what B kept for W
    for (const Action& a : s.actions[r]) {
      if (!is_compute(a.kind) || a.kind == ActionKind::kOpt || is_move(a.kind)) continue;
      const ChunkCost& c = costs.chunks[size_t(a.chunk)];
      least[r] = std::max(least[r], after_b + (a.kind == ActionKind::kW ? 0 : c.act_bytes));
      if (a.kind == ActionKind::kB) after_b += c.w_bytes;
      if (a.kind == ActionKind::kW) after_b -= c.w_bytes;
    }
  }
  return least;
}

Schedule plan_activation_offload(const Schedule& s, const CostModel& costs) {
  const std::vector<double> least = least_offload_budget(s, costs);
  Schedule out = s;
  for (size_t r = 0; r < s.actions.size(); ++r) {
    const double budget = costs.memory_budget.empty() ? 0 : costs.memory_budget[r];
    if (budget <= 0) continue;
    const std::vector<Action>& list = s.actions[r];
    for (const Action& a : list)
      HP_CHECK(!is_move(a.kind), "[mpmd] schedule '", s.name, "' already moves activations (",
               a.str(), " on rank ", r, ")");
    std::map<Flight, size_t> back_at;  // each micro-batch's backward, by list index
    for (size_t i = 0; i < list.size(); ++i)
      if (backward(list[i].kind)) back_at[{list[i].chunk, list[i].microbatch}] = i;
    std::vector<Action> moved;
    std::map<Flight, double> resident;  // between F and backward, on the device
    std::set<Flight> on_host;
    double held = 0;
    // Offloads what it must, furthest backward first, so that `need` more bytes fit.
    auto make_room = [&](double need, Flight self, size_t i) {
      while (held + need > budget * (1 + 1e-12)) {
        auto victim = resident.end();
        for (auto it = resident.begin(); it != resident.end(); ++it)
          if (it->first != self &&
              (victim == resident.end() || back_at.at(it->first) > back_at.at(victim->first)))
            victim = it;
        if (victim == resident.end()) {
          std::ostringstream os;  // every digit: the units may be bytes
          os << std::setprecision(15) << "[mpmd] schedule '" << s.name << "': rank " << r
             << " cannot keep its activations within " << budget << " at #" << i << " "
             << list[i].str() << " even with every other micro-batch on the host; it needs "
             << least[r];
          throw Error(os.str());
        }
        moved.push_back(move(ActionKind::kOffload, victim->first));
        held -= victim->second;
        on_host.insert(victim->first);
        resident.erase(victim);
      }
    };
    for (size_t i = 0; i < list.size(); ++i) {
      const Action& a = list[i];
      const Flight f{a.chunk, a.microbatch};
      const bool compute = is_compute(a.kind) && a.kind != ActionKind::kOpt;
      const ChunkCost* c = compute ? &costs.chunks[size_t(a.chunk)] : nullptr;
      if (a.kind == ActionKind::kF) make_room(c->act_bytes, f, i);
      if (backward(a.kind) && on_host.erase(f)) {
        make_room(c->act_bytes, f, i);
        moved.push_back(move(ActionKind::kReload, f));
        held += c->act_bytes;
        resident[f] = c->act_bytes;
      }
      moved.push_back(a);
      if (a.kind == ActionKind::kF) held += c->act_bytes, resident[f] = c->act_bytes;
      if (backward(a.kind)) {
        resident.erase(f);
        held -= a.kind == ActionKind::kB ? c->act_bytes - c->w_bytes : c->act_bytes;
      }
      if (a.kind == ActionKind::kW) held -= c->w_bytes;
    }
    out.actions[r] = std::move(moved);
  }
  return out;
}

}  // namespace hp::mpmd
