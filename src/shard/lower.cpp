// Lowering a propagated global graph to one rank: sources with local shapes, each live node with
// its redistributed inputs and the local attributes, extra inputs and collectives its op's
// localize hook asks for (OpDef::localize: vocabulary shards, head groups, target counts, the
// vocabulary-parallel loss), forced (named) layouts and output layouts; with overlap,
// communication split into start/wait nodes placed apart (see LowerOptions).
#include "hp/shard/lower.hpp"

#include <cctype>
#include <functional>
#include <map>
#include <sstream>

#include "hp/ops/registry.hpp"

namespace hp::shard {

namespace {

using ir::NodeId;
using ir::ValueId;

bool backward_scope(const std::string& s) {
  return s == "grad" || (s.size() >= 5 && s.compare(s.size() - 5, 5, ".grad") == 0);
}

// The layer a scope belongs to: "h.3.attn.grad" -> "h.3.grad", "embed" -> "embed".
std::string layer_of(const std::string& scope) {
  std::string s = scope;
  const bool bwd = backward_scope(s);
  if (bwd) s = s == "grad" ? "" : s.substr(0, s.size() - 5);
  if (auto d = s.rfind('.'); d != std::string::npos && std::isalpha((unsigned char)s[d + 1]) &&
                             d > 0 && std::isdigit((unsigned char)s[d - 1]))
    s = s.substr(0, d);
  return bwd ? s + ".grad" : s;
}

bool communicates(const Plan& plan) {
  for (const Step& s : plan.steps)
    if (s.kind != StepKind::kSlice && s.kind != StepKind::kMakePartial) return true;
  return false;
}

int64_t axes_size(const Mesh& m, const std::vector<std::string>& axes) {
  int64_t n = 1;
  for (const auto& a : axes) n *= m.axis_size(a);
  return n;
}

using MoveFn = std::function<ValueId(const ir::TensorType&, ValueId, const Layout&, const Layout&)>;

// One live node on one rank as its op's localize hook sees it (OpDef::localize).
class Localizing final : public ir::LocalizeCtx {
 public:
  Localizing(const ir::Graph& g, const ir::Node& n, const std::vector<Layout>& in_layout,
             const std::vector<Layout>& out_layout, const std::vector<Shape>& want,
             const Mesh& mesh, int rank, ir::Graph& lg, const MoveFn& moved_to,
             std::map<std::pair<ValueId, std::string>, ValueId>& made)
      : g_(g),
        n_(n),
        in_(in_layout),
        out_(out_layout),
        want_(want),
        mesh_(mesh),
        rank_(rank),
        lg_(lg),
        moved_to_(moved_to),
        made_(made) {}

  const Shape& global_in(size_t i) const override { return g_.value(n_.inputs[i]).type.shape; }
  const Shape& global_out(size_t o) const override { return g_.value(n_.outputs[o]).type.shape; }
  const Shape& local_out(size_t o) const override { return want_[o]; }
  bool in_split(size_t i, size_t d) const override { return !in_[i].dims[d].empty(); }
  int64_t in_pieces(size_t i, size_t d) const override { return axes_size(mesh_, in_[i].dims[d]); }
  int64_t in_offset(size_t i, size_t d) const override {
    return local_box(global_in(i), in_[i], mesh_, rank_).offset[d];
  }
  bool out_split(size_t o, size_t d) const override { return !out_[o].dims[d].empty(); }
  int64_t out_offset(size_t o, size_t d) const override {
    return local_box(global_out(o), out_[o], mesh_, rank_).offset[d];
  }
  ir::Var apply(ir::OpId op, const std::vector<ir::Var>& in, const ir::Attrs& attrs) override {
    return lg_.apply1(ops::op_def(op), in, attrs);
  }
  ir::Var gather(ir::Var local, const ir::TensorType& global, size_t i, size_t d) override {
    Layout whole = in_[i];
    whole.dims[d].clear();
    return lg_.var(moved_to_(global, local.id, in_[i], whole));
  }
  ir::Var sum_over(ir::Var local, const ir::TensorType& global, size_t i) override {
    Layout from, to;
    from.dims.resize(global.shape.size());
    to.dims.resize(global.shape.size());
    for (const auto& d : in_[i].dims) from.partial.insert(from.partial.end(), d.begin(), d.end());
    from.normalize();
    return lg_.var(moved_to_(global, local.id, from, to));
  }
  ir::Var once(size_t i, const std::string& what, const std::function<ir::Var()>& make) override {
    const auto key = std::make_pair(n_.inputs[i], what);
    if (auto it = made_.find(key); it != made_.end()) return lg_.var(it->second);
    const ir::Var v = make();
    made_[key] = v.id;
    return v;
  }

 private:
  const ir::Graph& g_;
  const ir::Node& n_;
  const std::vector<Layout>&in_, &out_;  // the layouts the node reads and produces
  const std::vector<Shape>& want_;
  const Mesh& mesh_;
  const int rank_;
  ir::Graph& lg_;
  const MoveFn& moved_to_;
  std::map<std::pair<ValueId, std::string>, ValueId>& made_;
};

}  // namespace

std::string encode_steps(const Plan& plan) {
  std::ostringstream os;
  for (size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& s = plan.steps[k];
    os << (k ? ";" : "") << step_kind_name(s.kind) << "|" << s.axis << "|" << s.dim << "|"
       << s.src_dim << "|" << s.before.str() << "|" << s.after.str();
  }
  return os.str();
}

std::vector<Step> decode_steps(const std::string& text) {
  std::vector<Step> out;
  if (text.empty()) return out;
  std::stringstream ss(text);
  std::string item;
  const StepKind kinds[] = {StepKind::kSlice,         StepKind::kMakePartial, StepKind::kAllGather,
                            StepKind::kReduceScatter, StepKind::kAllReduce,   StepKind::kAllToAll,
                            StepKind::kSendRecv};
  while (std::getline(ss, item, ';')) {
    std::vector<std::string> f;
    std::stringstream fs(item);
    std::string x;
    while (std::getline(fs, x, '|')) f.push_back(x);
    if (item.back() == '|') f.push_back("");
    HP_CHECK(f.size() == 6, "[shard] bad step '", item, "'");
    Step s;
    bool found = false;
    for (StepKind k : kinds)
      if (step_kind_name(k) == f[0]) s.kind = k, found = true;
    HP_CHECK(found, "[shard] unknown step kind '", f[0], "'");
    s.axis = f[1];
    s.dim = std::stoll(f[2]);
    s.src_dim = std::stoll(f[3]);
    s.before = Layout::parse(f[4]);
    s.after = Layout::parse(f[5]);
    out.push_back(std::move(s));
  }
  return out;
}

Lowered lower(const ir::Graph& g, const Propagation& p, int rank, const LowerOptions& opt) {
  Lowered L;
  L.rank = rank;
  L.graph = std::make_unique<ir::Graph>();
  ir::Graph& lg = *L.graph;
  L.map.assign(g.values().size(), -1);
  const Mesh& mesh = p.mesh;

  std::map<std::pair<NodeId, int>, const Redistribution*> at_input;
  std::map<ValueId, const Redistribution*> forced;
  std::map<int, const Redistribution*> at_output;
  for (const auto& r : p.redistributions) {
    if (r.node >= 0)
      at_input[{r.node, r.input}] = &r;
    else if (r.input < 0)
      forced[r.value] = &r;
    else
      at_output[r.input] = &r;
  }
  auto emit_as = [&](const ir::TensorType& t, ValueId local_v, const Plan& plan) -> ValueId {
    ir::Attrs at;
    at.set("shape", local_shape(t.shape, plan.to, mesh, rank));
    at.set("global", t.shape);
    at.set("from", plan.from.str());
    at.set("to", plan.to.str());
    at.set("steps", encode_steps(plan));
    ++L.collectives;
    return lg.apply1(ops::op_def(ir::OpId::kRedistribute), {lg.var(local_v)}, at).id;
  };
  auto emit = [&](ValueId global_v, ValueId local_v, const Plan& plan) -> ValueId {
    return emit_as(g.value(global_v).type, local_v, plan);
  };
  // Collectives an op's localize hook adds (vocabulary-parallel loss, target counts): one
  // collective each, planned alike on every rank.
  const Topology flat = Topology::uniform(1e9, 1e-6);
  const MoveFn moved_to = [&](const ir::TensorType& t, ValueId local_v, const Layout& from,
                              const Layout& to) -> ValueId {
    return emit_as(t, local_v, plan_redistribution(t.shape, 4, from, to, mesh, flat));
  };
  // Values hooks make once per input value (the target count both losses read).
  std::map<std::pair<ValueId, std::string>, ValueId> made;

  // Split form: start nodes return a placeholder the matching wait node reads.
  int64_t next_key = 0;
  struct Started {
    int64_t key;
    ValueId token;
    int64_t index;  // piece of a bucket
    Shape shape;    // local result
  };
  auto emit_start = [&](ValueId global_v, ValueId local_v, const Plan& plan) -> Started {
    const auto& t = g.value(global_v).type;
    ir::Attrs at;
    at.set("key", next_key);
    at.set("global", t.shape);
    at.set("from", plan.from.str());
    at.set("to", plan.to.str());
    at.set("steps", encode_steps(plan));
    ++L.collectives;
    ValueId tok = lg.apply1(ops::op_def(ir::OpId::kRedistributeStart), {lg.var(local_v)}, at).id;
    return {next_key++, tok, 0, local_shape(t.shape, plan.to, mesh, rank)};
  };
  auto emit_wait = [&](const Started& s) -> ValueId {
    ir::Attrs at;
    at.set("key", s.key);
    at.set("index", s.index);
    at.set("shape", s.shape);
    return lg.apply1(ops::op_def(ir::OpId::kRedistributeWait), {lg.var(s.token)}, at).id;
  };
  // Gradient buckets: single all-reduces along one axis, started together once full.
  struct Bucket {
    std::string axis;
    ReduceOp reduce = ReduceOp::kSum;
    DType dtype = DType::kF32;
    std::vector<ValueId> locals;
    std::vector<int> outs;  // output indices
    std::vector<Shape> shapes;
    size_t bytes = 0;
  } bucket;
  std::map<int, Started> out_started;  // output index -> its start
  auto flush = [&] {
    if (bucket.locals.empty()) return;
    ir::Attrs at;
    at.set("key", next_key);
    at.set("axis", bucket.axis);
    at.set("reduce", int64_t(bucket.reduce));
    std::vector<ir::Var> ins;
    for (ValueId v : bucket.locals) ins.push_back(lg.var(v));
    ++L.collectives;
    ValueId tok = lg.apply1(ops::op_def(ir::OpId::kRedistributeStart), ins, at).id;
    for (size_t i = 0; i < bucket.outs.size(); ++i)
      out_started[bucket.outs[i]] = {next_key, tok, int64_t(i), bucket.shapes[i]};
    ++next_key;
    bucket = Bucket{};
  };
  std::map<ValueId, std::vector<int>> output_index;  // produced value -> its output indices
  for (size_t k = 0; k < p.outputs.size(); ++k) output_index[p.outputs[k]].push_back(int(k));
  auto start_output = [&](ValueId v, ValueId lv) {  // right after v is produced
    auto oi = output_index.find(v);
    if (!opt.overlap || oi == output_index.end()) return;
    for (int k : oi->second) {
      auto it = at_output.find(k);
      if (it == at_output.end() || !communicates(it->second->plan)) continue;
      const Plan& plan = it->second->plan;
      const auto& t = g.value(v).type;
      if (plan.steps.size() == 1 && plan.steps[0].kind == StepKind::kAllReduce) {
        const Step& s = plan.steps[0];
        if (!bucket.locals.empty() &&
            (bucket.axis != s.axis || bucket.reduce != plan.from.reduce || bucket.dtype != t.dtype))
          flush();
        bucket.axis = s.axis;
        bucket.reduce = plan.from.reduce;
        bucket.dtype = t.dtype;
        bucket.locals.push_back(lv);
        bucket.outs.push_back(k);
        Shape ls = local_shape(t.shape, plan.to, mesh, rank);
        bucket.bytes += byte_count(ls, dtype_size(t.dtype));
        bucket.shapes.push_back(std::move(ls));
        if (bucket.bytes >= opt.bucket_bytes) flush();
      } else {
        out_started[k] = emit_start(v, lv, plan);
      }
    }
  };
  // Parameter gathers started one layer ahead: the first use of each (value, layout, backward),
  // and the runs of consecutive live nodes in one layer.
  using Key = std::tuple<ValueId, std::string, bool>;
  std::map<Key, Started> param_started;
  std::map<size_t, std::vector<std::pair<Key, const Redistribution*>>> start_before;
  if (opt.overlap) {
    std::vector<size_t> run_first;  // first node of each run
    std::string prev = "\x01";
    std::map<Key, std::pair<size_t, const Redistribution*>> first_use;  // key -> (run, redist)
    for (size_t ni = 0; ni < g.nodes().size(); ++ni) {
      if (!p.live[ni]) continue;
      const auto& n = g.node(NodeId(ni));
      if (std::string l = layer_of(n.scope); l != prev) run_first.push_back(ni), prev = l;
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        auto it = at_input.find({NodeId(ni), int(i)});
        if (it == at_input.end() || g.value(n.inputs[i]).kind != ir::ValueKind::kParam ||
            !communicates(it->second->plan))
          continue;
        Key key{n.inputs[i], it->second->plan.to.str(), backward_scope(n.scope)};
        first_use.emplace(key, std::make_pair(run_first.size() - 1, it->second));
      }
    }
    for (auto& [key, use] : first_use)
      start_before[run_first[use.first == 0 ? 0 : use.first - 1]].push_back({key, use.second});
  }

  for (ValueId v : g.sources()) {
    const auto& val = g.value(v);
    L.map[size_t(v)] =
        lg.input(val.name,
                 {local_shape(val.type.shape, p.layout[size_t(v)], mesh, rank), val.type.dtype},
                 val.kind)
            .id;
  }
  std::map<std::tuple<ValueId, std::string, bool>, ValueId> moved;  // (value, layout, backward)
  for (size_t ni = 0; ni < g.nodes().size(); ++ni) {
    if (!p.live[ni]) continue;
    const auto& n = g.node(NodeId(ni));
    lg.set_scope(n.scope);
    const bool bwd = backward_scope(n.scope);
    if (auto sb = start_before.find(ni); sb != start_before.end())
      for (auto& [key, r] : sb->second)
        param_started[key] = emit_start(std::get<0>(key), L.map[size_t(std::get<0>(key))], r->plan);
    std::vector<ir::Var> ins;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ValueId v = n.inputs[i];
      ValueId lv = L.map[size_t(v)];
      HP_CHECK(lv >= 0, "[shard] node ", ni, " reads %", v, ", which was not lowered");
      auto it = at_input.find({NodeId(ni), int(i)});
      if (it != at_input.end()) {
        const bool param = g.value(v).kind == ir::ValueKind::kParam;
        auto key = std::make_tuple(v, it->second->plan.to.str(), param && bwd);
        auto m = moved.find(key);
        auto ps = param_started.find(key);
        lv = m != moved.end()            ? m->second
             : ps != param_started.end() ? (moved[key] = emit_wait(ps->second))
                                         : (moved[key] = emit(v, lv, it->second->plan));
      }
      ins.push_back(lg.var(lv));
    }
    // Local attributes, by the op's hook: shapes become local shapes; vocabulary shards and head
    // groups say where this rank's piece lies; a loss over split rows divides by the count of all
    // ranks.
    std::vector<Layout> produced;
    std::vector<Shape> want;
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      const ValueId v = n.outputs[o];
      auto f = forced.find(v);
      produced.push_back(f != forced.end() ? f->second->plan.from : p.layout[size_t(v)]);
      want.push_back(local_shape(g.value(v).type.shape, produced.back(), mesh, rank));
    }
    Localizing x(g, n, p.in[ni], produced, want, mesh, rank, lg, moved_to, made);
    x.op = n.def->id;
    x.in = std::move(ins);
    x.attrs = n.attrs;
    if (n.def->localize) n.def->localize(x);
    const std::string& op = ir::op_name(x.op);
    std::vector<ir::Var> outs;
    try {
      outs = lg.apply(ops::op_def(x.op), x.in, x.attrs);
    } catch (const Error& e) {
      throw Error(detail::cat("[shard] lowering node ", ni, " (", op, " in ", n.scope, ") on rank ",
                              rank, ": ", e.what()));
    }
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      HP_CHECK(outs[o].shape() == want[o], "[shard] node ", ni, " (", op, " in ", n.scope,
               ") on rank ", rank, ": local output ", shape_str(outs[o].shape()),
               " but its layout gives ", shape_str(want[o]));
      const ValueId v = n.outputs[o];
      ValueId lv = outs[o].id;
      if (!g.value(v).name.empty()) lg.set_name(lv, g.value(v).name);
      if (auto f = forced.find(v); f != forced.end()) lv = emit(v, lv, f->second->plan);
      L.map[size_t(v)] = lv;
      start_output(v, lv);
    }
  }
  lg.set_scope("");
  flush();
  for (size_t k = 0; k < p.outputs.size(); ++k) {
    ValueId lv = L.map[size_t(p.outputs[k])];
    HP_CHECK(lv >= 0, "[shard] output %", p.outputs[k], " was not lowered");
    if (auto st = out_started.find(int(k)); st != out_started.end())
      lv = emit_wait(st->second);
    else if (auto it = at_output.find(int(k)); it != at_output.end())
      lv = emit(p.outputs[k], lv, it->second->plan);
    L.outputs.push_back(lv);
  }
  return L;
}

}  // namespace hp::shard
