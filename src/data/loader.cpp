// Shuffled-window and random-token batch sources, and the keyed permutation behind them.
// Not stateful RNG: no std::mt19937; every draw is a hash of (seed, epoch, index).
#include "hp/data/loader.hpp"

#include "hp/core/error.hpp"

namespace hp::data {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_u64(uint64_t seed, uint64_t a, uint64_t b) {
  return mix64(mix64(mix64(seed) ^ a) ^ (b * 0xd6e8feb86659fd93ull));
}

Permutation::Permutation(uint64_t n, uint64_t key) : n_(n), half_bits_(1) {
  // Smallest even bit count 2h with 2^(2h) >= n: cycle walking then needs < 4 steps on average.
  while (half_bits_ < 32 && (uint64_t(1) << (2 * half_bits_)) < n) ++half_bits_;
  for (int r = 0; r < 4; ++r) keys_[r] = hash_u64(key, 0x5045524dull, uint64_t(r));
}

uint64_t Permutation::operator()(uint64_t i) const {
  HP_CHECK(i < n_, "[loader] permutation index ", i, " outside [0, ", n_, ")");
  const uint64_t mask = (uint64_t(1) << half_bits_) - 1;
  uint64_t x = i;
  do {  // cycle walking: re-encrypt until the value falls inside [0, n)
    uint64_t l = x >> half_bits_, r = x & mask;
    for (uint64_t k : keys_) {
      uint64_t f = mix64(r ^ k) & mask;
      uint64_t nl = r;
      r = l ^ f;
      l = nl;
    }
    x = (l << half_bits_) | r;
  } while (x >= n_);
  return x;
}

io::Json LoaderPosition::to_json() const {
  return {{"epoch", epoch}, {"index", index}};
}

LoaderPosition LoaderPosition::from_json(const io::Json& j) {
  // A negative count would wrap to a huge epoch or index.
  auto count = [&](const char* key) {
    const int64_t v = io::json_int(j, key, "loader position");
    HP_CHECK(v >= 0, "[json] loader position: '", key, "' must be non-negative, got ", v);
    return uint64_t(v);
  };
  LoaderPosition p;
  p.epoch = count("epoch");
  p.index = count("index");
  return p;
}

BatchLoader::BatchLoader(TokenDataset data, LoaderOptions opt)
    : data_(std::move(data)), opt_(opt), n_windows_(0) {
  HP_CHECK(opt_.batch > 0 && opt_.seq > 0,
           "[loader] batch and seq must be positive, got B=", opt_.batch, " T=", opt_.seq);
  HP_CHECK(data_.size() >= opt_.seq + 1, "[loader] ", data_.name(), " holds ", data_.size(),
           " tokens; a sequence of ", opt_.seq, " needs at least ", opt_.seq + 1);
  n_windows_ = (data_.size() - 1) / opt_.seq;
}

void BatchLoader::set_position(const LoaderPosition& p) {
  HP_CHECK(p.index <= uint64_t(n_windows_), "[loader] position index ", p.index,
           " beyond the epoch of ", n_windows_, " samples (different dataset or seq?)");
  pos_ = p;
}

int64_t BatchLoader::sample_offset(uint64_t epoch, uint64_t index) const {
  if (opt_.sampling == Sampling::kRandomOffsets) {
    const uint64_t starts = uint64_t(data_.size() - opt_.seq);  // s + T <= N - 1
    return int64_t(hash_u64(opt_.seed, epoch, index) % starts);
  }
  Permutation perm(uint64_t(n_windows_), hash_u64(opt_.seed, 0x45504f43ull, epoch));
  return int64_t(perm(index)) * opt_.seq;
}

Batch BatchLoader::next() {
  const int64_t B = opt_.batch, T = opt_.seq;
  Batch out{Tensor({B, T}, DType::kI64), Tensor({B, T}, DType::kI64)};
  std::vector<int64_t> row(size_t(T + 1));
  for (int64_t b = 0; b < B; ++b) {
    if (pos_.index >= uint64_t(n_windows_)) {
      ++pos_.epoch;
      pos_.index = 0;
    }
    const int64_t s = sample_offset(pos_.epoch, pos_.index);
    ++pos_.index;
    data_.read(s, T + 1, row.data());
    std::copy(row.begin(), row.end() - 1, out.input.i64() + b * T);
    std::copy(row.begin() + 1, row.end(), out.target.i64() + b * T);
  }
  return out;
}

RandomTokenSource::RandomTokenSource(int64_t vocab, LoaderOptions opt) : vocab_(vocab), opt_(opt) {
  HP_CHECK(vocab_ > 0, "[loader] random source vocab must be positive, got ", vocab_);
  HP_CHECK(opt_.batch > 0 && opt_.seq > 0,
           "[loader] batch and seq must be positive, got B=", opt_.batch, " T=", opt_.seq);
}

Batch RandomTokenSource::next() {
  const int64_t B = opt_.batch, T = opt_.seq;
  Batch out{Tensor({B, T}, DType::kI64), Tensor({B, T}, DType::kI64)};
  for (int64_t b = 0; b < B; ++b) {
    const uint64_t sample = pos_.index++;
    int64_t prev = int64_t(hash_u64(opt_.seed, sample, 0) % uint64_t(vocab_));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t cur = int64_t(hash_u64(opt_.seed, sample, uint64_t(t + 1)) % uint64_t(vocab_));
      out.input.i64()[b * T + t] = prev;
      out.target.i64()[b * T + t] = cur;
      prev = cur;
    }
  }
  return out;
}

}  // namespace hp::data
