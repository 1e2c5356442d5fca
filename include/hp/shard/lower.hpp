// SPMD lowering: from a global graph and its propagated layouts to one rank's local graph, with
// local shapes (shape-carrying attributes rewritten) and "redistribute" nodes where a value must
// change layout, each naming its plan in the result's table by index. The local graph compiles
// and runs like any other (runtime::compile, Executor).
// Not an executor of collectives: comm.hpp's RankComm runs the inserted nodes from that table.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "hp/ir/graph.hpp"
#include "hp/shard/propagate.hpp"

namespace hp::shard {

struct Lowered {
  int rank = 0;
  std::unique_ptr<ir::Graph> graph;  // local shapes; sources keep their global names
  std::vector<ir::ValueId> map;      // global value id -> local value id (-1: not lowered)
  std::vector<ir::ValueId> outputs;  // local ids of the propagation's outputs, in their layouts
  int collectives = 0;               // redistribute nodes inserted
  int exchanges = 0;                 // of those, the ones that move data between ranks
  // The moves the communication nodes carry out: attribute "plan" of a "redistribute" node or of
  // a one-input "redistribute_start" is an index into this table (a bucket of all-reduces,
  // "redistribute_start" with attributes "axis" and "reduce", needs no plan).
  std::vector<Plan> plans;
  // The local graph (Graph::str), then each plan under its index.
  std::string str() const;
};

struct LowerOptions {
  // Split communication into "redistribute_start" / "redistribute_wait" so it overlaps compute:
  // a graph output's reduction (gradients) starts right after its producer and is waited for at
  // the end, single all-reduces packed into buckets of about `bucket_bytes`; a parameter's
  // gather starts one layer (run of nodes in one layer scope) ahead of its first use.
  bool overlap = true;
  size_t bucket_bytes = size_t(2) << 20;
  // Graph outputs (global ids) whose reduction starts on its own, never packed into a bucket that
  // waits for outputs produced after them: where the graph is cut into programs run apart
  // (ir::split_graph), a value an earlier part hands over must not depend on a later part's.
  std::vector<ir::ValueId> unbucketed;
};

// Whether `plan` moves data between ranks (not only slices or makes a partial sum locally).
bool communicates(const Plan& plan);

// The redistributions a lowering performs, in p's order: at a node's input the first of each
// move of a value into a layout (later readers of it reuse the moved value; a parameter moves
// again for the backward, see lower()); every graph output's and named value's own.
std::vector<const Redistribution*> performed(const ir::Graph& g, const Propagation& p);

// The local graph of `rank` (a rank of p.mesh). Parameters split over a data axis are gathered
// once for the forward and once for the backward (scopes ending in ".grad"), so the gathered
// copy need not live across the whole step. Throws when a local shape disagrees with its layout.
Lowered lower(const ir::Graph& g, const Propagation& p, int rank, const LowerOptions& opt = {});

}  // namespace hp::shard
