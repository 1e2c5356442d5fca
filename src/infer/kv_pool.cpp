// The paged KV pool: one tensor and a free list of block ids.
#include "hp/infer/kv_pool.hpp"

#include "hp/nn/model.hpp"

namespace hp::infer {

KvPool::KvPool(const io::ModelConfig& cfg, int64_t blocks, int64_t block_tokens,
               std::shared_ptr<Allocator> device)
    : block_tokens_(block_tokens),
      max_blocks_(nn::kv_max_blocks(cfg, block_tokens)),
      max_seq_(cfg.max_seq) {
  HP_CHECK(blocks > 0, "[kv pool] needs at least one block, got ", blocks);
  pool_ =
      Tensor::zeros(nn::kv_pool_shape(cfg, blocks, block_tokens), DType::kF32, std::move(device));
  for (int64_t b = blocks - 1; b >= 0; --b) free_.push_back(b);
}

void KvPool::reserve(SeqKv& s, int64_t positions) {
  HP_CHECK(positions <= max_seq_, "[kv pool] ", positions, " positions exceed the model's ",
           max_seq_);
  const int64_t need = blocks_for(positions) - int64_t(s.blocks.size());
  HP_CHECK(need <= free_blocks(), "[kv pool] a sequence needs ", need, " more blocks of ",
           block_tokens_, " tokens, ", free_blocks(), " of ", blocks(), " are free");
  for (int64_t i = 0; i < need; ++i) {
    s.blocks.push_back(free_.back());
    free_.pop_back();
  }
}

void KvPool::release(SeqKv& s) {
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) free_.push_back(*it);
  s.blocks.clear();
  s.length = 0;
}

}  // namespace hp::infer
