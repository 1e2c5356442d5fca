// Trainer: one device's training step for a model — traced graph + autodiff, compiled Programs
// (train: loss and gradients; eval: loss only), executor, AdamW, gradient accumulation.
// Not the command line and not the data pipeline: callers hand it token batches.
#pragma once
#include <memory>
#include <optional>

#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/nn/model.hpp"
#include "hp/optim/adamw.hpp"
#include "hp/runtime/executor.hpp"

namespace hp::train {

struct TrainOptions {
  int64_t batch = 8;  // per micro-batch
  int64_t seq = 128;
  int threads = 1;
  optim::AdamWConfig adam;
  optim::Schedule schedule;  // factor applied to adam.lr
  double clip = 1.0;         // global grad-norm clipping (0: off)
  size_t device_budget = 0;  // bytes (0: unlimited)
};

struct StepResult {
  double loss = 0;       // mean over micro-batches
  double grad_norm = 0;  // before clipping
  double lr = 0;
};

class Trainer {
 public:
  // `params` must hold every parameter (see nn::adopt_params); they are copied onto the device.
  Trainer(const io::ModelConfig& cfg, const io::TensorMap& params, TrainOptions opt);

  // One optimizer step over micro-batches; tokens and targets are i64 [batch, seq] each.
  StepResult step(const std::vector<std::pair<Tensor, Tensor>>& micro_batches);
  // Loss of one batch, no update.
  double eval(const Tensor& tokens, const Tensor& targets);

  // Parameters by HF name (shared with the device buffers).
  io::TensorMap params() const;
  // Gradients of the last micro-batch computed (before accumulation scaling of later ones),
  // by HF name; only meaningful right after step() with one micro-batch.
  io::TensorMap grads() const;
  optim::AdamW& optimizer() { return *adam_; }
  const TrainOptions& options() const { return opt_; }
  const io::ModelConfig& config() const { return cfg_; }
  Allocator& device() { return *device_; }
  const runtime::Program& program() const { return train_prog_; }
  runtime::Executor& executor() { return *train_exec_; }
  // FLOPs of one micro-batch's forward+backward, from the ops' cost functions.
  double flops_per_micro_batch() const { return train_prog_.flops; }

 private:
  void bind_batch(runtime::Executor& ex, const Tensor& tokens, const Tensor& targets);

  io::ModelConfig cfg_;
  TrainOptions opt_;
  std::shared_ptr<Allocator> device_;
  nn::Traced traced_;
  std::vector<ir::Var> grad_vars_;
  std::vector<nn::ParamInfo> infos_;
  std::vector<Tensor> params_;
  runtime::Program train_prog_;
  std::optional<runtime::Program> eval_prog_;
  std::unique_ptr<runtime::Executor> train_exec_, eval_exec_;
  std::vector<Tensor> accum_;  // gradient accumulators (micro-batches > 1)
  std::unique_ptr<optim::AdamW> adam_;
};

}  // namespace hp::train
