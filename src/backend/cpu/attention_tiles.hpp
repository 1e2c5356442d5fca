// AVX2/FMA building blocks of the fused attention: a small register-blocked tile product with
// causal trimming, and a vectorised exp. Internal to the CPU backend.
// Not a GEMM: operands are small, L1/L2-resident, single-threaded; widths are multiples of 8.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "backend/cpu/vec_math.hpp"

namespace hp::cpu::detail {

constexpr int kNoLimit = 1 << 28;

// Per row-block trimming of a tile product on a causal diagonal tile. For the R rows starting
// at m: columns [0, round_up8(m + R + n_hi)), reduction range [max(0, m + k_lo), m + R + k_hi).
struct TileLimits {
  int n_hi = kNoLimit;
  int k_hi = kNoLimit;
  int k_lo = -kNoLimit;
};

// exp(x) for 8 lanes: Cody-Waite range reduction and a degree-5 polynomial (about 1 ulp);
// lanes below -87.3 (including -inf) give exactly 0.
inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  const __m256 out = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(under, out);
}

// Lanes [0, 8) whose index is below n (n may be <= 0 or >= 8).
inline __m256 lane_mask(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
}

// Transposes an 8x8 block: dst[j * ld_dst + i] = src[i * ld_src + j].
inline void transpose8x8(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m256 r[8], t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld_src);
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ld_dst, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ld_dst, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// C[R rows, 8*V cols] (+)= sum_{k in [k0,k1)} A(r, k) * B[k, :], A(r, k) = a[r * a_rs + k * a_cs].
template <int R, int V>
inline void tile_kernel(int k0, int k1, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                        int64_t ldb, float* c, int64_t ldc, bool acc) {
  __m256 cr[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v)
      cr[r][v] = acc ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
  }
  for (int k = k0; k < k1; ++k) {
    __m256 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + k * ldb + 8 * v);
    const float* ak = a + k * a_cs;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(ak + r * a_rs);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) cr[r][v] = _mm256_fmadd_ps(av, bv[v], cr[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(c + r * ldc + 8 * v, cr[r][v]);
  }
}

template <int R>
inline void tile_rows(int m, int N, int K, const float* a, int64_t a_rs, int64_t a_cs,
                      const float* b, int64_t ldb, float* c, int64_t ldc, bool acc,
                      const TileLimits& lim) {
  const int n_end = std::min<int64_t>(N, (int64_t{m} + R + lim.n_hi + 7) / 8 * 8);
  const int k0 = std::max(0, m + lim.k_lo);
  const int k1 = std::min<int64_t>(K, int64_t{m} + R + lim.k_hi);
  const float* ar = a + m * a_rs;
  float* cr = c + m * ldc;
  int n = 0;
  for (; n + 16 <= n_end; n += 16)
    tile_kernel<R, 2>(k0, k1, ar, a_rs, a_cs, b + n, ldb, cr + n, ldc, acc);
  if (n < n_end) tile_kernel<R, 1>(k0, k1, ar, a_rs, a_cs, b + n, ldb, cr + n, ldc, acc);
}

// C[M, N] (+)= A[M, K] * B[K, N] with A(m, k) = a[m * a_rs + k * a_cs] and B, C row-major.
// N must be a multiple of 8; columns past the causal trim are left unwritten.
inline void tile_mm(int M, int N, int K, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool acc, const TileLimits& lim = {}) {
  int m = 0;
  for (; m + 6 <= M; m += 6) tile_rows<6>(m, N, K, a, a_rs, a_cs, b, ldb, c, ldc, acc, lim);
  switch (M - m) {
    case 5:
      tile_rows<5>(m, N, K, a, a_rs, a_cs, b, ldb, c, ldc, acc, lim);
      break;
    case 4:
      tile_rows<4>(m, N, K, a, a_rs, a_cs, b, ldb, c, ldc, acc, lim);
      break;
    case 3:
      tile_rows<3>(m, N, K, a, a_rs, a_cs, b, ldb, c, ldc, acc, lim);
      break;
    case 2:
      tile_rows<2>(m, N, K, a, a_rs, a_cs, b, ldb, c, ldc, acc, lim);
      break;
    case 1:
      tile_rows<1>(m, N, K, a, a_rs, a_cs, b, ldb, c, ldc, acc, lim);
      break;
    default:
      break;
  }
}

}  // namespace hp::cpu::detail
