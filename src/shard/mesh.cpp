// Mesh: coordinates, groups along axes and sub-meshes over an explicit rank list.
// Not a topology: which links the groups use is topology.cpp's question.
#include "hp/shard/mesh.hpp"

#include <algorithm>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::shard {

Mesh::Mesh() : ranks_{0} {}

Mesh::Mesh(std::vector<std::string> axis_names, std::vector<int64_t> sizes, std::vector<int> ranks)
    : names_(std::move(axis_names)), sizes_(std::move(sizes)), ranks_(std::move(ranks)) {
  HP_CHECK(names_.size() == sizes_.size(), "[mesh] ", names_.size(), " axis names but ",
           sizes_.size(), " sizes");
  int64_t n = 1;
  for (size_t i = 0; i < names_.size(); ++i) {
    HP_CHECK(!names_[i].empty(), "[mesh] axis ", i, " has an empty name");
    HP_CHECK(sizes_[i] >= 1, "[mesh] axis '", names_[i], "' has size ", sizes_[i]);
    for (size_t j = 0; j < i; ++j) {
      HP_CHECK(names_[j] != names_[i], "[mesh] axis '", names_[i], "' appears twice");
    }
    n *= sizes_[i];
  }
  if (ranks_.empty()) {
    for (int64_t r = 0; r < n; ++r) ranks_.push_back(int(r));
  }
  HP_CHECK(int64_t(ranks_.size()) == n, "[mesh] ", str(), " needs ", n, " ranks, got ",
           ranks_.size());
  std::vector<int> sorted = ranks_;
  std::sort(sorted.begin(), sorted.end());
  HP_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "[mesh] ", str(),
           ": a rank appears twice");
  strides_.assign(names_.size(), 1);
  for (size_t i = names_.size(); i-- > 1;) strides_[i - 1] = strides_[i] * sizes_[i];
}

bool Mesh::has_axis(const std::string& axis) const {
  return std::find(names_.begin(), names_.end(), axis) != names_.end();
}

size_t Mesh::axis_index(const std::string& axis) const {
  auto it = std::find(names_.begin(), names_.end(), axis);
  HP_CHECK(it != names_.end(), "[mesh] no axis '", axis, "' in ", str());
  return size_t(it - names_.begin());
}

bool Mesh::contains(int rank) const {
  return std::find(ranks_.begin(), ranks_.end(), rank) != ranks_.end();
}

int64_t Mesh::position(int rank) const {
  auto it = std::find(ranks_.begin(), ranks_.end(), rank);
  HP_CHECK(it != ranks_.end(), "[mesh] rank ", rank, " is not in ", str());
  return int64_t(it - ranks_.begin());
}

std::vector<int64_t> Mesh::coords_at(int64_t position) const {
  HP_CHECK(position >= 0 && position < size(), "[mesh] position ", position, " out of range for ",
           str());
  std::vector<int64_t> c(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) c[i] = (position / strides_[i]) % sizes_[i];
  return c;
}

int64_t Mesh::position_at(const std::vector<int64_t>& coords) const {
  HP_CHECK(coords.size() == names_.size(), "[mesh] ", coords.size(), " coordinates for ", str());
  int64_t p = 0;
  for (size_t i = 0; i < names_.size(); ++i) {
    HP_CHECK(coords[i] >= 0 && coords[i] < sizes_[i], "[mesh] coordinate ", coords[i],
             " out of range on axis '", names_[i], "' of size ", sizes_[i]);
    p += coords[i] * strides_[i];
  }
  return p;
}

std::vector<int64_t> Mesh::group_positions(int64_t position, const std::string& axis) const {
  const size_t a = axis_index(axis);
  std::vector<int64_t> c = coords_at(position);
  const int64_t base = position - c[a] * strides_[a];
  std::vector<int64_t> out(static_cast<size_t>(sizes_[a]));
  for (int64_t k = 0; k < sizes_[a]; ++k) out[size_t(k)] = base + k * strides_[a];
  return out;
}

std::vector<int> Mesh::group(int rank, const std::string& axis) const {
  std::vector<int> out;
  for (int64_t p : group_positions(position(rank), axis)) out.push_back(ranks_[size_t(p)]);
  return out;
}

std::vector<int> Mesh::group(int rank, const std::vector<std::string>& axes) const {
  std::vector<size_t> idx;
  for (const auto& a : axes) {
    idx.push_back(axis_index(a));
    for (size_t j = 0; j + 1 < idx.size(); ++j) {
      HP_CHECK(idx[j] != idx.back(), "[mesh] axis '", a, "' listed twice in a group");
    }
  }
  std::vector<int64_t> c = coords(rank);
  int64_t count = 1;
  for (size_t i : idx) count *= sizes_[i];
  std::vector<int> out;
  for (int64_t k = 0; k < count; ++k) {
    int64_t rem = k;
    for (size_t j = idx.size(); j-- > 0;) {
      c[idx[j]] = rem % sizes_[idx[j]];
      rem /= sizes_[idx[j]];
    }
    out.push_back(rank_at(c));
  }
  return out;
}

Mesh Mesh::slice(const std::string& axis, int64_t begin, int64_t end) const {
  const size_t a = axis_index(axis);
  HP_CHECK(0 <= begin && begin < end && end <= sizes_[a], "[mesh] slice [", begin, ", ", end,
           ") of axis '", axis, "' of size ", sizes_[a]);
  std::vector<int> r;
  for (int64_t p = 0; p < size(); ++p) {
    const int64_t c = coords_at(p)[a];
    if (c >= begin && c < end) r.push_back(ranks_[size_t(p)]);
  }
  std::vector<int64_t> s = sizes_;
  s[a] = end - begin;
  return Mesh(names_, s, r);
}

Mesh Mesh::fix(const std::string& axis, int64_t index) const {
  const size_t a = axis_index(axis);
  HP_CHECK(0 <= index && index < sizes_[a], "[mesh] index ", index, " out of range on axis '", axis,
           "' of size ", sizes_[a]);
  std::vector<int> r;
  for (int64_t p = 0; p < size(); ++p) {
    if (coords_at(p)[a] == index) r.push_back(ranks_[size_t(p)]);
  }
  std::vector<std::string> n = names_;
  std::vector<int64_t> s = sizes_;
  n.erase(n.begin() + int64_t(a));
  s.erase(s.begin() + int64_t(a));
  return Mesh(n, s, r);
}

Mesh Mesh::sub_mesh(int rank, const std::vector<std::string>& keep) const {
  for (const auto& k : keep) axis_index(k);  // throws on unknown axes
  const std::vector<int64_t> c = coords(rank);
  Mesh m = *this;
  for (size_t i = 0; i < names_.size(); ++i) {
    if (std::find(keep.begin(), keep.end(), names_[i]) == keep.end()) m = m.fix(names_[i], c[i]);
  }
  return m;
}

std::string Mesh::str() const {
  std::ostringstream os;
  os << "{";
  for (size_t i = 0; i < names_.size(); ++i)
    os << (i ? ", " : "") << names_[i] << ": " << sizes_[i];
  os << "}";
  bool identity = true;
  for (size_t i = 0; i < ranks_.size(); ++i) identity = identity && ranks_[i] == int(i);
  if (!identity) {
    os << " ranks [";
    for (size_t i = 0; i < ranks_.size(); ++i) os << (i ? ", " : "") << ranks_[i];
    os << "]";
  }
  return os.str();
}

}  // namespace hp::shard
