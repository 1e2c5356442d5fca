// The op table: every family registers once; a lookup by id indexes an array.
#include "hp/ops/registry.hpp"

#include <algorithm>
#include <array>

#include "ops/common.hpp"

namespace hp::ops {

namespace {
using Records = std::array<OpDef, ir::kOpCount>;
const Records& table() {
  static const Records t = [] {
    Table v;
    register_elementwise(v);
    register_matmul(v);
    register_layout(v);
    register_nn(v);
    register_kv_cache(v);
    register_comm(v);
    Records r;
    std::array<bool, ir::kOpCount> seen{};
    for (auto& d : v) {
      const size_t i = size_t(d.id);
      HP_CHECK(!seen[i], "[ops] op '", ir::op_name(d.id), "' registered twice");
      seen[i] = true;
      d.name = ir::op_name(d.id);
      r[i] = std::move(d);
    }
    for (size_t i = 0; i < seen.size(); ++i)
      HP_CHECK(seen[i], "[ops] op '", ir::op_name(OpId(i)), "' has no record");
    return r;
  }();
  return t;
}
}  // namespace

const OpDef& op_def(OpId id) {
  return table().at(size_t(id));
}

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
