// Cross-entropy over logits (whole, or vocabulary-parallel in two halves around an all-gather),
// embedding lookup and its scatter-add backward (optionally on a vocabulary shard), and rotary
// position embedding (Hugging Face rotate_half convention).
// Not label smoothing, not sampled softmax: exactly the mean NLL of the full vocabulary.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/vec_math.hpp"
#include "hp/backend/cpu/kernels.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {
namespace {

// log(sum(exp(x))) of one row, stable.
float row_lse(const float* xr, int64_t n) {
  const float m = detail::row_max(xr, n);
  return m + std::log(detail::exp_shift_sum(xr, m, nullptr, n));
}

int64_t whole(const VocabShard& s, int64_t vocab) {
  return s.total > 0 ? s.total : vocab;
}

// Checked here, on the calling thread, because an exception must not leave an OpenMP region.
void check_ids(const int64_t* ids, int64_t n, int64_t vocab, const char* who) {
  for (int64_t i = 0; i < n; ++i) {
    HP_CHECK(ids[i] >= 0 && ids[i] < vocab, "[", who, "] id ", ids[i], " at position ", i,
             " outside the vocabulary of ", vocab);
  }
}

// The mean over `count` of the per-row losses lse[r] - target logit, summed serially in row
// order, in double: the same loss for any thread count. With every row ignored the mean is over
// nothing; 0 (not NaN) keeps a fully padded micro-batch from poisoning a summed loss.
template <class TargetLogit>
float mean_loss(const int64_t* targets, const float* lse, int64_t rows, int64_t ignore_index,
                int64_t count, TargetLogit target_logit) {
  if (count == 0) return 0.0f;
  double sum = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore_index) continue;
    sum += static_cast<double>(lse[r]) - static_cast<double>(target_logit(r));
  }
  return static_cast<float>(sum / static_cast<double>(count));
}

}  // namespace

int64_t count_targets(const int64_t* targets, int64_t rows, int64_t vocab, int64_t ignore_index,
                      const char* who) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = targets[r];
    if (t == ignore_index) continue;
    HP_CHECK(t >= 0 && t < vocab, "[", who, "] target ", t, " at row ", r,
             " outside the vocabulary of ", vocab);
    ++count;
  }
  return count;
}

float cross_entropy_fwd(const Context& ctx, const float* logits, const int64_t* targets, float* lse,
                        int64_t rows, int64_t vocab, int64_t ignore_index, int64_t count) {
  const int64_t local = count_targets(targets, rows, vocab, ignore_index, "cpu::cross_entropy_fwd");
  const int team = detail::team_size(ctx, rows * vocab, detail::kMinParallelHeavy);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore_index) {
      lse[r] = 0.0f;
      continue;
    }
    lse[r] = row_lse(logits + r * vocab, vocab);
  }
  return mean_loss(targets, lse, rows, ignore_index, count < 0 ? local : count,
                   [&](int64_t r) { return logits[r * vocab + targets[r]]; });
}

void cross_entropy_bwd(const Context& ctx, const float* logits, const int64_t* targets,
                       const float* lse, float dloss, float* dlogits, int64_t rows, int64_t vocab,
                       int64_t ignore_index, const VocabShard& shard, int64_t count) {
  const int64_t local =
      count_targets(targets, rows, whole(shard, vocab), ignore_index, "cpu::cross_entropy_bwd");
  if (count < 0) count = local;
  const float s = count == 0 ? 0.0f : dloss / static_cast<float>(count);
  const __m256 sv = _mm256_set1_ps(s);
  const int team = detail::team_size(ctx, rows * vocab, detail::kMinParallelHeavy);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* dr = dlogits + r * vocab;
    if (targets[r] == ignore_index || count == 0) {
      std::memset(dr, 0, sizeof(float) * vocab);
      continue;
    }
    const float* xr = logits + r * vocab;
    const __m256 lv = _mm256_set1_ps(lse[r]);
    detail::row_for(vocab, [&](int64_t i, int64_t k) {
      const __m256 p = detail::vexp(_mm256_sub_ps(detail::ld(xr + i, k), lv));
      detail::st(dr + i, k, _mm256_mul_ps(p, sv));
    });
    const int64_t c = targets[r] - shard.offset;
    if (c >= 0 && c < vocab) dr[c] -= s;
  }
}

void cross_entropy_parts(const Context& ctx, const float* logits, const int64_t* targets,
                         float* parts, int64_t rows, int64_t vocab, int64_t ignore_index,
                         const VocabShard& shard) {
  count_targets(targets, rows, whole(shard, vocab), ignore_index, "cpu::cross_entropy_parts");
  const int team = detail::team_size(ctx, rows * vocab, detail::kMinParallelHeavy);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* out = parts + 2 * r;
    out[0] = out[1] = 0.0f;
    if (targets[r] == ignore_index || vocab == 0) continue;
    const float* xr = logits + r * vocab;
    out[0] = row_lse(xr, vocab);
    const int64_t c = targets[r] - shard.offset;
    if (c >= 0 && c < vocab) out[1] = xr[c];
  }
}

float cross_entropy_combine(const float* parts, const int64_t* targets, float* lse, int64_t rows,
                            int64_t shards, int64_t ignore_index, int64_t count) {
  int64_t local = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = parts + 2 * shards * r;
    if (targets[r] == ignore_index) {
      lse[r] = 0.0f;
      continue;
    }
    ++local;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < shards; ++j) m = std::max(m, p[2 * j]);
    double s = 0.0;
    for (int64_t j = 0; j < shards; ++j) s += std::exp(static_cast<double>(p[2 * j] - m));
    lse[r] = m + static_cast<float>(std::log(s));
  }
  return mean_loss(targets, lse, rows, ignore_index, count < 0 ? local : count, [&](int64_t r) {
    double t = 0.0;  // the shard that holds the target has it; the others add 0
    for (int64_t j = 0; j < shards; ++j) t += parts[2 * shards * r + 2 * j + 1];
    return t;
  });
}

void embedding_fwd(const Context& ctx, const float* table, const int64_t* ids, float* out,
                   int64_t n, int64_t vocab, int64_t dim, const VocabShard& shard) {
  check_ids(ids, n, whole(shard, vocab), "cpu::embedding_fwd");
  const int team = detail::team_size(ctx, n * dim);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = ids[i] - shard.offset;
    if (row >= 0 && row < vocab)
      std::memcpy(out + i * dim, table + row * dim, sizeof(float) * dim);
    else
      std::memset(out + i * dim, 0, sizeof(float) * dim);
  }
}

void embedding_bwd(const Context& ctx, const float* dout, const int64_t* ids, float* dtable,
                   int64_t n, int64_t vocab, int64_t dim, const VocabShard& shard) {
  check_ids(ids, n, whole(shard, vocab), "cpu::embedding_bwd");
  detail::parallel_range(ctx, vocab * dim, detail::kMinParallel, [&](int64_t b, int64_t e) {
    std::memset(dtable + b, 0, sizeof(float) * (e - b));
  });
  // Each thread owns a band of columns and walks every id in order: no races on repeated ids,
  // and the summation order is fixed.
  const int64_t bands = std::max<int64_t>(1, std::min<int64_t>(ctx.threads, dim / 64));
  const int team = bands > 1 ? detail::team_size(ctx, n * dim) : 1;
  const int64_t per = ((dim + bands - 1) / bands + 15) / 16 * 16;
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t band = 0; band < bands; ++band) {
    const int64_t c0 = std::min(dim, band * per), c1 = std::min(dim, c0 + per);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = ids[i] - shard.offset;
      if (row < 0 || row >= vocab) continue;
      float* t = dtable + row * dim;
      const float* g = dout + i * dim;
      for (int64_t c = c0; c < c1; ++c) t[c] += g[c];
    }
  }
}

size_t rope_scratch_bytes(int64_t rows, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  return sizeof(float) * size_t(half + 2 * rows * half);
}

void rope(const Context& ctx, const float* x, float* y, int64_t batch, int64_t seq, int64_t heads,
          int64_t head_dim, float theta, int64_t pos_offset, bool inverse,
          const int64_t* positions) {
  const int64_t half = head_dim / 2;
  if (half == 0 || batch * seq * heads == 0) {
    if (x != y) std::memcpy(y, x, sizeof(float) * batch * seq * heads * head_dim);
    return;
  }
  // As Hugging Face computes them, all in f32: inv_freq = 1 / theta^((2i)/Dh), angle = pos *
  // inv_freq, then cos and sin of the rounded angle.
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta, expo);
  }
  // One table row per position: per token with `positions`, else per t.
  const int64_t rows = positions ? batch * seq : seq;
  std::vector<float> cs(static_cast<size_t>(rows * half)), sn(cs.size());
  const int team_t = detail::team_size(ctx, rows * half * 16);
#pragma omp parallel for num_threads(team_t) schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const float pos = static_cast<float>(positions ? positions[t] : pos_offset + t);
    for (int64_t i = 0; i < half; ++i) {
      const float a = pos * inv_freq[i];
      cs[t * half + i] = std::cos(a);
      sn[t * half + i] = inverse ? -std::sin(a) : std::sin(a);
    }
  }
  // y1 = x1 cos - x2 sin, y2 = x2 cos + x1 sin over pairs (i, i + Dh/2).
  const int64_t vecs = batch * seq * heads;
  const int team = detail::team_size(ctx, vecs * head_dim);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t v = 0; v < vecs; ++v) {
    const int64_t t = positions ? v / heads : (v / heads) % seq;
    const float* c = cs.data() + t * half;
    const float* s = sn.data() + t * half;
    const float* x1 = x + v * head_dim;
    const float* x2 = x1 + half;
    float* y1 = y + v * head_dim;
    float* y2 = y1 + half;
    detail::row_for(half, [&](int64_t i, int64_t k) {
      const __m256 a = detail::ld(x1 + i, k), b = detail::ld(x2 + i, k);
      const __m256 cv = detail::ld(c + i, k), sv = detail::ld(s + i, k);
      const __m256 r1 = _mm256_sub_ps(_mm256_mul_ps(a, cv), _mm256_mul_ps(b, sv));
      const __m256 r2 = _mm256_add_ps(_mm256_mul_ps(b, cv), _mm256_mul_ps(a, sv));
      detail::st(y1 + i, k, r1);
      detail::st(y2 + i, k, r2);
    });
    if (head_dim % 2) y1[head_dim - 1] = x1[head_dim - 1];  // an odd last lane has no partner
  }
}

}  // namespace hp::cpu
