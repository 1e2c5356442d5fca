// Sharding rules of graph nodes: each OpDef's `sharding` string (einsum-like, or a keyword such as
// "broadcast", "reshape", "slice") made concrete for one node as a factor per tensor dim.
// Not propagation: a rule says which dims move together; propagate.hpp chooses mesh axes for them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hp/ir/graph.hpp"
#include "hp/ir/op_def.hpp"

namespace hp::shard {

using ir::Linearity;  // how partial inputs may flow through an op: its OpDef says

struct NodeRule {
  // Factor id per dim of every input and output; -1: the dim is never split (broadcast size-1
  // dims, dims a keyword op cannot split).
  std::vector<std::vector<int>> in, out;
  std::vector<int64_t> size;  // per factor: its extent
  std::vector<bool> whole;    // per factor: must stay unsplit (normalised or causal dims)
  Linearity linearity = Linearity::kNone;
  std::vector<bool> linear_in;  // kSingle: inputs the op is linear in
  bool reshape = false;         // reshape: dims are matched by propagation, not by factors
  int num_factors() const { return int(size.size()); }
};

// The rule of node `n` of `g`. Einsum strings: one letter per dim, "..." for leading dims (aligned
// from the right across operands), an upper-case letter for a dim that must stay whole; factors
// of the inputs missing from an output make that output a partial sum; operands past a node's
// inputs are optional inputs it leaves out. Throws "[shard] op 'x':
// ..." when the string does not fit the node.
NodeRule node_rule(const ir::Graph& g, const ir::Node& n);

}  // namespace hp::shard
