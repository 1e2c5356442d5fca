// AVX2/FMA building blocks shared by the CPU kernels: exp, expm1, log, tanh, gelu, silu on 8
// lanes, masked tails, per-row reductions, and the rule that decides when a kernel threads.
// Not a general SIMD library: only what the kernels in this folder need, x86-64-v3 only.
#pragma once
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "hp/backend/cpu/context.hpp"

namespace hp::cpu::detail {

// Below this many elements a kernel runs on the calling thread: a team costs more than it saves.
constexpr int64_t kMinParallel = int64_t{1} << 14;
// Transcendental kernels pay for a team sooner.
constexpr int64_t kMinParallelHeavy = int64_t{1} << 12;

// Team size for `work` elements: exactly ctx.threads, or 1 when the work is small.
inline int team_size(const Context& ctx, int64_t work, int64_t min_parallel = kMinParallel) {
  return work >= min_parallel ? std::max(1, ctx.threads) : 1;
}

// Calls fn(begin, end) on contiguous pieces covering [0, n), one per team member; pieces start
// on multiples of 16 elements so threads do not share cache lines. fn must not throw.
template <typename Fn>
void parallel_range(const Context& ctx, int64_t n, int64_t min_parallel, const Fn& fn) {
  if (n <= 0) return;
  const int team = team_size(ctx, n, min_parallel);
  if (team == 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(team)
  {
    const int64_t t = omp_get_thread_num();
    const int64_t size = omp_get_num_threads();
    const int64_t per = ((n + size - 1) / size + 15) / 16 * 16;
    const int64_t b = std::min(n, t * per);
    const int64_t e = std::min(n, b + per);
    if (b < e) fn(b, e);
  }
}

// Rows per block when column sums are accumulated block by block. Depends on `rows` only, so
// sums come out bitwise identical for any thread count.
inline int64_t row_block(int64_t rows) {
  return std::clamp<int64_t>((rows + 63) / 64, 1, 32);
}

// out[c] = sum over b < blocks of partials[b * cols + c], summed in block order in double.
void sum_partials(const Context& ctx, const float* partials, int64_t blocks, int64_t cols,
                  float* out);

// ---- lanes ----------------------------------------------------------------------------------

// Lanes [0, n) set, n in [0, 8].
inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// The first n < 8 floats of p, zeros after. Goes through a stack buffer rather than VMASKMOV,
// whose store form is slow on AMD cores.
inline __m256 load_part(const float* p, int64_t n) {
  alignas(32) float buf[8] = {};
  for (int64_t i = 0; i < n; ++i) buf[i] = p[i];
  return _mm256_load_ps(buf);
}
inline void store_part(float* p, int64_t n, __m256 v) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, v);
  for (int64_t i = 0; i < n; ++i) p[i] = buf[i];
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// max that returns NaN when either operand is NaN (MAXPS returns its second operand then).
inline __m256 max_nan(__m256 a, __m256 b) {
  const __m256 m = _mm256_max_ps(a, b);
  return _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
inline __m256 min_nan(__m256 a, __m256 b) {
  const __m256 m = _mm256_min_ps(a, b);
  return _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

// ---- transcendental functions (about 2 ulp over their whole range) --------------------------

// 2^n for integer lanes n in [-126, 127].
inline __m256 pow2i(__m256i n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

// Splits x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 in two parts) and returns
// expm1(r) = r + r^2 (1/2 + r/6 + ... + r^5/5040); the truncated Taylor tail is < 2e-8 relative.
inline __m256 exp_reduce(__m256 x, __m256* n) {
  *n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(*n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(*n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  return _mm256_fmadd_ps(_mm256_mul_ps(r, r), p, r);
}

// exp(x); overflows to inf, underflows through denormals to 0, NaN stays NaN.
inline __m256 vexp(__m256 x) {
  // min/max return their second operand for NaN, so NaN survives the clamp.
  x = _mm256_max_ps(_mm256_set1_ps(-104.0f), _mm256_min_ps(_mm256_set1_ps(89.0f), x));
  __m256 n;
  const __m256 p = _mm256_add_ps(exp_reduce(x, &n), _mm256_set1_ps(1.0f));
  // 2^n in two halves keeps each factor a normal float for n in [-150, 129].
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(n1)), pow2i(n2));
}

// exp(x) - 1, accurate for small |x| too; x is clamped to [-87, 88].
inline __m256 vexpm1(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), _mm256_min_ps(_mm256_set1_ps(88.0f), x));
  __m256 n;
  const __m256 q = exp_reduce(x, &n);
  const __m256 s = pow2i(_mm256_cvtps_epi32(n));
  // 2^n (1 + q) - 1 = 2^n q + (2^n - 1); exact q when n = 0.
  return _mm256_fmadd_ps(s, q, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));
}

// Natural log; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf; denormals are handled.
inline __m256 vlog(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
  const __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(8388608.0f)), tiny);
  const __m256i bits = _mm256_castps_si256(xs);
  __m256 e =
      _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
  e = _mm256_sub_ps(e, _mm256_and_ps(tiny, _mm256_set1_ps(23.0f)));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
  // Bring m into [sqrt(1/2), sqrt(2)) so s below stays within +-0.172.
  const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
  e = _mm256_add_ps(e, _mm256_and_ps(big, _mm256_set1_ps(1.0f)));
  // log(m) = 2 atanh(s), s = (m-1)/(m+1): 2 (s + s^3/3 + ... + s^9/9), tail < 3e-9 relative.
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.0f / 9);
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 7));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 5));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 3));
  const __m256 s2x = _mm256_add_ps(s, s);
  __m256 lm = _mm256_fmadd_ps(_mm256_mul_ps(s2x, s2), p, s2x);
  lm = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), lm);
  __m256 r = _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), lm);
  const __m256 zero = _mm256_setzero_ps();
  r = _mm256_blendv_ps(r, _mm256_set1_ps(-__builtin_inff()), _mm256_cmp_ps(x, zero, _CMP_EQ_OQ));
  r = _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_inff()),
                       _mm256_cmp_ps(x, _mm256_set1_ps(__builtin_inff()), _CMP_EQ_OQ));
  // x < 0 or NaN: NaN.
  return _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_nanf("")),
                          _mm256_cmp_ps(x, zero, _CMP_NGE_UQ));
}

inline __m256 sign_bits(__m256 x) {
  return _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
}

// tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x: no cancellation near 0.
inline __m256 vtanh(__m256 x) {
  const __m256 sign = sign_bits(x);
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 e = vexpm1(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
  const __m256 t = _mm256_div_ps(e, _mm256_sub_ps(_mm256_set1_ps(-2.0f), e));
  return _mm256_or_ps(t, sign);
}

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

// -2 sqrt(2/pi) (x + 0.044715 x^3): with it, 0.5 (1 + tanh(u)) = 1 / (1 + exp(this)).
inline __m256 gelu_neg2u(__m256 x) {
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(x2, _mm256_set1_ps(kGeluA)), x, x);
  return _mm256_mul_ps(inner, _mm256_set1_ps(-2.0f * kGeluC));
}

// gelu (tanh form) = x / (1 + exp(-2u)): the same function as 0.5 x (1 + tanh(u)) without the
// cancellation of 1 + tanh(u) for negative x.
inline __m256 vgelu(__m256 x) {
  const __m256 e = vexp(gelu_neg2u(x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// d gelu / dx = s + x s (1 - s) 2 du/dx with s = sigmoid(2u), 1 - s = e s.
inline __m256 vgelu_grad(__m256 x) {
  // Clamping keeps e finite so e * s never becomes inf * 0.
  const __m256 e = vexp(_mm256_min_ps(gelu_neg2u(x), _mm256_set1_ps(80.0f)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 du2 = _mm256_fmadd_ps(x2, _mm256_set1_ps(2.0f * kGeluC * 3.0f * kGeluA),
                                     _mm256_set1_ps(2.0f * kGeluC));
  const __m256 ss = _mm256_mul_ps(s, _mm256_mul_ps(e, s));
  return _mm256_fmadd_ps(_mm256_mul_ps(x, ss), du2, s);
}

// silu = x sigmoid(x) = x / (1 + exp(-x)).
inline __m256 vsilu(__m256 x) {
  const __m256 e = vexp(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// d silu / dx = s (1 + x (1 - s)), 1 - s = e s.
inline __m256 vsilu_grad(__m256 x) {
  const __m256 e =
      vexp(_mm256_min_ps(_mm256_sub_ps(_mm256_setzero_ps(), x), _mm256_set1_ps(80.0f)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
  return _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_mul_ps(e, s), one));
}

// ---- row loops with a partial last vector ----------------------------------------------------

// k lanes of p (k = 8: a plain load). Callers pass the literal 8 in their main loop, so the
// branch folds away after inlining.
inline __m256 ld(const float* p, int64_t k) {
  return k == 8 ? _mm256_loadu_ps(p) : load_part(p, k);
}
inline void st(float* p, int64_t k, __m256 v) {
  if (k == 8) {
    _mm256_storeu_ps(p, v);
  } else {
    store_part(p, k, v);
  }
}

// Sum over i < n of the lanes of f(i, k), where f reads k valid lanes at offset i; lanes past
// the end are masked off, so f may produce anything there.
template <typename F>
inline float row_reduce(int64_t n, const F& f) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_ps(a0, f(i, 8));
    a1 = _mm256_add_ps(a1, f(i + 8, 8));
  }
  if (i + 8 <= n) {
    a0 = _mm256_add_ps(a0, f(i, 8));
    i += 8;
  }
  if (i < n)
    a1 = _mm256_add_ps(a1, _mm256_and_ps(f(i, n - i), _mm256_castsi256_ps(tail_mask(n - i))));
  return hsum(_mm256_add_ps(a0, a1));
}

// Calls f(i, k) for i = 0, 8, 16, ... < n with k valid lanes.
template <typename F>
inline void row_for(int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) f(i, 8);
  if (i < n) f(i, n - i);
}

// ---- maps over rows -------------------------------------------------------------------------

// y[i] = f(x[i]) eight lanes at a time, masked tail.
template <typename F>
inline void map1(const float* x, float* y, int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) store_part(y + i, n - i, f(load_part(x + i, n - i)));
}

// z[i] = f(x[i], y[i]).
template <typename F>
inline void map2(const float* x, const float* y, float* z, int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(z + i, f(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  if (i < n) store_part(z + i, n - i, f(load_part(x + i, n - i), load_part(y + i, n - i)));
}

// Largest element of x[0, n), n >= 1; NaN if any is NaN.
inline float row_max(const float* x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = max_nan(_mm256_loadu_ps(x + i), m0);
    m1 = max_nan(_mm256_loadu_ps(x + i + 8), m1);
  }
  if (i + 8 <= n) {
    m0 = max_nan(_mm256_loadu_ps(x + i), m0);
    i += 8;
  }
  if (i < n) {
    const __m256 m = _mm256_castsi256_ps(tail_mask(n - i));
    m1 = max_nan(_mm256_blendv_ps(ninf, load_part(x + i, n - i), m), m1);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, max_nan(m0, m1));
  float r = lanes[0];
  for (int k = 1; k < 8; ++k) r = (lanes[k] > r || lanes[k] != lanes[k]) ? lanes[k] : r;
  return r;
}

// sum of exp(x[i] - shift); when y is non-null it also receives exp(x[i] - shift).
inline float exp_shift_sum(const float* x, float shift, float* y, int64_t n) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = vexp(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
    const __m256 e1 = vexp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), sh));
    if (y) {
      _mm256_storeu_ps(y + i, e0);
      _mm256_storeu_ps(y + i + 8, e1);
    }
    acc0 = _mm256_add_ps(acc0, e0);
    acc1 = _mm256_add_ps(acc1, e1);
  }
  for (; i < n; i += 8) {
    const int64_t k = std::min<int64_t>(8, n - i);
    const __m256 e = _mm256_and_ps(vexp(_mm256_sub_ps(load_part(x + i, k), sh)),
                                   _mm256_castsi256_ps(tail_mask(k)));
    if (y) store_part(y + i, k, e);
    acc0 = _mm256_add_ps(acc0, e);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

// y[i] = x[i] * s.
inline void scale_row(const float* x, float s, float* y, int64_t n) {
  const __m256 sv = _mm256_set1_ps(s);
  map1(x, y, n, [&](__m256 v) { return _mm256_mul_ps(v, sv); });
}

}  // namespace hp::cpu::detail
