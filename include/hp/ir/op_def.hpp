// OpDef: everything about one op in one record (type inference, VJP, cost, sharding rule and the
// hooks layout propagation and SPMD lowering call, recomputation). Not where ops are defined (see
// src/ops/ and hp/ops/registry.hpp, which holds the records) and not a kernel: backends register
// kernels against the op's id (hp/runtime/backend.hpp). Code outside src/ops/ reads these fields
// and never asks which op a node is.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "hp/ir/graph.hpp"
#include "hp/ir/op_id.hpp"

namespace hp::ir {

struct Cost {
  double flops = 0;  // floating-point operations
  double bytes = 0;  // bytes read + written (for the roofline estimate)
};

// What a VJP sees: the forward node's inputs and outputs as Vars in the graph being extended,
// and the gradient of each output (undefined where no gradient flows).
struct VjpArgs {
  Graph& g;
  Node node;  // a copy: the graph grows while the VJP runs
  std::vector<Var> in, out, dout;
};

using InferFn =
    std::function<std::vector<TensorType>(const std::vector<TensorType>&, const Attrs&)>;
using VjpFn = std::function<std::vector<Var>(VjpArgs&)>;  // one Var per input (undefined: none)
using CostFn = std::function<Cost(const std::vector<TensorType>&, const std::vector<TensorType>&,
                                  const Attrs&)>;

// How partial (unreduced) sums in an op's inputs may pass through it (layout propagation).
enum class Linearity {
  kNone,   // every input must be reduced first
  kJoint,  // linear in all inputs together (add, reshape, slice, ...): inputs share one partial set
  kSingle,  // linear in each input separately (matmul, mul): at most one input partial
};

// What an op's `place` hook sees in layout propagation (hp/shard/propagate.cpp) once mesh axes
// are chosen for each factor of the node's sharding rule (hp/shard/rule.hpp): it may change them.
class PlaceCtx {
 public:
  virtual ~PlaceCtx() = default;
  virtual size_t rank(size_t input) const = 0;
  // The rule's factor of input `input`'s dim `dim`; -1: that dim is never split.
  virtual int factor(size_t input, size_t dim) const = 0;
  virtual int64_t extent(int factor) const = 0;
  // The mesh axes chosen to split `factor`, outermost first; empty: whole.
  virtual std::vector<std::string>& axes(int factor) = 0;
  virtual int64_t ways(const std::vector<std::string>& axes) const = 0;  // product of their sizes
  // The op combines the shards of `factor` itself (see OpDef::localize): its outputs are whole,
  // not partial sums, over the factor's axes.
  virtual void reduced_inside(int factor) = 0;
};

// What an op's `localize` hook sees when SPMD lowering (hp/shard/lower.cpp) emits one rank's copy
// of a node: global shapes, this rank's pieces, and the means to emit nodes and collectives
// before it. The hook makes the attributes local (shapes, shard offsets, head groups) and may add
// inputs or put another op in the node's place.
class LocalizeCtx {
 public:
  OpId op;              // the op to emit: the node's, unless the hook substitutes another
  std::vector<Var> in;  // this rank's inputs, already in the layouts the node reads them in
  Attrs attrs;          // the node's attributes, to be made local
  virtual ~LocalizeCtx() = default;
  virtual const Shape& global_in(size_t i) const = 0;
  virtual const Shape& global_out(size_t o) const = 0;
  virtual const Shape& local_out(size_t o) const = 0;  // the shape output o must have here
  // Input i's (output o's) dim d on this rank: split over mesh axes, into how many pieces, and
  // where this rank's piece starts.
  virtual bool in_split(size_t i, size_t d) const = 0;
  virtual int64_t in_pieces(size_t i, size_t d) const = 0;
  virtual int64_t in_offset(size_t i, size_t d) const = 0;
  virtual bool out_split(size_t o, size_t d) const = 0;
  virtual int64_t out_offset(size_t o, size_t d) const = 0;
  // Emits `op` on this rank, before the node.
  virtual Var apply(OpId op, const std::vector<Var>& in, const Attrs& attrs) = 0;
  // `local`: this rank's piece of a value of type `global` laid out as input i is; gathered whole
  // along dim d (an all-gather over the axes that split input i's dim d).
  virtual Var gather(Var local, const TensorType& global, size_t i, size_t d) = 0;
  // `local`: this rank's share of a sum over every mesh axis that splits input i; summed, the
  // same value of type `global` on every rank.
  virtual Var sum_over(Var local, const TensorType& global, size_t i) = 0;
  // The value `make` builds from input i, made once per (input value, what) and reused by every
  // later node that asks (both losses of one target tensor share its count).
  virtual Var once(size_t i, const std::string& what, const std::function<Var()>& make) = 0;
};
using PlaceFn = std::function<void(PlaceCtx&)>;
using LocalizeFn = std::function<void(LocalizeCtx&)>;

struct OpDef {
  OpId id{};
  std::string name;  // op_name(id), for messages; set by the registry
  InferFn infer;
  VjpFn vjp;    // empty: not differentiable (its inputs get no gradient)
  CostFn cost;  // empty: bytes of inputs+outputs, no flops
  // Sharding rule, einsum-like over the op's dims, e.g. "...mk,kn->...mn" for matmul; factors
  // that appear on inputs but not outputs are contractions (outputs become partial sums); an
  // upper-case factor must stay whole (normalised or causal dims). Keywords ("broadcast",
  // "reshape", "slice", ...) name the rules hp/shard/rule.hpp builds from the node's attributes.
  std::string sharding;
  Linearity linearity = Linearity::kNone;  // which partial sums pass through unreduced
  std::vector<bool> linear_in;             // kSingle: the inputs the op is linear in
  // Its outputs are pieces or views of input 0 (slice, split, permute, reshape): a parameter's
  // placement carries through them (propagation weighs the strategy's placement first).
  bool keeps_placement = false;
  PlaceFn place;        // adjusts the mesh axes propagation chose (attention's heads); may be empty
  LocalizeFn localize;  // makes a node's attributes local in SPMD lowering; empty: kept as they are
  bool view = false;    // output 0 aliases input 0's buffer (reshape): no copy, no allocation
  // Elementwise and cheap enough that the memory planner recomputes its output rather than keep
  // it on the device (or offload it) across a long gap.
  bool cheap_to_recompute = false;
};

// Cost of a node (falls back to bytes moved when the op defines none).
Cost node_cost(const Graph& g, const Node& n);

}  // namespace hp::ir
