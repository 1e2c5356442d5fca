// Elementwise ops: unary math, broadcasting binary arithmetic, scale, fused bias+gelu, cast.
// Not where broadcasting reductions live (layout.cpp has sum_to / broadcast_to).
#include "hp/cpu/kernels.hpp"
#include "hp/ops.hpp"
#include "ops/common.hpp"

namespace hp::ops {

namespace {

struct UnaryInfo {
  const char* name;
  cpu::Unary op;
  double flops;
  bool cheap;   // to recompute rather than keep (OpDef::cheap_to_recompute)
  bool linear;  // partial sums pass through
};
const UnaryInfo kUnary[] = {
    {"neg", cpu::Unary::kNeg, 1, true, true},       {"exp", cpu::Unary::kExp, 10, true, false},
    {"log", cpu::Unary::kLog, 10, false, false},    {"sqrt", cpu::Unary::kSqrt, 4, false, false},
    {"rsqrt", cpu::Unary::kRsqrt, 5, false, false}, {"tanh", cpu::Unary::kTanh, 12, true, false},
    {"gelu", cpu::Unary::kGelu, 16, true, false},   {"silu", cpu::Unary::kSilu, 12, true, false},
    {"relu", cpu::Unary::kRelu, 1, true, false},    {"square", cpu::Unary::kSquare, 1, true, false},
};

cpu::Unary unary_of(const std::string& name) {
  for (auto& u : kUnary)
    if (name == u.name) return u.op;
  throw Error("[unary] unknown function '" + name + "'");
}

Types same_as_first(const Types& in, const Attrs&) {
  expect_arity(in, 1);
  expect_float(in[0], "input");
  return {in[0]};
}

struct BinaryInfo {
  const char* name;
  cpu::Binary op;
  bool cheap;  // to recompute rather than keep
  Linearity linearity;
  std::vector<bool> linear_in;  // kSingle: the operands it is linear in
};
const BinaryInfo kBinary[] = {{"add", cpu::Binary::kAdd, true, Linearity::kJoint, {}},
                              {"sub", cpu::Binary::kSub, true, Linearity::kJoint, {}},
                              {"mul", cpu::Binary::kMul, true, Linearity::kSingle, {true, true}},
                              {"div", cpu::Binary::kDiv, false, Linearity::kSingle, {true, false}}};

Types infer_binary(const Types& in, const Attrs&) {
  expect_arity(in, 2);
  expect_float(in[0], "lhs");
  expect_float(in[1], "rhs");
  HP_CHECK(in[0].dtype == in[1].dtype, "dtypes differ: ", dtype_name(in[0].dtype), " vs ",
           dtype_name(in[1].dtype));
  return {{broadcast_shapes(in[0].shape, in[1].shape), in[0].dtype}};
}

std::vector<Var> vjp_binary(VjpArgs& a, const std::string& name) {
  Var a0 = a.in[0], b0 = a.in[1], dy = a.dout[0];
  if (name == "add") return {sum_to(dy, a0.shape()), sum_to(dy, b0.shape())};
  if (name == "sub") return {sum_to(dy, a0.shape()), sum_to(neg(dy), b0.shape())};
  if (name == "mul") return {sum_to(dy * b0, a0.shape()), sum_to(dy * a0, b0.shape())};
  // div: y = a / b; da = dy / b; db = -dy * y / b
  return {sum_to(dy / b0, a0.shape()), sum_to(neg(dy * a.out[0] / b0), b0.shape())};
}

}  // namespace

void register_elementwise(Table& t) {
  for (const auto& u : kUnary) {
    OpDef d;
    d.name = u.name;
    d.infer = same_as_first;
    double fl = u.flops;
    d.cost = [fl](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, fl);
    };
    std::string name = u.name;
    d.vjp = [name](VjpArgs& a) -> std::vector<Var> {
      if (name == "neg") return {neg(a.dout[0])};
      return {a.g.apply1("unary_bwd", {a.in[0], a.out[0], a.dout[0]}, {{"fn", name}})};
    };
    cpu::Unary op = u.op;
    d.sharding = "...->...";
    if (u.linear) d.linearity = Linearity::kJoint;
    d.cheap_to_recompute = u.cheap;
    d.cpu = [op](KernelArgs& k) {
      cpu::unary(k.ctx, op, k.in[0]->f32(), k.out[0]->f32(), k.out[0]->numel());
    };
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.name = "unary_bwd";  // (x, y, dy) -> dx
    d.infer = [](const Types& in, const Attrs& at) {
      expect_arity(in, 3);
      unary_of(at.s("fn"));
      HP_CHECK(in[0] == in[1] && in[0] == in[2], "x, y and dy must have the same type");
      return Types{in[0]};
    };
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 16);
    };
    d.sharding = "...,...,...->...";
    d.cpu = [](KernelArgs& k) {
      cpu::unary_bwd(k.ctx, unary_of(k.node.attrs.s("fn")), k.in[0]->f32(), k.in[1]->f32(),
                     k.in[2]->f32(), k.out[0]->f32(), k.out[0]->numel());
    };
    t.push_back(std::move(d));
  }
  for (const auto& b : kBinary) {
    OpDef d;
    d.name = b.name;
    d.infer = infer_binary;
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 1);
    };
    std::string name = b.name;
    d.vjp = [name](VjpArgs& a) { return vjp_binary(a, name); };
    d.sharding = "broadcast";
    d.linearity = b.linearity;
    d.linear_in = b.linear_in;
    d.cheap_to_recompute = b.cheap;
    cpu::Binary op = b.op;
    d.cpu = [op](KernelArgs& k) {
      const Shape& os = k.out[0]->shape();
      cpu::binary(k.ctx, op, k.in[0]->f32(), align_rank(k.in[0]->shape(), os.size()),
                  k.in[1]->f32(), align_rank(k.in[1]->shape(), os.size()), k.out[0]->f32(), os);
    };
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.name = "scale";  // x * s
    d.infer = same_as_first;
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 1);
    };
    d.vjp = [](VjpArgs& a) -> std::vector<Var> { return {scale(a.dout[0], a.node.attrs.f("s"))}; };
    d.sharding = "...->...";
    d.linearity = Linearity::kJoint;
    d.cheap_to_recompute = true;
    d.cpu = [](KernelArgs& k) {
      cpu::axpby(k.ctx, k.out[0]->numel(), float(k.node.attrs.f("s")), k.in[0]->f32(), 0.0f,
                 k.in[0]->f32(), k.out[0]->f32());
    };
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.name = "bias_gelu";  // gelu(x + bias), x [..., N], bias [N]
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
      auto g = a.g.apply("bias_gelu_bwd", {a.in[0], a.in[1], a.dout[0]});
      return std::vector<Var>{g[0], g[1]};
    };
    d.sharding = "...n,n->...n";
    d.cheap_to_recompute = true;
    d.cpu = [](KernelArgs& k) {
      int64_t cols = k.in[1]->numel();
      cpu::bias_gelu_fwd(k.ctx, k.in[0]->f32(), k.in[1]->f32(), k.out[0]->f32(),
                         k.in[0]->numel() / cols, cols);
    };
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.name = "bias_gelu_bwd";  // (x, bias, dy) -> (dx, dbias)
    d.infer = [](const Types& in, const Attrs&) {
      expect_arity(in, 3);
      return Types{in[0], in[1]};
    };
    d.cost = [](const Types& in, const Types& out, const Attrs&) {
      return elementwise_cost(in, out, 20);
    };
    d.sharding = "...n,n,...n->...n,n";
    d.scratch = [](const Types& in, const Attrs&, int) {
      const int64_t cols = numel(in[1].shape);
      return cpu::column_sums_scratch_bytes(numel(in[0].shape) / cols, cols, 1);
    };
    d.cpu = [](KernelArgs& k) {
      int64_t cols = k.in[1]->numel();
      cpu::bias_gelu_bwd(k.ctx, k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(), k.out[0]->f32(),
                         k.out[1]->f32(), k.in[0]->numel() / cols, cols);
    };
    t.push_back(std::move(d));
  }
  {
    OpDef d;
    d.name = "cast";
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
    d.cpu = [](KernelArgs& k) { k.out[0]->copy_from(*k.in[0]); };
    t.push_back(std::move(d));
  }
}

}  // namespace hp::ops

namespace hp {

Var add(Var a, Var b) {
  return a.g->apply1("add", {a, b});
}
Var sub(Var a, Var b) {
  return a.g->apply1("sub", {a, b});
}
Var mul(Var a, Var b) {
  return a.g->apply1("mul", {a, b});
}
Var div(Var a, Var b) {
  return a.g->apply1("div", {a, b});
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
  return a.g->apply1("scale", {a}, {{"s", s}});
}
Var neg(Var x) {
  return x.g->apply1("neg", {x});
}
Var exp(Var x) {
  return x.g->apply1("exp", {x});
}
Var log(Var x) {
  return x.g->apply1("log", {x});
}
Var sqrt(Var x) {
  return x.g->apply1("sqrt", {x});
}
Var rsqrt(Var x) {
  return x.g->apply1("rsqrt", {x});
}
Var tanh(Var x) {
  return x.g->apply1("tanh", {x});
}
Var gelu(Var x) {
  return x.g->apply1("gelu", {x});
}
Var silu(Var x) {
  return x.g->apply1("silu", {x});
}
Var relu(Var x) {
  return x.g->apply1("relu", {x});
}
Var square(Var x) {
  return x.g->apply1("square", {x});
}
Var bias_gelu(Var x, Var bias) {
  return x.g->apply1("bias_gelu", {x, bias});
}
Var cast(Var x, DType to) {
  return x.g->apply1("cast", {x}, {{"to", int64_t(to)}});
}

}  // namespace hp
