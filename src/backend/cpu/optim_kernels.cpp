// Optimizer kernels: the AdamW step (torch.optim.AdamW's arithmetic, operation by operation),
// the sum of squares behind gradient-norm clipping, and in-place scaling.
// Not an optimizer: state, schedules and sharding live in src/optim; these only touch buffers.
#include <cmath>
#include <vector>

#include "backend/cpu/vec_math.hpp"
#include "hp/backend/cpu/kernels.hpp"

namespace hp::cpu {

void adamw(const Context& ctx, float* p, const float* g, float* m, float* v, int64_t n, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  // Scalars as PyTorch forms them: in double on the host, rounded to f32 when they meet the
  // tensors.
  const double b1 = beta1, b2 = beta2;
  const float decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  const float w1 = static_cast<float>(1.0 - b1);  // lerp weight
  const float w2 = static_cast<float>(1.0 - b2);
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  const float neg_step_size = static_cast<float>(-(static_cast<double>(lr) / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  // torch.lerp switches form at weight 0.5 to stay exact at both ends.
  const bool small_w = std::fabs(w1) < 0.5f;
  const float one_minus_w1 = 1.0f - w1;
  detail::parallel_range(ctx, n, detail::kMinParallel, [&](int64_t s, int64_t e) {
    const __m256 dec = _mm256_set1_ps(decay), vw1 = _mm256_set1_ps(w1);
    const __m256 vomw1 = _mm256_set1_ps(one_minus_w1), vb2 = _mm256_set1_ps(beta2);
    const __m256 vw2 = _mm256_set1_ps(w2), vbc2 = _mm256_set1_ps(bc2_sqrt);
    const __m256 veps = _mm256_set1_ps(eps), vstep = _mm256_set1_ps(neg_step_size);
    detail::row_for(e - s, [&](int64_t j, int64_t k) {
      const int64_t i = s + j;
      const __m256 gv = detail::ld(g + i, k);
      // param.mul_(1 - lr * weight_decay)
      const __m256 pv = _mm256_mul_ps(detail::ld(p + i, k), dec);
      // exp_avg.lerp_(grad, 1 - beta1)
      const __m256 mo = detail::ld(m + i, k);
      const __m256 diff = _mm256_sub_ps(gv, mo);
      const __m256 mv = small_w ? _mm256_add_ps(mo, _mm256_mul_ps(vw1, diff))
                                : _mm256_sub_ps(gv, _mm256_mul_ps(diff, vomw1));
      // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
      const __m256 vv = _mm256_add_ps(_mm256_mul_ps(detail::ld(v + i, k), vb2),
                                      _mm256_mul_ps(_mm256_mul_ps(vw2, gv), gv));
      // denom = exp_avg_sq.sqrt() / sqrt(bias_correction2) + eps
      const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), vbc2), veps);
      // param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
      const __m256 pn = _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(vstep, mv), den));
      detail::st(m + i, k, mv);
      detail::st(v + i, k, vv);
      detail::st(p + i, k, pn);
    });
  });
}

double sum_squares(const Context& ctx, const float* x, int64_t n) {
  // Fixed chunks summed in order: the same result for any thread count.
  constexpr int64_t kChunk = 65536;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 0) return 0.0;
  std::vector<double> part(static_cast<size_t>(chunks));
  const int team = detail::team_size(ctx, n);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const float* xc = x + c * kChunk;
    const int64_t len = std::min(kChunk, n - c * kChunk);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    auto acc = [](__m256 v, __m256d& lo_acc, __m256d& hi_acc) {
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
      const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      lo_acc = _mm256_fmadd_pd(lo, lo, lo_acc);
      hi_acc = _mm256_fmadd_pd(hi, hi, hi_acc);
    };
    for (; i + 16 <= len; i += 16) {
      acc(_mm256_loadu_ps(xc + i), a0, a1);
      acc(_mm256_loadu_ps(xc + i + 8), a2, a3);
    }
    if (i + 8 <= len) {
      acc(_mm256_loadu_ps(xc + i), a0, a1);
      i += 8;
    }
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < len; ++i) s += static_cast<double>(xc[i]) * xc[i];
    part[c] = s;
  }
  double total = 0.0;
  for (double s : part) total += s;
  return total;
}

void scale(const Context& ctx, float* x, int64_t n, float s) {
  detail::parallel_range(ctx, n, detail::kMinParallel,
                         [&](int64_t b, int64_t e) { detail::scale_row(x + b, s, x + b, e - b); });
}

}  // namespace hp::cpu
