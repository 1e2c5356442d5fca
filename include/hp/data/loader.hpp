// Deterministic batch sources: shuffled windows of a TokenDataset, or uniform random tokens.
// Every batch is a pure function of (seed, position), so a saved LoaderPosition resumes exactly.
// Not multi-worker or prefetching: one batch is a few memcpys; ranks slice the global batch.
#pragma once
#include <cstdint>

#include "hp/core/tensor.hpp"
#include "hp/data/dataset.hpp"
#include "hp/io/json.hpp"

namespace hp::data {

// Counter-based mixing (splitmix64 finaliser): the same on every platform, no hidden state.
uint64_t mix64(uint64_t x);
uint64_t hash_u64(uint64_t seed, uint64_t a, uint64_t b);

// A bijection of [0, n) keyed by `key`: 4-round Feistel network with cycle walking.
// O(1) memory, so epochs over billions of windows need no index array.
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t key);
  uint64_t operator()(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t n_;
  int half_bits_;
  uint64_t keys_[4];
};

// Where a source is: samples drawn so far in the current epoch. Saved in checkpoints.
struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t index = 0;
  io::Json to_json() const;
  static LoaderPosition from_json(const io::Json& j);
  bool operator==(const LoaderPosition&) const = default;
};

// input[b, t] = tokens[s + t], target[b, t] = tokens[s + t + 1]; both [B, T] i64.
struct Batch {
  Tensor input;
  Tensor target;
};

enum class Sampling {
  kShuffledWindows,  // an epoch visits every non-overlapping window (stride T) once, shuffled
  kRandomOffsets,    // each sample starts at a uniformly random offset
};

struct LoaderOptions {
  int64_t batch = 1;  // B
  int64_t seq = 0;    // T
  uint64_t seed = 0;
  Sampling sampling = Sampling::kShuffledWindows;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next() = 0;
  virtual LoaderPosition position() const = 0;
  virtual void set_position(const LoaderPosition& p) = 0;
  virtual int64_t batch_size() const = 0;
  virtual int64_t seq_len() const = 0;
};

class BatchLoader : public BatchSource {
 public:
  // Throws when the dataset holds fewer than T + 1 tokens or B, T are not positive.
  BatchLoader(TokenDataset data, LoaderOptions opt);
  Batch next() override;
  LoaderPosition position() const override { return pos_; }
  void set_position(const LoaderPosition& p) override;
  int64_t batch_size() const override { return opt_.batch; }
  int64_t seq_len() const override { return opt_.seq; }
  // Samples per epoch: floor((N - 1) / T) windows.
  int64_t samples_per_epoch() const { return n_windows_; }
  // Start offset of sample `index` of `epoch`.
  int64_t sample_offset(uint64_t epoch, uint64_t index) const;
  const TokenDataset& dataset() const { return data_; }

 private:
  TokenDataset data_;
  LoaderOptions opt_;
  int64_t n_windows_;
  LoaderPosition pos_;
};

// Uniform random tokens in [0, vocab) for benchmarks; target is input shifted by one.
// Position: epoch stays 0, index counts samples.
class RandomTokenSource : public BatchSource {
 public:
  RandomTokenSource(int64_t vocab, LoaderOptions opt);
  Batch next() override;
  LoaderPosition position() const override { return pos_; }
  void set_position(const LoaderPosition& p) override { pos_ = p; }
  int64_t batch_size() const override { return opt_.batch; }
  int64_t seq_len() const override { return opt_.seq; }

 private:
  int64_t vocab_;
  LoaderOptions opt_;
  LoaderPosition pos_;
};

}  // namespace hp::data
