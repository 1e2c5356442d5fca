// The planner: cluster YAML, cost model pieces against hand-computed values, memory accounting,
// bubble formulas, the pruned search against the exhaustive one, strategies in and out.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "hp/core/error.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/planner/search.hpp"
#include "test_util.hpp"

namespace hp::planner {
namespace {

// A two-tier cluster: nodes of 4 devices at 100 GB/s, 10 GB/s between nodes; 1 PFLOP/s devices.
const char* kSmallCluster = R"(name: small
devices: 16
device: {name: test, peak_bf16_tflops: 1000, memory_gib: 0.25, memory_bandwidth_gbps: 1000}
host: {memory_gib: 16, bandwidth_gbps: 10}
tiers:
  - {name: node, devices: 4, bandwidth_gbps: 100, latency_us: 1}
  - {name: net, devices: 0, bandwidth_gbps: 10, latency_us: 10}
)";

io::ModelConfig gpt(int64_t layers, int64_t d, int64_t heads, int64_t seq = 1024) {
  io::ModelConfig m;
  m.arch = io::Architecture::kGpt2;
  m.n_layer = layers, m.d_model = d, m.n_head = heads, m.n_kv_head = heads;
  m.head_dim = d / heads, m.d_ff = 4 * d, m.max_seq = seq, m.vocab = 1024;
  m.validate();
  return m;
}

using test::error_of;

TEST(Cluster, PresetsParseAndNest) {
  EXPECT_EQ(cluster_presets(), "a100-selene, cloudmatrix384, gb200-nvl72, h100-dgx");
  const Cluster h = resolve_cluster("h100-dgx:16");
  EXPECT_EQ(h.devices, 16);
  EXPECT_DOUBLE_EQ(h.peak_flops, 989e12);
  ASSERT_EQ(h.tiers.size(), 2u);
  EXPECT_EQ(h.tiers[0].devices, 8);
  EXPECT_DOUBLE_EQ(h.tiers[0].bandwidth, 450e9);
  EXPECT_DOUBLE_EQ(h.tiers[1].bandwidth, 50e9);
  EXPECT_EQ(resolve_cluster("a100-selene").devices, 3072);
  EXPECT_EQ(resolve_cluster("gb200-nvl72").tiers[0].devices, 72);
  EXPECT_EQ(resolve_cluster("cloudmatrix384").tiers[0].devices, 384);
  EXPECT_NE(error_of([] { resolve_cluster("h100-dgx:12"); }).find("do not fill whole nvlink"),
            std::string::npos);
  EXPECT_NE(error_of([] { resolve_cluster("h100-dgx:x"); }).find("positive integer"),
            std::string::npos);
  EXPECT_NE(error_of([] { resolve_cluster("tpu-v9"); }).find("neither a preset"),
            std::string::npos);
}

TEST(Cluster, ErrorsNameFileAndKey) {
  std::string bad = kSmallCluster;
  bad.replace(bad.find("bandwidth_gbps: 100,"), 19, "bandwidth_gbps: -1");
  std::string e = error_of([&] { parse_cluster_text(bad, "c.yaml"); });
  EXPECT_NE(e.find("c.yaml:6"), std::string::npos) << e;
  EXPECT_NE(e.find("bandwidth_gbps must be positive"), std::string::npos) << e;
  e = error_of([&] { parse_cluster_text("name: x\ndevices: 1\n", "c.yaml"); });
  EXPECT_NE(e.find("c.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("device"), std::string::npos) << e;
  std::string typo = kSmallCluster;
  typo.replace(typo.find("latency_us: 10"), 14, "latncy_us: 10");
  e = error_of([&] { parse_cluster_text(typo, "c.yaml"); });
  EXPECT_NE(e.find("c.yaml:7"), std::string::npos) << e;
  EXPECT_NE(e.find("latncy_us"), std::string::npos) << e;
  std::string open = kSmallCluster;
  open.replace(open.find("devices: 0"), 10, "devices: 8");
  e = error_of([&] { parse_cluster_text(open, "c.yaml"); });
  EXPECT_NE(e.find("outermost tier must have devices: 0"), std::string::npos) << e;
}

// A calibrated cluster as hp calibrate writes it: an f32 peak and a measured efficiency table.
const char* kLocalCluster = R"(# measured
name: local
devices: 2
device: {name: cpu, peak_f32_tflops: 0.2, memory_gib: 8, memory_bandwidth_gbps: 20}
host: {memory_gib: 8, bandwidth_gbps: 5}
tiers:
  - {name: threads, devices: 0, bandwidth_gbps: 4, latency_us: 20}
efficiency:
  gemm:
    - {m: 1024, k: 256, n: 768, share: 0.8}
    - {m: 128, k: 64, n: 64, share: 0.4}
  attention: 0.6
  memory: 0.9
  network: 1
  overlap: false
  per_tensor_collectives: true
  pipeline_fused: 1.25
  pipeline_split: 1.5
  optimizer: 1.6
)";

TEST(Cluster, CalibrationRoundTrip) {
  const Cluster a = parse_cluster_text(kLocalCluster, "local.yaml");
  EXPECT_EQ(a.element_bytes, 4);
  EXPECT_DOUBLE_EQ(a.peak_flops, 0.2e12);
  ASSERT_TRUE(a.efficiency.has_value());
  ASSERT_EQ(a.efficiency->gemm_shapes.size(), 2u);
  EXPECT_DOUBLE_EQ(a.efficiency->gemm_shapes[0].share, 0.4);  // sorted by m*k*n
  EXPECT_FALSE(a.efficiency->overlap);
  EXPECT_TRUE(a.efficiency->per_tensor_collectives);
  const std::string text = cluster_yaml(a, "written\nby a test");
  EXPECT_EQ(text.rfind("# written\n# by a test\n", 0), 0u) << text;
  const Cluster b = parse_cluster_text(text, "again.yaml");
  EXPECT_EQ(cluster_yaml(b, "written\nby a test"), text);
  EXPECT_EQ(b.name, "local");
  EXPECT_EQ(b.devices, 2);
  EXPECT_EQ(b.element_bytes, 4);
  EXPECT_DOUBLE_EQ(b.peak_flops, a.peak_flops);
  EXPECT_DOUBLE_EQ(b.tiers[0].latency, 20e-6);
  EXPECT_DOUBLE_EQ(b.efficiency->attention, 0.6);
  EXPECT_DOUBLE_EQ(b.efficiency->memory, 0.9);
  EXPECT_FALSE(b.efficiency->overlap);
  EXPECT_TRUE(b.efficiency->per_tensor_collectives);
  EXPECT_DOUBLE_EQ(b.efficiency->pipeline_fused, 1.25);
  EXPECT_DOUBLE_EQ(b.efficiency->pipeline_split, 1.5);
  EXPECT_DOUBLE_EQ(b.efficiency->optimizer, 1.6);
  // A preset has no efficiency section and keeps its bf16 peak through the round trip.
  const Cluster h = resolve_cluster("h100-dgx:16");
  const Cluster h2 = parse_cluster_text(cluster_yaml(h), "h.yaml");
  EXPECT_EQ(h2.element_bytes, 2);
  EXPECT_FALSE(h2.efficiency.has_value());
  EXPECT_DOUBLE_EQ(h2.peak_flops, h.peak_flops);
  EXPECT_EQ(h2.tiers.size(), 2u);
  // Selene's runs kept the attention's scores in memory; the preset says so, and so does its
  // round trip.
  const Cluster a100 = resolve_cluster("a100-selene");
  ASSERT_TRUE(a100.efficiency.has_value());
  EXPECT_TRUE(a100.efficiency->attention_in_memory);
  EXPECT_DOUBLE_EQ(a100.efficiency->gemm, Efficiency{}.gemm);
  EXPECT_TRUE(parse_cluster_text(cluster_yaml(a100), "a.yaml").efficiency->attention_in_memory);
}

TEST(Cluster, CalibrationErrorsNameFileLineAndKey) {
  auto error_with = [](const std::string& from, const std::string& to) {
    std::string t = kLocalCluster;
    t.replace(t.find(from), from.size(), to);
    return error_of([&] { parse_cluster_text(t, "local.yaml"); });
  };
  std::string e = error_with("attention: 0.6", "attention: 1.5");
  EXPECT_NE(e.find("local.yaml:12"), std::string::npos) << e;
  EXPECT_NE(e.find("attention must be in (0, 1]"), std::string::npos) << e;
  e = error_with("share: 0.8", "shar: 0.8");
  EXPECT_NE(e.find("local.yaml:10"), std::string::npos) << e;
  EXPECT_NE(e.find("shar"), std::string::npos) << e;
  e = error_with("peak_f32_tflops: 0.2,", "peak_f32_tflops: 0.2, peak_bf16_tflops: 1,");
  EXPECT_NE(e.find("local.yaml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("one of peak_bf16_tflops and peak_f32_tflops"), std::string::npos) << e;
  e = error_with("overlap: false", "overlap: maybe");
  EXPECT_NE(e.find("local.yaml:15"), std::string::npos) << e;
  e = error_with("  memory: 0.9", "  memroy: 0.9");
  EXPECT_NE(e.find("memroy"), std::string::npos) << e;
  e = error_with("m: 128,", "m: -128,");
  EXPECT_NE(e.find("m must be positive"), std::string::npos) << e;
}

TEST(Cluster, LocalNamesCalibrate) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "hp_local_cluster";
  std::filesystem::remove_all(dir);
  const char* old = std::getenv("XDG_CONFIG_HOME");
  const std::string saved = old ? old : "";
  setenv("XDG_CONFIG_HOME", dir.c_str(), 1);
  EXPECT_EQ(local_cluster_path(), dir / "hp" / "cluster-local.yaml");
  std::string e = error_of([] { resolve_cluster("local:2"); });
  EXPECT_NE(e.find("run `hp calibrate` first"), std::string::npos) << e;
  EXPECT_NE(e.find((dir / "hp" / "cluster-local.yaml").string()), std::string::npos) << e;
  std::filesystem::create_directories(dir / "hp");
  std::ofstream(dir / "hp" / "cluster-local.yaml") << kLocalCluster;
  const Cluster c = resolve_cluster("local:1");
  EXPECT_EQ(c.devices, 1);
  EXPECT_EQ(c.element_bytes, 4);
  if (old)
    setenv("XDG_CONFIG_HOME", saved.c_str(), 1);
  else
    unsetenv("XDG_CONFIG_HOME");
  std::filesystem::remove_all(dir);
}

TEST(Cost, GemmShareByShape) {
  const Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  const Efficiency& e = *cl.efficiency;
  // A measured shape: its own share.
  EXPECT_DOUBLE_EQ(e.gemm_share(128, 64, 64), 0.4);
  EXPECT_DOUBLE_EQ(e.gemm_share(1024, 256, 768), 0.8);
  // Halfway in (log m, log k, log n) between the two shapes: halfway between their shares.
  EXPECT_NEAR(e.gemm_share(std::sqrt(128.0 * 1024), std::sqrt(64.0 * 256), std::sqrt(64.0 * 768)),
              0.6, 1e-12);
  // Elsewhere the nearer shape dominates (weights 1 / d^4), within the measured shares.
  const double near_small = e.gemm_share(64, 64, 64), near_big = e.gemm_share(4096, 1024, 768);
  EXPECT_GT(near_small, 0.4);
  EXPECT_LT(near_small, 0.401);
  EXPECT_LT(near_big, 0.8);
  EXPECT_GT(near_big, 0.79);
  // By shape, not by size: the same m*k*n in two shapes, each nearer one measured shape.
  Efficiency two;
  two.gemm_shapes = {{512, 256, 1024, 0.5}, {1024, 256, 512, 0.9}};
  EXPECT_LT(two.gemm_share(512, 256, 900), 0.6);
  EXPECT_GT(two.gemm_share(900, 256, 512), 0.8);
  // Without a table every shape gets the one share, and the block's GEMMs take
  // tokens x flops / tp / (peak x share), as before.
  Efficiency flat;
  EXPECT_DOUBLE_EQ(flat.gemm_share(1, 1, 1), flat.gemm);
  const BlockCost b = block_cost(gpt(2, 256, 4, 128), 128);
  EXPECT_DOUBLE_EQ(block_gemm_s(b, 1024, 2, 1e12, flat), 1024 * b.gemm_flops / 2 / (1e12 * 0.7));
  // tp splits QKV's and MLP in's columns, the output projection's and MLP out's inner dim.
  const auto [qk, qn] = b.matrices[0];
  const auto [ok, on] = b.matrices[1];
  const auto [ik, in] = b.matrices[2];
  const auto [fk, fn] = b.matrices[3];
  const double by_shape =
      2 * 1024 / 2.0 / 0.2e12 *
      (qk * qn / e.gemm_share(1024, qk, qn / 2) + ok * on / e.gemm_share(1024, ok / 2, on) +
       ik * in / e.gemm_share(1024, ik, in / 2) + fk * fn / e.gemm_share(1024, fk / 2, fn));
  EXPECT_NEAR(block_gemm_s(b, 1024, 2, 0.2e12, e), by_shape, 1e-12 * by_shape);
  // f32: twice the activation bytes of bf16.
  const BlockCost f = block_cost(gpt(2, 256, 4, 128), 128, 4);
  EXPECT_DOUBLE_EQ(f.act_split, 2 * b.act_split);
  EXPECT_DOUBLE_EQ(f.elementwise_whole, 2 * b.elementwise_whole);
}

TEST(Cost, FitBlockGivesEachTermItsMeasuredTime) {
  Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  const Efficiency before = *cl.efficiency;
  const io::ModelConfig m = gpt(1, 256, 4, 128);
  const double tokens = 512;
  const double scale = fit_block_efficiency(cl, m, tokens, 128, {0.03, 0.8, 0.1, 0.04});
  const Efficiency& e = *cl.efficiency;
  const BlockCost bc = block_cost(m, 128, cl.element_bytes);
  // The GEMMs (forward and backward), the attention (four forwards' FLOPs), the element-wise
  // bytes on the model's width and those on the split width take the block's measured parts.
  EXPECT_NEAR(3 * block_gemm_s(bc, tokens, 1, cl.peak_flops, e), 0.8 * 0.03, 1e-12);
  EXPECT_NEAR(4 * tokens * bc.attn_flops / (cl.peak_flops * e.attention), 0.1 * 0.03, 1e-12);
  EXPECT_NEAR(3 * tokens * bc.elementwise_whole / (cl.memory_bandwidth * e.memory), 0.04 * 0.03,
              1e-12);
  EXPECT_NEAR(3 * tokens * bc.elementwise_split / (cl.memory_bandwidth * e.memory_split),
              (1 - 0.8 - 0.1 - 0.04) * 0.03, 1e-12);
  // One factor over the whole table: the shapes keep their ratios.
  ASSERT_EQ(e.gemm_shapes.size(), before.gemm_shapes.size());
  EXPECT_LT(scale, 1);
  for (size_t i = 0; i < e.gemm_shapes.size(); ++i)
    EXPECT_DOUBLE_EQ(e.gemm_shapes[i].share, before.gemm_shapes[i].share * scale);
  // The estimate charges the split width at its own share: tp2 (norms whole, the rest split)
  // against one device, the same blocks and rows per device.
  Workload w{gpt(2, 256, 4, 128), 8, 128};
  Config tp2;
  tp2.tp = 2;
  tp2.micro_batch = 8;
  Efficiency slow_split = e;
  slow_split.memory_split = e.memory_split / 2;
  const double extra = 3 * 2 * 8 * 128 * bc.elementwise_split / 2 /
                       (cl.memory_bandwidth * e.memory_split);  // twice the time, 2 blocks
  EXPECT_NEAR(estimate(w, cl, tp2, slow_split).compute_s - estimate(w, cl, tp2, e).compute_s, extra,
              1e-9 * extra);
  EXPECT_NE(error_of([&] {
              fit_block_efficiency(cl, m, tokens, 128, {0.03, 0.8, 0.1, 0.1});
            }).find("fit_block_efficiency: a block of 0.03 s, 0.8 GEMMs, 0.1 attention, 0.1 on"),
            std::string::npos);
}

// The block's time per row at another micro-batch: its GEMM share re-rated shape by shape by the
// table, the rest alike per row; a table without shapes (one share) rates every size alike.
TEST(Cost, BlockRowRatioReRatesTheGemmsOnly) {
  Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  const io::ModelConfig m = gpt(1, 256, 4, 128);
  const BlockCost bc = block_cost(m, 128, cl.element_bytes);
  const auto per_row = [&](double rows) {
    return block_gemm_s(bc, rows * 128, 1, cl.peak_flops, *cl.efficiency) / rows;
  };
  const double gemm_ratio = per_row(2) / per_row(4);
  ASSERT_NE(gemm_ratio, 1.0);  // the table rates 256-row GEMMs apart from 512-row ones
  EXPECT_NEAR(block_row_ratio(cl, m, 128, 0.8, 2, 4), 0.8 * gemm_ratio + 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(block_row_ratio(cl, m, 128, 0.0, 2, 4), 1.0);
  EXPECT_DOUBLE_EQ(block_row_ratio(cl, m, 128, 0.8, 4, 4), 1.0);
  cl.efficiency->gemm_shapes.clear();
  EXPECT_NEAR(block_row_ratio(cl, m, 128, 0.8, 2, 4), 1.0, 1e-12);
  EXPECT_NE(error_of([&] { block_row_ratio(cl, m, 128, 1.5, 2, 4); }).find("GEMM share 1.5"),
            std::string::npos);
}

TEST(Search, RuntimeRestrictions) {
  const Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  Workload w{gpt(4, 256, 4, 128), 8, 128};
  Space s;
  s.pipeline_alone = true;
  s.one_microbatch = true;
  s.zeros = {Zero::kNone, Zero::kFull};
  SearchOptions o;
  o.top = 1000;
  o.efficiency = *cl.efficiency;
  Cluster four = cl;
  four.devices = 4;
  const SearchResult r = search(w, four, s, o);
  ASSERT_FALSE(r.plans.empty());
  bool pp = false, full = false;
  for (const Plan& p : r.plans) {
    const Config& c = p.config;
    EXPECT_NE(c.zero, Zero::kOptimizer) << c.strategy();
    EXPECT_TRUE(c.pp == 1 || c.pp == 4) << c.strategy();
    if (c.pp == 1) {
      EXPECT_EQ(c.micro_batch * c.dp, 8) << c.strategy();
    }
    pp = pp || c.pp == 4;
    full = full || c.zero == Zero::kFull;
  }
  EXPECT_TRUE(pp);
  EXPECT_TRUE(full);
  // Without the restrictions the same search proposes what they exclude.
  const SearchResult open = search(w, four, {}, o);
  bool excluded = false;
  for (const Plan& p : open.plans)
    excluded = excluded || p.config.zero == Zero::kOptimizer || p.config.pp == 2 ||
               (p.config.pp == 1 && p.config.micro_batch * p.config.dp < 8);
  EXPECT_TRUE(excluded);
}

// A schedule set is the pipelined layouts' choice: a layout without a pipeline stays in the search
// (a published run's options name its schedules whatever its pp), with no schedule.
TEST(Search, ScheduleSetLeavesUnpipelinedLayoutsAlone) {
  const Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  Workload w{gpt(4, 256, 4, 128), 8, 128};
  Cluster four = cl;
  four.devices = 4;
  SearchOptions o;
  o.top = 1000;
  o.efficiency = *cl.efficiency;
  Space s;
  s.schedules = {Schedule::k1F1B, Schedule::kInterleaved};
  const SearchResult r = search(w, four, s, o);
  bool flat = false, piped = false;
  for (const Plan& p : r.plans) {
    const Config& c = p.config;
    if (c.pp == 1) {
      EXPECT_EQ(c.schedule, Schedule::kNone) << c.strategy();
      flat = true;
    } else {
      EXPECT_TRUE(c.schedule == Schedule::k1F1B || c.schedule == Schedule::kInterleaved)
          << c.strategy();
      piped = true;
    }
  }
  EXPECT_TRUE(flat);
  EXPECT_TRUE(piped);
  s.dp = 2, s.tp = 2, s.pp = 1;  // fixed degrees without a pipeline
  const SearchResult fixed = search(w, four, s, o);
  ASSERT_FALSE(fixed.plans.empty());
  EXPECT_EQ(fixed.plans[0].config.schedule, Schedule::kNone);
}

TEST(Cost, BlockOfGptByHand) {
  const BlockCost b = block_cost(gpt(2, 4, 2, 8), 8);
  EXPECT_DOUBLE_EQ(b.gemm_flops, 24 * 4 * 4);    // 2 x 12 h^2
  EXPECT_DOUBLE_EQ(b.attn_flops, 4 * 8 * 4);     // QK^T and AV: 4 s h
  EXPECT_DOUBLE_EQ(b.act_split, 24 * 4);         // Korthikanti's 24 s b h
  EXPECT_DOUBLE_EQ(b.act_whole, 10 * 4);         // and 10 s b h
  EXPECT_DOUBLE_EQ(b.params, 12 * 16 + 13 * 4);  // 12 h^2 + biases 9h + norms 4h
}

TEST(Cost, HardwareFlopsAreMegatronsFormula) {
  // Narayanan et al. 2021, eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh) with full recomputation.
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  Workload w{gpt(8, 256, 8), 64, 512};
  Config c;
  c.dp = 16, c.recompute = Recompute::kFull;
  const Estimate e = estimate(w, cl, c);
  const double B = 64, s = 512, l = 8, h = 256, V = 1024;
  const double megatron = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
  EXPECT_NEAR(e.hardware_flops * 16, megatron, megatron * 1e-12);
  const double params = double(w.model.parameter_count());
  EXPECT_NEAR(model_flops(w), B * s * (6 * params + 12 * l * s * h), 1);
}

TEST(Cost, CollectivesAcrossTiers) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  const double B = 1e9, in = 100e9, out = 10e9;
  // 4 devices in one node: a ring over the node's links.
  EXPECT_NEAR(all_reduce_s(cl, 4, 1, B), 2 * (3.0 / 4 * B / in + 3e-6), 1e-12);
  // 16 devices, consecutive: a ring of 4 in each node, then of 4 nodes over a quarter each.
  EXPECT_NEAR(all_gather_s(cl, 16, 1, B), 3.0 / 4 * B / in + 3e-6 + 3.0 / 4 * B / 4 / out + 3e-5,
              1e-12);
  // 4 devices 4 apart: one per node, all over the network.
  EXPECT_NEAR(all_gather_s(cl, 4, 4, B), 3.0 / 4 * B / out + 3e-5, 1e-12);
  // 2 devices 2 apart share a node.
  EXPECT_NEAR(all_gather_s(cl, 2, 2, B), 0.5 * B / in + 1e-6, 1e-12);
  EXPECT_EQ(all_reduce_s(cl, 1, 1, B), 0);
  EXPECT_EQ(p2p_tier(cl, 4, 1).name, "node");
  EXPECT_EQ(p2p_tier(cl, 2, 4).name, "net");
}

TEST(Cost, BubbleAndInflight) {
  EXPECT_DOUBLE_EQ(bubble_microbatches(Schedule::kGpipe, 4, 1), 3);
  EXPECT_DOUBLE_EQ(bubble_microbatches(Schedule::k1F1B, 4, 1), 3);
  EXPECT_DOUBLE_EQ(bubble_microbatches(Schedule::kInterleaved, 4, 2), 1.5);
  EXPECT_DOUBLE_EQ(bubble_microbatches(Schedule::kZbH1, 4, 1), 1);
  EXPECT_DOUBLE_EQ(bubble_microbatches(Schedule::kNone, 1, 1), 0);
  // As a share of the step, 1F1B's bubble is (p-1)/(m+p-1).
  const double m = 8, p = 4, b = bubble_microbatches(Schedule::k1F1B, 4, 1);
  EXPECT_DOUBLE_EQ(b / (m + b), (p - 1) / (m + p - 1));
  EXPECT_DOUBLE_EQ(inflight_microbatches(Schedule::kGpipe, 4, 8, 1), 8);
  EXPECT_DOUBLE_EQ(inflight_microbatches(Schedule::k1F1B, 4, 8, 1), 4);
  EXPECT_DOUBLE_EQ(inflight_microbatches(Schedule::k1F1B, 4, 2, 1), 2);
  EXPECT_DOUBLE_EQ(inflight_microbatches(Schedule::kInterleaved, 4, 8, 2), 4 * (1 + 3.0 / 8));
}

// The closed forms against mpmd's event simulator under equal costs (F = B = W): exact for gpipe,
// 1f1b, interleaved and zb-h1; zbv's (p-1)/6 is an upper bound of what the simulator finds.
TEST(Cost, BubbleMatchesTheEventSimulator) {
  const std::pair<mpmd::ScheduleKind, Schedule> kinds[] = {
      {mpmd::ScheduleKind::kGpipe, Schedule::kGpipe},
      {mpmd::ScheduleKind::k1F1B, Schedule::k1F1B},
      {mpmd::ScheduleKind::kInterleaved, Schedule::kInterleaved},
      {mpmd::ScheduleKind::kZbH1, Schedule::kZbH1},
      {mpmd::ScheduleKind::kZbV, Schedule::kZbV}};
  for (const auto& [mk, k] : kinds)
    for (int p : {2, 4})
      for (int m : {p, 2 * p, 4 * p}) {
        const mpmd::Schedule s = mpmd::make_schedule(mk, p, m, 2);
        const mpmd::Simulation sim = mpmd::simulate(s, mpmd::CostModel::uniform(s.graph));
        const double closed = bubble_microbatches(k, p, k == Schedule::kInterleaved ? 2 : 1);
        SCOPED_TRACE(sim.str());
        if (k == Schedule::kZbV)
          EXPECT_LE(sim.bubble_vs_ideal() * m, closed + 1e-9);
        else
          EXPECT_NEAR(sim.bubble_vs_ideal() * m, closed, 1e-9);
      }
}

// The bubble the estimate charges: the generated schedule simulated, the first chunk's backward
// in W. Above the closed forms where they assume too much: fewer micro-batches than stages (zb-h1,
// p 4, m 2: 5/3 of a micro-batch, not 1), and zbv's first chunk, whose weight gradients come
// last (p 2: 1/3, not 1/6); equal to them otherwise; the closed form past the simulated size.
TEST(Cost, SimulatedBubble) {
  EXPECT_NEAR(simulated_bubble_microbatches(Schedule::kZbH1, 4, 1, 2), 5.0 / 3, 1e-9);
  EXPECT_NEAR(simulated_bubble_microbatches(Schedule::kZbV, 2, 2, 8), 1.0 / 3, 1e-9);
  EXPECT_NEAR(simulated_bubble_microbatches(Schedule::k1F1B, 4, 1, 8), 3, 1e-9);
  EXPECT_NEAR(simulated_bubble_microbatches(Schedule::kInterleaved, 4, 2, 8), 1.5, 1e-9);
  EXPECT_EQ(simulated_bubble_microbatches(Schedule::kNone, 1, 1, 8), 0);
  const int64_t m = kSimulatedChunkSteps;  // 4 x 2 x m chunk-micro-batches: not simulated
  EXPECT_EQ(simulated_bubble_microbatches(Schedule::kZbV, 4, 2, m),
            bubble_microbatches(Schedule::kZbV, 4, 2));
  // The estimate charges it: zbv over 2 stages, 2 micro-batches per replica (16 rows over dp 8).
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  Workload w{gpt(8, 256, 8), 16, 512};
  Config c;
  c.pp = 2, c.dp = 8, c.micro_batch = 1, c.schedule = Schedule::kZbV, c.virtual_stages = 2;
  const Estimate e = estimate(w, cl, c);
  EXPECT_NEAR(e.bubble_s / (e.compute_s + e.recompute_s + e.tp_s + e.pp_s) * 2, 1.0 / 3, 1e-9);
}

// The measured pipeline efficiencies scale the compute of pipeline stages: fused for 1f1b, split
// for zb-h1, on stages of one device or several; a step without a pipeline is untouched.
TEST(Cost, PipelineEfficiencyScalesPipelineStages) {
  const Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  Efficiency plain = *cl.efficiency;
  plain.pipeline_fused = plain.pipeline_split = 1;
  Workload w{gpt(8, 256, 8), 16, 128};
  auto ratio = [&](Config c) {
    const Estimate a = estimate(w, cl, c, *cl.efficiency), b = estimate(w, cl, c, plain);
    return (a.compute_s + a.recompute_s) / (b.compute_s + b.recompute_s);
  };
  Config c;
  c.pp = 2, c.micro_batch = 4, c.schedule = Schedule::k1F1B;
  EXPECT_NEAR(ratio(c), 1.25, 1e-12);
  c.schedule = Schedule::kZbH1;
  EXPECT_NEAR(ratio(c), 1.5, 1e-12);
  c.dp = 2, c.micro_batch = 2;  // a stage of two devices
  EXPECT_NEAR(ratio(c), 1.5, 1e-12);
  Config none;
  none.dp = 2, none.micro_batch = 8;
  EXPECT_NEAR(ratio(none), 1.0, 1e-12);
}

// The optimizer step streams 32 bytes a parameter (AdamW's 28, the clipping norm's read of the
// gradient) at the optimizer's measured share of the memory bandwidth; without one, at the
// element-wise share, never above 1.
TEST(Cost, OptimizerAtItsMeasuredShare) {
  const Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  const Workload w{gpt(8, 256, 8), 16, 128};
  Config c;
  c.dp = 2, c.micro_batch = 8;
  const double params = device_params(w.model, 1, 1);
  const Estimate e = estimate(w, cl, c, *cl.efficiency);
  EXPECT_NEAR(e.optimizer_s, 32 * params / (20e9 * 1.6), 1e-12);
  Efficiency unmeasured = *cl.efficiency;
  unmeasured.optimizer = 0;
  EXPECT_NEAR(estimate(w, cl, c, unmeasured).optimizer_s, 32 * params / (20e9 * 0.9), 1e-12);
  unmeasured.memory = 3;  // element-wise work from cache: the state still streams from memory
  EXPECT_NEAR(estimate(w, cl, c, unmeasured).optimizer_s, 32 * params / 20e9, 1e-12);
  std::string bad = kLocalCluster;
  bad.replace(bad.find("optimizer: 1.6"), 14, "optimizer: 0");
  EXPECT_THROW(parse_cluster_text(bad, "bad.yaml"), Error);
}

TEST(Cost, MemoryAccounting) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  Workload w{gpt(8, 256, 8), 64, 512};
  const double P = double(w.model.parameter_count());  // tied: one vocabulary table
  Config c;
  c.dp = 16;
  Estimate e = estimate(w, cl, c);
  EXPECT_DOUBLE_EQ(e.memory.params, 2 * P);
  EXPECT_DOUBLE_EQ(e.memory.grads, 4 * P);
  EXPECT_DOUBLE_EQ(e.memory.optimizer, 12 * P);
  c.zero = Zero::kOptimizer;
  e = estimate(w, cl, c);
  EXPECT_DOUBLE_EQ(e.memory.optimizer, 12 * P / 16);  // Megatron's distributed optimizer
  c.offload = true;
  EXPECT_DOUBLE_EQ(estimate(w, cl, c).memory.optimizer, 0);
  EXPECT_GT(estimate(w, cl, c).offload_s, 0);
  // Activations: one micro-batch of 4 x 512 tokens, 8 blocks, no recomputation, no tp:
  // (10 + 24) s b h per block, and the fp32 logits and their gradient; with the attention's
  // scores in memory also Korthikanti's 5 a s^2 b per block, which selective recomputation drops.
  c = Config{};
  c.dp = 16, c.micro_batch = 4;
  const double tokens = 4 * 512.0, h = 256;
  const double logits = 2 * 4 * tokens * 1024;
  EXPECT_DOUBLE_EQ(estimate(w, cl, c).memory.activations, 8 * tokens * 34 * h + logits);
  Efficiency in_memory;
  in_memory.attention_in_memory = true;
  EXPECT_DOUBLE_EQ(estimate(w, cl, c, in_memory).memory.activations,
                   8 * tokens * (34 * h + 5 * 8 * 512) + logits);
  EXPECT_DOUBLE_EQ(memory_floor(w, c, 2, true).activations,
                   estimate(w, cl, c, in_memory).memory.activations);
  c.recompute = Recompute::kSelective;
  EXPECT_DOUBLE_EQ(estimate(w, cl, c, in_memory).memory.activations, 8 * tokens * 34 * h + logits);
  // 1F1B holds p micro-batches on its first stage; gpipe all of them.
  c = Config{};
  c.dp = 4, c.pp = 4, c.schedule = Schedule::k1F1B, c.recompute = Recompute::kSelective;
  const double one = 2 * tokens / 4 * 34 * h;  // micro-batch 1: 512 tokens, 2 blocks per stage
  e = estimate(w, cl, c);
  EXPECT_DOUBLE_EQ(e.memory.activations, 4 * one + 2 * 4 * 512.0 * 1024);
  c.schedule = Schedule::kGpipe;
  EXPECT_DOUBLE_EQ(estimate(w, cl, c).memory.activations, 16 * one + 2 * 4 * 512.0 * 1024);
}

// With the attention's scores in memory every score of the micro-batch's heads moves GPT's 6.5
// elements forward and 9.5 backward at the memory's rate, once more where the attention core is
// recomputed; fused (flash-style) attention moves none.
TEST(Cost, ScoresInMemoryCostTheirTraffic) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  Workload w{gpt(8, 256, 8), 64, 512};
  const BlockCost bc = block_cost(w.model, 512);
  EXPECT_DOUBLE_EQ(bc.score_bytes_f, 2 * 6.5);
  EXPECT_DOUBLE_EQ(bc.score_bytes_b, 2 * 9.5);
  Config c;
  c.dp = 8, c.tp = 2, c.micro_batch = 4, c.recompute = Recompute::kSelective;
  Efficiency fused, in_memory;
  in_memory.attention_in_memory = true;
  const Estimate a = estimate(w, cl, c, fused), b = estimate(w, cl, c, in_memory);
  const double scores = 4.0 * (8 / 2) * 512 * 512;  // one block, one micro-batch, 4 heads here
  const double rate = 1000e9 * fused.memory;
  const double mb = 64.0 / (8 * 4), blocks = 8;
  const double fwd_bwd = mb * blocks * scores * (13 + 19) / rate,
               again = mb * blocks * scores * 13 / rate;
  EXPECT_NEAR(b.compute_s - a.compute_s, fwd_bwd, 1e-9 * fwd_bwd);
  EXPECT_NEAR(b.recompute_s - a.recompute_s, again, 1e-9 * again);
  EXPECT_NEAR(b.step_s - a.step_s, fwd_bwd + again, 1e-9 * (fwd_bwd + again));
}

TEST(Cost, ActivationOffloadMovesWhatTheDeviceNoLongerHolds) {
  Cluster cl = parse_cluster_text(kSmallCluster, "small");
  Workload w{gpt(8, 256, 8), 64, 512};
  Config c;  // 4 blocks per stage: two stay on the device, two go to the host
  c.dp = 4, c.pp = 2, c.schedule = Schedule::k1F1B, c.recompute = Recompute::kSelective;
  const double one = 4 * 512.0 * 34 * 256;  // one micro-batch's stored activations of the stage
  const double inflight = 2, m = 16;        // 1F1B on its first stage: min(p, m) of 16
  Efficiency serial;
  serial.overlap = false;
  const Estimate kept = estimate(w, cl, c, serial);
  c.offload_activations = true;
  const Estimate off = estimate(w, cl, c, serial);
  EXPECT_DOUBLE_EQ(kept.memory.activations - off.memory.activations, inflight * one / 2);
  EXPECT_DOUBLE_EQ(off.host_bytes, inflight * one / 2);
  EXPECT_EQ(kept.act_offload_s, 0);
  // Down after the forward, up before the backward, over the 10 GB/s host link, not overlapped.
  EXPECT_NEAR(off.act_offload_s, m * 2 * (one / 2) / (10e9 * serial.network), 1e-15);
  EXPECT_NEAR(off.step_s - kept.step_s, off.act_offload_s + off.bubble_s - kept.bubble_s,
              kept.step_s * 1e-12);
  // Overlapped with compute, only what the compute does not cover is exposed.
  const Estimate hidden = estimate(w, cl, c);
  EXPECT_LT(hidden.act_offload_s, off.act_offload_s);
  cl.host_bandwidth = 1e15;
  EXPECT_EQ(estimate(w, cl, c).act_offload_s, 0);
  cl.host_memory_bytes = off.host_bytes * 0.99;  // the host must hold what it is sent
  EXPECT_FALSE(estimate(w, cl, c).fits);
  // Two blocks per stage stay on the device anyway: nothing moves.
  c.pp = 4;
  EXPECT_EQ(estimate(w, cl, c).host_bytes, 0);
}

TEST(Cost, StepIsTheSumOfItsParts) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  Workload w{gpt(8, 256, 8), 64, 512};
  Config c;
  c.dp = 2, c.tp = 2, c.pp = 4, c.order = "dpt", c.schedule = Schedule::kInterleaved;
  c.virtual_stages = 2, c.micro_batch = 4, c.recompute = Recompute::kFull;
  const Estimate e = estimate(w, cl, c);
  EXPECT_NEAR(e.step_s,
              e.compute_s + e.recompute_s + e.tp_s + e.pp_s + e.dp_s + e.bubble_s + e.offload_s +
                  e.act_offload_s + e.optimizer_s,
              e.step_s * 1e-12);
  EXPECT_GT(e.tp_s, 0);
  EXPECT_GT(e.pp_s, 0);
  EXPECT_GT(e.dp_s, 0);
  EXPECT_GT(e.recompute_s, 0);
  // tp inside the node is cheaper than tp across nodes.
  Config across = c;
  across.order = "tpd";  // tp outermost: its 2 members 8 devices apart
  EXPECT_GT(estimate(w, cl, across).tp_s, e.tp_s);
  std::string why;
  Config bad = c;
  bad.virtual_stages = 5;  // 4 stages of 2 blocks: at most 2 chunks each
  EXPECT_FALSE(admissible(w, bad, &why));
  EXPECT_NE(why.find("interleaved"), std::string::npos);
}

// A runtime that issues a collective per parameter tensor pays the ring's latency per tensor:
// dp2's gradient all-reduce (2 ring passes of 1 step each) gains 2 x (tensors - 1) latencies,
// and full sharding's gathers gain theirs too.
TEST(Cost, PerTensorCollectivesPayTheLatencyPerTensor) {
  const Cluster cl = parse_cluster_text(kLocalCluster, "local.yaml");
  const Workload w{gpt(4, 256, 4, 128), 8, 128};
  Efficiency bucketed = *cl.efficiency, per_tensor = bucketed;
  bucketed.per_tensor_collectives = false;
  per_tensor.per_tensor_collectives = true;
  Config c;
  c.dp = 2, c.micro_batch = 4;
  const double tensors = 4 * 12 + 4;  // GPT-2: 12 per block; wte, wpe, ln_f weight and bias
  const double latency = cl.tiers[0].latency;
  EXPECT_NEAR(estimate(w, cl, c, per_tensor).dp_s - estimate(w, cl, c, bucketed).dp_s,
              2 * (tensors - 1) * latency, 1e-12);
  c.zero = Zero::kFull;
  // One micro-batch per replica: its forward and backward gathers and the reduce-scatter.
  EXPECT_NEAR(estimate(w, cl, c, per_tensor).step_s - estimate(w, cl, c, bucketed).step_s,
              3 * (tensors - 1) * latency, 1e-12);
}

// With sp, a sequence shard of several rows is not contiguous: each of a block's reduce-scatters
// and all-gathers (two of each forward, two backward) copies the whole activation through a
// staging buffer; one row's shard moves in place.
TEST(Cost, SequenceParallelStagesTheShardsOfSeveralRows) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  const Workload w{gpt(4, 256, 4, 128), 8, 128};
  Config sp;
  sp.tp = 2, sp.sp = true, sp.micro_batch = 8;
  Config tp = sp;
  tp.sp = false;
  const double bytes = 8 * 128 * 256 * cl.element_bytes;  // one micro-batch's activation
  const double copy = 2 * bytes / cl.memory_bandwidth;    // read and written
  EXPECT_NEAR(estimate(w, cl, sp).tp_s - estimate(w, cl, tp).tp_s, 4 * 8 * copy, 1e-15);
  sp.micro_batch = tp.micro_batch = 1;  // 8 micro-batches of one row: no staging
  EXPECT_DOUBLE_EQ(estimate(w, cl, sp).tp_s, estimate(w, cl, tp).tp_s);
}

Workload small_workload() {
  return {gpt(8, 512, 8, 512), 32, 512};
}

TEST(Search, PrunedEqualsExhaustive) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  const Workload w = small_workload();
  SearchOptions pruned, all;
  pruned.top = all.top = 3;
  all.prune = false;
  const SearchResult a = search(w, cl, {}, pruned), b = search(w, cl, {}, all);
  ASSERT_EQ(a.plans.size(), 3u);
  ASSERT_EQ(b.plans.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.plans[i].config.strategy(), b.plans[i].config.strategy());
    EXPECT_EQ(a.plans[i].estimate.step_s, b.plans[i].estimate.step_s);
  }
  EXPECT_EQ(a.covered, b.covered);
  EXPECT_EQ(b.covered, b.evaluated);
  EXPECT_LT(a.evaluated, b.evaluated);
  EXPECT_GT(b.fitting, 0);
  EXPECT_LT(b.fitting, b.evaluated);  // 256 MiB devices: some configurations do not fit
}

TEST(Search, NeverProposesAPlanThatDoesNotFit) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  const Workload w = small_workload();
  SearchOptions o;
  o.top = 50;
  const SearchResult r = search(w, cl, {}, o);
  for (const Plan& p : r.plans) {
    EXPECT_TRUE(p.estimate.fits);
    EXPECT_LE(p.estimate.memory.total(), o.efficiency.usable_memory * cl.memory_bytes);
  }
  Cluster tiny = cl;
  tiny.memory_bytes = 1 << 20;  // 1 MiB: nothing fits
  const SearchResult none = search(w, tiny, {}, o);
  EXPECT_TRUE(none.plans.empty());
  EXPECT_GT(none.covered, 0);
}

TEST(Strategy, FixLayout) {
  Space s;
  fix_layout(s, "dp6xpp64xtp8", 3072);
  EXPECT_EQ(s.dp, 6);
  EXPECT_EQ(s.pp, 64);
  EXPECT_EQ(s.tp, 8);
  EXPECT_EQ(s.order, "dpt");
  EXPECT_EQ(s.sp, false);  // tp8 is not tp8+sp
  Space f;
  fix_layout(f, "fsdpxtp4+sp", 16);
  EXPECT_EQ(f.dp, 4);
  EXPECT_EQ(f.zero, Zero::kFull);
  EXPECT_EQ(f.sp, true);
  EXPECT_EQ(f.pp, 1);
  EXPECT_NE(error_of([] {
              Space x;
              fix_layout(x, "dp2xep2", 4);
            }).find("unknown term 'ep2'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              Space x;
              fix_layout(x, "dp2xtp2", 8);
            }).find("spans 4 devices"),
            std::string::npos);
}

TEST(Strategy, EmittedYamlReadsBackToTheSamePlan) {
  const Cluster cl = parse_cluster_text(kSmallCluster, "small");
  const Workload w = small_workload();
  Space s;
  s.schedules = {Schedule::kInterleaved};
  s.offloads = {true};
  s.activation_offloads = {true};
  fix_layout(s, "dp2xpp4xtp2", 16);
  const SearchResult r = search(w, cl, s);
  ASSERT_FALSE(r.plans.empty());
  const std::string yaml = strategy_yaml(r.plans[0], w, cl);
  EXPECT_NE(yaml.find("pipeline: {schedule: interleaved"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("offload: {optimizer_state: host, offload: activations}"), std::string::npos)
      << yaml;
  Space back;
  fix_from_yaml(back, yaml, "plan.yaml", w, 16);
  const SearchResult again = search(w, cl, back);
  ASSERT_EQ(again.covered, 1) << yaml;
  EXPECT_EQ(again.plans[0].config.strategy(), r.plans[0].config.strategy());
  EXPECT_EQ(again.plans[0].estimate.step_s, r.plans[0].estimate.step_s);
  const std::string e = error_of([&] {
    Space x;
    fix_from_yaml(x, yaml + "microbatch: 2\n", "plan.yaml", w, 16);
  });
  EXPECT_NE(e.find("microbatch"), std::string::npos) << e;
  std::string params = yaml;
  params.replace(params.find("offload: activations"), 20, "offload: params");
  const std::string p = error_of([&] {
    Space x;
    fix_from_yaml(x, params, "plan.yaml", w, 16);
  });
  EXPECT_NE(p.find("not 'params'"), std::string::npos) << p;
}

}  // namespace
}  // namespace hp::planner
