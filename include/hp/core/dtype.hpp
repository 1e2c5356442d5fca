// Element types. f32 is the compute type everywhere; bf16/f16 are storage types that convert.
// Not a type system for kernels: kernels dispatch on DType at run time.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace hp {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kI64 };

// Bytes per element.
size_t dtype_size(DType t);
// "f32", "bf16", ...
const char* dtype_name(DType t);
// Parses "f32"/"float32"/"F32" (safetensors spelling too); throws hp::Error on unknown names.
DType dtype_from_name(const std::string& name);
bool is_float(DType t);

// Round-to-nearest-even conversions.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

}  // namespace hp
