// KV offload under a device budget (hp/infer/kv_plan.hpp): with blocks in the host tier, fetched
// per layer into device staging or attended where they live, every step's logits are bitwise
// those of the run with every block resident, and within 1e-5 of a full recompute for the GPT-2
// and Llama reference weights; the device allocator's measured peak stays under the budget; a
// budget too small is refused before running, naming the smallest that fits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "hp/core/rng.hpp"
#include "hp/infer/kv_plan.hpp"
#include "hp/io/json.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/executor.hpp"
#include "infer_util.hpp"
#include "test_inputs.hpp"

namespace hp::infer {
namespace {

using test::random_params;
using test::recompute;

namespace fs = std::filesystem;

io::ModelConfig long_llama() {
  return test::small_llama(128);
}

std::vector<int64_t> prompt_of(int64_t n, int64_t vocab) {
  std::vector<int64_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(int64_t(rng::bits(9, 1, uint64_t(i)) % vocab));
  return t;
}

EngineOptions small_blocks() {
  EngineOptions o;
  o.block_tokens = 4;
  o.prefill_chunk = 8;
  return o;
}

struct Generated {
  KvPlan plan;
  std::vector<std::vector<float>> logits;  // after the prompt, then after each decoded token
  std::vector<int64_t> tokens;             // greedy
  size_t peak = 0, host = 0;
};

// The prompt prefilled, then greedy tokens decoded until the context is full, under `budget`
// (0: none) with the plan of `mode`; the device allocator holds the budget less the scratch.
Generated run(const io::ModelConfig& cfg, const io::TensorMap& params,
              const std::vector<int64_t>& prompt, int64_t context, size_t budget,
              const std::string& mode) {
  Generated r;
  r.plan = plan_kv(cfg, small_blocks(), context, budget, mode);
  auto device = std::make_shared<Allocator>("device", budget ? budget - r.plan.scratch_bytes : 0);
  EngineOptions eo = r.plan.engine(small_blocks());
  memory::TieredPool tiers(device, 0);
  memory::TransferEngine copies(1, memory::CopyMode::kInline);
  eo.kv.host = tiers.host();
  if (eo.streaming.budget > 0) {  // fetch: the stagings go through the offload planner
    eo.streaming.tiers = &tiers;
    eo.streaming.engine = &copies;
    eo.streaming.cost.inline_copies = true;
  }
  io::TensorMap on_device;
  for (const auto& [name, t] : params) on_device.emplace(name, t.clone(device));
  {
    Engine e(cfg, on_device, eo, device);
    SeqKv kv;
    std::vector<float> l = e.prefill(kv, prompt);
    for (;;) {
      r.logits.push_back(l);
      r.tokens.push_back(int64_t(std::max_element(l.begin(), l.end()) - l.begin()));
      if (kv.length == context) break;
      l = e.decode({&kv}, std::vector<int64_t>{r.tokens.back()});
    }
    r.host = e.pool().host_bytes();
  }
  r.peak = device->peak_bytes();
  return r;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A budget halfway between the smallest the mode allows and what every block resident needs.
size_t mixed_budget(const io::ModelConfig& cfg, int64_t context, const std::string& mode) {
  const size_t whole = plan_kv(cfg, small_blocks(), context, 0, "none").device_bytes();
  const size_t least = plan_kv(cfg, small_blocks(), context, 0, mode).min_budget;
  EXPECT_LT(least, whole) << mode;
  return (least + whole) / 2;
}

// The pool's block size follows the model, not the budget: the fewest positions (a multiple of
// 8, at least 16) whose keys of one layer fill a 4 KiB page, within the model's positions.
TEST(KvPlan, BlockSizeIsChosenPerModel) {
  io::ModelConfig c = test::small_llama(4096);  // 2 kv heads of 8: 64 bytes a position
  EXPECT_EQ(block_tokens_for(c), 64);
  c.max_seq = 40;  // a block need not outgrow the context
  EXPECT_EQ(block_tokens_for(c), 40);
  c.max_seq = 4096;
  c.n_kv_head = 1;
  c.head_dim = 4;  // 16 bytes: a page would take 256 positions, the most a block holds
  EXPECT_EQ(block_tokens_for(c), 256);
  c.n_kv_head = 12;
  c.head_dim = 64;  // 3 KiB a position (gpt2-124m): the floor of 16
  EXPECT_EQ(block_tokens_for(c), 16);
  c.n_kv_head = 2;
  c.head_dim = 32;  // 256 bytes (llama-long): 16 fill the page exactly
  EXPECT_EQ(block_tokens_for(c), 16);
  c.head_dim = 24;  // 192 bytes: 21.3 positions, rounded up to a multiple of 8
  EXPECT_EQ(block_tokens_for(c), 24);
}

TEST(KvOffload, FetchedAndDirectEqualResidentBitwise) {
  const io::ModelConfig cfg = long_llama();
  const io::TensorMap params = random_params(cfg, 7);
  const std::vector<int64_t> prompt = prompt_of(45, cfg.vocab);
  const Generated all = run(cfg, params, prompt, 120, 0, "none");
  ASSERT_EQ(all.plan.mode, "resident");
  ASSERT_EQ(all.logits.size(), 76u);
  for (const std::string mode : {"host", "direct"}) {
    const size_t budget = mixed_budget(cfg, 120, mode);
    const Generated off = run(cfg, params, prompt, 120, budget, mode);
    EXPECT_EQ(off.plan.mode, mode == "host" ? "fetch" : "direct");
    // Some blocks of the sequence on each side, the tail written on the host.
    EXPECT_GT(off.plan.resident, 0) << mode;
    EXPECT_LT(off.plan.resident, off.plan.blocks_per_seq) << mode;
    EXPECT_EQ(off.host, off.plan.kv_host_bytes) << mode;
    EXPECT_GT(off.host, 0u) << mode;
    // The measured peak: under the budget less the scratch, and what the plan said.
    EXPECT_LE(off.peak + off.plan.scratch_bytes, budget) << mode;
    EXPECT_LE(off.peak, off.plan.device_bytes() - off.plan.scratch_bytes) << mode;
    EXPECT_LT(off.peak, all.peak) << mode;
    EXPECT_EQ(off.tokens, all.tokens) << mode;
    ASSERT_EQ(off.logits.size(), all.logits.size()) << mode;
    for (size_t i = 0; i < all.logits.size(); ++i)
      ASSERT_TRUE(bitwise_equal(off.logits[i], all.logits[i])) << mode << " step " << i;
  }
}

TEST(KvOffload, InfeasibleBudgetNamesTheSmallest) {
  const io::ModelConfig cfg = long_llama();
  for (const std::string mode : {"host", "direct"}) {
    const size_t least = plan_kv(cfg, small_blocks(), 100, 0, mode).min_budget;
    const KvPlan p = plan_kv(cfg, small_blocks(), 100, least, mode);
    EXPECT_LT(p.resident, p.blocks_per_seq) << mode;
    EXPECT_LE(p.device_bytes(), least) << mode;
    try {
      plan_kv(cfg, small_blocks(), 100, least - 1, mode);
      ADD_FAILURE() << mode << ": a budget under the smallest was accepted";
    } catch (const OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("smallest feasible budget is " + std::to_string(least) +
                                           " bytes"),
                std::string::npos)
          << e.what();
    }
  }
  // Every block resident at a context the budget cannot hold: refused, naming what it needs.
  const size_t whole = plan_kv(cfg, small_blocks(), 100, 0, "none").device_bytes();
  EXPECT_EQ(plan_kv(cfg, small_blocks(), 100, whole, "none").mode, "resident");
  try {
    plan_kv(cfg, small_blocks(), 100, whole - 1, "none");
    ADD_FAILURE() << "--kv-offload none over the budget was accepted";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("smallest budget that holds it is " +
                                         std::to_string(whole) + " bytes"),
              std::string::npos)
        << e.what();
  }
  // auto takes what fits: resident when it does, else offload.
  EXPECT_EQ(plan_kv(cfg, small_blocks(), 100, whole, "auto").mode, "resident");
  EXPECT_EQ(plan_kv(cfg, small_blocks(), 100, whole - 1, "auto").mode, "direct");
  // disk is the fetch plan with the offloaded blocks on disk; resident when everything fits.
  const KvPlan host = plan_kv(cfg, small_blocks(), 100, whole - 1, "host"),
               disk = plan_kv(cfg, small_blocks(), 100, whole - 1, "disk");
  EXPECT_EQ(disk.mode, "fetch");
  EXPECT_EQ(disk.tier, "disk");
  EXPECT_EQ(host.tier, "host");
  EXPECT_EQ(disk.resident, host.resident);
  EXPECT_EQ(disk.device_bytes(), host.device_bytes());
  EXPECT_EQ(plan_kv(cfg, small_blocks(), 100, whole, "disk").tier, "host");  // nothing offloaded
  EXPECT_THROW(plan_kv(cfg, small_blocks(), 100, whole, "tape"), Error);
  // int8 KV is costed beside every plan: 4 / 1.0625 times the blocks in the same bytes, so what
  // f32 needs a budget just short of the whole cache for fits whole in int8; at a budget where
  // f32 offloads part, int8 keeps over 3 times the positions f32 keeps resident (or all).
  EXPECT_EQ(host.int8_resident_context, 100);
  EXPECT_EQ(plan_kv(cfg, small_blocks(), 100, 0, "none").int8_resident_context, 100);
  const KvPlan tight = plan_kv(cfg, small_blocks(), 100, (host.min_budget + whole) / 2, "host");
  ASSERT_GT(tight.resident, 0);
  ASSERT_LT(tight.resident, tight.blocks_per_seq);
  const double per_position = double(tight.block_bytes) / double(tight.block_tokens);
  EXPECT_GT(tight.int8_resident_context,
            std::min<int64_t>(99, 3 * tight.resident * tight.block_tokens));
  EXPECT_DOUBLE_EQ(tight.int8_decode_device_bytes,
                   double(tight.weight_bytes) + double(tight.int8_resident_context) * per_position /
                                                    4 * kKvInt8BytesPerElement);
}

// Weights in the host tier: the gathered input embedding always (a decode token reads one row
// of it), others only under a budget the KV cannot meet even fully offloaded, largest first, as
// few as fit. Attended in place (direct), what a decode token reads of them is counted on the
// host side; with the blocks fetched (host), those read whole are streamed by the offload
// planner: fetched, and read on the device.
TEST(KvOffload, WeightsLeaveTheDeviceOnlyWhenTheKvCannotMakeRoom) {
  const io::ModelConfig cfg = long_llama();  // untied: its embedding is only gathered
  const size_t least = plan_kv(cfg, small_blocks(), 100, 0, "host").min_budget;
  const KvPlan roomy = plan_kv(cfg, small_blocks(), 100, least, "host", true);
  ASSERT_EQ(roomy.host_weights, std::vector<std::string>{"model.embed_tokens.weight"});
  const size_t table = size_t(cfg.vocab * cfg.d_model) * 4;
  EXPECT_EQ(roomy.weight_host_bytes, table);
  EXPECT_DOUBLE_EQ(roomy.decode_host_bytes, double(cfg.d_model) * 4);  // one row per token
  EXPECT_GT(roomy.resident, plan_kv(cfg, small_blocks(), 100, least, "host").resident);

  EXPECT_TRUE(roomy.streamed_weights.empty());  // the table is read in place

  const size_t tight = least - table - 1;  // the table alone no longer makes room
  const KvPlan p = plan_kv(cfg, small_blocks(), 100, tight, "host", true);
  ASSERT_GE(p.host_weights.size(), 2u);
  EXPECT_EQ(p.host_weights[0], "model.embed_tokens.weight");
  EXPECT_LE(p.device_bytes(), tight);
  EXPECT_EQ(p.streamed_weights.size(), p.host_weights.size() - 1);
  EXPECT_GT(p.stream_budget, 0u);
  EXPECT_DOUBLE_EQ(p.decode_host_bytes, double(cfg.d_model) * 4);
  EXPECT_GE(p.decode_fetch_bytes, double(p.weight_host_bytes - table));
  EXPECT_THROW(plan_kv(cfg, small_blocks(), 100, tight, "host"), OutOfMemory);  // without
  const size_t direct_least = plan_kv(cfg, small_blocks(), 100, 0, "direct").min_budget;
  const KvPlan d = plan_kv(cfg, small_blocks(), 100, direct_least - table - 1, "direct", true);
  ASSERT_GE(d.host_weights.size(), 2u);
  EXPECT_TRUE(d.streamed_weights.empty());
  EXPECT_GT(d.decode_host_bytes, double(cfg.d_model) * 4);  // read where they live
  try {
    plan_kv(cfg, small_blocks(), 100, 1, "host", true);
    ADD_FAILURE() << "a 1-byte budget was accepted";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("every weight in the host tier"), std::string::npos)
        << e.what();
  }
}

void check_reference(const std::string& name) {
  const fs::path dir = fs::path(HP_SHARED_DIR) / "reference" / name;
  HP_REQUIRE_INPUT(fs::exists(dir / "case.json"), dir.string());
  std::ifstream in(dir / "case.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const io::Json c = io::parse_json(text, name);
  const io::ModelConfig cfg = io::ModelConfig::from_json(c["model"], name);
  const io::TensorMap params =
      nn::adopt_params(cfg, io::read_safetensors(dir / "weights.safetensors"), name);
  const std::vector<int64_t> prompt = prompt_of(9, cfg.vocab);
  const int64_t context = cfg.max_seq;
  for (const std::string mode : {"host", "direct"}) {
    const Generated off = run(cfg, params, prompt, context, mixed_budget(cfg, context, mode), mode);
    ASSERT_GT(off.host, 0u) << name << " " << mode;
    std::vector<int64_t> seq = prompt;
    for (size_t i = 0; i < off.logits.size(); ++i) {
      const std::vector<float> want = recompute(cfg, params, seq);
      double diff = 0, scale = 0;
      for (size_t v = 0; v < want.size(); ++v) {
        diff = std::max(diff, double(std::abs(off.logits[i][v] - want[v])));
        scale = std::max(scale, double(std::abs(want[v])));
      }
      ASSERT_LE(diff / scale, 1e-5) << name << " " << mode << " at " << seq.size();
      seq.push_back(off.tokens[i]);
    }
  }
}

TEST(KvOffload, GptReferenceLogitsMatchRecompute) {
  check_reference("gpt2-tiny");
}
TEST(KvOffload, LlamaReferenceLogitsMatchRecompute) {
  check_reference("llama-tiny");
}

}  // namespace
}  // namespace hp::infer
