// OpDef: everything about one op in one record (type inference, VJP, cost, sharding rule, CPU
// kernel) and the registry that holds all of them. Not where ops are defined: see src/ops/.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "hp/cpu/context.hpp"
#include "hp/ir/graph.hpp"
#include "hp/tensor.hpp"

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

struct KernelArgs;

// Carries out communication nodes (op "redistribute") for one rank of an SPMD program; set on the
// Executor (Executor::set_comm_runner) and implemented by hp::shard over the rank's communicator.
class CommRunner {
 public:
  virtual ~CommRunner() = default;
  virtual void run(KernelArgs& k) = 0;
  // The split form of "redistribute" (ops "redistribute_start" / "redistribute_wait").
  virtual void start(KernelArgs& k) = 0;
  virtual void finish(KernelArgs& k) = 0;
};

struct KernelArgs {
  const cpu::Context& ctx;
  const Node& node;
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  CommRunner* comm = nullptr;  // null outside SPMD programs
};

using InferFn =
    std::function<std::vector<TensorType>(const std::vector<TensorType>&, const Attrs&)>;
using VjpFn = std::function<std::vector<Var>(VjpArgs&)>;  // one Var per input (undefined: none)
using CostFn = std::function<Cost(const std::vector<TensorType>&, const std::vector<TensorType>&,
                                  const Attrs&)>;
using KernelFn = std::function<void(KernelArgs&)>;
// Bytes of workspace the kernel allocates for itself (outside any Allocator) for these input
// types and attributes on a team of `threads`.
using ScratchFn = std::function<size_t(const std::vector<TensorType>&, const Attrs&, int threads)>;

struct OpDef {
  std::string name;
  InferFn infer;
  VjpFn vjp;    // empty: not differentiable (its inputs get no gradient)
  CostFn cost;  // empty: bytes of inputs+outputs, no flops
  // Sharding rule, einsum-like over the op's dims, e.g. "...mk,kn->...mn" for matmul; factors
  // that appear on inputs but not outputs are contractions (outputs become partial sums); an
  // upper-case factor must stay whole (normalised or causal dims). Keywords ("broadcast",
  // "reshape", "slice", ...) name the rules hp/shard/rule.hpp builds from the node's attributes.
  std::string sharding;
  KernelFn cpu;       // the CPU kernel
  ScratchFn scratch;  // the CPU kernel's own workspace; empty: none
  bool view = false;  // output 0 aliases input 0's buffer (reshape): no copy, no allocation
};

// The op table; built once from every src/ops file, immutable after.
const OpDef& op_def(const std::string& name);
std::vector<std::string> op_names();

// Cost of a node (falls back to bytes moved when the op defines none).
Cost node_cost(const Graph& g, const Node& n);
// Bytes of workspace a node's kernel allocates for itself on a team of `threads` (0: none).
size_t node_scratch(const Graph& g, const Node& n, int threads);

}  // namespace hp::ir
