// matmul: batched, either operand transposed, a 2-D right operand shared across the batch.
// Not a general einsum: attention's batched products live inside the fused attention op.
#include "hp/ops/ops.hpp"
#include "ops/common.hpp"

namespace hp::ops {

namespace {

struct MatmulDims {
  int64_t batch, m, n, k;
  bool shared_b;  // b is 2-D and shared by every batch entry
};

MatmulDims dims_of(const Shape& a, const Shape& b, bool ta, bool tb) {
  HP_CHECK(a.size() >= 2 && b.size() >= 2, "operands need rank >= 2, got ", shape_str(a), " and ",
           shape_str(b));
  MatmulDims d;
  int64_t r = int64_t(a.size());
  d.m = ta ? a[size_t(r - 1)] : a[size_t(r - 2)];
  d.k = ta ? a[size_t(r - 2)] : a[size_t(r - 1)];
  int64_t kb = tb ? b[b.size() - 1] : b[b.size() - 2];
  d.n = tb ? b[b.size() - 2] : b[b.size() - 1];
  HP_CHECK(d.k == kb, "inner dims differ: ", d.k, " vs ", kb, " (", shape_str(a), " x ",
           shape_str(b), ta ? ", a transposed" : "", tb ? ", b transposed" : "", ")");
  d.batch = numel(Shape(a.begin(), a.end() - 2));
  d.shared_b = b.size() == 2;
  if (!d.shared_b) {
    HP_CHECK(b.size() == a.size() && std::equal(a.begin(), a.end() - 2, b.begin()),
             "batch dims differ: ", shape_str(a), " x ", shape_str(b));
  } else {
    HP_CHECK(!ta || a.size() == 2, "a transposed needs a batched b (a ", shape_str(a), ")");
  }
  return d;
}

}  // namespace

void register_matmul(Table& t) {
  OpDef d;
  d.id = OpId::kMatmul;
  d.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 2);
    expect_float(in[0], "a");
    expect_float(in[1], "b");
    HP_CHECK(in[0].dtype == in[1].dtype, "dtypes differ: ", dtype_name(in[0].dtype), " vs ",
             dtype_name(in[1].dtype));
    bool ta = at.i("ta", 0), tb = at.i("tb", 0);
    MatmulDims md = dims_of(in[0].shape, in[1].shape, ta, tb);
    Shape out(in[0].shape.begin(), in[0].shape.end() - 2);
    out.push_back(md.m);
    out.push_back(md.n);
    return Types{{out, in[0].dtype}};
  };
  d.cost = [](const Types& in, const Types& out, const Attrs& at) {
    MatmulDims md = dims_of(in[0].shape, in[1].shape, at.i("ta", 0), at.i("tb", 0));
    return Cost{2.0 * double(md.batch * md.m) * double(md.n) * double(md.k),
                bytes_of(in) + bytes_of(out)};
  };
  d.vjp = [](VjpArgs& a) -> std::vector<Var> {
    bool ta = a.node.attrs.i("ta", 0), tb = a.node.attrs.i("tb", 0);
    Var x = a.in[0], w = a.in[1], dy = a.dout[0];
    Var dx = ta ? matmul(w, dy, tb, true) : matmul(dy, w, false, !tb);
    Var dw;
    if (w.rank() == 2 && x.rank() > 2) {  // shared b: flatten the batch into rows
      Var x2 = reshape(x, {-1, x.dim(-1)});
      Var dy2 = reshape(dy, {-1, dy.dim(-1)});
      dw = tb ? matmul(dy2, x2, true, false) : matmul(x2, dy2, true, false);
    } else {
      dw = tb ? matmul(dy, x, true, ta) : matmul(x, dy, !ta, false);
    }
    return {dx, dw};
  };
  d.sharding = "...mk,kn->...mn";
  d.linearity = Linearity::kSingle;
  d.linear_in = {true, true};
  t.push_back(std::move(d));
}

}  // namespace hp::ops

namespace hp {
Var matmul(Var a, Var b, bool ta, bool tb) {
  return a.g->apply1(ops::op_def(ir::OpId::kMatmul), {a, b},
                     {{"ta", int64_t(ta)}, {"tb", int64_t(tb)}});
}
}  // namespace hp
