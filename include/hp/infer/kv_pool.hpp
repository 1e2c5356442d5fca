// The paged KV pool of the inference programs: one f32 tensor of fixed blocks, each holding the
// keys and values of `block_tokens` consecutive positions of one sequence for every layer
// ([blocks, layers, 2, block_tokens, kv heads, head dim], nn::kv_pool_shape), and the free list
// the sequences' block tables draw from. A sequence's block table lists its blocks in position
// order; blocks are taken as its length grows and given back when it ends.
// Offloaded (KvPlacement, planned by infer::plan_kv), the first `resident` blocks of every
// sequence come from the device pool and the rest from a host pool in the host tier, whose block
// ids follow the device pool's.
// Not thread-safe, and not a cache: where a block lives is fixed when it is taken.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"
#include "hp/io/model_config.hpp"
#include "hp/memory/transfer.hpp"

namespace hp::infer {

// One sequence's place in the pool: its blocks in position order and how many positions hold
// keys and values.
struct SeqKv {
  std::vector<int64_t> blocks;
  int64_t length = 0;
};

// Where the blocks live: all on the device (host_blocks 0), or a sequence's first `resident`
// blocks on the device and the others in the host tier.
struct KvPlacement {
  int64_t host_blocks = 0;     // blocks of the host pool
  int64_t resident = 0;        // per sequence: its first blocks on the device (with host blocks)
  int64_t fetch_slots = 0;     // host blocks per sequence staged on the device for a layer's
                               // attention; 0: the attention reads them in the host tier
  int64_t staging_blocks = 0;  // the staging's blocks (of one layer): sequences x fetch_slots
  std::shared_ptr<Allocator> host;  // the host tier (needed with host blocks)
};

class KvPool {
 public:
  // Throws hp::Error for a non-positive size, hp::OutOfMemory when `device` (or the host tier)
  // cannot hold it.
  KvPool(const io::ModelConfig& cfg, int64_t blocks, int64_t block_tokens,
         std::shared_ptr<Allocator> device, KvPlacement placement = {});
  Tensor& tensor() { return pool_; }
  Tensor& host_tensor() { return host_; }  // undefined without host blocks

  const KvPlacement& placement() const { return placement_; }
  size_t host_bytes() const { return placement_.host_blocks > 0 ? host_.nbytes() : 0; }
  int64_t blocks() const { return pool_.shape()[0]; }  // on the device
  int64_t block_tokens() const { return block_tokens_; }
  int64_t max_blocks() const { return max_blocks_; }  // per sequence: the model's max_seq
  int64_t free_blocks() const { return int64_t(free_.size() + host_free_.size()); }
  size_t bytes() const { return pool_.nbytes(); }
  // Takes blocks until `s` can hold `positions` positions; throws hp::Error naming the shortfall
  // when the pool has too few free blocks or `positions` exceeds the model's max_seq.
  void reserve(SeqKv& s, int64_t positions);
  // Fetch: copies `layer` of each sequence's host blocks holding positions below its length, in
  // table order, into `staging` (the device buffer of the layer's staging source: sequence b's
  // at rows b * fetch_slots, ...), by `copies`. Throws when a sequence holds more host blocks
  // than the placement's fetch_slots or the buffer is too small.
  void gather(int64_t layer, const std::vector<const SeqKv*>& seqs,
              const std::vector<int64_t>& lengths, char* staging, size_t bytes,
              memory::TransferEngine& copies) const;
  // Gives back every block of `s` and empties it.
  void release(SeqKv& s);
  // Blocks that hold `positions` positions.
  int64_t blocks_for(int64_t positions) const {
    return (positions + block_tokens_ - 1) / block_tokens_;
  }

 private:
  int64_t block_tokens_, max_blocks_, max_seq_;
  KvPlacement placement_;
  Tensor pool_, host_;
  std::vector<int64_t> free_;       // a stack: the most recently freed block is reused first
  std::vector<int64_t> host_free_;  // ids from blocks() on
};

}  // namespace hp::infer
