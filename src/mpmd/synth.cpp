// The `auto` synthesiser (see synth.hpp): built-in policies first, then hill climbing over policy
// moves with the event simulator as the judge and the verifier as the gate.
// Not randomised across runs: moves come from the counter-based RNG keyed by the seed.
#include "hp/mpmd/synth.hpp"

#include <algorithm>
#include <limits>
#include <sstream>

#include "hp/core/error.hpp"
#include "hp/core/rng.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/mpmd/verify.hpp"

namespace hp::mpmd {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// schedule_at_costs' search over a policy's ordering: at most this many candidates, and no more
// than keep its simulated actions (each candidate's F, B and W of every chunk and micro-batch)
// within the budget: a second or two for 32 ranks of 256 micro-batches.
constexpr int64_t kOrderEvaluations = 100, kOrderActionBudget = 200000;

// Costs and transfer delays the list scheduler orders by: the real ones, not unit costs.
ListCosts list_costs(const ChunkGraph& g, const CostModel& costs) {
  ListCosts lc;
  for (const auto& c : costs.chunks) lc.f.push_back(c.f), lc.b.push_back(c.b), lc.w.push_back(c.w);
  lc.delay = [&g, &costs](int from, int to) {
    double bytes = costs.chunks[size_t(std::min(from, to))].out_bytes;  // the edge's producer
    return costs.transfer_time(g.rank_of[size_t(from)], g.rank_of[size_t(to)], bytes);
  };
  return lc;
}

struct Scored {
  ListPolicy policy;
  Schedule schedule;
  double over = kInf;  // largest excess of a rank's peak over its budget (0: fits)
  double time = kInf;
  bool better_than(const Scored& o) const {
    return over < o.over || (over == o.over && time < o.time);
  }
};

// Scores a schedule made under `policy` (by the list scheduler under the real costs, or given).
Scored evaluate(const ChunkGraph& g, int m, const CostModel& costs, const ListCosts& lc,
                const ListPolicy& policy, const Schedule* given = nullptr) {
  Scored s;
  s.policy = policy;
  s.schedule = given ? *given
                     : with_communication("auto", g, m, policy.split_backward,
                                          list_schedule(g, m, policy, lc));
  s.schedule.name = "auto";
  CostModel unbudgeted = costs;
  unbudgeted.memory_budget.clear();
  VerifyReport rep = verify(s.schedule, unbudgeted);
  s.over = 0;
  for (size_t r = 0; r < rep.peak_memory.size() && !costs.memory_budget.empty(); ++r) {
    double budget = costs.memory_budget[r];
    if (budget > 0) s.over = std::max(s.over, rep.peak_memory[r] - budget);
  }
  s.time = simulate(s.schedule, unbudgeted).step_time;
  return s;
}

// One random change of a policy: a cap, a hold cap or a W lag of one rank moved by one or two, one
// rank's forward-first flag, or a global switch (split backward, alternation, round order).
ListPolicy mutate(ListPolicy p, const ChunkGraph& g, int m, uint64_t seed, uint64_t step) {
  auto rnd = [&](uint64_t k, uint64_t n) { return rng::bits(seed, step, k) % n; };
  size_t ranks = size_t(g.ranks);
  p.cap.resize(ranks, 0), p.hold_cap.resize(ranks, 0), p.w_lag.resize(ranks, -1);
  p.forward_first.resize(ranks, false);
  size_t r = rnd(1, ranks);
  int delta = (rnd(2, 2) ? 1 : -1) * int(1 + rnd(3, 2));
  int most = m * int(g.chunks_on(int(r)).size());
  auto nudge = [&](int& v, int lo) { v = std::clamp((v <= 0 ? most : v) + delta, lo, most); };
  switch (rnd(0, 7)) {
    case 0:
      nudge(p.cap[r], 1);
      break;
    case 1:
      nudge(p.hold_cap[r], 1);
      break;
    case 2:
      p.w_lag[r] = std::clamp(p.w_lag[r] + delta, -1, most);
      break;
    case 3:
      p.forward_first[r] = !p.forward_first[r];
      break;
    case 4:
      p.split_backward = !p.split_backward;
      break;
    case 5:
      p.alternate = !p.alternate;
      break;
    default:
      p.round = p.round > 1 ? 1 : g.ranks;
      break;
  }
  return p;
}

// The policy with its caps lowered to what each rank's memory budget holds in activations.
ListPolicy clamped(ListPolicy p, const ChunkGraph& g, const CostModel& costs) {
  if (costs.memory_budget.empty()) return p;
  p.cap.resize(size_t(g.ranks), 0), p.hold_cap.resize(size_t(g.ranks), 0);
  for (int r = 0; r < g.ranks; ++r) {
    double budget = costs.memory_budget[size_t(r)], act = 0;
    if (budget <= 0) continue;
    for (int c : g.chunks_on(r)) act = std::max(act, costs.chunks[size_t(c)].act_bytes);
    int fit = act > 0 ? std::max(1, int(budget / act)) : 0;
    for (int* cap : {&p.cap[size_t(r)], &p.hold_cap[size_t(r)]})
      if (fit > 0) *cap = *cap > 0 ? std::min(*cap, fit) : fit;
  }
  return p;
}

}  // namespace

Schedule schedule_at_costs(ScheduleKind kind, const ChunkGraph& g, int microbatches,
                           const CostModel& costs) {
  if (kind == ScheduleKind::kAuto) return synthesise(g, microbatches, costs).schedule;
  costs.check(g);
  const ListCosts lc = list_costs(g, costs);
  const ListPolicy base = policy_for(kind, g, microbatches);
  // The policy at these costs, then hill climbing over its ordering alone (when W runs, forward
  // or backward first, alternation, rounds): its caps, the memory it holds, and its B/W split
  // stay the named schedule's. Never slower at these costs than the generator's order.
  const Schedule generated = schedule_on(kind, g, microbatches);
  Scored best = evaluate(g, microbatches, costs, lc, base, &generated);
  Scored current = evaluate(g, microbatches, costs, lc, base);
  if (current.better_than(best)) best = current;
  const int64_t actions = 3 * int64_t(g.chunks()) * microbatches;
  for (int64_t i = 0; i < std::min(kOrderEvaluations, kOrderActionBudget / actions); ++i) {
    ListPolicy p = mutate(current.policy, g, microbatches, 1, uint64_t(i));
    p.cap = base.cap, p.hold_cap = base.hold_cap, p.split_backward = base.split_backward;
    Scored s = evaluate(g, microbatches, costs, lc, p);
    if (!current.better_than(s)) current = s;
    if (s.better_than(best)) best = std::move(s);
  }
  best.schedule.name = schedule_name(kind);
  return std::move(best.schedule);
}

LowerBound lower_bound(const ChunkGraph& g, int microbatches, const CostModel& costs) {
  g.check();
  costs.check(g);
  LowerBound lb;
  std::vector<double> busy(size_t(g.ranks), 0.0);
  for (int c = 0; c < g.chunks(); ++c) {
    const auto& k = costs.chunks[size_t(c)];
    double n = 0;  // micro-batches, each at its scale
    for (int mb = 0; mb < microbatches; ++mb) n += costs.scale(c, mb);
    busy[size_t(g.rank_of[size_t(c)])] += n * (k.f + k.b + k.w);
  }
  for (size_t r = 0; r < busy.size(); ++r) {
    if (!costs.opt.empty()) busy[r] += costs.opt[r];
    lb.busiest = std::max(lb.busiest, busy[r]);
  }
  ListCosts lc = list_costs(g, costs);
  if (!costs.microbatch_scale.empty())  // the path of the cheapest micro-batch of each chunk
    for (int c = 0; c < g.chunks(); ++c) {
      double k = kInf;
      for (int mb = 0; mb < microbatches; ++mb) k = std::min(k, costs.scale(c, mb));
      lc.f[size_t(c)] *= k, lc.b[size_t(c)] *= k, lc.w[size_t(c)] *= k;
    }
  auto succs = g.succs();
  std::vector<double> f_end(size_t(g.chunks()), 0.0), b_end(size_t(g.chunks()), 0.0);
  std::vector<double> first_start(busy.size(), kInf);
  for (int c = 0; c < g.chunks(); ++c) {
    for (int d : g.preds[size_t(c)])
      f_end[size_t(c)] = std::max(f_end[size_t(c)], f_end[size_t(d)] + lc.delay(d, c));
    double& start = first_start[size_t(g.rank_of[size_t(c)])];
    start = std::min(start, f_end[size_t(c)]);
    f_end[size_t(c)] += lc.f[size_t(c)];
  }
  for (size_t r = 0; r < busy.size(); ++r)
    lb.busiest_from_start = std::max(lb.busiest_from_start, first_start[r] + busy[r]);
  for (int c = g.chunks() - 1; c >= 0; --c) {
    double start = f_end[size_t(c)];
    for (int s : succs[size_t(c)]) start = std::max(start, b_end[size_t(s)] + lc.delay(s, c));
    b_end[size_t(c)] = start + lc.b[size_t(c)];
    double opt = costs.opt.empty() ? 0 : costs.opt[size_t(g.rank_of[size_t(c)])];
    lb.critical_path = std::max(lb.critical_path, b_end[size_t(c)] + lc.w[size_t(c)] + opt);
  }
  return lb;
}

double LowerBound::value() const {
  return std::max({critical_path, busiest, busiest_from_start});
}

std::string SynthResult::str() const {
  std::ostringstream os;
  os << "auto: step " << step_time << " (best built-in " << best_builtin << ": "
     << best_builtin_time << "); lower bound " << bound.value() << " = max(critical path "
     << bound.critical_path << ", busiest rank " << bound.busiest << ", from its earliest start "
     << bound.busiest_from_start << "): gap " << 100 * gap() << "%";
  return os.str();
}

SynthResult synthesise(const ChunkGraph& g, int microbatches, const CostModel& costs,
                       const SynthOptions& options) {
  g.check();
  costs.check(g);
  HP_CHECK(microbatches >= 1, "[mpmd] auto: micro-batches must be >= 1, got ", microbatches);
  ListCosts lc = list_costs(g, costs);
  SynthResult out;
  Scored best;
  for (auto kind : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved,
                    ScheduleKind::kZbH1, ScheduleKind::kZbV}) {
    // The built-in as generated (ordered under unit costs), then its policy under the real costs.
    ListPolicy policy = policy_for(kind, g, microbatches);
    Schedule builtin = schedule_on(kind, g, microbatches);
    Scored s = evaluate(g, microbatches, costs, lc, policy, &builtin);
    if (s.over == 0 && (out.best_builtin.empty() || s.time < out.best_builtin_time))
      out.best_builtin = schedule_name(kind), out.best_builtin_time = s.time;
    if (s.better_than(best)) best = s;
    for (const ListPolicy& q : {policy, clamped(policy, g, costs)}) {
      Scored t = evaluate(g, microbatches, costs, lc, q);
      if (t.better_than(best)) best = std::move(t);
    }
    out.evaluated += 3;
  }
  Scored current = best;
  for (int i = 0; i < options.evaluations; ++i) {
    ListPolicy p = mutate(current.policy, g, microbatches, options.seed, uint64_t(i));
    if (rng::bits(options.seed, uint64_t(i), 9) % 2)
      p = mutate(p, g, microbatches, ~options.seed, uint64_t(i));
    Scored s = evaluate(g, microbatches, costs, lc, p);
    ++out.evaluated;
    // Equal scores move too, so the search can cross plateaus.
    if (!current.better_than(s)) current = s;
    if (s.better_than(best)) best = std::move(s);
  }
  HP_CHECK(best.over == 0,
           "[mpmd] auto: no schedule found within the memory budgets; the "
           "closest exceeds a rank's budget by ",
           best.over);
  out.schedule = std::move(best.schedule);
  out.policy = std::move(best.policy);
  out.step_time = best.time;
  out.bound = lower_bound(g, microbatches, costs);
  return out;
}

}  // namespace hp::mpmd
