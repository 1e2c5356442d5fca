// Device worlds and strategies for the hp subcommands.
#include "cli/devices.hpp"

#include <cstdio>
#include <filesystem>

#include "hp/error.hpp"

namespace hp::cli {

Devices parse_devices(const std::string& spec) {
  Devices d;
  if (spec == "threads") return d;
  if (spec.rfind("threads:", 0) == 0) {
    const std::string n = spec.substr(8);
    HP_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 6,
             "--devices: bad device count in '", spec, "' (expected threads:N)");
    d.count = std::stoi(n);
    HP_CHECK(d.count >= 1, "--devices: need at least one device, got '", spec, "'");
    return d;
  }
  HP_CHECK(spec != "mpi",
           "--devices mpi: running under mpirun is not supported yet; use threads:N");
  throw Error("--devices: unknown world '" + spec + "' (expected threads:N)");
}

shard::Strategy strategy_for(const std::string& spec, int64_t world) {
  if (std::filesystem::is_regular_file(spec)) return shard::load_strategy(spec, world);
  return shard::preset_strategy(spec, world);
}

shard::Topology planning_topology() {
  return shard::Topology::uniform(20e9, 5e-6, "threads");
}

std::unique_ptr<train::SpmdPlan> plan_for(const io::ModelConfig& cfg, const std::string& strategy,
                                          const Devices& dev, int64_t batch, int64_t seq) {
  shard::Strategy s = strategy_for(strategy, dev.count);
  HP_CHECK(s.mesh.size() == dev.count, "strategy ", s.file, " uses ", s.mesh.size(),
           " devices but --devices gives ", dev.count);
  auto plan = train::plan_spmd(cfg, s, batch, seq, planning_topology());
  for (const auto& w : plan->prop.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  return plan;
}

train::SpmdRunResult run_distributed(
    const train::SpmdPlan& plan, const Devices& dev, const io::TensorMap& params,
    const train::TrainOptions& opt, const std::vector<std::pair<Tensor, Tensor>>& batches,
    const std::function<void(int64_t, const train::StepResult&)>& on_step) {
  return train::run_spmd_threads(plan, dev.count, params, opt, batches, on_step);
}

}  // namespace hp::cli
