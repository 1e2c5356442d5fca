// Counter-based random numbers: every draw is a pure function of (seed, stream, index), so a
// value does not depend on how a tensor is laid out, sharded, or in which order it is filled.
// Not a statistical-quality generator for cryptography: splitmix64 hashing, Box-Muller normals.
#pragma once
#include <cmath>
#include <cstdint>

namespace hp::rng {

inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// 64 random bits for (seed, stream, index).
inline uint64_t bits(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix(mix(mix(seed) ^ stream) ^ index);
}

// Uniform in [0, 1).
inline double uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return double(bits(seed, stream, index) >> 11) * 0x1.0p-53;
}

// Standard normal.
inline double normal(uint64_t seed, uint64_t stream, uint64_t index) {
  double u1 = uniform(seed, stream, 2 * index), u2 = uniform(seed, stream, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
}

// A stream id from a name (FNV-1a), so parameters get independent streams by name.
inline uint64_t stream_of(const char* s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; ++s) h = (h ^ uint8_t(*s)) * 1099511628211ull;
  return h;
}

}  // namespace hp::rng
