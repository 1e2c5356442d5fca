// OffloadTrainer: one device's training step (trace, autodiff, compile) run under an offload
// plan — parameters on the host tier, gradients written back, activations evicted, prefetched or
// recomputed — with AdamW on the host over host or disk state. With nothing to offload it runs
// the plain Executor exactly like train::Trainer, and in every case computes the same bits.
// Not the CLI's loop: no data pipeline and no checkpoint files (it exposes what they need).
#pragma once
#include <memory>
#include <optional>

#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/memory/optimizer.hpp"
#include "hp/memory/options.hpp"
#include "hp/memory/planner.hpp"
#include "hp/memory/runner.hpp"
#include "hp/nn/model.hpp"

namespace hp::memory {

struct OffloadTrainConfig {
  int64_t batch = 8;
  int64_t seq = 128;
  int threads = 1;
  optim::AdamWConfig adam;
  optim::Schedule schedule;
  double clip = 1.0;
  OffloadOptions offload;
};

// The compiled training step of one device and, when the options ask for offload, its plan:
// what OffloadTrainer runs and what `hp plan --explain` prints, without allocating anything.
struct StepPlan {
  nn::Traced traced;
  std::vector<ir::Var> grad_vars;
  std::vector<nn::ParamInfo> infos;
  runtime::Program program;
  size_t param_bytes = 0;
  size_t state_bytes = 0;           // AdamW moments
  size_t peak = 0;                  // device bytes with no offload (optimizer state included)
  size_t budget = 0;                // resolved device budget (0: unlimited)
  PlanRequest request;              // what the plan was asked for (also the cost model)
  std::optional<OffloadPlan> plan;  // absent when nothing is offloaded
};

// What a training step's plan is asked for under `o`: the budget resolved against the
// unconstrained peak of `program` with `state_bytes` of AdamW moments (resident on the device when
// they live there), what may move, and the cost model. Shared by one device and each rank of a
// mesh. The kernels' workspace on a team of `threads` is kept free of the budget. `peak`, when
// given, receives the unconstrained peak.
PlanRequest plan_request(const runtime::Program& program, size_t state_bytes,
                         const OffloadOptions& o, int threads, size_t* peak = nullptr);

// Whether a step with `budget` (resolved) and unconstrained `peak` is planned at all under `o`:
// with a budget or off-device optimizer state; with `auto`, only when the budget is the smaller.
bool wants_plan(const OffloadOptions& o, size_t budget, size_t peak);

// Traces, differentiates and compiles a [batch, seq] step and plans it under `o`. Throws
// hp::OutOfMemory naming the smallest feasible budget. Not movable once planned (the plan shares
// the program's graph), hence the pointer.
std::unique_ptr<StepPlan> plan_step(const io::ModelConfig& cfg, int64_t batch, int64_t seq,
                                    const OffloadOptions& o, int threads);

struct OffloadStep {
  double loss = 0;
  double grad_norm = 0;
  double lr = 0;
  double seconds = 0;            // wall time of the whole step
  double stall_seconds = 0;      // compute blocked on transfers (plan runs only)
  double optimizer_seconds = 0;  // clipping and AdamW after the last micro-batch
};

class OffloadTrainer {
 public:
  // Plans at construction: throws hp::OutOfMemory naming the smallest feasible budget.
  OffloadTrainer(const io::ModelConfig& cfg, const io::TensorMap& params, OffloadTrainConfig c);
  ~OffloadTrainer();

  // One optimizer step on i64 [batch, seq] tokens and targets.
  OffloadStep step(const Tensor& tokens, const Tensor& targets);
  // One optimizer step over micro-batches: gradients averaged as train::Trainer does (bitwise).
  OffloadStep step(const std::vector<std::pair<Tensor, Tensor>>& micro_batches);
  // Loss of one batch, no update: the forward program, planned under the same budget.
  double eval(const Tensor& tokens, const Tensor& targets);
  // Gradients of the last micro-batch by HF name (after step(); until the next step or eval).
  io::TensorMap grads() const;
  // Restores AdamW moments ("m/<name>", "v/<name>") and the step count (resume).
  void load_optimizer_state(const io::TensorMap& state, int64_t steps_done);
  int64_t steps_done() const { return adam_->steps_done(); }

  io::TensorMap params() const;  // by HF name (the live tensors)
  io::TensorMap optimizer_state() const;
  bool offloaded() const { return sp_->plan.has_value(); }
  const OffloadPlan* plan() const { return sp_->plan ? &*sp_->plan : nullptr; }
  const StepPlan& step_plan() const { return *sp_; }
  const runtime::Program& program() const { return sp_->program; }
  size_t unconstrained_peak() const { return sp_->peak; }  // device bytes with no offload
  // The kernels' own workspace, kept free of the budget: device().peak_bytes() plus this stays
  // within device_budget().
  size_t kernel_scratch_bytes() const { return sp_->request.scratch_bytes; }
  size_t device_budget() const { return sp_->budget; }  // 0: unlimited
  Allocator& device() { return *pool_->device(); }
  Allocator& host() { return *pool_->host(); }
  double flops_per_step() const { return sp_->program.flops; }
  const OffloadTrainConfig& config() const { return c_; }

 private:
  // Runs `prog` (under `runner` when planned) on one batch.
  void run(runtime::Executor& ex, OffloadRunner* runner, const Tensor& tokens,
           const Tensor& targets);
  Tensor get(runtime::Executor& ex, OffloadRunner* runner, ir::ValueId v) const;

  io::ModelConfig cfg_;
  OffloadTrainConfig c_;
  std::unique_ptr<StepPlan> sp_;
  std::unique_ptr<TieredPool> pool_;
  std::unique_ptr<TransferEngine> engine_;         // joined before the pool its jobs write to goes
  std::unique_ptr<TransferEngine> inline_copies_;  // the runners' copies with copies: inline
  std::vector<Tensor> params_;
  std::unique_ptr<runtime::Executor> exec_;
  std::unique_ptr<OffloadRunner> runner_;
  std::unique_ptr<OffloadedAdamW> adam_;
  std::vector<Tensor> grads_, accum_;  // last micro-batch's gradients; accumulators (M > 1)
  // The forward-only program for eval(), planned on first use.
  std::optional<runtime::Program> eval_prog_;
  std::optional<OffloadPlan> eval_plan_;
  std::unique_ptr<runtime::Executor> eval_exec_;
  std::unique_ptr<OffloadRunner> eval_runner_;
};

}  // namespace hp::memory
