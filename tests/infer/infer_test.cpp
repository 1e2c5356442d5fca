// The inference engine against the training graph: logits of prefill + decode through the paged
// KV cache equal a full recompute of the whole sequence at every step (GPT-2, Llama with GQA),
// across block and prefill-chunk boundaries; sampling filters on hand-made logits; batched
// generation equals generating each request alone; requests submitted while others run, their
// tokens streamed through sinks, and cancelled requests (blocks back, the others unharmed).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>

#include "hp/core/rng.hpp"
#include "hp/infer/engine.hpp"
#include "hp/io/json.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/executor.hpp"
#include "infer_util.hpp"
#include "test_util.hpp"

namespace hp::infer {
namespace {

using test::random_params;
using test::recompute;
using test::relative_error;

io::ModelConfig gpt2_config() {
  return io::ModelConfig::from_json(
      io::parse_json(R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 4,
                         "n_positions": 40, "vocab_size": 50, "layer_norm_epsilon": 1e-5})",
                     "gpt2"),
      "gpt2");
}

io::ModelConfig llama_config() {
  return test::small_llama(40);
}

std::vector<int64_t> random_tokens(int64_t n, int64_t vocab, uint64_t stream) {
  std::vector<int64_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(int64_t(rng::bits(3, stream, uint64_t(i)) % vocab));
  return t;
}

// Prefill 13 tokens in chunks of 8 (and pieces of 4 and 1) into blocks of 4 positions, then decode
// two sequences together to 36 positions, each step's logits against a full recompute.
void check_cache_matches_recompute(const io::ModelConfig& cfg) {
  const io::TensorMap params = random_params(cfg, 11);
  EngineOptions o;
  o.block_tokens = 4;
  o.prefill_chunk = 8;
  o.max_batch = 2;
  Engine e(cfg, params, o, default_allocator());
  std::vector<std::vector<int64_t>> seqs{random_tokens(13, cfg.vocab, 1),
                                         random_tokens(6, cfg.vocab, 2)};
  std::vector<SeqKv> kv(2);
  for (size_t s = 0; s < 2; ++s) {
    const std::vector<float> got = e.prefill(kv[s], seqs[s]);
    EXPECT_EQ(kv[s].length, int64_t(seqs[s].size()));
    EXPECT_LE(relative_error(got, recompute(cfg, params, seqs[s])), 1e-5) << "prefill " << s;
  }
  for (int step = 0; step < 23; ++step) {
    std::vector<int64_t> next;
    for (size_t s = 0; s < 2; ++s) {
      next.push_back(int64_t(rng::bits(5, s, uint64_t(step)) % cfg.vocab));
      seqs[s].push_back(next.back());
    }
    const std::vector<float> got = e.decode({&kv[0], &kv[1]}, next);
    for (size_t s = 0; s < 2; ++s) {
      const std::span<const float> row(got.data() + s * size_t(cfg.vocab), size_t(cfg.vocab));
      ASSERT_LE(relative_error(row, recompute(cfg, params, seqs[s])), 1e-5)
          << "sequence " << s << " at " << seqs[s].size() << " positions";
    }
  }
  // The comparison can fail: another sequence's logits are far off.
  const std::vector<float> last = e.decode({&kv[0]}, std::vector<int64_t>{1});
  seqs[1].push_back(1);
  EXPECT_GT(relative_error(last, recompute(cfg, params, seqs[1])), 1e-3);
  EXPECT_EQ(kv[0].length, 37);
  EXPECT_EQ(int64_t(kv[0].blocks.size()), 10);
}

TEST(KvCache, Gpt2PrefillAndDecodeMatchRecompute) {
  check_cache_matches_recompute(gpt2_config());
}

TEST(KvCache, LlamaGqaPrefillAndDecodeMatchRecompute) {
  check_cache_matches_recompute(llama_config());
}

// Long enough contexts that decode attention runs on a team (two sequences x two kv heads x
// 700 positions x head size 8 is over the kernels' threading threshold): every decode step's
// logits near the full recompute on one thread and on two, with blocks of 16 positions (whole
// vectors of keys) and of 12 (eight in a vector, four one by one).
TEST(KvCache, DecodeOnATeamMatchesRecompute) {
  const io::ModelConfig cfg = test::small_llama(1024);
  const io::TensorMap params = random_params(cfg, 12);
  for (const auto& [threads, block] : {std::pair{1, 16}, std::pair{2, 16}, std::pair{2, 12}}) {
    std::vector<std::vector<int64_t>> seqs{random_tokens(700, cfg.vocab, 3),
                                           random_tokens(650, cfg.vocab, 4)};
    EngineOptions o;
    o.max_batch = 2;
    o.threads = threads;
    o.block_tokens = block;
    Engine e(cfg, params, o, default_allocator());
    std::vector<SeqKv> kv(2);
    for (size_t s = 0; s < 2; ++s) e.prefill(kv[s], seqs[s]);
    for (int64_t step = 0; step < 3; ++step) {
      const std::vector<float> got = e.decode({&kv[0], &kv[1]}, std::vector<int64_t>{step, 7});
      seqs[0].push_back(step);
      seqs[1].push_back(7);
      for (size_t s = 0; s < 2; ++s) {
        const std::span<const float> row(got.data() + s * size_t(cfg.vocab), size_t(cfg.vocab));
        EXPECT_LE(relative_error(row, recompute(cfg, params, seqs[s])), 1e-5)
            << threads << " threads, blocks of " << block << ", sequence " << s << ", step "
            << step;
      }
    }
  }
}

TEST(KvCache, PoolRefusesBeyondItsBlocksAndMaxSeq) {
  KvPool pool(gpt2_config(), 3, 4, default_allocator());
  SeqKv a, b;
  pool.reserve(a, 9);  // 3 blocks
  EXPECT_EQ(pool.free_blocks(), 0);
  EXPECT_NE(test::error_of([&] { pool.reserve(b, 1); }).find("1 more blocks"), std::string::npos);
  pool.release(a);
  EXPECT_EQ(pool.free_blocks(), 3);
  EXPECT_NE(test::error_of([&] { pool.reserve(b, 41); }).find("exceed the model's 40"),
            std::string::npos);
}

// ---- sampling on hand-made logits ---------------------------------------------------------

std::map<int64_t, double> as_map(const std::vector<std::pair<int64_t, double>>& c) {
  return std::map<int64_t, double>(c.begin(), c.end());
}

SamplingParams plain(double temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  return p;
}

// log of these probabilities: the filters' cut points are easy to read off.
const std::vector<float> kProbs{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};

TEST(Sampling, GreedyTakesTheFirstLargest) {
  const std::vector<float> l{1, 3, 3, 2};
  EXPECT_EQ(as_map(candidates(l, plain(0))), (std::map<int64_t, double>{{1, 1.0}}));
  for (uint64_t i = 0; i < 20; ++i) EXPECT_EQ(sample(l, {}, {}, plain(0), i, i), 1);
}

TEST(Sampling, TemperatureScalesTheSoftmax) {
  const std::vector<float> l{0, 1, 2};
  auto c = as_map(candidates(l, plain(2.0)));
  const double z = 1 + std::exp(0.5) + std::exp(1.0);
  EXPECT_NEAR(c[0], 1 / z, 1e-9);
  EXPECT_NEAR(c[1], std::exp(0.5) / z, 1e-9);
  EXPECT_NEAR(c[2], std::exp(1.0) / z, 1e-9);
}

TEST(Sampling, TopKKeepsTheKLargest) {
  SamplingParams p = plain(1);
  p.top_k = 2;
  auto c = as_map(candidates(kProbs, p));
  ASSERT_EQ(c.size(), 2u);
  EXPECT_NEAR(c[0], 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(c[1], 0.3 / 0.8, 1e-6);
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  SamplingParams p = plain(1);
  p.top_p = 0.7;
  EXPECT_EQ(candidates(kProbs, p).size(), 2u);
  p.top_p = 0.85;
  auto c = as_map(candidates(kProbs, p));
  ASSERT_EQ(c.size(), 3u);
  EXPECT_NEAR(c[2], 0.15 / 0.95, 1e-6);
  p.top_p = 0.01;  // never empty
  EXPECT_EQ(candidates(kProbs, p).size(), 1u);
}

TEST(Sampling, MinPDropsTokensBelowAShareOfTheTop) {
  SamplingParams p = plain(1);
  p.min_p = 0.2;  // keeps p >= 0.1
  EXPECT_EQ(candidates(kProbs, p).size(), 3u);
  p.min_p = 0.4;  // keeps p >= 0.2
  auto c = as_map(candidates(kProbs, p));
  ASSERT_EQ(c.size(), 2u);
  EXPECT_NEAR(c[0], 0.5 / 0.8, 1e-6);
}

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  std::vector<float> l{2, -2, 1};
  SamplingParams p = plain(1);
  p.repetition_penalty = 2;
  const std::vector<int64_t> prompt{0}, gen{1};
  apply_penalties(l, prompt, gen, p);
  EXPECT_EQ(l, (std::vector<float>{1, -4, 1}));
}

TEST(Sampling, PresenceAndFrequencyPenaliseGeneratedTokens) {
  std::vector<float> l{1, 1, 1};
  SamplingParams p = plain(1);
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  const std::vector<int64_t> prompt{1}, gen{2, 2, 0};
  apply_penalties(l, prompt, gen, p);
  EXPECT_EQ(l, (std::vector<float>{0.25f, 1.0f, 0.0f}));
}

TEST(Sampling, DrawDependsOnlyOnSeedSequenceAndIndex) {
  const std::vector<std::pair<int64_t, double>> c{{7, 0.25}, {8, 0.5}, {9, 0.25}};
  std::map<int64_t, int> hist;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++hist[draw(c, 42, 3, uint64_t(i))];
  EXPECT_NEAR(hist[8] / double(n), 0.5, 0.02);
  EXPECT_NEAR(hist[7] / double(n), 0.25, 0.02);
  // The same (seed, sequence, index) gives the same token whatever was drawn before.
  for (int i = 0; i < 50; ++i) EXPECT_EQ(draw(c, 42, 3, uint64_t(i)), draw(c, 42, 3, uint64_t(i)));
  int differ_seq = 0, differ_seed = 0;
  for (int i = 0; i < 200; ++i) {
    differ_seq += draw(c, 42, 3, uint64_t(i)) != draw(c, 42, 4, uint64_t(i));
    differ_seed += draw(c, 42, 3, uint64_t(i)) != draw(c, 43, 3, uint64_t(i));
  }
  EXPECT_GT(differ_seq, 50);
  EXPECT_GT(differ_seed, 50);
}

TEST(Sampling, OutOfRangeParametersAreRefused) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_NE(test::error_of([&] { check(p); }).find("top_p"), std::string::npos);
  p = SamplingParams{};
  p.min_p = 2;
  EXPECT_NE(test::error_of([&] { check(p); }).find("min_p"), std::string::npos);
  p = SamplingParams{};
  p.repetition_penalty = 0;
  EXPECT_NE(test::error_of([&] { check(p); }).find("repetition_penalty"), std::string::npos);
}

TEST(Sampling, FindStopFindsTheEarliest) {
  EXPECT_EQ(find_stop("abcdef", {"de", "bc"}), 1u);
  EXPECT_EQ(find_stop("abcdef", {"x", ""}), std::string::npos);
}

// ---- generation ---------------------------------------------------------------------------

Request greedy_request(std::vector<int64_t> prompt, int64_t tokens) {
  Request r;
  r.prompt = std::move(prompt);
  r.max_tokens = tokens;
  r.sampling.temperature = 0;
  return r;
}

TEST(Generate, BatchGivesEachRequestItsTokensAlone) {
  for (const auto& cfg : {gpt2_config(), llama_config()}) {
    const io::TensorMap params = random_params(cfg, 5);
    std::vector<Request> reqs;
    for (int64_t n : {3, 11, 1, 20, 7}) reqs.push_back(greedy_request(random_tokens(n, 50, n), 12));
    EngineOptions alone;
    alone.block_tokens = 4;
    alone.prefill_chunk = 8;
    EngineOptions batched = alone;
    batched.max_batch = 3;
    batched.token_budget = 6;  // decodes take most of it: prefill chunks are cut short
    Engine one(cfg, params, alone, default_allocator());
    Engine many(cfg, params, batched, default_allocator());
    const auto together = many.generate(reqs);
    ASSERT_EQ(together.size(), reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      const auto single = one.generate({reqs[i]});
      EXPECT_EQ(together[i].tokens, single[0].tokens) << "request " << i;
      EXPECT_EQ(together[i].tokens.size(), 12u);
      EXPECT_EQ(together[i].finish, "length");
    }
    EXPECT_EQ(many.pool().free_blocks(), many.pool().blocks()) << "blocks leaked";
  }
}

TEST(Generate, EosAndStopStringsEndASequence) {
  const auto cfg = gpt2_config();
  const io::TensorMap params = random_params(cfg, 5);
  Engine e(cfg, params, EngineOptions{}, default_allocator());
  Request r = greedy_request(random_tokens(5, 50, 9), 10);
  const auto full = e.generate({r})[0].tokens;
  ASSERT_EQ(full.size(), 10u);
  Request eos = r;
  eos.eos = full[2];
  const auto at_eos = e.generate({eos})[0];
  EXPECT_EQ(at_eos.finish, "eos");
  EXPECT_EQ(at_eos.tokens.back(), full[2]);
  EXPECT_LE(at_eos.tokens.size(), 3u);
  Request stop = r;
  stop.stop = {std::string{char(full[4]), char(full[5])}};
  const auto stopped = e.generate({stop})[0];
  EXPECT_EQ(stopped.finish, "stop");
  ASSERT_LE(stopped.tokens.size(), 4u);
  EXPECT_TRUE(std::equal(stopped.tokens.begin(), stopped.tokens.end(), full.begin()));
}

// A tokenizer's text (EngineOptions::token_text: here id 7 reads "<7>"): a stop string starting
// inside one token's text and ending in the next cuts the output before the token it starts in.
TEST(Generate, StopStringsMatchTheTokensText) {
  const auto cfg = gpt2_config();
  const io::TensorMap params = random_params(cfg, 5);
  EngineOptions o;
  o.token_text = [](int64_t id) {
    std::string t = "<";
    t += std::to_string(id);
    t += '>';
    return t;
  };
  Engine e(cfg, params, o, default_allocator());
  Request r = greedy_request(random_tokens(5, 50, 9), 10);
  const auto full = e.generate({r})[0].tokens;
  ASSERT_EQ(full.size(), 10u);
  Request stop = r;
  std::string across = std::to_string(full[4]);
  across += "><";
  across += std::to_string(full[5]);
  stop.stop = {across};
  const auto stopped = e.generate({stop})[0];
  EXPECT_EQ(stopped.finish, "stop");
  const size_t first = size_t(std::find(full.begin(), full.end(), full[4]) - full.begin());
  EXPECT_EQ(stopped.tokens, std::vector<int64_t>(full.begin(), full.begin() + int64_t(first)));
}

TEST(Generate, SeededSamplingRepeatsAndASeedChangesIt) {
  const auto cfg = llama_config();
  const io::TensorMap params = random_params(cfg, 5);
  Engine e(cfg, params, EngineOptions{}, default_allocator());
  Request r = greedy_request(random_tokens(5, 50, 9), 16);
  r.sampling.temperature = 1.5;
  r.sampling.top_k = 0;
  const auto a = e.generate({r})[0].tokens, b = e.generate({r})[0].tokens;
  EXPECT_EQ(a, b);
  r.sampling.seed = 2;
  EXPECT_NE(e.generate({r})[0].tokens, a);
}

TEST(Generate, PastMaxSeqTheWindowShifts) {
  const auto cfg = gpt2_config();  // 40 positions
  const io::TensorMap params = random_params(cfg, 5);
  EngineOptions o;
  o.block_tokens = 4;
  Engine e(cfg, params, o, default_allocator());
  const auto r = e.generate({greedy_request(random_tokens(30, 50, 4), 30)})[0];
  EXPECT_EQ(r.tokens.size(), 30u);
  EXPECT_EQ(r.finish, "length");
}

// ---- submitting while running, sinks, cancelling ------------------------------------------

// What a request's sink received: the tokens in order, and the result once done.
struct Collected {
  std::vector<int64_t> tokens;
  std::optional<Result> done;
  int calls_after_done = 0;
  TokenSink sink() {
    return [this](std::span<const int64_t> t, const Result* d) {
      if (done) ++calls_after_done;
      tokens.insert(tokens.end(), t.begin(), t.end());
      if (d) done = *d;
    };
  }
};

TEST(Submit, RequestsJoiningARunningBatchGetTheirTokensAlone) {
  const auto cfg = llama_config();
  const io::TensorMap params = random_params(cfg, 5);
  EngineOptions o;
  o.block_tokens = 4;
  o.prefill_chunk = 8;
  o.max_batch = 2;
  Engine alone(cfg, params, o, default_allocator()), e(cfg, params, o, default_allocator());
  std::vector<Request> reqs;
  for (int64_t n : {9, 3, 14}) reqs.push_back(greedy_request(random_tokens(n, 50, n), 10));
  std::vector<Collected> got(reqs.size());
  e.submit(reqs[0], 0, got[0].sink());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(e.step());
  EXPECT_FALSE(got[0].tokens.empty()) << "no token streamed after 4 steps";
  e.submit(reqs[1], 0, got[1].sink());
  e.submit(reqs[2], 0, got[2].sink());  // waits: two places
  EXPECT_EQ(e.stats().waiting, 2);
  ASSERT_TRUE(e.step());
  EXPECT_EQ(e.stats().running, 2);
  EXPECT_EQ(e.stats().waiting, 1);
  while (e.step()) {
  }
  EXPECT_FALSE(e.step()) << "an idle engine stepped";
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(got[i].done.has_value()) << "request " << i << " not done";
    EXPECT_EQ(got[i].tokens, got[i].done->tokens) << "streamed tokens differ from the result";
    EXPECT_EQ(got[i].done->tokens, alone.generate({reqs[i]})[0].tokens) << "request " << i;
    EXPECT_EQ(got[i].calls_after_done, 0);
  }
  EXPECT_EQ(e.stats().generated, 30);
  EXPECT_EQ(e.pool().free_blocks(), e.pool().blocks()) << "blocks leaked";
}

TEST(Submit, SinksNeverReceiveTokensAStopStringTakesBack) {
  const auto cfg = gpt2_config();
  const io::TensorMap params = random_params(cfg, 5);
  Engine e(cfg, params, EngineOptions{}, default_allocator());
  // Byte-valued prompts: the model's vocabulary (50) is all bytes.
  Request r = greedy_request(random_tokens(5, 50, 9), 12);
  const auto full = e.generate({r})[0].tokens;
  ASSERT_EQ(full.size(), 12u);
  Request stop = r;
  stop.stop = {std::string{char(full[6]), char(full[7]), char(full[8])}};
  Collected got;
  std::vector<size_t> sizes;
  e.submit(stop, 0, [&](std::span<const int64_t> t, const Result* d) {
    got.sink()(t, d);
    sizes.push_back(got.tokens.size());
  });
  while (e.step()) {
  }
  ASSERT_TRUE(got.done.has_value());
  EXPECT_EQ(got.done->finish, "stop");
  EXPECT_EQ(got.tokens, got.done->tokens);
  // Before the end, nothing past what the result keeps was passed on.
  for (size_t i = 0; i + 1 < sizes.size(); ++i) EXPECT_LE(sizes[i], got.done->tokens.size());
  EXPECT_GT(sizes.size(), 2u) << "tokens were not streamed one step at a time";
}

TEST(Submit, CancelGivesBackBlocksAndLeavesTheOthersUnharmed) {
  const auto cfg = gpt2_config();
  const io::TensorMap params = random_params(cfg, 5);
  EngineOptions o;
  o.block_tokens = 4;
  o.max_batch = 2;
  Engine e(cfg, params, o, default_allocator()), alone(cfg, params, o, default_allocator());
  const Request a = greedy_request(random_tokens(7, 50, 1), 20);
  const Request b = greedy_request(random_tokens(12, 50, 2), 20);
  const Request c = greedy_request(random_tokens(5, 50, 3), 20);
  Collected ga, gb, gc;
  const SeqId ia = e.submit(a, 0, ga.sink());
  e.submit(b, 0, gb.sink());
  const SeqId ic = e.submit(c, 0, gc.sink());
  for (int i = 0; i < 5; ++i) e.step();
  ASSERT_FALSE(ga.tokens.empty());
  EXPECT_LT(e.pool().free_blocks(), e.pool().blocks());
  EXPECT_TRUE(e.cancel(ic));  // waiting
  EXPECT_TRUE(e.cancel(ia));  // running
  EXPECT_FALSE(e.cancel(ia)) << "cancelled twice";
  EXPECT_EQ(e.stats().running, 1);
  EXPECT_EQ(e.stats().waiting, 0);
  const size_t streamed = ga.tokens.size();
  while (e.step()) {
  }
  EXPECT_EQ(ga.tokens.size(), streamed) << "a cancelled request's sink was called";
  EXPECT_FALSE(ga.done.has_value());
  EXPECT_TRUE(gc.tokens.empty());
  ASSERT_TRUE(gb.done.has_value());
  EXPECT_EQ(gb.done->tokens, alone.generate({b})[0].tokens);
  EXPECT_EQ(e.pool().free_blocks(), e.pool().blocks()) << "blocks leaked";
  EXPECT_FALSE(e.cancel(12345));
}

TEST(Submit, BadRequestsAreRefusedBeforeQueueing) {
  const auto cfg = gpt2_config();  // 40 positions
  const io::TensorMap params = random_params(cfg, 5);
  Engine e(cfg, params, EngineOptions{}, default_allocator());
  EXPECT_NE(test::error_of([&] { e.submit(greedy_request({}, 4), 0, {}); }).find("empty prompt"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              e.submit(greedy_request(random_tokens(41, 50, 1), 4), 0, {});
            }).find("exceeds the model's 40 positions"),
            std::string::npos);
  EXPECT_TRUE(e.idle());
  Collected none;
  e.submit(greedy_request({1, 2}, 0), 0, none.sink());  // max_tokens 0: done at once
  ASSERT_TRUE(none.done.has_value());
  EXPECT_EQ(none.done->finish, "length");
  EXPECT_TRUE(e.idle());
}

}  // namespace
}  // namespace hp::infer
