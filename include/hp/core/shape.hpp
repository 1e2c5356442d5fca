// Shapes and strides of dense row-major tensors.
// Not a view algebra: only what layouts and kernels need (numel, contiguous strides, printing).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace hp {

using Shape = std::vector<int64_t>;

// a * b and a + b; throw hp::Error naming `what` instead of overflowing int64 (element and byte
// counts come from configs and command lines, so an overflow is bad input, not a bug).
int64_t checked_mul(int64_t a, int64_t b, const char* what = "size");
int64_t checked_add(int64_t a, int64_t b, const char* what = "size");
// Product of dims (1 for a scalar []); throws when it does not fit int64.
int64_t numel(const Shape& s);
// numel(s) * elem_size: the bytes of a dense tensor; throws when it does not fit int64.
size_t byte_count(const Shape& s, size_t elem_size);
// Row-major strides in elements.
std::vector<int64_t> contiguous_strides(const Shape& s);
// "[8, 128, 256]".
std::string shape_str(const Shape& s);
// Normalises a possibly negative axis against rank; throws naming `who` when out of range.
int64_t norm_axis(int64_t axis, size_t rank, const char* who);

}  // namespace hp
