// `hp bench pipeline`: a GPT-2 pipeline on threads:N, one stage per rank, under each schedule.
// After a warm-up step, profiling steps measure each chunk's F, B and W (their median is the
// cost); the schedule simulator predicts the step from those costs; then the other steps are
// measured. Prints per schedule the predicted and measured time of the schedule's part of the step
// (the optimizer after it is printed apart), the error, the bubble (idle share of the schedule's
// span, first action to last, mean over ranks) of each and the schedule's closed-form bubble under
// equal stage costs. Not a correctness test: tests/e2e/pipeline.sh compares losses.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/args.hpp"
#include "cli/bench_options.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "hp/data/loader.hpp"
#include "hp/mpmd/pipeline.hpp"
#include "hp/mpmd/synth.hpp"

namespace hp::cli {

namespace {

struct Measured {
  double predicted_s = 0, predicted_bubble = 0;
  double least_bubble = 0;  // of any schedule of these chunks at the profiled costs
  bool reordered = false;   // --reorder: the policy's order at the profiled costs was faster
  double schedule_s = 0, bubble = 0, optimizer_s = 0;  // medians over the timed steps
};

// The schedule's closed-form bubble as a share of the step, under equal costs per stage
// (docs/mpmd.md): x = (p-1)/m for gpipe and 1f1b, (p-1)/(vm) interleaved, (p-1)/(3m) zb-h1 and
// (p-1)/(6m) zbv over the ideal step. Zbv's is the synchronous step's (the last rank waits for p-1
// half-stage forwards); its published "about 0" needs the next step to start before this one's
// optimizer, which a step with a global clipping norm does not allow.
double closed_form_bubble(mpmd::ScheduleKind kind, int p, int64_t m, int v) {
  using K = mpmd::ScheduleKind;
  const double x = kind == K::kZbV           ? double(p - 1) / double(6 * m)
                   : kind == K::kInterleaved ? double(p - 1) / double(v * m)
                   : kind == K::kZbH1        ? double(p - 1) / double(3 * m)
                                             : double(p - 1) / double(m);
  return x / (1 + x);
}

// The least bubble of a synchronous step of m micro-batches of g at `costs` (optimizer left out,
// as the measured bubble leaves it out): each rank idle for the lower bound (critical path,
// busiest rank, busiest from its earliest start) less its own compute.
double least_bubble(const mpmd::ChunkGraph& g, int m, mpmd::CostModel costs) {
  costs.opt.clear();
  const double bound = mpmd::lower_bound(g, m, costs).value();
  std::vector<double> busy(size_t(g.ranks), 0.0);
  for (int c = 0; c < g.chunks(); ++c)
    for (int mb = 0; mb < m; ++mb) {
      const mpmd::ChunkCost& k = costs.chunks[size_t(c)];
      busy[size_t(g.rank_of[size_t(c)])] += costs.scale(c, mb) * (k.f + k.b + k.w);
    }
  double idle = 0;
  for (double b : busy) idle += (bound - b) / bound / double(g.ranks);
  return idle;
}

// The per-chunk median of several profiling steps' costs.
mpmd::CostModel median_costs(const std::vector<mpmd::CostModel>& runs) {
  mpmd::CostModel out = runs.front();
  for (size_t c = 0; c < out.chunks.size(); ++c)
    for (double mpmd::ChunkCost::*field :
         {&mpmd::ChunkCost::f, &mpmd::ChunkCost::b, &mpmd::ChunkCost::w}) {
      std::vector<double> v;
      for (const mpmd::CostModel& r : runs) v.push_back(r.chunks[c].*field);
      out.chunks[c].*field = median(v);
    }
  return out;
}

// One schedule: profile, simulate, then the timed steps; rank 0's step times, every rank's busy.
Measured run_schedule(const io::ModelConfig& cfg, const train::TrainOptions& opt,
                      const Devices& dev, mpmd::ScheduleKind kind, int64_t m, int64_t steps,
                      int64_t profile_steps, const io::TensorMap& params,
                      const std::vector<std::pair<Tensor, Tensor>>& batches,
                      const std::string& timeline_dir, bool reorder) {
  const mpmd::BalanceInput costs = train::block_costs(cfg, opt.seq);
  const auto spec = mpmd::pipeline_from_preset("pp" + std::to_string(dev.count), dev.count,
                                               cfg.n_layer, kind, m, 2, &costs);
  auto plan = train::plan_pipeline(cfg, spec, opt.batch, opt.seq);
  Measured out;
  const size_t n = size_t(dev.count);
  std::vector<std::vector<double>> phase(n), optim(n);  // per rank and timed step
  std::vector<double> bubbles;                          // per timed step
  mpmd::Simulation predicted, measured;                 // --timeline
  run_ranks(dev, [&](comm::Communicator& c) {
    train::Trainer tr(*plan, c, params, opt);
    tr.step(batches[0].first, batches[0].second);  // warm-up: programs compiled, buffers placed
    std::vector<mpmd::CostModel> runs;             // the profiling steps: the costs predicted from
    for (int64_t s = 0; s < profile_steps; ++s) {
      tr.step(batches[0].first, batches[0].second);
      runs.push_back(tr.measured_pipeline_costs());
    }
    const mpmd::CostModel costs = median_costs(runs);
    // Every rank reorders at the same (all-reduced) costs, or none does.
    if (reorder) out.reordered = tr.reorder_pipeline(costs);
    if (c.rank() == 0) {
      const mpmd::Simulation sim = mpmd::simulate(tr.pipeline_schedule(), costs);
      out.predicted_s = sim.step_time;
      out.predicted_bubble = sim.mean_bubble();
      out.least_bubble = least_bubble(plan->pipeline->schedule.graph, int(m), costs);
      predicted = sim;
    }
    // Each timed step's schedule on the steady clock (--timeline draws the median step).
    std::vector<std::vector<mpmd::Interval>> timed;
    for (int64_t s = 1; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      const train::StepResult r = tr.step(batches[size_t(s)].first, batches[size_t(s)].second);
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double at = std::chrono::duration<double>(t0.time_since_epoch()).count();
      timed.emplace_back();
      for (mpmd::Interval iv : tr.step_timeline())
        if (iv.action.kind != mpmd::ActionKind::kOpt) {  // the schedule's part, as predicted
          iv.start += at, iv.end += at;
          timed.back().push_back(iv);
        }
      phase[size_t(c.rank())].push_back(dt - r.optimizer_seconds);
      optim[size_t(c.rank())].push_back(r.optimizer_seconds);
    }
    // Each step's schedule from every rank: the bubble is each rank's idle share of the schedule's
    // span, from the first action on any rank to the last (the step's work outside the schedule,
    // the gradients' reduction and the tied embedding's exchange, is not idle time, and the
    // simulator does not predict it).
    std::vector<mpmd::Simulation> sims;
    for (const auto& iv : timed)
      sims.push_back(gather_timeline(c, iv, "measured", tr.rank_comm().timeout()));
    if (c.rank() == 0)
      for (const mpmd::Simulation& sim : sims) bubbles.push_back(sim.mean_bubble());
    if (!timeline_dir.empty()) {  // the step whose slowest rank's time is the median
      std::vector<int64_t> ns;
      for (double t : phase[size_t(c.rank())]) ns.push_back(int64_t(1e9 * t));
      c.all_reduce(ns.data(), ns.data(), ns.size(), DType::kI64, comm::ReduceOp::kMax)
          .wait(tr.rank_comm().timeout());
      std::vector<size_t> order(ns.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return ns[x] < ns[y]; });
      if (c.rank() == 0) measured = std::move(sims[order[order.size() / 2]]);
    }
  });
  if (!timeline_dir.empty()) {  // both drawn over the longer of the two steps
    const std::string name = mpmd::schedule_name(kind);
    predicted.name = name + " predicted";
    measured.name = name + " measured";
    measured.microbatches = predicted.microbatches;
    const double span = std::max(predicted.step_time, measured.step_time);
    const std::filesystem::path dir(timeline_dir);
    std::filesystem::create_directories(dir);
    mpmd::write_timeline_svg(predicted, dir / (name + "-predicted.svg"), span);
    mpmd::write_timeline_svg(measured, dir / (name + "-measured.svg"), span);
  }
  // The schedule's time is the slowest rank's (ranks end together only at the next step).
  std::vector<double> step_times;
  for (size_t s = 0; s < phase[0].size(); ++s) {
    double t = 0;
    for (size_t r = 0; r < n; ++r) t = std::max(t, phase[r][s]);
    step_times.push_back(t);
  }
  out.schedule_s = median(step_times);
  out.bubble = median(bubbles);
  out.optimizer_s = median(optim[0]);
  return out;
}

}  // namespace

int bench_pipeline(const std::vector<std::string>& argv) {
  Args a(argv, bench_pipeline_command());
  if (printed_help(a)) return 0;
  io::Json j = {{"model_type", "gpt2"},        {"n_layer", a.i64("layers")},
                {"n_embd", a.i64("d")},        {"n_head", a.i64("heads")},
                {"n_positions", a.i64("seq")}, {"vocab_size", a.i64("vocab")},
                {"layer_norm_epsilon", 1e-5}};
  const io::ModelConfig cfg = io::ModelConfig::from_json(j, "hp bench pipeline");
  const Devices dev = parse_devices(a.str("devices"));
  HP_CHECK(dev.kind == "threads", "hp bench pipeline runs on threads:N");
  train::TrainOptions opt;
  opt.batch = a.i64("batch");
  opt.seq = a.i64("seq");
  opt.threads = int(a.i64("threads"));
  const int64_t m = a.i64("microbatches"), steps = a.i64("steps"),
                profile_steps = a.i64("profile-steps");
  data::RandomTokenSource src(cfg.vocab, {opt.batch, opt.seq, 7});
  std::vector<std::pair<Tensor, Tensor>> batches;
  for (int64_t s = 0; s < steps; ++s) {
    data::Batch b = src.next();
    batches.push_back({b.input, b.target});
  }
  const io::TensorMap params = nn::init_params(cfg, 1);
  std::printf(
      "GPT-2 %lld layers, d=%lld, seq %lld, batch %lld in %lld micro-batches, pp%d on "
      "threads:%d x %d thread(s), %lld timed steps per schedule\n",
      (long long)cfg.n_layer, (long long)cfg.d_model, (long long)opt.seq, (long long)opt.batch,
      (long long)m, dev.count, dev.count, opt.threads, (long long)(steps - 1));
  std::printf("%-12s %13s %12s %8s %17s %16s %6s %11s %13s\n", "schedule", "predicted ms",
              "measured ms", "error", "predicted bubble", "measured bubble", "bound", "cost bound",
              "optimizer ms");
  for (const std::string& name : a.list("schedules")) {
    const mpmd::ScheduleKind kind = mpmd::parse_schedule_kind(name);
    const Measured r = run_schedule(cfg, opt, dev, kind, m, steps, profile_steps, params, batches,
                                    a.has("timeline") ? a.str("timeline") : "", a.flag("reorder"));
    std::printf("%-12s %13.1f %12.1f %7.1f%% %16.1f%% %15.1f%% %5.1f%% %10.1f%% %13.1f\n",
                (name + (r.reordered ? "*" : "")).c_str(), 1e3 * r.predicted_s, 1e3 * r.schedule_s,
                100.0 * (r.predicted_s - r.schedule_s) / r.schedule_s, 100.0 * r.predicted_bubble,
                100.0 * r.bubble, 100.0 * closed_form_bubble(kind, dev.count, m, 2),
                100.0 * r.least_bubble, 1e3 * r.optimizer_s);
    std::fflush(stdout);
  }
  if (a.flag("reorder"))
    std::printf("* reordered at the profiled costs (faster there than the unit-cost order)\n");
  return 0;
}

}  // namespace hp::cli
