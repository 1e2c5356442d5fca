// `hp bench context`: the longest prompt that prefills and decodes --tokens greedy tokens under a
// device budget, found by running: a binary search on the prompt length, each probe a KV plan
// and, when the plan fits, a real prefill and decode under the budget (a probe fails on
// hp::OutOfMemory, from the plan or the allocator). Once with every block resident, once with
// offload; then the offloaded maximum is run again without a budget and its tokens compared.
#include <cstdio>
#include <optional>

#include "cli/bench_options.hpp"
#include "cli/devices.hpp"
#include "cli/generate.hpp"
#include "hp/core/rng.hpp"
#include "hp/io/json.hpp"

namespace hp::cli {

namespace {

infer::Request probe_request(int64_t prompt, int64_t tokens, int64_t vocab) {
  infer::Request r;
  r.max_tokens = tokens;
  r.sampling.temperature = 0;
  for (int64_t i = 0; i < prompt; ++i)
    r.prompt.push_back(
        int64_t(rng::bits(1, rng::mix(0x636f6e74657874ull), uint64_t(i)) % uint64_t(vocab)));
  return r;
}

struct Search {
  int64_t max = 0;
  std::string mode;             // the plan's mode at max
  std::vector<int64_t> tokens;  // generated at max
  size_t peak = 0;
};

// Every block on the device.
const OffloadChoice kResident{.mode = "none", .dir = "", .weights = false};

// The longest prompt in [1, hi] that runs under `budget` with `mode` (0 when none does).
Search longest(const io::ModelConfig& cfg, const io::TensorMap& params,
               const infer::EngineOptions& eo, int64_t hi, int64_t tokens, size_t budget,
               const OffloadChoice& offload) {
  Search s;
  auto probe = [&](int64_t p) {
    try {
      PlannedRun run = run_planned(cfg, params, {probe_request(p, tokens, cfg.vocab)}, eo,
                                   memory::Budget{budget, 0}, offload);
      s.max = p;
      s.mode = run.plan.mode;
      s.tokens = run.results[0].tokens;
      s.peak = run.peak_device_bytes;
      return true;
    } catch (const OutOfMemory&) {
      return false;
    }
  };
  if (probe(hi)) return s;
  int64_t lo = 0, top = hi - 1;  // lo: known to run (0: nothing yet)
  while (lo < top) {
    const int64_t mid = (lo + top + 1) / 2;
    if (!probe(mid))
      top = mid - 1;
    else
      lo = mid;
  }
  if (s.max != lo && lo > 0) probe(lo);  // the tokens and peak of the maximum itself
  return s;
}

}  // namespace

int bench_context(const std::vector<std::string>& argv) {
  Args a(argv, bench_context_command());
  if (printed_help(a)) return 0;
  HP_CHECK(a.has("device-memory"), "hp bench context needs --device-memory SIZE");
  const size_t budget = memory::parse_bytes(a.str("device-memory"));
  auto [cfg, params] = load_model(model_source(a));
  const int64_t tokens = a.i64("tokens");
  int64_t hi = a.i64("max-prompt") > 0 ? a.i64("max-prompt") : cfg.max_seq - tokens;
  hi = std::min(hi, cfg.max_seq - tokens);
  HP_CHECK(hi >= 1, "--tokens ", tokens, " leaves no room for a prompt in ", cfg.max_seq,
           " positions");
  infer::EngineOptions eo;
  eo.block_tokens = block_tokens_of(a, cfg);
  eo.prefill_chunk = a.i64("prefill-chunk");
  eo.threads = threads_per_rank(a, Devices{});  // one device
  const Search resident = longest(cfg, params, eo, hi, tokens, budget, kResident);
  const Search offload = longest(cfg, params, eo, hi, tokens, budget,
                                 {.mode = a.str("kv-offload"),
                                  .dir = a.has("offload-dir") ? a.str("offload-dir") : "",
                                  .weights = false});
  // At the offloaded maximum: the same tokens without a budget, bitwise; and the refusal of the
  // resident plan.
  bool equal = false;
  std::string refusal;
  if (offload.max > 0) {
    try {
      infer::plan_kv(cfg, eo, offload.max + tokens, budget, "none");
    } catch (const OutOfMemory& e) {
      refusal = e.what();
    }
    const PlannedRun free_run =
        run_planned(cfg, params, {probe_request(offload.max, tokens, cfg.vocab)}, eo,
                    memory::Budget{}, kResident);
    equal = free_run.results[0].tokens == offload.tokens;
  }
  const double ratio = resident.max > 0 ? double(offload.max) / double(resident.max) : 0;
  if (a.flag("json")) {
    io::Json rec = {{"model", a.has("model") ? a.str("model") : a.str("ckpt")},
                    {"device_budget", budget},
                    {"tokens", tokens},
                    {"dtype", "f32"},
                    {"resident_max", resident.max},
                    {"offload_max", offload.max},
                    {"ratio", ratio},
                    {"offload_mode", offload.mode},
                    {"resident_peak_device_bytes", resident.peak},
                    {"offload_peak_device_bytes", offload.peak},
                    {"bitwise_equal_at_offload_max", equal},
                    {"resident_error_at_offload_max", refusal}};
    std::printf("%s\n", rec.dump().c_str());
    return 0;
  }
  std::printf("device budget %s, %lld decoded tokens, f32 KV\n",
              memory::format_bytes(budget).c_str(), (long long)tokens);
  std::printf("  resident (--kv-offload none): longest prompt %lld (peak %s)\n",
              (long long)resident.max, memory::format_bytes(resident.peak).c_str());
  std::printf(
      "  offloaded (%s): longest prompt %lld (peak %s), greedy tokens %s the unbudgeted "
      "run's\n",
      offload.mode.c_str(), (long long)offload.max, memory::format_bytes(offload.peak).c_str(),
      equal ? "equal to" : "DIFFER from");
  std::printf("  ratio %.2f\n", ratio);
  if (!refusal.empty())
    std::printf("  --kv-offload none at %lld: %s\n", (long long)offload.max, refusal.c_str());
  return 0;
}

}  // namespace hp::cli
