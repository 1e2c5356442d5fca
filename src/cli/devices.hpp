// `--devices` and `--strategy` for the hp subcommands: which world runs a step (threads:N, mpi)
// and the strategy (a YAML file or a preset expression), planned once and run on every rank.
// Not library API: parsing and printing only; the work is in hp::train::SpmdTrainer.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "hp/train/spmd.hpp"

namespace hp::cli {

struct Devices {
  std::string kind = "threads";  // "threads" or "mpi"
  int count = 1;
};

// "threads:N" or "threads" (one), "mpi" (not yet supported: an error says so).
Devices parse_devices(const std::string& spec);
// A strategy file when `spec` names an existing file, else a preset expression ("dp2", ...).
shard::Strategy strategy_for(const std::string& spec, int64_t world);
// Propagates a [batch, seq] step of `cfg` under the strategy; warnings go to stderr once.
std::unique_ptr<train::SpmdPlan> plan_for(const io::ModelConfig& cfg, const std::string& strategy,
                                          const Devices& dev, int64_t batch, int64_t seq);
// The alpha-beta costs used for planning (one level: threads share memory).
shard::Topology planning_topology();
// Runs the steps on the devices; `on_step` on rank 0.
train::SpmdRunResult run_distributed(
    const train::SpmdPlan& plan, const Devices& dev, const io::TensorMap& params,
    const train::TrainOptions& opt, const std::vector<std::pair<Tensor, Tensor>>& batches,
    const std::function<void(int64_t, const train::StepResult&)>& on_step);

}  // namespace hp::cli
