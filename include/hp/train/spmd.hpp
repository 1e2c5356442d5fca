// Distributed training step: the global step (trace + autodiff) propagated over a strategy's mesh,
// lowered to one local Program per rank, each rank running its Program, clipping by the global
// gradient norm and updating its own parameter shards with AdamW (under an offload plan of its
// own when the device budget asks for one). Same losses as one device.
// Not a launcher of processes: callers give each rank its communicator (threads or mpi).
#pragma once
#include <memory>
#include <optional>

#include "hp/comm/communicator.hpp"
#include "hp/memory/optimizer.hpp"
#include "hp/memory/options.hpp"
#include "hp/memory/planner.hpp"
#include "hp/memory/runner.hpp"
#include "hp/shard/comm.hpp"
#include "hp/shard/lower.hpp"
#include "hp/train/trainer.hpp"

namespace hp::train {

// What every rank shares: the traced global step with gradients and its layouts.
struct SpmdPlan {
  io::ModelConfig cfg;
  shard::Strategy strategy;
  int64_t batch = 0, seq = 0;
  nn::Traced traced;  // logical shapes (TraceOptions::logical_qkv)
  std::vector<nn::ParamInfo> infos;
  std::vector<ir::Var> grads;                // one per parameter
  std::vector<shard::Layout> param_layouts;  // logical, per parameter
  shard::Propagation prop;
  shard::Propagation eval_prop;  // the forward alone, to the loss (validation)
  // Lowering: communication split into start/wait and overlapped with compute (LowerOptions).
  shard::LowerOptions lower;
};

// Traces, differentiates and propagates a global [batch, seq] step. Throws on strategy errors
// (strict mode: implicit communication, naming the op).
std::unique_ptr<SpmdPlan> plan_spmd(const io::ModelConfig& cfg, const shard::Strategy& strategy,
                                    int64_t batch, int64_t seq, const shard::Topology& topo);

// A rule's layout written for a parameter's stored (HF) shape, on its logical shape: a stored dim
// that the logical shape splits in several ([3D] -> [3, D]) puts its axes on the innermost part.
shard::Layout logical_layout(const shard::Layout& stored, const Shape& stored_shape,
                             const Shape& logical_shape);

// Bytes one rank holds for parameters, gradients and AdamW state, from the layouts.
size_t planned_state_bytes(const SpmdPlan& plan, int rank);

// One rank of a distributed run.
class SpmdTrainer {
 public:
  // `params`: global parameters (HF names and shapes); this rank keeps its shards. With
  // `offload` enabled (a device budget, optimizer state off the device) each rank plans its own
  // lowered program under the budget (memory::plan_offload) and keeps its shards on the host
  // tier, as memory::OffloadTrainer does on one device.
  SpmdTrainer(const SpmdPlan& plan, comm::Communicator& world, const io::TensorMap& params,
              TrainOptions opt, memory::OffloadOptions offload = {});
  ~SpmdTrainer();
  // One optimizer step over micro-batches, each a global batch (tokens, targets i64 [batch,
  // seq]); every rank passes the same batches and cuts its own pieces. Gradients are averaged
  // over the micro-batches, as on one device.
  StepResult step(const std::vector<std::pair<Tensor, Tensor>>& micro_batches);
  StepResult step(const Tensor& tokens, const Tensor& targets) { return step({{tokens, targets}}); }
  // Loss of one global batch, no update: a forward-only program, lowered on first use (every
  // rank must call it: it communicates).
  double eval(const Tensor& tokens, const Tensor& targets);
  // Global parameters / last gradients (collective: every rank must call), HF shapes.
  io::TensorMap params();
  io::TensorMap grads();
  // AdamW moments "m/<name>", "v/<name>" gathered to HF shapes (collective), as one device's.
  io::TensorMap optimizer_state();
  // Restores the moments from global (HF-shaped) tensors, keeping this rank's pieces.
  void load_optimizer_state(const io::TensorMap& state, int64_t steps_done);
  int64_t steps_done() const { return adam_->steps_done(); }
  comm::Communicator& world() { return rc_.world(); }
  shard::RankComm& rank_comm() { return rc_; }
  Allocator& device() { return *device_; }
  // Parameters + gradients + optimizer state on this rank, as charged to its allocator.
  size_t state_bytes() const { return state_bytes_; }
  // This rank's offload plan (null without offload) and its device budget (0: unlimited).
  const memory::OffloadPlan* offload_plan() const { return oplan_ ? &*oplan_ : nullptr; }
  size_t device_budget() const { return budget_; }
  double stall_seconds() const { return stall_s_; }  // waiting on transfers, last step
  const shard::Lowered& lowered() const { return lowered_; }
  const runtime::Program& program() const { return prog_; }

 private:
  const SpmdPlan& plan_;
  TrainOptions opt_;
  std::shared_ptr<Allocator> device_;
  shard::RankComm rc_;
  shard::Lowered lowered_;
  // Binds this rank's pieces of the global batch into `ex` (a program lowered as `low`; under
  // `runner` when it is planned), runs it.
  void run_batch(runtime::Executor& ex, memory::OffloadRunner* runner, const shard::Lowered& low,
                 const Tensor& tokens, const Tensor& targets);
  // Output k of the training program after a run (from the runner when offloaded).
  Tensor output(size_t k);
  // Parameter i's global tensor (HF shape) from this rank's piece `local` (collective).
  Tensor global(size_t i, const Tensor& local);
  // An executor for `prog` (its offload plan when `planned`, made into `plan`), with the
  // parameters bound or, offloaded, a runner that owns them.
  std::unique_ptr<runtime::Executor> make_executor(const runtime::Program& prog,
                                                   const shard::Lowered& low, bool planned,
                                                   std::optional<memory::OffloadPlan>& plan,
                                                   std::unique_ptr<memory::OffloadRunner>& runner);
  memory::OffloadOptions off_;
  memory::PlanRequest request_;
  size_t budget_ = 0;
  double stall_s_ = 0;
  std::unique_ptr<memory::TieredPool> pool_;
  std::unique_ptr<memory::TransferEngine> engine_, copies_;  // disk I/O; device<->host copies
  std::optional<memory::OffloadPlan> oplan_, eval_oplan_;
  std::unique_ptr<memory::OffloadRunner> runner_, eval_runner_;

  runtime::Program prog_;
  std::unique_ptr<runtime::Executor> exec_;
  shard::Lowered eval_lowered_;  // forward only, lowered on the first eval()
  runtime::Program eval_prog_;
  std::unique_ptr<runtime::Executor> eval_exec_;
  std::vector<Tensor> params_;  // local shards, logical shapes
  std::vector<Tensor> accum_;   // gradient accumulators (more than one micro-batch)
  std::unique_ptr<memory::OffloadedAdamW> adam_;
  size_t state_bytes_ = 0;
};

struct SpmdRunResult {
  std::vector<double> losses;
  io::TensorMap grads0;                         // gradients of the first step, global
  io::TensorMap final_params;                   // global
  std::vector<size_t> state_bytes, peak_bytes;  // per rank
  std::vector<size_t> budgets;                  // per rank: the offload device budget (0: none)
};

}  // namespace hp::train
