// Layout: how one logical tensor lies on a mesh. For each tensor dimension, the ordered mesh axes
// that split it (outermost first); the mesh axes on which each rank holds a partial value (with
// the reduce op); and the per-rank box each rank holds, with uneven splits and no padding.
// Not propagation (which layouts an op's outputs get) and not communication.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hp/comm/reduce_op.hpp"
#include "hp/core/shape.hpp"
#include "hp/shard/mesh.hpp"

namespace hp::shard {

// How partial values on a mesh axis combine into the logical value: sum, max or min (the
// communicators' ReduceOp; a layout is never partial by average).
using comm::reduce_op_name;
using comm::ReduceOp;

struct Layout {
  // dims[d]: mesh axes splitting tensor dim d, outermost first; empty: replicated along d.
  std::vector<std::vector<std::string>> dims;
  // Mesh axes on which the value is partial; kept sorted by name.
  std::vector<std::string> partial;
  ReduceOp reduce = ReduceOp::kSum;  // meaningful only when `partial` is non-empty

  // Fully replicated over a tensor of rank `rank`.
  static Layout replicated(size_t rank);
  // Parses the compact notation (see str); throws "[layout] ..." naming the offending text.
  static Layout parse(const std::string& text);

  size_t rank() const { return dims.size(); }
  bool is_replicated() const;
  // The tensor dim split by `axis`, -1 when none.
  int64_t dim_of(const std::string& axis) const;
  bool is_partial(const std::string& axis) const;
  // True when `axis` neither splits a dim nor is partial.
  bool is_unused(const std::string& axis) const { return dim_of(axis) < 0 && !is_partial(axis); }
  // Sorts `partial` and resets `reduce` to sum when nothing is partial (the canonical form).
  void normalize();
  // Throws unless every axis exists in `mesh` and appears at most once across dims and partial.
  void check(const Mesh& mesh) const;

  // Compact notation: "[dp, -]" (dim 0 split on dp, dim 1 replicated), "[(dp, tp), -]" (dim 0
  // split on dp, each piece again on tp), "[-, tp]+partial(sp)" (a partial sum over sp),
  // "+partial_max(a, b)" / "+partial_min(a)" for other reductions, "[]" for a replicated scalar.
  std::string str() const;
  bool operator==(const Layout& o) const;
};

// Offset and extent of the piece one rank holds, per tensor dimension.
struct Box {
  Shape offset;
  Shape extent;
  int64_t numel() const;
  bool contains(const Box& o) const;
  std::string str() const;  // "[0:4, 2:3]" as begin:end per dim
  bool operator==(const Box& o) const = default;
};
// Intersection of two boxes of the same rank (zero extents where they do not overlap).
Box intersect(const Box& a, const Box& b);

// Piece `index` of `n` of [0, size): size/n elements, plus one for the first size%n pieces.
// Returns {offset, extent}.
std::pair<int64_t, int64_t> split_range(int64_t size, int64_t n, int64_t index);

// Box held by the device at `position` in mesh.ranks(). Throws when the layout's rank differs from
// the shape's or the layout does not fit the mesh.
Box local_box_at(const Shape& global, const Layout& layout, const Mesh& mesh, int64_t position);
// Box held by `rank`.
Box local_box(const Shape& global, const Layout& layout, const Mesh& mesh, int rank);
// Extents of the piece `rank` holds; uneven splits give some ranks one more element per split.
Shape local_shape(const Shape& global, const Layout& layout, const Mesh& mesh, int rank);

// A rule's layout written for a parameter's stored (HF) shape, on its logical shape: a stored dim
// that the logical shape splits in several ([3D] -> [3, D]) puts its axes on the innermost part.
Layout logical_layout(const Layout& stored, const Shape& stored_shape, const Shape& logical_shape);

}  // namespace hp::shard
