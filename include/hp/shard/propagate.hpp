// Whole-graph layout propagation: every value of a (forward + backward) graph gets a Layout on the
// strategy's mesh, starting from the strategy's rules (parameters, inputs, named values) and
// following each node's rule; where inputs disagree with what a node needs, the cheapest
// redistribution is planned. Strict mode rejects communication the strategy did not imply.
// Not lowering: no local shapes or collectives here (lower.hpp), only layouts and plans.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "hp/ir/graph.hpp"
#include "hp/shard/redistribute.hpp"
#include "hp/shard/strategy.hpp"

namespace hp::shard {

// One planned move of a value into the layout a consumer needs.
struct Redistribution {
  ir::NodeId node = -1;  // consumer; -1: a graph output's required layout or a named value's rule
  int input = -1;        // input index at the consumer
  ir::ValueId value = -1;
  Plan plan;              // from, to, steps, bytes, time
  bool implicit = false;  // communication the strategy did not imply (gathers, all-to-all, ...)
  std::string where;      // "matmul (node 12, h.0.attn)"
};

struct Propagation {
  Mesh mesh;
  std::vector<bool> live;               // per node: needed for the outputs
  std::vector<Layout> layout;           // per value: as stored (sources) or produced
  std::vector<bool> has_layout;         // per value
  std::vector<std::vector<Layout>> in;  // per node: the layout each input is consumed in
  std::vector<ir::ValueId> outputs;
  std::vector<Layout> output_layout;  // per output: the layout it is delivered in
  std::vector<Redistribution> redistributions;
  std::vector<std::string> data_axes;  // axes splitting the inputs' batch (fsdp gathers these)
  std::vector<std::string> warnings;   // implicit communication (mode warn)
  std::string str(const ir::Graph& g) const;  // every value's layout, then every redistribution
};

// Propagates layouts through the nodes `outputs` depend on. `output_layouts` (one per output)
// are the layouts the caller wants them in (e.g. gradients in their parameter's layout). Sources
// take the strategy's rule for their name; a parameter split over a data axis (fsdp) is gathered
// over that axis before each use. Throws in strict mode on implicit communication, naming the op.
// `source_layouts` overrides the strategy's layout of chosen sources (e.g. parameters traced in
// a logical shape other than the stored one).
Propagation propagate(const ir::Graph& g, const std::vector<ir::ValueId>& outputs,
                      const std::vector<Layout>& output_layouts, const Strategy& strategy,
                      const Topology& topo,
                      const std::map<ir::ValueId, Layout>& source_layouts = {});

}  // namespace hp::shard
