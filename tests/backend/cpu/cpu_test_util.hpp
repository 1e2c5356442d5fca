// Helpers shared by the CPU kernel tests: random inputs, shapes, and a tolerance check that
// reports the first mismatches. Not a test framework: GoogleTest assertions only.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "hp/backend/cpu/kernels.hpp"

namespace hp::cpu::testing_util {

using VecF = std::vector<float>;
using VecD = std::vector<double>;

inline constexpr int kThreads[] = {1, 2};
// Sizes that are 1, prime, not multiples of 8, and past the threading threshold.
inline constexpr int64_t kSizes[] = {1, 7, 13, 37, 1000, 20011};

inline VecF random_vec(int64_t n, float lo, float hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  VecF v(static_cast<size_t>(n));
  for (float& x : v) x = dist(gen);
  return v;
}

inline int64_t numel_of(const Dims& d) {
  int64_t n = 1;
  for (int64_t v : d) n *= v;
  return n;
}

inline Dims strides_of(const Dims& d) {
  Dims s(d.size());
  int64_t v = 1;
  for (size_t k = d.size(); k-- > 0;) s[k] = v, v *= d[k];
  return s;
}

// Multi-index of flat index i in shape d.
inline Dims unravel(int64_t i, const Dims& d) {
  Dims idx(d.size());
  for (size_t k = d.size(); k-- > 0;) idx[k] = i % d[k], i /= d[k];
  return idx;
}

// Counts elements outside |got - want| <= atol + rtol |want|; reports the first few.
// rtol_each, when given, adds a per-element relative tolerance.
inline testing::AssertionResult close(const VecF& got, const VecD& want, double rtol, double atol,
                                      const VecD* rtol_each = nullptr) {
  if (got.size() != want.size())
    return testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  int64_t bad = 0;
  std::ostringstream first;
  first.precision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const bool same_special = (std::isnan(g) && std::isnan(w)) || (std::isinf(w) && g == w);
    if (same_special) continue;
    const double rt = rtol + (rtol_each ? (*rtol_each)[i] : 0.0);
    if (!(std::fabs(g - w) <= atol + rt * std::fabs(w))) {
      if (bad++ < 3) first << " [" << i << "] got " << g << " want " << w << ";";
    }
  }
  if (bad == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << bad << " of " << got.size() << " off:" << first.str();
}

inline VecD to_d(const VecF& v) {
  return VecD(v.begin(), v.end());
}

inline double dot(const VecD& a, const VecD& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

}  // namespace hp::cpu::testing_util
