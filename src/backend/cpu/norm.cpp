// Row normalisation kernels over [rows, cols]: layer norm, RMS norm and softmax, forward and
// backward. Rows are independent and split across the team; parameter gradients are summed per
// fixed block of rows, then across blocks in order, so they do not depend on the thread count.
// Not fused with neighbouring matmuls or residual adds: those live in the ops that call these.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/vec_math.hpp"
#include "hp/backend/cpu/kernels.hpp"

namespace hp::cpu {
namespace {

using detail::ld;
using detail::row_for;
using detail::row_reduce;
using detail::st;

// Per-block partial column sums of `k` parameter gradients, each [blocks, cols].
struct Partials {
  int64_t rb, blocks;
  std::vector<float> buf;
  Partials(int64_t rows, int64_t cols, int k)
      : rb(detail::row_block(rows)),
        blocks((rows + rb - 1) / rb),
        buf(static_cast<size_t>(blocks * cols * k)) {}
};

}  // namespace

namespace {
// Layer norm of x, or of s = x + res (written to `sum`) when res is given: the residual add is
// done row by row while the row is in cache.
void layer_norm_rows(const Context& ctx, const float* x, const float* res, float* sum,
                     const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                     int64_t rows, int64_t cols, float eps) {
  if (cols <= 0) return;
  const int team = detail::team_size(ctx, rows * cols);
  const float inv_n = 1.0f / static_cast<float>(cols);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    if (res) {
      const float* rr = res + r * cols;
      float* sr = sum + r * cols;
      row_for(cols, [&](int64_t i, int64_t k) {
        st(sr + i, k, _mm256_add_ps(ld(xr + i, k), ld(rr + i, k)));
      });
      xr = sr;
    }
    float* yr = y + r * cols;
    // Two passes: the mean, then squared deviations from it (no E[x^2] - E[x]^2 cancellation).
    const float mu = row_reduce(cols, [&](int64_t i, int64_t k) { return ld(xr + i, k); }) * inv_n;
    const __m256 mv = _mm256_set1_ps(mu);
    const float var = row_reduce(cols,
                                 [&](int64_t i, int64_t k) {
                                   const __m256 d = _mm256_sub_ps(ld(xr + i, k), mv);
                                   return _mm256_mul_ps(d, d);
                                 }) *
                      inv_n;
    const float rs = 1.0f / std::sqrt(var + eps);
    const __m256 rv = _mm256_set1_ps(rs);
    row_for(cols, [&](int64_t i, int64_t k) {
      const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(ld(xr + i, k), mv), rv);
      st(yr + i, k, _mm256_fmadd_ps(xh, ld(gamma + i, k), ld(beta + i, k)));
    });
    mean[r] = mu;
    rstd[r] = rs;
  }
}
}  // namespace

void layer_norm_fwd(const Context& ctx, const float* x, const float* gamma, const float* beta,
                    float* y, float* mean, float* rstd, int64_t rows, int64_t cols, float eps) {
  layer_norm_rows(ctx, x, nullptr, nullptr, gamma, beta, y, mean, rstd, rows, cols, eps);
}

void add_layer_norm_fwd(const Context& ctx, const float* x, const float* res, float* sum,
                        const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps) {
  layer_norm_rows(ctx, x, res, sum, gamma, beta, y, mean, rstd, rows, cols, eps);
}

void layer_norm_bwd(const Context& ctx, const float* dy, const float* x, const float* gamma,
                    const float* mean, const float* rstd, float* dx, float* dgamma, float* dbeta,
                    int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  if (rows <= 0) {
    std::memset(dgamma, 0, sizeof(float) * cols);
    std::memset(dbeta, 0, sizeof(float) * cols);
    return;
  }
  Partials part(rows, cols, 2);
  float* pg = part.buf.data();
  float* pb = pg + part.blocks * cols;
  const float inv_n = 1.0f / static_cast<float>(cols);
  const int team = detail::team_size(ctx, rows * cols);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t blk = 0; blk < part.blocks; ++blk) {
    float* ag = pg + blk * cols;
    float* ab = pb + blk * cols;
    const int64_t r1 = std::min(rows, (blk + 1) * part.rb);
    for (int64_t r = blk * part.rb; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* gr = dy + r * cols;
      float* dr = dx + r * cols;
      const __m256 mv = _mm256_set1_ps(mean[r]);
      const __m256 rv = _mm256_set1_ps(rstd[r]);
      auto xhat = [&](int64_t i, int64_t k) {
        return _mm256_mul_ps(_mm256_sub_ps(ld(xr + i, k), mv), rv);
      };
      // With g = dy * gamma: dx = rstd (g - mean(g) - xhat mean(g xhat)).
      const float sg = row_reduce(cols, [&](int64_t i, int64_t k) {
        return _mm256_mul_ps(ld(gr + i, k), ld(gamma + i, k));
      });
      const float sgx = row_reduce(cols, [&](int64_t i, int64_t k) {
        return _mm256_mul_ps(_mm256_mul_ps(ld(gr + i, k), ld(gamma + i, k)), xhat(i, k));
      });
      const __m256 a = _mm256_set1_ps(sg * inv_n);
      const __m256 b = _mm256_set1_ps(sgx * inv_n);
      const bool first = r == blk * part.rb;
      row_for(cols, [&](int64_t i, int64_t k) {
        const __m256 g0 = ld(gr + i, k);
        const __m256 xh = xhat(i, k);
        const __m256 g = _mm256_mul_ps(g0, ld(gamma + i, k));
        const __m256 inner = _mm256_sub_ps(_mm256_sub_ps(g, a), _mm256_mul_ps(xh, b));
        st(dr + i, k, _mm256_mul_ps(inner, rv));
        const __m256 gx = _mm256_mul_ps(g0, xh);
        st(ag + i, k, first ? gx : _mm256_add_ps(ld(ag + i, k), gx));
        st(ab + i, k, first ? g0 : _mm256_add_ps(ld(ab + i, k), g0));
      });
    }
  }
  detail::sum_partials(ctx, pg, part.blocks, cols, dgamma);
  detail::sum_partials(ctx, pb, part.blocks, cols, dbeta);
}

void rms_norm_fwd(const Context& ctx, const float* x, const float* gamma, float* y, float* rstd,
                  int64_t rows, int64_t cols, float eps) {
  if (cols <= 0) return;
  const int team = detail::team_size(ctx, rows * cols);
  const float inv_n = 1.0f / static_cast<float>(cols);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const float ms = row_reduce(cols,
                                [&](int64_t i, int64_t k) {
                                  const __m256 v = ld(xr + i, k);
                                  return _mm256_mul_ps(v, v);
                                }) *
                     inv_n;
    const float rs = 1.0f / std::sqrt(ms + eps);
    const __m256 rv = _mm256_set1_ps(rs);
    row_for(cols, [&](int64_t i, int64_t k) {
      st(yr + i, k, _mm256_mul_ps(_mm256_mul_ps(ld(xr + i, k), rv), ld(gamma + i, k)));
    });
    rstd[r] = rs;
  }
}

void rms_norm_bwd(const Context& ctx, const float* dy, const float* x, const float* gamma,
                  const float* rstd, float* dx, float* dgamma, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  if (rows <= 0) {
    std::memset(dgamma, 0, sizeof(float) * cols);
    return;
  }
  Partials part(rows, cols, 1);
  const float inv_n = 1.0f / static_cast<float>(cols);
  const int team = detail::team_size(ctx, rows * cols);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t blk = 0; blk < part.blocks; ++blk) {
    float* ag = part.buf.data() + blk * cols;
    const int64_t r1 = std::min(rows, (blk + 1) * part.rb);
    for (int64_t r = blk * part.rb; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* gr = dy + r * cols;
      float* dr = dx + r * cols;
      const __m256 rv = _mm256_set1_ps(rstd[r]);
      // With g = dy * gamma, xhat = x rstd: dx = rstd (g - xhat mean(g xhat)).
      const float sgx = row_reduce(cols, [&](int64_t i, int64_t k) {
        const __m256 g = _mm256_mul_ps(ld(gr + i, k), ld(gamma + i, k));
        return _mm256_mul_ps(g, _mm256_mul_ps(ld(xr + i, k), rv));
      });
      const __m256 b = _mm256_set1_ps(sgx * inv_n);
      const bool first = r == blk * part.rb;
      row_for(cols, [&](int64_t i, int64_t k) {
        const __m256 g0 = ld(gr + i, k);
        const __m256 xh = _mm256_mul_ps(ld(xr + i, k), rv);
        const __m256 g = _mm256_mul_ps(g0, ld(gamma + i, k));
        st(dr + i, k, _mm256_mul_ps(_mm256_fnmadd_ps(xh, b, g), rv));
        const __m256 gx = _mm256_mul_ps(g0, xh);
        st(ag + i, k, first ? gx : _mm256_add_ps(ld(ag + i, k), gx));
      });
    }
  }
  detail::sum_partials(ctx, part.buf.data(), part.blocks, cols, dgamma);
}

void softmax_fwd(const Context& ctx, const float* x, float* y, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  const int team = detail::team_size(ctx, rows * cols, detail::kMinParallelHeavy);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    // Subtracting the row max keeps every exp in (0, 1] and the sum in [1, cols].
    const float m = detail::row_max(xr, cols);
    const float s = detail::exp_shift_sum(xr, m, yr, cols);
    detail::scale_row(yr, 1.0f / s, yr, cols);
  }
}

void softmax_bwd(const Context& ctx, const float* y, const float* dy, float* dx, int64_t rows,
                 int64_t cols) {
  const int team = detail::team_size(ctx, rows * cols);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* gr = dy + r * cols;
    float* dr = dx + r * cols;
    // dx = y (dy - sum(dy y)).
    const float d = row_reduce(
        cols, [&](int64_t i, int64_t k) { return _mm256_mul_ps(ld(yr + i, k), ld(gr + i, k)); });
    const __m256 dv = _mm256_set1_ps(d);
    row_for(cols, [&](int64_t i, int64_t k) {
      st(dr + i, k, _mm256_mul_ps(ld(yr + i, k), _mm256_sub_ps(ld(gr + i, k), dv)));
    });
  }
}

}  // namespace hp::cpu
