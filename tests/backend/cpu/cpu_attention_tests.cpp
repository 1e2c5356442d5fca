// Tests of the CPU GEMM and fused causal attention against naive float64 references.
// Not a benchmark and not a test of the other CPU kernels (those live in backend_cpu_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hp/backend/cpu/attention.hpp"
#include "hp/backend/cpu/gemm.hpp"
#include "hp/core/error.hpp"

namespace {

using hp::cpu::AttentionShape;
using hp::cpu::Context;

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// max |got - want| / max(floor, max |want|) over all elements. The floor keeps gradients that
// are exactly zero in theory (T = 1: dq = dk = 0) from dividing rounding noise by ~0.
double rel_err(const std::vector<float>& got, const std::vector<double>& want,
               double floor = 1e-30) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0.0, scale = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / std::max(scale, floor);
}

// ---- gemm --------------------------------------------------------------------------------

// C = alpha op(A) op(B) + beta C in double; c0 is C before the call.
std::vector<double> ref_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const std::vector<float>& A, int64_t lda, const std::vector<float>& B,
                             int64_t ldb, float beta, const std::vector<float>& c0, int64_t ldc) {
  std::vector<double> c(c0.begin(), c0.end());
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < K; ++p) {
        const double a = ta ? A[p * lda + i] : A[i * lda + p];
        const double b = tb ? B[j * ldb + p] : B[p * ldb + j];
        acc += a * b;
      }
      const double old = beta == 0.0f ? 0.0 : beta * static_cast<double>(c0[i * ldc + j]);
      c[i * ldc + j] = alpha * acc + old;
    }
  }
  return c;
}

void run_gemm_case(int threads, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   float beta) {
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
  const auto A = random_vec(static_cast<size_t>((ta ? K : M) * lda), 1);
  const auto B = random_vec(static_cast<size_t>((tb ? N : K) * ldb), 2);
  auto C = random_vec(static_cast<size_t>(M * ldc), 3);
  if (beta == 0.0f) {
    // beta == 0 must ignore C entirely, NaNs included (except the untouched padding).
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  const auto want = ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  hp::cpu::gemm(Context{threads}, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                C.data(), ldc);
  EXPECT_LT(rel_err(C, want), 1e-5) << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N
                                    << " K=" << K << " beta=" << beta << " threads=" << threads;
}

TEST(CpuGemm, AllTransposesOddSizes) {
  const int64_t sizes[] = {1, 7, 13, 67};
  for (int threads : {1, 2})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t M : sizes)
          for (int64_t N : sizes)
            for (int64_t K : sizes) run_gemm_case(threads, ta, tb, M, N, K, 1.0f, 0.0f);
}

TEST(CpuGemm, AlphaAndBetaAccumulate) {
  for (int threads : {1, 2})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        run_gemm_case(threads, ta, tb, 13, 67, 7, 0.5f, 1.0f);
        run_gemm_case(threads, ta, tb, 67, 13, 67, -2.0f, 0.25f);
        run_gemm_case(threads, ta, tb, 7, 7, 13, 0.0f, 1.0f);
      }
}

TEST(CpuGemm, LargeMultiThreaded) {
  run_gemm_case(2, false, true, 300, 257, 129, 1.0f, 1.0f);
}

// Tall A^T B products take the transposed-result path (M >= 2N, >= 4M multiply-adds).
TEST(CpuGemm, TallTransposedProductTakesTheTransposedPath) {
  for (int threads : {1, 2}) {
    run_gemm_case(threads, true, false, 517, 67, 129, 1.0f, 0.0f);
    run_gemm_case(threads, true, false, 1024, 256, 64, -0.5f, 0.0f);
  }
}

TEST(CpuGemm, RejectsBadLeadingDimension) {
  std::vector<float> a(64), b(64), c(64);
  EXPECT_THROW(hp::cpu::gemm(Context{1}, false, false, 4, 4, 4, 1.0f, a.data(), 3, b.data(), 4,
                             0.0f, c.data(), 4),
               hp::Error);
  EXPECT_THROW(hp::cpu::gemm(Context{0}, false, false, 4, 4, 4, 1.0f, a.data(), 4, b.data(), 4,
                             0.0f, c.data(), 4),
               hp::Error);
}

// Batched GEMM with A broadcast (stride 0), small (split by batch) and large (split inside).
void run_batched_case(int threads, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
                      float beta, bool share_c) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
  const int64_t sa = 0, sb = K * N, sc = share_c ? 0 : M * N;
  const auto A = random_vec(static_cast<size_t>(M * K), 4);
  const auto B = random_vec(static_cast<size_t>(batch * K * N), 5);
  auto C = random_vec(static_cast<size_t>(share_c ? M * N : batch * M * N), 6);
  std::vector<double> want(C.begin(), C.end());
  for (int64_t i = 0; i < batch; ++i) {
    const std::vector<float> b(B.begin() + i * sb, B.begin() + (i + 1) * sb);
    std::vector<float> c0(M * N);
    for (int64_t j = 0; j < M * N; ++j) c0[j] = static_cast<float>(want[i * sc + j]);
    const auto c = ref_gemm(ta, tb, M, N, K, 1.0f, A, lda, b, ldb, beta, c0, ldc);
    for (int64_t j = 0; j < M * N; ++j) want[i * sc + j] = c[j];
  }
  hp::cpu::gemm_batched(Context{threads}, batch, ta, tb, M, N, K, 1.0f, A.data(), lda, sa, B.data(),
                        ldb, sb, beta, C.data(), ldc, sc);
  EXPECT_LT(rel_err(C, want), 1e-5)
      << "batch=" << batch << " M=" << M << " N=" << N << " K=" << K << " threads=" << threads;
}

TEST(CpuGemm, BatchedBroadcast) {
  for (int threads : {1, 2})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        run_batched_case(threads, ta, tb, 5, 13, 7, 67, 0.0f, false);
        run_batched_case(threads, ta, tb, 3, 1, 67, 13, 1.0f, false);
        run_batched_case(threads, ta, tb, 4, 7, 13, 7, 1.0f, true);
      }
  run_batched_case(2, false, false, 2, 256, 256, 257, 1.0f, false);  // large: split inside
}

// ---- attention ---------------------------------------------------------------------------

struct AttnData {
  std::vector<float> q, k, v, dout;
};

AttnData make_data(const AttentionShape& s, uint32_t seed) {
  const auto nq = static_cast<size_t>(s.batch * s.seq * s.heads * s.head_dim);
  const auto nkv = static_cast<size_t>(s.batch * s.seq * s.kv_heads * s.head_dim);
  // Wide-ish scores so the softmax is far from uniform and the max subtraction matters.
  return {random_vec(nq, seed, -2.0f, 2.0f), random_vec(nkv, seed + 1, -2.0f, 2.0f),
          random_vec(nkv, seed + 2), random_vec(nq, seed + 3)};
}

struct AttnRef {
  std::vector<double> out, lse, dq, dk, dv;
};

// Naive float64 attention: P = softmax(scale Q K^T + causal mask), O = P V, and gradients
// dV = P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dQ = scale dS K, dK = scale dS^T Q.
AttnRef ref_attention(const AttentionShape& s, const AttnData& x) {
  const int64_t B = s.batch, T = s.seq, H = s.heads, Hkv = s.kv_heads, D = s.head_dim;
  AttnRef r;
  r.out.assign(x.q.size(), 0.0);
  r.dq.assign(x.q.size(), 0.0);
  r.dk.assign(x.k.size(), 0.0);
  r.dv.assign(x.v.size(), 0.0);
  r.lse.assign(static_cast<size_t>(B * H * T), 0.0);
  auto qi = [&](int64_t b, int64_t t, int64_t h) { return ((b * T + t) * H + h) * D; };
  auto ki = [&](int64_t b, int64_t t, int64_t g) { return ((b * T + t) * Hkv + g) * D; };
  std::vector<double> p(T), dp(T);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / Hkv);
      for (int64_t i = 0; i < T; ++i) {
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double acc = 0.0;
          for (int64_t d = 0; d < D; ++d)
            acc += double{x.q[qi(b, i, h) + d]} * x.k[ki(b, j, g) + d];
          p[j] = acc * s.scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(p[j] - mx);
        r.lse[(b * H + h) * T + i] = mx + std::log(sum);
        for (int64_t j = 0; j <= i; ++j) p[j] = std::exp(p[j] - mx) / sum;
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0.0;
          for (int64_t j = 0; j <= i; ++j) acc += p[j] * x.v[ki(b, j, g) + d];
          r.out[qi(b, i, h) + d] = acc;
        }
        double rowsum = 0.0;
        for (int64_t d = 0; d < D; ++d)
          rowsum += double{x.dout[qi(b, i, h) + d]} * r.out[qi(b, i, h) + d];
        for (int64_t j = 0; j <= i; ++j) {
          double acc = 0.0;
          for (int64_t d = 0; d < D; ++d)
            acc += double{x.dout[qi(b, i, h) + d]} * x.v[ki(b, j, g) + d];
          dp[j] = p[j] * (acc - rowsum);  // dS
        }
        for (int64_t j = 0; j <= i; ++j) {
          for (int64_t d = 0; d < D; ++d) {
            r.dv[ki(b, j, g) + d] += p[j] * x.dout[qi(b, i, h) + d];
            r.dq[qi(b, i, h) + d] += s.scale * dp[j] * x.k[ki(b, j, g) + d];
            r.dk[ki(b, j, g) + d] += s.scale * dp[j] * x.q[qi(b, i, h) + d];
          }
        }
      }
    }
  }
  return r;
}

struct AttnOut {
  std::vector<float> out, lse, dq, dk, dv;
};

AttnOut run_attention(const AttentionShape& s, const AttnData& x, int threads) {
  AttnOut r;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  r.out.assign(x.q.size(), nan);
  r.lse.assign(static_cast<size_t>(s.batch * s.heads * s.seq), nan);
  r.dq.assign(x.q.size(), nan);
  r.dk.assign(x.k.size(), nan);
  r.dv.assign(x.v.size(), nan);
  const Context ctx{threads};
  hp::cpu::attention_fwd(ctx, s, x.q.data(), x.k.data(), x.v.data(), r.out.data(), r.lse.data());
  hp::cpu::attention_bwd(ctx, s, x.q.data(), x.k.data(), x.v.data(), r.out.data(), r.lse.data(),
                         x.dout.data(), r.dq.data(), r.dk.data(), r.dv.data());
  return r;
}

std::string describe(const AttentionShape& s, int threads) {
  return "B=" + std::to_string(s.batch) + " T=" + std::to_string(s.seq) +
         " H=" + std::to_string(s.heads) + " Hkv=" + std::to_string(s.kv_heads) +
         " Dh=" + std::to_string(s.head_dim) + " threads=" + std::to_string(threads);
}

void check_attention(const AttentionShape& s, uint32_t seed) {
  const AttnData x = make_data(s, seed);
  const AttnRef want = ref_attention(s, x);
  for (int threads : {1, 2}) {
    const AttnOut got = run_attention(s, x, threads);
    const std::string what = describe(s, threads);
    EXPECT_LT(rel_err(got.out, want.out), 1e-5) << "out " << what;
    EXPECT_LT(rel_err(got.lse, want.lse), 1e-5) << "lse " << what;
    EXPECT_LT(rel_err(got.dq, want.dq, 0.1), 2e-5) << "dq " << what;
    EXPECT_LT(rel_err(got.dk, want.dk, 0.1), 2e-5) << "dk " << what;
    EXPECT_LT(rel_err(got.dv, want.dv, 0.1), 2e-5) << "dv " << what;
  }
}

AttentionShape shape(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh) {
  return {B, T, H, Hkv, Dh, static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)))};
}

TEST(CpuAttention, SingleToken) {
  check_attention(shape(1, 1, 1, 1, 8), 10);
  check_attention(shape(3, 1, 4, 2, 24), 11);
}

TEST(CpuAttention, PrimeLengthOneTile) {
  check_attention(shape(1, 37, 4, 4, 8), 20);
  check_attention(shape(3, 37, 4, 2, 24), 21);
  check_attention(shape(1, 37, 4, 1, 24), 22);
  check_attention(shape(3, 37, 2, 1, 12), 23);  // Dh not a multiple of 8
}

TEST(CpuAttention, SeveralTiles) {
  check_attention(shape(1, 130, 4, 1, 8), 30);   // per-head backward split at 2 threads
  check_attention(shape(3, 131, 4, 2, 24), 31);  // 3 tiles, the last one 3 rows long
  check_attention(shape(1, 128, 2, 2, 64), 32);  // exact tile multiple
  check_attention(shape(2, 77, 4, 4, 5), 33);    // Dh below one vector
  check_attention(shape(1, 150, 3, 1, 16), 34);  // odd head count: forward split by block
  check_attention(shape(1, 70, 4, 1, 12), 35);   // per-head backward split with padded rows
}

TEST(CpuAttention, LargeHeadDim) {
  check_attention(shape(1, 70, 2, 1, 128), 40);
}

TEST(CpuAttention, RerunIsBitwiseIdentical) {
  const AttentionShape s = shape(3, 131, 4, 2, 24);
  const AttnData x = make_data(s, 50);
  const AttnOut a = run_attention(s, x, 2), b = run_attention(s, x, 2);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.lse, b.lse);
  EXPECT_EQ(a.dq, b.dq);
  EXPECT_EQ(a.dk, b.dk);
  EXPECT_EQ(a.dv, b.dv);
  const AttnOut c = run_attention(s, x, 1);  // same tasks, so thread count does not matter
  EXPECT_EQ(a.out, c.out);
  EXPECT_EQ(a.dq, c.dq);
}

// The reference gradients are themselves checked against central differences of the
// reference forward (loss = sum(dout * out)), so the two cannot share a derivation error.
TEST(CpuAttention, ReferenceMatchesFiniteDifferences) {
  const AttentionShape s = shape(1, 5, 2, 1, 3);
  AttnData x = make_data(s, 60);
  const AttnRef r = ref_attention(s, x);
  auto loss = [&](const AttnData& y) {
    const AttnRef f = ref_attention(s, y);
    double acc = 0.0;
    for (size_t i = 0; i < f.out.size(); ++i) acc += f.out[i] * y.dout[i];
    return acc;
  };
  const float eps = 1e-2f;
  auto check = [&](std::vector<float>& param, const std::vector<double>& grad, const char* name) {
    for (size_t i = 0; i < param.size(); ++i) {
      const float saved = param[i];
      param[i] = saved + eps;
      const double up = loss(x);
      param[i] = saved - eps;
      const double down = loss(x);
      param[i] = saved;
      const double fd = (up - down) / (double{saved + eps} - double{saved - eps});
      EXPECT_NEAR(fd, grad[i], 1e-3) << name << "[" << i << "]";
    }
  };
  check(x.q, r.dq, "dq");
  check(x.k, r.dk, "dk");
  check(x.v, r.dv, "dv");
}

TEST(CpuAttention, RejectsBadHeads) {
  const AttentionShape s = shape(1, 4, 3, 2, 8);
  std::vector<float> buf(1024);
  EXPECT_THROW(hp::cpu::attention_fwd(Context{1}, s, buf.data(), buf.data(), buf.data(), buf.data(),
                                      buf.data()),
               hp::Error);
}

}  // namespace
