// AdamW off the device: the same fused AdamW kernel (runtime::Backend::adamw), run on the host tier
// over moments kept on the host or on disk. From disk it streams bucket by bucket: the moments of
// bucket i+1 are read while bucket i is updated and bucket i-1 is written back, through three
// staging buffers. Not a different optimizer: results are bitwise those of optim::AdamW.
#pragma once
#include <memory>
#include <vector>

#include "hp/io/safetensors.hpp"
#include "hp/memory/tiers.hpp"
#include "hp/memory/transfer.hpp"
#include "hp/optim/adamw.hpp"

namespace hp::train {

class OffloadedAdamW {
 public:
  // Moments (zeroed) on `state_tier`: kDevice or kHost use optim::AdamW on that tier's
  // allocator; kDisk keeps one extent [m | v] per bucket of at most `bucket_elems` elements.
  OffloadedAdamW(optim::AdamWConfig cfg, std::vector<optim::ParamRef> params, Tier state_tier,
                 memory::TieredPool& pool, memory::TransferEngine& engine,
                 std::chrono::milliseconds timeout, int64_t bucket_elems = int64_t(1) << 20);
  ~OffloadedAdamW();

  // One update with grads[i] (f32, shape of params[i]) at learning rate `lr`, on `backend`.
  void step(const runtime::Context& ctx, const std::vector<const Tensor*>& grads, double lr,
            const runtime::Backend& backend = runtime::default_backend());
  int64_t steps_done() const { return inner_ ? inner_->steps_done() : t_; }
  // "m/<name>", "v/<name>" (read back from disk when there).
  io::TensorMap state() const;
  // Restores moments and the step count (written to disk when there); throws naming a missing
  // or mis-shaped tensor.
  void load_state(const io::TensorMap& state, int64_t steps_done);
  size_t state_bytes() const;
  Tier tier() const { return tier_; }
  int64_t buckets() const { return int64_t(buckets_.size()); }

 private:
  struct Bucket {
    size_t param;
    int64_t begin, len;  // elements of the parameter
  };
  std::string key(size_t b) const;

  optim::AdamWConfig cfg_;
  std::vector<optim::ParamRef> params_;
  Tier tier_;
  memory::TieredPool& pool_;
  memory::TransferEngine& engine_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<optim::AdamW> inner_;  // device or host tier
  std::vector<Bucket> buckets_;          // disk tier
  std::vector<Tensor> staging_;          // three [2 * max bucket] host buffers
  std::vector<memory::Transfer> in_flight_;
  int64_t t_ = 0;
};

}  // namespace hp::train
