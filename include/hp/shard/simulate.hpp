// Reference simulator for redistribution plans: per-rank float buffers in memory, each step
// executed by copying (or reducing) the boxes that the step's group of ranks holds, with checks
// that every element is covered. It is the oracle plans are tested against.
// Not fast and not a communicator: O(ranks^2) box intersections per send/recv step.
#pragma once
#include <vector>

#include "hp/shard/layout.hpp"
#include "hp/shard/redistribute.hpp"

namespace hp::shard {

// One row-major buffer per device, indexed by position in mesh.ranks() (not by rank id); each
// holds the extent of that device's local box.
using Pieces = std::vector<std::vector<float>>;

// The pieces of a row-major global array under `layout`. Partial layouts put the whole value in
// the addend with coordinate 0 on every partial axis and the reduction's identity elsewhere
// (sum: zeros; max/min: the value itself, which reduces to the same thing).
Pieces scatter(const std::vector<float>& global, const Shape& shape, const Layout& layout,
               const Mesh& mesh);

// The logical array the pieces represent: reduces partial axes, then checks that replicas agree
// (within `tolerance`, absolute) and that every element is held. Throws "[simulate] ..." otherwise.
std::vector<float> assemble(const Pieces& pieces, const Shape& shape, const Layout& layout,
                            const Mesh& mesh, float tolerance = 0);

// Runs one step on pieces laid out as step.before; returns pieces laid out as step.after. Each
// rank reads only from the ranks its collective reaches (the group along the step's axis; for
// send/recv, any rank with the same partial coordinates). Throws when a step is ill-formed, e.g.
// an all-gather of an axis that is not innermost on its dim, which would leave elements uncovered.
Pieces simulate_step(const Step& step, const Pieces& in, const Shape& shape, const Mesh& mesh);
// Runs every step of a plan in order.
Pieces simulate(const Plan& plan, const Pieces& in, const Mesh& mesh);

}  // namespace hp::shard
