// Cutting a graph into a sequence of programs: part k computes what its requested values need
// beyond what earlier parts computed, reading those values across the cut. A pipeline's chunk
// step becomes its forward (F), then its input gradient (B) and weight gradients (W), or B and W
// fused, with the forward's values kept rather than recomputed.
// Not a scheduler: which part runs when, and where the values in between live, is the caller's.
#pragma once
#include <memory>
#include <utility>
#include <vector>

#include "hp/ir/graph.hpp"

namespace hp::ir {

// One program of a cut graph g: a graph of its own whose inputs stand for values of g (its
// sources, and values earlier parts computed) and whose outputs hand values of g on.
struct GraphPart {
  std::unique_ptr<Graph> graph;
  std::vector<std::pair<ValueId, ValueId>> inputs;   // (value of g, its input in graph)
  std::vector<std::pair<ValueId, ValueId>> outputs;  // (value of g, its value in graph): the
                                                     // requested values it computes and the ones
                                                     // later parts read
};

// Part k runs every node of g that wanted[k] depends on and no earlier part ran; a value an
// earlier part computed, or a source of g, is one of its inputs. Every wanted value is an output
// of the part that computes it, which may be an earlier one (a node with several outputs, such as
// a normalisation's backward giving its input's and its weights' gradients). Node order within a
// part is g's. A part may be empty (everything it wants was computed before).
std::vector<GraphPart> split_graph(const Graph& g, const std::vector<std::vector<ValueId>>& wanted);

}  // namespace hp::ir
