// Neural-network ops: softmax, layer/RMS norm, embedding, fused cross-entropy (and the halves of
// its vocabulary-parallel form), rotary embedding and fused causal attention, each with its
// backward op (used by the VJPs).
// Not composites: each is one kernel call, saving what its backward needs as extra outputs.
#include "hp/ops/ops.hpp"
#include "ops/common.hpp"

namespace hp::ops {

namespace {

TensorType rows_type(const Shape& s) {
  return {Shape(s.begin(), s.end() - 1), DType::kF32};
}

void add_softmax(Table& t) {
  OpDef d;
  d.id = OpId::kSoftmax;
  d.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 1);
    expect_float(in[0], "x");
    expect_rank_at_least(in[0], 1, "x");
    return Types{in[0]};
  };
  d.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 14);
  };
  d.vjp = [](VjpArgs& a) -> std::vector<Var> {
    return {a.g.apply1(op_def(OpId::kSoftmaxBwd), {a.out[0], a.dout[0]})};
  };
  d.sharding = "...N->...N";
  t.push_back(std::move(d));

  OpDef b;
  b.id = OpId::kSoftmaxBwd;  // (y, dy) -> dx
  b.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 2);
    return Types{in[0]};
  };
  b.sharding = "...N,...N->...N";
  t.push_back(std::move(b));
}

void add_norms(Table& t) {
  OpDef ln;
  ln.id = OpId::kLayerNorm;  // (x, gamma, beta) -> (y, mean, rstd); attrs: eps
  ln.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 3);
    expect_float(in[0], "x");
    expect_rank_at_least(in[0], 1, "x");
    int64_t d = in[0].shape.back();
    for (int i = 1; i < 3; ++i)
      HP_CHECK(in[size_t(i)].shape == Shape{d}, i == 1 ? "gamma" : "beta", " must be [", d,
               "], got ", shape_str(in[size_t(i)].shape));
    return Types{in[0], rows_type(in[0].shape), rows_type(in[0].shape)};
  };
  ln.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 8);
  };
  ln.vjp = [](VjpArgs& a) {
    auto g =
        a.g.apply(op_def(OpId::kLayerNormBwd), {a.dout[0], a.in[0], a.in[1], a.out[1], a.out[2]});
    return std::vector<Var>{g[0], g[1], g[2]};
  };
  ln.sharding = "...N,N,N->...N,...,...";
  t.push_back(std::move(ln));

  OpDef al;
  al.id = OpId::kAddLayerNorm;  // (x, res, gamma, beta) -> (x + res, y, mean, rstd); attrs: eps
  al.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 4);
    expect_float(in[0], "x");
    expect_rank_at_least(in[0], 1, "x");
    HP_CHECK(in[1] == in[0], "residual ", ir::type_str(in[1]), " differs from x ",
             ir::type_str(in[0]));
    int64_t d = in[0].shape.back();
    for (int i = 2; i < 4; ++i)
      HP_CHECK(in[size_t(i)].shape == Shape{d}, i == 2 ? "gamma" : "beta", " must be [", d,
               "], got ", shape_str(in[size_t(i)].shape));
    return Types{in[0], in[0], rows_type(in[0].shape), rows_type(in[0].shape)};
  };
  al.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 9);
  };
  al.vjp = [](VjpArgs& a) {
    // The sum feeds the norm and the residual stream: its gradient is the norm's plus the
    // stream's, and x and res both receive it.
    Var ds = a.dout[0];
    Var dg, db;
    if (a.dout[1].defined()) {
      auto g = a.g.apply(op_def(OpId::kLayerNormBwd),
                         {a.dout[1], a.out[0], a.in[2], a.out[2], a.out[3]});
      ds = ds.defined() ? g[0] + ds : g[0];
      dg = g[1];
      db = g[2];
    }
    return std::vector<Var>{ds, ds, dg, db};
  };
  al.sharding = "...N,...N,N,N->...N,...N,...,...";
  t.push_back(std::move(al));

  OpDef lb;
  lb.id = OpId::kLayerNormBwd;  // (dy, x, gamma, mean, rstd) -> (dx, dgamma, dbeta)
  lb.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 5);
    return Types{in[1], in[2], in[2]};
  };
  lb.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 12);
  };
  lb.sharding = "...N,...N,N,...,...->...N,N,N";
  t.push_back(std::move(lb));

  OpDef rn;
  rn.id = OpId::kRmsNorm;  // (x, gamma) -> (y, rstd); attrs: eps
  rn.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 2);
    expect_float(in[0], "x");
    expect_rank_at_least(in[0], 1, "x");
    int64_t d = in[0].shape.back();
    HP_CHECK(in[1].shape == Shape{d}, "gamma must be [", d, "], got ", shape_str(in[1].shape));
    return Types{in[0], rows_type(in[0].shape)};
  };
  rn.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 5);
  };
  rn.vjp = [](VjpArgs& a) {
    auto g = a.g.apply(op_def(OpId::kRmsNormBwd), {a.dout[0], a.in[0], a.in[1], a.out[1]});
    return std::vector<Var>{g[0], g[1]};
  };
  rn.sharding = "...N,N->...N,...";
  t.push_back(std::move(rn));

  OpDef rb;
  rb.id = OpId::kRmsNormBwd;  // (dy, x, gamma, rstd) -> (dx, dgamma)
  rb.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 4);
    return Types{in[1], in[2]};
  };
  rb.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 8);
  };
  rb.sharding = "...N,...N,N,...->...N,N";
  t.push_back(std::move(rb));
}

// The optional `count` input of the losses: the targets counted over every rank's rows (f32 [],
// summed across the batch axes), so that a batch split unevenly by ignored targets still gives
// the mean over the whole batch. Absent: the kernel counts the rows it has.
void expect_count(const Types& in, size_t index) {
  if (in.size() <= index) return;
  HP_CHECK(in[index].shape.empty() && in[index].dtype == DType::kF32,
           "count must be an f32 scalar, got ", type_str(in[index]));
}

void expect_targets(const TensorType& logits, const TensorType& targets) {
  HP_CHECK(targets.dtype == DType::kI64, "targets must be i64, got ", dtype_name(targets.dtype));
  HP_CHECK(Shape(logits.shape.begin(), logits.shape.end() - 1) == targets.shape, "targets ",
           shape_str(targets.shape), " do not match logits ", shape_str(logits.shape));
}

// SPMD lowering of the losses: over split rows, the targets of every rank counted (the count
// input); over a split vocabulary, where this rank's columns start.
void localize_loss(LocalizeCtx& x) {
  const Shape& logits = x.global_in(0);
  bool rows_split = false;
  for (size_t d = 0; d < x.global_in(1).size(); ++d) rows_split = rows_split || x.in_split(1, d);
  if (rows_split) {
    x.in.push_back(x.once(1, "count_targets", [&] {
      Attrs ca;
      ca.set("ignore_index", x.attrs.i("ignore_index", -100));
      ca.set("vocab", logits.back());
      return x.sum_over(x.apply(OpId::kCountTargets, {x.in[1]}, ca), {{}, DType::kF32}, 1);
    }));
  }
  const size_t v = logits.size() - 1;
  if (x.in_split(0, v)) {
    x.attrs.set("vocab_offset", x.in_offset(0, v));
    x.attrs.set("vocab_total", logits.back());
  }
}

void add_embedding(Table& t) {
  OpDef e;
  e.id = OpId::kEmbedding;  // (table [V, D], ids i64 [...]) -> [..., D]; attrs: vocab_offset/total
  e.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 2);
    expect_float(in[0], "table");
    HP_CHECK(in[0].shape.size() == 2, "table must be [V, D], got ", shape_str(in[0].shape));
    HP_CHECK(in[1].dtype == DType::kI64, "ids must be i64, got ", dtype_name(in[1].dtype));
    Shape out = in[1].shape;
    out.push_back(in[0].shape[1]);
    return Types{{out, in[0].dtype}};
  };
  e.vjp = [](VjpArgs& a) -> std::vector<Var> {
    Attrs at = a.node.attrs;  // the vocabulary shard, if any
    at.set("vocab", a.in[0].dim(0));
    return {a.g.apply1(op_def(OpId::kEmbeddingBwd), {a.dout[0], a.in[1]}, at), Var{}};
  };
  // A vocabulary-split table gives a partial sum: each shard contributes the rows it holds.
  e.sharding = "vd,...->...d";
  e.linearity = Linearity::kSingle;
  e.linear_in = {true, false};
  e.localize = [](LocalizeCtx& x) {  // a vocabulary shard: the rows this rank holds
    if (!x.in_split(0, 0)) return;
    x.attrs.set("vocab_offset", x.in_offset(0, 0));
    x.attrs.set("vocab_total", x.global_in(0)[0]);
  };
  t.push_back(std::move(e));

  OpDef eb;
  eb.id = OpId::kEmbeddingBwd;  // (dout [..., D], ids) -> dtable [V, D]; attrs: vocab, vocab_offset
  eb.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 2);
    return Types{{{at.i("vocab"), in[0].shape.back()}, in[0].dtype}};
  };
  eb.sharding = "...d,...->vd";
  eb.linearity = Linearity::kSingle;
  eb.linear_in = {true, false};
  eb.localize = [](LocalizeCtx& x) {  // this rank's rows of the table's gradient
    x.attrs.set("vocab", x.local_out(0)[0]);
    if (!x.out_split(0, 0)) return;
    x.attrs.set("vocab_offset", x.out_offset(0, 0));
    x.attrs.set("vocab_total", x.global_out(0)[0]);
  };
  t.push_back(std::move(eb));
}

// Cross-entropy and its backward.
void add_loss(Table& t) {
  OpDef c;
  // (logits [..., V], targets i64 [...][, count]) -> (loss [], lse [...])
  c.id = OpId::kCrossEntropy;
  c.infer = [](const Types& in, const Attrs&) {
    HP_CHECK(in.size() == 2 || in.size() == 3,
             "expects logits, targets and an optional count, got ", in.size(), " inputs");
    expect_float(in[0], "logits");
    expect_rank_at_least(in[0], 1, "logits");
    expect_targets(in[0], in[1]);
    expect_count(in, 2);
    return Types{{{}, DType::kF32}, rows_type(in[0].shape)};
  };
  c.cost = [](const Types& in, const Types& out, const Attrs&) {
    return Cost{6.0 * double(numel(in[0].shape)), bytes_of(in) + bytes_of(out)};
  };
  c.vjp = [](VjpArgs& a) -> std::vector<Var> {
    std::vector<Var> ins{a.in[0], a.in[1], a.out[1], a.dout[0]};
    if (a.in.size() > 2) ins.push_back(a.in[2]);
    std::vector<Var> grads{a.g.apply1(op_def(OpId::kCrossEntropyBwd), ins, a.node.attrs), Var{}};
    if (a.in.size() > 2) grads.push_back(Var{});
    return grads;
  };
  c.sharding = "...v,...->,...";
  // A vocabulary-split V is reduced inside: lowered to cross_entropy_parts, an all-gather and
  // cross_entropy_combine, so the loss and lse come out whole, not partial.
  c.place = [](PlaceCtx& x) { x.reduced_inside(x.factor(0, x.rank(0) - 1)); };
  c.localize = [](LocalizeCtx& x) {
    localize_loss(x);
    const Shape& logits = x.global_in(0);
    const size_t v = logits.size() - 1;
    if (!x.in_split(0, v)) return;
    // Each shard's log-sum-exp and target logit, gathered [rows..., 2 x shards], combined.
    const Var parts = x.apply(OpId::kCrossEntropyParts, {x.in[0], x.in[1]}, x.attrs);
    Shape all(logits.begin(), logits.end() - 1);
    all.push_back(2 * x.in_pieces(0, v));
    x.in[0] = x.gather(parts, {all, DType::kF32}, 0, v);
    const int64_t ignore_index = x.attrs.i("ignore_index", -100);
    x.attrs = Attrs();
    x.attrs.set("ignore_index", ignore_index);
    x.op = OpId::kCrossEntropyCombine;
  };
  t.push_back(std::move(c));

  OpDef cb;
  cb.id = OpId::kCrossEntropyBwd;  // (logits, targets, lse, dloss [][, count]) -> dlogits
  cb.infer = [](const Types& in, const Attrs&) {
    HP_CHECK(in.size() == 4 || in.size() == 5,
             "expects logits, targets, lse, dloss and an optional count, got ", in.size(),
             " inputs");
    expect_count(in, 4);
    return Types{in[0]};
  };
  cb.cost = [](const Types& in, const Types& out, const Attrs&) {
    return Cost{5.0 * double(numel(in[0].shape)), bytes_of(in) + bytes_of(out)};
  };
  cb.sharding = "...v,...,...,->...v";
  cb.linearity = Linearity::kSingle;
  cb.linear_in = {false, false, false, true};
  cb.localize = localize_loss;
  t.push_back(std::move(cb));
}

// The ops SPMD lowering puts in place of a loss over split rows or a split vocabulary: the
// halves of vocabulary-parallel cross-entropy, for logits split on V, and the target count. Not
// differentiated (lowered graphs already hold their backward).
void add_split_loss(Table& t) {
  OpDef cp;
  cp.id = OpId::kCrossEntropyParts;  // (logits [..., Vlocal], targets) -> parts [..., 2]
  cp.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 2);
    expect_float(in[0], "logits");
    expect_rank_at_least(in[0], 1, "logits");
    expect_targets(in[0], in[1]);
    Shape out(in[0].shape.begin(), in[0].shape.end() - 1);
    out.push_back(2);
    return Types{{out, DType::kF32}};
  };
  cp.cost = [](const Types& in, const Types& out, const Attrs&) {
    return Cost{5.0 * double(numel(in[0].shape)), bytes_of(in) + bytes_of(out)};
  };
  t.push_back(std::move(cp));

  OpDef cc;
  cc.id = OpId::kCrossEntropyCombine;  // (parts [..., 2 * shards], targets[, count]) -> (loss, lse)
  cc.infer = [](const Types& in, const Attrs&) {
    HP_CHECK(in.size() == 2 || in.size() == 3, "expects parts, targets and an optional count, got ",
             in.size(), " inputs");
    expect_float(in[0], "parts");
    expect_rank_at_least(in[0], 1, "parts");
    HP_CHECK(in[0].shape.back() % 2 == 0, "parts must end in 2 x shards, got ",
             shape_str(in[0].shape));
    expect_targets(in[0], in[1]);
    expect_count(in, 2);
    return Types{{{}, DType::kF32}, rows_type(in[0].shape)};
  };
  t.push_back(std::move(cc));

  OpDef ct;
  ct.id = OpId::kCountTargets;  // targets i64 [...] -> f32 [], those not ignore_index
  ct.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 1);
    HP_CHECK(in[0].dtype == DType::kI64, "targets must be i64, got ", dtype_name(in[0].dtype));
    return Types{{{}, DType::kF32}};
  };
  ct.sharding = "...->";
  t.push_back(std::move(ct));
}

void add_positional_and_attention(Table& t) {
  OpDef r;
  // x [B, T, H, Dh][, positions i64 [B, T]]; attrs: theta, offset, inverse. Token t of sequence
  // b sits at positions[b, t] when given (the inference programs), else at offset + t.
  r.id = OpId::kRope;
  r.infer = [](const Types& in, const Attrs&) {
    HP_CHECK(in.size() == 1 || in.size() == 2, "expects x and optional positions, got ", in.size(),
             " inputs");
    expect_float(in[0], "x");
    HP_CHECK(in[0].shape.size() == 4, "x must be [B, T, H, Dh], got ", shape_str(in[0].shape));
    HP_CHECK(in[0].shape[3] % 2 == 0, "head dim must be even, got ", in[0].shape[3]);
    if (in.size() == 2) {
      const Shape bt{in[0].shape[0], in[0].shape[1]};
      HP_CHECK(in[1].dtype == DType::kI64 && in[1].shape == bt, "positions must be i64",
               shape_str(bt), ", got ", type_str(in[1]));
    }
    return Types{in[0]};
  };
  r.cost = [](const Types& in, const Types& out, const Attrs&) {
    return elementwise_cost(in, out, 3);
  };
  r.vjp = [](VjpArgs& a) -> std::vector<Var> {
    Attrs at = a.node.attrs;
    at.set("inverse", int64_t(!at.i("inverse", 0)));
    if (a.in.size() > 1) return {a.g.apply1(op_def(OpId::kRope), {a.dout[0], a.in[1]}, at), Var{}};
    return {a.g.apply1(op_def(OpId::kRope), {a.dout[0]}, at)};
  };
  r.sharding = "bThD,bT->bThD";  // positions, when given, follow the tokens' batch
  t.push_back(std::move(r));

  // Query heads split evenly. Kv heads split with them when they divide as evenly, so each rank
  // keeps whole groups; otherwise every rank holds all kv heads and reads those of its query
  // heads (Megatron's replication of kv heads when there are fewer than ranks).
  auto place_heads = [](PlaceCtx& x) {
    const int fh = x.factor(0, 2), fk = x.factor(1, 2);
    if (fh < 0 || fk < 0) return;
    std::vector<std::string>&h = x.axes(fh), &k = x.axes(fk);
    const int64_t n = x.ways(h);
    if (!h.empty() && x.extent(fh) % n == 0) {
      if (x.extent(fk) % n == 0)
        k = h;
      else
        k.clear();
    } else {
      h.clear();
      k.clear();
    }
  };
  // On a rank holding only some query heads: their group size and where they start in it.
  auto localize_heads = [](LocalizeCtx& x) {
    const Shape &q = x.global_in(0), &kv = x.global_in(1);
    if (x.in[0].shape()[2] == q[2]) return;
    const int64_t group = q[2] / kv[2];
    x.attrs.set("group", group);
    x.attrs.set("head_offset", x.in_offset(0, 2) - x.in_offset(1, 2) * group);
  };
  auto attn_flops = [](const Shape& q) {  // causal: half of the QK^T and PV products
    return 2.0 * double(q[0] * q[2]) * double(q[1]) * double(q[1]) * double(q[3]);
  };

  OpDef a;
  // attrs: scale; group and head_offset when this rank holds only some query heads of a group
  // with their whole kv head (SPMD lowering sets them).
  a.id = OpId::kAttention;  // (q, k, v) -> (out, lse [B, H, T])
  a.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 3);
    for (auto& x : in) {
      expect_float(x, "q, k and v");
      HP_CHECK(x.shape.size() == 4, "q, k, v must be [B, T, heads, Dh], got ", shape_str(x.shape));
    }
    const Shape &q = in[0].shape, &k = in[1].shape;
    HP_CHECK(in[1].shape == in[2].shape, "k ", shape_str(k), " and v ", shape_str(in[2].shape),
             " differ");
    HP_CHECK(q[0] == k[0] && q[1] == k[1] && q[3] == k[3], "q ", shape_str(q), " does not match k ",
             shape_str(k));
    if (const int64_t group = at.i("group", 0); group > 0) {
      const int64_t off = at.i("head_offset", 0);
      HP_CHECK(off >= 0 && (off + q[2] - 1) / group < k[2], "query heads [", off, ", ", off + q[2],
               ") in groups of ", group, " need more than ", k[2], " kv heads");
    } else {
      HP_CHECK(q[2] % k[2] == 0, "query heads ", q[2], " not a multiple of kv heads ", k[2]);
    }
    return Types{in[0], {{q[0], q[2], q[1]}, DType::kF32}};
  };
  a.cost = [attn_flops](const Types& in, const Types& out, const Attrs&) {
    return Cost{attn_flops(in[0].shape), bytes_of(in) + bytes_of(out)};
  };
  a.vjp = [](VjpArgs& v) {
    auto g = v.g.apply(op_def(OpId::kAttentionBwd),
                       {v.in[0], v.in[1], v.in[2], v.out[0], v.out[1], v.dout[0]}, v.node.attrs);
    return std::vector<Var>{g[0], g[1], g[2]};
  };
  a.sharding = "bThD,bTkD,bTkD->bThD,bhT";
  a.place = place_heads;
  a.localize = localize_heads;
  t.push_back(std::move(a));

  OpDef ab;
  ab.id = OpId::kAttentionBwd;  // (q, k, v, out, lse, dout) -> (dq, dk, dv)
  ab.infer = [](const Types& in, const Attrs&) {
    expect_arity(in, 6);
    return Types{in[0], in[1], in[2]};
  };
  ab.cost = [attn_flops](const Types& in, const Types& out, const Attrs&) {
    return Cost{2.5 * attn_flops(in[0].shape), bytes_of(in) + bytes_of(out)};
  };
  ab.sharding = "bThD,bTkD,bTkD,bThD,bhT,bThD->bThD,bTkD,bTkD";
  ab.place = place_heads;
  ab.localize = localize_heads;
  t.push_back(std::move(ab));
}

}  // namespace

void register_nn(Table& t) {
  add_softmax(t);
  add_norms(t);
  add_embedding(t);
  add_loss(t);
  add_split_loss(t);
  add_positional_and_attention(t);
}

}  // namespace hp::ops

namespace hp {

Var softmax(Var x) {
  return x.g->apply1(ops::op_def(ir::OpId::kSoftmax), {x});
}
Var layer_norm(Var x, Var gamma, Var beta, double eps) {
  return x.g->apply(ops::op_def(ir::OpId::kLayerNorm), {x, gamma, beta}, {{"eps", eps}})[0];
}
std::pair<Var, Var> add_layer_norm(Var x, Var res, Var gamma, Var beta, double eps) {
  auto o = x.g->apply(ops::op_def(ir::OpId::kAddLayerNorm), {x, res, gamma, beta}, {{"eps", eps}});
  return {o[0], o[1]};
}
Var rms_norm(Var x, Var gamma, double eps) {
  return x.g->apply(ops::op_def(ir::OpId::kRmsNorm), {x, gamma}, {{"eps", eps}})[0];
}
Var embedding(Var table, Var ids) {
  return table.g->apply1(ops::op_def(ir::OpId::kEmbedding), {table, ids});
}
Var cross_entropy(Var logits, Var targets, int64_t ignore_index) {
  return logits.g->apply(ops::op_def(ir::OpId::kCrossEntropy), {logits, targets},
                         {{"ignore_index", ignore_index}})[0];
}
Var rope(Var x, double theta, int64_t pos_offset) {
  return x.g->apply1(ops::op_def(ir::OpId::kRope), {x},
                     {{"theta", theta}, {"offset", pos_offset}, {"inverse", int64_t(0)}});
}
Var rope(Var x, double theta, Var positions) {
  return x.g->apply1(ops::op_def(ir::OpId::kRope), {x, positions},
                     {{"theta", theta}, {"offset", int64_t(0)}, {"inverse", int64_t(0)}});
}
Var attention(Var q, Var k, Var v, double scale) {
  return q.g->apply(ops::op_def(ir::OpId::kAttention), {q, k, v}, {{"scale", scale}})[0];
}

}  // namespace hp
