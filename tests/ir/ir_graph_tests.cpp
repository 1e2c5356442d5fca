// The IR's own checks: type-inference errors that name the op and the shapes, Graph::verify and
// Graph::str, runtime::compile's liveness (buffer reuse, outputs kept, dead code dropped), and
// the executor's kernels taken from a backend (a missing one named with its op and backend), and
// ir::split_graph (a training step cut into forward, input-gradient and weight-gradient programs).
// Not the op table (ops_test.cpp runs every op against references and finite differences).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "hp/autodiff/grad.hpp"
#include "hp/backend/cpu/backend.hpp"
#include "hp/core/rng.hpp"
#include "hp/ir/op_def.hpp"
#include "hp/ir/split.hpp"
#include "hp/ops/ops.hpp"
#include "hp/ops/registry.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/runtime/program.hpp"

namespace hp {
namespace {

using ir::Graph;
using Vs = std::vector<Var>;
using Vec = std::vector<double>;

// ---- type inference errors ---------------------------------------------------------------------

// Runs f, expecting hp::Error whose message contains every string in `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << parts[0] << "'";
  } catch (const Error& e) {
    for (auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(Inference, ErrorsNameTheOpAndTheShapes) {
  Graph g;
  Var a = g.param("a", {5, 7}), b = g.param("b", {6, 3}), c = g.param("c", {3, 5, 7});
  Var ids = g.input("ids", {{3, 5}, DType::kI64});
  expect_error([&] { matmul(a, b); },
               {"[matmul]", "inner dims differ: 7 vs 6", "[5, 7]", "[6, 3]"});
  expect_error(
      [&] {
        matmul(c, g.param("d", {2, 7, 3}));
      },
      {"[matmul]", "batch dims", "[3, 5, 7]", "[2, 7, 3]"});
  expect_error([&] { add(a, b); }, {"[add]", "[5, 7]", "[6, 3]", "do not broadcast"});
  expect_error([&] { mul(a, ids); }, {"[mul]", "float", "i64[3, 5]"});
  expect_error([&] { layer_norm(c, b, b, 1e-5); }, {"[layer_norm]", "gamma must be [7]", "[6, 3]"});
  expect_error([&] { bias_gelu(c, b); }, {"[bias_gelu]", "[6, 3]"});
  expect_error([&] { embedding(a, a); }, {"[embedding]", "ids must be i64"});
  expect_error([&] { cross_entropy(a, ids); }, {"[cross_entropy]", "[3, 5]", "[5, 7]"});
  expect_error([&] { rope(c, 1e4); }, {"[rope]", "[3, 5, 7]"});
  Var q = g.param("q", {1, 4, 3, 8}), k = g.param("k", {1, 4, 2, 8});
  expect_error([&] { attention(q, k, k, 1.0); }, {"[attention]", "query heads 3", "kv heads 2"});
  expect_error(
      [&] {
        reshape(c, {4, -1});
      },
      {"[reshape]", "cannot reshape", "[3, 5, 7]", "[4, -1]"});
  expect_error([&] { slice(c, 1, 2, 9); }, {"[slice]", "out of bounds", "[3, 5, 7]"});
  expect_error([&] { concat({a, b}, 0); }, {"[concat]", "[6, 3]", "[5, 7]"});
  expect_error([&] { sum_to(c, {4, 1}); }, {"[sum_to]", "[3, 5, 7]", "[4, 1]"});
  expect_error([&] { permute(c, {0, 0, 1}); }, {"[permute]", "bad perm"});
  expect_error([&] { autodiff::grad(c, {c}); }, {"[autodiff]", "scalar"});
  EXPECT_TRUE(g.nodes().empty()) << "a failed op must not append a node";
}

// ---- Graph::verify and Graph::str ---------------------------------------------------------------

TEST(Graph, VerifyAcceptsTracedGraphsAndRejectsCorruptedOnes) {
  Graph g;
  Var a = g.param("a", {5, 7}), b = g.param("b", {3, 7});
  Var y = matmul(a, b, false, true);
  Var loss = sum(tanh(y));
  autodiff::grad(loss, {a, b});
  EXPECT_NO_THROW(g.verify());

  // A stale type: the value says one shape, re-inference says another.
  auto& val = const_cast<ir::Value&>(g.value(y.id));
  val.type.shape = {5, 4};
  expect_error([&] { g.verify(); }, {"[verify]", "matmul", "f32[5, 4]", "f32[5, 3]"});
  val.type.shape = {5, 3};
  // A use before definition: the first node reads the last node's output.
  auto& nodes = const_cast<std::vector<ir::Node>&>(g.nodes());
  ir::ValueId saved = nodes[0].inputs[0];
  nodes[0].inputs[0] = nodes.back().outputs[0];
  expect_error([&] { g.verify(); }, {"[verify]", "before it is defined"});
  nodes[0].inputs[0] = saved;
  EXPECT_NO_THROW(g.verify());
}

TEST(Graph, StrListsSourcesNodesAttrsTypesAndScopes) {
  Graph g;
  Var a = g.param("a", {5, 7}), b = g.param("b", {3, 7});
  Var ids = g.input("ids", {{2}, DType::kI64});
  g.set_scope("h.0");
  Var y = matmul(a, b, false, true);
  g.set_scope("");
  Var s = sum(y, {1});
  (void)ids;
  (void)s;
  std::string str = g.str();
  for (const char* want :
       {"%0 = param \"a\" : f32[5, 7]\n", "%1 = param \"b\" : f32[3, 7]\n",
        "%2 = input \"ids\" : i64[2]\n", "%3 = matmul(%0, %1) {ta=0, tb=1} : f32[5, 3]  # h.0\n",
        "%4 = reduce(%3) {axes=[1], keepdim=0, op=\"sum\"} : f32[5]\n"})
    EXPECT_NE(str.find(want), std::string::npos) << "missing: " << want << "in:\n" << str;
  // Multi-output nodes list every output and type.
  Var ln = layer_norm(a, g.param("gm", {7}), g.param("bt", {7}), 1e-5);
  EXPECT_NE(g.str().find("%" + std::to_string(ln.id) + ", %" + std::to_string(ln.id + 1) + ", %" +
                         std::to_string(ln.id + 2) + " = layer_norm("),
            std::string::npos)
      << g.str();
  EXPECT_NE(g.str().find(": f32[5, 7] f32[5] f32[5]"), std::string::npos) << g.str();
}

// An output taken from the executor keeps the run's values through the next run, and so does a
// view output of it, without a copy; the executor then holds no reference to the buffer handed
// over.
TEST(Executor, TakenOutputsOutliveTheNextRunAndAreReleased) {
  Graph g;
  Var x = g.input("x", {{4, 3}});
  Var a = tanh(x);
  Var flat = reshape(a, {-1});  // a view of a
  Var b = neg(x);
  const runtime::Program p = runtime::compile(g, {a.id, flat.id, b.id});
  auto device = std::make_shared<Allocator>("device", 0);
  runtime::Executor e(p, device, runtime::Context{1});
  auto input = [](float v) { return Tensor::from_f32({4, 3}, std::vector<float>(12, v)); };
  e.bind(x.id, input(0.5f));
  e.run();
  const void* buffer = e.get(a.id).raw();
  const size_t held_bytes = e.get(a.id).nbytes();
  std::vector<Tensor> held = e.take({a.id, flat.id});
  ASSERT_EQ(held.size(), 2u);
  EXPECT_EQ(held[0].raw(), buffer);  // handed over, not copied
  EXPECT_EQ(held[1].raw(), buffer);  // the view shares it
  EXPECT_EQ(held[1].shape(), (Shape{12}));
  e.bind(x.id, input(-2.0f));
  e.run();
  for (const Tensor& t : held)
    for (float v : t.to_f32_vector()) EXPECT_FLOAT_EQ(v, std::tanh(0.5f));
  EXPECT_NE(e.get(a.id).raw(), buffer);
  for (float v : e.get(a.id).to_f32_vector()) EXPECT_FLOAT_EQ(v, std::tanh(-2.0f));
  for (float v : e.get(flat.id).to_f32_vector()) EXPECT_FLOAT_EQ(v, std::tanh(-2.0f));
  for (float v : e.get(b.id).to_f32_vector()) EXPECT_FLOAT_EQ(v, 2.0f);
  // Once the caller lets go, the buffer goes back to the allocator: nothing in the executor
  // (not the view of it the earlier run made) still holds it.
  held = e.take({a.id, flat.id});
  const size_t live = device->live_bytes();
  held.clear();
  EXPECT_EQ(live - device->live_bytes(), held_bytes);
}

// ---- runtime::compile liveness ----------------------------------------------------------------

TEST(Liveness, ElementwiseChainReusesTwoBuffersAndKeepsOutputs) {
  constexpr int kChain = 24;
  const Shape s{61, 67};  // 4087 floats: not a multiple of 64 bytes
  const size_t bytes = (size_t(numel(s)) * 4 + 63) / 64 * 64;
  Graph g;
  Var x = g.input("x", {s});
  Vs chain{x};
  for (int i = 0; i < kChain; ++i) {
    Var prev = chain.back();
    chain.push_back(i % 3 == 0 ? tanh(prev) : i % 3 == 1 ? scale(prev, 1.25) : neg(prev));
  }
  Var mid = chain[kChain / 2];
  Var view = reshape(chain[5], {-1});  // an output that is a view of an intermediate
  Var last = chain.back();

  runtime::Program chain_only = runtime::compile(g, {last.id});
  EXPECT_EQ(chain_only.arena_bytes, 2 * bytes) << chain_only.str();
  EXPECT_EQ(chain_only.naive_bytes, (kChain - 1) * bytes);
  EXPECT_EQ(chain_only.output_bytes, bytes);
  EXPECT_LT(chain_only.arena_bytes * 8, chain_only.naive_bytes);

  runtime::Program p = runtime::compile(g, {last.id, mid.id, view.id});
  EXPECT_LE(p.arena_bytes, 2 * bytes) << p.str();
  EXPECT_EQ(p.output_bytes, 3 * bytes);
  EXPECT_EQ(p.offset[size_t(mid.id)], -1);  // outputs live in buffers of their own
  EXPECT_NE(p.str().find("free"), std::string::npos);

  // Dead code is dropped: asking for an early value compiles only its prefix.
  runtime::Program early = runtime::compile(g, {chain[3].id});
  size_t computes = 0;
  for (auto& in : early.instrs) computes += in.kind == runtime::InstrKind::kCompute;
  EXPECT_EQ(computes, 3u);

  Tensor xt(s, DType::kF32);
  for (int64_t i = 0; i < xt.numel(); ++i) xt.f32()[i] = float(rng::normal(3, 1, uint64_t(i)));
  runtime::Executor e(p, default_allocator(), runtime::Context{1});
  e.bind(x.id, xt);
  e.run();
  std::vector<Vec> want{Vec(xt.f32(), xt.f32() + xt.numel())};
  for (int i = 0; i < kChain; ++i) {
    Vec v = want.back();
    for (double& z : v) z = i % 3 == 0 ? std::tanh(z) : i % 3 == 1 ? 1.25 * z : -z;
    want.push_back(v);
  }
  for (auto [var, ref] :
       {std::pair{last, &want[kChain]}, {mid, &want[kChain / 2]}, {view, &want[5]}}) {
    std::vector<float> got = e.get(var.id).to_f32_vector();
    ASSERT_EQ(got.size(), ref->size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - (*ref)[i]));
    EXPECT_LE(worst, 1e-5) << "output %" << var.id << " was overwritten or wrong";
  }
}

// The CPU backend with one op's kernel missing.
class LacksOne final : public runtime::Backend {
 public:
  explicit LacksOne(ir::OpId missing) : missing_(missing) {}
  std::string_view name() const override { return "lacks-one"; }
  const runtime::Kernel* kernel(ir::OpId op) const override {
    return op == missing_ ? nullptr : cpu::backend().kernel(op);
  }
  void adamw(const runtime::Context& c, float* p, const float* g, float* m, float* v, int64_t n,
             const runtime::AdamWStep& s) const override {
    cpu::backend().adamw(c, p, g, m, v, n, s);
  }
  double sum_squares(const runtime::Context& c, const float* x, int64_t n) const override {
    return cpu::backend().sum_squares(c, x, n);
  }
  void scale(const runtime::Context& c, float* x, int64_t n, float s) const override {
    cpu::backend().scale(c, x, n, s);
  }
  void axpby(const runtime::Context& c, int64_t n, float alpha, const float* a, float beta,
             const float* b, float* out) const override {
    cpu::backend().axpby(c, n, alpha, a, beta, b, out);
  }

 private:
  ir::OpId missing_;
};

TEST(Backend, TheCpuBackendIsTheDefaultAndHasAKernelForEveryOpThatComputes) {
  EXPECT_EQ(&runtime::default_backend(), &cpu::backend());
  EXPECT_EQ(&runtime::backend("cpu"), &cpu::backend());
  EXPECT_THROW(
      {
        try {
          runtime::backend("tpu");
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("no backend 'tpu'"), std::string::npos) << e.what();
          EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  for (size_t i = 0; i < ir::kOpCount; ++i) {
    const ir::OpDef& d = ops::op_def(ir::OpId(i));
    EXPECT_EQ(d.id, ir::OpId(i));
    EXPECT_EQ(d.name, ir::op_name(d.id));
    EXPECT_EQ(ir::op_id(d.name), d.id);
    // Views alias their input's buffer: nothing to compute, so no kernel.
    EXPECT_EQ(cpu::backend().kernel(d.id) != nullptr, !d.view) << d.name;
  }
  EXPECT_THROW(ir::op_id("no_such_op"), Error);
}

TEST(Backend, SupportsNamesTheDtypesAKernelRunsOn) {
  const runtime::Backend& b = cpu::backend();
  EXPECT_TRUE(b.supports(ir::OpId::kMatmul, {DType::kF32, DType::kF32}));
  EXPECT_FALSE(b.supports(ir::OpId::kMatmul, {DType::kBF16, DType::kBF16}));
  EXPECT_TRUE(b.supports(ir::OpId::kEmbedding, {DType::kF32, DType::kI64}));
  EXPECT_TRUE(b.supports(ir::OpId::kCast, {DType::kBF16}));
  EXPECT_FALSE(b.supports(ir::OpId::kReshape, {DType::kF32}));  // a view: no kernel
  EXPECT_FALSE(LacksOne(ir::OpId::kTanh).supports(ir::OpId::kTanh, {DType::kF32}));
}

TEST(Backend, AMissingKernelIsAnErrorNamingTheOpAndTheBackendWhenTheExecutorIsBuilt) {
  Graph g;
  Var x = g.input("x", {{4, 8}, DType::kF32});
  g.set_scope("h.0");
  Var y = scale(tanh(x), 2.0);
  runtime::Program p = runtime::compile(g, {y.id});
  const LacksOne lacks_tanh(ir::OpId::kTanh);
  try {
    runtime::Executor e(p, default_allocator(), runtime::Context{1}, lacks_tanh);
    FAIL() << "built an executor without a tanh kernel";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backend 'lacks-one' has no kernel for op 'tanh'"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("h.0"), std::string::npos) << e.what();
  }
  // Lacking a kernel the program does not run is no error, and the kernels it has run.
  const LacksOne lacks_gelu(ir::OpId::kGelu);
  runtime::Executor e(p, default_allocator(), runtime::Context{1}, lacks_gelu);
  EXPECT_EQ(&e.backend(), &lacks_gelu);
  Tensor xt = Tensor::from_f32({4, 8}, std::vector<float>(32, 0.5f));
  e.bind(x.id, xt);
  e.run();
  EXPECT_NEAR(e.get(y.id).f32()[0], 2.0 * std::tanh(0.5), 1e-6);
}

// A two-layer step cut as a pipeline chunk's F (y), B (x's gradient) and W (the weights'): each
// node runs in exactly one part, the forward's values are read rather than recomputed, B computes
// no matmul weight's gradient, every wanted value is handed on by exactly one part (the layer
// norm's weight gradients come from the node B runs for x's), and the parts run in order
// reproduce the whole program's outputs bitwise.
TEST(Split, ForwardInputGradientAndWeightGradientsRunEachNodeOnceAndAgree) {
  Graph g;
  Var x = g.input("x", {{4, 8}}), w1 = g.param("w1", {8, 6}), w2 = g.param("w2", {6, 3});
  Var gamma = g.param("gamma", {6}), beta = g.param("beta", {6});
  Var g_out = g.input("g_out", {{4, 3}});
  Var y = matmul(layer_norm(tanh(matmul(x, w1)), gamma, beta, 1e-5), w2);
  Var loss = sum(mul(y, g_out));
  const Vs gr = autodiff::grad(loss, {w1, w2, gamma, beta, x});
  const std::vector<ir::ValueId> wanted_w{gr[0].id, gr[1].id, gr[2].id, gr[3].id};
  const auto parts = ir::split_graph(g, {{y.id}, {gr[4].id}, wanted_w});
  ASSERT_EQ(parts.size(), 3u);

  const runtime::Program whole =
      runtime::compile(g, {y.id, gr[0].id, gr[1].id, gr[2].id, gr[3].id, gr[4].id});
  size_t computed = 0, in_parts = 0;
  for (const auto& ins : whole.instrs) computed += ins.kind == runtime::InstrKind::kCompute;
  for (const auto& p : parts) in_parts += p.graph->nodes().size();
  EXPECT_EQ(in_parts, computed);  // nothing recomputed, nothing dropped
  for (const auto& [v, in] : parts[0].inputs) EXPECT_NE(v, g_out.id);  // F needs no gradient
  for (const auto& [v, o] : parts[1].outputs)
    EXPECT_TRUE(v != gr[0].id && v != gr[1].id);  // B leaves the matmul weights' to W
  for (Var v : gr) {
    int handed = 0;
    for (const auto& p : parts)
      for (const auto& o : p.outputs) handed += o.first == v.id;
    EXPECT_EQ(handed, 1) << "%" << v.id;
  }
  bool reads_forward = false;
  for (const auto& [v, in] : parts[1].inputs) reads_forward |= g.value(v).producer >= 0;
  EXPECT_TRUE(reads_forward);  // B reads F's values

  std::map<ir::ValueId, Tensor> src;
  for (Var v : {x, w1, w2, gamma, beta, g_out}) {
    std::vector<float> d(size_t(numel(v.shape())));
    for (size_t i = 0; i < d.size(); ++i) d[i] = float(rng::normal(3, uint64_t(v.id), i));
    src[v.id] = Tensor::from_f32(v.shape(), d);
  }
  runtime::Executor ref(whole, default_allocator(), runtime::Context{1});
  for (auto& [v, t] : src) ref.bind(v, t);
  ref.run();
  std::map<ir::ValueId, Tensor> vals = src;  // values of g, filled part by part
  std::vector<runtime::Program> progs;
  for (const auto& p : parts) {
    std::vector<ir::ValueId> outs;
    for (const auto& o : p.outputs) outs.push_back(o.second);
    progs.push_back(runtime::compile(*p.graph, outs));
  }
  for (size_t k = 0; k < parts.size(); ++k) {
    runtime::Executor ex(progs[k], default_allocator(), runtime::Context{1});
    for (const auto& [v, in] : parts[k].inputs) ex.bind(in, vals.at(v));
    ex.run();
    for (const auto& [v, o] : parts[k].outputs) vals[v] = ex.get(o).clone();
  }
  for (Var v : {y, gr[0], gr[1], gr[2], gr[3], gr[4]}) {
    const Tensor& want = ref.get(v.id);
    ASSERT_TRUE(vals.count(v.id)) << "%" << v.id << " computed by no part";
    EXPECT_EQ(0, std::memcmp(want.raw(), vals.at(v.id).raw(), want.nbytes())) << "%" << v.id;
  }
}

}  // namespace
}  // namespace hp
