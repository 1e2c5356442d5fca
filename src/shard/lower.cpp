// Lowering a propagated global graph to one rank: sources with local shapes, each live node with
// its redistributed inputs and local attributes, forced (named) layouts and output layouts.
#include "hp/shard/lower.hpp"

#include <map>
#include <sstream>

#include "hp/ir/op_def.hpp"

namespace hp::shard {

namespace {

using ir::NodeId;
using ir::ValueId;

bool backward_scope(const std::string& s) {
  return s == "grad" || (s.size() >= 5 && s.compare(s.size() - 5, 5, ".grad") == 0);
}

int64_t rows(const Shape& s) {
  return s.empty() ? 1 : numel(Shape(s.begin(), s.end() - 1));
}

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

Lowered lower(const ir::Graph& g, const Propagation& p, int rank) {
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
  auto emit = [&](ValueId global_v, ValueId local_v, const Plan& plan) -> ValueId {
    const auto& t = g.value(global_v).type;
    ir::Attrs at;
    at.set("shape", local_shape(t.shape, plan.to, mesh, rank));
    at.set("global", t.shape);
    at.set("from", plan.from.str());
    at.set("to", plan.to.str());
    at.set("steps", encode_steps(plan));
    ++L.collectives;
    return lg.apply1("redistribute", {lg.var(local_v)}, at).id;
  };

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
        lv = m != moved.end() ? m->second : (moved[key] = emit(v, lv, it->second->plan));
      }
      ins.push_back(lg.var(lv));
    }
    // Local attributes: shapes become local shapes; a split mean is weighted by its share.
    ir::Attrs at = n.attrs;
    std::vector<Shape> want;
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      const ValueId v = n.outputs[o];
      auto f = forced.find(v);
      const Layout& produced = f != forced.end() ? f->second->plan.from : p.layout[size_t(v)];
      want.push_back(local_shape(g.value(v).type.shape, produced, mesh, rank));
    }
    const std::string& op = n.def->name;
    if (op == "reshape" || op == "slice_bwd" || op == "sum_to" || op == "broadcast_to" ||
        op == "full")
      at.set("shape", want[0]);
    if (op == "embedding_bwd") at.set("vocab", want[0][0]);
    if (op == "cross_entropy" || op == "cross_entropy_bwd") {
      const int64_t global_rows = rows(g.value(n.inputs[0]).type.shape);
      const int64_t local_rows = rows(lg.value(ins[0].id).type.shape);
      at.set("scale", double(local_rows) / double(global_rows));
    }
    std::vector<ir::Var> outs;
    try {
      outs = lg.apply(op, ins, at);
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
    }
  }
  lg.set_scope("");
  for (size_t k = 0; k < p.outputs.size(); ++k) {
    ValueId lv = L.map[size_t(p.outputs[k])];
    HP_CHECK(lv >= 0, "[shard] output %", p.outputs[k], " was not lowered");
    if (auto it = at_output.find(int(k)); it != at_output.end())
      lv = emit(p.outputs[k], lv, it->second->plan);
    L.outputs.push_back(lv);
  }
  return L;
}

}  // namespace hp::shard
