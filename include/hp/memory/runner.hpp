// OffloadRunner: carries out an OffloadPlan on a runtime::Executor. Sources live in caller-bound
// host tensors; device buffers come from the device Allocator only while the plan says so;
// copies run on the TransferEngine and are waited for exactly where the plan has a kWait (an
// inline engine copies at once, and that time counts as stall). With inline copies every buffer's
// life is known from the plan, so buffers are placed at fixed offsets of one arena (as the
// Program places activations) whenever that arena fits the budget.
// Not a planner: it never decides what moves, and it fails loudly when the plan is inconsistent.
#pragma once
#include <chrono>
#include <functional>
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
  // Binds a source that has no home of its own: each prefetch of it runs `fill` on the transfer
  // engine with the device buffer (its exact bytes), to gather it from wherever it lives.
  using Fill = std::function<void(char* dst, size_t bytes)>;
  void bind_fill(ir::ValueId source, Fill fill);
  // Runs the plan on `ex` (built on plan.program) and waits for every write-back.
  void run(runtime::Executor& ex);
  // An output after run(): its host copy when written back, else its device buffer.
  Tensor result(ir::ValueId output) const;

  // Compute blocked on transfers in the last run: waits, and inline copies.
  double stall_seconds() const { return stall_s_; }
  // Bytes of the one device arena the plan's buffers are placed in at fixed offsets (0: buffers
  // come from the device allocator one by one).
  size_t arena_bytes() const { return arena_bytes_; }

  void move(const runtime::Instr& ins, runtime::Executor& ex) override;

 private:
  // A device buffer: its own storage, or a piece of the arena.
  struct DeviceBuf {
    std::shared_ptr<Storage> storage;
    size_t offset = 0, bytes = 0;
    char* data() const { return static_cast<char*>(storage->data()) + offset; }
    explicit operator bool() const { return storage != nullptr; }
    void reset() { storage.reset(); }
  };
  struct Slot {
    DeviceBuf device;  // the device copy, while the plan keeps one
    Tensor home;       // host copy (sources: the bound tensor)
    Fill fill;         // a source gathered by its prefetch (bind_fill)
    bool home_valid = false;
    Transfer pending;  // the last prefetch or write-back
  };
  void place(runtime::Executor& ex, ir::ValueId r, const DeviceBuf& b);
  DeviceBuf device_buffer(size_t instr, size_t bytes);
  void place_statically();
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
  std::vector<ir::ValueId> batch_;     // prefetches issued together
  std::vector<int64_t> arena_offset_;  // per kAlloc/kPrefetch instruction (-1: none)
  size_t arena_bytes_ = 0;
  std::shared_ptr<Storage> arena_;
  double stall_s_ = 0;
};

}  // namespace hp::memory
