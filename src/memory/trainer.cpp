// OffloadTrainer: the step of train::Trainer (same graph, kernels, clipping and AdamW order), with
// the device tier reduced to what the offload plan keeps there.
#include "hp/memory/trainer.hpp"

#include <chrono>
#include <cmath>

#include "hp/autodiff.hpp"
#include "hp/cpu/kernels.hpp"

namespace hp::memory {

OffloadTrainer::OffloadTrainer(const io::ModelConfig& cfg, const io::TensorMap& params,
                               OffloadTrainConfig c)
    : cfg_(cfg), c_(std::move(c)) {
  HP_CHECK(c_.threads >= 1, "[offload] threads must be >= 1");
  const OffloadOptions& o = c_.offload;
  traced_ = nn::trace(cfg_, c_.batch, c_.seq, true);
  infos_ = nn::param_infos(cfg_);
  grad_vars_ = autodiff::grad(traced_.loss, traced_.params);
  for (size_t i = 0; i < grad_vars_.size(); ++i)
    traced_.graph->set_name(grad_vars_[i].id, "grad/" + infos_[i].name);
  std::vector<ir::ValueId> outs{traced_.loss.id};
  for (auto& g : grad_vars_) outs.push_back(g.id);
  prog_ = runtime::compile(*traced_.graph, outs);

  size_t param_bytes = 0;
  for (auto& info : infos_) param_bytes += size_t(numel(info.shape)) * sizeof(float);
  const size_t state_bytes = 2 * param_bytes;
  const size_t state_on_device = o.optimizer_state == Tier::kDevice ? state_bytes : 0;
  // Peak with nothing offloaded: the reference every fraction is taken of.
  peak_ = memory::unconstrained_peak(prog_, state_bytes);
  budget_ = o.device_budget.resolve(peak_);
  bool plan = !o.device_budget.unlimited() || o.optimizer_state != Tier::kDevice;
  if (o.auto_mode && budget_ != 0) plan = budget_ < peak_;

  engine_ = std::make_unique<TransferEngine>(o.transfer_threads);
  const bool needs_disk = o.optimizer_state == Tier::kDisk;
  pool_ =
      std::make_unique<TieredPool>(std::make_shared<Allocator>("device0", budget_), o.host_budget,
                                   needs_disk ? o.offload_dir : std::filesystem::path());
  const auto timeout = std::chrono::milliseconds(o.timeout_ms);

  // Parameters live on the host tier under a plan, on the device otherwise.
  const auto& palloc = plan ? pool_->host() : pool_->device();
  std::vector<optim::ParamRef> refs;
  for (size_t i = 0; i < infos_.size(); ++i) {
    auto it = params.find(infos_[i].name);
    HP_CHECK(it != params.end(), "[offload] missing parameter '", infos_[i].name, "'");
    params_.push_back(it->second.to(DType::kF32, palloc));
    refs.push_back({infos_[i].name, params_.back(), infos_[i].decay});
  }
  if (plan) {
    PlanRequest req;
    req.device_budget = budget_;
    req.resident_bytes = state_on_device;
    req.params = o.params;
    req.grads = o.grads;
    req.activations = o.activations;
    req.recompute = o.recompute;
    req.cost.gflops = o.gflops;
    req.cost.link_bytes_per_s = o.link_gbps * 1e9;
    plan_ = plan_offload(prog_, req);
    exec_ = std::make_unique<runtime::Executor>(plan_->program, pool_->device(),
                                                cpu::Context{c_.threads});
    runner_ = std::make_unique<OffloadRunner>(*plan_, *pool_, *engine_, timeout);
    for (size_t i = 0; i < params_.size(); ++i) runner_->bind(traced_.params[i].id, params_[i]);
  } else {
    exec_ = std::make_unique<runtime::Executor>(prog_, pool_->device(), cpu::Context{c_.threads});
    for (size_t i = 0; i < params_.size(); ++i) exec_->bind(traced_.params[i].id, params_[i]);
  }
  adam_ =
      std::make_unique<OffloadedAdamW>(c_.adam, refs, o.optimizer_state, *pool_, *engine_, timeout);
}

OffloadTrainer::~OffloadTrainer() = default;

OffloadStep OffloadTrainer::step(const Tensor& tokens, const Tensor& targets) {
  const auto t0 = std::chrono::steady_clock::now();
  const cpu::Context ctx{c_.threads};
  Tensor tok = tokens.dtype() == DType::kI64 ? tokens : tokens.to(DType::kI64);
  Tensor tgt = targets.dtype() == DType::kI64 ? targets : targets.to(DType::kI64);
  OffloadStep r;
  std::vector<Tensor> grads;
  double loss = 0;
  if (runner_) {
    runner_->bind(traced_.tokens.id, tok.is_contiguous() ? tok : tok.clone());
    runner_->bind(traced_.targets.id, tgt.is_contiguous() ? tgt : tgt.clone());
    runner_->run(*exec_);
    r.stall_seconds = runner_->stall_seconds();
    loss = runner_->result(traced_.loss.id).f32()[0];
    for (auto& g : grad_vars_) grads.push_back(runner_->result(g.id));
  } else {
    exec_->bind(traced_.tokens.id, tok);
    exec_->bind(traced_.targets.id, tgt);
    exec_->run();
    loss = exec_->get(traced_.loss.id).f32()[0];
    for (auto& g : grad_vars_) grads.push_back(exec_->get(g.id));
  }
  HP_CHECK(std::isfinite(loss), "[offload] loss is not finite (", loss, ") at optimizer step ",
           adam_->steps_done());
  r.loss = loss;
  std::vector<Tensor*> gp;
  for (auto& g : grads) gp.push_back(&g);
  r.grad_norm = optim::clip_grad_norm(ctx, gp, c_.clip);
  r.lr = c_.adam.lr * c_.schedule.factor(adam_->steps_done());
  std::vector<const Tensor*> cg(gp.begin(), gp.end());
  adam_->step(ctx, cg, r.lr);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

io::TensorMap OffloadTrainer::params() const {
  io::TensorMap m;
  for (size_t i = 0; i < infos_.size(); ++i) m.emplace(infos_[i].name, params_[i]);
  return m;
}

io::TensorMap OffloadTrainer::optimizer_state() const {
  return adam_->state();
}

}  // namespace hp::memory
