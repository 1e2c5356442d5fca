// AdamW (decoupled weight decay, PyTorch semantics), global grad-norm clipping and the linear
// warm-up + cosine learning-rate schedule. State tensors are named "m/<param>" and "v/<param>".
// Not graph nodes: the update runs as the backend's fused kernels over parameter buffers after the
// step.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/runtime/backend.hpp"

namespace hp::optim {

struct AdamWConfig {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // applied only to parameters whose `decay` flag is set
};

// Linear warm-up for `warmup` steps, then cosine decay to lr * min_ratio at `total` steps
// (total 0: constant after warm-up).
struct Schedule {
  int64_t warmup = 0;
  int64_t total = 0;
  double min_ratio = 0.1;
  double factor(int64_t step) const;  // step is 0-based
};

struct ParamRef {
  std::string name;
  Tensor param;  // updated in place (shares storage with the caller's tensor)
  bool decay;
};

class AdamW {
 public:
  // Moments are allocated (zeroed) from `alloc`.
  AdamW(AdamWConfig cfg, std::vector<ParamRef> params, std::shared_ptr<Allocator> alloc);
  // One update with `grads[i]` for params[i], at learning rate `lr`, on `backend`.
  void step(const runtime::Context& ctx, const std::vector<const Tensor*>& grads, double lr,
            const runtime::Backend& backend = runtime::default_backend());
  int64_t steps_done() const { return t_; }
  const AdamWConfig& config() const { return cfg_; }
  // "m/<name>", "v/<name>" tensors (shared, not copied) and the step count.
  io::TensorMap state() const;
  // Restores moments and the step count; throws naming a missing or mis-shaped tensor.
  void load_state(const io::TensorMap& state, int64_t steps_done);
  size_t state_bytes() const;

 private:
  AdamWConfig cfg_;
  std::vector<ParamRef> params_;
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};

// Scales grads in place so their global L2 norm is at most max_norm (0: never). Returns the
// norm before clipping.
double clip_grad_norm(const runtime::Context& ctx, const std::vector<Tensor*>& grads,
                      double max_norm,
                      const runtime::Backend& backend = runtime::default_backend());

}  // namespace hp::optim
