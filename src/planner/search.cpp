// The search: layouts (dp, tp, pp, mesh order) ordered by a compute-only lower bound, whole
// layouts skipped when their lower bound cannot beat the plans kept or their memory floor does
// not fit, every other configuration costed in closed form.
#include "hp/planner/search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "hp/core/error.hpp"

namespace hp::planner {

namespace {

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> d;
  for (int64_t i = 1; i * i <= n; ++i)
    if (n % i == 0) {
      d.push_back(i);
      if (i != n / i) d.push_back(n / i);
    }
  std::sort(d.begin(), d.end());
  return d;
}

// The per-layout choices of the space, admissible structurally (what divides what).
struct Choices {
  std::vector<bool> sp;
  std::vector<Zero> zero;
  std::vector<int64_t> micro_batches;
  std::vector<std::pair<Schedule, int64_t>> schedules;    // with their virtual stages
  std::vector<std::pair<Recompute, int64_t>> recomputes;  // with kFull: blocks recomputed
  std::vector<bool> offloads, act_offloads;
};

Choices choices(const Workload& w, const Space& s, int64_t dp, int64_t tp, int64_t pp) {
  Choices c;
  for (bool v : {false, true})
    if ((!v || tp > 1) && (!s.sp || *s.sp == v)) c.sp.push_back(v);
  for (Zero z : {Zero::kNone, Zero::kOptimizer, Zero::kFull})
    if ((z == Zero::kNone || dp > 1) && (!s.zero || *s.zero == z) &&
        (s.zeros.empty() || std::find(s.zeros.begin(), s.zeros.end(), z) != s.zeros.end()))
      c.zero.push_back(z);
  for (int64_t b : divisors(w.global_batch / dp))
    if ((s.micro_batches.empty() ||
         std::find(s.micro_batches.begin(), s.micro_batches.end(), b) != s.micro_batches.end()) &&
        (!s.one_microbatch || pp > 1 || b == w.global_batch / dp))
      c.micro_batches.push_back(b);
  if (pp == 1) {  // no pipeline: the schedules asked for are the pipelined layouts' choice
    c.schedules.push_back({Schedule::kNone, 1});
  } else {
    const std::vector<Schedule> all = {Schedule::kGpipe, Schedule::k1F1B, Schedule::kInterleaved,
                                       Schedule::kZbH1, Schedule::kZbV};
    for (Schedule k : s.schedules.empty() ? all : s.schedules) {
      if (k == Schedule::kInterleaved) {
        for (int64_t v = 2; v <= s.max_virtual; ++v)
          if ((s.virtual_stages == 0 || v == s.virtual_stages) && pp * v <= w.model.n_layer)
            c.schedules.push_back({k, v});
      } else if (k == Schedule::kZbV) {
        if (2 * pp <= w.model.n_layer) c.schedules.push_back({k, 2});
      } else if (k != Schedule::kNone) {
        c.schedules.push_back({k, 1});
      }
    }
  }
  const std::vector<Recompute> all_rc = {Recompute::kNone, Recompute::kSelective, Recompute::kFull};
  const int64_t blocks = stage_blocks(w.model, pp);
  for (Recompute r : s.recomputes.empty() ? all_rc : s.recomputes) {
    if (r != Recompute::kFull) {
      c.recomputes.push_back({r, 0});
      continue;
    }
    for (int64_t k = 1; k <= blocks; ++k)
      if (s.recompute_blocks == 0 || std::min(s.recompute_blocks, blocks) == k)
        c.recomputes.push_back({r, k});
  }
  c.offloads = s.offloads.empty() ? std::vector<bool>{false, true} : s.offloads;
  c.act_offloads =
      s.activation_offloads.empty() ? std::vector<bool>{false, true} : s.activation_offloads;
  return c;
}

// Interleaved needs the micro-batches per step to be a multiple of pp (as Megatron does).
bool schedule_ok(Schedule k, int64_t m, int64_t pp) {
  return k != Schedule::kInterleaved || m % pp == 0;
}

// Configurations of one layout and order with micro-batch `b`.
int64_t count_mb(const Workload& w, const Choices& ch, int64_t dp, int64_t pp, int64_t b) {
  int64_t schedules = 0;
  for (const auto& [k, v] : ch.schedules)
    schedules += schedule_ok(k, w.global_batch / (dp * b), pp);
  return int64_t(ch.sp.size() * ch.zero.size() * ch.recomputes.size() * ch.offloads.size() *
                 ch.act_offloads.size()) *
         schedules;
}

// Configurations of one layout and order.
int64_t count(const Workload& w, const Choices& ch, int64_t dp, int64_t pp) {
  int64_t n = 0;
  for (int64_t b : ch.micro_batches) n += count_mb(w, ch, dp, pp, b);
  return n;
}

// Orders of the three axes that differ once axes of size 1 are dropped.
std::vector<std::string> orders(const Space& s, int64_t dp, int64_t tp, int64_t pp) {
  if (!s.order.empty()) return {s.order};
  std::vector<std::string> out, keys;
  for (std::string o : {"dpt", "dtp", "pdt", "ptd", "tdp", "tpd"}) {
    std::string key;
    for (char a : o)
      if ((a == 'd' ? dp : a == 'p' ? pp : tp) > 1) key += a;
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    if (s.pipeline_outermost && pp > 1 && key[0] != 'p') continue;
    keys.push_back(key);
    out.push_back(o);
  }
  return out;
}

// No configuration of the layout takes less: its compute at full sp, without recomputation.
double compute_floor(const Workload& w, const Cluster& cl, const Efficiency& eff, int64_t dp,
                     int64_t tp, int64_t pp) {
  const BlockCost bc = block_cost(w.model, w.seq, cl.element_bytes);
  const double tokens = double(w.global_batch / dp * w.seq), t = double(tp);
  const double blocks = double(stage_blocks(w.model, pp));
  const double per_token =
      bc.attn_flops / t / (cl.peak_flops * eff.attention) +
      (bc.elementwise_whole + bc.elementwise_split) / t / (cl.memory_bandwidth * eff.memory);
  // GEMMs at the best share any micro-batch size reaches (a measured table: its best shape).
  Efficiency best = eff;
  if (!eff.gemm_shapes.empty()) {
    best.gemm = 0;
    for (const GemmShape& g : eff.gemm_shapes) best.gemm = std::max(best.gemm, g.share);
    best.gemm_shapes.clear();
  }
  const double head = 6 * double(w.model.d_model * w.model.vocab) / t / (cl.peak_flops * best.gemm);
  // Pipeline stages at their measured efficiency (estimate's `cut`), the better one.
  const double cut = pp > 1 ? std::min({1.0, eff.pipeline_fused, eff.pipeline_split}) : 1;
  return cut *
         (3 * blocks * (tokens * per_token + block_gemm_s(bc, tokens, t, cl.peak_flops, best)) +
          tokens * head);
}

// No configuration of the layout and order (`c`) with `m` micro-batches per step takes less:
// its compute, the tp collectives and pipeline messages it cannot avoid (collectives are
// affine in bytes, so one message of all the bytes is the least), the shortest bubble of the
// schedules searched and the gradients' reduce-scatter. m = 0: the fewest micro-batches'
// latencies and the most micro-batches' bubble of the layout.
double time_floor(const Workload& w, const Cluster& cl, const Efficiency& eff, const Choices& ch,
                  const Config& c, double compute, int64_t m) {
  const int64_t m_max = w.global_batch / (c.dp * ch.micro_batches.front());
  const double messages = m > 0 ? double(m) : 1;
  const double bytes = double(w.global_batch / c.dp * w.seq) * double(w.model.d_model) * 2 /
                       messages;  // of one message
  const double blocks = double(stage_blocks(w.model, c.pp));
  double t = compute;
  if (c.tp > 1)
    t += messages * 4 * blocks * all_reduce_s(cl, c.tp, c.stride('t'), bytes, eff.network);
  if (c.pp > 1) {
    const Tier& tier = p2p_tier(cl, c.pp, c.stride('p'));
    t += messages * 2 * (tier.latency + bytes / double(c.tp) / (tier.bandwidth * eff.network));
  }
  double bubble = INFINITY;
  for (const auto& [k, v] : ch.schedules)
    bubble = std::min(bubble, bubble_microbatches(k, c.pp, v));
  t += bubble * compute / double(m > 0 ? m : m_max);
  if (c.dp > 1)
    t += all_gather_s(cl, c.dp, c.stride('d'), 4 * device_params(w.model, c.tp, c.pp), eff.network);
  return t;
}

// No configuration of the layout needs less memory: one micro-batch in flight, the smallest
// micro-batch, the most sparing sp and offload the space allows, the least of its sharding and
// recomputation choices.
double memory_floor_of(const Workload& w, const Choices& ch, Config c, double element_bytes,
                       bool scores_in_memory) {
  c.sp = ch.sp.back();
  c.micro_batch = ch.micro_batches.front();
  c.offload = ch.offloads.back();
  c.offload_activations = ch.act_offloads.back();
  double best = INFINITY;
  for (Zero z : ch.zero)
    for (const auto& [r, k] : ch.recomputes) {
      c.zero = z, c.recompute = r, c.recompute_blocks = k;
      best = std::min(best, memory_floor(w, c, element_bytes, scores_in_memory).total());
    }
  return best;
}

// Faster first; at equal step time, what moves less over the host link, then less memory.
bool better(const Plan& a, const Plan& b) {
  if (a.estimate.step_s != b.estimate.step_s) return a.estimate.step_s < b.estimate.step_s;
  const int a_off = a.config.offload + a.config.offload_activations;
  const int b_off = b.config.offload + b.config.offload_activations;
  if (a_off != b_off) return a_off < b_off;
  if (a.estimate.memory.total() != b.estimate.memory.total())
    return a.estimate.memory.total() < b.estimate.memory.total();
  return a.config.strategy() < b.config.strategy();
}

struct Best {
  int64_t top;
  std::vector<Plan> plans;  // sorted, at most `top`
  double bound() const {
    return int64_t(plans.size()) < top ? INFINITY : plans.back().estimate.step_s;
  }
  void offer(Plan p) {
    if (int64_t(plans.size()) == top && !better(p, plans.back())) return;
    plans.insert(std::upper_bound(plans.begin(), plans.end(), p, better), std::move(p));
    if (int64_t(plans.size()) > top) plans.pop_back();
  }
};

// Every configuration of one layout and order (`c`), a micro-batch size at a time, skipping the
// sizes whose floor cannot beat the plans kept.
void search_layout(const Workload& w, const Cluster& cl, const Choices& ch, Config c,
                   double compute, const SearchOptions& o, Best& best, SearchResult& r) {
  for (int64_t b : ch.micro_batches) {
    const int64_t m = w.global_batch / (c.dp * b);
    if (o.prune && time_floor(w, cl, o.efficiency, ch, c, compute, m) > best.bound()) {
      r.covered += count_mb(w, ch, c.dp, c.pp, b);
      continue;
    }
    for (const auto& [k, v] : ch.schedules) {
      if (!schedule_ok(k, m, c.pp)) continue;
      for (bool sp : ch.sp)
        for (Zero z : ch.zero)
          for (const auto& [rc, blocks] : ch.recomputes)
            for (bool off : ch.offloads)
              for (bool act : ch.act_offloads) {
                c.sp = sp, c.zero = z, c.micro_batch = b, c.schedule = k, c.virtual_stages = v;
                c.recompute = rc, c.recompute_blocks = blocks, c.offload = off;
                c.offload_activations = act;
                ++r.covered, ++r.evaluated;
                Plan p{c, estimate(w, cl, c, o.efficiency)};
                if (!p.estimate.fits) continue;
                ++r.fitting;
                best.offer(std::move(p));
              }
    }
  }
}

}  // namespace

SearchResult search(const Workload& w, const Cluster& cl, const Space& s, const SearchOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  HP_CHECK(o.top >= 1, "[planner] top must be >= 1, got ", o.top);
  HP_CHECK(w.global_batch >= 1 && w.seq >= 1, "[planner] global batch and sequence must be >= 1");
  const int64_t n = cl.devices;
  struct Layout {
    int64_t dp, tp, pp;
    double compute;
  };
  std::vector<Layout> layouts;
  for (int64_t tp : divisors(n))
    for (int64_t pp : divisors(n / tp)) {
      const int64_t dp = n / tp / pp;
      if (s.dp && (dp != s.dp || tp != s.tp || pp != s.pp)) continue;
      if (w.global_batch % dp != 0 || w.model.n_head % tp != 0 || pp > w.model.n_layer) continue;
      if (s.pipeline_alone && pp > 1 && pp != n) continue;
      layouts.push_back({dp, tp, pp, compute_floor(w, cl, o.efficiency, dp, tp, pp)});
    }
  std::sort(layouts.begin(), layouts.end(),
            [](const Layout& a, const Layout& b) { return a.compute < b.compute; });
  Best best{o.top, {}};
  SearchResult r;
  const double usable = o.efficiency.usable_memory * cl.memory_bytes;
  for (const Layout& l : layouts) {
    const Choices ch = choices(w, s, l.dp, l.tp, l.pp);
    if (ch.sp.empty() || ch.zero.empty() || ch.micro_batches.empty() || ch.schedules.empty())
      continue;
    Config c;
    c.dp = l.dp, c.tp = l.tp, c.pp = l.pp;
    c.schedule = ch.schedules.front().first, c.virtual_stages = ch.schedules.front().second;
    const bool too_big = o.prune && memory_floor_of(w, ch, c, cl.element_bytes,
                                                    o.efficiency.attention_in_memory) > usable;
    for (const std::string& order : orders(s, l.dp, l.tp, l.pp)) {
      c.order = order;
      if (o.prune &&
          (too_big || time_floor(w, cl, o.efficiency, ch, c, l.compute, 0) > best.bound())) {
        r.covered += count(w, ch, l.dp, l.pp);
        continue;
      }
      search_layout(w, cl, ch, c, l.compute, o, best, r);
    }
  }
  r.plans = std::move(best.plans);
  r.search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace hp::planner
