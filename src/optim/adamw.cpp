// AdamW, clipping and schedule over the backend's fused kernels.
#include "hp/optim/adamw.hpp"

#include <cmath>

namespace hp::optim {

double Schedule::factor(int64_t step) const {
  if (warmup > 0 && step < warmup) return double(step + 1) / double(warmup);
  if (total <= warmup || total == 0) return 1.0;
  double p = std::min(1.0, double(step - warmup) / double(total - warmup));
  return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(M_PI * p));
}

AdamW::AdamW(AdamWConfig cfg, std::vector<ParamRef> params, std::shared_ptr<Allocator> alloc)
    : cfg_(cfg), params_(std::move(params)) {
  HP_CHECK(cfg_.lr >= 0 && cfg_.eps > 0 && cfg_.beta1 >= 0 && cfg_.beta1 < 1 && cfg_.beta2 >= 0 &&
               cfg_.beta2 < 1 && cfg_.weight_decay >= 0,
           "[adamw] invalid hyper-parameters (lr ", cfg_.lr, ", betas ", cfg_.beta1, "/",
           cfg_.beta2, ", eps ", cfg_.eps, ", weight decay ", cfg_.weight_decay, ")");
  for (auto& p : params_) {
    m_.push_back(Tensor::zeros(p.param.shape(), DType::kF32, alloc));
    v_.push_back(Tensor::zeros(p.param.shape(), DType::kF32, alloc));
  }
}

void AdamW::step(const runtime::Context& ctx, const std::vector<const Tensor*>& grads, double lr,
                 const runtime::Backend& backend) {
  HP_CHECK(grads.size() == params_.size(), "[adamw] ", grads.size(), " gradients for ",
           params_.size(), " parameters");
  ++t_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].param;
    HP_CHECK(grads[i]->shape() == p.shape(), "[adamw] gradient of '", params_[i].name,
             "' has shape ", shape_str(grads[i]->shape()));
    const runtime::AdamWStep s{float(lr),
                               float(cfg_.beta1),
                               float(cfg_.beta2),
                               float(cfg_.eps),
                               params_[i].decay ? float(cfg_.weight_decay) : 0.0f,
                               t_};
    backend.adamw(ctx, p.f32(), grads[i]->f32(), m_[i].f32(), v_[i].f32(), p.numel(), s);
  }
}

io::TensorMap AdamW::state() const {
  io::TensorMap s;
  for (size_t i = 0; i < params_.size(); ++i) {
    s.emplace("m/" + params_[i].name, m_[i]);
    s.emplace("v/" + params_[i].name, v_[i]);
  }
  return s;
}

void AdamW::load_state(const io::TensorMap& state, int64_t steps_done) {
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [prefix, dst] : {std::pair{"m/", &m_[i]}, std::pair{"v/", &v_[i]}}) {
      auto it = state.find(prefix + params_[i].name);
      HP_CHECK(it != state.end(), "[adamw] optimizer state lacks '", prefix, params_[i].name, "'");
      HP_CHECK(it->second.shape() == dst->shape(), "[adamw] optimizer state '", prefix,
               params_[i].name, "' has shape ", shape_str(it->second.shape()));
      dst->copy_from(it->second);
    }
  }
  t_ = steps_done;
}

size_t AdamW::state_bytes() const {
  size_t b = 0;
  for (size_t i = 0; i < m_.size(); ++i) b += m_[i].nbytes() + v_[i].nbytes();
  return b;
}

double clip_grad_norm(const runtime::Context& ctx, const std::vector<Tensor*>& grads,
                      double max_norm, const runtime::Backend& backend) {
  double ss = 0;
  for (Tensor* g : grads) ss += backend.sum_squares(ctx, g->f32(), g->numel());
  double norm = std::sqrt(ss);
  HP_CHECK(std::isfinite(norm), "[clip] gradient norm is not finite (", norm, ")");
  if (max_norm > 0 && norm > max_norm) {
    float s = float(max_norm / (norm + 1e-6));
    for (Tensor* g : grads) backend.scale(ctx, g->f32(), g->numel(), s);
  }
  return norm;
}

}  // namespace hp::optim
