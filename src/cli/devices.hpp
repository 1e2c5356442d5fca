// `--devices` and `--strategy` for the hp subcommands: which world runs a step (threads:N, mpi;
// one device when neither is given) and the strategy (a YAML file or a preset expression, read
// once), planned once and run on every rank.
// Not library API: parsing and printing only; the work is in hp::train::Trainer.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <optional>

#include "cli/args.hpp"
#include "hp/comm/communicator.hpp"
#include "hp/io/yaml.hpp"
#include "hp/train/trainer.hpp"

namespace hp::comm {
class MpiWorld;
}

namespace hp::cli {

struct Devices {
  std::string kind = "threads";  // "threads" or "mpi"
  int count = 1;
  int rank = 0;  // this process's rank (mpi); 0 for threads, whose ranks share the process
  std::shared_ptr<comm::MpiWorld> mpi;  // owns MPI for the process while any copy lives
};

// Most devices `threads:N` accepts: one thread each, in one process. Planning grows faster than
// the rank count (Mesh::group and Mesh::position are linear and called per rank, e.g. in the
// redistribution lower bound): gpt2-tiny plans and starts in ~10 s on 256 threads, ~2 min on 1024.
inline constexpr int kMaxThreadDevices = 256;

// "threads:N" or "threads" (one), "mpi" (one rank per process of mpirun: initialises MPI).
Devices parse_devices(const std::string& spec);
// Runs fn once per rank with the rank's world communicator: N threads here (one device: on the
// calling thread), or this process's rank under mpirun. A failure on one rank reaches every rank
// and is rethrown here.
void run_ranks(const Devices& dev, const std::function<void(comm::Communicator&)>& fn);

// Where a step runs: the world and the strategy over it, read once. Neither --devices nor
// --strategy: one device, no mesh (the step as traced, not lowered).
struct Placement {
  Devices dev;
  std::optional<shard::Strategy> strategy;  // a file's layouts and offload: section, or a preset
  std::string spec;                         // the strategy as given ("dpN" by default)
  // A pipeline: a preset whose outermost term is ppN, or a file with a `pipeline:` section; its
  // stages are read in plan_for, which knows the model's blocks. `strategy` is then a `pp` mesh
  // over the devices.
  bool pipeline = false;
  bool mesh() const { return strategy.has_value(); }
  // The strategy file's `offload:` section, if any.
  std::optional<io::YamlNode> offload_section() const;
};
// `spec` over `dev`: a strategy file when it names an existing file, else a preset expression
// ("dp2", ...); the mesh must have the devices' count.
Placement place(Devices dev, const std::string& spec);
// --devices and --strategy of `a` (see Placement).
Placement parse_placement(const Args& a);
// Plans a [batch, seq] step of `cfg` where `p` places it; on a mesh, warnings go to stderr once.
// Each rank computes with `threads_per_rank` threads; communication overlaps compute only where
// that pays (overlap_pays).
std::unique_ptr<train::StepPlan> plan_for(const io::ModelConfig& cfg, const Placement& p,
                                          int64_t batch, int64_t seq, int threads_per_rank);
// --threads of `a`, else this process's cores shared among the ranks it holds (all of them on one
// device or under mpi, where a process is one rank).
int threads_per_rank(const Args& a, const Devices& dev);
// Whether collectives should run on each rank's progress thread beside its compute (start/wait
// split) rather than inline: only when the ranks of this process leave a core free for those
// threads. On the threads backend with every core computing, the progress threads take cores
// from the compute (hp bench spmd, 2 cores, dp2 x 1 thread: 0.81x of one device with overlap,
// 0.88x without). Under mpi the ranks per host are not known here: overlap stays on.
bool overlap_pays(const Devices& dev, int threads_per_rank);
// The alpha-beta costs used for planning (one level: threads share memory).
shard::Topology planning_topology();
struct StepsResult {
  std::vector<double> losses;
  io::TensorMap grads0;                         // gradients of the first step, global
  io::TensorMap final_params;                   // global
  std::vector<size_t> state_bytes, peak_bytes;  // per rank
  std::vector<size_t> budgets;                  // per rank: the offload device budget (0: none)
};
// Runs the steps on the devices; `on_step` and `on_start` (once the trainer exists) on rank 0.
// Under mpi only rank 0's result is filled (state_bytes and peak_bytes hold every rank's on
// rank 0).
StepsResult run_steps(const train::StepPlan& plan, const Devices& dev, const io::TensorMap& params,
                      const train::TrainOptions& opt,
                      const std::vector<std::pair<Tensor, Tensor>>& batches,
                      const std::function<void(int64_t, const train::StepResult&)>& on_step,
                      const std::function<void(train::Trainer&)>& on_start = {});

}  // namespace hp::cli

namespace hp::cli {

// Every rank's measured intervals (seconds on the steady clock, which the ranks of one machine
// share), gathered on every rank: one row per world rank, times from the earliest start, as a
// Simulation of what ran (step_time: the latest end; busy: compute, SEND and RECV excluded; the
// bubble per rank over step_time). Collective.
mpmd::Simulation gather_timeline(comm::Communicator& c, const std::vector<mpmd::Interval>& mine,
                                 std::string name, std::chrono::milliseconds timeout);

}  // namespace hp::cli
