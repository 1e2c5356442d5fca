// Sharded inference on threads meshes: under tp2 every rank's logits of prefill and decode through
// its slice of the KV pool equal a full one-device recompute of the whole sequence (1e-5) and the
// greedy tokens are those of the recompute, for the GPT-2 and Llama reference weights, two
// sequences of different prompt lengths decoded together; kv heads fewer than tp (replicated pool);
// sampled tokens under tp2 equal one device's; a strategy that would move the pool is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <mutex>

#include "hp/comm/threads.hpp"
#include "hp/core/rng.hpp"
#include "hp/infer/engine.hpp"
#include "hp/io/json.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/executor.hpp"
#include "infer_util.hpp"
#include "test_inputs.hpp"
#include "test_util.hpp"

namespace hp::infer {
namespace {

using test::recompute;
using test::relative_error;

namespace fs = std::filesystem;

const fs::path kShared = HP_SHARED_DIR;

int64_t argmax(std::span<const float> l) {
  return int64_t(std::max_element(l.begin(), l.end()) - l.begin());
}

std::vector<int64_t> random_tokens(int64_t n, int64_t vocab, uint64_t stream) {
  std::vector<int64_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(int64_t(rng::bits(7, stream, uint64_t(i)) % vocab));
  return t;
}

// fn(rank's engine mesh) on every rank of a threads world over `strategy`'s mesh.
void on_mesh(const shard::Strategy& strategy, const std::function<void(EngineMesh)>& fn) {
  comm::ThreadWorld(int(strategy.mesh.size())).run([&](comm::Communicator& c) {
    shard::RankComm rc(strategy.mesh, c, std::chrono::milliseconds(20000));
    fn(EngineMesh{strategy, &rc});
  });
}

struct Reference {
  io::ModelConfig cfg;
  io::TensorMap params;
};

// A reference case's model and weights; empty when ../shared lacks it.
std::optional<Reference> reference(const std::string& name) {
  const fs::path dir = kShared / "reference" / name;
  if (!fs::exists(dir / "case.json")) return std::nullopt;
  Reference r;
  r.cfg = io::ModelConfig::from_json(io::read_json(dir / "case.json")["model"]);
  r.params = nn::adopt_params(r.cfg, io::read_safetensors(dir / "weights.safetensors"),
                              (dir / "weights.safetensors").string());
  return r;
}

// Two sequences (prompts of 11 and 5 tokens, prefilled in chunks of 8 into blocks of 4 positions)
// decoded together, greedily, to `positions` under `strategy`: on rank 0 every step's logits
// within 1e-5 of the one-device recompute and the greedy token its argmax; every rank the same
// tokens. Returns the tokens decoded per sequence.
std::vector<std::vector<int64_t>> sharded_decode(const io::ModelConfig& cfg,
                                                 const io::TensorMap& params,
                                                 const std::string& strategy, int64_t positions) {
  const shard::Strategy st =
      shard::preset_strategy(strategy, int64_t(std::stoi(strategy.substr(2))));
  std::mutex mu;
  std::vector<std::vector<std::vector<int64_t>>> per_rank(size_t(st.mesh.size()));
  on_mesh(st, [&](EngineMesh m) {
    const int rank = m.comm->rank();
    EngineOptions o;
    o.block_tokens = 4;
    o.prefill_chunk = 8;
    o.max_batch = 2;
    Engine e(cfg, params, o, default_allocator(), m);
    // Its slice of the pool: kv heads split when tp divides them, else all of them.
    const int64_t tp = st.mesh.size(), heads = cfg.n_kv_head;
    EXPECT_EQ(e.pool().tensor().shape()[4], heads % tp == 0 ? heads / tp : heads);
    std::vector<std::vector<int64_t>> seqs{random_tokens(11, cfg.vocab, 1),
                                           random_tokens(5, cfg.vocab, 2)};
    std::vector<SeqKv> kv(2);
    std::vector<int64_t> next;
    for (size_t s = 0; s < 2; ++s) {
      const std::vector<float> got = e.prefill(kv[s], seqs[s]);
      next.push_back(argmax(got));
      if (rank == 0) {
        EXPECT_LE(relative_error(got, recompute(cfg, params, seqs[s])), 1e-5) << "prefill " << s;
      }
    }
    std::vector<std::vector<int64_t>> out(2);
    m.comm->reset_stats();
    while (int64_t(seqs[0].size()) < positions) {
      for (size_t s = 0; s < 2; ++s) {
        seqs[s].push_back(next[s]);
        out[s].push_back(next[s]);
      }
      const std::vector<float> got = e.decode({&kv[0], &kv[1]}, next);
      for (size_t s = 0; s < 2; ++s) {
        const std::span<const float> row(got.data() + s * size_t(cfg.vocab), size_t(cfg.vocab));
        next[s] = argmax(row);
        if (rank != 0) continue;
        // A throw, not an ASSERT: it ends every rank at once (ThreadWorld), none left waiting.
        const std::vector<float> want = recompute(cfg, params, seqs[s]);
        const double err = relative_error(row, want);
        HP_CHECK(err <= 1e-5, strategy, ": sequence ", s, " at ", seqs[s].size(),
                 " positions: logits off by ", err, " of the recompute");
        HP_CHECK(next[s] == argmax(want), strategy, ": sequence ", s, " at ", seqs[s].size(),
                 " positions: greedy ", next[s], " vs ", argmax(want));
      }
    }
    // Megatron's decode step: the residual stream reduced after each layer's attention and MLP,
    // the embedding's vocabulary shards summed, the logits gathered; the weights never move.
    const int64_t steps = int64_t(out[0].size());
    EXPECT_LE(m.comm->collectives_issued(), steps * (2 * cfg.n_layer + 2))
        << m.comm->collectives_issued() << " collectives in " << steps << " decode steps";
    std::lock_guard<std::mutex> lock(mu);
    per_rank[size_t(rank)] = out;
  });
  for (size_t r = 1; r < per_rank.size(); ++r) EXPECT_EQ(per_rank[r], per_rank[0]) << "rank " << r;
  return per_rank[0];
}

// The reference model under tp2, decoded to its max_seq positions (Llama, without learned
// positions, to 80: 69 tokens of the longer prompt's sequence).
void check_reference_tp2(const std::string& name) {
  std::optional<Reference> r = reference(name);
  HP_REQUIRE_INPUT(r.has_value(), (kShared / "reference" / name).string());
  if (r->cfg.arch == io::Architecture::kLlama) r->cfg.max_seq = 80;
  const auto tokens = sharded_decode(r->cfg, r->params, "tp2", r->cfg.max_seq);
  EXPECT_EQ(int64_t(tokens[0].size()), r->cfg.max_seq - 11);
}

TEST(ShardedInfer, Gpt2TinyTp2MatchesRecompute) {
  check_reference_tp2("gpt2-tiny");
}
TEST(ShardedInfer, Gpt2DeepTp2MatchesRecompute) {
  check_reference_tp2("gpt2-deep");
}
TEST(ShardedInfer, LlamaTinyTp2MatchesRecompute) {
  check_reference_tp2("llama-tiny");
}
TEST(ShardedInfer, LlamaDeepTp2MatchesRecompute) {
  check_reference_tp2("llama-deep");
}

// 4 query heads over 2 kv heads on tp4: each rank holds one query head and the whole pool, and
// reads the kv head of its group.
TEST(ShardedInfer, KvHeadsFewerThanTpReplicateThePool) {
  std::optional<Reference> r = reference("llama-tiny");
  HP_REQUIRE_INPUT(r.has_value(), (kShared / "reference/llama-tiny").string());
  ASSERT_EQ(r->cfg.n_kv_head, 2);
  ASSERT_EQ(r->cfg.n_head, 4);
  sharded_decode(r->cfg, r->params, "tp4", 24);
}

// Sampled (temperature, top-k) generation of three requests of different lengths: the tokens of
// tp2 are one device's, draw for draw.
TEST(ShardedInfer, Tp2SamplesTheTokensOfOneDevice) {
  std::optional<Reference> r = reference("gpt2-tiny");
  HP_REQUIRE_INPUT(r.has_value(), (kShared / "reference/gpt2-tiny").string());
  std::vector<Request> reqs(3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].prompt = random_tokens(int64_t(3 + 4 * i), r->cfg.vocab, 10 + i);
    reqs[i].max_tokens = 12;
    reqs[i].sampling.temperature = 0.9;
    reqs[i].sampling.top_k = 20;
    reqs[i].sampling.seed = 5;
  }
  EngineOptions o;
  o.block_tokens = 4;
  o.max_batch = 2;  // the third request waits for a place
  const std::vector<Result> one = Engine(r->cfg, r->params, o, default_allocator()).generate(reqs);
  std::mutex mu;
  std::vector<std::vector<Result>> tp(2);
  on_mesh(shard::preset_strategy("tp2", 2), [&](EngineMesh m) {
    std::vector<Result> res = Engine(r->cfg, r->params, o, default_allocator(), m).generate(reqs);
    std::lock_guard<std::mutex> lock(mu);
    tp[size_t(m.comm->rank())] = std::move(res);
  });
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(one[i].tokens.size(), 12u);
    for (const auto& ranks : tp) EXPECT_EQ(ranks[i].tokens, one[i].tokens) << "request " << i;
  }
}

// A kv_pool rule the heads do not follow would move the pool (a copy: the writes lost): refused
// before running, on every rank.
TEST(ShardedInfer, AStrategyMovingThePoolIsRefused) {
  std::optional<Reference> r = reference("gpt2-tiny");
  HP_REQUIRE_INPUT(r.has_value(), (kShared / "reference/gpt2-tiny").string());
  shard::Strategy st = shard::parse_strategy(
      "mesh: {tp: 2}\npresets: [tp]\nrules:\n  - match: kv_pool\n    layout: [tp]\n", 2,
      "pool.yaml");
  std::mutex mu;
  std::vector<std::string> errors;
  on_mesh(st, [&](EngineMesh m) {
    Engine e(r->cfg, r->params, EngineOptions{}, default_allocator(), m);
    SeqKv kv;
    const std::string err = test::error_of([&] { e.prefill(kv, std::vector<int64_t>{1, 2}); });
    std::lock_guard<std::mutex> lock(mu);
    errors.push_back(err);
  });
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& e : errors) EXPECT_NE(e.find("moves the KV pool"), std::string::npos) << e;
}

}  // namespace
}  // namespace hp::infer
