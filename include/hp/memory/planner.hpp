// Offload planner and simulator: from a compiled Program, its budgets and a cost model, decide
// where every value lives at each instruction and emit an annotated Program with explicit
// kPrefetch / kEvict / kWait instructions (and recomputation of cheap elementwise producers).
// Not an executor (runner.hpp carries a plan out) and not dynamic: the plan is fixed before the
// step runs, from the known instruction order.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "hp/ir/op_def.hpp"
#include "hp/runtime/program.hpp"

namespace hp::memory {

// Seconds for compute and transfers: compute from a node's flops (or its bytes, if slower),
// transfers from bytes over one shared device<->host link plus a fixed latency.
struct CostModel {
  double gflops = 50;
  double link_bytes_per_s = 8e9;  // a prefetch: host -> device
  double latency_s = 10e-6;
  // A write-back (device -> host) of up to `writeback_cached_bytes`: its source was just written
  // by the compute, so on a CPU device it is read from the last-level cache (0: the link rate).
  double writeback_bytes_per_s = 0;
  size_t writeback_cached_bytes = 0;
  double mem_bytes_per_s = 20e9;
  // Copies run on the compute cores at the point of issue (CopyMode::kInline): each one stalls
  // the step for its whole time, and a prefetch is best issued right before its use.
  bool inline_copies = false;
  double compute_seconds(const ir::Cost& c) const;
  double transfer_seconds(size_t bytes, bool to_device = true) const;
};

// The link's cost fitted from copies timed through a TransferEngine: the medians of copies of
// `small` and `big` bytes give the rate (from their difference) and the fixed cost per transfer
// (what the small one took beyond that rate, never negative), or, when the big one was not the
// slower, the rate from the big one alone and no fixed cost; the median of write-backs of
// `writeback` bytes, whose source was just written, gives their rate, less the fixed cost but never
// less than half the time: the fixed cost comes from other copies and on a busy machine can exceed
// a whole write-back. Throws hp::Error for a size or time that is not positive, or small >= big.
struct LinkFit {
  double bytes_per_s = 0, latency_s = 0, writeback_bytes_per_s = 0;
};
LinkFit fit_link(size_t small, double small_s, size_t big, double big_s, size_t writeback,
                 double writeback_s);

struct PlanRequest {
  size_t device_budget = 0;   // bytes for the program plus resident_bytes (0: unlimited)
  size_t resident_bytes = 0;  // kept on the device outside the program (optimizer state)
  size_t scratch_bytes = 0;   // kept free for the kernels' own workspace (runtime::scratch_bytes)
  bool params = true;         // sources (params, inputs) may stay off the device between uses
  bool grads = true;          // outputs are written back to the host after their last use
  bool activations = true;    // intermediates may be evicted and prefetched back
  bool recompute = true;      // cheap elementwise producers may be re-run instead
  // Sources read and written where the caller binds them, never moved and not counted: what
  // lives outside the budget's accounting (an inference engine's KV pool, which it sizes apart,
  // and its token, position and block-table inputs).
  std::vector<ir::ValueId> fixed;
  // A source whose home is only complete once a node of the program has run (what the node
  // writes where the source's copy is made from): its prefetch is issued after that node.
  std::vector<std::pair<ir::ValueId, ir::NodeId>> not_before;
  CostModel cost;
};

// One copy between tiers, by instruction index in OffloadPlan::program.
struct PlannedTransfer {
  ir::ValueId value = -1;
  size_t bytes = 0;
  bool to_device = true;  // prefetch (host -> device) or write-back (device -> host)
  int issue = -1;         // the kPrefetch / kEvict
  int wait = -1;          // the kWait (-1: waited only at the end of the step)
};

struct OffloadPlan {
  runtime::Program program;        // the annotated copy (placed_at_run_time)
  std::vector<ir::ValueId> fixed;  // PlanRequest::fixed: the runner places them as bound
  size_t budget = 0;               // device bytes the plan keeps under (0: unlimited)
  size_t resident_bytes = 0;
  size_t scratch_bytes = 0;       // kernel workspace kept free, counted in every figure below
  size_t min_budget = 0;          // the smallest budget any plan of this program can meet
  size_t unconstrained_peak = 0;  // device bytes with nothing offloaded (arena, outputs, sources)
  std::vector<size_t> device_bytes;  // per instruction, after it (with resident_bytes)
  std::vector<size_t> host_bytes;    // per instruction: host bytes of this program's values
  size_t peak_device = 0, peak_host = 0;
  std::vector<PlannedTransfer> transfers;
  int recomputed = 0;  // extra node executions
  double recompute_flops = 0;
  size_t bytes_to_device = 0, bytes_to_host = 0;

  // "name" or "%id (op)" of a value, for listings.
  std::string value_name(ir::ValueId v) const;
};

// Bytes the program needs on the device with no offload, plus `resident_bytes`.
size_t unconstrained_peak(const runtime::Program& p, size_t resident_bytes, size_t scratch_bytes);

// Plans `p` (which must outlive the plan: the annotated program shares its graph). Throws
// hp::OutOfMemory, naming the smallest feasible budget, when `req.device_budget` cannot be met.
OffloadPlan plan_offload(const runtime::Program& p, const PlanRequest& req);

struct SimResult {
  double compute_s = 0;  // sum of node times, recomputation included
  double step_s = 0;     // end of the last instruction, stalls included
  double stall_s = 0;    // compute waiting for transfers
  double link_busy_s = 0;
  size_t peak_device = 0;
};

// Replays a plan with the cost model: compute serially, transfers FIFO on one link.
SimResult simulate(const OffloadPlan& plan, const CostModel& cost);

// `hp plan --explain`: per-tier memory timeline (at most `rows` rows) and every transfer.
std::string explain(const OffloadPlan& plan, const SimResult& sim, int rows = 40);

}  // namespace hp::memory
