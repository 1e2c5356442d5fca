// Executor: runs a Program on the CPU backend with one arena for intermediates charged to the
// device allocator, persistent buffers for outputs, and caller-bound source tensors.
// Not thread-safe: one executor per rank thread.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hp/allocator.hpp"
#include "hp/cpu/context.hpp"
#include "hp/ir/op_def.hpp"
#include "hp/runtime/program.hpp"
#include "hp/tensor.hpp"

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
  // Allocates the arena and output buffers from `device` (throws hp::OutOfMemory when the
  // budget cannot hold them).
  Executor(const Program& program, std::shared_ptr<Allocator> device, cpu::Context ctx);

  // Binds a source value (input, param, state) to a tensor of exactly its type; kept by handle.
  void bind(ir::ValueId v, Tensor t);
  // Runs every instruction. Throws naming the node when a kernel fails.
  void run();
  // An output (or bound source) after run().
  const Tensor& get(ir::ValueId v) const;
  Tensor& get_mut(ir::ValueId v);

  // Routes every non-compute instruction to `h` (required by programs placed at run time);
  // not owned, must outlive run().
  void set_move_handler(MoveHandler* h) { mover_ = h; }
  // Points value `v` at `t` (a MoveHandler placing a buffer); an undefined tensor unplaces it.
  void place(ir::ValueId v, Tensor t) { tensors_.at(size_t(v)) = std::move(t); }

  // Runs the communication nodes of SPMD programs (not owned, must outlive run()).
  void set_comm_runner(ir::CommRunner* c) { comm_ = c; }

  // Per-op accumulated seconds over runs when profiling is on.
  void set_profile(bool on) { profile_ = on; }
  const std::map<std::string, double>& profile() const { return prof_; }
  const cpu::Context& context() const { return ctx_; }
  const Program& program() const { return program_; }

 private:
  const Program& program_;
  std::shared_ptr<Allocator> device_;
  cpu::Context ctx_;
  std::shared_ptr<Storage> arena_;
  std::vector<Tensor> tensors_;  // per value id
  MoveHandler* mover_ = nullptr;
  ir::CommRunner* comm_ = nullptr;
  bool profile_ = false;
  std::map<std::string, double> prof_;
};

}  // namespace hp::runtime
