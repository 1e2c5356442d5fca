// The paged KV pool: one tensor and a free list of block ids.
#include "hp/infer/kv_pool.hpp"

#include <algorithm>

#include "hp/nn/model.hpp"

namespace hp::infer {

KvPool::KvPool(const io::ModelConfig& cfg, int64_t blocks, int64_t block_tokens,
               std::shared_ptr<Allocator> device, KvPlacement placement)
    : block_tokens_(block_tokens),
      max_blocks_(nn::kv_max_blocks(cfg, block_tokens)),
      max_seq_(cfg.max_seq),
      placement_(std::move(placement)) {
  HP_CHECK(blocks > 0, "[kv pool] needs at least one block, got ", blocks);
  HP_CHECK(placement_.host_blocks >= 0 && placement_.resident >= 0 && placement_.fetch_slots >= 0,
           "[kv pool] a negative placement: ", placement_.host_blocks, " host blocks, ",
           placement_.resident, " resident, ", placement_.fetch_slots, " fetch slots");
  if (placement_.host_blocks > 0 && placement_.fetch_slots > 0) {
    HP_CHECK(placement_.staging_blocks >= placement_.fetch_slots, "[kv pool] ",
             placement_.staging_blocks, " staging blocks for ", placement_.fetch_slots,
             " fetch slots per sequence");
  }
  pool_ =
      Tensor::zeros(nn::kv_pool_shape(cfg, blocks, block_tokens), DType::kF32, std::move(device));
  for (int64_t b = blocks - 1; b >= 0; --b) free_.push_back(b);
  if (placement_.host_blocks == 0) return;
  HP_CHECK(placement_.host != nullptr, "[kv pool] host blocks need a host allocator");
  host_ = Tensor::zeros(nn::kv_pool_shape(cfg, placement_.host_blocks, block_tokens), DType::kF32,
                        placement_.host);
  for (int64_t b = placement_.host_blocks - 1; b >= 0; --b) host_free_.push_back(blocks + b);
}

void KvPool::reserve(SeqKv& s, int64_t positions) {
  HP_CHECK(positions <= max_seq_, "[kv pool] ", positions, " positions exceed the model's ",
           max_seq_);
  const int64_t have = int64_t(s.blocks.size()), need = blocks_for(positions) - have;
  // Blocks from index `resident` on are the host's (with host blocks).
  const int64_t split = placement_.host_blocks > 0 ? placement_.resident : max_blocks_;
  const int64_t dev = std::clamp<int64_t>(split - have, 0, std::max<int64_t>(need, 0));
  const int64_t host = std::max<int64_t>(need, 0) - dev;
  HP_CHECK(dev <= int64_t(free_.size()) && host <= int64_t(host_free_.size()),
           "[kv pool] a sequence needs ", need, " more blocks of ", block_tokens_, " tokens (", dev,
           " on the device, ", host, " on the host), ", free_.size(), " of ", blocks(),
           " device and ", host_free_.size(), " of ", placement_.host_blocks,
           " host blocks are free");
  for (int64_t i = 0; i < dev; ++i) {
    s.blocks.push_back(free_.back());
    free_.pop_back();
  }
  for (int64_t i = 0; i < host; ++i) {
    s.blocks.push_back(host_free_.back());
    host_free_.pop_back();
  }
}

void KvPool::gather(int64_t layer, const std::vector<const SeqKv*>& seqs,
                    const std::vector<int64_t>& lengths, char* staging, size_t bytes,
                    memory::TransferEngine& copies) const {
  const Shape& hs = host_.shape();  // [host blocks, layers, 2, block_tokens, Hkv, Dh]
  const size_t piece = size_t(2 * hs[3] * hs[4] * hs[5]) * sizeof(float);
  const int64_t slots = placement_.fetch_slots, D = blocks();
  HP_CHECK(seqs.size() == lengths.size() && bytes >= seqs.size() * size_t(slots) * piece,
           "[kv pool] a staging of ", bytes, " bytes for ", seqs.size(), " sequences of ", slots,
           " slots of ", piece, " bytes");
  const char* host = static_cast<const char*>(host_.raw());
  std::vector<memory::TransferEngine::Piece> pieces;
  for (size_t b = 0; b < seqs.size(); ++b) {
    int64_t slot = 0;
    const std::vector<int64_t>& table = seqs[b]->blocks;
    for (size_t c = 0; int64_t(c) * block_tokens_ < lengths[b] && c < table.size(); ++c) {
      if (table[c] < D) continue;
      HP_CHECK(slot < slots, "[kv pool] sequence ", b, " holds more than the ", slots,
               " staged host blocks");
      pieces.push_back({staging + (size_t(b) * size_t(slots) + size_t(slot)) * piece,
                        host + (size_t(table[c] - D) * size_t(hs[1]) + size_t(layer)) * piece});
      ++slot;
    }
  }
  copies.copy_pieces(pieces, piece);
}

void KvPool::release(SeqKv& s) {
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it)
    (*it < blocks() ? free_ : host_free_).push_back(*it);
  s.blocks.clear();
  s.length = 0;
}

}  // namespace hp::infer
