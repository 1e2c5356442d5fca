// HyperShard: meshes, topologies, layouts with uneven splits, the redistribution planner checked
// against the reference simulator on random cases, and strategy files and presets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "hp/core/error.hpp"
#include "hp/shard/layout.hpp"
#include "hp/shard/mesh.hpp"
#include "hp/shard/redistribute.hpp"
#include "hp/shard/simulate.hpp"
#include "hp/shard/strategy.hpp"
#include "hp/shard/topology.hpp"

namespace fs = std::filesystem;

namespace hp::shard {
namespace {

// Runs `f` and returns the message of the hp::Error it throws ("" when it does not throw).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Mesh and topology

TEST(Mesh, CoordinatesAndGroups) {
  Mesh m({"dp", "tp"}, {2, 3});
  EXPECT_EQ(m.size(), 6);
  EXPECT_EQ(m.coords(4), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(m.rank_at({1, 2}), 5);
  EXPECT_EQ(m.group(4, "tp"), (std::vector<int>{3, 4, 5}));
  EXPECT_EQ(m.group(4, "dp"), (std::vector<int>{1, 4}));
  EXPECT_EQ(m.group(4, std::vector<std::string>{"tp", "dp"}), (std::vector<int>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(m.str(), "{dp: 2, tp: 3}");
}

TEST(Mesh, ExplicitRanksAndSubMeshes) {
  Mesh m({"pp", "dp", "tp"}, {2, 2, 2}, {8, 9, 10, 11, 12, 13, 14, 15});
  EXPECT_EQ(m.position(13), 5);
  EXPECT_EQ(m.group(13, "dp"), (std::vector<int>{13, 15}));
  Mesh stage = m.fix("pp", 1);
  EXPECT_EQ(stage.axis_names(), (std::vector<std::string>{"dp", "tp"}));
  EXPECT_EQ(stage.ranks(), (std::vector<int>{12, 13, 14, 15}));
  Mesh half = m.slice("tp", 1, 2);
  EXPECT_EQ(half.sizes(), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(half.ranks(), (std::vector<int>{9, 11, 13, 15}));
  Mesh sub = m.sub_mesh(13, {"tp"});
  EXPECT_EQ(sub.ranks(), (std::vector<int>{12, 13}));
  EXPECT_NE(error_of([&] { m.position(3); }).find("rank 3 is not in"), std::string::npos);
  EXPECT_NE(error_of([&] { m.axis_index("sp"); }).find("no axis 'sp'"), std::string::npos);
  EXPECT_NE(error_of([] { Mesh({"a", "a"}, {1, 2}); }).find("twice"), std::string::npos);
  EXPECT_NE(error_of([] { Mesh({"a"}, {2}, {0, 1, 2}); }).find("needs 2 ranks"), std::string::npos);
}

TEST(Topology, AxisMapsToSlowestLevelItSpans) {
  Topology t({{"core", 4, 100e9, 1e-6}, {"pod", 0, 10e9, 10e-6}});
  Mesh m({"node", "dev"}, {2, 4});
  EXPECT_EQ(t.axis_level(m, "dev").name, "core");
  EXPECT_EQ(t.axis_level(m, "node").name, "pod");
  // Axes laid the other way round: groups along the inner axis now cross nodes.
  Mesh swapped({"dev", "node"}, {4, 2});
  EXPECT_EQ(t.axis_level(swapped, "node").name, "core");
  EXPECT_EQ(t.axis_level(swapped, "dev").name, "pod");
  Topology local = calibrated_local_topology(5e9, 2e-6);
  EXPECT_EQ(local.levels().size(), 1u);
  EXPECT_EQ(local.axis_level(m, "node").bandwidth, 5e9);
  EXPECT_THROW(calibrated_local_topology(0, 1e-6), Error);
  EXPECT_THROW(Topology({{"a", 4, 1e9, 0}, {"b", 6, 1e9, 0}, {"c", 0, 1e9, 0}}), Error);
  EXPECT_THROW(Topology({{"a", 4, 1e9, 0}}), Error);
}

// ---------------------------------------------------------------------------------------------
// Layouts

TEST(Layout, NotationRoundTrips) {
  for (const char* s : {"[]", "[-]", "[dp, -]", "[(dp, tp), -, sp]", "[-, tp]+partial(dp)",
                        "[dp]+partial_max(sp, tp)", "[]+partial_min(a)"}) {
    EXPECT_EQ(Layout::parse(s).str(), s);
  }
  Layout l = Layout::parse(" [ (dp,tp) , - ] + partial_sum( z , a ) ");
  EXPECT_EQ(l.dims, (std::vector<std::vector<std::string>>{{"dp", "tp"}, {}}));
  EXPECT_EQ(l.partial, (std::vector<std::string>{"a", "z"}));
  EXPECT_EQ(l.str(), "[(dp, tp), -]+partial(a, z)");
  EXPECT_NE(error_of([] { Layout::parse("[dp, dp]"); }).find("used twice"), std::string::npos);
  EXPECT_NE(error_of([] { Layout::parse("[dp"); }).find("expected ']'"), std::string::npos);
  EXPECT_NE(error_of([] { Layout::parse("[dp]+avg(tp)"); }).find("partial"), std::string::npos);
  Mesh m({"dp"}, {2});
  EXPECT_NE(error_of([&] { Layout::parse("[tp]").check(m); }).find("no axis 'tp'"),
            std::string::npos);
}

TEST(Layout, UnevenSplitsAreExtentsNotPadding) {
  Mesh m({"dp", "tp"}, {2, 3});
  const Shape g{10, 7};
  // 10 rows over 4 would be 3,3,2,2; here dp then tp: 5 | 5, then 2,2,1 of each.
  Layout l = Layout::parse("[(dp, tp), -]");
  std::vector<int64_t> ext, off;
  for (int r = 0; r < 6; ++r) {
    Box b = local_box(g, l, m, r);
    off.push_back(b.offset[0]);
    ext.push_back(b.extent[0]);
    EXPECT_EQ(b.extent[1], 7);
  }
  EXPECT_EQ(ext, (std::vector<int64_t>{2, 2, 1, 2, 2, 1}));
  EXPECT_EQ(off, (std::vector<int64_t>{0, 2, 4, 5, 7, 9}));
  EXPECT_EQ(local_shape(g, Layout::parse("[tp, dp]"), m, 5), (Shape{3, 3}));  // 4,3,3 | 4,3
  EXPECT_EQ(local_shape({2}, Layout::parse("[tp]"), m, 2), (Shape{0}));  // more ranks than rows
  EXPECT_THROW(local_shape(g, Layout::parse("[tp]"), m, 0), Error);
}

// ---------------------------------------------------------------------------------------------
// Planner: known cases

const Topology kFlat = Topology::uniform(10e9, 5e-6);

std::vector<StepKind> kinds(const Plan& p) {
  std::vector<StepKind> k;
  for (const Step& s : p.steps) k.push_back(s.kind);
  return k;
}

Plan plan(const std::string& a, const std::string& b, const Shape& g, const Mesh& m,
          const Topology& t = kFlat) {
  return plan_redistribution(g, 4, Layout::parse(a), Layout::parse(b), m, t);
}

TEST(Redistribute, MinimalPlansForSimpleCases) {
  Mesh m({"dp", "tp"}, {2, 4});
  const Shape g{64, 32};
  EXPECT_TRUE(plan("[-, tp]", "[-, tp]", g, m).steps.empty());
  EXPECT_EQ(kinds(plan("[-, tp]", "[-, -]", g, m)), std::vector<StepKind>{StepKind::kAllGather});
  EXPECT_EQ(kinds(plan("[-, -]+partial(tp)", "[tp, -]", g, m)),
            std::vector<StepKind>{StepKind::kReduceScatter});
  EXPECT_EQ(kinds(plan("[-, -]+partial(tp)", "[-, -]", g, m)),
            std::vector<StepKind>{StepKind::kAllReduce});
  Plan slice = plan("[-, -]", "[dp, tp]", g, m);
  EXPECT_EQ(kinds(slice), (std::vector<StepKind>{StepKind::kSlice, StepKind::kSlice}));
  EXPECT_EQ(slice.time, 0);
  EXPECT_EQ(kinds(plan("[tp, -]", "[-, tp]", g, m)), std::vector<StepKind>{StepKind::kAllToAll});
  // All-gather bytes: each rank receives the three quarters of the rows it lacks.
  Plan ag = plan("[tp, -]", "[-, -]", g, m);
  EXPECT_EQ(ag.steps[0].bytes, 48 * 32 * 4);
  EXPECT_NEAR(ag.time, 3 * 5e-6 + 48.0 * 32 * 4 / 10e9, 1e-12);
  EXPECT_EQ(ag.lower_bound_bytes, ag.bytes);  // the all-gather moves only what must move
  const LowerBound lb = redistribution_lower_bound(g, 4, Layout::parse("[-, -]+partial(tp)"),
                                                   Layout::parse("[tp, -]"), m, kFlat);
  EXPECT_EQ(lb.bytes, 16 * 32 * 4);  // a quarter of the rows, fully reduced
}

TEST(Redistribute, NeverDetoursThroughReplicate) {
  Mesh m({"a", "b"}, {2, 2});
  const Shape g{16, 16};
  Plan p = plan("[a, b]", "[b, a]", g, m);
  EXPECT_EQ(kinds(p), std::vector<StepKind>{StepKind::kSendRecv}) << p.str();
  for (const Step& s : p.steps) EXPECT_NE(s.kind, StepKind::kAllGather) << p.str();
  Plan via_r = plan_redistribution(g, 4, Layout::parse("[a, b]"), Layout::parse("[b, a]"), m, kFlat,
                                   PlanOptions{false});
  EXPECT_LE(p.time, via_r.time);
  EXPECT_GE(p.time, p.lower_bound);
}

TEST(Redistribute, PrefersFastAxisForReplication) {
  // Two all-gathers are needed either way; with a slow outer level the plan still gathers both,
  // and the slow axis step dominates the estimate.
  Topology t({{"node", 2, 100e9, 1e-6}, {"pod", 0, 1e9, 1e-5}});
  Mesh m({"x", "y"}, {2, 2});
  Plan p = plan("[(x, y)]", "[-]", {1024}, m, t);
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(p.steps[0].axis, "y");  // the innermost first: only it can be gathered
  EXPECT_GT(p.steps[1].time, p.steps[0].time);
  EXPECT_GE(p.time, p.lower_bound);
  EXPECT_NE(p.str().find("lower bound"), std::string::npos);
}

TEST(Simulate, RejectsIllFormedSteps) {
  Mesh m({"a", "b"}, {2, 3});
  const Shape g{7};
  Step bad;
  bad.kind = StepKind::kAllGather;
  bad.axis = "a";  // not the innermost axis of dim 0: the gathered pieces do not tile
  bad.dim = 0;
  bad.before = Layout::parse("[(a, b)]");
  bad.after = Layout::parse("[b]");
  std::vector<float> global{0, 1, 2, 3, 4, 5, 6};
  Pieces in = scatter(global, g, bad.before, m);
  EXPECT_NE(error_of([&] { simulate_step(bad, in, g, m); }).find("cannot fill"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Planner: random property test against the simulator

struct Case {
  Mesh mesh;
  Shape shape;
  Layout from, to;
};

Layout random_layout(std::mt19937& rng, const Mesh& m, size_t rank) {
  Layout l = Layout::replicated(rank);
  std::vector<std::string> axes = m.axis_names();
  std::shuffle(axes.begin(), axes.end(), rng);
  for (const auto& a : axes) {
    const int r = int(rng() % 8);
    if (r < 2) continue;  // replicated
    if (r < 4 || rank == 0) {
      l.partial.push_back(a);
    } else {
      l.dims[rng() % rank].push_back(a);
    }
  }
  const ReduceOp ops[] = {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin};
  l.reduce = ops[rng() % 3];
  l.normalize();
  return l;
}

Case random_case(std::mt19937& rng) {
  const char* names[] = {"x", "y", "z"};
  const size_t ndim = 1 + rng() % 3;
  std::vector<std::string> axes;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < ndim; ++i) {
    axes.push_back(names[i]);
    sizes.push_back(1 + int64_t(rng() % 4));
  }
  Case c{Mesh(axes, sizes), {}, {}, {}};
  const size_t rank = rng() % 4;
  for (size_t d = 0; d < rank; ++d) c.shape.push_back(1 + int64_t(rng() % 7));
  c.from = random_layout(rng, c.mesh, rank);
  c.to = random_layout(rng, c.mesh, rank);
  return c;
}

// Pieces of `global` under `l`, with every partial value split into random addends: sums into
// random integers that add up to the value, max/min into values at or below/above it with the
// value itself at a random addend. Replicas (devices differing only in unused axes) hold equal
// addends, as a real partial value would.
Pieces random_partial_pieces(std::mt19937& rng, const std::vector<float>& global, const Shape& g,
                             const Layout& l, const Mesh& m) {
  Pieces p = scatter(global, g, l, m);
  if (l.partial.empty()) return p;
  int64_t addends = 1;
  for (const auto& a : l.partial) addends *= m.axis_size(a);
  const int64_t n = numel(g);
  // noise[k][i]: the offset of addend k at global element i; the winner holds the value.
  std::vector<std::vector<float>> noise(static_cast<size_t>(addends),
                                        std::vector<float>(static_cast<size_t>(n)));
  std::vector<int64_t> winner(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float sum = 0;
    for (int64_t k = 1; k < addends; ++k) {
      noise[size_t(k)][size_t(i)] = float(int(rng() % 9) - 4);
      sum += noise[size_t(k)][size_t(i)];
    }
    noise[0][size_t(i)] = -sum;
    winner[size_t(i)] = int64_t(rng() % uint64_t(addends));
  }
  for (int64_t pos = 0; pos < m.size(); ++pos) {
    const std::vector<int64_t> c = m.coords_at(pos);
    int64_t k = 0;
    for (const auto& a : l.partial) k = k * m.axis_size(a) + c[m.axis_index(a)];
    const Box b = local_box_at(g, l, m, pos);
    Shape idx = b.offset;
    for (int64_t e = 0; e < b.numel(); ++e) {
      int64_t gi = 0;
      for (size_t d = 0; d < g.size(); ++d) gi = gi * g[d] + idx[d];
      const float v = global[size_t(gi)];
      float& out = p[size_t(pos)][size_t(e)];
      const float off = std::fabs(noise[size_t(k)][size_t(gi)]) + 1;
      switch (l.reduce) {
        case ReduceOp::kSum:
          out = (k == 0 ? v : 0.0f) + noise[size_t(k)][size_t(gi)];
          break;
        case ReduceOp::kMax:
          out = winner[size_t(gi)] == k ? v : v - off;
          break;
        case ReduceOp::kMin:
          out = winner[size_t(gi)] == k ? v : v + off;
          break;
        case ReduceOp::kAvg:
          ADD_FAILURE() << "a layout is never partial by average";
          break;
      }
      for (size_t d = g.size(); d-- > 0;) {
        if (++idx[d] < b.offset[d] + b.extent[d]) break;
        idx[d] = b.offset[d];
      }
    }
  }
  return p;
}

// How often each step kind appeared in checked plans, so the random tests prove their reach.
std::map<StepKind, int> g_seen;

void check_case(std::mt19937& rng, const Case& c, const Topology& topo, bool send_recv) {
  SCOPED_TRACE(c.mesh.str() + " " + shape_str(c.shape) + " " + c.from.str() + " -> " + c.to.str() +
               (send_recv ? "" : " (no send/recv)"));
  std::vector<float> global(size_t(numel(c.shape)));
  for (float& v : global) v = float(int(rng() % 41) - 20);
  const Pieces in = random_partial_pieces(rng, global, c.shape, c.from, c.mesh);
  ASSERT_EQ(assemble(in, c.shape, c.from, c.mesh), global);
  const Plan p =
      plan_redistribution(c.shape, 4, c.from, c.to, c.mesh, topo, PlanOptions{send_recv});
  SCOPED_TRACE(p.str());
  Layout cur = p.from;
  for (const Step& s : p.steps) {
    ++g_seen[s.kind];
    ASSERT_EQ(s.before, cur);
    cur = s.after;
  }
  ASSERT_EQ(cur, p.to);
  const Pieces out = simulate(p, in, c.mesh);
  EXPECT_EQ(assemble(out, c.shape, c.to, c.mesh), global);
  if (c.to.partial.empty()) {
    EXPECT_EQ(out, scatter(global, c.shape, c.to, c.mesh));
  }
  EXPECT_GE(p.time, p.lower_bound * (1 - 1e-9));
  EXPECT_GE(p.bytes, p.lower_bound_bytes);
}

TEST(Redistribute, RandomPlansSimulateToTheTarget) {
  std::mt19937 rng(1234);
  const Topology two_level({{"near", 2, 50e9, 1e-6}, {"far", 0, 5e9, 2e-5}});
  for (int i = 0; i < 400; ++i) {
    const Case c = random_case(rng);
    check_case(rng, c, i % 2 ? kFlat : two_level, true);
    if (i % 4 == 0) check_case(rng, c, kFlat, false);
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
  for (StepKind k :
       {StepKind::kSlice, StepKind::kMakePartial, StepKind::kAllGather, StepKind::kReduceScatter,
        StepKind::kAllReduce, StepKind::kAllToAll, StepKind::kSendRecv}) {
    EXPECT_GT(g_seen[k], 0) << step_kind_name(k) << " never appeared";
  }
}

TEST(Redistribute, RandomSamePartialSimulates) {
  // Layouts that differ only in splits exercise all-to-all and send/recv with partial addends.
  std::mt19937 rng(99);
  for (int i = 0; i < 150; ++i) {
    Case c = random_case(rng);
    c.to.partial = c.from.partial;
    c.to.reduce = c.from.reduce;
    for (auto& d : c.to.dims) {
      std::erase_if(d, [&](const std::string& a) { return c.from.is_partial(a); });
    }
    c.to.normalize();
    check_case(rng, c, kFlat, true);
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

// ---------------------------------------------------------------------------------------------
// Strategies

class StrategyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("hp_shard_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& text) {
    const fs::path p = dir_ / "strategy.yaml";
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
};

std::vector<NamedTensor> gpt2_tensors(int64_t layers, int64_t d, int64_t v) {
  std::vector<NamedTensor> t{{"wte.weight", {v, d}}, {"wpe.weight", {64, d}}};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = "h." + std::to_string(i) + ".";
    for (const char* n : {"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias",
                          "attn.c_proj.bias", "mlp.c_proj.bias"}) {
      t.push_back({l + n, {d}});
    }
    t.push_back({l + "attn.c_attn.weight", {d, 3 * d}});
    t.push_back({l + "attn.c_attn.bias", {3 * d}});
    t.push_back({l + "attn.c_proj.weight", {d, d}});
    t.push_back({l + "mlp.c_fc.weight", {d, 4 * d}});
    t.push_back({l + "mlp.c_fc.bias", {4 * d}});
    t.push_back({l + "mlp.c_proj.weight", {4 * d, d}});
  }
  t.push_back({"ln_f.weight", {d}});
  t.push_back({"ln_f.bias", {d}});
  t.push_back({"tokens", {8, 32}});
  t.push_back({"targets", {8, 32}});
  t.push_back({"logits", {8, 32, v}});
  t.push_back({"loss", {}});
  return t;
}

std::vector<NamedTensor> llama_tensors(int64_t layers, int64_t d, int64_t f, int64_t v) {
  std::vector<NamedTensor> t{{"model.embed_tokens.weight", {v, d}}};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    t.push_back({l + "input_layernorm.weight", {d}});
    t.push_back({l + "post_attention_layernorm.weight", {d}});
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      t.push_back({l + "self_attn." + n + ".weight", {d, d}});
    }
    t.push_back({l + "mlp.gate_proj.weight", {f, d}});
    t.push_back({l + "mlp.up_proj.weight", {f, d}});
    t.push_back({l + "mlp.down_proj.weight", {d, f}});
  }
  t.push_back({"model.norm.weight", {d}});
  t.push_back({"lm_head.weight", {v, d}});
  t.push_back({"tokens", {8, 32}});
  t.push_back({"logits", {8, 32, v}});
  return t;
}

TEST(Glob, StarMatchesAnyRunIncludingDots) {
  EXPECT_TRUE(glob_match("h.*.attn.c_attn.weight", "h.11.attn.c_attn.weight"));
  EXPECT_TRUE(glob_match("*.bias", "h.0.mlp.c_fc.bias"));
  EXPECT_TRUE(glob_match("h.?.ln_1.*", "h.3.ln_1.weight"));
  EXPECT_FALSE(glob_match("h.?.ln_1.*", "h.12.ln_1.weight"));
  EXPECT_FALSE(glob_match("*.bias", "h.0.mlp.c_fc.weight"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_FALSE(glob_match("wte", "wte.weight"));  // whole-name match
}

TEST_F(StrategyFile, ParsesRulesPresetsModeAndOffload) {
  const fs::path p = write(R"(mesh: {dp: 2, tp: 2}
rules:
  - match: "h.*.attn.c_attn.weight"
    layout: [null, tp]       # dim 0 replicated, dim 1 split on tp
  - match: "*.bias"
    layout: [tp]
  - match: "wpe.weight"
    layout: "[(dp, tp), -]"
presets: [dp, tp]
mode: strict
offload: {optimizer: host, prefetch: 2}
)");
  const Strategy s = load_strategy(p, 4);
  EXPECT_EQ(s.mesh.str(), "{dp: 2, tp: 2}");
  EXPECT_EQ(s.mode, StrategyMode::kStrict);
  EXPECT_EQ(s.presets, (std::vector<std::string>{"dp", "tp"}));
  ASSERT_GE(s.rules.size(), 3u);
  EXPECT_NE(s.rules[0].where.find("strategy.yaml:3:"), std::string::npos) << s.rules[0].where;
  EXPECT_EQ(s.layout_for("h.0.attn.c_attn.weight", 2).str(), "[-, tp]");
  EXPECT_EQ(s.layout_for("h.0.attn.c_proj.bias", 1).str(), "[tp]");
  EXPECT_EQ(s.layout_for("wpe.weight", 2).str(), "[(dp, tp), -]");
  // From the presets: row-parallel c_proj, data-parallel tokens, vocabulary-parallel logits.
  EXPECT_EQ(s.layout_for("h.3.mlp.c_proj.weight", 2).str(), "[tp, -]");
  EXPECT_EQ(s.layout_for("tokens", 2).str(), "[dp, -]");
  EXPECT_EQ(s.layout_for("logits", 3).str(), "[dp, -, tp]");
  EXPECT_EQ(s.layout_for("ln_f.weight", 1).str(), "[-]");
  EXPECT_EQ(s.offload["optimizer"].as<std::string>(), "host");
  EXPECT_TRUE(validate(s, gpt2_tensors(2, 8, 50)).empty());

  const Strategy h = load_strategy(write("mesh: {dp: 2, fsdp: 2}\npresets: [hsdp]\n"), 4);
  EXPECT_EQ(h.presets, (std::vector<std::string>{"dp", "fsdp"}));
  EXPECT_EQ(h.layout_for("h.0.attn.c_proj.weight", 2).str(), "[fsdp, -]");
  EXPECT_NE(error_of([&] {
              load_strategy(write("mesh: {fsdp: 4}\npresets: [hsdp]\n"), 4);
            }).find("needs a mesh axis named 'dp'"),
            std::string::npos);
}

TEST_F(StrategyFile, ErrorsNameFileAndLine) {
  auto err = [&](const std::string& text, int64_t world = 4) {
    const fs::path p = write(text);
    return error_of([&] { load_strategy(p, world); });
  };
  std::string e = err("mesh: {dp: 2, tp: 2}\nrules:\n  - match: \"*.bias\"\n    layout: [sp]\n");
  EXPECT_NE(e.find("strategy.yaml:4:"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown axis 'sp'"), std::string::npos) << e;
  e = err("mesh: {dp: 4, tp: 2}\n");
  EXPECT_NE(e.find("strategy.yaml:1:"), std::string::npos) << e;
  EXPECT_NE(e.find("needs 8 devices but the world has 4"), std::string::npos) << e;
  e = err("mesh: {dp: 2}\npresets: [dp, tp]\n");
  EXPECT_NE(e.find("strategy.yaml:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("axis named 'tp'"), std::string::npos) << e;
  e = err("mesh: {dp: 2}\nmode: lenient\n");
  EXPECT_NE(e.find("strategy.yaml:2:"), std::string::npos) << e;
  e = err("mesh: {dp: 2}\nrulez: []\n");
  EXPECT_NE(e.find("rulez"), std::string::npos) << e;
  e = err("mesh: {dp: 2}\nrules:\n  - match: a\n    layout: \"[dp\"\n");
  EXPECT_NE(e.find("strategy.yaml:4:"), std::string::npos) << e;
  e = err("mesh: {tp: 2}\npresets: [sp]\n");
  EXPECT_NE(e.find("add 'tp'"), std::string::npos) << e;
  // Found by fuzz_strategy (tests/fuzz/corpus/strategy/regress_mesh_overflow.yaml): the product of
  // the axis sizes overflowed int64 before it was compared with the world.
  e = err("mesh: {a: 4294967296, b: 4294967296}\n");
  EXPECT_NE(e.find("strategy.yaml:1:"), std::string::npos) << e;
  EXPECT_NE(e.find("needs more than 9223372036854775807 devices"), std::string::npos) << e;
  // And by the same target (regress_map_key.yaml): an axis name that is not a plain name.
  e = err("mesh: {[x]: 2}\n");
  EXPECT_NE(e.find("strategy.yaml:1:8: a key must be a plain name"), std::string::npos) << e;
}

TEST_F(StrategyFile, ValidateAgainstNames) {
  const std::string body = R"(mesh: {dp: 2, tp: 2}
rules:
  - match: "h.*.attn.c_attn.weight"
    layout: [null, tp]
  - match: "transformer.h.*.mlp.c_fc.weight"
    layout: [null, tp]
  - match: "h.*.ln_1.weight"
    layout: [tp, null]
)";
  const Strategy strict = load_strategy(write(body + "mode: strict\n"), 4);
  const auto tensors = gpt2_tensors(2, 8, 50);
  std::string e = error_of([&] { validate(strict, tensors); });
  EXPECT_NE(e.find("strategy.yaml:5:"), std::string::npos) << e;
  EXPECT_NE(e.find("matches no tensor"), std::string::npos) << e;
  const Strategy warn = load_strategy(write(body + "mode: warn\n"), 4);
  // The unmatched pattern is a warning; the 2-entry layout on a 1-D weight is still an error.
  e = error_of([&] { validate(warn, tensors); });
  EXPECT_NE(e.find("strategy.yaml:7:"), std::string::npos) << e;  // the rule's line
  EXPECT_NE(e.find("has 2 entries but 'h.0.ln_1.weight'"), std::string::npos) << e;
  std::vector<NamedTensor> no_ln;
  for (const auto& t : tensors) {
    if (t.name.find("ln_1") == std::string::npos) no_ln.push_back(t);
  }
  no_ln.push_back({"h.0.ln_1.weight", {8, 8}});  // made 2-D: the rule now fits
  const auto warnings = validate(warn, no_ln);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("transformer.h.*"), std::string::npos);
}

TEST(Presets, ExpressionsBuildMeshesAndRules) {
  Strategy s = preset_strategy("dp2xtp2", 4);
  EXPECT_EQ(s.mesh.str(), "{dp: 2, tp: 2}");
  EXPECT_EQ(s.layout_for("h.0.attn.c_attn.weight", 2).str(), "[-, tp]");
  EXPECT_EQ(s.layout_for("h.0.attn.c_attn.bias", 1).str(), "[tp]");
  EXPECT_EQ(s.layout_for("h.0.attn.c_proj.weight", 2).str(), "[tp, -]");
  EXPECT_EQ(s.layout_for("h.0.attn.c_proj.bias", 1).str(), "[-]");
  EXPECT_EQ(s.layout_for("wte.weight", 2).str(), "[tp, -]");
  EXPECT_EQ(s.layout_for("model.layers.5.self_attn.k_proj.weight", 2).str(), "[tp, -]");
  EXPECT_EQ(s.layout_for("model.layers.5.self_attn.o_proj.weight", 2).str(), "[-, tp]");
  EXPECT_EQ(s.layout_for("model.layers.5.mlp.down_proj.weight", 2).str(), "[-, tp]");
  EXPECT_EQ(s.layout_for("lm_head.weight", 2).str(), "[tp, -]");
  EXPECT_EQ(s.layout_for("tokens", 2).str(), "[dp, -]");

  s = preset_strategy("fsdp2xtp2", 4);
  EXPECT_EQ(s.layout_for("h.0.mlp.c_proj.weight", 2).str(), "[(tp, fsdp), -]");
  EXPECT_EQ(s.layout_for("h.0.mlp.c_fc.weight", 2).str(), "[fsdp, tp]");
  EXPECT_EQ(s.layout_for("h.0.ln_2.bias", 1).str(), "[fsdp]");
  EXPECT_EQ(s.layout_for("tokens", 2).str(), "[fsdp, -]");

  s = preset_strategy("fsdp4", 4);
  EXPECT_EQ(s.layout_for("model.layers.0.mlp.up_proj.weight", 2).str(), "[fsdp, -]");
  s = preset_strategy("dp2", 2);
  EXPECT_EQ(s.layout_for("h.0.mlp.c_fc.weight", 2).str(), "[-, -]");
  EXPECT_EQ(s.layout_for("targets", 2).str(), "[dp, -]");

  s = preset_strategy("tp2+sp", 2);
  EXPECT_EQ(s.presets, (std::vector<std::string>{"tp", "sp"}));
  EXPECT_EQ(s.layout_for("h.1.ln_2", 3).str(), "[-, tp, -]");
  EXPECT_EQ(s.layout_for("model.layers.0.input_layernorm", 3).str(), "[-, tp, -]");
  EXPECT_EQ(s.layout_for("h.1.ln_2.weight", 1).str(), "[-]");

  s = preset_strategy("dpxtp2", 8);  // one size may be inferred
  EXPECT_EQ(s.mesh.str(), "{dp: 4, tp: 2}");
  s = preset_strategy("dp3xfsdp2xtp2+sp", 12);
  EXPECT_EQ(s.layout_for("tokens", 2).str(), "[(dp, fsdp), -]");
  EXPECT_EQ(s.layout_for("ln_f", 3).str(), "[(dp, fsdp), tp, -]");

  // hsdpN: fsdp within groups of N, dp across the groups (PyTorch's HSDP).
  s = preset_strategy("hsdp2", 8);
  EXPECT_EQ(s.mesh.str(), "{dp: 4, fsdp: 2}");
  EXPECT_EQ(s.presets, (std::vector<std::string>{"dp", "fsdp"}));
  EXPECT_EQ(s.layout_for("h.0.mlp.c_fc.weight", 2).str(), "[fsdp, -]");
  EXPECT_EQ(s.layout_for("tokens", 2).str(), "[(dp, fsdp), -]");
  s = preset_strategy("hsdp2xtp2", 8);
  EXPECT_EQ(s.mesh.str(), "{dp: 2, fsdp: 2, tp: 2}");

  for (const char* e : {"dp2xtp2", "tp4"}) {
    const Strategy t = preset_strategy(e, 4);
    EXPECT_TRUE(validate(t, gpt2_tensors(2, 16, 50)).empty()) << e;
    EXPECT_TRUE(validate(t, llama_tensors(2, 16, 40, 50)).empty()) << e;
  }
}

TEST(Presets, BadExpressionsAreRejected) {
  EXPECT_NE(
      error_of([] { preset_strategy("dp2xtp2", 8); }).find("uses 4 devices but the world has 8"),
      std::string::npos);
  // The examples an error offers are presets for the world at hand.
  for (int64_t world : {1, 2, 3, 4, 8}) {
    const std::string e = error_of([&] { preset_strategy("tp5", world); });
    const std::string head = "for a world of " + std::to_string(world) + ": ";
    const size_t at = e.find(head);
    ASSERT_NE(at, std::string::npos) << e;
    std::stringstream list(e.substr(at + head.size(), e.rfind(')') - at - head.size()));
    int n = 0;
    for (std::string ex; std::getline(list, ex, ',');) {
      if (ex.front() == ' ') ex.erase(0, 1);
      EXPECT_EQ(preset_strategy(ex, world).mesh.size(), world) << ex;
      ++n;
    }
    EXPECT_GE(n, 3) << e;
  }
  EXPECT_NE(error_of([] { preset_strategy("pp2", 2); }).find("unknown term 'pp2'"),
            std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("dp2+sp", 2); }).find("add 'tp'"), std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("tp2xtp2", 4); }).find("twice"), std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("dpxtp", 4); }).find("only one size"), std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("dpxtp3", 4); }).find("do not divide"),
            std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("tp0", 4); }).find("size 0"), std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("tp2+ep", 2); }).find("modifier"), std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("hsdp", 4); }).find("shard group size"),
            std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("hsdp2xfsdp2", 8); }).find("twice"), std::string::npos);
  EXPECT_NE(error_of([] { preset_strategy("hsdp3", 4); }).find("do not divide"), std::string::npos);
}

}  // namespace
}  // namespace hp::shard
