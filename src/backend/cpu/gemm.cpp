// Row-major f32 GEMM on oneDNN's dnnl_sgemm, run on exactly ctx.threads OpenMP threads.
// Not a BLAS: no other dtypes, no packing API; small batched GEMMs are spread over threads
// by batch, large ones by oneDNN itself.
#include "hp/backend/cpu/gemm.hpp"

#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "hp/core/error.hpp"

namespace hp::cpu {
namespace {

// Sets the calling thread's OpenMP team size for the lifetime of the guard. The value is a
// per-thread ICV, so this does not affect other callers; oneDNN reads it for its own team.
class ThreadsGuard {
 public:
  explicit ThreadsGuard(int threads) : saved_(omp_get_max_threads()) {
    if (threads != saved_) omp_set_num_threads(threads);
  }
  ~ThreadsGuard() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;

 private:
  int saved_;
};

void check_args(const char* where, const Context& ctx, bool ta, bool tb, int64_t M, int64_t N,
                int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
  HP_CHECK(ctx.threads >= 1, "[", where, "] threads must be >= 1, got ", ctx.threads);
  HP_CHECK(M >= 0 && N >= 0 && K >= 0, "[", where, "] negative size: M=", M, " N=", N, " K=", K);
  const int64_t a_cols = ta ? M : K;
  const int64_t b_cols = tb ? K : N;
  HP_CHECK(lda >= (a_cols > 1 ? a_cols : 1), "[", where, "] lda ", lda, " < ", a_cols);
  HP_CHECK(ldb >= (b_cols > 1 ? b_cols : 1), "[", where, "] ldb ", ldb, " < ", b_cols);
  HP_CHECK(ldc >= (N > 1 ? N : 1), "[", where, "] ldc ", ldc, " < ", N);
}

// C = beta * C, with beta == 0 writing zeros (so NaNs in an uninitialised C do not survive).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : c[j] * beta;
  }
}

// One sgemm on whatever team size the calling thread currently has. Returns false on failure
// so it can be used inside an OpenMP region, where exceptions must not escape.
bool sgemm_raw(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return true;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return true;
  }
  return dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) ==
         dnnl_success;
}

// Below this many multiply-adds per GEMM, one GEMM per thread beat oneDNN's own threading at
// every size tried (32 GEMMs up to 256 x 256 x 128, 2 threads; bench_kernels BM_SgemmBatched).
constexpr int64_t kSmallGemmMacs = int64_t{1} << 24;

}  // namespace

// A^T B with a tall result (weight gradients x^T dy of a down-projection) runs at half speed
// in oneDNN's kernel on AVX2; the transposed product C^T = B^T A is the fast orientation, and
// transposing C back costs one pass over it (measured 36 -> 70 GFLOP/s at 1024 x 256 x 1024).
static bool via_transpose(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float beta) {
  return ta && !tb && beta == 0.0f && M >= 2 * N && M * N * K >= (int64_t{1} << 22);
}

size_t gemm_scratch_bytes(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float beta) {
  return via_transpose(ta, tb, M, N, K, beta) ? sizeof(float) * size_t(M * N) : 0;
}

void gemm(const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  check_args("gemm", ctx, ta, tb, M, N, K, lda, ldb, ldc);
  ThreadsGuard guard(ctx.threads);
  if (via_transpose(ta, tb, M, N, K, beta)) {
    std::vector<float> ct(size_t(M * N));
    HP_CHECK(sgemm_raw(true, false, N, M, K, alpha, B, ldb, A, lda, 0.0f, ct.data(), M),
             "[gemm] dnnl_sgemm failed: M=", N, " N=", M, " K=", K);
#pragma omp parallel for num_threads(ctx.threads) schedule(static)
    for (int64_t i0 = 0; i0 < M; i0 += 32)
      for (int64_t j = 0; j < N; ++j)
        for (int64_t i = i0; i < std::min(M, i0 + 32); ++i) C[i * ldc + j] = ct[size_t(j * M + i)];
    return;
  }
  HP_CHECK(sgemm_raw(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
           "[gemm] dnnl_sgemm failed: M=", M, " N=", N, " K=", K, " lda=", lda, " ldb=", ldb,
           " ldc=", ldc);
}

void gemm_batched(const Context& ctx, int64_t batch, bool ta, bool tb, int64_t M, int64_t N,
                  int64_t K, float alpha, const float* A, int64_t lda, int64_t stride_a,
                  const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                  int64_t stride_c) {
  check_args("gemm_batched", ctx, ta, tb, M, N, K, lda, ldb, ldc);
  HP_CHECK(batch >= 0, "[gemm_batched] negative batch ", batch);
  // A shared output (stride_c == 0) is updated by each GEMM in turn, so it stays sequential.
  const bool by_batch =
      ctx.threads > 1 && batch >= ctx.threads && stride_c != 0 && M * N * K < kSmallGemmMacs;
  if (by_batch) {
    int failures = 0;
    ThreadsGuard guard(1);  // inner oneDNN calls run single-threaded inside the team
#pragma omp parallel for num_threads(ctx.threads) schedule(static) reduction(+ : failures)
    for (int64_t i = 0; i < batch; ++i) {
      if (!sgemm_raw(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                     C + i * stride_c, ldc))
        ++failures;
    }
    HP_CHECK(failures == 0, "[gemm_batched] dnnl_sgemm failed: M=", M, " N=", N, " K=", K);
    return;
  }
  ThreadsGuard guard(ctx.threads);
  for (int64_t i = 0; i < batch; ++i) {
    HP_CHECK(sgemm_raw(ta, tb, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                       C + i * stride_c, ldc),
             "[gemm_batched] dnnl_sgemm failed at batch ", i, ": M=", M, " N=", N, " K=", K);
  }
}

}  // namespace hp::cpu
