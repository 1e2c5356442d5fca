// `hp bench spmd`: one run comparing a GPT-2 step on one device with T threads against dp2 on
// threads:2 with T/2 threads per rank (same global batch), printing tokens/s of both and their
// ratio, and how much of dp2's communication is hidden behind compute: the time ranks spend
// blocked in collectives with overlap (start/wait split) against without it. Then tp2 and tp2+sp
// on the same devices, whose activation collectives sit on the critical path.
// Not a correctness test: the e2e scripts compare losses.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/args.hpp"
#include "cli/devices.hpp"
#include "cli/options.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/json.hpp"

namespace hp::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct RunResult {
  double step_s = 0;     // mean over timed steps
  double blocked_s = 0;  // per step, mean over ranks
  int64_t collectives = 0;
};

RunResult run_strategy(const io::ModelConfig& cfg, const train::TrainOptions& opt,
                       const Devices& dev, const std::string& strategy, bool overlap,
                       const io::TensorMap& params,
                       const std::vector<std::pair<Tensor, Tensor>>& batches) {
  auto plan = plan_for(cfg, place(dev, strategy), opt.batch, opt.seq, opt.threads);
  plan->lower.overlap = overlap;
  RunResult res;
  std::vector<double> blocked(size_t(dev.count), 0);
  run_ranks(dev, [&](comm::Communicator& c) {
    train::Trainer tr(*plan, c, params, opt);
    tr.step(batches[0].first, batches[0].second);  // warm-up
    tr.rank_comm().reset_stats();
    const auto t0 = Clock::now();
    for (size_t s = 1; s < batches.size(); ++s) tr.step(batches[s].first, batches[s].second);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    blocked[size_t(c.rank())] = tr.rank_comm().blocked_seconds();
    if (c.rank() == 0) {
      res.step_s = dt / double(batches.size() - 1);
      res.collectives = tr.rank_comm().collectives_issued() / int64_t(batches.size() - 1);
    }
  });
  for (double b : blocked) res.blocked_s += b / double(blocked.size() * (batches.size() - 1));
  return res;
}

// What hp bench spmd reads from its options, once (defaults: bench_spmd_command in options.hpp).
struct SpmdBenchOptions {
  io::ModelConfig cfg;
  Devices dev;
  int64_t steps = 0;
  train::TrainOptions opt;  // batch, seq, threads of the one-device run
};

SpmdBenchOptions read_spmd_bench_options(const Args& a) {
  SpmdBenchOptions o;
  io::Json j = {{"model_type", "gpt2"},        {"n_layer", a.i64("layers")},
                {"n_embd", a.i64("d")},        {"n_head", a.i64("heads")},
                {"n_positions", a.i64("seq")}, {"vocab_size", a.i64("vocab")},
                {"layer_norm_epsilon", 1e-5}};
  o.cfg = io::ModelConfig::from_json(j, "hp bench spmd");
  o.dev = parse_devices(a.str("devices"));
  HP_CHECK(o.dev.kind == "threads", "hp bench spmd runs on threads:N");
  o.steps = a.i64("steps");
  o.opt.batch = a.i64("batch");
  o.opt.seq = a.i64("seq");
  o.opt.threads = int(a.i64("threads"));
  HP_CHECK(o.opt.batch % o.dev.count == 0, "--batch must be a multiple of the device count");
  return o;
}

}  // namespace

int bench_spmd(const std::vector<std::string>& argv) {
  Args a(argv, bench_spmd_command());
  if (printed_help(a)) return 0;
  const SpmdBenchOptions bo = read_spmd_bench_options(a);
  const io::ModelConfig& cfg = bo.cfg;
  const Devices& dev = bo.dev;
  const train::TrainOptions& opt = bo.opt;
  const int threads = opt.threads;
  const int64_t steps = bo.steps, L = cfg.n_layer, D = cfg.d_model, T = opt.seq;
  data::RandomTokenSource src(cfg.vocab, {opt.batch, opt.seq, 7});
  std::vector<std::pair<Tensor, Tensor>> batches;
  for (int64_t s = 0; s < steps; ++s) {
    data::Batch b = src.next();
    batches.push_back({b.input, b.target});
  }
  io::TensorMap params = nn::init_params(cfg, 1);
  std::printf("GPT-2 %lld layers, d=%lld, seq %lld, global batch %lld, %lld timed steps\n",
              (long long)L, (long long)D, (long long)T, (long long)opt.batch,
              (long long)(steps - 1));

  train::Trainer one(cfg, params, opt);
  one.step({batches[0]});
  auto t0 = Clock::now();
  for (int64_t s = 1; s < steps; ++s) one.step({batches[size_t(s)]});
  const double one_s = std::chrono::duration<double>(Clock::now() - t0).count() / double(steps - 1);

  train::TrainOptions ropt = opt;
  ropt.threads = std::max(1, threads / dev.count);
  const std::string n = std::to_string(dev.count);
  RunResult sync = run_strategy(cfg, ropt, dev, "dp" + n, false, params, batches);
  RunResult ovl = run_strategy(cfg, ropt, dev, "dp" + n, true, params, batches);
  const bool auto_overlap = overlap_pays(dev, ropt.threads);  // what hp train would choose here
  RunResult tp = run_strategy(cfg, ropt, dev, "tp" + n, auto_overlap, params, batches);
  RunResult sp = run_strategy(cfg, ropt, dev, "tp" + n + "+sp", auto_overlap, params, batches);
  const double tok = double(opt.batch * opt.seq);
  const double hidden = sync.blocked_s > 0 ? 1.0 - ovl.blocked_s / sync.blocked_s : 0;
  std::printf("%-34s %10s %12s %14s %12s\n", "run", "step ms", "tokens/s", "blocked ms/step",
              "collectives");
  std::printf("%-34s %10.1f %12.0f %14s %12s\n",
              ("one device, " + std::to_string(threads) + " threads").c_str(), 1e3 * one_s,
              tok / one_s, "-", "-");
  const std::string dp = "dp" + std::to_string(dev.count) +
                         " threads:" + std::to_string(dev.count) + " x " +
                         std::to_string(ropt.threads) + " thread";
  std::printf("%-34s %10.1f %12.0f %14.2f %12lld\n", (dp + ", no overlap").c_str(),
              1e3 * sync.step_s, tok / sync.step_s, 1e3 * sync.blocked_s,
              (long long)sync.collectives);
  std::printf("%-34s %10.1f %12.0f %14.2f %12lld\n", (dp + ", overlap").c_str(), 1e3 * ovl.step_s,
              tok / ovl.step_s, 1e3 * ovl.blocked_s, (long long)ovl.collectives);
  for (const auto& [name, r] :
       {std::pair<std::string, const RunResult&>{"tp" + n, tp}, {"tp" + n + "+sp", sp}})
    std::printf("%-34s %10.1f %12.0f %14.2f %12lld\n",
                (name + " threads:" + n + " x " + std::to_string(ropt.threads) + " thread").c_str(),
                1e3 * r.step_s, tok / r.step_s, 1e3 * r.blocked_s, (long long)r.collectives);
  std::printf("default here (overlap_pays): overlap %s (%d ranks x %d thread(s), %u cores)\n",
              auto_overlap ? "on" : "off", dev.count, ropt.threads,
              std::thread::hardware_concurrency());
  std::printf(
      "{\"bench\": \"spmd\", \"one_tokens_per_s\": %.1f, \"dp_tokens_per_s\": %.1f, "
      "\"dp_sync_tokens_per_s\": %.1f, \"ratio\": %.3f, \"comm_s_per_step\": %.5f, "
      "\"blocked_s_per_step\": %.5f, \"hidden_share\": %.3f, \"tp_ratio\": %.3f, "
      "\"tp_sp_ratio\": %.3f}\n",
      tok / one_s, tok / ovl.step_s, tok / sync.step_s, one_s / ovl.step_s, sync.blocked_s,
      ovl.blocked_s, hidden, one_s / tp.step_s, one_s / sp.step_s);
  return 0;
}

}  // namespace hp::cli
