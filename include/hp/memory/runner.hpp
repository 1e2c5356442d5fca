// OffloadRunner: carries out an OffloadPlan on a runtime::Executor. Sources live in caller-bound
// host tensors; device buffers come from the device Allocator only while the plan says so;
// copies run on the TransferEngine and are waited for exactly where the plan has a kWait (an
// inline engine copies at once, and that time counts as stall).
// Not a planner: it never decides what moves, and it fails loudly when the plan is inconsistent.
#pragma once
#include <chrono>
#include <memory>
#include <vector>

#include "hp/memory/planner.hpp"
#include "hp/memory/tiers.hpp"
#include "hp/memory/transfer.hpp"
#include "hp/runtime/executor.hpp"

namespace hp::memory {

class OffloadRunner : public runtime::MoveHandler {
 public:
  // `plan`, `pool` and `engine` must outlive the runner.
  OffloadRunner(const OffloadPlan& plan, TieredPool& pool, TransferEngine& engine,
                std::chrono::milliseconds timeout);
  ~OffloadRunner() override;  // waits (bounded) for transfers still in flight

  // Binds a source value to its home: a contiguous tensor of exactly its type, kept by handle.
  void bind(ir::ValueId source, Tensor home);
  // Runs the plan on `ex` (built on plan.program) and waits for every write-back.
  void run(runtime::Executor& ex);
  // An output after run(): its host copy when written back, else its device buffer.
  Tensor result(ir::ValueId output) const;

  // Compute blocked on transfers in the last run: waits, and inline copies.
  double stall_seconds() const { return stall_s_; }

  void move(const runtime::Instr& ins, runtime::Executor& ex) override;

 private:
  struct Slot {
    std::shared_ptr<Storage> device;  // the device copy, while the plan keeps one
    Tensor home;                      // host copy (sources: the bound tensor)
    bool home_valid = false;
    Transfer pending;  // the last prefetch or write-back
  };
  void place(runtime::Executor& ex, ir::ValueId r, const std::shared_ptr<Storage>& s);
  void wait_pending(Slot& s);
  void flush(runtime::Executor& ex);
  void count_inline(std::chrono::steady_clock::time_point t0);

  const OffloadPlan& plan_;
  TieredPool& pool_;
  TransferEngine& engine_;
  std::chrono::milliseconds timeout_;
  std::vector<Slot> slots_;                      // per root value
  std::vector<std::vector<ir::ValueId>> views_;  // per root: values aliasing it
  std::vector<bool> is_source_, is_output_;
  std::vector<ir::ValueId> batch_;  // prefetches issued together
  double stall_s_ = 0;
};

}  // namespace hp::memory
