// Trainer: one rank's training step from a StepPlan — its program (lowered on a mesh, the global
// step on one device) run by an executor, under an offload plan when a device budget or
// off-device optimizer state asks for one; clipping by the global gradient norm, AdamW on this
// rank's parameter shards, gradient accumulation, eval. One device is a mesh of one rank.
// Not the command line and not the data pipeline: callers hand it token batches.
#pragma once
#include <functional>
#include <memory>
#include <optional>

#include "hp/comm/communicator.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/memory/options.hpp"
#include "hp/memory/runner.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/optim/adamw.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/shard/comm.hpp"
#include "hp/train/offloaded_adamw.hpp"
#include "hp/train/plan.hpp"

namespace hp::train {

class StageRunner;  // train/pipeline.hpp

struct TrainOptions {
  int64_t batch = 8;  // per micro-batch (the one-device constructor plans this shape)
  int64_t seq = 128;
  int threads = 1;  // per rank
  optim::AdamWConfig adam;
  optim::Schedule schedule;        // factor applied to adam.lr
  double clip = 1.0;               // global grad-norm clipping (0: off)
  memory::OffloadOptions offload;  // nothing offloaded unless it asks (per rank on a mesh)
};

struct StepResult {
  double loss = 0;       // mean over micro-batches
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double stall_seconds = 0;      // compute blocked on transfers (offload plans only)
  double optimizer_seconds = 0;  // clipping and AdamW after the last micro-batch
};

class Trainer {
 public:
  // One rank of `plan` (which must outlive it) with its world communicator. `params`: global
  // parameters (HF names and shapes); this rank keeps its shards, on the device or, under an
  // offload plan, on the host tier. Plans at construction: throws hp::OutOfMemory naming the
  // smallest feasible budget.
  Trainer(const StepPlan& plan, comm::Communicator& world, const io::TensorMap& params,
          TrainOptions opt);
  // One device: plans a [opt.batch, opt.seq] step of `cfg` itself.
  Trainer(const io::ModelConfig& cfg, const io::TensorMap& params, TrainOptions opt);
  ~Trainer();

  // One optimizer step over micro-batches, each a global batch (tokens, targets i64 [batch,
  // seq]); every rank passes the same batches and cuts its own pieces. Gradients are averaged
  // over the micro-batches.
  StepResult step(const std::vector<std::pair<Tensor, Tensor>>& micro_batches);
  StepResult step(const Tensor& tokens, const Tensor& targets) { return step({{tokens, targets}}); }
  // Loss of one global batch, no update: a forward-only program, planned on first use (on a
  // mesh every rank must call it: it communicates).
  double eval(const Tensor& tokens, const Tensor& targets);

  // Global parameters / gradients of the last micro-batch (until the next step or eval), HF
  // shapes. On a mesh collective (every rank must call); on one device the live tensors.
  io::TensorMap params();
  io::TensorMap grads();
  // AdamW moments "m/<name>", "v/<name>" in HF shapes (collective on a mesh).
  io::TensorMap optimizer_state();
  // Restores the moments from global (HF-shaped) tensors, keeping this rank's pieces.
  void load_optimizer_state(const io::TensorMap& state, int64_t steps_done);
  int64_t steps_done() const { return adam_->steps_done(); }

  // A pipeline rank (plan_pipeline): every chunk's forward and backward seconds in the last step
  // (a profiling step), as the schedule simulator's costs (collective).
  mpmd::CostModel measured_pipeline_costs();
  // A pipeline rank: the schedule's policy ordered at `costs` from the next step on
  // (StageRunner::reorder; collective in effect: every rank passes the same costs). False when
  // it kept the order it had.
  bool reorder_pipeline(const mpmd::CostModel& costs);
  // A pipeline rank: the schedule it runs.
  const mpmd::Schedule& pipeline_schedule() const;
  // What this rank did in its last step, seconds from the step's start: a pipeline rank's
  // schedule actions of every batch (compute, SEND, RECV); otherwise one BW (chunk 0) per
  // micro-batch, the step's program; then OPT, clipping and the optimizer.
  const std::vector<mpmd::Interval>& step_timeline() const { return timeline_; }
  // This rank's piece of each parameter (and of its moments) as a box of the global shape its
  // layout splits (ParamInfo::logical where it has one), in parameter order. `stores`: this rank
  // writes the piece to a sharded checkpoint (coordinate 0 on the mesh axes the layout leaves
  // unused, so a replicated piece is written once).
  struct PieceBox {
    std::string name;
    Shape shape, hf_shape;  // global: the split shape and the HF shape (same row-major bytes)
    Shape offset, extent;
    bool stores = true;
  };
  std::vector<PieceBox> piece_boxes() const;
  // Every parameter of the model as a whole box (shapes and names for a checkpoint's index; a
  // pipeline rank's piece_boxes() holds only its stage's parameters).
  std::vector<PieceBox> global_boxes() const;
  // Copies of this rank's pieces (parameters, AdamW m and v, read back from host or disk when
  // offloaded) of the pieces it stores, in piece_boxes() order; others are left undefined.
  struct Snapshot {
    std::vector<Tensor> param, m, v;
  };
  Snapshot snapshot();
  // Fills this rank's parameter pieces and moments from `read(tensor name, box, dst)` (dst: f32,
  // the piece's extent; tensor names "<param>", "m/<param>", "v/<param>") and sets the step count.
  using PieceReader =
      std::function<void(const std::string& name, const PieceBox& box, Tensor& dst)>;
  void restore(const PieceReader& read, int64_t steps_done);

  const TrainOptions& options() const { return opt_; }
  // The communicator of this rank's mesh (not for the one-device constructor's trainer).
  shard::RankComm& rank_comm();
  Allocator& device() { return *device_; }
  Allocator& host() { return *pool_->host(); }
  // Parameters + gradients + optimizer state on this rank, as charged to its allocator.
  size_t state_bytes() const { return state_bytes_; }
  // This rank's program (not for a pipeline rank, which runs one per chunk and row count).
  const shard::Lowered& lowered() const { return rank_program().lowered; }
  const RankProgram& rank_program() const;
  const runtime::Program& program() const { return rank_program().program; }
  // This rank's offload plan (null without offload) and its device budget (0: unlimited).
  const memory::OffloadPlan* offload_plan() const {
    return rp_ && rp_->offload ? &*rp_->offload : nullptr;
  }
  size_t device_budget() const { return rp_ ? rp_->budget : pipeline_budget_; }
  size_t unconstrained_peak() const { return rp_ ? rp_->peak : 0; }  // bytes with no offload
  // The kernels' own workspace, kept free of the budget: device().peak_bytes() plus this stays
  // within device_budget().
  size_t kernel_scratch_bytes() const {
    return rp_ ? rp_->request.scratch_bytes : pipeline_scratch_;
  }
  double stall_seconds() const { return stall_s_; }  // waiting on transfers, last step
  // FLOPs of one micro-batch's forward+backward on this rank, from the ops' cost functions (a
  // pipeline rank: its chunks' over one global batch).
  double flops_per_micro_batch();

 private:
  Trainer(std::unique_ptr<StepPlan> own, const StepPlan* plan, comm::Communicator* world,
          const io::TensorMap& params, TrainOptions opt);
  // This rank's piece of parameter i's global (HF-shaped) tensor, and the global tensor from the
  // piece (collective on a mesh).
  Tensor piece(size_t i, const Tensor& global) const;
  Tensor global(size_t i, const Tensor& local);
  // An executor for `rp` (under a runner when it has an offload plan), parameters bound.
  std::unique_ptr<runtime::Executor> make_executor(const RankProgram& rp,
                                                   std::unique_ptr<memory::OffloadRunner>& runner);
  // Binds this rank's pieces of the batch into `ex` (or its runner) and runs it.
  void run_batch(runtime::Executor& ex, memory::OffloadRunner* runner, const RankProgram& rp,
                 const Tensor& tokens, const Tensor& targets);
  Tensor output(size_t k);  // output k of the training program after a run
  // Clips `grads` by their global norm (replicas counted once); returns the norm.
  double clip(const runtime::Context& ctx, const std::vector<Tensor*>& grads);

  // A pipeline rank: its stage's parameters, gradients summed with the other holders of tied ones,
  // and a parameter's value from the rank that owns it (collective).
  void init_pipeline(const io::TensorMap& params);
  void check_pipeline_budget();  // a device budget under a pipeline: checked, then held
  void exchange_shared_grads();
  Tensor from_owner(size_t i, const std::function<Tensor(size_t)>& local);
  // This rank's piece of parameter i's global tensor on its stage's mesh (whole on one device).
  Tensor stage_piece(size_t i, const Tensor& global) const;

  std::unique_ptr<StepPlan> own_plan_;  // the one-device constructor's
  const StepPlan& plan_;
  TrainOptions opt_;
  comm::Communicator* world_;
  std::unique_ptr<RankProgram> rp_, eval_rp_;
  std::shared_ptr<Allocator> device_;
  std::unique_ptr<shard::RankComm> rc_;  // given a world
  std::unique_ptr<memory::TieredPool> pool_;
  std::unique_ptr<memory::TransferEngine> engine_, copies_;  // disk I/O; device<->host copies
  std::vector<Tensor> params_;                               // local shards, logical shapes
  std::vector<Tensor> accum_;  // gradient accumulators (more than one micro-batch)
  std::unique_ptr<OffloadedAdamW> adam_;
  std::unique_ptr<memory::OffloadRunner> runner_, eval_runner_;
  std::unique_ptr<runtime::Executor> exec_, eval_exec_;
  std::unique_ptr<StageRunner> stage_;  // a pipeline plan: this rank's chunks and the schedule
  size_t state_bytes_ = 0;
  size_t pipeline_budget_ = 0, pipeline_scratch_ = 0;  // check_pipeline_budget's
  double stall_s_ = 0;
  std::vector<mpmd::Interval> timeline_;  // the last step's (step_timeline)
};

}  // namespace hp::train
