// SPMD lowering: from a global graph and its propagated layouts to one rank's local graph, with
// local shapes (shape-carrying attributes rewritten) and "redistribute" nodes where a value must
// change layout. The local graph compiles and runs like any other (runtime::compile, Executor).
// Not an executor of collectives: comm.hpp's RankComm runs the inserted nodes.
#pragma once
#include <memory>
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
};

struct LowerOptions {
  // Split communication into "redistribute_start" / "redistribute_wait" so it overlaps compute:
  // a graph output's reduction (gradients) starts right after its producer and is waited for at
  // the end, single all-reduces packed into buckets of about `bucket_bytes`; a parameter's
  // gather starts one layer (run of nodes in one layer scope) ahead of its first use.
  bool overlap = true;
  size_t bucket_bytes = size_t(2) << 20;
};

// The local graph of `rank` (a rank of p.mesh). Parameters split over a data axis are gathered
// once for the forward and once for the backward (scopes ending in ".grad"), so the gathered
// copy need not live across the whole step. Throws when a local shape disagrees with its layout.
Lowered lower(const ir::Graph& g, const Propagation& p, int rank, const LowerOptions& opt = {});

// Attribute text of a redistribution plan, as the "redistribute" op carries it, and back.
std::string encode_steps(const Plan& plan);
std::vector<Step> decode_steps(const std::string& text);

}  // namespace hp::shard
