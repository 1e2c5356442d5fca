// Reduction and conversion loops for the host backends; written so that -O3 vectorises them.
// Not tuned per ISA: plain loops over fixed-size blocks that stay in L1.
#include "reduce.hpp"

#include <algorithm>
#include <cstdint>

namespace hp::comm::detail {
namespace {

constexpr size_t kBlock = 2048;

inline float load_f32(const uint16_t* p, size_t i, DType t) {
  return t == DType::kBF16 ? bf16_to_f32(p[i]) : f16_to_f32(p[i]);
}

template <typename T>
void combine(T* acc, const T* src, size_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      for (size_t i = 0; i < n; ++i) acc[i] += src[i];
      break;
    case ReduceOp::kMax:
      for (size_t i = 0; i < n; ++i) acc[i] = src[i] > acc[i] ? src[i] : acc[i];
      break;
    case ReduceOp::kMin:
      for (size_t i = 0; i < n; ++i) acc[i] = src[i] < acc[i] ? src[i] : acc[i];
      break;
  }
}

// Same-type accumulation (f32, i32, i64).
template <typename T>
void reduce_typed(T* dst, const void* const* srcs, int nsrc, size_t count, ReduceOp op) {
  T acc[kBlock];
  for (size_t b = 0; b < count; b += kBlock) {
    size_t n = std::min(kBlock, count - b);
    std::copy_n(static_cast<const T*>(srcs[0]) + b, n, acc);
    for (int k = 1; k < nsrc; ++k) combine(acc, static_cast<const T*>(srcs[k]) + b, n, op);
    if (op == ReduceOp::kAvg) {
      for (size_t i = 0; i < n; ++i) acc[i] = T(acc[i] / T(nsrc));
    }
    std::copy_n(acc, n, dst + b);
  }
}

// bf16/f16: accumulate in f32, round once at the end.
void reduce_half(uint16_t* dst, const void* const* srcs, int nsrc, size_t count, DType t,
                 ReduceOp op) {
  float acc[kBlock];
  float tmp[kBlock];
  for (size_t b = 0; b < count; b += kBlock) {
    size_t n = std::min(kBlock, count - b);
    const auto* s0 = static_cast<const uint16_t*>(srcs[0]) + b;
    for (size_t i = 0; i < n; ++i) acc[i] = load_f32(s0, i, t);
    for (int k = 1; k < nsrc; ++k) {
      const auto* sk = static_cast<const uint16_t*>(srcs[k]) + b;
      for (size_t i = 0; i < n; ++i) tmp[i] = load_f32(sk, i, t);
      combine(acc, tmp, n, op);
    }
    if (op == ReduceOp::kAvg) {
      for (size_t i = 0; i < n; ++i) acc[i] /= float(nsrc);
    }
    from_f32(acc, dst + b, n, t);
  }
}

}  // namespace

void reduce_buffers(void* dst, const void* const* srcs, int nsrc, size_t count, DType t,
                    ReduceOp op) {
  HP_CHECK(nsrc >= 1, "[comm] reduce over ", nsrc, " buffers");
  switch (t) {
    case DType::kF32:
      return reduce_typed(static_cast<float*>(dst), srcs, nsrc, count, op);
    case DType::kI32:
      return reduce_typed(static_cast<int32_t*>(dst), srcs, nsrc, count, op);
    case DType::kI64:
      return reduce_typed(static_cast<int64_t*>(dst), srcs, nsrc, count, op);
    case DType::kBF16:
    case DType::kF16:
      return reduce_half(static_cast<uint16_t*>(dst), srcs, nsrc, count, t, op);
  }
}

void to_f32(const void* src, float* dst, size_t count, DType t) {
  const auto* s = static_cast<const uint16_t*>(src);
  switch (t) {
    case DType::kF32:
      std::copy_n(static_cast<const float*>(src), count, dst);
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    default:
      throw Error(detail::cat("[comm] to_f32 on ", dtype_name(t)));
  }
}

void from_f32(const float* src, void* dst, size_t count, DType t) {
  auto* d = static_cast<uint16_t*>(dst);
  switch (t) {
    case DType::kF32:
      std::copy_n(src, count, static_cast<float*>(dst));
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) d[i] = f32_to_f16(src[i]);
      return;
    default:
      throw Error(detail::cat("[comm] from_f32 to ", dtype_name(t)));
  }
}

void divide_by(void* buf, size_t count, DType t, int n) {
  switch (t) {
    case DType::kF32: {
      auto* p = static_cast<float*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= float(n);
      return;
    }
    case DType::kI32: {
      auto* p = static_cast<int32_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= n;
      return;
    }
    case DType::kI64: {
      auto* p = static_cast<int64_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= n;
      return;
    }
    default:
      throw Error(detail::cat("[comm] divide_by on ", dtype_name(t)));
  }
}

void chunk_range(size_t count, size_t elem_bytes, int n, int r, size_t* lo, size_t* hi) {
  size_t align = std::max<size_t>(1, 64 / elem_bytes);
  size_t per = (count + size_t(n) - 1) / size_t(n);
  per = (per + align - 1) / align * align;
  *lo = std::min(count, per * size_t(r));
  *hi = std::min(count, *lo + per);
}

}  // namespace hp::comm::detail
