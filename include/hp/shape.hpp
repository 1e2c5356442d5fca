// Shapes and strides of dense row-major tensors.
// Not a view algebra: only what layouts and kernels need (numel, contiguous strides, printing).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace hp {

using Shape = std::vector<int64_t>;

// Product of dims (1 for a scalar []).
int64_t numel(const Shape& s);
// Row-major strides in elements.
std::vector<int64_t> contiguous_strides(const Shape& s);
// "[8, 128, 256]".
std::string shape_str(const Shape& s);
// Normalises a possibly negative axis against rank; throws naming `who` when out of range.
int64_t norm_axis(int64_t axis, size_t rank, const char* who);

}  // namespace hp
