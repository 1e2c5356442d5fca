// Trainer: trace -> grad -> compile -> execute -> clip -> AdamW, on one device.
#include "hp/train/trainer.hpp"

#include <cmath>

#include "hp/autodiff.hpp"

namespace hp::train {

Trainer::Trainer(const io::ModelConfig& cfg, const io::TensorMap& params, TrainOptions opt)
    : cfg_(cfg), opt_(opt) {
  HP_CHECK(opt_.threads >= 1, "[train] threads must be >= 1");
  device_ = std::make_shared<Allocator>("device0", opt_.device_budget);
  traced_ = nn::trace(cfg_, opt_.batch, opt_.seq, true);
  infos_ = nn::param_infos(cfg_);
  grad_vars_ = autodiff::grad(traced_.loss, traced_.params);
  for (size_t i = 0; i < grad_vars_.size(); ++i)
    traced_.graph->set_name(grad_vars_[i].id, "grad/" + infos_[i].name);
  std::vector<ir::ValueId> outs{traced_.loss.id};
  for (auto& g : grad_vars_) outs.push_back(g.id);
  train_prog_ = runtime::compile(*traced_.graph, outs);

  std::vector<optim::ParamRef> refs;
  for (size_t i = 0; i < infos_.size(); ++i) {
    auto it = params.find(infos_[i].name);
    HP_CHECK(it != params.end(), "[train] missing parameter '", infos_[i].name, "'");
    params_.push_back(it->second.to(DType::kF32, device_));
    refs.push_back({infos_[i].name, params_.back(), infos_[i].decay});
  }
  adam_ = std::make_unique<optim::AdamW>(opt_.adam, refs, device_);
  train_exec_ =
      std::make_unique<runtime::Executor>(train_prog_, device_, runtime::Context{opt_.threads});
  for (size_t i = 0; i < params_.size(); ++i) train_exec_->bind(traced_.params[i].id, params_[i]);
}

void Trainer::bind_batch(runtime::Executor& ex, const Tensor& tokens, const Tensor& targets) {
  ex.bind(traced_.tokens.id, tokens.dtype() == DType::kI64 ? tokens : tokens.to(DType::kI64));
  ex.bind(traced_.targets.id, targets.dtype() == DType::kI64 ? targets : targets.to(DType::kI64));
}

StepResult Trainer::step(const std::vector<std::pair<Tensor, Tensor>>& micro) {
  HP_CHECK(!micro.empty(), "[train] step needs at least one micro-batch");
  const runtime::Context ctx{opt_.threads};
  const size_t n = micro.size();
  StepResult r;
  std::vector<Tensor*> grads;
  for (size_t k = 0; k < n; ++k) {
    bind_batch(*train_exec_, micro[k].first, micro[k].second);
    train_exec_->run();
    double loss = train_exec_->get(traced_.loss.id).f32()[0];
    HP_CHECK(std::isfinite(loss), "[train] loss is not finite (", loss, ") at optimizer step ",
             adam_->steps_done());
    r.loss += loss / double(n);
    if (n == 1) break;
    if (accum_.empty())
      for (auto& g : grad_vars_) accum_.push_back(Tensor::zeros(g.shape(), DType::kF32, device_));
    for (size_t i = 0; i < grad_vars_.size(); ++i) {
      const Tensor& g = train_exec_->get(grad_vars_[i].id);
      runtime::default_backend().axpby(ctx, g.numel(), k == 0 ? 0.0f : 1.0f, accum_[i].f32(),
                                       1.0f / float(n), g.f32(), accum_[i].f32());
    }
  }
  for (size_t i = 0; i < grad_vars_.size(); ++i)
    grads.push_back(n == 1 ? &train_exec_->get_mut(grad_vars_[i].id) : &accum_[i]);
  r.grad_norm = optim::clip_grad_norm(ctx, grads, opt_.clip);
  r.lr = opt_.adam.lr * opt_.schedule.factor(adam_->steps_done());
  std::vector<const Tensor*> cg(grads.begin(), grads.end());
  adam_->step(ctx, cg, r.lr);
  return r;
}

double Trainer::eval(const Tensor& tokens, const Tensor& targets) {
  if (!eval_exec_) {
    eval_prog_ = runtime::compile(*traced_.graph, {traced_.loss.id});
    eval_exec_ =
        std::make_unique<runtime::Executor>(*eval_prog_, device_, runtime::Context{opt_.threads});
    for (size_t i = 0; i < params_.size(); ++i) eval_exec_->bind(traced_.params[i].id, params_[i]);
  }
  bind_batch(*eval_exec_, tokens, targets);
  eval_exec_->run();
  return eval_exec_->get(traced_.loss.id).f32()[0];
}

io::TensorMap Trainer::params() const {
  io::TensorMap m;
  for (size_t i = 0; i < infos_.size(); ++i) m.emplace(infos_[i].name, params_[i]);
  return m;
}

io::TensorMap Trainer::grads() const {
  io::TensorMap m;
  for (size_t i = 0; i < infos_.size(); ++i)
    m.emplace(infos_[i].name, train_exec_->get(grad_vars_[i].id));
  return m;
}

}  // namespace hp::train
