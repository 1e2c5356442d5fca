// Redistribution planner: Dijkstra over layouts, one edge per one-axis collective (or a general
// send/recv to the target), each costed with alpha-beta on the level its axis crosses and the
// exact bytes the busiest rank receives under uneven splits.
// Not an executor and not a propagation pass: it plans the move of one tensor.
#include "hp/shard/redistribute.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <queue>
#include <sstream>
#include <tuple>

#include "hp/core/error.hpp"

namespace hp::shard {

std::string step_kind_name(StepKind k) {
  switch (k) {
    case StepKind::kSlice:
      return "slice";
    case StepKind::kMakePartial:
      return "make_partial";
    case StepKind::kAllGather:
      return "all_gather";
    case StepKind::kReduceScatter:
      return "reduce_scatter";
    case StepKind::kAllReduce:
      return "all_reduce";
    case StepKind::kAllToAll:
      return "all_to_all";
    case StepKind::kSendRecv:
      return "send_recv";
  }
  return "?";
}

namespace {

std::string bytes_str(int64_t b) {
  char buf[32];
  if (b < 1024) {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(b));
  } else if (b < (int64_t(1) << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", double(b) / 1024);
  } else if (b < (int64_t(1) << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / double(1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1 << 30));
  }
  return buf;
}

std::string time_str(double s) {
  char buf[32];
  if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.2f us", s * 1e6);
  } else if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.3f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  }
  return buf;
}

}  // namespace

std::string Step::str() const {
  std::ostringstream os;
  os << step_kind_name(kind) << "(";
  if (!axis.empty()) os << axis;
  if (kind == StepKind::kAllToAll) {
    os << ", dim " << src_dim << " -> " << dim;
  } else if (dim >= 0) {
    os << ", dim " << dim;
  }
  os << "): " << before.str() << " -> " << after.str() << "  " << bytes_str(bytes) << "  "
     << time_str(time);
  return os.str();
}

std::string Plan::str() const {
  std::ostringstream os;
  os << "redistribute " << shape_str(shape) << " x " << elem_bytes << " B: " << from.str() << " -> "
     << to.str() << "\n";
  for (size_t i = 0; i < steps.size(); ++i) os << "  " << i + 1 << ". " << steps[i].str() << "\n";
  if (steps.empty()) os << "  (nothing to do)\n";
  os << "  total " << bytes_str(bytes) << " " << time_str(time) << "; lower bound "
     << bytes_str(lower_bound_bytes) << " " << time_str(lower_bound) << "\n";
  return os.str();
}

namespace {

// Meshes up to this size count send/recv messages exactly (O(devices^2) box intersections).
constexpr int64_t kExactPeers = 256;

// Everything one search needs, with per-layout boxes cached (layouts recur across edges).
class Search {
 public:
  Search(const Shape& shape, int64_t elem_bytes, const Mesh& mesh, const Topology& topo)
      : shape_(shape), eb_(elem_bytes), mesh_(mesh) {
    for (const auto& a : mesh.axis_names()) levels_.push_back(&topo.axis_level(mesh, a));
  }

  const std::vector<Box>& boxes(const Layout& l) {
    auto [it, fresh] = cache_.try_emplace(l.str());
    if (fresh) {
      for (int64_t p = 0; p < mesh_.size(); ++p) {
        it->second.push_back(local_box_at(shape_, l, mesh_, p));
      }
    }
    return it->second;
  }

  const LinkLevel& level(const std::string& axis) const { return *levels_[mesh_.axis_index(axis)]; }

  // Bytes received by the busiest rank when each rank receives recv(before_r, after_r) elements.
  template <typename F>
  int64_t max_recv(const Layout& before, const Layout& after, F recv) {
    const auto& b = boxes(before);
    const auto& a = boxes(after);
    int64_t m = 0;
    for (size_t p = 0; p < b.size(); ++p) m = std::max(m, recv(b[p], a[p]));
    return checked_mul(m, eb_, "redistribute bytes");
  }

  // Fills bytes and time of a step whose before/after/kind/axis are set.
  void cost(Step& s) {
    if (s.kind == StepKind::kSlice || s.kind == StepKind::kMakePartial) return;
    auto fresh = [](const Box& b, const Box& a) { return a.numel() - intersect(a, b).numel(); };
    if (s.kind == StepKind::kSendRecv) {
      s.bytes = max_recv(s.before, s.after, fresh);
      if (s.bytes == 0) return;
      // The slowest link among the axes whose placement changes; messages: the most distinct
      // pieces any rank needs (exact up to kExactPeers devices, else every combination of the
      // changed axes).
      int64_t combos = 1;
      const LinkLevel* slow = nullptr;
      for (const auto& a : mesh_.axis_names()) {
        if (placement(s.before, a) == placement(s.after, a)) continue;
        combos *= mesh_.axis_size(a);
        const LinkLevel& l = level(a);
        if (!slow || l.bandwidth < slow->bandwidth) slow = &l;
      }
      if (!slow) return;
      const int64_t peers =
          mesh_.size() <= kExactPeers ? max_sources(s.before, s.after) + 1 : combos;
      s.time = double(peers - 1) * slow->latency + double(s.bytes) / slow->bandwidth;
      return;
    }
    const int64_t n = mesh_.axis_size(s.axis);
    if (n == 1) return;
    const LinkLevel& l = level(s.axis);
    int64_t messages = n - 1;
    switch (s.kind) {
      case StepKind::kAllGather:
        s.bytes = max_recv(s.before, s.after,
                           [](const Box& b, const Box& a) { return a.numel() - b.numel(); });
        break;
      case StepKind::kReduceScatter:
        s.bytes = max_recv(s.before, s.after,
                           [](const Box& b, const Box& a) { return b.numel() - a.numel(); });
        break;
      case StepKind::kAllReduce:
        // Ring all-reduce: a reduce-scatter then an all-gather of the same piece.
        s.bytes = max_recv(s.before, s.after, [n](const Box& b, const Box&) {
          const int64_t t = checked_mul(2 * (n - 1), b.numel(), "all-reduce bytes");
          return t / n + (t % n != 0 ? 1 : 0);  // ceil without overflowing
        });
        messages = 2 * (n - 1);
        break;
      case StepKind::kAllToAll:
        s.bytes = max_recv(s.before, s.after, fresh);
        break;
      default:
        break;
    }
    s.time = double(messages) * l.latency + double(s.bytes) / l.bandwidth;
  }

  // The most distinct pieces of `before` (other than its own) any device copies from under
  // send/recv; replicas of a piece count once. Partial layouts only read the same addend.
  int64_t max_sources(const Layout& before, const Layout& after) {
    const auto& b = boxes(before);
    const auto& a = boxes(after);
    int64_t most = 0;
    for (int64_t p = 0; p < mesh_.size(); ++p) {
      const std::vector<int64_t> c = mesh_.coords_at(p);
      std::vector<Box> seen;
      for (int64_t q = 0; q < mesh_.size(); ++q) {
        if (q == p) continue;
        const std::vector<int64_t> cq = mesh_.coords_at(q);
        bool same = true;
        for (const auto& ax : before.partial) {
          same = same && c[mesh_.axis_index(ax)] == cq[mesh_.axis_index(ax)];
        }
        const Box piece = intersect(b[size_t(q)], a[size_t(p)]);
        if (!same || piece.numel() == 0 || b[size_t(p)].contains(piece)) continue;
        if (std::find(seen.begin(), seen.end(), b[size_t(q)]) == seen.end()) {
          seen.push_back(b[size_t(q)]);
        }
      }
      most = std::max(most, int64_t(seen.size()));
    }
    return most;
  }

  // Where an axis sits in a layout: "d<dim>.<position>", "p" (partial) or "r" (unused).
  static std::string placement(const Layout& l, const std::string& axis) {
    std::ostringstream os;
    const int64_t d = l.dim_of(axis);
    if (l.is_partial(axis)) {
      os << 'p' << reduce_op_name(l.reduce);
    } else if (d < 0) {
      os << 'r';
    } else {
      const auto& v = l.dims[size_t(d)];
      os << 'd' << d << '.' << (std::find(v.begin(), v.end(), axis) - v.begin());
    }
    return os.str();
  }

  // Every step out of `x` toward `to` (make_partial only onto axes partial in `to`).
  std::vector<Step> edges(const Layout& x, const Layout& to, const PlanOptions& opt) {
    std::vector<Step> out;
    auto add = [&](StepKind k, const std::string& axis, int64_t dim, int64_t src, Layout after) {
      after.normalize();
      Step s;
      s.kind = k;
      s.axis = axis;
      s.dim = dim;
      s.src_dim = src;
      s.before = x;
      s.after = std::move(after);
      cost(s);
      out.push_back(std::move(s));
    };
    const size_t rank = x.rank();
    const bool partial_ok = x.partial.empty() || x.reduce == to.reduce;
    for (const auto& a : mesh_.axis_names()) {
      const int64_t d = x.dim_of(a);
      if (x.is_unused(a)) {
        for (size_t e = 0; e < rank; ++e) {
          Layout y = x;
          y.dims[e].push_back(a);
          add(StepKind::kSlice, a, int64_t(e), -1, y);
        }
        if (to.is_partial(a) && partial_ok) {
          Layout y = x;
          y.partial.push_back(a);
          y.reduce = to.reduce;
          add(StepKind::kMakePartial, a, -1, -1, y);
        }
      } else if (d >= 0 && x.dims[size_t(d)].back() == a) {
        Layout base = x;
        base.dims[size_t(d)].pop_back();
        add(StepKind::kAllGather, a, d, -1, base);
        for (size_t e = 0; e < rank; ++e) {
          if (int64_t(e) == d) continue;
          Layout y = base;
          y.dims[e].push_back(a);
          add(StepKind::kAllToAll, a, int64_t(e), d, y);
        }
        if (to.is_partial(a) && partial_ok) {
          Layout y = base;
          y.partial.push_back(a);
          y.reduce = to.reduce;
          add(StepKind::kMakePartial, a, d, -1, y);
        }
      } else if (x.is_partial(a)) {
        Layout base = x;
        base.partial.erase(std::find(base.partial.begin(), base.partial.end(), a));
        add(StepKind::kAllReduce, a, -1, -1, base);
        for (size_t e = 0; e < rank; ++e) {
          Layout y = base;
          y.dims[e].push_back(a);
          add(StepKind::kReduceScatter, a, int64_t(e), -1, y);
        }
      }
    }
    const bool same_partial =
        x.partial == to.partial && (x.partial.empty() || x.reduce == to.reduce);
    if (opt.allow_send_recv && same_partial && !(x == to)) add(StepKind::kSendRecv, "", -1, -1, to);
    return out;
  }

  LowerBound lower_bound(const Layout& from, const Layout& to) {
    // Partial axes of `from` that `to` does not keep must be reduced: every element a rank ends
    // with then needs data from others. Partial axes `to` adds let a group of ranks share the
    // work (the others may hold the identity), so only the group's average is a bound.
    bool reduce = false;
    for (const auto& a : from.partial) {
      const bool kept = to.is_partial(a) && to.reduce == from.reduce;
      if (!kept && mesh_.axis_size(a) > 1) reduce = true;
    }
    std::vector<std::string> added;
    for (const auto& a : to.partial) {
      const bool had = from.is_partial(a) && to.reduce == from.reduce;
      if (!had && mesh_.axis_size(a) > 1) added.push_back(a);
    }
    const auto& fb = boxes(from);
    const auto& tb = boxes(to);
    int64_t need = 0;
    for (size_t p = 0; p < fb.size(); ++p) {
      const int64_t n = tb[p].numel();
      if (added.empty()) {
        need = std::max(need, reduce ? n : n - intersect(fb[p], tb[p]).numel());
        continue;
      }
      const std::vector<int> group = mesh_.group(mesh_.ranks()[p], added);
      int64_t held = 0;  // an upper bound on what the group holds already (overlaps counted twice)
      for (int r : group) held += intersect(fb[size_t(mesh_.position(r))], tb[p]).numel();
      const int64_t group_need = reduce ? n : std::max<int64_t>(0, n - held);
      const int64_t g = int64_t(group.size());
      need = std::max(need, (group_need + g - 1) / g);
    }
    LowerBound lb;
    lb.bytes = checked_mul(need, eb_, "redistribute bytes");
    if (lb.bytes == 0) return lb;
    // Whatever route the data takes, no rank receives faster than its fastest link.
    double bw = 0, lat = 0;
    bool first = true;
    for (size_t i = 0; i < mesh_.ndim(); ++i) {
      if (mesh_.sizes()[i] == 1) continue;
      bw = std::max(bw, levels_[i]->bandwidth);
      lat = first ? levels_[i]->latency : std::min(lat, levels_[i]->latency);
      first = false;
    }
    if (bw > 0) lb.time = lat + double(lb.bytes) / bw;
    return lb;
  }

 private:
  const Shape& shape_;
  int64_t eb_;
  const Mesh& mesh_;
  std::vector<const LinkLevel*> levels_;
  std::map<std::string, std::vector<Box>> cache_;
};

// Send/recv tie-break weight: on equal time, a plan of named collectives beats a permutation.
constexpr int64_t kSendRecvWeight = 1000;

void check_layout(const Layout& l, const Shape& shape, const Mesh& mesh, const char* which) {
  HP_CHECK(l.rank() == shape.size(), "[redistribute] ", which, " layout ", l.str(), " has ",
           l.rank(), " dims but the tensor is ", shape_str(shape));
  l.check(mesh);
}

// Time in integer femtoseconds, so that equal-cost paths compare equal and ties go to fewer steps.
int64_t quantize(double t) {
  return std::llround(t * 1e15);
}

}  // namespace

LowerBound redistribution_lower_bound(const Shape& global, int64_t elem_bytes, const Layout& from,
                                      const Layout& to, const Mesh& mesh, const Topology& topo) {
  check_layout(from, global, mesh, "source");
  check_layout(to, global, mesh, "target");
  Search s(global, elem_bytes, mesh, topo);
  Layout a = from, b = to;
  a.normalize();
  b.normalize();
  return s.lower_bound(a, b);
}

Plan plan_redistribution(const Shape& global, int64_t elem_bytes, const Layout& from,
                         const Layout& to, const Mesh& mesh, const Topology& topo,
                         const PlanOptions& options) {
  HP_CHECK(elem_bytes > 0, "[redistribute] element size ", elem_bytes);
  check_layout(from, global, mesh, "source");
  check_layout(to, global, mesh, "target");
  Plan plan;
  plan.shape = global;
  plan.elem_bytes = elem_bytes;
  plan.from = from;
  plan.to = to;
  plan.from.normalize();
  plan.to.normalize();
  Search search(global, elem_bytes, mesh, topo);
  const LowerBound lb = search.lower_bound(plan.from, plan.to);
  plan.lower_bound_bytes = lb.bytes;
  plan.lower_bound = lb.time;
  if (plan.from == plan.to) return plan;

  struct Entry {
    int64_t cost;
    int64_t steps;
    Layout layout;
    int64_t parent;  // index into `done`, -1 at the source
    Step step;       // the step that reached this layout
  };
  using Key = std::pair<int64_t, int64_t>;  // (cost, weighted steps)
  std::map<std::string, Key> best;
  std::vector<Entry> done;  // settled entries, referred to by index
  std::map<std::string, bool> settled;
  auto cmp = [](const Entry& a, const Entry& b) {
    return std::tie(a.cost, a.steps) > std::tie(b.cost, b.steps);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> queue(cmp);
  queue.push({0, 0, plan.from, -1, {}});
  best[plan.from.str()] = {0, 0};
  const std::string target = plan.to.str();
  while (!queue.empty()) {
    Entry e = queue.top();
    queue.pop();
    const std::string key = e.layout.str();
    if (settled[key]) continue;
    settled[key] = true;
    done.push_back(e);
    const int64_t index = int64_t(done.size()) - 1;
    if (key == target) {
      std::vector<Step> rev;
      for (int64_t i = index; done[size_t(i)].parent >= 0; i = done[size_t(i)].parent) {
        rev.push_back(done[size_t(i)].step);
      }
      plan.steps.assign(rev.rbegin(), rev.rend());
      for (const Step& s : plan.steps) {
        plan.time += s.time;
        plan.bytes += s.bytes;
      }
      return plan;
    }
    for (Step& s : search.edges(e.layout, plan.to, options)) {
      const std::string k = s.after.str();
      if (settled.count(k) && settled[k]) continue;
      const Key c{e.cost + quantize(s.time),
                  e.steps + (s.kind == StepKind::kSendRecv ? kSendRecvWeight : 1)};
      auto it = best.find(k);
      if (it != best.end() && it->second <= c) continue;
      best[k] = c;
      Layout after = s.after;
      queue.push({c.first, c.second, std::move(after), index, std::move(s)});
    }
  }
  throw Error("[redistribute] no plan from " + plan.from.str() + " to " + plan.to.str() +
              " on mesh " + mesh.str() + (options.allow_send_recv ? "" : " without send/recv"));
}

}  // namespace hp::shard
