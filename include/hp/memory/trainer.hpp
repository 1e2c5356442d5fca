// OffloadTrainer: one device's training step (trace, autodiff, compile) run under an offload
// plan — parameters on the host tier, gradients written back, activations evicted, prefetched or
// recomputed — with AdamW on the host over host or disk state. With nothing to offload it runs
// the plain Executor exactly like train::Trainer, and in every case computes the same bits.
// Not the CLI trainer: one micro-batch per step, no data pipeline, no checkpoints.
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

struct OffloadStep {
  double loss = 0;
  double grad_norm = 0;
  double lr = 0;
  double seconds = 0;        // wall time of the whole step
  double stall_seconds = 0;  // compute blocked on transfers (plan runs only)
};

class OffloadTrainer {
 public:
  // Plans at construction: throws hp::OutOfMemory naming the smallest feasible budget.
  OffloadTrainer(const io::ModelConfig& cfg, const io::TensorMap& params, OffloadTrainConfig c);
  ~OffloadTrainer();

  // One optimizer step on i64 [batch, seq] tokens and targets.
  OffloadStep step(const Tensor& tokens, const Tensor& targets);

  io::TensorMap params() const;  // by HF name (the live tensors)
  io::TensorMap optimizer_state() const;
  bool offloaded() const { return plan_.has_value(); }
  const OffloadPlan* plan() const { return plan_ ? &*plan_ : nullptr; }
  const runtime::Program& program() const { return prog_; }
  size_t unconstrained_peak() const { return peak_; }  // device bytes with no offload
  size_t device_budget() const { return budget_; }     // 0: unlimited
  Allocator& device() { return *pool_->device(); }
  Allocator& host() { return *pool_->host(); }
  double flops_per_step() const { return prog_.flops; }

 private:
  io::ModelConfig cfg_;
  OffloadTrainConfig c_;
  nn::Traced traced_;
  std::vector<ir::Var> grad_vars_;
  std::vector<nn::ParamInfo> infos_;
  runtime::Program prog_;
  size_t peak_ = 0, budget_ = 0;
  std::unique_ptr<TieredPool> pool_;
  std::unique_ptr<TransferEngine> engine_;  // joined before the pool its jobs write to goes
  std::vector<Tensor> params_;
  std::optional<OffloadPlan> plan_;
  std::unique_ptr<runtime::Executor> exec_;
  std::unique_ptr<OffloadRunner> runner_;
  std::unique_ptr<OffloadedAdamW> adam_;
};

}  // namespace hp::memory
