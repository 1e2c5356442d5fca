// The sharding table: one row per op, its inputs laid out per the op's sharding rule on a threads
// mesh (every factor of the rule split over 2 ranks, and every pair of factors over a 2x2 mesh),
// the graph with its backward propagated, lowered per rank and run, its outputs and gradients
// against the same graph on one device. Each *_bwd op is checked through its forward op's row, and
// the ops only lowering inserts (collectives, the vocabulary-parallel loss's parts) through the
// lowered graphs; every registered op must appear in some row. Also: the lowered graph's plan
// table, and strict mode rejecting a strategy rule that matches nothing.
// Not the preset matrix on whole models (spmd_tests.cpp, tests/e2e/spmd.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "hp/autodiff/grad.hpp"
#include "hp/comm/threads.hpp"
#include "hp/core/rng.hpp"
#include "hp/ir/op_def.hpp"
#include "hp/ops/ops.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/runtime/program.hpp"
#include "hp/shard/comm.hpp"
#include "hp/shard/lower.hpp"
#include "hp/shard/rule.hpp"
#include "hp/train/plan.hpp"

namespace hp::shard {
namespace {

using Vs = std::vector<Var>;

// An input: its shape, and for integer ids or targets the vocabulary (targets: every third
// position ignored). Float inputs are positive where `positive`.
struct In {
  Shape shape;
  int64_t vocab = 0;  // > 0: i64 ids in [0, vocab)
  bool targets = false;
  bool positive = false;
};

struct Row {
  std::string name;
  std::string op;  // the node whose rule lays the inputs out
  std::vector<In> in;
  std::function<Vs(const Vs&)> build;  // inputs -> the outputs compared
};

Row unary(const std::string& name, Var (*f)(Var)) {
  return {name, name, {{{4, 6}, 0, false, true}}, [f](const Vs& x) { return Vs{f(x[0])}; }};
}
Row binary(const std::string& name, Var (*f)(Var, Var)) {
  return {name, name, {{{4, 6}}, {{6}, 0, false, true}}, [f](const Vs& x) {
            return Vs{f(x[0], x[1])};
          }};
}

const std::vector<Row>& rows() {
  static const std::vector<Row> table = [] {
    std::vector<Row> t;
    for (auto [n, f] : std::vector<std::pair<std::string, Var (*)(Var)>>{{"neg", neg},
                                                                         {"exp", exp},
                                                                         {"log", log},
                                                                         {"sqrt", sqrt},
                                                                         {"rsqrt", rsqrt},
                                                                         {"tanh", tanh},
                                                                         {"gelu", gelu},
                                                                         {"silu", silu},
                                                                         {"relu", relu},
                                                                         {"square", square}})
      t.push_back(unary(n, f));
    t.push_back(binary("add", add));
    t.push_back(binary("sub", sub));
    t.push_back(binary("mul", mul));
    t.push_back(binary("div", div));
    t.push_back({"scale", "scale", {{{4, 6}}}, [](const Vs& x) { return Vs{scale(x[0], 2.5)}; }});
    t.push_back({"bias_gelu", "bias_gelu", {{{2, 4, 6}}, {{6}}}, [](const Vs& x) {
                   return Vs{bias_gelu(x[0], x[1])};
                 }});
    t.push_back({"cast", "cast", {{{4, 6}}}, [](const Vs& x) {
                   return Vs{cast(cast(x[0], DType::kBF16), DType::kF32)};
                 }});
    t.push_back({"sum", "reduce", {{{4, 6}}}, [](const Vs& x) { return Vs{sum(x[0], {1})}; }});
    t.push_back({"mean", "reduce", {{{2, 4, 6}}}, [](const Vs& x) {
                   return Vs{mean(x[0], {0, 2}, true)};
                 }});
    t.push_back({"max", "reduce", {{{4, 6}}}, [](const Vs& x) { return Vs{max(x[0], {1})}; }});
    t.push_back({"sum_to", "sum_to", {{{4, 6}}}, [](const Vs& x) {
                   return Vs{sum_to(x[0], {1, 6})};
                 }});
    t.push_back({"broadcast_to", "broadcast_to", {{{1, 6}}}, [](const Vs& x) {
                   return Vs{broadcast_to(x[0], {4, 6})};
                 }});
    t.push_back({"reshape_split", "reshape", {{{4, 6}}}, [](const Vs& x) {
                   return Vs{reshape(x[0], {4, 2, 3})};
                 }});
    t.push_back({"reshape_merge", "reshape", {{{2, 2, 6}}}, [](const Vs& x) {
                   return Vs{reshape(x[0], {4, 6})};
                 }});
    t.push_back({"permute", "permute", {{{2, 4, 6}}}, [](const Vs& x) {
                   return Vs{permute(x[0], {2, 0, 1})};
                 }});
    t.push_back(
        {"slice", "slice", {{{4, 6}}}, [](const Vs& x) { return Vs{slice(x[0], 1, 1, 5)}; }});
    t.push_back({"split", "split", {{{4, 6}}}, [](const Vs& x) { return split(x[0], 1, {2, 4}); }});
    t.push_back({"concat", "concat", {{{4, 2}}, {{4, 4}}}, [](const Vs& x) {
                   return Vs{concat({x[0], x[1]}, 1)};
                 }});
    t.push_back({"matmul", "matmul", {{{2, 4, 6}}, {{6, 8}}}, [](const Vs& x) {
                   return Vs{matmul(x[0], x[1])};
                 }});
    t.push_back({"matmul_ta_tb", "matmul", {{{6, 4}}, {{8, 6}}}, [](const Vs& x) {
                   return Vs{matmul(x[0], x[1], true, true)};
                 }});
    t.push_back({"softmax", "softmax", {{{4, 6}}}, [](const Vs& x) { return Vs{softmax(x[0])}; }});
    t.push_back({"layer_norm", "layer_norm", {{{2, 4, 6}}, {{6}}, {{6}}}, [](const Vs& x) {
                   return Vs{layer_norm(x[0], x[1], x[2], 1e-5)};
                 }});
    t.push_back({"add_layer_norm",
                 "add_layer_norm",
                 {{{2, 4, 6}}, {{2, 4, 6}}, {{6}}, {{6}}},
                 [](const Vs& x) {
                   auto [s, y] = add_layer_norm(x[0], x[1], x[2], x[3], 1e-5);
                   return Vs{s, y};
                 }});
    t.push_back({"rms_norm", "rms_norm", {{{2, 4, 6}}, {{6}}}, [](const Vs& x) {
                   return Vs{rms_norm(x[0], x[1], 1e-5)};
                 }});
    t.push_back({"embedding", "embedding", {{{10, 6}}, {{2, 4}, 10}}, [](const Vs& x) {
                   return Vs{embedding(x[0], x[1])};
                 }});
    t.push_back(
        {"cross_entropy", "cross_entropy", {{{2, 4, 10}}, {{2, 4}, 10, true}}, [](const Vs& x) {
           return Vs{cross_entropy(x[0], x[1])};
         }});
    t.push_back(
        {"rope", "rope", {{{2, 4, 2, 6}}}, [](const Vs& x) { return Vs{rope(x[0], 10000.0)}; }});
    t.push_back({"rope_positions", "rope", {{{2, 4, 2, 6}}, {{2, 4}, 16}}, [](const Vs& x) {
                   return Vs{rope(x[0], 10000.0, x[1])};
                 }});
    t.push_back({"attention",
                 "attention",
                 {{{2, 4, 4, 8}}, {{2, 4, 2, 8}}, {{2, 4, 2, 8}}},
                 [](const Vs& x) { return Vs{attention(x[0], x[1], x[2], 0.35)}; }});
    return t;
  }();
  return table;
}

Tensor fill(const In& in, uint64_t stream) {
  Tensor t(in.shape, in.vocab ? DType::kI64 : DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float u = float(rng::uniform(42, stream, uint64_t(i)));  // [0, 1)
    if (in.vocab)
      t.i64()[i] = in.targets && i % 3 == 1 ? -100 : int64_t(u * float(in.vocab)) % in.vocab;
    else
      t.f32()[i] = in.positive ? 0.5f + u : 2.0f * u - 1.0f;
  }
  return t;
}

// A row's graph: its inputs, then the outputs, a loss (each output times a fixed random probe of
// its shape, summed) and the loss's gradient for every float input.
struct Built {
  std::unique_ptr<ir::Graph> g = std::make_unique<ir::Graph>();
  std::vector<ir::ValueId> sources;  // the row's inputs, then the probes
  const ir::Node* node = nullptr;    // the first node of the row's op
  std::vector<Tensor> data;
  std::vector<ir::ValueId> outputs;
};

Built build(const Row& row) {
  Built b;
  Vs xs, wrt;
  for (size_t i = 0; i < row.in.size(); ++i) {
    const In& in = row.in[i];
    xs.push_back(b.g->input(std::string("x").append(std::to_string(i)),
                            {in.shape, in.vocab ? DType::kI64 : DType::kF32}));
    b.data.push_back(fill(in, i));
    if (!in.vocab) wrt.push_back(xs.back());
  }
  const Vs ys = row.build(xs);
  Var loss;
  for (size_t o = 0; o < ys.size(); ++o) {
    const Var probe =
        b.g->input(std::string("probe").append(std::to_string(o)), {ys[o].shape(), DType::kF32});
    xs.push_back(probe);
    b.data.push_back(fill({ys[o].shape()}, 100 + o));
    const Var l = sum(ys[o] * probe);
    loss = o ? loss + l : l;
  }
  for (const Var& y : ys) b.outputs.push_back(y.id);
  b.outputs.push_back(loss.id);
  for (const Var& d : autodiff::grad(loss, wrt)) b.outputs.push_back(d.id);
  for (const Var& x : xs) b.sources.push_back(x.id);
  for (const auto& n : b.g->nodes())
    if (!b.node && n.def->name == row.op) b.node = &n;
  HP_CHECK(b.node, row.name, " has no ", row.op, " node");
  return b;
}

std::vector<Tensor> run_one_device(const Built& b) {
  runtime::Program prog = runtime::compile(*b.g, b.outputs);
  runtime::Executor ex(prog, std::make_shared<Allocator>("device", 0), runtime::Context{1});
  for (size_t i = 0; i < b.sources.size(); ++i) ex.bind(b.sources[i], b.data[i]);
  ex.run();
  std::vector<Tensor> out;
  for (ir::ValueId v : b.outputs) out.push_back(ex.get(v).clone());
  return out;
}

// What one mesh axis splits: the (input, dim) pairs of the op's node that carry one factor of its
// rule (reshape, whose dims propagation matches itself: one dim of its input).
using Unit = std::vector<std::pair<size_t, size_t>>;

// The units of node n's rule that may split: factors not whole, of more than one element.
std::vector<Unit> splittable(const ir::Graph& g, const ir::Node& n, const NodeRule& r) {
  std::vector<Unit> out;
  if (r.reshape) {
    const Shape& s = g.value(n.inputs[0]).type.shape;
    for (size_t d = 0; d < s.size(); ++d)
      if (s[d] > 1) out.push_back({{0, d}});
    return out;
  }
  for (int f = 0; f < r.num_factors(); ++f) {
    if (r.whole[size_t(f)] || r.size[size_t(f)] < 2) continue;
    Unit u;
    for (size_t i = 0; i < r.in.size(); ++i)
      for (size_t d = 0; d < r.in[i].size(); ++d)
        if (r.in[i][d] == f) u.push_back({i, d});
    if (!u.empty()) out.push_back(u);
  }
  return out;
}

// The layouts of the row's inputs: unit k over mesh axis k, the rest replicated.
std::map<ir::ValueId, Layout> rule_layouts(const Built& b, const std::vector<Unit>& split,
                                           const Mesh& mesh) {
  std::map<ir::ValueId, Layout> out;
  for (ir::ValueId v : b.sources) out[v] = Layout::replicated(b.g->value(v).type.shape.size());
  for (size_t k = 0; k < split.size(); ++k)
    for (auto [i, d] : split[k])
      if (auto it = out.find(b.node->inputs[i]); it != out.end())
        it->second.dims[d] = {mesh.axis_names()[k]};
  return out;
}

// Runs the lowered graph on every rank of p.mesh; returns rank 0's outputs (all replicated, the
// same on every rank).
std::vector<Tensor> run_lowered(const Built& b, const Propagation& p, bool overlap) {
  const Mesh& mesh = p.mesh;
  std::vector<std::vector<Tensor>> got(size_t(mesh.size()));
  comm::ThreadWorld(int(mesh.size())).run([&](comm::Communicator& c) {
    const int rank = c.rank();
    RankComm rc(mesh, c);
    LowerOptions opt;
    opt.overlap = overlap;
    opt.bucket_bytes = 64;  // several buckets even on tiny gradients
    Lowered L = lower(*b.g, p, rank, opt);
    runtime::Program prog = runtime::compile(*L.graph, L.outputs);
    runtime::Executor ex(prog, std::make_shared<Allocator>("device", 0), runtime::Context{1});
    for (size_t i = 0; i < b.sources.size(); ++i) {
      const ir::ValueId v = b.sources[i];
      ex.bind(L.map[size_t(v)], local_piece(b.data[i], p.layout[size_t(v)], mesh, rank));
    }
    ex.set_comm_runner(&rc.runner(L.plans));
    ex.run();
    for (ir::ValueId v : L.outputs) got[size_t(rank)].push_back(ex.get(v).clone());
  });
  for (size_t r = 1; r < got.size(); ++r)
    for (size_t k = 0; k < got[0].size(); ++k)
      EXPECT_EQ(got[r][k].to_f32_vector(), got[0][k].to_f32_vector())
          << "rank " << r << " output " << k;
  return got[0];
}

void expect_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < want.size(); ++k) {
    ASSERT_EQ(got[k].shape(), want[k].shape()) << what << " output " << k;
    const std::vector<float> a = got[k].to_f32_vector(), e = want[k].to_f32_vector();
    double scale = 1;
    for (float x : e) scale = std::max(scale, double(std::fabs(x)));
    for (size_t j = 0; j < e.size(); ++j)
      ASSERT_NEAR(a[j], e[j], 1e-5 * scale) << what << " output " << k << " element " << j;
  }
}

// One way to lay a row's inputs out, propagated through its graph.
struct Case {
  std::string what;
  Propagation p;
};

// Every splittable unit of the row's op over 2 ranks, and every ordered pair over 2x2, the
// outputs delivered replicated.
std::vector<Case> cases_of(const Row& row, const Built& b) {
  const std::vector<Unit> us = splittable(*b.g, *b.node, node_rule(*b.g, *b.node));
  HP_CHECK(!us.empty(), row.name, ": nothing to split");
  std::vector<std::pair<Mesh, std::vector<size_t>>> splits;
  for (size_t f = 0; f < us.size(); ++f) splits.push_back({Mesh({"x"}, {2}), {f}});
  for (size_t f = 0; f < us.size(); ++f)
    for (size_t h = 0; h < us.size(); ++h)
      if (f != h) splits.push_back({Mesh({"x", "y"}, {2, 2}), {f, h}});
  std::vector<Layout> out_layouts;
  for (ir::ValueId v : b.outputs)
    out_layouts.push_back(Layout::replicated(b.g->value(v).type.shape.size()));
  Strategy s;
  const Topology topo = Topology::uniform(1e9, 1e-6);
  std::vector<Case> out;
  for (const auto& [mesh, split] : splits) {
    std::vector<Unit> units;
    std::string what = row.name + " on " + mesh.str() + " splitting";
    for (size_t k : split) {
      units.push_back(us[k]);
      what += " (";
      for (auto [i, d] : us[k])
        what.append(" in").append(std::to_string(i)).append(".").append(std::to_string(d));
      what += " )";
    }
    s.mesh = mesh;
    const auto sources = rule_layouts(b, units, mesh);
    out.push_back({what, propagate(*b.g, b.outputs, out_layouts, s, topo, sources)});
  }
  return out;
}

class ShardTable : public testing::TestWithParam<size_t> {};

TEST_P(ShardTable, LoweredOpMatchesOneDevice) {
  const Row& row = rows()[GetParam()];
  const Built b = build(row);
  const std::vector<Tensor> want = run_one_device(b);
  for (const Case& c : cases_of(row, b))
    for (bool overlap : {false, true})
      expect_close(run_lowered(b, c.p, overlap), want, c.what + (overlap ? " (overlapped)" : ""));
}

INSTANTIATE_TEST_SUITE_P(Ops, ShardTable, testing::Range(size_t(0), rows().size()),
                         [](const testing::TestParamInfo<size_t>& i) {
                           return rows()[i.param].name;
                         });

// The ops of every row's graph and of its lowered forms (every case, rank, with and without
// overlap) cover the op table.
TEST(ShardTableCoverage, EveryRegisteredOpHasARow) {
  std::set<std::string> names, seen;
  for (const Row& row : rows()) {
    EXPECT_TRUE(names.insert(row.name).second) << "duplicate row " << row.name;
    const Built b = build(row);
    for (const auto& n : b.g->nodes()) seen.insert(n.def->name);
    for (const Case& c : cases_of(row, b))
      for (int rank = 0; rank < int(c.p.mesh.size()); ++rank)
        for (bool overlap : {false, true}) {
          LowerOptions opt;
          opt.overlap = overlap;
          opt.bucket_bytes = 64;
          const Lowered L = lower(*b.g, c.p, rank, opt);
          for (const auto& n : L.graph->nodes()) seen.insert(n.def->name);
        }
  }
  // The KV-cache ops write their pool input in place, which this table's one-device comparison
  // cannot hold; tests/infer/infer_shard_tests.cpp checks their rules (tp2 and tp4 programs
  // against a one-device recompute).
  const std::set<std::string> unsharded{"kv_write", "paged_attention"};
  for (size_t i = 0; i < ir::kOpCount; ++i) {
    const std::string& op = ir::op_name(ir::OpId(i));
    if (unsharded.count(op)) continue;
    EXPECT_TRUE(seen.count(op)) << "op '" << op
                                << "' is in no graph of the sharding table: add a row";
  }
}

// The plan table: every redistribute node names a plan by index, and str() prints them.
TEST(LoweredPlans, NodesIndexTheTable) {
  const Built b = build(rows()[size_t(
      std::find_if(rows().begin(), rows().end(), [](const Row& r) { return r.name == "matmul"; }) -
      rows().begin())]);
  Strategy s;
  s.mesh = Mesh({"x"}, {2});
  std::map<ir::ValueId, Layout> src;
  src[b.sources[0]] = Layout::parse("[-, -, x]");  // contracted dim split: a partial product
  std::vector<Layout> outs;
  for (ir::ValueId v : b.outputs)
    outs.push_back(Layout::replicated(b.g->value(v).type.shape.size()));
  const Propagation p = propagate(*b.g, b.outputs, outs, s, Topology::uniform(1e9, 1e-6), src);
  LowerOptions opt;
  opt.overlap = false;
  const Lowered L = lower(*b.g, p, 1, opt);
  ASSERT_GT(L.plans.size(), 0u);
  EXPECT_EQ(int(L.plans.size()), L.collectives);
  std::set<int64_t> used;
  for (const auto& n : L.graph->nodes())
    if (n.def->name == "redistribute") used.insert(n.attrs.i("plan"));
  EXPECT_EQ(used.size(), L.plans.size());
  EXPECT_EQ(*used.rbegin(), int64_t(L.plans.size()) - 1);
  const std::string text = L.str();
  EXPECT_NE(text.find("plan 0: redistribute"), std::string::npos) << text;
  EXPECT_NE(text.find("all_reduce"), std::string::npos) << text;
}

// Every rule written in a strategy must match some named value: strict mode rejects one that
// matches nothing when the step is planned, naming its pattern; warn mode reports it.
// A partial sum read by two ops that need it whole is all-reduced once: the lowering reuses the
// moved value, performed() lists that one move, and the lowered graph counts one exchange.
TEST(LoweredPlans, AValueMovesOnceForAllItsReaders) {
  ir::Graph g;
  const Var x = g.param("x", {4, 8}), w = g.param("w", {8, 6});
  const Var y = matmul(x, w);  // contracted dim split below: y is a partial sum
  const Var out = exp(y) + tanh(y);
  Strategy s;
  s.mesh = Mesh({"x"}, {2});
  const std::map<ir::ValueId, Layout> src = {{x.id, Layout::parse("[-, x]")},
                                             {w.id, Layout::parse("[x, -]")}};
  const Propagation p =
      propagate(g, {out.id}, {Layout::replicated(2)}, s, Topology::uniform(1e9, 1e-6), src);
  int planned = 0;
  for (const Redistribution& r : p.redistributions) planned += r.value == y.id;
  EXPECT_EQ(planned, 2);  // one per reader
  int listed = 0;
  for (const Redistribution* r : performed(g, p)) listed += r->value == y.id;
  EXPECT_EQ(listed, 1);
  LowerOptions opt;
  opt.overlap = false;
  const Lowered L = lower(g, p, 0, opt);
  int nodes = 0;
  for (const auto& n : L.graph->nodes()) nodes += n.def->name == "redistribute";
  EXPECT_EQ(nodes, 1);
  EXPECT_EQ(L.exchanges, 1);
}

// Overlapped, two outputs' all-reduces share one bucket, started once both are produced; an
// output named unbucketed starts on its own right after its producer, so a program cut after it
// (a pipeline's forward) does not read the later output's inputs.
TEST(LoweredPlans, UnbucketedOutputsStartOnTheirOwn) {
  ir::Graph g;
  const Var x = g.param("x", {4, 8}), w1 = g.param("w1", {8, 6}), w2 = g.param("w2", {8, 6});
  const Var y1 = matmul(x, w1), y2 = matmul(tanh(x), w2);  // partial sums over x
  Strategy s;
  s.mesh = Mesh({"x"}, {2});
  const std::map<ir::ValueId, Layout> src = {{x.id, Layout::parse("[-, x]")},
                                             {w1.id, Layout::parse("[x, -]")},
                                             {w2.id, Layout::parse("[x, -]")}};
  const Propagation p = propagate(g, {y1.id, y2.id}, {Layout::replicated(2), Layout::replicated(2)},
                                  s, Topology::uniform(1e9, 1e-6), src);
  // The inputs of each redistribute_start, as the lowered graph's values.
  auto starts = [](const Lowered& L) {
    std::vector<std::vector<ir::ValueId>> out;
    for (const auto& n : L.graph->nodes())
      if (n.def->name == "redistribute_start") out.push_back(n.inputs);
    return out;
  };
  LowerOptions opt;  // overlap on, buckets of 2 MiB
  const Lowered both = lower(g, p, 0, opt);
  ASSERT_EQ(starts(both).size(), 1u);
  EXPECT_EQ(starts(both)[0].size(), 2u);
  opt.unbucketed = {y1.id};
  const Lowered apart = lower(g, p, 0, opt);
  const auto st = starts(apart);
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0], std::vector<ir::ValueId>{apart.map[size_t(y1.id)]});
  EXPECT_EQ(st[1], std::vector<ir::ValueId>{apart.map[size_t(y2.id)]});
}

TEST(StrictMode, PlanRejectsARuleThatMatchesNothing) {
  io::ModelConfig c;
  c.arch = io::Architecture::kGpt2;
  c.n_layer = 1;
  c.d_model = 16;
  c.n_head = 2;
  c.n_kv_head = 2;
  c.head_dim = 8;
  c.d_ff = 32;
  c.max_seq = 8;
  c.vocab = 32;
  c.tied_embeddings = true;
  c.validate();
  const std::string rules =
      "mesh: {dp: 2}\npresets: [dp]\nrules:\n  - match: \"h.*.no_such_weight\"\n    layout: "
      "[dp]\n";
  const auto topo = Topology::uniform(20e9, 5e-6);
  try {
    train::plan_step(c, parse_strategy(rules + "mode: strict\n", 2, "s.yaml"), 2, 8, topo);
    ADD_FAILURE() << "strict mode accepted a rule that matches nothing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("h.*.no_such_weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("matches no tensor"), std::string::npos) << e.what();
  }
  const auto plan =
      train::plan_step(c, parse_strategy(rules + "mode: warn\n", 2, "s.yaml"), 2, 8, topo);
  ASSERT_FALSE(plan->prop.warnings.empty());
  EXPECT_NE(plan->prop.warnings[0].find("h.*.no_such_weight"), std::string::npos);
}

}  // namespace
}  // namespace hp::shard
