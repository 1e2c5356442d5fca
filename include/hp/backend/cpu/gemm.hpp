// Single-precision GEMM through oneDNN (dnnl_sgemm), row-major, plus a strided batched form.
// Not a general BLAS: f32 only; lower precisions are converted before they reach here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hp/backend/cpu/context.hpp"

namespace hp::cpu {

// Bytes of workspace gemm allocates for itself (outside any Allocator) for these arguments.
size_t gemm_scratch_bytes(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float beta);

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [M,K] (A is [K,M] when ta).
void gemm(const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc);

// `batch` independent GEMMs; operand i starts at base + i * stride (stride 0 broadcasts).
void gemm_batched(const Context& ctx, int64_t batch, bool ta, bool tb, int64_t M, int64_t N,
                  int64_t K, float alpha, const float* A, int64_t lda, int64_t stride_a,
                  const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
                  int64_t stride_c);

}  // namespace hp::cpu
