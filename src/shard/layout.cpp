// Layout: the compact notation, validation against a mesh, and per-rank boxes (uneven splits).
// Not redistribution: see redistribute.cpp.
#include "hp/shard/layout.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::shard {

Layout Layout::replicated(size_t rank) {
  Layout l;
  l.dims.resize(rank);
  return l;
}

bool Layout::is_replicated() const {
  if (!partial.empty()) return false;
  return std::all_of(dims.begin(), dims.end(), [](const auto& d) { return d.empty(); });
}

int64_t Layout::dim_of(const std::string& axis) const {
  for (size_t d = 0; d < dims.size(); ++d) {
    if (std::find(dims[d].begin(), dims[d].end(), axis) != dims[d].end()) return int64_t(d);
  }
  return -1;
}

bool Layout::is_partial(const std::string& axis) const {
  return std::find(partial.begin(), partial.end(), axis) != partial.end();
}

void Layout::normalize() {
  std::sort(partial.begin(), partial.end());
  if (partial.empty()) reduce = ReduceOp::kSum;
}

void Layout::check(const Mesh& mesh) const {
  std::set<std::string> seen;
  auto use = [&](const std::string& a) {
    HP_CHECK(mesh.has_axis(a), "[layout] ", str(), ": no axis '", a, "' in mesh ", mesh.str());
    HP_CHECK(seen.insert(a).second, "[layout] ", str(), ": axis '", a, "' is used twice");
  };
  for (const auto& d : dims) {
    for (const auto& a : d) use(a);
  }
  for (const auto& a : partial) use(a);
}

std::string Layout::str() const {
  std::ostringstream os;
  os << "[";
  for (size_t d = 0; d < dims.size(); ++d) {
    if (d) os << ", ";
    if (dims[d].empty()) {
      os << "-";
    } else if (dims[d].size() == 1) {
      os << dims[d][0];
    } else {
      os << "(";
      for (size_t i = 0; i < dims[d].size(); ++i) os << (i ? ", " : "") << dims[d][i];
      os << ")";
    }
  }
  os << "]";
  if (!partial.empty()) {
    std::vector<std::string> p = partial;
    std::sort(p.begin(), p.end());
    os << "+partial";
    if (reduce != ReduceOp::kSum) os << '_' << reduce_op_name(reduce);
    os << "(";
    for (size_t i = 0; i < p.size(); ++i) os << (i ? ", " : "") << p[i];
    os << ")";
  }
  return os.str();
}

bool Layout::operator==(const Layout& o) const {
  std::vector<std::string> a = partial, b = o.partial;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return dims == o.dims && a == b && (a.empty() || reduce == o.reduce);
}

namespace {

// Recursive-descent reader of the notation; whitespace is insignificant.
class Reader {
 public:
  explicit Reader(const std::string& t) : t_(t) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("[layout] '" + t_ + "' at column " + std::to_string(i_ + 1) + ": " + what);
  }
  void skip() {
    while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < t_.size() && t_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool at_end() {
    skip();
    return i_ == t_.size();
  }
  std::string name() {
    skip();
    size_t b = i_;
    while (i_ < t_.size() && (std::isalnum(static_cast<unsigned char>(t_[i_])) || t_[i_] == '_')) {
      ++i_;
    }
    if (b == i_) fail("expected an axis name");
    return t_.substr(b, i_ - b);
  }
  std::vector<std::string> names() {  // "(a, b)" after the '(' was eaten
    std::vector<std::string> out{name()};
    while (eat(',')) out.push_back(name());
    expect(')');
    return out;
  }

 private:
  const std::string& t_;
  size_t i_ = 0;
};

}  // namespace

Layout Layout::parse(const std::string& text) {
  Reader r(text);
  Layout l;
  r.expect('[');
  if (!r.eat(']')) {
    do {
      if (r.eat('-')) {
        l.dims.emplace_back();
      } else if (r.eat('(')) {
        l.dims.push_back(r.names());
      } else {
        l.dims.push_back({r.name()});
      }
    } while (r.eat(','));
    r.expect(']');
  }
  if (r.eat('+')) {
    const std::string kind = r.name();
    if (kind == "partial" || kind == "partial_sum") {
      l.reduce = ReduceOp::kSum;
    } else if (kind == "partial_max") {
      l.reduce = ReduceOp::kMax;
    } else if (kind == "partial_min") {
      l.reduce = ReduceOp::kMin;
    } else {
      r.fail("expected partial, partial_max or partial_min, got '" + kind + "'");
    }
    r.expect('(');
    l.partial = r.names();
  }
  if (!r.at_end()) r.fail("unexpected text");
  std::set<std::string> seen;
  for (const auto& d : l.dims) {
    for (const auto& a : d)
      HP_CHECK(seen.insert(a).second, "[layout] '", text, "': axis '", a, "' is used twice");
  }
  for (const auto& a : l.partial) {
    HP_CHECK(seen.insert(a).second, "[layout] '", text, "': axis '", a, "' is used twice");
  }
  l.normalize();
  return l;
}

int64_t Box::numel() const {
  return hp::numel(extent);
}

bool Box::contains(const Box& o) const {
  if (o.extent.size() != extent.size()) return false;
  if (o.numel() == 0) return true;
  for (size_t d = 0; d < extent.size(); ++d) {
    if (o.offset[d] < offset[d] || o.offset[d] + o.extent[d] > offset[d] + extent[d]) return false;
  }
  return true;
}

std::string Box::str() const {
  std::ostringstream os;
  os << "[";
  for (size_t d = 0; d < extent.size(); ++d) {
    os << (d ? ", " : "") << offset[d] << ":" << offset[d] + extent[d];
  }
  os << "]";
  return os.str();
}

Box intersect(const Box& a, const Box& b) {
  HP_CHECK(a.extent.size() == b.extent.size(), "[layout] intersecting boxes of rank ",
           a.extent.size(), " and ", b.extent.size());
  Box o{Shape(a.extent.size()), Shape(a.extent.size())};
  for (size_t d = 0; d < a.extent.size(); ++d) {
    const int64_t lo = std::max(a.offset[d], b.offset[d]);
    const int64_t hi = std::min(a.offset[d] + a.extent[d], b.offset[d] + b.extent[d]);
    o.offset[d] = lo;
    o.extent[d] = std::max<int64_t>(0, hi - lo);
  }
  return o;
}

std::pair<int64_t, int64_t> split_range(int64_t size, int64_t n, int64_t index) {
  const int64_t base = size / n, rem = size % n;
  return {index * base + std::min(index, rem), base + (index < rem ? 1 : 0)};
}

Box local_box_at(const Shape& global, const Layout& layout, const Mesh& mesh, int64_t position) {
  HP_CHECK(global.size() == layout.rank(), "[layout] ", layout.str(), " has ", layout.rank(),
           " dims but the tensor is ", shape_str(global));
  const std::vector<int64_t> c = mesh.coords_at(position);
  Box b{Shape(global.size(), 0), global};
  for (size_t d = 0; d < global.size(); ++d) {
    for (const auto& a : layout.dims[d]) {
      const size_t i = mesh.axis_index(a);
      auto [off, ext] = split_range(b.extent[d], mesh.sizes()[i], c[i]);
      b.offset[d] += off;
      b.extent[d] = ext;
    }
  }
  return b;
}

Box local_box(const Shape& global, const Layout& layout, const Mesh& mesh, int rank) {
  return local_box_at(global, layout, mesh, mesh.position(rank));
}

Shape local_shape(const Shape& global, const Layout& layout, const Mesh& mesh, int rank) {
  return local_box(global, layout, mesh, rank).extent;
}

Layout logical_layout(const Layout& stored, const Shape& ss, const Shape& ls) {
  if (ss == ls) return stored;
  Layout out;
  out.dims.resize(ls.size());
  out.partial = stored.partial;
  out.reduce = stored.reduce;
  size_t i = 0, j = 0;
  while (i < ss.size() && j < ls.size()) {
    const size_t a = i, c = j;
    int64_t pi = ss[i++], pj = ls[j++];
    while (pi != pj) {
      if (pi < pj)
        pi *= ss[i++];
      else
        pj *= ls[j++];
    }
    size_t last = c;  // innermost logical dim of the group with extent > 1
    for (size_t k = c; k < j; ++k)
      if (ls[k] > 1) last = k;
    for (size_t k = a; k < i; ++k)
      out.dims[last].insert(out.dims[last].end(), stored.dims[k].begin(), stored.dims[k].end());
  }
  out.normalize();
  return out;
}

}  // namespace hp::shard
