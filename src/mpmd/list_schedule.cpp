// The list scheduler behind every generated compute order: an event loop over ranks that starts,
// on each idle rank, the ready action its policy prefers. See list_schedule.hpp for the policy.
// Not an exact optimiser: the synthesiser (synth.cpp) searches over its policies.
#include "hp/mpmd/list_schedule.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

#include "hp/core/error.hpp"

namespace hp::mpmd {

ListCosts ListCosts::unit(const ChunkGraph& g) {
  ListCosts c;
  c.f.assign(size_t(g.chunks()), 1.0);
  c.b = c.f;
  c.w = c.f;
  return c;
}

namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();

struct Candidate {
  ActionKind kind = ActionKind::kF;
  int chunk = -1;
  int mb = -1;
  double ready = kNever;
  bool valid() const { return chunk >= 0; }
};

class Engine {
 public:
  Engine(const ChunkGraph& g, int m, const ListPolicy& p, const ListCosts& c)
      : g_(g), m_(m), pol_(p), cost_(c), succs_(g.succs()) {
    size_t n = size_t(g.chunks());
    nf_.assign(n, 0), nb_.assign(n, 0), nw_.assign(n, 0);
    f_end_.assign(n, std::vector<double>(size_t(m), kNever));
    b_end_ = f_end_;
    in_flight_.assign(size_t(g.ranks), 0), pending_w_.assign(size_t(g.ranks), 0);
    held_ = in_flight_;
    busy_.assign(size_t(g.ranks), false);
    last_.assign(size_t(g.ranks), ActionKind::kB);
    for (int r = 0; r < g.ranks; ++r) on_rank_.push_back(g.chunks_on(r));
    out_.resize(size_t(g.ranks));
  }

  std::vector<std::vector<Action>> run();

 private:
  struct Running {
    double end;
    int rank;
    Candidate c;
  };
  double delay(int from, int to) const {
    if (g_.rank_of[size_t(from)] == g_.rank_of[size_t(to)] || !cost_.delay) return 0;
    return cost_.delay(from, to);
  }
  double duration(const Candidate& c) const {
    size_t k = size_t(c.chunk);
    if (c.kind == ActionKind::kF) return cost_.f[k];
    if (c.kind == ActionKind::kB) return cost_.b[k];
    if (c.kind == ActionKind::kW) return cost_.w[k];
    return cost_.b[k] + cost_.w[k];
  }
  Candidate forward(int c) const;
  Candidate backward(int c) const;
  Candidate weight(int c) const;
  static bool under(const std::vector<int>& cap, int r, int count) {
    return size_t(r) >= cap.size() || cap[size_t(r)] <= 0 || count < cap[size_t(r)];
  }
  bool cap_allows(int r) const {
    return under(pol_.cap, r, in_flight_[size_t(r)]) && under(pol_.hold_cap, r, held_[size_t(r)]);
  }
  // Priority of a candidate: smaller first (see ListPolicy::round).
  std::tuple<int, int, int> key(const Candidate& c) const {
    int round = std::max(1, pol_.round);
    int depth = c.kind == ActionKind::kF ? c.chunk : -c.chunk;
    if (round == 1) return {c.mb, depth, 0};
    // A last partial round joins the one before it, so that no round is shorter than `round`
    // (a short round sends its micro-batches back around before the rank has other work).
    int index = std::min(c.mb / round, std::max(0, m_ / round - 1));
    return {index, depth, c.mb - index * round};
  }
  // The action rank r should start at `now` (invalid when none), and the earliest future time
  // at which one of its candidates becomes ready (in `next`).
  Candidate pick(int r, double now, bool ignore_cap, double& next) const;
  void start(int r, const Candidate& c, double now);
  void finish(const Running& x);

  const ChunkGraph& g_;
  int m_;
  const ListPolicy& pol_;
  const ListCosts& cost_;
  std::vector<std::vector<int>> succs_, on_rank_;
  std::vector<int> nf_, nb_, nw_, in_flight_, held_, pending_w_;
  std::vector<std::vector<double>> f_end_, b_end_;
  std::vector<bool> busy_;
  std::vector<ActionKind> last_;  // per rank: the last F, B or BW started
  std::vector<Running> running_;
  std::vector<std::vector<Action>> out_;
};

Candidate Engine::forward(int c) const {
  Candidate x{ActionKind::kF, c, nf_[size_t(c)], 0.0};
  if (x.mb >= m_) return {};
  for (int d : g_.preds[size_t(c)])
    x.ready = std::max(x.ready, f_end_[size_t(d)][size_t(x.mb)] + delay(d, c));
  return x;
}

Candidate Engine::backward(int c) const {
  ActionKind k = pol_.split_backward ? ActionKind::kB : ActionKind::kBW;
  Candidate x{k, c, nb_[size_t(c)], 0.0};
  if (x.mb >= m_ || x.mb >= nf_[size_t(c)]) return {};
  x.ready = f_end_[size_t(c)][size_t(x.mb)];
  for (int s : succs_[size_t(c)])
    x.ready = std::max(x.ready, b_end_[size_t(s)][size_t(x.mb)] + delay(s, c));
  return x;
}

Candidate Engine::weight(int c) const {
  Candidate x{ActionKind::kW, c, nw_[size_t(c)], 0.0};
  if (!pol_.split_backward || x.mb >= nb_[size_t(c)]) return {};
  x.ready = b_end_[size_t(c)][size_t(x.mb)];
  return x;
}

Candidate Engine::pick(int r, double now, bool ignore_cap, double& next) const {
  Candidate best_f, best_b, best_w;
  auto better = [&](const Candidate& a, const Candidate& b) {
    return !b.valid() || key(a) < key(b);
  };
  bool f_ok = ignore_cap || cap_allows(r);
  for (int c : on_rank_[size_t(r)]) {
    Candidate f = f_ok ? forward(c) : Candidate{}, b = backward(c), w = weight(c);
    for (const Candidate* x : {&f, &b, &w})
      if (x->valid() && x->ready > now) next = std::min(next, x->ready);
    if (f.valid() && f.ready <= now && better(f, best_f)) best_f = f;
    if (b.valid() && b.ready <= now && better(b, best_b)) best_b = b;
    if (w.valid() && w.ready <= now && better(w, best_w)) best_w = w;
  }
  size_t i = size_t(r);
  if (best_w.valid() && i < pol_.w_lag.size() && pol_.w_lag[i] >= 0 &&
      pending_w_[i] > pol_.w_lag[i])
    return best_w;
  bool ff = i < pol_.forward_first.size() && pol_.forward_first[i];
  if (pol_.alternate && best_f.valid() && best_b.valid()) ff = last_[i] != ActionKind::kF;
  const Candidate& first = ff ? best_f : best_b;
  const Candidate& second = ff ? best_b : best_f;
  if (first.valid()) return first;
  if (second.valid()) return second;
  return best_w;
}

void Engine::start(int r, const Candidate& c, double now) {
  Action a;
  a.kind = c.kind;
  a.chunk = c.chunk;
  a.microbatch = c.mb;
  out_[size_t(r)].push_back(a);
  if (c.kind != ActionKind::kW) last_[size_t(r)] = c.kind;
  size_t k = size_t(c.chunk);
  if (c.kind == ActionKind::kF) ++nf_[k], ++in_flight_[size_t(r)], ++held_[size_t(r)];
  if (c.kind == ActionKind::kB || c.kind == ActionKind::kBW) ++nb_[k];
  if (c.kind == ActionKind::kW) ++nw_[k], --pending_w_[size_t(r)];
  busy_[size_t(r)] = true;
  running_.push_back({now + duration(c), r, c});
}

void Engine::finish(const Running& x) {
  size_t k = size_t(x.c.chunk), mb = size_t(x.c.mb), r = size_t(x.rank);
  busy_[r] = false;
  if (x.c.kind == ActionKind::kF) f_end_[k][mb] = x.end;
  if (x.c.kind == ActionKind::kB || x.c.kind == ActionKind::kBW) b_end_[k][mb] = x.end;
  if (x.c.kind == ActionKind::kB) ++pending_w_[r];
  if (x.c.kind == ActionKind::kB || x.c.kind == ActionKind::kBW) --in_flight_[r];
  if (x.c.kind == ActionKind::kW || x.c.kind == ActionKind::kBW) --held_[r];
}

std::vector<std::vector<Action>> Engine::run() {
  size_t total = size_t(m_) * size_t(g_.chunks()) * (pol_.split_backward ? 3 : 2), done = 0;
  double now = 0;
  while (done < total) {
    double next = kNever;
    for (int r = 0; r < g_.ranks; ++r) {
      if (busy_[size_t(r)]) continue;
      Candidate c = pick(r, now, false, next);
      if (c.valid()) start(r, c, now);
    }
    if (running_.empty() && next == kNever) {
      // Every rank waits on its cap: exceed it on the rank whose forward is most urgent.
      int best_r = -1;
      Candidate best;
      for (int r = 0; r < g_.ranks; ++r) {
        double ignored = kNever;
        Candidate c = pick(r, now, true, ignored);
        if (c.valid() && (!best.valid() || c.mb < best.mb)) best = c, best_r = r;
      }
      HP_CHECK(best.valid(), "[mpmd] list scheduling stalled with ", total - done,
               " actions left: the chunk graph has no ready action");
      start(best_r, best, now);
    }
    for (const auto& x : running_) next = std::min(next, x.end);
    now = next;
    std::vector<Running> still;
    for (const auto& x : running_) {
      if (x.end <= now) {
        finish(x);
        ++done;
      } else {
        still.push_back(x);
      }
    }
    running_ = std::move(still);
  }
  return std::move(out_);
}

}  // namespace

std::vector<std::vector<Action>> list_schedule(const ChunkGraph& g, int microbatches,
                                               const ListPolicy& policy, const ListCosts& costs) {
  g.check();
  HP_CHECK(microbatches >= 1, "[mpmd] list scheduling needs at least one micro-batch, got ",
           microbatches);
  size_t n = size_t(g.chunks());
  HP_CHECK(costs.f.size() == n && costs.b.size() == n && costs.w.size() == n,
           "[mpmd] list scheduling: costs for ", costs.f.size(), " chunks, graph has ", n);
  return Engine(g, microbatches, policy, costs).run();
}

}  // namespace hp::mpmd
