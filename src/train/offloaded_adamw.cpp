// Host-side AdamW over host or disk moments, with the disk pipeline read(i+1) | update(i) |
// write(i-1).
#include "hp/train/offloaded_adamw.hpp"

#include <algorithm>
#include <cstring>

#include "hp/core/error.hpp"

namespace hp::train {

OffloadedAdamW::OffloadedAdamW(optim::AdamWConfig cfg, std::vector<optim::ParamRef> params,
                               Tier state_tier, memory::TieredPool& pool,
                               memory::TransferEngine& engine, std::chrono::milliseconds timeout,
                               int64_t bucket_elems)
    : cfg_(cfg),
      params_(std::move(params)),
      tier_(state_tier),
      pool_(pool),
      engine_(engine),
      timeout_(timeout) {
  if (tier_ != Tier::kDisk) {
    inner_ = std::make_unique<optim::AdamW>(cfg_, params_, pool_.allocator(tier_));
    return;
  }
  HP_CHECK(bucket_elems >= 1, "[adamw] bucket_elems must be >= 1");
  // Validates the hyper-parameters exactly as optim::AdamW does (no state allocated).
  optim::AdamW check(cfg_, {}, pool_.host());
  int64_t max_len = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    HP_CHECK(params_[i].param.dtype() == DType::kF32 && params_[i].param.is_contiguous(),
             "[adamw] parameter '", params_[i].name, "' must be contiguous f32");
    const int64_t n = params_[i].param.numel();
    for (int64_t b = 0; b < n; b += bucket_elems) {
      buckets_.push_back({i, b, std::min(bucket_elems, n - b)});
      max_len = std::max(max_len, buckets_.back().len);
    }
  }
  for (int k = 0; k < 3; ++k)
    staging_.push_back(
        Tensor::zeros({2 * std::max<int64_t>(max_len, 1)}, DType::kF32, pool_.host()));
  // Zeroed moments on disk, written through the same engine.
  std::vector<memory::Transfer> writes;
  for (size_t b = 0; b < buckets_.size(); ++b)
    writes.push_back(pool_.write_async(engine_, key(b), staging_[0].raw(),
                                       size_t(2 * buckets_[b].len) * sizeof(float)));
  for (auto& w : writes) w.wait(timeout_);
}

OffloadedAdamW::~OffloadedAdamW() {
  for (auto& t : in_flight_) {
    try {
      t.wait(timeout_);
    } catch (const std::exception&) {
      // step() already threw it; the staging buffers must simply not be freed under a copy.
    }
  }
}

std::string OffloadedAdamW::key(size_t b) const {
  return "adamw/bucket" + std::to_string(b);
}

void OffloadedAdamW::step(const runtime::Context& ctx, const std::vector<const Tensor*>& grads,
                          double lr, const runtime::Backend& backend) {
  if (inner_) {
    inner_->step(ctx, grads, lr, backend);
    return;
  }
  HP_CHECK(grads.size() == params_.size(), "[adamw] ", grads.size(), " gradients for ",
           params_.size(), " parameters");
  for (size_t i = 0; i < params_.size(); ++i)
    HP_CHECK(grads[i]->shape() == params_[i].param.shape() && grads[i]->is_contiguous(),
             "[adamw] gradient of '", params_[i].name, "' has shape ",
             shape_str(grads[i]->shape()));
  ++t_;
  const size_t nb = buckets_.size();
  std::vector<memory::Transfer> reads(nb), writes(nb);
  auto bytes = [&](size_t b) { return size_t(2 * buckets_[b].len) * sizeof(float); };
  auto buf = [&](size_t b) { return staging_[b % 3].f32(); };
  in_flight_.clear();
  try {
    if (nb > 0) reads[0] = pool_.read_async(engine_, key(0), buf(0), bytes(0));
    for (size_t b = 0; b < nb; ++b) {
      if (b + 1 < nb) {
        // Buffer (b+1)%3 last held bucket b-2: its write-back must have landed.
        if (b >= 2) writes[b - 2].wait(timeout_);
        reads[b + 1] = pool_.read_async(engine_, key(b + 1), buf(b + 1), bytes(b + 1));
        in_flight_.push_back(reads[b + 1]);
      }
      reads[b].wait(timeout_);
      const Bucket& k = buckets_[b];
      optim::ParamRef& p = params_[k.param];
      float* m = buf(b);
      float* v = m + k.len;
      const runtime::AdamWStep s{float(lr),
                                 float(cfg_.beta1),
                                 float(cfg_.beta2),
                                 float(cfg_.eps),
                                 p.decay ? float(cfg_.weight_decay) : 0.0f,
                                 t_};
      backend.adamw(ctx, p.param.f32() + k.begin, grads[k.param]->f32() + k.begin, m, v, k.len, s);
      writes[b] = pool_.write_async(engine_, key(b), m, bytes(b));
      in_flight_.push_back(writes[b]);
    }
    for (auto& w : writes) w.wait(timeout_);
  } catch (...) {
    for (auto& t : in_flight_) {
      try {
        t.wait(timeout_);
      } catch (const std::exception&) {
        // The first failure is the one rethrown below.
      }
    }
    in_flight_.clear();
    throw;
  }
  in_flight_.clear();
}

io::TensorMap OffloadedAdamW::state() const {
  if (inner_) return inner_->state();
  io::TensorMap s;
  std::vector<Tensor> m, v;
  for (auto& p : params_) {
    m.push_back(Tensor::zeros(p.param.shape(), DType::kF32));
    v.push_back(Tensor::zeros(p.param.shape(), DType::kF32));
  }
  std::vector<float> tmp;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const Bucket& k = buckets_[b];
    tmp.resize(size_t(2 * k.len));
    pool_.read_async(engine_, key(b), tmp.data(), tmp.size() * sizeof(float)).wait(timeout_);
    std::memcpy(m[k.param].f32() + k.begin, tmp.data(), size_t(k.len) * sizeof(float));
    std::memcpy(v[k.param].f32() + k.begin, tmp.data() + k.len, size_t(k.len) * sizeof(float));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    s.emplace("m/" + params_[i].name, m[i]);
    s.emplace("v/" + params_[i].name, v[i]);
  }
  return s;
}

void OffloadedAdamW::load_state(const io::TensorMap& state, int64_t steps_done) {
  if (inner_) {
    inner_->load_state(state, steps_done);
    return;
  }
  auto find = [&](const char* prefix, const optim::ParamRef& p) -> const Tensor& {
    auto it = state.find(prefix + p.name);
    HP_CHECK(it != state.end(), "[adamw] optimizer state lacks '", prefix, p.name, "'");
    HP_CHECK(it->second.shape() == p.param.shape(), "[adamw] optimizer state '", prefix, p.name,
             "' has shape ", shape_str(it->second.shape()));
    return it->second;
  };
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const Bucket& k = buckets_[b];
    Tensor m = find("m/", params_[k.param]).to(DType::kF32);
    Tensor v = find("v/", params_[k.param]).to(DType::kF32);
    float* buf = staging_[0].f32();
    std::memcpy(buf, m.f32() + k.begin, size_t(k.len) * sizeof(float));
    std::memcpy(buf + k.len, v.f32() + k.begin, size_t(k.len) * sizeof(float));
    pool_.write_async(engine_, key(b), buf, size_t(2 * k.len) * sizeof(float)).wait(timeout_);
  }
  t_ = steps_done;
}

size_t OffloadedAdamW::state_bytes() const {
  if (inner_) return inner_->state_bytes();
  size_t b = 0;
  for (auto& p : params_) b += 2 * p.param.nbytes();
  return b;
}

}  // namespace hp::train
