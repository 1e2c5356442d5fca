// SPMD training steps against one device on batches the reference cases do not cover: targets
// ignored unevenly across the batch (the loss is the mean over all counted targets, not a mean of
// per-rank means), with the vocabulary split (tp) and the kv heads fewer than the tp ranks.
// Each also checks the forward-only evaluation program against one device's eval.
// Not the preset matrix: tests/e2e/spmd.sh runs every preset on the shared reference cases.
#include <gtest/gtest.h>

#include <cmath>

#include "hp/comm/threads.hpp"
#include "hp/nn/model.hpp"
#include "hp/shard/strategy.hpp"
#include "hp/train/spmd.hpp"
#include "hp/train/trainer.hpp"

namespace hp::train {
namespace {

io::ModelConfig tiny(io::Architecture arch) {
  io::ModelConfig c;
  c.arch = arch;
  c.n_layer = 1;
  c.d_model = 32;
  c.n_head = 4;
  c.n_kv_head = arch == io::Architecture::kLlama ? 2 : 4;
  c.head_dim = 8;
  c.d_ff = 64;
  c.max_seq = 8;
  c.vocab = 61;  // not a multiple of the ranks: uneven vocabulary shards
  c.tied_embeddings = arch == io::Architecture::kGpt2;
  if (arch == io::Architecture::kLlama) c.activation = "silu";
  c.validate();
  return c;
}

// Tokens and targets [4, 8]; every target of the first row and half of the third are ignored.
std::pair<Tensor, Tensor> batch(int64_t vocab) {
  Tensor tokens({4, 8}, DType::kI64), targets({4, 8}, DType::kI64);
  for (int64_t i = 0; i < 32; ++i) {
    tokens.i64()[i] = (i * 37 + 11) % vocab;
    const bool ignored = i < 8 || (i >= 16 && i < 20);
    targets.i64()[i] = ignored ? -100 : (i * 53 + 5) % vocab;
  }
  return {tokens, targets};
}

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

  auto plan = plan_spmd(cfg, shard::preset_strategy(preset, ranks), 4, 8,
                        shard::Topology::uniform(20e9, 5e-6));
  std::vector<std::vector<double>> got(static_cast<size_t>(ranks));
  comm::ThreadWorld(ranks).run([&](comm::Communicator& c) {
    SpmdTrainer tr(*plan, c, init, opt);
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

}  // namespace
}  // namespace hp::train
