// The op table test: every op of the tracing API (hp/ops/ops.hpp) run through the IR, autodiff and
// the runtime on awkward shapes, against a naive double-precision reference (forward) and central
// finite differences (VJP), and a row for every registered op.
// Not a kernel test (backend_cpu_test.cpp covers kernels alone), not the IR's own checks
// (ir_graph_tests.cpp: inference errors, verify/str, liveness) and not a speed test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hp/autodiff/grad.hpp"
#include "hp/core/rng.hpp"
#include "hp/ops/ops.hpp"
#include "hp/ops/registry.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/runtime/program.hpp"
#include "ops_reference.hpp"

namespace hp {
namespace {

using ir::Graph;
using namespace opref;
using Vs = std::vector<Var>;

// ---- the table -------------------------------------------------------------------------------

// How an input is filled. Ids and targets are i64 in [0, vocab); targets mark every third row
// with `ignore`. Distinct values are spaced 0.05 apart (max has no ties within the FD step);
// away-from-zero values skip relu's kink; grid values are multiples of 1/64 in [-1.5, 1.5], exact
// in bf16 and f16, so a cast round trip is the identity under an FD step of 1/32.
enum class Gen { kNormal, kPositive, kAwayFromZero, kDistinct, kGrid, kIds, kTargets };

struct In {
  Shape shape;
  Gen gen = Gen::kNormal;
  int64_t vocab = 0;
  int64_t ignore = -100;
  bool is_int() const { return gen == Gen::kIds || gen == Gen::kTargets; }
};

struct Case {
  std::string name;
  std::vector<In> in;
  std::function<Var(const Vs&)> build;  // params and inputs (one per `in`) -> the output
  std::function<NT(const Ns&)> ref;
  double h = 1e-2;  // FD step; 0: no FD (the op is not differentiable at these inputs)
};

Case unary_row(const std::string& name, Var (*op)(Var), double (*f)(double), Gen gen,
               Shape s = {3, 13}) {
  return {name,
          {{s, gen}},
          [op](const Vs& x) { return op(x[0]); },
          [f](const Ns& x) { return map1(x[0], f); }};
}

Case binary_row(const std::string& name, Var (*op)(Var, Var), double (*f)(double, double), Shape a,
                Shape b, Gen gb = Gen::kNormal) {
  return {name,
          {{a}, {b, gb}},
          [op](const Vs& x) { return op(x[0], x[1]); },
          [f](const Ns& x) { return map2(x[0], x[1], f); }};
}

Case matmul_row(const std::string& name, Shape a, Shape b, bool ta, bool tb) {
  return {name,
          {{a}, {b}},
          [=](const Vs& x) { return matmul(x[0], x[1], ta, tb); },
          [=](const Ns& x) { return matmul_ref(x[0], x[1], ta, tb); }};
}

Case attention_row(const std::string& name, Shape q, Shape kv) {
  double sc = 1.0 / std::sqrt(double(q[3]));
  return {name,
          {{q}, {kv}, {kv}},
          [=](const Vs& x) { return attention(x[0], x[1], x[2], sc); },
          [=](const Ns& x) { return attention_ref(x[0], x[1], x[2], sc); }};
}

Case cast_row(const std::string& name, DType via, Gen gen, double h) {
  double (*round)(double) =
      via == DType::kBF16 ? +[](double x) { return double(bf16_to_f32(f32_to_bf16(float(x)))); }
                          : +[](double x) { return double(f16_to_f32(f32_to_f16(float(x)))); };
  return {name,
          {{{5, 13}, gen}},
          [=](const Vs& x) { return cast(cast(x[0], via), DType::kF32); },
          [=](const Ns& x) { return map1(x[0], round); },
          h};
}

std::string dims_name(const Shape& s) {  // {3, 5, 7} -> "3x5x7"
  std::string out;
  for (int64_t d : s) {
    if (!out.empty()) out += 'x';
    out += std::to_string(d);
  }
  return out;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> table = [] {
    std::vector<Case> t;
    // matmul: plain, batched, shared b, each transpose, size-1 dims.
    t.push_back(matmul_row("matmul_2d", {5, 7}, {7, 3}, false, false));
    t.push_back(matmul_row("matmul_batched", {2, 3, 5, 7}, {2, 3, 7, 13}, false, false));
    t.push_back(matmul_row("matmul_shared_b", {3, 5, 7}, {7, 13}, false, false));
    t.push_back(matmul_row("matmul_ta_2d", {7, 5}, {7, 3}, true, false));
    t.push_back(matmul_row("matmul_ta_batched", {2, 7, 5}, {2, 7, 3}, true, false));
    t.push_back(matmul_row("matmul_tb_shared_b", {3, 5, 7}, {13, 7}, false, true));
    t.push_back(matmul_row("matmul_ta_tb", {2, 7, 5}, {2, 13, 7}, true, true));
    t.push_back(matmul_row("matmul_size1", {1, 1, 7}, {7, 1}, false, false));
    // Broadcasting arithmetic: rank differences, leading and middle size-1 dims.
    auto fadd = +[](double a, double b) { return a + b; };
    auto fsub = +[](double a, double b) { return a - b; };
    auto fmul = +[](double a, double b) { return a * b; };
    auto fdiv = +[](double a, double b) { return a / b; };
    t.push_back(binary_row("add_same", add, fadd, {3, 5, 7}, {3, 5, 7}));
    t.push_back(binary_row("add_rank_diff", add, fadd, {2, 3, 5, 7}, {5, 7}));
    t.push_back(binary_row("add_lead_and_mid1", add, fadd, {1, 5, 1, 7}, {3, 1, 13, 1}));
    t.push_back(binary_row("sub_mid1", sub, fsub, {3, 1, 7}, {3, 5, 7}));
    t.push_back(binary_row("mul_lead1", mul, fmul, {1, 5, 7}, {3, 5, 1}));
    t.push_back(binary_row("div_bcast", div, fdiv, {3, 5, 7}, {1, 5, 1}, Gen::kPositive));
    t.push_back(
        {"operators",
         {{{3, 1, 7}}, {{5, 1}}, {{3, 5, 7}, Gen::kPositive}},
         [](const Vs& x) { return ((x[0] + x[1]) * x[2] - x[0] / x[2]) * 1.5 + 0.5 * (-x[1]); },
         [=](const Ns& x) {
           NT l = map2(map2(map2(x[0], x[1], fadd), x[2], fmul), map2(x[0], x[2], fdiv), fsub);
           return map2(map1(l, [](double v) { return 1.5 * v; }),
                       map1(x[1], [](double v) { return -0.5 * v; }), fadd);
         }});
    t.push_back({"scale",
                 {{{7, 1, 3}}},
                 [](const Vs& x) { return scale(x[0], -0.75); },
                 [](const Ns& x) { return map1(x[0], [](double v) { return -0.75 * v; }); }});
    // Unary math.
    t.push_back(unary_row(
        "neg", neg, [](double v) { return -v; }, Gen::kNormal));
    t.push_back(
        unary_row("exp", exp, [](double v) { return std::exp(v); }, Gen::kNormal, {2, 1, 7}));
    t.push_back(unary_row(
        "log", log, [](double v) { return std::log(v); }, Gen::kPositive));
    t.push_back(unary_row(
        "sqrt", sqrt, [](double v) { return std::sqrt(v); }, Gen::kPositive));
    t.push_back(unary_row(
        "rsqrt", rsqrt, [](double v) { return 1 / std::sqrt(v); }, Gen::kPositive));
    t.push_back(unary_row(
        "tanh", tanh, [](double v) { return std::tanh(v); }, Gen::kNormal));
    t.push_back(unary_row("gelu", gelu, gelu_ref, Gen::kNormal, {5, 1, 13}));
    t.push_back(unary_row(
        "silu", silu, [](double v) { return v / (1 + std::exp(-v)); }, Gen::kNormal));
    t.push_back(unary_row(
        "relu", relu, [](double v) { return std::max(v, 0.0); }, Gen::kAwayFromZero));
    t.push_back(unary_row("square", square, [](double v) { return v * v; }, Gen::kNormal, {1, 7}));
    for (Shape xs : {Shape{3, 5, 7}, Shape{1, 13}}) {
      t.push_back({"bias_gelu_" + std::to_string(xs.size()) + "d",
                   {{xs}, {{xs.back()}}},
                   [](const Vs& x) { return bias_gelu(x[0], x[1]); },
                   [](const Ns& x) {
                     return map2(x[0], x[1], [](double a, double b) { return gelu_ref(a + b); });
                   }});
    }
    t.push_back(cast_row("cast_bf16_roundtrip", DType::kBF16, Gen::kGrid, 1.0 / 32));
    t.push_back(cast_row("cast_f16_roundtrip", DType::kF16, Gen::kGrid, 1.0 / 32));
    t.push_back(cast_row("cast_bf16_rounding", DType::kBF16, Gen::kNormal, 0));
    t.push_back({"cast_ids_to_f32",  // an int operand: only x gets a gradient
                 {{{3, 5}}, {{3, 5}, Gen::kIds, 9}},
                 [](const Vs& x) { return x[0] * cast(x[1], DType::kF32); },
                 [=](const Ns& x) { return map2(x[0], x[1], fmul); }});
    // Normalisation, softmax.
    for (Shape s : {Shape{3, 5, 13}, Shape{2, 1, 7}, Shape{4, 1}}) {
      std::string sfx = "_" + std::to_string(s.size()) + "d_" + std::to_string(s.back());
      t.push_back({"softmax" + sfx,
                   {{s}},
                   [](const Vs& x) { return softmax(x[0]); },
                   [](const Ns& x) { return softmax_ref(x[0]); }});
      if (s.back() == 1) continue;  // a norm over one element is constant: FD says nothing
      t.push_back({"layer_norm" + sfx,
                   {{s}, {{s.back()}}, {{s.back()}}},
                   [](const Vs& x) { return layer_norm(x[0], x[1], x[2], 1e-5); },
                   [](const Ns& x) { return layer_norm_ref(x[0], x[1], x[2], 1e-5); }});
      t.push_back({"add_layer_norm" + sfx,  // both outputs reach the loss
                   {{s}, {s}, {{s.back()}}, {{s.back()}}},
                   [](const Vs& x) {
                     auto [sum, y] = add_layer_norm(x[0], x[1], x[2], x[3], 1e-5);
                     return y + 0.5 * sum;
                   },
                   [](const Ns& x) {
                     NT sum = map2(x[0], x[1], [](double a, double b) { return a + b; });
                     return map2(layer_norm_ref(sum, x[2], x[3], 1e-5), sum,
                                 [](double y, double v) { return y + 0.5 * v; });
                   }});
      t.push_back({"rms_norm" + sfx,
                   {{s}, {{s.back()}}},
                   [](const Vs& x) { return rms_norm(x[0], x[1], 1e-6); },
                   [](const Ns& x) { return rms_norm_ref(x[0], x[1], 1e-6); }});
    }
    // Embedding and loss (int inputs get no gradient).
    t.push_back({"embedding",
                 {{{13, 7}}, {{3, 5}, Gen::kIds, 13}},
                 [](const Vs& x) { return embedding(x[0], x[1]); },
                 [](const Ns& x) { return embedding_ref(x[0], x[1]); }});
    t.push_back({"embedding_one_id",
                 {{{5, 3}}, {{1}, Gen::kIds, 5}},
                 [](const Vs& x) { return embedding(x[0], x[1]); },
                 [](const Ns& x) { return embedding_ref(x[0], x[1]); }});
    t.push_back({"cross_entropy_ignored_rows",
                 {{{3, 5, 13}}, {{3, 5}, Gen::kTargets, 13}},
                 [](const Vs& x) { return cross_entropy(x[0], x[1]); },
                 [](const Ns& x) { return cross_entropy_ref(x[0], x[1], -100); }});
    t.push_back({"cross_entropy_ignore_index_2",
                 {{{7, 5}}, {{7}, Gen::kTargets, 5, 2}},
                 [](const Vs& x) { return cross_entropy(x[0], x[1], 2); },
                 [](const Ns& x) { return cross_entropy_ref(x[0], x[1], 2); }});
    // The vocabulary-parallel forms SPMD lowering emits: two shards of [0, 13) = [0, 6) + [6, 13).
    auto shard = [](int64_t offset, int64_t total) {
      return ir::Attrs{{"vocab_offset", offset}, {"vocab_total", total}};
    };
    t.push_back({"embedding_vocab_shards",
                 {{{13, 7}}, {{3, 5}, Gen::kIds, 13}},
                 [=](const Vs& x) {
                   ir::Graph& g = *x[0].g;
                   return g.apply1(ops::op_def(ir::OpId::kEmbedding), {slice(x[0], 0, 0, 6), x[1]},
                                   shard(0, 13)) +
                          g.apply1(ops::op_def(ir::OpId::kEmbedding), {slice(x[0], 0, 6, 13), x[1]},
                                   shard(6, 13));
                 },
                 [](const Ns& x) { return embedding_ref(x[0], x[1]); }});
    t.push_back({"cross_entropy_vocab_shards",
                 {{{3, 5, 13}}, {{3, 5}, Gen::kTargets, 13}},
                 [=](const Vs& x) {
                   ir::Graph& g = *x[0].g;
                   Var p0 = g.apply1(ops::op_def(ir::OpId::kCrossEntropyParts),
                                     {slice(x[0], 2, 0, 6), x[1]}, shard(0, 13));
                   Var p1 = g.apply1(ops::op_def(ir::OpId::kCrossEntropyParts),
                                     {slice(x[0], 2, 6, 13), x[1]}, shard(6, 13));
                   return g.apply(ops::op_def(ir::OpId::kCrossEntropyCombine),
                                  {concat({p0, p1}, 2), x[1]})[0];
                 },
                 [](const Ns& x) { return cross_entropy_ref(x[0], x[1], -100); },
                 0.0});
    t.push_back(
        {"cross_entropy_given_count",  // a count summed over ranks: here 2x this batch's
         {{{3, 5, 13}}, {{3, 5}, Gen::kTargets, 13}},
         [](const Vs& x) {
           ir::Graph& g = *x[0].g;
           Var n = g.apply1(ops::op_def(ir::OpId::kCountTargets), {x[1]}, {{"vocab", int64_t(13)}});
           return g.apply(ops::op_def(ir::OpId::kCrossEntropy), {x[0], x[1], n + n})[0];
         },
         [](const Ns& x) {
           return map1(cross_entropy_ref(x[0], x[1], -100), [](double v) { return v / 2; });
         }});
    // Rotary embedding and attention.
    t.push_back({"rope",
                 {{{2, 7, 3, 8}}},
                 [](const Vs& x) { return rope(x[0], 10000.0); },
                 [](const Ns& x) { return rope_ref(x[0], 10000.0, 0); }});
    t.push_back({"rope_offset_dh6",
                 {{{1, 5, 2, 6}}},
                 [](const Vs& x) { return rope(x[0], 500.0, 3); },
                 [](const Ns& x) { return rope_ref(x[0], 500.0, 3); }});
    t.push_back({"rope_positions",  // each token at its own position (the inference programs)
                 {{{2, 5, 3, 8}}, {{2, 5}, Gen::kIds, 40}},
                 [](const Vs& x) { return rope(x[0], 500.0, x[1]); },
                 [](const Ns& x) { return rope_ref(x[0], 500.0, 0, &x[1]); }});
    t.push_back(attention_row("attention_t1", {2, 1, 3, 5}, {2, 1, 3, 5}));
    t.push_back(attention_row("attention_t7", {1, 7, 2, 6}, {1, 7, 2, 6}));
    t.push_back(attention_row("attention_gqa_h4_hkv2", {2, 7, 4, 6}, {2, 7, 2, 6}));
    t.push_back(attention_row("attention_mqa_t13", {1, 13, 3, 5}, {1, 13, 1, 5}));
    // Some query heads of 4 with all 2 kv heads (tensor parallelism with kv heads replicated):
    // heads [1, 3) read both kv heads, head [0, 1) only the first (the other's gradient is 0).
    for (auto [first, last] : {std::pair<int64_t, int64_t>{1, 3}, {0, 1}}) {
      const double sc = 1.0 / std::sqrt(6.0);
      t.push_back(
          {"attention_heads_" + std::to_string(first) + "_" + std::to_string(last) + "_of_4_kv2",
           {{{2, 7, 4, 6}}, {{2, 7, 2, 6}}, {{2, 7, 2, 6}}},
           [=](const Vs& x) {
             return x[0].g->apply(
                 ops::op_def(ir::OpId::kAttention), {slice(x[0], 2, first, last), x[1], x[2]},
                 {{"scale", sc}, {"group", int64_t(2)}, {"head_offset", first}})[0];
           },
           [=](const Ns& x) {
             return slice_ref(attention_ref(x[0], x[1], x[2], sc), 2, first, last);
           }});
    }
    // Layout.
    t.push_back({"reshape_infer",
                 {{{3, 5, 7}}},
                 [](const Vs& x) {
                   return reshape(x[0], {5, -1});
                 },
                 [](const Ns& x) {
                   return NT{{5, 21}, x[0].v};
                 }});
    t.push_back({"reshape_add_unit_dims",
                 {{{1, 35}}},
                 [](const Vs& x) {
                   return reshape(x[0], {7, 1, 5});
                 },
                 [](const Ns& x) {
                   return NT{{7, 1, 5}, x[0].v};
                 }});
    t.push_back({"reshape_of_intermediate",
                 {{{3, 5, 7}}},
                 [](const Vs& x) { return reshape(tanh(x[0]), {-1}); },
                 [](const Ns& x) {
                   return NT{{105}, map1(x[0], [](double v) { return std::tanh(v); }).v};
                 }});
    t.push_back({"permute",
                 {{{2, 3, 5, 7}}},
                 [](const Vs& x) {
                   return permute(x[0], {2, 0, 3, 1});
                 },
                 [](const Ns& x) {
                   return permute_ref(x[0], {2, 0, 3, 1});
                 }});
    t.push_back({"transpose",
                 {{{3, 5, 7}}},
                 [](const Vs& x) { return transpose(x[0], 0, 2); },
                 [](const Ns& x) {
                   return permute_ref(x[0], {2, 1, 0});
                 }});
    t.push_back({"transpose_neg_axes",
                 {{{1, 5, 7}}},
                 [](const Vs& x) { return transpose(x[0], -1, -2); },
                 [](const Ns& x) {
                   return permute_ref(x[0], {0, 2, 1});
                 }});
    t.push_back({"slice_mid",
                 {{{3, 5, 7}}},
                 [](const Vs& x) { return slice(x[0], 1, 1, 4); },
                 [](const Ns& x) { return slice_ref(x[0], 1, 1, 4); }});
    t.push_back({"slice_last_neg_axis",
                 {{{3, 5, 7}}},
                 [](const Vs& x) { return slice(x[0], -1, 6, 7); },
                 [](const Ns& x) { return slice_ref(x[0], -1, 6, 7); }});
    t.push_back({"concat_mid",
                 {{{3, 2, 7}}, {{3, 5, 7}}, {{3, 1, 7}}},
                 [](const Vs& x) { return concat(x, 1); },
                 [](const Ns& x) { return concat_ref(x, 1); }});
    t.push_back({"concat_first",
                 {{{1, 5}}, {{3, 5}}},
                 [](const Vs& x) { return concat(x, 0); },
                 [](const Ns& x) { return concat_ref(x, 0); }});
    t.push_back(
        {"split_reorder",
         {{{3, 13}}},
         [](const Vs& x) {
           Vs p = split(x[0], -1, {4, 1, 8});
           return concat({p[2], p[0], p[1]}, 1);
         },
         [](const Ns& x) {
           return concat_ref(
               {slice_ref(x[0], 1, 5, 13), slice_ref(x[0], 1, 0, 4), slice_ref(x[0], 1, 4, 5)}, 1);
         }});
    // Reductions and the broadcasting pair.
    struct R {
      const char* name;
      Var (*op)(Var, Idx, bool);
      Red red;
      Shape s;
      Idx axes;
      bool keep;
      Gen gen;
    };
    for (const R& r :
         {R{"sum_all", sum, Red::kSum, {3, 5, 7}, {}, false, Gen::kNormal},
          R{"sum_mid_keepdim", sum, Red::kSum, {3, 5, 7}, {1}, true, Gen::kNormal},
          R{"sum_outer_axes", sum, Red::kSum, {3, 5, 7}, {0, 2}, false, Gen::kNormal},
          R{"sum_unit_last", sum, Red::kSum, {7, 1}, {-1}, false, Gen::kNormal},
          R{"mean_mid", mean, Red::kMean, {3, 5, 7}, {1}, false, Gen::kNormal},
          R{"mean_all_keepdim", mean, Red::kMean, {2, 1, 13}, {}, true, Gen::kNormal},
          R{"max_last", max, Red::kMax, {3, 5, 7}, {2}, false, Gen::kDistinct},
          R{"max_first_keepdim", max, Red::kMax, {5, 1, 3}, {0}, true, Gen::kDistinct},
          R{"max_all", max, Red::kMax, {3, 13}, {}, false, Gen::kDistinct},
          R{"large_sum_mid", sum, Red::kSum, {17, 131, 11}, {1}, false, Gen::kNormal},
          R{"large_max_first", max, Red::kMax, {131, 137}, {0}, true, Gen::kDistinct}}) {
      t.push_back({r.name,
                   {{r.s, r.gen}},
                   [r](const Vs& x) { return r.op(x[0], r.axes, r.keep); },
                   [r](const Ns& x) { return reduce_ref(x[0], r.red, r.axes, r.keep); }});
    }
    for (auto [from, to] : {std::pair<Shape, Shape>{{3, 5, 7}, {5, 1}},
                            {{2, 3, 1, 7}, {3, 1, 1}},
                            {{17, 131, 11}, {131, 1}}}) {
      t.push_back({"sum_to_" + dims_name(to),
                   {{from}},
                   [to](const Vs& x) { return sum_to(x[0], to); },
                   [to](const Ns& x) { return sum_to_ref(x[0], to); }});
      t.push_back({"broadcast_to_" + dims_name(from),
                   {{to}},
                   [from](const Vs& x) { return broadcast_to(x[0], from); },
                   [from](const Ns& x) { return bcast_ref(x[0], from); }});
    }
    // Past the kernels' threading threshold (16384 elements), for the runs with two threads.
    const Shape big{131, 137};
    t.push_back(matmul_row("large_matmul_shared_b", {2, 67, 45}, {45, 131}, false, false));
    t.push_back(matmul_row("large_matmul_ta_tb", {3, 45, 67}, {3, 131, 45}, true, true));
    t.push_back(binary_row("large_add_bcast", add, fadd, {3, 131, 67}, {131, 1}));
    t.push_back(unary_row("large_gelu", gelu, gelu_ref, Gen::kNormal, big));
    t.push_back({"large_bias_gelu",
                 {{big}, {{big[1]}}},
                 [](const Vs& x) { return bias_gelu(x[0], x[1]); },
                 [](const Ns& x) {
                   return map2(x[0], x[1], [](double a, double b) { return gelu_ref(a + b); });
                 }});
    t.push_back({"large_softmax",
                 {{big}},
                 [](const Vs& x) { return softmax(x[0]); },
                 [](const Ns& x) { return softmax_ref(x[0]); }});
    t.push_back({"large_layer_norm",
                 {{big}, {{big[1]}}, {{big[1]}}},
                 [](const Vs& x) { return layer_norm(x[0], x[1], x[2], 1e-5); },
                 [](const Ns& x) { return layer_norm_ref(x[0], x[1], x[2], 1e-5); }});
    t.push_back({"large_rms_norm",
                 {{big}, {{big[1]}}},
                 [](const Vs& x) { return rms_norm(x[0], x[1], 1e-6); },
                 [](const Ns& x) { return rms_norm_ref(x[0], x[1], 1e-6); }});
    t.push_back({"large_cross_entropy",
                 {{big}, {{big[0]}, Gen::kTargets, big[1]}},
                 [](const Vs& x) { return cross_entropy(x[0], x[1]); },
                 [](const Ns& x) { return cross_entropy_ref(x[0], x[1], -100); }});
    t.push_back({"large_embedding",
                 {{{37, 131}}, {{3, 67}, Gen::kIds, 37}},
                 [](const Vs& x) { return embedding(x[0], x[1]); },
                 [](const Ns& x) { return embedding_ref(x[0], x[1]); }});
    t.push_back({"large_permute",
                 {{{13, 37, 41}}},
                 [](const Vs& x) {
                   return permute(x[0], {2, 0, 1});
                 },
                 [](const Ns& x) {
                   return permute_ref(x[0], {2, 0, 1});
                 }});
    t.push_back({"large_rope",
                 {{{2, 67, 4, 34}}},
                 [](const Vs& x) { return rope(x[0], 10000.0, 5); },
                 [](const Ns& x) { return rope_ref(x[0], 10000.0, 5); }});
    t.push_back(attention_row("large_attention_gqa", {2, 67, 4, 18}, {2, 67, 2, 18}));
    return t;
  }();
  return table;
}

// ---- the harness -----------------------------------------------------------------------------

// Deterministic data for input `i` of case `name`: the f32 tensor and its exact double copy.
std::pair<Tensor, NT> make_input(const std::string& name, size_t i, const In& in) {
  const uint64_t stream = rng::stream_of(name.c_str()) + i;
  const int64_t n = numel(in.shape);
  NT nt = make(in.shape);
  for (int64_t j = 0; j < n; ++j) {
    double z = rng::normal(7, stream, uint64_t(j)), u = rng::uniform(7, stream, uint64_t(j));
    double& v = nt.v[size_t(j)];
    switch (in.gen) {
      case Gen::kNormal:
        v = z;
        break;
      case Gen::kPositive:
        v = 0.5 + 1.5 * u;
        break;
      case Gen::kAwayFromZero:
        v = z < 0 ? z - 0.1 : z + 0.1;
        break;
      case Gen::kDistinct:
        v = 0.05 * double(j - n / 2);
        break;
      case Gen::kGrid:
        v = std::clamp(std::round(z * 32), -96.0, 96.0) / 64;
        break;
      case Gen::kIds:
        v = std::floor(u * double(in.vocab));
        break;
      case Gen::kTargets:
        v = j % 3 == 1 ? double(in.ignore) : std::floor(u * double(in.vocab));
        break;
    }
  }
  if (in.gen == Gen::kDistinct)  // shuffle the evenly spaced values
    for (int64_t j = n - 1; j > 0; --j)
      std::swap(nt.v[size_t(j)], nt.v[size_t(rng::bits(7, stream, uint64_t(j)) % uint64_t(j + 1))]);
  if (in.is_int()) {
    std::vector<int64_t> ids(nt.v.begin(), nt.v.end());
    return {Tensor::from_i64(in.shape, ids), nt};
  }
  std::vector<float> f(nt.v.begin(), nt.v.end());
  for (int64_t j = 0; j < n; ++j) nt.v[size_t(j)] = f[size_t(j)];
  return {Tensor::from_f32(in.shape, f), nt};
}

// A case traced into a graph: out = build(x), loss = sum(out * R), grads of the float inputs.
struct Traced {
  std::unique_ptr<Graph> g = std::make_unique<Graph>();
  Vs x;
  Var out, r, loss;
  std::set<std::string> ops;  // registered ops in the forward part
};

Traced trace(const Case& c) {
  Traced t;
  for (size_t i = 0; i < c.in.size(); ++i) {
    std::string nm = "x";
    nm += std::to_string(i);
    t.x.push_back(c.in[i].is_int() ? t.g->input(nm, {c.in[i].shape, DType::kI64})
                                   : t.g->param(nm, c.in[i].shape));
  }
  t.out = c.build(t.x);
  for (auto& n : t.g->nodes()) t.ops.insert(n.def->name);
  t.r = t.g->input("R", t.out.type());
  t.loss = sum(t.out * t.r);
  return t;
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

void check_case(const Case& c, int threads) {
  SCOPED_TRACE(c.name + " threads=" + std::to_string(threads));
  Traced t = trace(c);
  ASSERT_EQ(t.out.dtype(), DType::kF32);
  Vs wrt;
  for (size_t i = 0; i < c.in.size(); ++i)
    if (!c.in[i].is_int()) wrt.push_back(t.x[i]);
  // Rows with h = 0 may use ops that have no VJP (the halves of vocabulary-parallel losses).
  Vs grads = c.h == 0 ? Vs{t.loss} : autodiff::grad(t.loss, wrt);
  ASSERT_NO_THROW(t.g->verify());

  std::vector<Tensor> data;
  Ns ref_in;
  for (size_t i = 0; i < c.in.size(); ++i) {
    auto [tensor, nt] = make_input(c.name, i, c.in[i]);
    data.push_back(tensor);
    ref_in.push_back(nt);
  }
  In r_spec{t.out.shape()};
  Tensor r_data = make_input(c.name + ".R", 0, r_spec).first;

  runtime::Program fwd = runtime::compile(*t.g, {t.out.id, t.loss.id});
  std::vector<ir::ValueId> gids;
  for (Var gv : grads) gids.push_back(gv.id);
  runtime::Program bwd = runtime::compile(*t.g, gids);
  runtime::Executor ef(fwd, default_allocator(), runtime::Context{threads});
  runtime::Executor eb(bwd, default_allocator(), runtime::Context{threads});
  for (auto* e : {&ef, &eb}) {
    for (size_t i = 0; i < data.size(); ++i) e->bind(t.x[i].id, data[i]);
    e->bind(t.r.id, r_data);
  }

  // (a) forward against the naive reference.
  ef.run();
  NT want = c.ref(ref_in);
  ASSERT_EQ(ef.get(t.out.id).shape(), want.shape);
  std::vector<float> got = ef.get(t.out.id).to_f32_vector();
  const double tol = 1e-5 * std::max(max_abs(want.v), 1e-6);
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::abs(got[i] - want.v[i]) > worst) worst = std::abs(got[i] - want.v[i]), at = i;
  EXPECT_LE(worst, tol) << "forward element " << at << ": got " << got[at] << ", want "
                        << want.v[at];
  if (c.h == 0) return;

  // (b) VJP against central differences of the f32 forward program, on a spread of elements.
  eb.run();
  auto loss_at = [&] {
    ef.run();
    return double(ef.get(t.loss.id).f32()[0]);
  };
  size_t gi = 0;
  for (size_t i = 0; i < c.in.size(); ++i) {
    if (c.in[i].is_int()) continue;
    std::vector<float> g = eb.get(grads[gi++].id).to_f32_vector();
    float* p = data[i].f32();
    const int64_t n = data[i].numel(), picks = std::min<int64_t>(n, threads == 1 ? 40 : 8);
    Vec fd, an;
    for (int64_t k = 0; k < picks; ++k) {
      int64_t j = k * n / picks;
      const float x0 = p[j], hi = float(x0 + c.h), lo = float(x0 - c.h);
      p[j] = hi;
      double lp = loss_at();
      p[j] = lo;
      double lm = loss_at();
      p[j] = x0;
      fd.push_back((lp - lm) / (double(hi) - double(lo)));
      an.push_back(g[size_t(j)]);
    }
    const double scale = std::max({max_abs(an), max_abs(fd), 1e-3});
    for (size_t k = 0; k < fd.size(); ++k)
      EXPECT_NEAR(an[k], fd[k], 2e-2 * scale)
          << "d/d x" << i << "[" << int64_t(k) * n / picks << "] of " << c.name;
  }
}

struct Param {
  size_t index;
  int threads;
};
void PrintTo(const Param& p, std::ostream* os) {
  *os << cases()[p.index].name << " with " << p.threads << " thread(s)";
}

std::vector<Param> params(int threads, bool (*pick)(const std::string&)) {
  std::vector<Param> out;
  for (size_t i = 0; i < cases().size(); ++i)
    if (pick(cases()[i].name)) out.push_back({i, threads});
  return out;
}

class OpTable : public testing::TestWithParam<Param> {};

TEST_P(OpTable, ForwardMatchesReferenceAndVjpMatchesFiniteDifferences) {
  check_case(cases()[GetParam().index], GetParam().threads);
}

std::string param_name(const testing::TestParamInfo<Param>& p) {
  return cases()[p.param.index].name;
}

bool all(const std::string&) {
  return true;
}
bool threaded(const std::string& n) {
  for (const char* k : {"large_", "matmul_batched", "matmul_ta_tb", "add_lead", "softmax_3d",
                        "layer_norm_3d", "cross_entropy_ignored", "attention_gqa", "permute",
                        "sum_outer", "max_last", "broadcast_to", "rope"})
    if (n.rfind(k, 0) == 0) return true;
  return false;
}

INSTANTIATE_TEST_SUITE_P(Threads1, OpTable, testing::ValuesIn(params(1, all)), param_name);
INSTANTIATE_TEST_SUITE_P(Threads2, OpTable, testing::ValuesIn(params(2, threaded)), param_name);

TEST(OpTableCoverage, EveryRegisteredForwardOpHasARow) {
  std::set<std::string> covered, names;
  for (const Case& c : cases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate row " << c.name;
    Traced t = trace(c);
    covered.insert(t.ops.begin(), t.ops.end());
  }
  // Not rows: "full" is the constant autodiff seeds gradients with (checked through every VJP);
  // the "redistribute" ops exist only in SPMD-lowered graphs and need a communicator (shard tests);
  // the KV-cache ops write into a pool the caller keeps and have no VJP: tests/infer checks them
  // against the training graph's attention.
  const std::set<std::string> not_rows{
      "full",     "redistribute",   "redistribute_start", "redistribute_wait",
      "kv_write", "paged_attention"};
  for (size_t i = 0; i < ir::kOpCount; ++i) {
    const std::string& op = ir::op_name(ir::OpId(i));
    bool backward = op.size() > 4 && op.compare(op.size() - 4, 4, "_bwd") == 0;
    if (backward || not_rows.count(op)) continue;  // *_bwd ops are built and checked by VJPs
    EXPECT_TRUE(covered.count(op)) << "op '" << op << "' is registered but has no row in the table";
  }
}

// The record fields other modules read instead of asking which op a node is.
TEST(OpRecord, FieldsAreConsistent) {
  int cheap = 0, keeps = 0, placed = 0;
  for (size_t i = 0; i < ir::kOpCount; ++i) {
    const ir::OpDef& d = ops::op_def(ir::OpId(i));
    SCOPED_TRACE(d.name);
    if (d.linearity == ir::Linearity::kSingle) {
      EXPECT_TRUE(std::count(d.linear_in.begin(), d.linear_in.end(), true) > 0);
    } else {
      EXPECT_TRUE(d.linear_in.empty()) << "linear_in is read for kSingle ops only";
    }
    // A piece or view of input 0 is linear in it, and so carries its partial sums.
    if (d.keeps_placement) {
      ++keeps;
      EXPECT_EQ(d.linearity, ir::Linearity::kJoint);
    }
    if (d.place) {  // it adjusts the factors of an einsum rule
      ++placed;
      EXPECT_NE(d.sharding.find("->"), std::string::npos);
    }
    if (!d.cheap_to_recompute) continue;
    ++cheap;
    // Cheap: elementwise (one output shaped as input 0, operands broadcast into it), few flops.
    EXPECT_FALSE(d.view);
    const ir::TensorType x{{4, 8}, DType::kF32}, row{{8}, DType::kF32};
    ir::Attrs at;
    at.set("to", int64_t(DType::kF32));
    std::vector<ir::TensorType> in{x}, out;
    while (out.empty() && in.size() <= 2) {
      try {
        out = d.infer(in, at);
      } catch (const Error&) {
        in.push_back(row);  // another arity
      }
    }
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0], x);
    const double flops = d.cost ? d.cost(in, out, at).flops : 0;
    EXPECT_LE(flops, 20.0 * double(numel(x.shape)));
  }
  EXPECT_GT(cheap, 0);
  EXPECT_GT(keeps, 0);
  EXPECT_GT(placed, 0);
}

}  // namespace
}  // namespace hp
