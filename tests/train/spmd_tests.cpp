// SPMD training steps against one device on batches the reference cases do not cover: targets
// ignored unevenly across the batch (the loss is the mean over all counted targets, not a mean of
// per-rank means), with the vocabulary split (tp) and the kv heads fewer than the tp ranks.
// Each also checks the forward-only evaluation program against one device's eval. And offload per
// rank against the same strategy without it.
// Not the preset matrix: tests/e2e/spmd.sh runs every preset on the shared reference cases.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "hp/comm/threads.hpp"
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

}  // namespace
}  // namespace hp::train
