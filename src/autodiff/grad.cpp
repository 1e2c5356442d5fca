// Reverse-mode transform: walk the nodes between the wanted inputs and the loss backwards,
// calling each op's VJP and summing gradients of values used more than once.
#include <map>

#include "hp/autodiff/grad.hpp"
#include "hp/ops/ops.hpp"
#include "hp/ops/registry.hpp"

namespace hp::autodiff {

using ir::Graph;
using ir::NodeId;
using ir::ValueId;
using ir::Var;

namespace {
Var zeros(Graph& g, const ir::TensorType& t) {
  return g.apply1(ops::op_def(ir::OpId::kFull), {},
                  {{"shape", t.shape}, {"value", 0.0}, {"dtype", int64_t(t.dtype)}});
}
}  // namespace

std::vector<Var> grad(Var loss, const std::vector<Var>& wrt) {
  HP_CHECK(loss.defined(), "[autodiff] loss is undefined");
  Graph& g = *loss.g;
  HP_CHECK(loss.shape().empty() && is_float(loss.dtype()),
           "[autodiff] loss must be a float scalar, got ", ir::type_str(loss.type()));
  const size_t n_nodes = g.nodes().size();
  const size_t n_values = g.values().size();

  // Values that depend on some w (forward reachability) ...
  std::vector<bool> from_wrt(n_values, false);
  for (const Var& w : wrt) {
    HP_CHECK(w.g == &g, "[autodiff] wrt value from another graph");
    from_wrt[size_t(w.id)] = true;
  }
  for (size_t ni = 0; ni < n_nodes; ++ni) {
    const auto& n = g.node(NodeId(ni));
    bool any = false;
    for (ValueId v : n.inputs) any = any || from_wrt[size_t(v)];
    if (any)
      for (ValueId o : n.outputs) from_wrt[size_t(o)] = true;
  }
  // ... and that the loss depends on (backward reachability).
  std::vector<bool> to_loss(n_values, false);
  to_loss[size_t(loss.id)] = true;
  for (size_t ni = n_nodes; ni-- > 0;) {
    const auto& n = g.node(NodeId(ni));
    bool any = false;
    for (ValueId o : n.outputs) any = any || to_loss[size_t(o)];
    if (any)
      for (ValueId v : n.inputs) to_loss[size_t(v)] = true;
  }

  std::map<ValueId, Var> grads;
  auto accumulate = [&](ValueId v, Var d) {
    auto it = grads.find(v);
    if (it == grads.end())
      grads.emplace(v, d);
    else
      it->second = add(it->second, d);
  };
  grads.emplace(loss.id,
                g.apply1(ops::op_def(ir::OpId::kFull), {},
                         {{"shape", Shape{}}, {"value", 1.0}, {"dtype", int64_t(loss.dtype())}}));

  for (size_t ni = n_nodes; ni-- > 0;) {
    ir::Node node = g.node(NodeId(ni));  // copy: g grows below
    bool needed = false;
    for (ValueId o : node.outputs) needed = needed || (grads.count(o) && from_wrt[size_t(o)]);
    if (!needed) continue;
    HP_CHECK(node.def->vjp, "[autodiff] op '", node.def->name, "' is not differentiable");
    g.set_scope(node.scope.empty() ? "grad" : node.scope + ".grad");
    ir::VjpArgs args{g, node, {}, {}, {}};
    for (ValueId v : node.inputs) args.in.push_back(g.var(v));
    bool any_dout = false;
    for (ValueId o : node.outputs) {
      auto it = grads.find(o);
      args.out.push_back(g.var(o));
      args.dout.push_back(it == grads.end() ? Var{} : it->second);
      any_dout = any_dout || it != grads.end();
    }
    if (!any_dout) continue;
    for (size_t k = 0; k < args.dout.size(); ++k)
      if (!args.dout[k].defined() && k == 0) args.dout[k] = zeros(g, g.value(node.outputs[k]).type);
    std::vector<Var> din = node.def->vjp(args);
    HP_CHECK(din.size() == node.inputs.size(), "[autodiff] VJP of '", node.def->name, "' returned ",
             din.size(), " gradients for ", node.inputs.size(), " inputs");
    for (size_t k = 0; k < din.size(); ++k) {
      ValueId v = node.inputs[k];
      if (!din[k].defined() || !from_wrt[size_t(v)] || !to_loss[size_t(v)]) continue;
      HP_CHECK(din[k].shape() == g.value(v).type.shape, "[autodiff] VJP of '", node.def->name,
               "' gave gradient ", shape_str(din[k].shape()), " for input ",
               shape_str(g.value(v).type.shape));
      accumulate(v, din[k]);
    }
  }
  g.set_scope("");
  std::vector<Var> out;
  for (const Var& w : wrt) {
    auto it = grads.find(w.id);
    out.push_back(it != grads.end() ? it->second : zeros(g, w.type()));
  }
  return out;
}

}  // namespace hp::autodiff
