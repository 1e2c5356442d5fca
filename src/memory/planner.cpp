// Offload planner: Belady eviction over the known instruction order, prefetches issued as late
// as the bandwidth model allows, recomputation of cheap elementwise producers across long gaps,
// and an emission pass that inserts the waits keeping the device under its budget.
#include "hp/memory/planner.hpp"

#include <algorithm>
#include <deque>
#include <limits>

#include "hp/core/error.hpp"
#include "hp/memory/options.hpp"

namespace hp::memory {

using ir::NodeId;
using ir::ValueId;
using runtime::Instr;
using runtime::InstrKind;

double CostModel::compute_seconds(const ir::Cost& c) const {
  return std::max(c.flops / (gflops * 1e9), c.bytes / mem_bytes_per_s);
}

double CostModel::transfer_seconds(size_t bytes, bool to_device) const {
  const bool cached = !to_device && writeback_bytes_per_s > 0 && bytes <= writeback_cached_bytes;
  return latency_s + double(bytes) / (cached ? writeback_bytes_per_s : link_bytes_per_s);
}

LinkFit fit_link(size_t small, double small_s, size_t big, double big_s, size_t writeback,
                 double writeback_s) {
  HP_CHECK(small > 0 && small < big && writeback > 0, "[offload] link fit: sizes ", small, " < ",
           big, " and ", writeback, " must be positive and increasing");
  HP_CHECK(small_s > 0 && big_s > 0 && writeback_s > 0, "[offload] link fit: times ", small_s, ", ",
           big_s, " and ", writeback_s, " s must be positive");
  LinkFit f;
  if (big_s > small_s) {
    f.bytes_per_s = double(big - small) / (big_s - small_s);
    f.latency_s = std::max(0.0, small_s - double(small) / f.bytes_per_s);
  } else {
    f.bytes_per_s = double(big) / big_s;
  }
  f.writeback_bytes_per_s =
      double(writeback) / std::max(writeback_s - f.latency_s, writeback_s / 2);
  return f;
}

namespace {

constexpr int kInf = std::numeric_limits<int>::max();

size_t align64(size_t b) {
  return (b + 63) / 64 * 64;
}
size_t value_bytes(const ir::Graph& g, ValueId v) {
  const auto& t = g.value(v).type;
  return align64(byte_count(t.shape, dtype_size(t.dtype)));
}

enum class Class : uint8_t { kSource, kOutput, kIntermediate };

struct Step {
  NodeId node = -1;
  std::vector<ValueId> uses, defs;  // roots; disjoint
  bool recompute = false;
  double seconds = 0;
};

struct Analysis {
  const ir::Graph* g = nullptr;
  std::vector<Step> steps;
  std::vector<std::vector<int>> uses_at, defs_at;  // per root, sorted positions
  std::vector<Class> cls;
  std::vector<bool> offloadable;
  std::vector<bool> fixed;  // PlanRequest::fixed: on the device where bound, never counted
  std::vector<size_t> bytes;

  void index(size_t nv) {
    uses_at.assign(nv, {});
    defs_at.assign(nv, {});
    for (size_t i = 0; i < steps.size(); ++i) {
      for (ValueId r : steps[i].uses) uses_at[size_t(r)].push_back(int(i));
      for (ValueId r : steps[i].defs) defs_at[size_t(r)].push_back(int(i));
    }
  }
  // The next step after `i` reading r's current incarnation (kInf: dead or redefined first).
  int next_use(ValueId r, int i) const {
    const auto& u = uses_at[size_t(r)];
    auto it = std::upper_bound(u.begin(), u.end(), i);
    if (it == u.end()) return kInf;
    const auto& d = defs_at[size_t(r)];
    auto jt = std::upper_bound(d.begin(), d.end(), i);
    if (jt != d.end() && *jt < *it) return kInf;
    return *it;
  }
};

Step make_step(const ir::Graph& g, const runtime::Program& p, NodeId ni, const CostModel& cm) {
  const ir::Node& n = g.node(ni);
  Step s;
  s.node = ni;
  for (ValueId v : n.inputs) {
    ValueId r = p.root[size_t(v)];
    if (std::find(s.uses.begin(), s.uses.end(), r) == s.uses.end()) s.uses.push_back(r);
  }
  if (!n.def->view)
    for (ValueId o : n.outputs)
      if (p.root[size_t(o)] == o) s.defs.push_back(o);
  s.seconds = cm.compute_seconds(ir::node_cost(g, n));
  return s;
}

// Re-runs a cheap single-output elementwise producer before the first use after its longest
// idle gap, when that costs less than writing the value out and reading it back and the
// producer's inputs are live there anyway.
int add_recomputation(Analysis& a, const runtime::Program& p, const CostModel& cm) {
  const ir::Graph& g = *a.g;
  std::vector<double> prefix(a.steps.size() + 1, 0);
  for (size_t i = 0; i < a.steps.size(); ++i) prefix[i + 1] = prefix[i] + a.steps[i].seconds;
  std::vector<std::vector<NodeId>> before(a.steps.size());
  // A recomputed value's inputs must keep one incarnation: chains are not recomputed.
  std::vector<bool> selected(a.cls.size(), false), feeds(a.cls.size(), false);
  int count = 0;
  for (size_t r = 0; r < a.cls.size(); ++r) {
    if (a.cls[r] != Class::kIntermediate || !a.offloadable[r] || a.defs_at[r].size() != 1 ||
        feeds[r])
      continue;
    const ir::Node& n = g.node(g.value(ValueId(r)).producer);
    if (n.def->view || n.outputs.size() != 1 || !n.def->cheap_to_recompute) continue;
    const int d = a.defs_at[r][0];
    int ga = d, gb = -1;
    double best = 0;
    int prev = d;
    for (int u : a.uses_at[r]) {
      double gap = prefix[size_t(u)] - prefix[size_t(prev) + 1];
      if (u - prev >= 3 && gap > best) best = gap, ga = prev, gb = u;
      prev = u;
    }
    if (gb < 0) continue;
    if (a.steps[size_t(d)].seconds >= 2 * cm.transfer_seconds(a.bytes[r])) continue;
    bool live = true;
    for (ValueId in : n.inputs) {
      ValueId u = p.root[size_t(in)];
      const auto& ua = a.uses_at[size_t(u)];
      live = live && !ua.empty() && ua.back() >= gb && a.offloadable[size_t(u)] &&
             !selected[size_t(u)];
    }
    if (!live || ga == gb) continue;
    before[size_t(gb)].push_back(g.value(ValueId(r)).producer);
    selected[r] = true;
    for (ValueId in : n.inputs) feeds[size_t(p.root[size_t(in)])] = true;
    ++count;
  }
  if (count == 0) return 0;
  std::vector<Step> steps;
  for (size_t i = 0; i < a.steps.size(); ++i) {
    for (NodeId ni : before[i]) {
      steps.push_back(make_step(g, p, ni, cm));
      steps.back().recompute = true;
    }
    steps.push_back(std::move(a.steps[i]));
  }
  a.steps = std::move(steps);
  a.index(a.cls.size());
  return count;
}

std::string step_name(const ir::Graph& g, NodeId ni) {
  const ir::Node& n = g.node(ni);
  return n.def->name + (n.scope.empty() ? "" : " in " + n.scope);
}

// Roots per compute step, each value's class, size and whether it may leave the device.
Analysis analyse(const runtime::Program& p, const PlanRequest& req) {
  const ir::Graph& g = *p.graph;
  const size_t nv = g.values().size();
  Analysis a;
  a.g = &g;
  for (const Instr& ins : p.instrs)
    if (ins.kind == InstrKind::kCompute) a.steps.push_back(make_step(g, p, ins.node, req.cost));
  a.cls.assign(nv, Class::kIntermediate);
  a.offloadable.assign(nv, req.activations);
  a.fixed.assign(nv, false);
  for (ValueId f : req.fixed) a.fixed.at(size_t(f)) = true;
  a.bytes.assign(nv, 0);
  std::vector<bool> is_out(nv, false);
  for (ValueId o : p.outputs) is_out[size_t(p.root[size_t(o)])] = true;
  for (size_t v = 0; v < nv; ++v) {
    a.bytes[v] = value_bytes(g, ValueId(v));
    if (g.value(ValueId(v)).kind != ir::ValueKind::kNode) {
      a.cls[v] = Class::kSource;
      a.offloadable[v] = req.params;
      if (a.fixed[v]) a.offloadable[v] = false, a.bytes[v] = 0;  // outside the budget
    } else if (is_out[v]) {
      a.cls[v] = Class::kOutput;
      a.offloadable[v] = req.grads;
    }
  }
  a.index(nv);
  return a;
}

// The largest working set of one step: what it reads and writes plus every value that may not
// move while it is live (sources and outputs to the end of the step).
struct WorkingSet {
  size_t bytes = 0;
  int step = -1;  // the step that sets it
};

WorkingSet largest_working_set(const Analysis& a) {
  const size_t nv = a.cls.size();
  const int n_steps = int(a.steps.size());
  std::vector<int> first(nv, kInf), last(nv, -1);
  for (int i = 0; i < n_steps; ++i) {
    for (auto* list : {&a.steps[size_t(i)].uses, &a.steps[size_t(i)].defs})
      for (ValueId r : *list) {
        first[size_t(r)] = std::min(first[size_t(r)], i);
        last[size_t(r)] = std::max(last[size_t(r)], i);
      }
  }
  std::vector<long long> pinned_diff(static_cast<size_t>(n_steps) + 1, 0);
  for (size_t r = 0; r < nv; ++r) {
    if (a.offloadable[r] || first[r] == kInf) continue;
    int end = a.cls[r] == Class::kIntermediate ? last[r] : n_steps - 1;
    pinned_diff[size_t(first[r])] += (long long)a.bytes[r];
    pinned_diff[size_t(end) + 1] -= (long long)a.bytes[r];
  }
  long long pinned = 0;
  WorkingSet worst;
  for (int i = 0; i < n_steps; ++i) {
    pinned += pinned_diff[size_t(i)];
    size_t ws = size_t(pinned);
    for (auto* list : {&a.steps[size_t(i)].uses, &a.steps[size_t(i)].defs})
      for (ValueId r : *list)
        if (a.offloadable[size_t(r)]) ws += a.bytes[size_t(r)];
    if (worst.step < 0 || ws > worst.bytes) worst = {ws, i};
  }
  return worst;
}

// A value read back before step `at`, issued no earlier than step `lo`.
struct Load {
  ValueId r;
  int at, lo;
};

// What the demand pass decides, per step: the evictions and frees after it, the values it
// allocates, and the device bytes in use; and every load, for prefetch placement.
struct Residency {
  std::vector<std::vector<Instr>> post;
  std::vector<std::vector<ValueId>> allocs;
  std::vector<Load> loads;
  std::vector<size_t> mem_at;
};

// Demand pass (Belady): residency per step; evictions placed right after the victim's last
// touch, loads collected for hoisting.
Residency plan_residency(const Analysis& a, size_t avail,
                         const std::vector<std::pair<ValueId, ir::NodeId>>& not_before) {
  const ir::Graph& g = *a.g;
  const size_t nv = a.cls.size();
  const int n_steps = int(a.steps.size());
  Residency res;
  res.post.resize(static_cast<size_t>(n_steps));
  res.allocs.resize(static_cast<size_t>(n_steps));
  res.mem_at.assign(size_t(n_steps), 0);
  std::vector<bool> on_dev(nv, false), home_valid(nv, false), in_need(nv, false);
  std::vector<int> last_touch(nv, -1);
  for (size_t v = 0; v < nv; ++v) {
    home_valid[v] = a.cls[v] == Class::kSource;
    on_dev[v] = a.fixed[v];  // read where bound
  }
  std::vector<ValueId> resident;
  size_t mem = 0;
  auto drop = [&](ValueId r) {
    on_dev[size_t(r)] = false;
    mem -= a.bytes[size_t(r)];
    resident.erase(std::find(resident.begin(), resident.end(), r));
  };
  for (int i = 0; i < n_steps; ++i) {
    const Step& s = a.steps[size_t(i)];
    size_t add = 0;
    for (auto* list : {&s.uses, &s.defs})
      for (ValueId r : *list) {
        in_need[size_t(r)] = true;
        if (!on_dev[size_t(r)]) add += a.bytes[size_t(r)];
      }
    while (mem + add > avail) {
      ValueId victim = -1;
      int far = -1;
      for (ValueId r : resident) {
        if (in_need[size_t(r)] || !a.offloadable[size_t(r)]) continue;
        int nu = a.next_use(r, i - 1);
        if (nu > far || (nu == far && a.bytes[size_t(r)] > a.bytes[size_t(victim)]))
          far = nu, victim = r;
      }
      HP_CHECK(victim >= 0, "[offload] internal: nothing to evict at step ", i, " (",
               step_name(g, s.node), ")");
      res.post[size_t(last_touch[size_t(victim)])].push_back({InstrKind::kEvict, -1, victim});
      home_valid[size_t(victim)] = true;
      drop(victim);
    }
    for (ValueId r : s.uses) {
      if (on_dev[size_t(r)]) continue;
      HP_CHECK(home_valid[size_t(r)], "[offload] internal: %", r, " is needed by ",
               step_name(g, s.node), " but has no copy");
      int lo = last_touch[size_t(r)] + 1;
      for (const auto& [v, node] : not_before)
        if (v == r)
          for (int k = i - 1; k >= lo; --k)
            if (a.steps[size_t(k)].node == node) {
              lo = k + 1;
              break;
            }
      res.loads.push_back({r, i, lo});
      on_dev[size_t(r)] = true;
      mem += a.bytes[size_t(r)];
      resident.push_back(r);
    }
    for (ValueId r : s.defs) {
      HP_CHECK(!on_dev[size_t(r)], "[offload] internal: %", r, " redefined while live");
      res.allocs[size_t(i)].push_back(r);
      on_dev[size_t(r)] = true;
      home_valid[size_t(r)] = false;
      mem += a.bytes[size_t(r)];
      resident.push_back(r);
    }
    res.mem_at[size_t(i)] = mem;
    for (auto* list : {&s.uses, &s.defs})
      for (ValueId r : *list) {
        in_need[size_t(r)] = false;
        last_touch[size_t(r)] = i;
      }
    for (auto* list : {&s.uses, &s.defs})
      for (ValueId r : *list) {
        if (!on_dev[size_t(r)] || a.next_use(r, i) != kInf || !a.offloadable[size_t(r)]) continue;
        if (a.cls[size_t(r)] == Class::kOutput) {
          res.post[size_t(i)].push_back({InstrKind::kEvict, -1, r});  // its home is the result
          home_valid[size_t(r)] = true;
        } else {
          res.post[size_t(i)].push_back({InstrKind::kFree, -1, r});
          if (a.cls[size_t(r)] == Class::kIntermediate) home_valid[size_t(r)] = false;
        }
        drop(r);
      }
    // Dead values that may not move are still freed after their last use.
    for (auto* list : {&s.uses, &s.defs})
      for (ValueId r : *list)
        if (on_dev[size_t(r)] && a.cls[size_t(r)] == Class::kIntermediate &&
            a.next_use(r, i) == kInf) {
          res.post[size_t(i)].push_back({InstrKind::kFree, -1, r});
          drop(r);
        }
  }
  return res;
}

// Per step, the values whose prefetch is issued before it and those waited for before it.
struct Prefetches {
  std::vector<std::vector<ValueId>> issue, wait;
};

// Hoisting: each load starts as late as it still arrives in time, where memory allows
// (`res.mem_at` gains the bytes of each hoisted load).
Prefetches place_prefetches(const Analysis& a, Residency& res, const CostModel& cm, size_t avail) {
  const size_t n_steps = a.steps.size();
  Prefetches pf{std::vector<std::vector<ValueId>>(n_steps),
                std::vector<std::vector<ValueId>>(n_steps)};
  for (const Load& l : res.loads) {
    const size_t b = a.bytes[size_t(l.r)];
    const double tx = cm.inline_copies ? 0.0 : cm.transfer_seconds(b);
    int j = l.at;
    double covered = 0;
    while (j > l.lo && covered < tx) {
      int t = j - 1;
      if (res.mem_at[size_t(t)] + b > avail) break;
      covered += a.steps[size_t(t)].seconds;
      j = t;
    }
    for (int t = j; t < l.at; ++t) res.mem_at[size_t(t)] += b;
    pf.issue[size_t(j)].push_back(l.r);
    pf.wait[size_t(l.at)].push_back(l.r);
  }
  return pf;
}

// Emission: the instruction list, with waits on write-backs wherever the budget needs their
// memory back, and the per-tier timeline.
class Emitter {
 public:
  Emitter(const Analysis& a, const runtime::Program& p, size_t budget, size_t reserved,
          OffloadPlan& plan)
      : a_(a), budget_(budget), plan_(plan), out_(plan.program), committed_(reserved) {
    const size_t nv = a.cls.size();
    out_.graph = p.graph;
    out_.outputs = p.outputs;
    out_.sources = p.sources;
    out_.root = p.root;
    out_.offset.assign(nv, -1);
    out_.placed_at_run_time = true;
    for (ValueId s : p.sources) host_ += a.bytes[size_t(s)];
    pending_.assign(nv, -1);
    valid_.assign(nv, false);
    has_home_.assign(nv, false);
    for (size_t v = 0; v < nv; ++v) valid_[v] = has_home_[v] = a.cls[v] == Class::kSource;
  }

  // Step i with the prefetches, allocations and waits before it and what follows it.
  void step(int i, const Residency& res, const Prefetches& pf) {
    const ir::Graph& g = *a_.g;
    for (ValueId r : pf.issue[size_t(i)]) prefetch(r);
    for (ValueId r : res.allocs[size_t(i)]) {
      reserve(r);
      valid_[size_t(r)] = false;
      emit({InstrKind::kAlloc, -1, r});
    }
    for (ValueId r : pf.wait[size_t(i)]) wait_for(r);
    emit({InstrKind::kCompute, a_.steps[size_t(i)].node, -1});
    if (a_.steps[size_t(i)].recompute)
      plan_.recompute_flops += ir::node_cost(g, g.node(a_.steps[size_t(i)].node)).flops;
    for (const Instr& ins : res.post[size_t(i)]) release(ins);
  }

 private:
  void emit(Instr ins) {
    out_.instrs.push_back(ins);
    plan_.device_bytes.push_back(committed_);
    plan_.host_bytes.push_back(host_);
    plan_.peak_device = std::max(plan_.peak_device, committed_);
    plan_.peak_host = std::max(plan_.peak_host, host_);
  }
  void wait_for(ValueId r) {
    int t = pending_[size_t(r)];
    if (t < 0) return;
    PlannedTransfer& tr = plan_.transfers[size_t(t)];
    pending_[size_t(r)] = -1;
    if (!tr.to_device) {
      committed_ -= tr.bytes;
      inflight_.erase(std::find(inflight_.begin(), inflight_.end(), r));
    }
    emit({InstrKind::kWait, -1, r});
    tr.wait = int(out_.instrs.size()) - 1;
  }
  void reserve(ValueId r) {
    const size_t b = a_.bytes[size_t(r)];
    while (budget_ != 0 && committed_ + b > budget_ && !inflight_.empty())
      wait_for(inflight_.front());
    HP_CHECK(budget_ == 0 || committed_ + b <= budget_,
             "[offload] internal: plan exceeds the budget at %", r);
    committed_ += b;
  }
  void prefetch(ValueId r) {
    wait_for(r);  // its own write-back must land before it is read back
    reserve(r);
    valid_[size_t(r)] = true;
    emit({InstrKind::kPrefetch, -1, r});
    pending_[size_t(r)] = int(plan_.transfers.size());
    plan_.transfers.push_back({r, a_.bytes[size_t(r)], true, int(out_.instrs.size()) - 1, -1});
    plan_.bytes_to_device += a_.bytes[size_t(r)];
  }
  // A kFree or kEvict after a step: a dirty eviction becomes a write-back in flight.
  void release(const Instr& ins) {
    const ValueId r = ins.value;
    const size_t b = a_.bytes[size_t(r)];
    if (ins.kind == InstrKind::kFree) {
      committed_ -= b;
      if (a_.cls[size_t(r)] == Class::kIntermediate && has_home_[size_t(r)]) {
        host_ -= b;
        has_home_[size_t(r)] = false;
      }
      emit(ins);
    } else if (valid_[size_t(r)]) {  // clean: dropped at once
      committed_ -= b;
      emit(ins);
    } else {
      if (!has_home_[size_t(r)]) host_ += b;
      has_home_[size_t(r)] = valid_[size_t(r)] = true;
      emit(ins);
      inflight_.push_back(r);
      pending_[size_t(r)] = int(plan_.transfers.size());
      plan_.transfers.push_back({r, b, false, int(out_.instrs.size()) - 1, -1});
      plan_.bytes_to_host += b;
    }
  }

  const Analysis& a_;
  const size_t budget_;
  OffloadPlan& plan_;
  runtime::Program& out_;
  size_t committed_, host_ = 0;
  std::deque<ValueId> inflight_;  // write-backs holding device memory until waited
  std::vector<int> pending_;      // transfer index per value
  std::vector<bool> valid_, has_home_;
};

}  // namespace

std::string OffloadPlan::value_name(ValueId v) const {
  const ir::Value& val = program.graph->value(v);
  if (!val.name.empty()) return val.name;
  return hp::detail::cat(
      "%", v,
      val.producer >= 0 ? " (" + step_name(*program.graph, val.producer) + ")" : std::string());
}

size_t unconstrained_peak(const runtime::Program& p, size_t resident_bytes, size_t scratch_bytes) {
  size_t b = p.arena_bytes + p.output_bytes + resident_bytes + scratch_bytes;
  for (ValueId s : p.sources) b += value_bytes(*p.graph, s);
  return b;
}

OffloadPlan plan_offload(const runtime::Program& p, const PlanRequest& req) {
  HP_CHECK(p.graph != nullptr, "[offload] the program has no graph");
  const ir::Graph& g = *p.graph;
  for (ValueId f : req.fixed)
    HP_CHECK(std::find(p.sources.begin(), p.sources.end(), f) != p.sources.end(), "[offload] %", f,
             " is fixed but not a source of the program");
  Analysis a = analyse(p, req);

  OffloadPlan plan;
  plan.budget = req.device_budget;
  plan.resident_bytes = req.resident_bytes;
  plan.scratch_bytes = req.scratch_bytes;
  plan.fixed = req.fixed;
  plan.unconstrained_peak = unconstrained_peak(p, req.resident_bytes, req.scratch_bytes);
  for (ValueId f : req.fixed) plan.unconstrained_peak -= value_bytes(g, f);
  // What never moves: resident state and the kernels' workspace, counted from the start.
  const size_t reserved = req.resident_bytes + req.scratch_bytes;
  if (req.recompute && req.activations && req.device_budget != 0 &&
      req.device_budget < plan.unconstrained_peak)
    plan.recomputed = add_recomputation(a, p, req.cost);

  // The smallest feasible budget: the largest working set of one step plus what may not move.
  const WorkingSet worst = largest_working_set(a);
  plan.min_budget = worst.bytes + reserved;
  if (req.device_budget != 0 && req.device_budget < plan.min_budget) {
    throw OutOfMemory(hp::detail::cat(
        "[offload] device budget of ", format_bytes(req.device_budget), " (", req.device_budget,
        " bytes) cannot be met: the smallest feasible budget is ", format_bytes(plan.min_budget),
        " (", plan.min_budget, " bytes), set by ", step_name(g, a.steps[size_t(worst.step)].node),
        " (", format_bytes(req.resident_bytes), " resident, ", format_bytes(req.scratch_bytes),
        " kernel workspace); the unconstrained peak is ", format_bytes(plan.unconstrained_peak)));
  }
  const size_t avail = req.device_budget == 0 ? std::numeric_limits<size_t>::max() / 2
                                              : req.device_budget - reserved;

  Residency res = plan_residency(a, avail, req.not_before);
  const Prefetches pf = place_prefetches(a, res, req.cost, avail);
  Emitter emitter(a, p, req.device_budget, reserved, plan);
  for (int i = 0; i < int(a.steps.size()); ++i) emitter.step(i, res, pf);
  return plan;
}

SimResult simulate(const OffloadPlan& plan, const CostModel& cost) {
  const runtime::Program& p = plan.program;
  const ir::Graph& g = *p.graph;
  std::vector<int> at(p.instrs.size(), -1);
  for (size_t k = 0; k < plan.transfers.size(); ++k) at[size_t(plan.transfers[k].issue)] = int(k);
  std::vector<double> done(g.values().size(), 0);
  SimResult r;
  double t = 0, link = 0;
  for (size_t k = 0; k < p.instrs.size(); ++k) {
    const Instr& ins = p.instrs[k];
    switch (ins.kind) {
      case InstrKind::kCompute: {
        double c = cost.compute_seconds(ir::node_cost(g, g.node(ins.node)));
        t += c;
        r.compute_s += c;
        break;
      }
      case InstrKind::kPrefetch:
      case InstrKind::kEvict: {
        if (at[k] < 0) break;
        const PlannedTransfer& tr = plan.transfers[size_t(at[k])];
        const double x = cost.transfer_seconds(tr.bytes, tr.to_device);
        r.link_busy_s += x;
        if (cost.inline_copies) {  // on the compute cores: the step waits
          t += x;
          r.stall_s += x;
          done[size_t(ins.value)] = t;
        } else {
          link = std::max(t, link) + x;
          done[size_t(ins.value)] = link;
        }
        break;
      }
      case InstrKind::kWait:
        if (done[size_t(ins.value)] > t) {
          r.stall_s += done[size_t(ins.value)] - t;
          t = done[size_t(ins.value)];
        }
        break;
      case InstrKind::kAlloc:
      case InstrKind::kFree:
        break;
    }
  }
  r.step_s = std::max(t, link);  // write-backs still in flight finish before the step ends
  r.stall_s += r.step_s - t;
  r.peak_device = plan.peak_device;
  return r;
}

}  // namespace hp::memory
