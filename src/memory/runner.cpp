// OffloadRunner: device buffers per residency, host homes, batched prefetches, timed waits.
#include "hp/memory/runner.hpp"

#include <algorithm>
#include <cstring>

#include "hp/core/error.hpp"

namespace hp::memory {

using ir::ValueId;
using runtime::InstrKind;

namespace {
size_t exact_bytes(const ir::Graph& g, ValueId v) {
  const auto& t = g.value(v).type;
  return byte_count(t.shape, dtype_size(t.dtype));
}
}  // namespace

OffloadRunner::OffloadRunner(const OffloadPlan& plan, TieredPool& pool, TransferEngine& engine,
                             std::chrono::milliseconds timeout)
    : plan_(plan), pool_(pool), engine_(engine), timeout_(timeout) {
  const runtime::Program& p = plan_.program;
  HP_CHECK(p.placed_at_run_time, "[offload] the runner needs a plan from plan_offload");
  const size_t nv = p.graph->values().size();
  slots_.resize(nv);
  views_.resize(nv);
  is_source_.assign(nv, false);
  is_output_.assign(nv, false);
  for (size_t v = 0; v < nv; ++v) views_[size_t(p.root[v])].push_back(ValueId(v));
  for (ValueId s : p.sources) is_source_[size_t(s)] = true;
  for (ValueId o : p.outputs) is_output_[size_t(p.root[size_t(o)])] = true;
  if (engine_.mode() == CopyMode::kInline) place_statically();
}

// Each residency of a value (kAlloc or kPrefetch to kFree, kEvict or the end of the step; inline
// write-backs are done by the kEvict) gets an offset in one arena (runtime::pack_lifetimes, as the
// Program places activations). Used when the arena fits the budget.
void OffloadRunner::place_statically() {
  const runtime::Program& p = plan_.program;
  const ir::Graph& g = *p.graph;
  std::vector<runtime::Lifetime> lives;
  std::vector<int64_t> open(g.values().size(), -1);  // value -> index in lives
  for (size_t k = 0; k < p.instrs.size(); ++k) {
    const runtime::Instr& ins = p.instrs[k];
    const size_t r = size_t(ins.value);
    if (ins.kind == InstrKind::kAlloc || ins.kind == InstrKind::kPrefetch) {
      open[r] = int64_t(lives.size());
      lives.push_back(
          {(exact_bytes(g, ins.value) + 63) / 64 * 64, int64_t(k), int64_t(p.instrs.size())});
    } else if ((ins.kind == InstrKind::kFree || ins.kind == InstrKind::kEvict) && open[r] >= 0) {
      lives[size_t(open[r])].end = int64_t(k);
      open[r] = -1;
    }
  }
  std::vector<size_t> offset;
  const size_t top = runtime::pack_lifetimes(lives, offset);
  const size_t reserved = plan_.resident_bytes + plan_.scratch_bytes;
  if (plan_.budget != 0 && top > plan_.budget - std::min(plan_.budget, reserved))
    return;  // fragmentation: allocate buffer by buffer, which the plan's accounting bounds
  arena_offset_.assign(p.instrs.size(), -1);
  for (size_t i = 0; i < lives.size(); ++i)
    arena_offset_[size_t(lives[i].begin)] = int64_t(offset[i]);
  arena_bytes_ = top;
}

OffloadRunner::DeviceBuf OffloadRunner::device_buffer(size_t instr, size_t bytes) {
  if (arena_offset_.empty()) return {std::make_shared<Storage>(pool_.device(), bytes), 0, bytes};
  if (!arena_)  // one per run (see the end of run())
    arena_ = std::make_shared<Storage>(pool_.device(), std::max<size_t>(arena_bytes_, 64));
  HP_CHECK(arena_offset_[instr] >= 0, "[offload] no arena place for instruction ", instr);
  return {arena_, size_t(arena_offset_[instr]), bytes};
}

OffloadRunner::~OffloadRunner() {
  for (auto& s : slots_) {
    try {
      s.pending.wait(timeout_);
    } catch (const std::exception&) {
      // Already reported by run(); a destructor only makes sure no copy outlives its buffers.
    }
  }
}

void OffloadRunner::bind(ValueId v, Tensor home) {
  const ir::Value& val = plan_.program.graph->value(v);
  HP_CHECK(size_t(v) < is_source_.size() && is_source_[size_t(v)], "[offload] %", v, " ('",
           val.name, "') is not a source of the plan");
  HP_CHECK(home.shape() == val.type.shape && home.dtype() == val.type.dtype && home.is_contiguous(),
           "[offload] binding '", val.name, "': expected contiguous ", ir::type_str(val.type));
  slots_[size_t(v)].home = std::move(home);
  slots_[size_t(v)].home_valid = true;
}

void OffloadRunner::bind_fill(ValueId v, Fill fill) {
  const ir::Value& val = plan_.program.graph->value(v);
  HP_CHECK(size_t(v) < is_source_.size() && is_source_[size_t(v)] && fill, "[offload] %", v, " ('",
           val.name, "') is not a source of the plan, or no fill was given");
  HP_CHECK(std::find(plan_.fixed.begin(), plan_.fixed.end(), v) == plan_.fixed.end(), "[offload] '",
           val.name, "' is fixed: it is read where bound, never filled");
  slots_[size_t(v)].fill = std::move(fill);
  slots_[size_t(v)].home_valid = true;
}

void OffloadRunner::place(runtime::Executor& ex, ValueId r, const DeviceBuf& b) {
  const ir::Graph& g = *plan_.program.graph;
  for (ValueId v : views_[size_t(r)]) {
    const auto& t = g.value(v).type;
    ex.place(v, b ? Tensor(b.storage, b.offset, t.shape, t.dtype) : Tensor());
  }
}

void OffloadRunner::wait_pending(Slot& s) {
  if (s.pending.done()) {
    s.pending.wait(timeout_);  // rethrows a failure
  } else {
    auto t0 = std::chrono::steady_clock::now();
    s.pending.wait(timeout_);
    stall_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  s.pending = Transfer();
}

void OffloadRunner::count_inline(std::chrono::steady_clock::time_point t0) {
  if (engine_.mode() == CopyMode::kInline)  // the copy ran on this thread: compute waited
    stall_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void OffloadRunner::flush(runtime::Executor&) {
  if (batch_.empty()) return;
  // One job per group of prefetches: fewer, larger submissions keep the link streaming.
  struct Copy {
    DeviceBuf dst;
    Tensor src;
    Fill fill;
  };
  std::vector<Copy> copies;
  size_t bytes = 0;
  for (ValueId r : batch_) {
    const Slot& s = slots_[size_t(r)];
    copies.push_back({s.device, s.home, s.fill});
    bytes += s.device.bytes;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Transfer t =
      engine_.submit(hp::detail::cat("prefetch of ", batch_.size(), " values starting with ",
                                     plan_.value_name(batch_[0])),
                     bytes, [this, copies = std::move(copies)] {
                       for (const Copy& c : copies)
                         if (c.fill)
                           c.fill(c.dst.data(), c.dst.bytes);
                         else
                           engine_.copy_bytes(c.dst.data(), c.src.raw(), c.dst.bytes);
                     });
  count_inline(t0);
  for (ValueId r : batch_) slots_[size_t(r)].pending = t;
  batch_.clear();
}

void OffloadRunner::move(const runtime::Instr& ins, runtime::Executor& ex) {
  const ir::Graph& g = *plan_.program.graph;
  const ValueId r = ins.value;
  Slot& s = slots_.at(size_t(r));
  const size_t bytes = exact_bytes(g, r);
  switch (ins.kind) {
    case InstrKind::kAlloc:
      HP_CHECK(!s.device, "[offload] %", r, " allocated twice");
      s.device = device_buffer(size_t(&ins - plan_.program.instrs.data()), bytes);
      // Outputs start zeroed, as the plain Executor gives them.
      if (is_output_[size_t(r)]) std::memset(s.device.data(), 0, bytes);
      s.home_valid = false;
      place(ex, r, s.device);
      break;
    case InstrKind::kFree:
      s.device.reset();
      place(ex, r, DeviceBuf());
      if (!is_source_[size_t(r)] && !is_output_[size_t(r)]) {
        s.home = Tensor();
        s.home_valid = false;
      }
      break;
    case InstrKind::kPrefetch: {
      HP_CHECK(s.home_valid && (s.home.defined() || s.fill), "[offload] prefetch of ",
               plan_.value_name(r), ": no copy off the device (is the source bound?)");
      HP_CHECK(!s.device, "[offload] prefetch of ", plan_.value_name(r), ": already on device");
      HP_CHECK(s.pending.done(), "[offload] prefetch of ", plan_.value_name(r),
               " while its write-back is in flight");
      s.device = device_buffer(size_t(&ins - plan_.program.instrs.data()), bytes);
      place(ex, r, s.device);
      batch_.push_back(r);
      break;
    }
    case InstrKind::kEvict: {
      place(ex, r, DeviceBuf());
      if (s.home_valid) {  // clean: the home copy is current
        s.device.reset();
        break;
      }
      if (!s.home.defined()) {
        const auto& t = g.value(r).type;
        s.home = pool_.alloc(Tier::kHost, t.shape, t.dtype);
      }
      // The job owns the device buffer: it returns to the budget when the copy lands.
      const auto t0 = std::chrono::steady_clock::now();
      s.pending = engine_.submit("write-back of " + plan_.value_name(r), bytes,
                                 [this, dev = std::move(s.device), home = s.home]() mutable {
                                   engine_.copy_bytes(home.raw(), dev.data(), dev.bytes);
                                   dev.reset();
                                 });
      count_inline(t0);
      s.device.reset();
      s.home_valid = true;
      break;
    }
    case InstrKind::kWait:
      wait_pending(s);
      break;
    case InstrKind::kCompute:
      break;
  }
  if (ins.kind == InstrKind::kPrefetch) {
    // Submit the group when the next instruction is not another prefetch.
    const auto& list = plan_.program.instrs;
    size_t k = size_t(&ins - list.data());
    if (k + 1 >= list.size() || list[k + 1].kind != InstrKind::kPrefetch) flush(ex);
  }
}

void OffloadRunner::run(runtime::Executor& ex) {
  HP_CHECK(&ex.program() == &plan_.program, "[offload] the executor runs another program");
  for (ValueId v : plan_.program.sources)
    HP_CHECK(slots_[size_t(v)].home.defined() || slots_[size_t(v)].fill, "[offload] source '",
             plan_.program.graph->value(v).name, "' is not bound");
  stall_s_ = 0;
  batch_.clear();
  for (size_t v = 0; v < slots_.size(); ++v) {
    Slot& s = slots_[v];
    s.device.reset();
    if (!is_source_[v]) {
      s.home = is_output_[v] ? s.home : Tensor();
      s.home_valid = false;
    }
  }
  for (ValueId f : plan_.fixed) {  // read and written where bound
    const Tensor& home = slots_[size_t(f)].home;
    const auto* base = static_cast<const char*>(home.storage()->data());
    place(ex, f,
          {home.storage(), size_t(static_cast<const char*>(home.raw()) - base), home.nbytes()});
  }
  ex.set_move_handler(this);
  try {
    ex.run();
  } catch (...) {
    ex.set_move_handler(nullptr);
    throw;
  }
  ex.set_move_handler(nullptr);
  for (auto& s : slots_) wait_pending(s);
  if (!arena_) return;
  // The arena goes back to the device allocator between runs (another program of the same
  // trainer, evaluation, plans its own): outputs still in it are written back to the host first,
  // and nothing else may point into it.
  const ir::Graph& g = *plan_.program.graph;
  for (size_t r = 0; r < slots_.size(); ++r) {
    Slot& sl = slots_[r];
    if (!sl.device) continue;
    if (is_output_[r] && !sl.home_valid) {
      const auto& t = g.value(ValueId(r)).type;
      if (!sl.home.defined()) sl.home = pool_.alloc(Tier::kHost, t.shape, t.dtype);
      engine_.copy_bytes(sl.home.raw(), sl.device.data(), sl.device.bytes);
      sl.home_valid = true;
    }
    sl.device.reset();
  }
  for (size_t v = 0; v < g.values().size(); ++v) ex.place(ValueId(v), Tensor());
  arena_.reset();
}

Tensor OffloadRunner::result(ValueId v) const {
  const runtime::Program& p = plan_.program;
  const ValueId r = p.root.at(size_t(v));
  const Slot& s = slots_.at(size_t(r));
  const auto& t = p.graph->value(v).type;
  if (s.device) return Tensor(s.device.storage, s.device.offset, t.shape, t.dtype);
  HP_CHECK(s.home_valid && s.home.defined(), "[offload] ", plan_.value_name(v),
           " has no result (not an output?)");
  return Tensor(s.home.storage(), 0, t.shape, t.dtype);
}

}  // namespace hp::memory
