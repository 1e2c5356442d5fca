// The paged KV pool of the inference programs: one f32 tensor of fixed blocks, each holding the
// keys and values of `block_tokens` consecutive positions of one sequence for every layer
// ([blocks, layers, 2, block_tokens, kv heads, head dim], nn::kv_pool_shape), and the free list
// the sequences' block tables draw from. A sequence's block table lists its blocks in position
// order; blocks are taken as its length grows and given back when it ends.
// Not thread-safe, and not an offloader: the whole pool lives in the allocator it was given.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"
#include "hp/io/model_config.hpp"

namespace hp::infer {

// One sequence's place in the pool: its blocks in position order and how many positions hold
// keys and values.
struct SeqKv {
  std::vector<int64_t> blocks;
  int64_t length = 0;
};

class KvPool {
 public:
  // Throws hp::Error for a non-positive size, hp::OutOfMemory when `device` cannot hold it.
  KvPool(const io::ModelConfig& cfg, int64_t blocks, int64_t block_tokens,
         std::shared_ptr<Allocator> device);
  Tensor& tensor() { return pool_; }
  int64_t blocks() const { return pool_.shape()[0]; }
  int64_t block_tokens() const { return block_tokens_; }
  int64_t max_blocks() const { return max_blocks_; }  // per sequence: the model's max_seq
  int64_t free_blocks() const { return int64_t(free_.size()); }
  size_t bytes() const { return pool_.nbytes(); }
  // Takes blocks until `s` can hold `positions` positions; throws hp::Error naming the shortfall
  // when the pool has too few free blocks or `positions` exceeds the model's max_seq.
  void reserve(SeqKv& s, int64_t positions);
  // Gives back every block of `s` and empties it.
  void release(SeqKv& s);
  // Blocks that hold `positions` positions.
  int64_t blocks_for(int64_t positions) const {
    return (positions + block_tokens_ - 1) / block_tokens_;
  }

 private:
  int64_t block_tokens_, max_blocks_, max_seq_;
  Tensor pool_;
  std::vector<int64_t> free_;  // a stack: the most recently freed block is reused first
};

}  // namespace hp::infer
