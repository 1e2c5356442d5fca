// The op table: every family registers once; lookups by name are O(log n) after.
#include <algorithm>
#include <map>

#include "ops/common.hpp"

namespace hp::ir {

namespace {
const std::map<std::string, OpDef>& table() {
  static const std::map<std::string, OpDef> t = [] {
    ops::Table v;
    ops::register_elementwise(v);
    ops::register_matmul(v);
    ops::register_layout(v);
    ops::register_nn(v);
    ops::register_comm(v);
    std::map<std::string, OpDef> m;
    for (auto& d : v) {
      HP_CHECK(!m.count(d.name), "[ops] op '", d.name, "' registered twice");
      m.emplace(d.name, std::move(d));
    }
    return m;
  }();
  return t;
}
}  // namespace

const OpDef& op_def(const std::string& name) {
  auto& t = table();
  auto it = t.find(name);
  HP_CHECK(it != t.end(), "[ops] unknown op '", name, "'");
  return it->second;
}

std::vector<std::string> op_names() {
  std::vector<std::string> out;
  for (auto& [k, v] : table()) out.push_back(k);
  return out;
}

Cost node_cost(const Graph& g, const Node& n) {
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(g.value(v).type);
  for (ValueId v : n.outputs) out.push_back(g.value(v).type);
  if (n.def->cost) return n.def->cost(in, out, n.attrs);
  return ops::elementwise_cost(in, out, 0);
}

size_t node_scratch(const Graph& g, const Node& n, int threads) {
  if (!n.def->scratch) return 0;
  std::vector<TensorType> in;
  for (ValueId v : n.inputs) in.push_back(g.value(v).type);
  return n.def->scratch(in, n.attrs, threads);
}

}  // namespace hp::ir

namespace hp::ops {

void expect_arity(const Types& in, size_t n) {
  HP_CHECK(in.size() == n, "expects ", n, " inputs, got ", in.size());
}
void expect_float(const TensorType& t, const char* what) {
  HP_CHECK(is_float(t.dtype), what, " must be a float tensor, got ", ir::type_str(t));
}
void expect_rank_at_least(const TensorType& t, size_t r, const char* what) {
  HP_CHECK(t.shape.size() >= r, what, " needs rank >= ", r, ", got ", shape_str(t.shape));
}

Shape align_rank(const Shape& s, size_t r) {
  Shape out(r - s.size(), 1);
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t r = std::max(a.size(), b.size());
  Shape aa = align_rank(a, r), bb = align_rank(b, r), out(r);
  for (size_t i = 0; i < r; ++i) {
    HP_CHECK(aa[i] == bb[i] || aa[i] == 1 || bb[i] == 1, "shapes ", shape_str(a), " and ",
             shape_str(b), " do not broadcast");
    out[i] = aa[i] == 1 ? bb[i] : aa[i];  // numpy: 1 broadcasts, even against 0
  }
  return out;
}

double bytes_of(const Types& ts) {
  double b = 0;
  for (auto& t : ts) b += double(numel(t.shape)) * double(dtype_size(t.dtype));
  return b;
}

Cost elementwise_cost(const Types& in, const Types& out, double flops_per_out) {
  double n = out.empty() ? 0 : double(numel(out[0].shape));
  return Cost{n * flops_per_out, bytes_of(in) + bytes_of(out)};
}

}  // namespace hp::ops
