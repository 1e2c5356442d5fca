// `hp bench spmd`: one run comparing a GPT-2 step on one device with T threads against dp2 on
// threads:2 with T/2 threads per rank (same global batch), printing tokens/s of both and their
// ratio, and how much of dp2's communication is hidden behind compute: the time ranks spend
// blocked in collectives with overlap (start/wait split) against without it. Then tp2 and tp2+sp
// on the same devices, whose activation collectives sit on the critical path.
// Not a correctness test: the e2e scripts compare losses.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include "cli/args.hpp"
#include "cli/bench_options.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/json.hpp"

namespace hp::cli {

namespace {

using Clock = std::chrono::steady_clock;

double timed(const std::function<void()>& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One configuration's timed steps over every round, and its communication counters.
struct RunResult {
  std::vector<double> times;  // rank 0's step times
  double blocked_s = 0;       // summed over timed steps, mean over ranks
  int64_t collectives = 0;    // per step
  // Median step time: robust to the steps another process on the machine slowed.
  double step_s() const { return median(times); }
  double blocked_per_step() const { return times.empty() ? 0 : blocked_s / double(times.size()); }
};

// One round of one configuration: a fresh trainer, a warm-up step, the other batches timed.
// `strategy` empty: one device with opt.threads threads.
void run_round(const io::ModelConfig& cfg, const train::TrainOptions& opt, const Devices& dev,
               const std::string& strategy, bool overlap, const io::TensorMap& params,
               const std::vector<std::pair<Tensor, Tensor>>& batches, RunResult& res) {
  if (strategy.empty()) {
    train::Trainer tr(cfg, params, opt);
    tr.step(batches[0].first, batches[0].second);  // warm-up
    for (size_t s = 1; s < batches.size(); ++s)
      res.times.push_back(timed([&] { tr.step(batches[s].first, batches[s].second); }));
    return;
  }
  auto plan = plan_for(cfg, place(dev, strategy), opt.batch, opt.seq, opt.threads);
  plan->lower.overlap = overlap;
  std::vector<double> blocked(size_t(dev.count), 0);
  run_ranks(dev, [&](comm::Communicator& c) {
    train::Trainer tr(*plan, c, params, opt);
    tr.step(batches[0].first, batches[0].second);  // warm-up
    tr.rank_comm().reset_stats();
    std::vector<double> times;
    for (size_t s = 1; s < batches.size(); ++s)
      times.push_back(timed([&] { tr.step(batches[s].first, batches[s].second); }));
    blocked[size_t(c.rank())] = tr.rank_comm().blocked_seconds();
    if (c.rank() == 0) {  // the ranks' steps end together: each waits for the others' gradients
      res.times.insert(res.times.end(), times.begin(), times.end());
      res.collectives = tr.rank_comm().collectives_issued() / int64_t(times.size());
    }
  });
  for (double b : blocked) res.blocked_s += b / double(blocked.size());
}

// What hp bench spmd reads from its options, once (defaults: bench_spmd_command in
// bench_options.hpp).
struct SpmdBenchOptions {
  io::ModelConfig cfg;
  Devices dev;
  int64_t steps = 0, rounds = 0;
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
  o.rounds = a.i64("rounds");
  o.opt.batch = a.i64("batch");
  o.opt.seq = a.i64("seq");
  o.opt.threads = int(a.i64("threads"));
  HP_CHECK(o.opt.batch % o.dev.count == 0, "--batch must be a multiple of the device count");
  return o;
}

void print_row(const std::string& name, const RunResult& r, double tokens, bool comm) {
  if (comm)
    std::printf("%-34s %10.1f %12.0f %14.2f %12lld\n", name.c_str(), 1e3 * r.step_s(),
                tokens / r.step_s(), 1e3 * r.blocked_per_step(), (long long)r.collectives);
  else
    std::printf("%-34s %10.1f %12.0f %14s %12s\n", name.c_str(), 1e3 * r.step_s(),
                tokens / r.step_s(), "-", "-");
}

}  // namespace

int bench_spmd(const std::vector<std::string>& argv) {
  Args a(argv, bench_spmd_command());
  if (printed_help(a)) return 0;
  const SpmdBenchOptions bo = read_spmd_bench_options(a);
  const io::ModelConfig& cfg = bo.cfg;
  const Devices& dev = bo.dev;
  const train::TrainOptions& opt = bo.opt;
  const int64_t L = cfg.n_layer, D = cfg.d_model, T = opt.seq;
  data::RandomTokenSource src(cfg.vocab, {opt.batch, opt.seq, 7});
  std::vector<std::pair<Tensor, Tensor>> batches;
  for (int64_t s = 0; s < bo.steps; ++s) {
    data::Batch b = src.next();
    batches.push_back({b.input, b.target});
  }
  io::TensorMap params = nn::init_params(cfg, 1);
  std::printf(
      "GPT-2 %lld layers, d=%lld, seq %lld, global batch %lld, %lld rounds of %lld timed "
      "steps per row\n",
      (long long)L, (long long)D, (long long)T, (long long)opt.batch, (long long)bo.rounds,
      (long long)(bo.steps - 1));

  train::TrainOptions ropt = opt;
  ropt.threads = std::max(1, opt.threads / dev.count);
  const std::string n = std::to_string(dev.count);
  const bool auto_overlap = overlap_pays(dev, ropt.threads);  // what hp train would choose here
  RunResult one, sync, ovl, tp, sp;
  for (int64_t r = 0; r < bo.rounds; ++r) {  // alternating, so a slow spell hits every row
    run_round(cfg, opt, dev, "", false, params, batches, one);
    run_round(cfg, ropt, dev, "dp" + n, false, params, batches, sync);
    run_round(cfg, ropt, dev, "dp" + n, true, params, batches, ovl);
    run_round(cfg, ropt, dev, "tp" + n, auto_overlap, params, batches, tp);
    run_round(cfg, ropt, dev, "tp" + n + "+sp", auto_overlap, params, batches, sp);
  }

  const double tok = double(opt.batch * opt.seq);
  const double one_s = one.step_s();
  const double hidden =
      sync.blocked_s > 0 ? 1.0 - ovl.blocked_per_step() / sync.blocked_per_step() : 0;
  const RunResult& dflt = auto_overlap ? ovl : sync;
  std::printf("%-34s %10s %12s %14s %12s\n", "run", "step ms", "tokens/s", "blocked ms/step",
              "collectives");
  print_row("one device, " + std::to_string(opt.threads) + " threads", one, tok, false);
  const std::string ranks = " threads:" + n + " x " + std::to_string(ropt.threads) + " thread";
  print_row("dp" + n + ranks + ", no overlap", sync, tok, true);
  print_row("dp" + n + ranks + ", overlap", ovl, tok, true);
  print_row("tp" + n + ranks, tp, tok, true);
  print_row("tp" + n + "+sp" + ranks, sp, tok, true);
  std::printf(
      "default here (overlap_pays): overlap %s (%d ranks x %d thread(s), %u cores): dp%s "
      "%.3fx of one device\n",
      auto_overlap ? "on" : "off", dev.count, ropt.threads, std::thread::hardware_concurrency(),
      n.c_str(), one_s / dflt.step_s());
  std::printf(
      "{\"bench\": \"spmd\", \"one_tokens_per_s\": %.1f, \"dp_tokens_per_s\": %.1f, "
      "\"dp_sync_tokens_per_s\": %.1f, \"ratio\": %.3f, \"sync_ratio\": %.3f, "
      "\"default_ratio\": %.3f, \"comm_s_per_step\": %.5f, \"blocked_s_per_step\": %.5f, "
      "\"hidden_share\": %.3f, \"tp_ratio\": %.3f, \"tp_sp_ratio\": %.3f}\n",
      tok / one_s, tok / ovl.step_s(), tok / sync.step_s(), one_s / ovl.step_s(),
      one_s / sync.step_s(), one_s / dflt.step_s(), sync.blocked_per_step(), ovl.blocked_per_step(),
      hidden, one_s / tp.step_s(), one_s / sp.step_s());
  return 0;
}

}  // namespace hp::cli
