// Shape helpers.
#include "hp/core/shape.hpp"

#include "hp/core/error.hpp"

namespace hp {

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  HP_CHECK(!__builtin_mul_overflow(a, b, &r), "[", what, "] ", a, " * ", b, " overflows int64");
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  HP_CHECK(!__builtin_add_overflow(a, b, &r), "[", what, "] ", a, " + ", b, " overflows int64");
  return r;
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    int64_t r = 0;
    HP_CHECK(!__builtin_mul_overflow(n, d, &r), "[shape] ", shape_str(s),
             " has more elements than int64 holds");
    n = r;
  }
  return n;
}

size_t byte_count(const Shape& s, size_t elem_size) {
  return size_t(checked_mul(numel(s), int64_t(elem_size), "bytes"));
}

std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    HP_CHECK(!__builtin_mul_overflow(acc, s[i], &acc), "[shape] ", shape_str(s),
             " has more elements than int64 holds");
  }
  return st;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t norm_axis(int64_t axis, size_t rank, const char* who) {
  int64_t r = int64_t(rank);
  int64_t a = axis < 0 ? axis + r : axis;
  HP_CHECK(a >= 0 && a < r, "[", who, "] axis ", axis, " out of range for rank ", r);
  return a;
}

}  // namespace hp
