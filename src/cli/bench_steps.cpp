// `hp bench steps`: the step time of several strategies of one model on the same devices, their
// steps interleaved in one process: every rank holds a trainer per strategy and the strategies
// take one step each in turn, so that a slow spell of a shared machine falls on all of them alike
// (separate runs, minutes apart, saw the same strategy's best step move by 15%). Prints one JSON
// record per strategy: rank 0's wall seconds of each timed step and the process's CPU seconds per
// rank over it. bench/plan_accuracy.sh measures the planner's predictions with it.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/args.hpp"
#include "cli/bench_options.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "hp/core/error.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/json.hpp"
#include "hp/nn/model.hpp"

namespace hp::cli {

namespace {

constexpr auto kWait = std::chrono::minutes(5);

// User and system seconds of this process (every rank's threads).
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace

int bench_steps(const std::vector<std::string>& argv) {
  Args a(argv, bench_steps_command());
  if (printed_help(a)) return 0;
  const std::vector<std::string> specs = a.list("strategies");
  const io::ModelConfig cfg = resolve_model(a.str("model"));
  const Devices dev = parse_devices(a.str("devices"));
  HP_CHECK(dev.kind == "threads",
           "hp bench steps runs on threads:N (one process holds every rank)");
  train::TrainOptions opt;
  opt.batch = a.i64("batch");
  opt.seq = a.i64("seq");
  opt.threads = threads_per_rank(a, dev);
  nn::check_tokens(cfg, opt.batch, opt.seq);
  const int64_t steps = a.i64("steps");
  std::vector<std::unique_ptr<train::StepPlan>> plans;
  for (const std::string& s : specs)
    plans.push_back(plan_for(cfg, place(dev, s), opt.batch, opt.seq, opt.threads));
  data::RandomTokenSource src(cfg.vocab, {opt.batch, opt.seq, 7});
  std::vector<std::pair<Tensor, Tensor>> batches;
  for (int64_t s = 0; s <= steps; ++s) {  // the first for the warm-up
    data::Batch b = src.next();
    batches.push_back({b.input, b.target});
  }
  const io::TensorMap params = nn::init_params(cfg, 1);
  std::vector<std::vector<double>> wall(specs.size()), cpu(specs.size());
  run_ranks(dev, [&](comm::Communicator& c) {
    std::vector<std::unique_ptr<train::Trainer>> trainers;
    for (const auto& p : plans) {
      trainers.push_back(std::make_unique<train::Trainer>(*p, c, params, opt));
      trainers.back()->step(batches[0].first, batches[0].second);  // warm-up
    }
    for (int64_t s = 1; s <= steps; ++s)
      for (size_t i = 0; i < trainers.size(); ++i) {
        c.barrier().wait(kWait);  // every rank starts the step together
        const double cpu0 = process_cpu_s();
        const auto t0 = std::chrono::steady_clock::now();
        trainers[i]->step(batches[size_t(s)].first, batches[size_t(s)].second);
        if (c.rank() != 0) continue;
        wall[i].push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        cpu[i].push_back((process_cpu_s() - cpu0) / double(dev.count));
      }
  });
  for (size_t i = 0; i < specs.size(); ++i) {
    io::Json j = {{"strategy", specs[i]}, {"step_s", wall[i]}, {"cpu_s", cpu[i]}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace hp::cli
