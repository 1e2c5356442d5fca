// Elementwise ops: unary math, broadcasting binary arithmetic, scale, fused bias+gelu, cast.
// Not where broadcasting reductions live (layout.cpp has sum_to / broadcast_to).
#include "hp/ops/ops.hpp"
#include "ops/common.hpp"

namespace hp::ops {

namespace {

struct UnaryInfo {
  OpId id;
  double flops;
  bool cheap;   // to recompute rather than keep (OpDef::cheap_to_recompute)
  bool linear;  // partial sums pass through
};
const UnaryInfo kUnary[] = {
    {OpId::kNeg, 1, true, true},     {OpId::kExp, 10, true, false},
    {OpId::kLog, 10, false, false},  {OpId::kSqrt, 4, false, false},
    {OpId::kRsqrt, 5, false, false}, {OpId::kTanh, 12, true, false},
    {OpId::kGelu, 16, true, false},  {OpId::kSilu, 12, true, false},
    {OpId::kRelu, 1, true, false},   {OpId::kSquare, 1, true, false},
};

// unary_bwd's `fn`: the name of a unary op.
void expect_unary(const std::string& fn) {
  for (auto& u : kUnary)
    if (fn == ir::op_name(u.id)) return;
  throw Error("[unary] unknown function '" + fn + "'");
}

Types same_as_first(const Types& in, const Attrs&) {
  expect_arity(in, 1);
  expect_float(in[0], "input");
  return {in[0]};
}

struct BinaryInfo {
  OpId id;
  bool cheap;  // to recompute rather than keep
  Linearity linearity;
  std::vector<bool> linear_in;  // kSingle: the operands it is linear in
};
const BinaryInfo kBinary[] = {{OpId::kAdd, true, Linearity::kJoint, {}},
                              {OpId::kSub, true, Linearity::kJoint, {}},
                              {OpId::kMul, true, Linearity::kSingle, {true, true}},
                              {OpId::kDiv, false, Linearity::kSingle, {true, false}}};

Types infer_binary(const Types& in, const Attrs&) {
  expect_arity(in, 2);
  expect_float(in[0], "lhs");
  expect_float(in[1], "rhs");
  HP_CHECK(in[0].dtype == in[1].dtype, "dtypes differ: ", dtype_name(in[0].dtype), " vs ",
           dtype_name(in[1].dtype));
  return {{broadcast_shapes(in[0].shape, in[1].shape), in[0].dtype}};
}

std::vector<Var> vjp_binary(VjpArgs& a, OpId op) {
  Var a0 = a.in[0], b0 = a.in[1], dy = a.dout[0];
  if (op == OpId::kAdd) return {sum_to(dy, a0.shape()), sum_to(dy, b0.shape())};
  if (op == OpId::kSub) return {sum_to(dy, a0.shape()), sum_to(neg(dy), b0.shape())};
  if (op == OpId::kMul) return {sum_to(dy * b0, a0.shape()), sum_to(dy * a0, b0.shape())};
  // div: y = a / b; da = dy / b; db = -dy * y / b
  return {sum_to(dy / b0, a0.shape()), sum_to(neg(dy * a.out[0] / b0), b0.shape())};
}

}  // namespace

void register_elementwise(Table& t) {
  for (const auto& u : kUnary) {
    OpDef d;
    d.id = u.id;
    d.infer = same_as_first;
    double fl = u.flops;
    d.cost = [fl](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, fl);
    };
    const OpId id = u.id;
    d.vjp = [id](VjpArgs& a) -> std::vector<Var> {
      if (id == OpId::kNeg) return {neg(a.dout[0])};
      const std::string& name = ir::op_name(id);
      return {a.g.apply1(op_def(OpId::kUnaryBwd), {a.in[0], a.out[0], a.dout[0]}, {{"fn", name}})};
    };
    d.sharding = "...->...";
    if (u.linear) d.linearity = Linearity::kJoint;
    d.cheap_to_recompute = u.cheap;
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.id = OpId::kUnaryBwd;  // (x, y, dy) -> dx
    d.infer = [](const Types& in, const Attrs& at) {
      expect_arity(in, 3);
      expect_unary(at.s("fn"));
      HP_CHECK(in[0] == in[1] && in[0] == in[2], "x, y and dy must have the same type");
      return Types{in[0]};
    };
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 16);
    };
    d.sharding = "...,...,...->...";
    t.push_back(std::move(d));
  }
  for (const auto& b : kBinary) {
    OpDef d;
    d.id = b.id;
    d.infer = infer_binary;
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 1);
    };
    const OpId id = b.id;
    d.vjp = [id](VjpArgs& a) { return vjp_binary(a, id); };
    d.sharding = "broadcast";
    d.linearity = b.linearity;
    d.linear_in = b.linear_in;
    d.cheap_to_recompute = b.cheap;
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.id = OpId::kScale;  // x * s
    d.infer = same_as_first;
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 1);
    };
    d.vjp = [](VjpArgs& a) -> std::vector<Var> { return {scale(a.dout[0], a.node.attrs.f("s"))}; };
    d.sharding = "...->...";
    d.linearity = Linearity::kJoint;
    d.cheap_to_recompute = true;
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.id = OpId::kBiasGelu;  // gelu(x + bias), x [..., N], bias [N]
    d.infer = [](const Types& in, const Attrs&) {
      expect_arity(in, 2);
      expect_float(in[0], "x");
      expect_rank_at_least(in[0], 1, "x");
      HP_CHECK(in[1].shape.size() == 1 && in[1].shape[0] == in[0].shape.back(), "bias must be [",
               in[0].shape.back(), "], got ", shape_str(in[1].shape));
      return Types{in[0]};
    };
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 17);
    };
    d.vjp = [](VjpArgs& a) {
      auto g = a.g.apply(op_def(OpId::kBiasGeluBwd), {a.in[0], a.in[1], a.dout[0]});
      return std::vector<Var>{g[0], g[1]};
    };
    d.sharding = "...n,n->...n";
    d.cheap_to_recompute = true;
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.id = OpId::kBiasGeluBwd;  // (x, bias, dy) -> (dx, dbias)
    d.infer = [](const Types& in, const Attrs&) {
      expect_arity(in, 3);
      return Types{in[0], in[1]};
    };
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 20);
    };
    d.sharding = "...n,n,...n->...n,n";
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.id = OpId::kCast;
    d.infer = [](const Types& in, const Attrs& at) {
      expect_arity(in, 1);
      return Types{{in[0].shape, DType(at.i("to"))}};
    };
    d.vjp = [](VjpArgs& a) -> std::vector<Var> {
      if (!is_float(a.in[0].dtype())) return {Var{}};
      return {cast(a.dout[0], a.in[0].dtype())};
    };
    d.sharding = "...->...";
    d.linearity = Linearity::kJoint;
    d.cheap_to_recompute = true;
    t.push_back(std::move(d));
  }
}

}  // namespace hp::ops

namespace hp {

Var add(Var a, Var b) {
  return a.g->apply1(ops::op_def(ir::OpId::kAdd), {a, b});
}
Var sub(Var a, Var b) {
  return a.g->apply1(ops::op_def(ir::OpId::kSub), {a, b});
}
Var mul(Var a, Var b) {
  return a.g->apply1(ops::op_def(ir::OpId::kMul), {a, b});
}
Var div(Var a, Var b) {
  return a.g->apply1(ops::op_def(ir::OpId::kDiv), {a, b});
}
Var operator+(Var a, Var b) {
  return add(a, b);
}
Var operator-(Var a, Var b) {
  return sub(a, b);
}
Var operator*(Var a, Var b) {
  return mul(a, b);
}
Var operator/(Var a, Var b) {
  return div(a, b);
}
Var operator-(Var a) {
  return neg(a);
}
Var operator*(Var a, double s) {
  return scale(a, s);
}
Var operator*(double s, Var a) {
  return scale(a, s);
}
Var scale(Var a, double s) {
  return a.g->apply1(ops::op_def(ir::OpId::kScale), {a}, {{"s", s}});
}
Var neg(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kNeg), {x});
}
Var exp(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kExp), {x});
}
Var log(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kLog), {x});
}
Var sqrt(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kSqrt), {x});
}
Var rsqrt(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kRsqrt), {x});
}
Var tanh(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kTanh), {x});
}
Var gelu(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kGelu), {x});
}
Var silu(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kSilu), {x});
}
Var relu(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kRelu), {x});
}
Var square(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kSquare), {x});
}
Var bias_gelu(Var x, Var bias) {
  return x.g->apply1(ops::op_def(ir::OpId::kBiasGelu), {x, bias});
}
Var cast(Var x, DType to) {
  return x.g->apply1(ops::op_def(ir::OpId::kCast), {x}, {{"to", int64_t(to)}});
}

}  // namespace hp
