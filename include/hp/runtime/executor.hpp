// Executor: runs a Program on a backend (hp/runtime/backend.hpp) with one arena for intermediates
// charged to the device allocator, persistent buffers for outputs, and caller-bound source tensors.
// Not thread-safe: one executor per rank thread.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"
#include "hp/runtime/backend.hpp"
#include "hp/runtime/program.hpp"

namespace hp::runtime {

class Executor;

// Carries out the instructions of an offload plan that place or move memory (kAlloc and kFree of
// programs placed at run time, kPrefetch, kEvict, kWait); implemented by hp::memory.
class MoveHandler {
 public:
  virtual ~MoveHandler() = default;
  virtual void move(const Instr& ins, Executor& ex) = 0;
};

class Executor {
 public:
  // Takes the kernel of every computed node from `backend` (throws hp::Error naming the op and
  // the backend when it has none) and allocates the arena and output buffers from `device`
  // (throws hp::OutOfMemory when the budget cannot hold them).
  Executor(const Program& program, std::shared_ptr<Allocator> device, Context ctx,
           const Backend& backend = default_backend());

  // Binds a source value (input, param, state) to a tensor of exactly its type; kept by handle.
  void bind(ir::ValueId v, Tensor t);
  // Runs every instruction. Throws naming the node when a kernel fails.
  void run();
  // Lets go of the bound sources `sources` (bind them again before the next run) and of the
  // views this run made (recomputed by every run), so that memory they point to outside the
  // arena, such as one micro-batch's inputs, is not held until the next run. Outputs stay.
  void unbind(const std::vector<ir::ValueId>& sources);
  // An output (or bound source) after run().
  const Tensor& get(ir::ValueId v) const;
  Tensor& get_mut(ir::ValueId v);
  // Hands over outputs `vs` as the last run() left them, and gives each buffer handed over a new
  // one from the device allocator for the next run: outputs that must outlive the next run,
  // without a copy. An output whose buffer is a view of another's hands that buffer over; one
  // without a buffer of its own (a program placed at run time) is copied. The views of a buffer
  // handed over have no buffer until the next run.
  std::vector<Tensor> take(const std::vector<ir::ValueId>& vs);

  // Routes every non-compute instruction to `h` (required by programs placed at run time);
  // not owned, must outlive run().
  void set_move_handler(MoveHandler* h) { mover_ = h; }
  // Points value `v` at `t` (a MoveHandler placing a buffer); an undefined tensor unplaces it.
  void place(ir::ValueId v, Tensor t) { tensors_.at(size_t(v)) = std::move(t); }

  // Runs the communication nodes of SPMD programs (not owned, must outlive run()).
  void set_comm_runner(CommRunner* c) { comm_ = c; }

  // Per-op accumulated seconds over runs when profiling is on.
  void set_profile(bool on) { profile_ = on; }
  const std::map<std::string, double>& profile() const { return prof_; }
  const Context& context() const { return ctx_; }
  const Backend& backend() const { return backend_; }
  const Program& program() const { return program_; }

 private:
  const Program& program_;
  std::shared_ptr<Allocator> device_;
  Context ctx_;
  const Backend& backend_;
  std::vector<const Kernel*> kernels_;  // per node id; null for nodes not computed (views)
  std::shared_ptr<Storage> arena_;
  std::vector<Tensor> tensors_;               // per value id
  std::vector<bool> own_buffer_;              // per value id: an output with a buffer of its own
  std::vector<ir::ValueId> transient_views_;  // views recomputed per run, not outputs (unbind)
  MoveHandler* mover_ = nullptr;
  CommRunner* comm_ = nullptr;
  bool profile_ = false;
  std::map<std::string, double> prof_;
};

}  // namespace hp::runtime
