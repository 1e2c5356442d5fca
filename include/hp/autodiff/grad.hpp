// Reverse-mode automatic differentiation as a graph transform.
// Not a tape: gradients are new nodes appended to the same Graph, built from each op's VJP.
#pragma once
#include <vector>

#include "hp/ir/graph.hpp"

namespace hp::autodiff {

// Appends d(loss)/d(w) for each w in `wrt` to loss's graph; loss must be a float scalar [].
// Returns one Var per wrt, with w's shape; a w that loss does not depend on gets zeros.
// Throws naming the op when a node on the path has no VJP.
std::vector<ir::Var> grad(ir::Var loss, const std::vector<ir::Var>& wrt);

}  // namespace hp::autodiff
