// SPMD training steps against one device on batches the reference cases do not cover: targets
// ignored unevenly across the batch (the loss is the mean over all counted targets, not a mean of
// per-rank means), with the vocabulary split (tp) and the kv heads fewer than the tp ranks.
// Each also checks the forward-only evaluation program against one device's eval. And offload per
// rank against the same strategy without it.
// Not the preset matrix: tests/e2e/spmd.sh runs every preset on the shared reference cases.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "hp/comm/threads.hpp"
#include "hp/mpmd/pipeline.hpp"
#include "hp/nn/model.hpp"
#include "hp/shard/strategy.hpp"
#include "hp/train/trainer.hpp"
#include "train/tiny_cases.hpp"

namespace hp::train {
namespace {

void expect_same_steps(io::Architecture arch, const std::string& preset, int ranks) {
  SCOPED_TRACE(preset);
  const io::ModelConfig cfg = tiny(arch);
  const io::TensorMap init = nn::init_params(cfg, 7);
  TrainOptions opt;
  opt.batch = 4;
  opt.seq = 8;
  const auto [tokens, targets] = batch(cfg.vocab);
  Trainer one(cfg, init, opt);
  std::vector<double> want;
  for (int s = 0; s < 3; ++s) want.push_back(one.step({{tokens, targets}}).loss);
  want.push_back(one.eval(tokens, targets));  // the forward-only program after the steps

  auto plan = plan_step(cfg, shard::preset_strategy(preset, ranks), 4, 8,
                        shard::Topology::uniform(20e9, 5e-6));
  std::vector<std::vector<double>> got(static_cast<size_t>(ranks));
  comm::ThreadWorld(ranks).run([&](comm::Communicator& c) {
    Trainer tr(*plan, c, init, opt);
    if (preset.rfind("tp", 0) == 0 || preset.find("xtp") != std::string::npos) {
      // Vocabulary-parallel: each rank computes only its rows of the table's gradient.
      const ir::Graph& lg = *tr.lowered().graph;
      for (const auto& node : lg.nodes()) {
        if (node.def->id != ir::OpId::kEmbeddingBwd) continue;
        EXPECT_LT(lg.value(node.outputs[0]).type.shape[0], cfg.vocab)
            << preset << " rank " << c.rank();
      }
    }
    for (int s = 0; s < 3; ++s) got[size_t(c.rank())].push_back(tr.step(tokens, targets).loss);
    got[size_t(c.rank())].push_back(tr.eval(tokens, targets));
  });
  for (int r = 0; r < ranks; ++r)
    for (size_t s = 0; s < want.size(); ++s)
      EXPECT_NEAR(got[size_t(r)][s], want[s], 1e-5 * std::fabs(want[s]))
          << "rank " << r << (s < 3 ? " step " : " eval after step ") << s;
}

// A NaN or infinite weight (a damaged --init file or checkpoint) is refused when adopted, naming
// the file, the parameter and the element, instead of training or sampling from it.
TEST(AdoptParams, RefusesNonFiniteWeights) {
  const io::ModelConfig cfg = io::ModelConfig::from_json({{"model_type", "gpt2"},
                                                          {"n_layer", 1},
                                                          {"n_embd", 16},
                                                          {"n_head", 2},
                                                          {"n_positions", 8},
                                                          {"vocab_size", 32}});
  io::TensorMap p = nn::init_params(cfg, 1);
  EXPECT_NO_THROW(nn::adopt_params(cfg, p, "w.safetensors"));
  for (float bad : {std::nanf(""), INFINITY}) {
    io::TensorMap q = p;
    Tensor t = q.at("h.0.mlp.c_fc.weight").clone();
    t.f32()[5] = bad;
    q.at("h.0.mlp.c_fc.weight") = t;
    try {
      nn::adopt_params(cfg, q, "w.safetensors");
      ADD_FAILURE() << "a non-finite weight was adopted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("w.safetensors: parameter 'h.0.mlp.c_fc.weight' holds "
                                           "a non-finite value"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("at element 5"), std::string::npos) << e.what();
    }
  }
}

TEST(SpmdIgnoredTargets, DataParallelMeanIsOverAllCountedTargets) {
  expect_same_steps(io::Architecture::kGpt2, "dp2", 2);
  expect_same_steps(io::Architecture::kGpt2, "fsdp4", 4);
}

TEST(SpmdIgnoredTargets, VocabularyParallelLossAndEmbedding) {
  expect_same_steps(io::Architecture::kGpt2, "tp2", 2);
  expect_same_steps(io::Architecture::kGpt2, "dp2xtp2", 4);
  expect_same_steps(io::Architecture::kLlama, "tp2+sp", 2);
}

TEST(SpmdIgnoredTargets, KvHeadsReplicatedWhenFewerThanRanks) {
  expect_same_steps(io::Architecture::kLlama, "tp4", 4);
}

// Offload per rank moves data and changes no arithmetic: the same bits as the same strategy
// without it, every rank's device peak within its budget.
TEST(SpmdOffload, PerRankPlansAreBitwiseIdentical) {
  const std::string dir = (std::filesystem::temp_directory_path() / "hp_spmd_offload").string();
  struct Case {
    io::Architecture arch;
    const char* preset;
    int ranks;
    const char* budget;
    const char* state;
  };
  // Budgets as fractions of each rank's unconstrained peak; on these tiny models the kernels'
  // fixed-size workspace (attention tiles), kept free of the budget, is a large share of it.
  for (const Case& k : {Case{io::Architecture::kGpt2, "dp2", 2, "40%", "host"},
                        Case{io::Architecture::kGpt2, "fsdp2", 2, "40%", "disk"},
                        Case{io::Architecture::kLlama, "tp4", 4, "40%", "host"}}) {
    SCOPED_TRACE(std::string(k.preset) + " at " + k.budget + ", state on " + k.state);
    const io::ModelConfig cfg = tiny(k.arch);
    const io::TensorMap init = nn::init_params(cfg, 11);
    TrainOptions opt;
    opt.batch = 4;
    opt.seq = 8;
    const auto [tokens, targets] = batch(cfg.vocab);
    auto plan = plan_step(cfg, shard::preset_strategy(k.preset, k.ranks), 4, 8,
                          shard::Topology::uniform(20e9, 5e-6));
    memory::OffloadOptions off;
    memory::set_option(off, "device_budget", k.budget);
    memory::set_option(off, "optimizer_state", k.state);
    off.offload_dir = dir;
    std::vector<std::vector<double>> losses(2);
    std::vector<io::TensorMap> finals(2);
    for (int offloaded = 0; offloaded < 2; ++offloaded) {
      comm::ThreadWorld(k.ranks).run([&](comm::Communicator& c) {
        TrainOptions o = opt;
        if (offloaded) o.offload = off;
        Trainer tr(*plan, c, init, o);
        std::vector<double> l;
        for (int s = 0; s < 3; ++s) l.push_back(tr.step(tokens, targets).loss);
        l.push_back(tr.eval(tokens, targets));
        io::TensorMap p = tr.params();
        if (offloaded) {
          EXPECT_NE(tr.offload_plan(), nullptr);
          EXPECT_GT(tr.device_budget(), 0u);
          EXPECT_LE(tr.device().peak_bytes(), tr.device_budget()) << "rank " << c.rank();
        }
        if (c.rank() == 0) losses[size_t(offloaded)] = l, finals[size_t(offloaded)] = p;
      });
    }
    EXPECT_EQ(losses[0], losses[1]);
    for (const auto& [name, t] : finals[0]) {
      const Tensor& u = finals[1].at(name);
      ASSERT_EQ(t.nbytes(), u.nbytes()) << name;
      EXPECT_EQ(0, std::memcmp(t.raw(), u.raw(), t.nbytes())) << name;
    }
  }
  std::filesystem::remove_all(dir);
}

// A pipeline step against one device: losses of three steps and an eval, the step-0 gradients
// (summed over micro-batches, the tied embedding over both stages holding it) and the final
// weights, for a pipeline of 4 blocks of `cfg` (its architecture's tiny case by default) over
// `ranks` devices, with a batch of 4.
void expect_pipeline_matches(io::ModelConfig cfg, const mpmd::PipelineSpec& spec, int ranks,
                             const mpmd::CostModel* reorder_at = nullptr) {
  SCOPED_TRACE(spec.str());
  cfg.n_layer = 4;
  const io::TensorMap init = nn::init_params(cfg, 7);
  TrainOptions opt;
  opt.batch = 4;
  opt.seq = 8;
  opt.clip = 0.05;  // small enough to clip: the norm must count each parameter once
  const auto [tokens, targets] = batch(cfg.vocab);
  Trainer one(cfg, init, opt);
  std::vector<double> want;
  io::TensorMap grads0;
  for (int s = 0; s < 3; ++s) {
    want.push_back(one.step({{tokens, targets}}).loss);
    if (s == 0)
      for (auto& [k, t] : one.grads()) grads0.emplace(k, t.clone());
  }
  want.push_back(one.eval(tokens, targets));
  const io::TensorMap final_one = one.params();

  auto plan = plan_pipeline(cfg, spec, 4, 8);
  std::vector<std::vector<double>> got(static_cast<size_t>(ranks));
  io::TensorMap got_grads, got_final;
  comm::ThreadWorld(ranks).run([&](comm::Communicator& c) {
    Trainer tr(*plan, c, init, opt);
    for (int s = 0; s < 3; ++s) {
      if (s == 1 && reorder_at) {
        EXPECT_TRUE(tr.reorder_pipeline(*reorder_at));
        EXPECT_NE(tr.pipeline_schedule().compact(), plan->pipeline->schedule.compact());
      }
      got[size_t(c.rank())].push_back(tr.step(tokens, targets).loss);
      io::TensorMap g = tr.grads();  // collective
      if (s == 0 && c.rank() == 0) got_grads = g;
    }
    got[size_t(c.rank())].push_back(tr.eval(tokens, targets));
    io::TensorMap p = tr.params();
    if (c.rank() == ranks - 1) got_final = p;
  });
  for (int r = 0; r < ranks; ++r)
    for (size_t s = 0; s < want.size(); ++s)
      EXPECT_NEAR(got[size_t(r)][s], want[s], 1e-5 * std::fabs(want[s]))
          << "rank " << r << " " << s;
  ASSERT_EQ(got_grads.size(), grads0.size());
  for (const auto& [name, g] : grads0) {
    const Tensor& h = got_grads.at(name);
    ASSERT_EQ(h.numel(), g.numel()) << name;
    for (int64_t k = 0; k < g.numel(); ++k)
      ASSERT_NEAR(h.f32()[k], g.f32()[k], 1e-5 + 1e-4 * std::fabs(g.f32()[k])) << name << " " << k;
  }
  for (const auto& [name, w] : final_one) {
    const Tensor& v = got_final.at(name);
    for (int64_t k = 0; k < w.numel(); ++k)
      ASSERT_NEAR(v.f32()[k], w.f32()[k], 1e-5) << name << " " << k;
  }
}

void expect_pipeline_matches(io::Architecture arch, const mpmd::PipelineSpec& spec, int ranks,
                             const mpmd::CostModel* reorder_at = nullptr) {
  expect_pipeline_matches(tiny(arch), spec, ranks, reorder_at);
}

// The same for a pipeline preset under `schedule` with `m` micro-batches.
void expect_pipeline_matches(io::Architecture arch, const std::string& preset, int ranks,
                             mpmd::ScheduleKind schedule, int m) {
  expect_pipeline_matches(arch, mpmd::pipeline_from_preset(preset, ranks, 4, schedule, m, 2),
                          ranks);
}

// Stages of two devices then one: blocks 0-1 on two devices under `strategy`, blocks 2-3 on one.
mpmd::PipelineSpec two_plus_one(const std::string& strategy, const std::string& schedule, int m) {
  return mpmd::parse_pipeline_text("pipeline:\n  schedule: " + schedule +
                                       "\n  microbatches: " + std::to_string(m) +
                                       "\n  stages:\n    - blocks: \"0-1\"\n      devices: 2\n"
                                       "      strategy: " +
                                       strategy + "\n    - blocks: \"2-3\"\n      devices: 1\n",
                                   3, 4);
}

TEST(Pipeline, EveryScheduleMatchesOneDevice) {
  using K = mpmd::ScheduleKind;
  for (K k : {K::kGpipe, K::k1F1B, K::kInterleaved, K::kZbH1, K::kZbV, K::kAuto})
    expect_pipeline_matches(io::Architecture::kGpt2, "pp2", 2, k, 3);
}

// A schedule reordered between steps at measured costs (Trainer::reorder_pipeline; the zbv of
// MpmdSynth.ANamedPolicyOrderedAtMeasuredCostsReachesTheBound, faster in the simulator at these
// GPT-2 costs) runs other actions in another order, and the steps after it still match one
// device.
TEST(Pipeline, ReorderedAtMeasuredCostsStillMatchesOneDevice) {
  const mpmd::PipelineSpec spec =
      mpmd::pipeline_from_preset("pp2", 2, 4, mpmd::ScheduleKind::kZbV, 4, 2);
  mpmd::CostModel costs = mpmd::CostModel::uniform(spec.chunk_graph());
  const double f[] = {3.0, 2.73, 2.75, 3.32}, b[] = {0.005, 3.45, 3.45, 3.70},
               w[] = {5.87, 2.50, 2.44, 2.70};
  for (size_t c = 0; c < 4; ++c) costs.chunks[c] = mpmd::ChunkCost{.f = f[c], .b = b[c], .w = w[c]};
  expect_pipeline_matches(io::Architecture::kGpt2, spec, 2, &costs);
}

// Under a schedule with B and W apart, a one-device stage runs two programs: the first chunk's B
// has nothing to send back, so its whole backward is in W (W takes longer than B), while a fused
// schedule's W has nothing left to do.
TEST(Pipeline, SplitSchedulesComputeWeightGradientsInW) {
  using K = mpmd::ScheduleKind;
  io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  cfg.n_layer = 4;
  const io::TensorMap init = nn::init_params(cfg, 7);
  TrainOptions opt;
  opt.batch = 4;
  opt.seq = 8;
  const auto [tokens, targets] = batch(cfg.vocab);
  for (K k : {K::kZbH1, K::k1F1B}) {
    auto plan = plan_pipeline(cfg, mpmd::pipeline_from_preset("pp2", 2, 4, k, 3, 2), 4, 8);
    std::vector<mpmd::ChunkCost> costs;
    comm::ThreadWorld(2).run([&](comm::Communicator& c) {
      Trainer tr(*plan, c, init, opt);
      tr.step(tokens, targets);
      const mpmd::CostModel m = tr.measured_pipeline_costs();  // collective
      if (c.rank() == 0) costs = m.chunks;
    });
    ASSERT_EQ(costs.size(), 2u);
    if (k == K::kZbH1) {
      EXPECT_GT(costs[0].w, costs[0].b);
    } else {
      EXPECT_EQ(costs[0].w, 0.0);
      EXPECT_EQ(costs[1].w, 0.0);
    }
    EXPECT_GT(costs[1].b, 0.0);  // the head's B: its input gradient
  }
  // The same on a stage of two devices (tp2): its chunk's lowered step is cut in F, B and W, and
  // nothing is recomputed (B alone no longer holds the whole backward).
  const mpmd::PipelineSpec spec = mpmd::parse_pipeline_text(
      "pipeline:\n  schedule: zb-h1\n  microbatches: 3\n  stages:\n    - blocks: \"0-1\"\n"
      "      devices: 1\n    - blocks: \"2-3\"\n      devices: 2\n      strategy: tp2\n",
      3, 4);
  auto plan = plan_pipeline(cfg, spec, 4, 8);
  std::vector<mpmd::ChunkCost> costs;
  comm::ThreadWorld(3).run([&](comm::Communicator& c) {
    Trainer tr(*plan, c, init, opt);
    tr.step(tokens, targets);
    const mpmd::CostModel m = tr.measured_pipeline_costs();
    if (c.rank() == 0) costs = m.chunks;
  });
  ASSERT_EQ(costs.size(), 2u);
  EXPECT_GT(costs[1].b, 0.0);
  EXPECT_GT(costs[1].w, 20e-6) << costs[1].b;  // real work, not an empty call
}

TEST(Pipeline, UnevenStagesAndMicroBatches) {
  using K = mpmd::ScheduleKind;
  expect_pipeline_matches(io::Architecture::kGpt2, "pp3", 3, K::k1F1B, 3);
  expect_pipeline_matches(io::Architecture::kLlama, "pp3", 3, K::kGpipe, 4);
  expect_pipeline_matches(io::Architecture::kLlama, "pp2", 2, K::kZbV, 1);
  expect_pipeline_matches(io::Architecture::kGpt2, "pp4", 4, K::k1F1B, 2);
}

// Stages on sub-meshes: each SPMD inside (gradients reduced over the stage's own data axes), the
// boundary between stages of different sizes and layouts, the tied embedding's gradient exchanged
// between two groups, 3 micro-batches of 4 rows (a stage of dp2 gets a micro-batch of one row: one
// of its ranks holds none).
TEST(Pipeline, StagesOnSubMeshesMatchOneDevice) {
  using K = mpmd::ScheduleKind;
  expect_pipeline_matches(io::Architecture::kGpt2, "pp2xdp2", 4, K::k1F1B, 3);
  expect_pipeline_matches(io::Architecture::kLlama, "pp2xtp2", 4, K::kGpipe, 3);
  expect_pipeline_matches(io::Architecture::kGpt2, "pp2xfsdp2", 4, K::kZbH1, 2);
  expect_pipeline_matches(io::Architecture::kGpt2, two_plus_one("tp2", "1f1b", 3), 3);
  expect_pipeline_matches(io::Architecture::kLlama, two_plus_one("dp2", "gpipe", 3), 3);
  // B and W apart on stages of several devices: the lowered step cut in parts too.
  expect_pipeline_matches(io::Architecture::kGpt2, two_plus_one("tp2", "zb-h1", 3), 3);
  expect_pipeline_matches(io::Architecture::kLlama, two_plus_one("dp2", "zb-h1", 3), 3);
  expect_pipeline_matches(io::Architecture::kLlama, "pp2xtp2", 4, K::kZbV, 4);
  // One key/value head on a tp2 stage: the blocks' last all-reduce is left to the chunk's output
  // (x_out, partial over tp), which overlapped lowering once packed into a bucket with the
  // gradients, so the forward's part read the backward's input (found under mpirun).
  io::ModelConfig mqa = tiny(io::Architecture::kLlama);
  mqa.n_kv_head = 1;
  mqa.validate();
  expect_pipeline_matches(mqa, two_plus_one("tp2", "1f1b", 3), 3);
  expect_pipeline_matches(mqa, two_plus_one("tp2", "zb-h1", 3), 3);
}

// A rank failing inside a stage of two devices: its stage peer (in a collective) and the next
// stage (waiting on the boundary) fail naming it and its reason instead of waiting on.
TEST(Pipeline, AnErrorOnOneStageReachesEveryRank) {
  io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  cfg.n_layer = 4;
  const io::TensorMap init = nn::init_params(cfg, 7);
  TrainOptions opt;
  opt.batch = 4;
  opt.seq = 8;
  const auto [tokens, targets] = batch(cfg.vocab);
  auto plan = plan_pipeline(cfg, two_plus_one("tp2", "1f1b", 3), 4, 8);
  std::vector<std::string> errors(3);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(comm::ThreadWorld(3).run([&](comm::Communicator& c) {
    Trainer tr(*plan, c, init, opt);
    tr.step(tokens, targets);
    if (c.rank() == 1) throw Error("planted failure on rank 1");
    try {
      tr.step(tokens, targets);
    } catch (const std::exception& e) {
      errors[size_t(c.rank())] = e.what();
      throw;
    }
  }),
               Error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  for (int r : {0, 2})  // the executor's context, then the failed rank's reason
    EXPECT_NE(errors[size_t(r)].find("rank 1 failed: planted failure"), std::string::npos)
        << r << ": " << errors[size_t(r)];
}

TEST(Pipeline, RefusesWhatItCannotRun) {
  io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  cfg.n_layer = 2;
  EXPECT_THROW(
      plan_pipeline(cfg, mpmd::pipeline_from_preset("pp2", 2, 2, mpmd::ScheduleKind::k1F1B, 5, 2),
                    4, 8),
      Error);  // 5 micro-batches of 4 rows
  mpmd::PipelineSpec spec =
      mpmd::pipeline_from_preset("pp2xdp2", 4, 2, mpmd::ScheduleKind::k1F1B, 2, 2);
  spec.stages[0].strategy.clear();
  EXPECT_THROW(plan_pipeline(cfg, spec, 4, 8), Error);  // two devices and no strategy for them
  spec.stages[0].strategy = "tp4";
  EXPECT_THROW(plan_pipeline(cfg, spec, 4, 8), Error);  // a strategy for other devices
  spec = mpmd::pipeline_from_preset("pp2", 2, 2, mpmd::ScheduleKind::k1F1B, 2, 2);
  spec.stages[1].strategy = "tp2";
  EXPECT_THROW(plan_pipeline(cfg, spec, 4, 8), Error);  // idem on a one-device stage
}

// Blocks are balanced and chunks priced by the FLOPs of their op records: a GPT-2 124M-shaped
// head (768 x 50304) costs about 2 d V / (24 d^2 + 4 T d) blocks' forward (5.31 at 128 tokens),
// so two stages split 12 blocks 9 | 3 + head, not 6 | 6; the first chunk, whose input needs no
// gradient, does its whole backward in W.
TEST(Pipeline, BlocksBalancedByTheirFlops) {
  const io::ModelConfig cfg = io::ModelConfig::from_json({{"model_type", "gpt2"},
                                                          {"n_layer", 12},
                                                          {"n_embd", 768},
                                                          {"n_head", 12},
                                                          {"n_positions", 128},
                                                          {"vocab_size", 50304}});
  const mpmd::BalanceInput in = block_costs(cfg, 128);
  ASSERT_EQ(in.cost.size(), 12u);
  for (double c : in.cost) EXPECT_DOUBLE_EQ(c, 1.0);
  EXPECT_NEAR(in.last_cost, 2.0 * 50304 / (24 * 768 + 4 * 128), 0.15);
  EXPECT_GE(in.first_cost, 0.0);
  EXPECT_LT(in.first_cost, 0.05);  // a gather and a sum
  const mpmd::PipelineSpec spec =
      mpmd::pipeline_from_preset("pp2", 2, 12, mpmd::ScheduleKind::k1F1B, 4, 2, &in);
  EXPECT_EQ(spec.stages[0].blocks[0].last, 8);
  EXPECT_EQ(spec.stages[1].blocks[0].first, 9);
  const std::vector<nn::Chunk> chunks = {{0, 8, true, false}, {9, 11, false, true}};
  const mpmd::CostModel costs = modelled_costs(spec.chunk_graph(), chunks, in);
  EXPECT_NEAR(costs.chunks[0].f, 9 + in.first_cost, 1e-9);
  EXPECT_EQ(costs.chunks[0].b, 0.0);
  EXPECT_NEAR(costs.chunks[0].w, 2 * costs.chunks[0].f, 1e-9);
  EXPECT_NEAR(costs.chunks[1].f, 3 + in.last_cost, 1e-9);
  EXPECT_EQ(costs.chunks[1].b, costs.chunks[1].f);
}

// zb-h1 and zbv are ordered at the modelled costs (the first chunk's backward all in W), which
// their generators' unit-cost order is not: zbv over 2 stages and 4 micro-batches idles less.
TEST(Pipeline, ZeroBubbleSchedulesOrderedAtModelledCosts) {
  io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  cfg.n_layer = 4;
  const mpmd::PipelineSpec spec =
      mpmd::pipeline_from_preset("pp2", 2, 4, mpmd::ScheduleKind::kZbV, 4, 2);
  const auto plan = plan_pipeline(cfg, spec, 4, 8);
  const PipelinePlan& pp = *plan->pipeline;
  const mpmd::CostModel costs = modelled_costs(pp.schedule.graph, pp.chunks, block_costs(cfg, 8));
  const double generated =
      mpmd::simulate(mpmd::schedule_on(mpmd::ScheduleKind::kZbV, pp.schedule.graph, 4), costs)
          .step_time;
  EXPECT_LT(mpmd::simulate(pp.schedule, costs).step_time, generated - 0.5);
  EXPECT_TRUE(pp.schedule.split_backward);
}

// A device budget under a pipeline (tp2 stage then one device, zb-h1): below what a stage holds
// plus its activations at the schedule's peak, every rank refuses before running, naming the
// smallest budget; at that budget the steps run, equal to the unbudgeted ones, and every rank's
// device allocator peak plus the kernels' workspace stays within it.
// `schedule` over the 2+1 layout; with `moved`, the smallest budget needs activations offloaded.
void check_device_budget(const std::string& schedule, bool moved) {
  io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  cfg.n_layer = 4;
  const io::TensorMap init = nn::init_params(cfg, 7);
  const auto [tokens, targets] = batch(cfg.vocab);
  auto plan = plan_pipeline(cfg, two_plus_one("tp2", schedule, 3), 4, 8);
  std::vector<std::string> refused(3);  // each rank's own refusal
  std::atomic<int> moves{0};            // OFFLOAD actions in the schedule the trainers run
  auto losses = [&](size_t budget, std::vector<size_t>* peaks) {
    TrainOptions opt;
    opt.batch = 4;
    opt.seq = 8;
    opt.offload.device_budget.bytes = budget;
    std::vector<double> out(3);
    comm::ThreadWorld(3).run([&](comm::Communicator& c) {
      std::unique_ptr<Trainer> made;
      try {
        made = std::make_unique<Trainer>(*plan, c, init, opt);
      } catch (const OutOfMemory& e) {
        refused[size_t(c.rank())] = e.what();
        throw;
      }
      Trainer& tr = *made;
      for (int s = 0; s < 3; ++s) {
        const double l = tr.step(tokens, targets).loss;
        if (c.rank() == 0) out[size_t(s)] = l;
      }
      if (peaks) (*peaks)[size_t(c.rank())] = tr.device().peak_bytes();
      if (c.rank() == 0)
        for (const auto& list : tr.pipeline_schedule().actions)
          for (const mpmd::Action& a : list) moves += a.kind == mpmd::ActionKind::kOffload;
    });
    return out;
  };
  size_t smallest = 0;
  try {
    losses(4096, nullptr);
    ADD_FAILURE() << "a 4 KiB budget was accepted";
  } catch (const OutOfMemory& e) {
    const std::string what = e.what();
    const size_t at = what.find("fits in is ");
    ASSERT_NE(at, std::string::npos) << what;
    smallest = std::stoull(what.substr(at + 11));
  }
  for (const std::string& r : refused)  // every rank, the same budget
    EXPECT_NE(r.find("fits in is " + std::to_string(smallest) + " bytes"), std::string::npos) << r;
  ASSERT_GT(smallest, 4096u);
  EXPECT_THROW(losses(smallest - 1, nullptr), OutOfMemory);
  std::vector<size_t> peaks(3);
  const std::vector<double> held = losses(smallest, &peaks);
  // Under gpipe every stage holds all 3 micro-batches: the smallest budget holds only with kept
  // activations on the host (the tp2 stage's pieces among them), moved and brought back without
  // changing a bit. zb-h1's last stage holds one at a time, which sets its smallest budget.
  EXPECT_EQ(moves.load() > 0, moved) << schedule;
  EXPECT_NE(refused[0].find("with activations offloaded"), std::string::npos) << refused[0];
  moves = 0;
  EXPECT_EQ(held, losses(0, nullptr));
  EXPECT_EQ(moves.load(), 0);
  for (size_t p : peaks) EXPECT_LE(p, smallest);
}

TEST(Pipeline, DeviceBudgetCheckedThenHeld) {
  check_device_budget("zb-h1", false);
  check_device_budget("gpipe", true);
}

}  // namespace
}  // namespace hp::train
