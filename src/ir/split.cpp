// split_graph: nodes assigned to the first part whose requested values need them (one reverse
// sweep per part, stopping at nodes already assigned), then each part rebuilt as a graph of its
// own, its reads from g's sources and earlier parts turned into inputs.
#include "hp/ir/split.hpp"

#include <algorithm>
#include <map>

#include "hp/ir/op_def.hpp"

namespace hp::ir {

std::vector<GraphPart> split_graph(const Graph& g,
                                   const std::vector<std::vector<ValueId>>& wanted) {
  const size_t nn = g.nodes().size();
  std::vector<int> part_of(nn, -1);
  for (size_t k = 0; k < wanted.size(); ++k) {
    std::vector<bool> need(g.values().size(), false);
    for (ValueId v : wanted[k]) {
      HP_CHECK(v >= 0 && size_t(v) < need.size(), "[split_graph] value %", v, " out of range");
      need[size_t(v)] = true;
    }
    for (size_t n = nn; n-- > 0;) {
      if (part_of[n] >= 0) continue;  // an earlier part computed it: read, not recomputed
      const Node& node = g.node(NodeId(n));
      if (std::none_of(node.outputs.begin(), node.outputs.end(),
                       [&](ValueId o) { return need[size_t(o)]; }))
        continue;
      part_of[n] = int(k);
      for (ValueId v : node.inputs) need[size_t(v)] = true;
    }
  }
  std::vector<GraphPart> parts(wanted.size());
  std::vector<std::map<ValueId, ValueId>> in_part(wanted.size());  // value of g -> value in part
  auto hand_on = [&](size_t k, ValueId v) {                        // part k outputs v, once
    auto& outs = parts[k].outputs;
    if (std::none_of(outs.begin(), outs.end(), [&](const auto& o) { return o.first == v; }))
      outs.push_back({v, in_part[k].at(v)});
  };
  for (size_t k = 0; k < parts.size(); ++k) {
    GraphPart& p = parts[k];
    p.graph = std::make_unique<Graph>();
    auto& map = in_part[k];
    for (size_t n = 0; n < nn; ++n) {
      if (part_of[n] != int(k)) continue;
      const Node& node = g.node(NodeId(n));
      std::vector<Var> ins;
      for (ValueId v : node.inputs) {
        if (!map.count(v)) {  // a source of g, or a value of an earlier part
          const Value& val = g.value(v);
          const bool source = val.producer < 0;
          map[v] = p.graph->input(val.name, val.type, source ? val.kind : ValueKind::kInput).id;
          p.inputs.push_back({v, map[v]});
          if (!source) hand_on(size_t(part_of[size_t(val.producer)]), v);
        }
        ins.push_back(p.graph->var(map.at(v)));
      }
      p.graph->set_scope(node.scope);
      const std::vector<Var> outs = p.graph->apply(*node.def, ins, node.attrs);
      for (size_t o = 0; o < outs.size(); ++o) map[node.outputs[o]] = outs[o].id;
    }
    // A wanted value an earlier part computed (a node with several outputs): that part hands it on.
    for (ValueId v : wanted[k]) {
      const NodeId prod = g.value(v).producer;
      if (prod >= 0) hand_on(size_t(part_of[size_t(prod)]), v);
    }
  }
  return parts;
}

}  // namespace hp::ir
