// Element-wise reduction and dtype conversion kernels shared by the host backends.
// Not general math kernels: memory-bound loops over raw buffers, accumulating bf16/f16 in f32.
#pragma once
#include <cstddef>

#include "hp/comm/communicator.hpp"

namespace hp::comm::detail {

// dst[i] = op over k < nsrc of srcs[k][i], for i < count; kAvg divides by nsrc. dst may alias
// any source (each block is read completely before it is written).
void reduce_buffers(void* dst, const void* const* srcs, int nsrc, size_t count, DType t,
                    ReduceOp op);
// bf16/f16/f32 -> f32 and back (round to nearest even); other dtypes throw hp::Error.
void to_f32(const void* src, float* dst, size_t count, DType t);
void from_f32(const float* src, void* dst, size_t count, DType t);
// buf[i] /= n in place (integers truncate); used for kAvg after a sum.
void divide_by(void* buf, size_t count, DType t, int n);
// [lo, hi) of rank r when count elements are split into n near-equal chunks whose boundaries
// are multiples of 64 bytes (so ranks never write the same cache line).
void chunk_range(size_t count, size_t elem_bytes, int n, int r, size_t* lo, size_t* hi);

}  // namespace hp::comm::detail
