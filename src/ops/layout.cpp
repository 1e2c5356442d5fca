// Layout and reduction ops: reshape (a view), permute, slice, concat, split, reductions,
// sum_to / broadcast_to (the pair that broadcasting's VJPs are made of).
// Not strided views: every op but reshape produces a contiguous copy.
#include <cstring>
#include <numeric>

#include "hp/ops/ops.hpp"
#include "ops/common.hpp"

namespace hp::ops {

namespace {

Cost move_cost(const Types& in, const Types& out, const Attrs&) {
  return Cost{0, bytes_of(in) + bytes_of(out)};
}

// Ops whose `shape` attribute is their output's shape: on a rank, the local one.
void local_shape_attr(LocalizeCtx& x) {
  x.attrs.set("shape", x.local_out(0));
}

Shape resolve_reshape(const Shape& from, const Shape& to) {
  Shape out = to;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      HP_CHECK(infer_at < 0, "at most one -1 in ", shape_str(to));
      infer_at = int64_t(i);
    } else {
      HP_CHECK(out[i] >= 0, "bad target dim in ", shape_str(to));  // 0: an empty shard
      known *= out[i];
    }
  }
  if (infer_at >= 0) {
    HP_CHECK(known > 0 && numel(from) % known == 0, "cannot reshape ", shape_str(from), " to ",
             shape_str(to));
    out[size_t(infer_at)] = numel(from) / known;
  }
  HP_CHECK(numel(out) == numel(from), "cannot reshape ", shape_str(from), " (", numel(from),
           " elements) to ", shape_str(to));
  return out;
}

// Shape with reduced dims set to 1, and the mask of reduced dims.
std::vector<bool> reduce_mask(const Shape& s, const std::vector<int64_t>& axes) {
  std::vector<bool> m(s.size(), axes.empty());
  for (int64_t a : axes) m[size_t(norm_axis(a, s.size(), "reduce"))] = true;
  return m;
}

Shape reduced_shape(const Shape& s, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!mask[i])
      out.push_back(s[i]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

Shape keep_shape(const Shape& s, const std::vector<bool>& mask) {
  return reduced_shape(s, mask, true);
}

void add_reduce(Table& t) {
  OpDef d;
  d.id = OpId::kReduce;  // attrs: op ("sum", "mean", "max"), axes, keepdim
  d.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    expect_float(in[0], "input");
    const std::string& op = at.s("op");
    HP_CHECK(op == "sum" || op == "mean" || op == "max", "unknown reduction '", op, "'");
    auto m = reduce_mask(in[0].shape, at.ints("axes"));
    return Types{{reduced_shape(in[0].shape, m, at.i("keepdim")), in[0].dtype}};
  };
  d.cost = [](const Types& in, const Types& out, const Attrs&) {
    return Cost{double(numel(in[0].shape)), bytes_of(in) + bytes_of(out)};
  };
  d.vjp = [](VjpArgs& a) -> std::vector<Var> {
    const Shape xs = a.in[0].shape();  // a copy: the ops below grow the graph
    auto m = reduce_mask(xs, a.node.attrs.ints("axes"));
    Var dy = reshape(a.dout[0], keep_shape(xs, m));
    const std::string& op = a.node.attrs.s("op");
    if (op == "sum") return {broadcast_to(dy, xs)};
    if (op == "mean") {
      double n = double(numel(xs)) / double(std::max<int64_t>(1, numel(dy.shape())));
      return {a.g.apply1(op_def(OpId::kBroadcastTo), {dy}, {{"shape", xs}, {"scale", 1.0 / n}})};
    }
    Var y = reshape(a.out[0], keep_shape(xs, m));
    return {
        a.g.apply1(op_def(OpId::kMaxBwd), {a.in[0], broadcast_to(y, xs), broadcast_to(dy, xs)})};
  };
  d.sharding = "reduce";
  t.push_back(std::move(d));

  OpDef mb;
  mb.id = OpId::kMaxBwd;  // (x, max broadcast, dy broadcast) -> dy where x == max
  mb.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 3);
    HP_CHECK(in[0] == in[1] && in[0] == in[2], "operands must have the same type");
    return Types{in[0]};
  };
  mb.sharding = "...,...,...->...";
  t.push_back(std::move(mb));
}

void add_broadcasting(Table& t) {
  OpDef s;
  s.id = OpId::kSumTo;  // attrs: shape
  s.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    const Shape& to = at.ints("shape");
    HP_CHECK(to.size() <= in[0].shape.size() && broadcast_shapes(to, in[0].shape) == in[0].shape,
             shape_str(in[0].shape), " does not reduce to ", shape_str(to));
    return Types{{to, in[0].dtype}};
  };
  s.cost = [](const Types& in, const Types& out, const Attrs&) {
    return Cost{double(numel(in[0].shape)), bytes_of(in) + bytes_of(out)};
  };
  s.vjp = [](VjpArgs& a) -> std::vector<Var> { return {broadcast_to(a.dout[0], a.in[0].shape())}; };
  s.sharding = "sum_to";
  s.linearity = Linearity::kJoint;
  s.localize = local_shape_attr;
  t.push_back(std::move(s));

  OpDef b;
  b.id = OpId::kBroadcastTo;  // attrs: shape, scale (default 1)
  b.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    const Shape& to = at.ints("shape");
    HP_CHECK(in[0].shape.size() <= to.size() && broadcast_shapes(in[0].shape, to) == to,
             shape_str(in[0].shape), " does not broadcast to ", shape_str(to));
    return Types{{to, in[0].dtype}};
  };
  b.cost = move_cost;
  b.vjp = [](VjpArgs& a) -> std::vector<Var> {
    Var g = sum_to(a.dout[0], a.in[0].shape());
    double sc = a.node.attrs.f("scale", 1.0);
    return {sc == 1.0 ? g : scale(g, sc)};
  };
  b.sharding = "broadcast_to";
  b.linearity = Linearity::kJoint;
  b.localize = local_shape_attr;
  t.push_back(std::move(b));
}

// full, and the ops that only rearrange: reshape (a view), permute.
void add_shape_ops(Table& t) {
  OpDef f;
  f.id = OpId::kFull;  // () -> constant; attrs: shape, value, dtype
  f.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 0);
    return Types{{at.ints("shape"), DType(at.i("dtype", int64_t(DType::kF32)))}};
  };
  f.cost = move_cost;
  f.sharding = "->";
  f.localize = local_shape_attr;
  t.push_back(std::move(f));

  OpDef r;
  r.id = OpId::kReshape;  // attrs: shape (resolved, no -1)
  r.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    return Types{{resolve_reshape(in[0].shape, at.ints("shape")), in[0].dtype}};
  };
  r.cost = [](const Types&, const Types&, const Attrs&) { return Cost{}; };
  r.vjp = [](VjpArgs& a) -> std::vector<Var> { return {reshape(a.dout[0], a.in[0].shape())}; };
  r.sharding = "reshape";
  r.linearity = Linearity::kJoint;
  r.keeps_placement = true;
  r.localize = local_shape_attr;
  r.view = true;
  t.push_back(std::move(r));

  OpDef p;
  p.id = OpId::kPermute;  // attrs: perm
  p.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    const auto& perm = at.ints("perm");
    const Shape& s = in[0].shape;
    HP_CHECK(perm.size() == s.size(), "perm ", shape_str(perm), " for rank ", s.size());
    std::vector<bool> seen(s.size(), false);
    Shape out;
    for (int64_t q : perm) {
      HP_CHECK(q >= 0 && size_t(q) < s.size() && !seen[size_t(q)], "bad perm ", shape_str(perm));
      seen[size_t(q)] = true;
      out.push_back(s[size_t(q)]);
    }
    return Types{{out, in[0].dtype}};
  };
  p.cost = move_cost;
  p.vjp = [](VjpArgs& a) -> std::vector<Var> {
    const auto& perm = a.node.attrs.ints("perm");
    std::vector<int64_t> inv(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inv[size_t(perm[i])] = int64_t(i);
    return {permute(a.dout[0], inv)};
  };
  p.sharding = "permute";
  p.linearity = Linearity::kJoint;
  p.keeps_placement = true;
  t.push_back(std::move(p));
}

// Pieces and their inverse: slice / slice_bwd, split / concat.
void add_slicing_ops(Table& t) {
  OpDef s;
  s.id = OpId::kSlice;  // attrs: axis, start, end
  s.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    Shape sh = in[0].shape;
    int64_t ax = norm_axis(at.i("axis"), sh.size(), "slice");
    int64_t st = at.i("start"), en = at.i("end");
    HP_CHECK(0 <= st && st < en && en <= sh[size_t(ax)], "range [", st, ", ", en,
             ") out of bounds for dim ", ax, " of ", shape_str(sh));
    sh[size_t(ax)] = en - st;
    return Types{{sh, in[0].dtype}};
  };
  s.cost = move_cost;
  s.vjp = [](VjpArgs& a) -> std::vector<Var> {
    Attrs at = a.node.attrs;
    at.set("shape", a.in[0].shape());
    return {a.g.apply1(op_def(OpId::kSliceBwd), {a.dout[0]}, at)};
  };
  s.sharding = "slice";
  s.linearity = Linearity::kJoint;
  s.keeps_placement = true;
  t.push_back(std::move(s));

  OpDef sb;
  sb.id = OpId::kSliceBwd;  // dy -> zeros(shape) with dy placed at [start, end) on axis
  sb.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    return Types{{at.ints("shape"), in[0].dtype}};
  };
  sb.cost = move_cost;
  sb.vjp = [](VjpArgs& a) -> std::vector<Var> {
    const Attrs& at = a.node.attrs;
    return {slice(a.dout[0], at.i("axis"), at.i("start"), at.i("end"))};
  };
  sb.sharding = "slice";
  sb.linearity = Linearity::kJoint;
  sb.localize = local_shape_attr;
  t.push_back(std::move(sb));

  OpDef sp;
  sp.id = OpId::kSplit;  // x -> pieces along `axis` with `sizes` (its VJP is one concat)
  sp.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    const Shape& s = in[0].shape;
    int64_t ax = norm_axis(at.i("axis"), s.size(), "split"), total = 0;
    Types out;
    for (int64_t n : at.ints("sizes")) {
      HP_CHECK(n > 0, "piece sizes must be positive, got ", shape_str(at.ints("sizes")));
      Shape p = s;
      p[size_t(ax)] = n;
      out.push_back({p, in[0].dtype});
      total += n;
    }
    HP_CHECK(total == s[size_t(ax)], "sizes ", shape_str(at.ints("sizes")), " sum to ", total,
             " but dim ", ax, " is ", s[size_t(ax)]);
    return out;
  };
  sp.cost = move_cost;
  sp.vjp = [](VjpArgs& a) -> std::vector<Var> {
    std::vector<Var> parts;
    for (size_t k = 0; k < a.out.size(); ++k) {
      Var d = a.dout[k];
      if (!d.defined()) {
        d = a.g.apply1(
            op_def(OpId::kFull), {},
            {{"shape", a.out[k].shape()}, {"value", 0.0}, {"dtype", int64_t(a.out[k].dtype())}});
      }
      parts.push_back(d);
    }
    return {concat(parts, a.node.attrs.i("axis"))};
  };
  sp.sharding = "split";
  sp.linearity = Linearity::kJoint;
  sp.keeps_placement = true;
  t.push_back(std::move(sp));

  OpDef c;
  c.id = OpId::kConcat;  // attrs: axis
  c.infer = [](const Types& in, const Attrs& at) {
    HP_CHECK(!in.empty(), "needs at least one input");
    Shape out = in[0].shape;
    int64_t ax = norm_axis(at.i("axis"), out.size(), "concat");
    out[size_t(ax)] = 0;
    for (auto& t : in) {
      HP_CHECK(t.shape.size() == out.size() && t.dtype == in[0].dtype,
               "inputs differ in rank or dtype");
      for (size_t i = 0; i < out.size(); ++i)
        HP_CHECK(int64_t(i) == ax || t.shape[i] == in[0].shape[i], "inputs differ off axis ", ax,
                 ": ", shape_str(t.shape), " vs ", shape_str(in[0].shape));
      out[size_t(ax)] += t.shape[size_t(ax)];
    }
    return Types{{out, in[0].dtype}};
  };
  c.cost = move_cost;
  c.vjp = [](VjpArgs& a) {
    int64_t ax = a.node.attrs.i("axis"), off = 0;
    std::vector<Var> g;
    for (Var x : a.in) {
      int64_t n = x.dim(ax);
      g.push_back(slice(a.dout[0], ax, off, off + n));
      off += n;
    }
    return g;
  };
  c.sharding = "concat";
  c.linearity = Linearity::kJoint;
  t.push_back(std::move(c));
}

}  // namespace

void register_layout(Table& t) {
  add_reduce(t);
  add_broadcasting(t);
  add_shape_ops(t);
  add_slicing_ops(t);
}

}  // namespace hp::ops

namespace hp {

Var reshape(Var x, Shape shape) {
  Shape to;
  try {  // resolved here, before any node exists: name the op as Graph::apply would
    to = ops::resolve_reshape(x.shape(), shape);
  } catch (const Error& e) {
    throw Error(std::string("[reshape] ") + e.what() + " (inputs: " + ir::type_str(x.type()) + ")");
  }
  if (to == x.shape()) return x;
  return x.g->apply1(ops::op_def(ir::OpId::kReshape), {x}, {{"shape", to}});
}
Var permute(Var x, std::vector<int64_t> perm) {
  return x.g->apply1(ops::op_def(ir::OpId::kPermute), {x}, {{"perm", std::move(perm)}});
}
Var transpose(Var x, int64_t a, int64_t b) {
  std::vector<int64_t> perm(x.rank());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[size_t(norm_axis(a, x.rank(), "transpose"))],
            perm[size_t(norm_axis(b, x.rank(), "transpose"))]);
  return permute(x, perm);
}
Var slice(Var x, int64_t axis, int64_t start, int64_t end) {
  return x.g->apply1(ops::op_def(ir::OpId::kSlice), {x},
                     {{"axis", axis}, {"start", start}, {"end", end}});
}
Var concat(const std::vector<Var>& xs, int64_t axis) {
  HP_CHECK(!xs.empty(), "[concat] needs at least one input");
  return xs[0].g->apply1(ops::op_def(ir::OpId::kConcat), xs, {{"axis", axis}});
}
std::vector<Var> split(Var x, int64_t axis, const std::vector<int64_t>& sizes) {
  return x.g->apply(ops::op_def(ir::OpId::kSplit), {x}, {{"axis", axis}, {"sizes", sizes}});
}
static Var reduce(Var x, const char* op, std::vector<int64_t> axes, bool keepdim) {
  return x.g->apply1(
      ops::op_def(ir::OpId::kReduce), {x},
      {{"op", std::string(op)}, {"axes", std::move(axes)}, {"keepdim", int64_t(keepdim)}});
}
Var sum(Var x, std::vector<int64_t> axes, bool keepdim) {
  return reduce(x, "sum", axes, keepdim);
}
Var mean(Var x, std::vector<int64_t> axes, bool keepdim) {
  return reduce(x, "mean", axes, keepdim);
}
Var max(Var x, std::vector<int64_t> axes, bool keepdim) {
  return reduce(x, "max", axes, keepdim);
}
Var sum_to(Var x, Shape shape) {
  if (x.shape() == shape) return x;
  return x.g->apply1(ops::op_def(ir::OpId::kSumTo), {x}, {{"shape", std::move(shape)}});
}
Var broadcast_to(Var x, Shape shape) {
  if (x.shape() == shape) return x;
  return x.g->apply1(ops::op_def(ir::OpId::kBroadcastTo), {x}, {{"shape", std::move(shape)}});
}

}  // namespace hp
