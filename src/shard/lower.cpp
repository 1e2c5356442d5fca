// Lowering a propagated global graph to one rank: sources with local shapes, each live node with
// its redistributed inputs and the local attributes, extra inputs and collectives its op's
// localize hook asks for (OpDef::localize: vocabulary shards, head groups, target counts, the
// vocabulary-parallel loss), forced (named) layouts and output layouts; with overlap,
// communication split into start/wait nodes placed apart (see LowerOptions). Every move's plan
// goes into Lowered::plans; its nodes carry the index.
#include "hp/shard/lower.hpp"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

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

// Redistributions started by a "redistribute_start" node: the placeholder it returns, which the
// matching wait node reads.
struct Started {
  int64_t key;
  ValueId token;
  int64_t index;  // piece of a bucket
  Shape shape;    // local result
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
};

// A value moved into a layout: (global value, target layout, a parameter in the backward).
using MoveKey = std::tuple<ValueId, std::string, bool>;

// The move of redistribution `r` at a node's input: a parameter is gathered again for the
// backward (its gathered copy need not live across the step); any other value moves once.
MoveKey move_key(const ir::Graph& g, const Redistribution& r) {
  const bool param = g.value(r.value).kind == ir::ValueKind::kParam;
  return {r.value, r.plan.to.str(), param && backward_scope(g.node(r.node).scope)};
}

// One rank's lowering; run() calls the phases in order: where overlapped gathers start, the
// sources, every live node (its inputs, its localize hook, its outputs), the graph outputs.
class Lowering {
 public:
  Lowering(const ir::Graph& g, const Propagation& p, int rank, const LowerOptions& opt)
      : g_(g), p_(p), rank_(rank), opt_(opt), mesh_(p.mesh) {
    L_.rank = rank;
    L_.graph = std::make_unique<ir::Graph>();
    L_.map.assign(g.values().size(), -1);
    for (const auto& r : p.redistributions) {
      if (r.node >= 0)
        at_input_[{r.node, r.input}] = &r;
      else if (r.input < 0)
        forced_[r.value] = &r;
      else
        at_output_[r.input] = &r;
    }
    for (size_t k = 0; k < p.outputs.size(); ++k) output_index_[p.outputs[k]].push_back(int(k));
  }

  Lowered run() {
    if (opt_.overlap) schedule_param_gathers();
    lower_sources();
    for (size_t ni = 0; ni < g_.nodes().size(); ++ni)
      if (p_.live[ni]) lower_node(ni);
    lg().set_scope("");
    flush();
    lower_outputs();
    return std::move(L_);
  }

 private:
  ir::Graph& lg() { return *L_.graph; }

  // The plan's index in the table the communication nodes refer to.
  int64_t add_plan(const Plan& plan) {
    L_.plans.push_back(plan);
    ++L_.collectives;
    L_.exchanges += communicates(plan);
    return int64_t(L_.plans.size()) - 1;
  }

  // A "redistribute" node moving local value `local_v` (of global type `t`) as `plan` says.
  ValueId emit(const ir::TensorType& t, ValueId local_v, const Plan& plan) {
    HP_CHECK(plan.shape == t.shape, "[shard] a plan for ", shape_str(plan.shape), " moves ",
             shape_str(t.shape));
    ir::Attrs at;
    at.set("shape", local_shape(t.shape, plan.to, mesh_, rank_));
    at.set("plan", add_plan(plan));
    return lg().apply1(ops::op_def(ir::OpId::kRedistribute), {lg().var(local_v)}, at).id;
  }
  ValueId emit(ValueId global_v, ValueId local_v, const Plan& plan) {
    return emit(g_.value(global_v).type, local_v, plan);
  }

  // Collectives an op's localize hook adds (vocabulary-parallel loss, target counts): one
  // collective each, planned alike on every rank.
  ValueId moved_to(const ir::TensorType& t, ValueId local_v, const Layout& from, const Layout& to) {
    return emit(t, local_v, plan_redistribution(t.shape, 4, from, to, mesh_, flat_));
  }

  // Split form: the start node, and the wait node that yields its result.
  Started emit_start(ValueId global_v, ValueId local_v, const Plan& plan) {
    const auto& t = g_.value(global_v).type;
    HP_CHECK(plan.shape == t.shape, "[shard] a plan for ", shape_str(plan.shape), " moves ",
             shape_str(t.shape));
    ir::Attrs at;
    at.set("key", next_key_);
    at.set("plan", add_plan(plan));
    ValueId tok =
        lg().apply1(ops::op_def(ir::OpId::kRedistributeStart), {lg().var(local_v)}, at).id;
    return {next_key_++, tok, 0, local_shape(t.shape, plan.to, mesh_, rank_)};
  }
  ValueId emit_wait(const Started& s) {
    ir::Attrs at;
    at.set("key", s.key);
    at.set("index", s.index);
    at.set("shape", s.shape);
    return lg().apply1(ops::op_def(ir::OpId::kRedistributeWait), {lg().var(s.token)}, at).id;
  }

  // Starts the bucket's all-reduces as one collective.
  void flush() {
    if (bucket_.locals.empty()) return;
    ir::Attrs at;
    at.set("key", next_key_);
    at.set("axis", bucket_.axis);
    at.set("reduce", int64_t(bucket_.reduce));
    std::vector<ir::Var> ins;
    for (ValueId v : bucket_.locals) ins.push_back(lg().var(v));
    ++L_.collectives;
    ++L_.exchanges;
    ValueId tok = lg().apply1(ops::op_def(ir::OpId::kRedistributeStart), ins, at).id;
    for (size_t i = 0; i < bucket_.outs.size(); ++i)
      out_started_[bucket_.outs[i]] = {next_key_, tok, int64_t(i), bucket_.shapes[i]};
    ++next_key_;
    bucket_ = Bucket{};
  }

  // With overlap, the redistributions of graph output `v` (local `lv`) start right after it is
  // produced: single all-reduces into the bucket, others on their own.
  void start_output(ValueId v, ValueId lv) {
    auto oi = output_index_.find(v);
    if (!opt_.overlap || oi == output_index_.end()) return;
    for (int k : oi->second) {
      auto it = at_output_.find(k);
      if (it == at_output_.end() || !communicates(it->second->plan)) continue;
      const Plan& plan = it->second->plan;
      const auto& t = g_.value(v).type;
      if (plan.steps.size() != 1 || plan.steps[0].kind != StepKind::kAllReduce ||
          std::find(opt_.unbucketed.begin(), opt_.unbucketed.end(), v) != opt_.unbucketed.end()) {
        out_started_[k] = emit_start(v, lv, plan);
        continue;
      }
      const Step& s = plan.steps[0];
      if (!bucket_.locals.empty() &&
          (bucket_.axis != s.axis || bucket_.reduce != plan.from.reduce ||
           bucket_.dtype != t.dtype))
        flush();
      bucket_.axis = s.axis;
      bucket_.reduce = plan.from.reduce;
      bucket_.dtype = t.dtype;
      bucket_.locals.push_back(lv);
      bucket_.outs.push_back(k);
      Shape ls = local_shape(t.shape, plan.to, mesh_, rank_);
      bucket_.bytes += byte_count(ls, dtype_size(t.dtype));
      bucket_.shapes.push_back(std::move(ls));
      if (bucket_.bytes >= opt_.bucket_bytes) flush();
    }
  }

  // Parameter gathers started one layer ahead: the first use of each (value, layout, backward),
  // and the runs of consecutive live nodes in one layer.
  void schedule_param_gathers() {
    std::vector<size_t> run_first;  // first node of each run
    std::string prev = "\x01";
    std::map<MoveKey, std::pair<size_t, const Redistribution*>> first_use;  // -> (run, redist)
    for (size_t ni = 0; ni < g_.nodes().size(); ++ni) {
      if (!p_.live[ni]) continue;
      const auto& n = g_.node(NodeId(ni));
      if (std::string l = layer_of(n.scope); l != prev) run_first.push_back(ni), prev = l;
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        auto it = at_input_.find({NodeId(ni), int(i)});
        if (it == at_input_.end() || g_.value(n.inputs[i]).kind != ir::ValueKind::kParam ||
            !communicates(it->second->plan))
          continue;
        first_use.emplace(move_key(g_, *it->second),
                          std::make_pair(run_first.size() - 1, it->second));
      }
    }
    for (auto& [key, use] : first_use)
      start_before_[run_first[use.first == 0 ? 0 : use.first - 1]].push_back({key, use.second});
  }

  void lower_sources() {
    for (ValueId v : g_.sources()) {
      const auto& val = g_.value(v);
      const Shape local = local_shape(val.type.shape, p_.layout[size_t(v)], mesh_, rank_);
      L_.map[size_t(v)] = lg().input(val.name, {local, val.type.dtype}, val.kind).id;
    }
  }

  // Node ni's inputs on this rank, each in the layout the node reads it in: moved once per
  // (value, layout, backward), or waited for when its gather was started ahead.
  std::vector<ir::Var> lower_inputs(size_t ni) {
    const auto& n = g_.node(NodeId(ni));
    if (auto sb = start_before_.find(ni); sb != start_before_.end())
      for (auto& [key, r] : sb->second)
        param_started_[key] =
            emit_start(std::get<0>(key), L_.map[size_t(std::get<0>(key))], r->plan);
    std::vector<ir::Var> ins;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ValueId v = n.inputs[i];
      ValueId lv = L_.map[size_t(v)];
      HP_CHECK(lv >= 0, "[shard] node ", ni, " reads %", v, ", which was not lowered");
      auto it = at_input_.find({NodeId(ni), int(i)});
      if (it != at_input_.end()) {
        const MoveKey key = move_key(g_, *it->second);
        auto m = moved_.find(key);
        auto ps = param_started_.find(key);
        lv = m != moved_.end()            ? m->second
             : ps != param_started_.end() ? (moved_[key] = emit_wait(ps->second))
                                          : (moved_[key] = emit(v, lv, it->second->plan));
      }
      ins.push_back(lg().var(lv));
    }
    return ins;
  }

  void lower_node(size_t ni) {
    const auto& n = g_.node(NodeId(ni));
    lg().set_scope(n.scope);
    std::vector<ir::Var> ins = lower_inputs(ni);
    // Local attributes, by the op's hook: shapes become local shapes; vocabulary shards and head
    // groups say where this rank's piece lies; a loss over split rows divides by the count of all
    // ranks.
    std::vector<Layout> produced;
    std::vector<Shape> want;
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      const ValueId v = n.outputs[o];
      auto f = forced_.find(v);
      produced.push_back(f != forced_.end() ? f->second->plan.from : p_.layout[size_t(v)]);
      want.push_back(local_shape(g_.value(v).type.shape, produced.back(), mesh_, rank_));
    }
    Localizing x(g_, n, p_.in[ni], produced, want, mesh_, rank_, lg(), moved_to_fn_, made_);
    x.op = n.def->id;
    x.in = std::move(ins);
    x.attrs = n.attrs;
    if (n.def->localize) n.def->localize(x);
    const std::string& op = ir::op_name(x.op);
    std::vector<ir::Var> outs;
    try {
      outs = lg().apply(ops::op_def(x.op), x.in, x.attrs);
    } catch (const Error& e) {
      throw Error(detail::cat("[shard] lowering node ", ni, " (", op, " in ", n.scope, ") on rank ",
                              rank_, ": ", e.what()));
    }
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      HP_CHECK(outs[o].shape() == want[o], "[shard] node ", ni, " (", op, " in ", n.scope,
               ") on rank ", rank_, ": local output ", shape_str(outs[o].shape()),
               " but its layout gives ", shape_str(want[o]));
      const ValueId v = n.outputs[o];
      ValueId lv = outs[o].id;
      if (!g_.value(v).name.empty()) lg().set_name(lv, g_.value(v).name);
      if (auto f = forced_.find(v); f != forced_.end()) lv = emit(v, lv, f->second->plan);
      L_.map[size_t(v)] = lv;
      start_output(v, lv);
    }
  }

  // The graph outputs in their delivered layouts: waited for when started early, else moved.
  void lower_outputs() {
    for (size_t k = 0; k < p_.outputs.size(); ++k) {
      ValueId lv = L_.map[size_t(p_.outputs[k])];
      HP_CHECK(lv >= 0, "[shard] output %", p_.outputs[k], " was not lowered");
      if (auto st = out_started_.find(int(k)); st != out_started_.end())
        lv = emit_wait(st->second);
      else if (auto it = at_output_.find(int(k)); it != at_output_.end())
        lv = emit(p_.outputs[k], lv, it->second->plan);
      L_.outputs.push_back(lv);
    }
  }

  const ir::Graph& g_;
  const Propagation& p_;
  const int rank_;
  const LowerOptions& opt_;
  const Mesh& mesh_;
  Lowered L_;
  const Topology flat_ = Topology::uniform(1e9, 1e-6);  // plans for the localize hooks' moves
  const MoveFn moved_to_fn_ = [this](const ir::TensorType& t, ValueId lv, const Layout& from,
                                     const Layout& to) { return moved_to(t, lv, from, to); };
  std::map<std::pair<NodeId, int>, const Redistribution*> at_input_;
  std::map<ValueId, const Redistribution*> forced_;   // named values the strategy places
  std::map<int, const Redistribution*> at_output_;    // by output index
  std::map<ValueId, std::vector<int>> output_index_;  // produced value -> its output indices
  // Values hooks make once per input value (the target count both losses read).
  std::map<std::pair<ValueId, std::string>, ValueId> made_;
  int64_t next_key_ = 0;
  Bucket bucket_;
  std::map<int, Started> out_started_;  // output index -> its start
  std::map<MoveKey, Started> param_started_;
  std::map<size_t, std::vector<std::pair<MoveKey, const Redistribution*>>> start_before_;
  std::map<MoveKey, ValueId> moved_;
};

}  // namespace

bool communicates(const Plan& plan) {
  for (const Step& s : plan.steps)
    if (s.kind != StepKind::kSlice && s.kind != StepKind::kMakePartial) return true;
  return false;
}

std::vector<const Redistribution*> performed(const ir::Graph& g, const Propagation& p) {
  std::vector<const Redistribution*> out;
  std::set<MoveKey> seen;
  for (const Redistribution& r : p.redistributions)
    if (r.node < 0 || seen.insert(move_key(g, r)).second) out.push_back(&r);
  return out;
}

Lowered lower(const ir::Graph& g, const Propagation& p, int rank, const LowerOptions& opt) {
  return Lowering(g, p, rank, opt).run();
}

std::string Lowered::str() const {
  std::ostringstream os;
  os << graph->str();
  for (size_t i = 0; i < plans.size(); ++i) os << "plan " << i << ": " << plans[i].str();
  return os.str();
}

}  // namespace hp::shard
