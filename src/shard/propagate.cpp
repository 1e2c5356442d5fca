// Layout propagation over a whole graph in node order: source layouts from the strategy, then per
// node the partial sums it can pass through, a cost-based choice of mesh axes for each factor of
// its rule, the layouts its inputs must be redistributed to, and its outputs' layouts.
#include "hp/shard/propagate.hpp"

#include <algorithm>
#include <set>
#include <sstream>

#include "hp/ir/op_def.hpp"
#include "hp/shard/rule.hpp"

namespace hp::shard {

namespace {

using ir::NodeId;
using ir::ValueId;
using Axes = std::vector<std::string>;

int64_t value_bytes(const ir::Graph& g, ValueId v) {
  const auto& t = g.value(v).type;
  return numel(t.shape) * int64_t(dtype_size(t.dtype));
}

int64_t axes_size(const Mesh& m, const Axes& axes) {
  int64_t n = 1;
  for (const auto& a : axes) n *= m.axis_size(a);
  return n;
}

bool is_prefix(const Axes& a, const Axes& c) {
  return a.size() <= c.size() && std::equal(a.begin(), a.end(), c.begin());
}

// `l` without `axes` (on dims and in the partial set).
Layout strip(Layout l, const Axes& axes) {
  auto drop = [&](Axes& v) {
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const std::string& a) {
                             return std::find(axes.begin(), axes.end(), a) != axes.end();
                           }),
            v.end());
  };
  for (auto& d : l.dims) drop(d);
  drop(l.partial);
  l.normalize();
  return l;
}

// An op's view of the mesh axes chosen for its rule's factors (OpDef::place).
struct Placing final : ir::PlaceCtx {
  const NodeRule& r;
  const Mesh& mesh;
  std::vector<Axes>& assign;
  std::set<int> inside;  // factors reduced inside the op

  Placing(const NodeRule& r, const Mesh& mesh, std::vector<Axes>& assign)
      : r(r), mesh(mesh), assign(assign) {}
  size_t rank(size_t input) const override { return r.in[input].size(); }
  int factor(size_t input, size_t dim) const override { return r.in[input][dim]; }
  int64_t extent(int f) const override { return r.size[size_t(f)]; }
  Axes& axes(int f) override { return assign[size_t(f)]; }
  int64_t ways(const Axes& a) const override { return axes_size(mesh, a); }
  void reduced_inside(int f) override { inside.insert(f); }
};

struct Propagator {
  const ir::Graph& g;
  const Strategy& s;
  const Topology& topo;
  Propagation& p;
  // Per value: a parameter, or a view of one (slice, reshape, ...): its layout is the strategy's.
  std::vector<bool> placed;
  std::vector<std::vector<NodeId>> consumers;  // per value: the live nodes reading it
  // (dim, axis) pairs the strategy's activation rules split, batch axes and feature dims aside.
  std::set<std::pair<int64_t, std::string>> activation_splits;

  std::string where(NodeId ni) const {
    if (ni < 0) return "output";
    const auto& n = g.node(ni);
    return n.def->name + " (node " + std::to_string(ni) + (n.scope.empty() ? "" : ", " + n.scope) +
           ")";
  }

  void need(NodeId ni, int input, ValueId v, const Layout& from, const Layout& to) {
    if (from == to) return;
    Redistribution r;
    r.node = ni;
    r.input = input;
    r.value = v;
    const auto& t = g.value(v).type;
    // Named collectives first; the general permutation only when they cannot reach `to`.
    const int64_t eb = int64_t(dtype_size(t.dtype));
    try {
      PlanOptions named;
      named.allow_send_recv = false;
      r.plan = plan_redistribution(t.shape, eb, from, to, p.mesh, topo, named);
    } catch (const Error&) {
      r.plan = plan_redistribution(t.shape, eb, from, to, p.mesh, topo);
    }
    // Reducing partial sums is implied by the layouts that made them; moving split data is not,
    // except gathering a parameter over a data axis (fsdp).
    // So is gathering an activation along a non-feature (dim, axis) pair that the strategy's
    // activation rules split (sequence parallelism gathers the sequence before column-parallel
    // layers), and moving a graph output (a gradient) into the layout the caller asks for.
    const bool param = g.value(v).kind == ir::ValueKind::kParam;
    for (const auto& a : p.mesh.axis_names()) {
      const int64_t d = from.dim_of(a);
      if (d < 0 || to.dim_of(a) == d) continue;
      const bool data = std::find(p.data_axes.begin(), p.data_axes.end(), a) != p.data_axes.end();
      const bool declared = !param && activation_splits.count({d, a});
      const bool demanded = ni < 0 && input >= 0;  // a graph output into the caller's layout
      if (!(param && data) && !declared && !demanded) r.implicit = true;
    }
    r.where = where(ni);
    if (r.implicit) {
      std::string name = g.value(v).name.empty() ? "%" + std::to_string(v) : g.value(v).name;
      std::string msg = "[shard] " + r.where + ": " + name + " " + type_str(t) + " must move " +
                        from.str() + " -> " + to.str() + " (" + std::to_string(r.plan.bytes) +
                        " bytes), which the strategy does not imply";
      if (s.mode == StrategyMode::kStrict)
        throw Error(msg + "; give the value a layout in the strategy or use mode warn");
      if (s.mode == StrategyMode::kWarn) p.warnings.push_back(msg);
    }
    p.redistributions.push_back(std::move(r));
  }

  // `axes` without the data axes.
  Axes model_axes(Axes axes) const {
    std::erase_if(axes, [&](const std::string& a) {
      return std::find(p.data_axes.begin(), p.data_axes.end(), a) != p.data_axes.end();
    });
    return axes;
  }

  // Layouts a value will be wanted in, known before it is produced: a graph output's, and those
  // of same-shaped values its consumers combine it with (a gradient added to another).
  std::vector<Layout> wanted(ValueId v) const {
    std::vector<Layout> w;
    for (size_t k = 0; k < p.outputs.size(); ++k)
      if (p.outputs[k] == v) w.push_back(p.output_layout[k]);
    const Shape& shape = g.value(v).type.shape;
    for (NodeId c : consumers[size_t(v)])
      for (ValueId u : g.node(c).inputs)
        if (u != v && p.has_layout[size_t(u)] && g.value(u).type.shape == shape)
          w.push_back(current(u));
    return w;
  }

  // The layout a node sees an input in before redistribution: parameters are gathered over the
  // data axes (fsdp) before use.
  Layout current(ValueId v) const {
    HP_CHECK(p.has_layout[size_t(v)], "[shard] %", v, " has no layout");
    const Layout& l = p.layout[size_t(v)];
    return g.value(v).kind == ir::ValueKind::kParam ? strip(l, p.data_axes) : l;
  }

  void reshape_node(NodeId ni, const std::vector<Layout>& cur, std::vector<Layout>& tgt,
                    std::vector<Layout>& out) {
    const auto& n = g.node(ni);
    const Shape& is = g.value(n.inputs[0]).type.shape;
    const Shape& os = g.value(n.outputs[0]).type.shape;
    Layout in = cur[0], o;
    o.dims.resize(os.size());
    o.partial = in.partial;
    o.reduce = in.reduce;
    size_t i = 0, j = 0;
    while (i < is.size() || j < os.size()) {
      if (i < is.size() && is[i] == 1) {
        in.dims[i++].clear();
        continue;
      }
      if (j < os.size() && os[j] == 1) {
        ++j;
        continue;
      }
      const size_t a = i, c = j;
      int64_t pi = is[i++], pj = os[j++];
      while (pi != pj) {
        if (pi < pj)
          pi *= is[i++];
        else
          pj *= os[j++];
      }
      // Only the group's first input dim may be split, evenly into both first dims, or in any
      // way when the group is that one dim, unchanged (an uneven batch).
      bool ok = !in.dims[a].empty();
      for (size_t k = a + 1; k < i; ++k) ok = ok && in.dims[k].empty();
      const int64_t nsz = axes_size(p.mesh, in.dims[a]);
      const bool same_dim = i == a + 1 && j == c + 1;
      ok = ok && (same_dim || (is[a] % nsz == 0 && os[c] % nsz == 0));
      if (ok) {
        o.dims[c] = in.dims[a];
      } else {
        for (size_t k = a; k < i; ++k) in.dims[k].clear();
      }
    }
    in.normalize();
    o.normalize();
    tgt[0] = in;
    out[0] = o;
  }

  // Partial sums that may flow through node n unreduced: the mesh axes, and for an op linear in
  // one input (kSingle) which input keeps them (-1: all of them, kJoint, or none).
  std::pair<Axes, int> passing_partials(const ir::Node& n, const NodeRule& r,
                                        const std::vector<Layout>& cur) const {
    const size_t nin = n.inputs.size();
    auto flt = [&](size_t i) { return is_float(g.value(n.inputs[i]).type.dtype); };
    Axes P;
    int keep = -1;
    if (r.linearity == Linearity::kJoint) {
      for (size_t i = 0; i < nin && P.empty(); ++i)
        if (flt(i) && !cur[i].partial.empty() && cur[i].reduce == ReduceOp::kSum)
          P = cur[i].partial;
      for (size_t i = 0; i < nin && !P.empty(); ++i) {
        if (!flt(i) || cur[i].partial == P) continue;
        bool clash = !cur[i].partial.empty();
        for (const auto& a : P) clash = clash || cur[i].dim_of(a) >= 0;
        if (clash) P.clear();
      }
    } else if (r.linearity == Linearity::kSingle) {
      for (size_t i = 0; i < nin; ++i) {
        if (!flt(i) || !r.linear_in[i] || cur[i].partial.empty() || cur[i].reduce != ReduceOp::kSum)
          continue;
        if (keep < 0 || value_bytes(g, n.inputs[i]) > value_bytes(g, n.inputs[size_t(keep)]))
          keep = int(i);
      }
      if (keep >= 0) P = cur[size_t(keep)].partial;
    }
    return {P, keep};
  }

  // The order in which factors choose mesh axes: first those that split a parameter (the
  // strategy placed it; the activations follow, as Megatron's sequence parallelism gathers
  // activations, not weights), then biggest operands first. A factor on no input weighs what its
  // output does when that output is wanted split over model axes (the vocabulary rows of a
  // table's gradient go before the sequence split of its incoming gradient; a batch split over
  // data axes keeps its place).
  std::vector<int> factor_order(const ir::Node& n, const NodeRule& r,
                                const std::vector<Layout>& cur, const std::vector<bool>& on_input,
                                const std::vector<std::vector<Layout>>& wants) const {
    const size_t nfs = size_t(r.num_factors());
    std::vector<std::pair<bool, int64_t>> weight(nfs, {false, 0});
    for (size_t i = 0; i < n.inputs.size(); ++i)
      for (size_t d = 0; d < r.in[i].size(); ++d)
        if (int f = r.in[i][d]; f >= 0 && !cur[i].dims[d].empty()) {
          auto& w = weight[size_t(f)];
          w.first = w.first || placed[size_t(n.inputs[i])];
          w.second = std::max(w.second, value_bytes(g, n.inputs[i]));
        }
    for (size_t o = 0; o < r.out.size(); ++o)
      for (size_t d = 0; d < r.out[o].size(); ++d)
        if (int f = r.out[o][d]; f >= 0 && !on_input[size_t(f)])
          for (const Layout& w : wants[o])
            if (d < w.dims.size() && !model_axes(w.dims[d]).empty())
              weight[size_t(f)].second =
                  std::max(weight[size_t(f)].second, value_bytes(g, n.outputs[o]));
    std::vector<int> order(nfs);
    for (size_t f = 0; f < nfs; ++f) order[f] = int(f);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return weight[size_t(a)] > weight[size_t(b)]; });
    return order;
  }

  // The mesh axes for factor f among the candidates (unsplit, the axes its inputs already have,
  // those its output is wanted in), none of them in `used`: each costs the bytes of the operands
  // it would make move (slicing an operand further is free); ties go to more axes.
  Axes choose_axes(int f, const ir::Node& n, const NodeRule& r, const std::vector<Layout>& cur,
                   bool on_input, const std::vector<std::vector<Layout>>& wants,
                   const std::set<std::string>& used) const {
    const size_t nin = n.inputs.size();
    std::vector<Axes> cands{{}};
    auto offer = [&](const Axes& c) {
      if (std::find(cands.begin(), cands.end(), c) == cands.end()) cands.push_back(c);
    };
    for (size_t i = 0; i < nin; ++i)
      for (size_t d = 0; d < r.in[i].size(); ++d)
        if (r.in[i][d] == f) offer(cur[i].dims[d]);
    if (!on_input)  // the layouts its output is wanted in
      for (size_t o = 0; o < r.out.size(); ++o)
        for (size_t d = 0; d < r.out[o].size(); ++d)
          if (r.out[o][d] == f)
            for (const Layout& w : wants[o])
              if (d < w.dims.size()) offer(model_axes(w.dims[d]));  // data axes: the batch's
    int64_t best_cost = -1;
    Axes best;
    for (const Axes& c : cands) {
      bool free_axes = true;
      for (const auto& a : c) free_axes = free_axes && !used.count(a);
      if (!free_axes) continue;
      int64_t cost = 0;
      for (size_t i = 0; i < nin; ++i)
        for (size_t d = 0; d < r.in[i].size(); ++d) {
          if (r.in[i][d] != f || cur[i].dims[d] == c) continue;
          bool sliced = is_prefix(cur[i].dims[d], c);
          for (size_t k = cur[i].dims[d].size(); sliced && k < c.size(); ++k)
            sliced = cur[i].is_unused(c[k]);
          if (!sliced) cost += value_bytes(g, n.inputs[i]);
        }
      if (best_cost < 0 || cost < best_cost || (cost == best_cost && c.size() > best.size())) {
        best_cost = cost;
        best = c;
      }
    }
    return best;
  }

  // Mesh axes per factor of node n's rule: chosen factor by factor (factor_order, choose_axes),
  // then adjusted by the op's own hook (attention's heads; cross-entropy's vocabulary, which it
  // reduces over inside, see lower.cpp, so that its loss and lse are whole, not partial). Returns
  // the factors reduced inside the op.
  std::set<int> assign_axes(NodeId ni, const NodeRule& r, const std::vector<Layout>& cur,
                            const Axes& P, std::vector<Axes>& assign) const {
    const auto& n = g.node(ni);
    const size_t nfs = size_t(r.num_factors());
    assign.assign(nfs, {});
    std::set<std::string> used(P.begin(), P.end());
    std::vector<bool> on_input(nfs, false);
    for (const auto& fs : r.in)
      for (int f : fs)
        if (f >= 0) on_input[size_t(f)] = true;
    std::vector<std::vector<Layout>> wants(r.out.size());
    for (size_t o = 0; o < r.out.size(); ++o)
      for (int f : r.out[o])
        if (f >= 0 && !on_input[size_t(f)]) {
          wants[o] = wanted(n.outputs[o]);
          break;
        }
    for (int f : factor_order(n, r, cur, on_input, wants)) {
      if (r.whole[size_t(f)]) continue;
      assign[size_t(f)] = choose_axes(f, n, r, cur, on_input[size_t(f)], wants, used);
      used.insert(assign[size_t(f)].begin(), assign[size_t(f)].end());
    }
    Placing placing(r, p.mesh, assign);
    if (n.def->place) n.def->place(placing);
    return placing.inside;
  }

  // The layouts node ni reads its inputs in (tgt) and produces its outputs in (out), from the
  // factors' axes: outputs are partial over `P` and over the axes of contracted factors.
  void rule_layouts(NodeId ni, const NodeRule& r, const std::pair<Axes, int>& partials,
                    const std::vector<Axes>& assign, const std::set<int>& reduced_inside,
                    std::vector<Layout>& tgt, std::vector<Layout>& out) const {
    const auto& n = g.node(ni);
    const auto& [P, keep] = partials;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      Layout l;
      l.dims.resize(r.in[i].size());
      for (size_t d = 0; d < r.in[i].size(); ++d)
        if (r.in[i][d] >= 0) l.dims[d] = assign[size_t(r.in[i][d])];
      if (is_float(g.value(n.inputs[i]).type.dtype) && !P.empty() &&
          (r.linearity == Linearity::kJoint || int(i) == keep))
        l.partial = P;
      l.normalize();
      tgt[i] = l;
    }
    std::set<int> in_factors;
    for (const auto& fs : r.in)
      for (int f : fs)
        if (f >= 0 && !assign[size_t(f)].empty()) in_factors.insert(f);
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      Layout l;
      l.dims.resize(r.out[o].size());
      std::set<int> present;
      for (size_t d = 0; d < r.out[o].size(); ++d)
        if (int f = r.out[o][d]; f >= 0) {
          l.dims[d] = assign[size_t(f)];
          present.insert(f);
        }
      l.partial = P;
      std::set<std::string> on_dims;  // attention's q and kv heads share their axes
      for (const auto& d : l.dims) on_dims.insert(d.begin(), d.end());
      for (int f : in_factors)  // contractions: the output is a partial sum over their axes
        if (!present.count(f) && !reduced_inside.count(f))
          for (const auto& a : assign[size_t(f)])
            if (!on_dims.count(a) &&
                std::find(l.partial.begin(), l.partial.end(), a) == l.partial.end())
              l.partial.push_back(a);
      l.normalize();
      HP_CHECK(l.partial.empty() || is_float(g.value(n.outputs[o]).type.dtype), "[shard] ",
               where(ni), ": integer output would be partial");
      out[o] = l;
    }
  }

  // Records node ni: the moves of its inputs into `tgt`, its outputs' layouts `out`, and the
  // layout the strategy gives a named output (moved there right after the node).
  void record(NodeId ni, const std::vector<Layout>& tgt, const std::vector<Layout>& out) {
    const auto& n = g.node(ni);
    for (size_t i = 0; i < n.inputs.size(); ++i)
      need(ni, int(i), n.inputs[i], p.layout[size_t(n.inputs[i])], tgt[i]);
    p.in[size_t(ni)] = tgt;
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      const ValueId v = n.outputs[o];
      placed[size_t(v)] = n.def->keeps_placement && placed[size_t(n.inputs[0])];
      p.layout[size_t(v)] = out[o];
      p.has_layout[size_t(v)] = true;
      const std::string& name = g.value(v).name;
      if (!name.empty() && s.rule_for(name, false)) {  // a named value the strategy places
        Layout want = s.layout_for(name, g.value(v).type.shape.size(), false);
        want.check(p.mesh);
        need(-1, -1, v, out[o], want);
        p.layout[size_t(v)] = want;
      }
    }
  }

  void node(NodeId ni) {
    const auto& n = g.node(ni);
    const NodeRule r = node_rule(g, n);
    std::vector<Layout> cur(n.inputs.size()), tgt(n.inputs.size()), out(n.outputs.size());
    for (size_t i = 0; i < n.inputs.size(); ++i) cur[i] = current(n.inputs[i]);
    if (r.reshape) {
      reshape_node(ni, cur, tgt, out);
    } else {
      const auto partials = passing_partials(n, r, cur);
      std::vector<Axes> assign;
      const std::set<int> reduced_inside = assign_axes(ni, r, cur, partials.first, assign);
      rule_layouts(ni, r, partials, assign, reduced_inside, tgt, out);
    }
    record(ni, tgt, out);
  }
};

}  // namespace

Propagation propagate(const ir::Graph& g, const std::vector<ValueId>& outputs,
                      const std::vector<Layout>& output_layouts, const Strategy& strategy,
                      const Topology& topo, const std::map<ValueId, Layout>& source_layouts) {
  HP_CHECK(outputs.size() == output_layouts.size(), "[shard] ", outputs.size(), " outputs but ",
           output_layouts.size(), " output layouts");
  Propagation p;
  p.mesh = strategy.mesh;
  const size_t nv = g.values().size(), nn = g.nodes().size();
  p.layout.resize(nv);
  p.has_layout.assign(nv, false);
  p.in.resize(nn);
  p.live.assign(nn, false);
  p.outputs = outputs;
  p.output_layout = output_layouts;
  std::vector<bool> need(nv, false);
  for (ValueId o : outputs) need[size_t(o)] = true;
  for (size_t ni = nn; ni-- > 0;) {
    const auto& n = g.node(NodeId(ni));
    bool live = false;
    for (ValueId o : n.outputs) live = live || need[size_t(o)];
    if (!live) continue;
    p.live[ni] = true;
    for (ValueId v : n.inputs) need[size_t(v)] = true;
  }
  for (ValueId v : g.sources()) {
    const auto& val = g.value(v);
    auto over = source_layouts.find(v);
    Layout l = over != source_layouts.end() ? over->second
                                            : strategy.layout_for(val.name, val.type.shape.size());
    l.check(p.mesh);
    p.layout[size_t(v)] = l;
    p.has_layout[size_t(v)] = true;
    if (val.kind == ir::ValueKind::kInput)
      for (const auto& d : l.dims)
        for (const auto& a : d)
          if (std::find(p.data_axes.begin(), p.data_axes.end(), a) == p.data_axes.end())
            p.data_axes.push_back(a);
  }
  Propagator pr{g, strategy, topo, p, std::vector<bool>(nv, false), {}, {}};
  pr.consumers.resize(nv);
  for (size_t ni = 0; ni < nn; ++ni)
    if (p.live[ni])
      for (ValueId v : g.node(NodeId(ni)).inputs) pr.consumers[size_t(v)].push_back(NodeId(ni));
  for (ValueId v : g.sources()) pr.placed[size_t(v)] = g.value(v).kind == ir::ValueKind::kParam;
  for (const Rule& r : strategy.rules)
    if (!r.params_only)  // feature (last) dims aside: a vocabulary-split `logits` implies no gather
      for (size_t d = 0; d + 1 < r.layout.dims.size(); ++d)
        for (const auto& a : r.layout.dims[d])
          if (std::find(p.data_axes.begin(), p.data_axes.end(), a) == p.data_axes.end())
            pr.activation_splits.insert({int64_t(d), a});
  for (size_t ni = 0; ni < nn; ++ni)
    if (p.live[ni]) pr.node(NodeId(ni));
  for (size_t k = 0; k < outputs.size(); ++k) {
    output_layouts[k].check(p.mesh);
    pr.need(-1, int(k), outputs[k], p.layout[size_t(outputs[k])], output_layouts[k]);
  }
  return p;
}

std::string Propagation::str(const ir::Graph& g) const {
  std::ostringstream os;
  os << "mesh " << mesh.str() << "\nlayouts:\n";
  for (size_t v = 0; v < layout.size(); ++v) {
    if (!has_layout[v]) continue;
    const auto& val = g.value(ir::ValueId(v));
    os << "  %" << v << (val.name.empty() ? "" : " " + val.name) << " " << type_str(val.type) << " "
       << layout[v].str() << "\n";
  }
  os << "redistributions:\n";
  for (const auto& r : redistributions) {
    const auto& val = g.value(r.value);
    os << "  "
       << (r.node >= 0    ? r.where
           : r.input >= 0 ? "output"
                          : "rule")
       << ": %" << r.value << (val.name.empty() ? "" : " " + val.name) << " " << r.plan.from.str()
       << " -> " << r.plan.to.str();
    for (const auto& st : r.plan.steps)
      os << " | " << step_kind_name(st.kind) << "(" << st.axis << ")";
    os << " | " << r.plan.bytes << " bytes" << (r.implicit ? " (implicit)" : "") << "\n";
  }
  return os.str();
}

}  // namespace hp::shard
