// What the IR computes from an op's record alone.
#include "hp/ir/op_def.hpp"

namespace hp::ir {

Cost node_cost(const Graph& g, const Node& n) {
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(g.value(v).type);
  for (ValueId v : n.outputs) out.push_back(g.value(v).type);
  if (n.def->cost) return n.def->cost(in, out, n.attrs);
  double bytes = 0;
  for (const auto* ts : {&in, &out})
    for (const TensorType& t : *ts) bytes += double(numel(t.shape)) * double(dtype_size(t.dtype));
  return Cost{0, bytes};
}

}  // namespace hp::ir
