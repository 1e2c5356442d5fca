// Mesh: named axes with sizes laid row-major over an explicit list of ranks, sub-meshes, and the
// groups of ranks that talk along an axis.
// Not a communicator and not a topology: it says who is where, not how fast they can talk.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hp::shard {

class Mesh {
 public:
  // One device, no axes, rank 0.
  Mesh();
  // Axes (outermost first) with sizes ≥ 1 over `ranks` in row-major order; empty `ranks` means
  // 0..N-1. Throws on duplicate or empty names, sizes < 1, or a rank list of the wrong length.
  Mesh(std::vector<std::string> axis_names, std::vector<int64_t> sizes,
       std::vector<int> ranks = {});

  size_t ndim() const { return names_.size(); }
  const std::vector<std::string>& axis_names() const { return names_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  // Number of devices (product of the sizes).
  int64_t size() const { return int64_t(ranks_.size()); }
  // Ranks in row-major order of coordinates; position i holds coords(i) = unravel(i).
  const std::vector<int>& ranks() const { return ranks_; }

  bool has_axis(const std::string& axis) const;
  // Index of a named axis; throws "[mesh] no axis 'x' in {dp: 2, tp: 2}".
  size_t axis_index(const std::string& axis) const;
  int64_t axis_size(const std::string& axis) const { return sizes_[axis_index(axis)]; }

  bool contains(int rank) const;
  // Index of `rank` in ranks(); throws when the rank is not in the mesh.
  int64_t position(int rank) const;
  // Coordinates (one per axis) of the device at a position.
  std::vector<int64_t> coords_at(int64_t position) const;
  std::vector<int64_t> coords(int rank) const { return coords_at(position(rank)); }
  int64_t position_at(const std::vector<int64_t>& coords) const;
  int rank_at(const std::vector<int64_t>& coords) const {
    return ranks_[size_t(position_at(coords))];
  }

  // Ranks that differ from `rank` only along `axis`, ordered by their coordinate on it.
  std::vector<int> group(int rank, const std::string& axis) const;
  // Ranks that differ from `rank` only along `axes`, row-major over `axes` in the order given.
  std::vector<int> group(int rank, const std::vector<std::string>& axes) const;
  // Positions (not ranks) of the group along `axis` through the device at `position`.
  std::vector<int64_t> group_positions(int64_t position, const std::string& axis) const;

  // The devices whose coordinate on `axis` lies in [begin, end); same axes, that axis shrunk.
  Mesh slice(const std::string& axis, int64_t begin, int64_t end) const;
  // The devices whose coordinate on `axis` is `index`; that axis removed.
  Mesh fix(const std::string& axis, int64_t index) const;
  // The sub-mesh through `rank` spanning `keep` (in mesh order); the other axes fixed at rank's
  // coordinates.
  Mesh sub_mesh(int rank, const std::vector<std::string>& keep) const;

  // "{dp: 2, tp: 2}", followed by " ranks [4, 5, 6, 7]" when the ranks are not 0..N-1.
  std::string str() const;
  bool operator==(const Mesh& o) const = default;

 private:
  std::vector<std::string> names_;
  std::vector<int64_t> sizes_;
  std::vector<int> ranks_;
  std::vector<int64_t> strides_;  // row-major strides of the coordinate grid
};

}  // namespace hp::shard
