// Backend: the kernels of one kind of device, registered against op ids (hp/ir/op_id.hpp), and the
// vector math that the optimizer and the training loops run over parameter and gradient buffers.
// The graph, the op records and the executor know no kernel: the Executor asks its backend for one
// kernel per node when it is built. Backends register themselves by name (hp_backend_cpu: "cpu").
// Not a device allocator (hp/core/allocator.hpp) and not a communicator (hp/comm).
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "hp/core/dtype.hpp"
#include "hp/core/tensor.hpp"
#include "hp/ir/graph.hpp"
#include "hp/ir/op_id.hpp"

namespace hp::runtime {

// What every kernel is handed besides its tensors: how many threads it may use.
struct Context {
  int threads = 1;  // >= 1; explicit, never read from the environment
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
  const Context& ctx;
  const ir::Node& node;
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  CommRunner* comm = nullptr;  // null outside SPMD programs
};

// One op's kernel on one backend.
struct Kernel {
  std::function<void(KernelArgs&)> run;
  // Bytes of workspace the kernel allocates for itself (outside any Allocator) for these input
  // types and attributes on a team of `threads`; empty: none.
  std::function<size_t(const std::vector<ir::TensorType>&, const ir::Attrs&, int threads)> scratch;
  // The input dtypes it runs on; empty: any.
  std::function<bool(const std::vector<DType>&)> accepts;
};

// One AdamW update's hyper-parameters (PyTorch semantics; `step` counts from 1).
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // The kernel for `op`; null when this backend has none.
  virtual const Kernel* kernel(ir::OpId op) const = 0;
  // Whether this backend has a kernel for `op` that runs on inputs of these dtypes.
  bool supports(ir::OpId op, const std::vector<DType>& dtypes) const;

  // Vector math over f32 buffers in this backend's memory.
  virtual void adamw(const Context& ctx, float* p, const float* g, float* m, float* v, int64_t n,
                     const AdamWStep& s) const = 0;
  virtual double sum_squares(const Context& ctx, const float* x, int64_t n) const = 0;
  virtual void scale(const Context& ctx, float* x, int64_t n, float s) const = 0;
  // out = alpha * a + beta * b
  virtual void axpby(const Context& ctx, int64_t n, float alpha, const float* a, float beta,
                     const float* b, float* out) const = 0;
};

// The backends linked into this program. `b` must outlive the program; a second backend of the
// same name is an error.
void register_backend(const Backend& b);
// Throws hp::Error naming the backends there are when none is called `name`.
const Backend& backend(std::string_view name);
// The backend programs run on unless they choose one: "cpu".
const Backend& default_backend();

}  // namespace hp::runtime
