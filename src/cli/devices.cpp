// Device worlds and strategies for the hp subcommands.
#include "cli/devices.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "cli/common.hpp"
#include "hp/comm/threads.hpp"
#include "hp/core/error.hpp"
#include "hp/mpmd/pipeline.hpp"
#ifdef HP_HAVE_MPI
#include "hp/comm/mpi.hpp"
#endif

namespace hp::cli {

Devices parse_devices(const std::string& spec) {
  Devices d;
  if (spec == "threads") return d;
  if (spec.rfind("threads:", 0) == 0) {
    const std::string n = spec.substr(8);
    HP_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos,
             "--devices: bad device count in '", spec, "' (expected threads:N)");
    // One thread per device in one process: beyond this, planning and lowering every rank cost
    // minutes before the first step (see kMaxThreadDevices).
    HP_CHECK(n.size() <= 5 && std::stoi(n) <= kMaxThreadDevices, "--devices: ", spec,
             " is more devices than threads: runs (at most ", kMaxThreadDevices,
             "; use mpi for more)");
    d.count = std::stoi(n);
    HP_CHECK(d.count >= 1, "--devices: need at least one device, got '", spec, "'");
    return d;
  }
  if (spec == "mpi") {
#ifdef HP_HAVE_MPI
    d.kind = "mpi";
    d.mpi = std::make_shared<comm::MpiWorld>();
    d.count = d.mpi->size();
    d.rank = d.mpi->rank();
    return d;
#else
    throw Error("--devices mpi: this hp was built without MPI");
#endif
  }
  throw Error("--devices: unknown world '" + spec + "' (expected threads:N or mpi)");
}

void run_ranks(const Devices& dev, const std::function<void(comm::Communicator&)>& fn) {
#ifdef HP_HAVE_MPI
  if (dev.mpi) return dev.mpi->run(fn);
#endif
  if (dev.count > 1) return comm::ThreadWorld(dev.count).run(fn);
  comm::ThreadWorld one(1);  // one device computes on this thread
  fn(*one.communicator(0));
}

namespace {

// A strategy file with a `pipeline:` section.
bool has_pipeline_section(const std::string& path) {
  return io::YamlNode::load_file(path).get("pipeline").has_value();
}

// The planner's keys of a strategy file (hp plan --emit: micro_batch, recompute, zero) against
// what this run does: one warning each where the trainer runs something else, since it only
// reads them. `microbatches`: the pipeline's, 0 without one.
std::vector<std::string> planner_key_warnings(const std::string& path, int64_t batch,
                                              int64_t microbatches) {
  std::vector<std::string> out;
  const io::YamlNode root = io::YamlNode::load_file(path);
  int64_t replicas = 1;
  if (auto mesh = root.get("mesh"))  // a file may hold only a pipeline: section
    for (const auto& [name, size] : mesh->entries())
      if (name == "dp" || name == "fsdp") replicas *= size.as_int();
  // A pipeline's micro-batch is split again over its stages' data axes.
  const int64_t mb = batch / (std::max<int64_t>(microbatches, 1) * replicas);
  if (auto m = root.get("micro_batch"); m && m->as_int() != mb)
    out.push_back(m->where() + ": micro_batch " + std::to_string(m->as_int()) +
                  " is not what this run does (" + std::to_string(mb) +
                  " rows per micro-batch: the batch over " +
                  (microbatches > 0 ? "the pipeline's micro-batches)" : "the data axes)"));
  // The attention recomputes its scores in the backward, nothing else is recomputed (pipeline
  // stages keep their forward's values).
  if (auto r = root.get("recompute");
      r && r->as_string() != "selective" && r->as_string() != "none")
    out.push_back(r->where() + ": recompute " + r->as_string() +
                  " is not what this run does (selective: the attention recomputes its scores, "
                  "nothing else)");
  if (auto z = root.get("zero"); z && z->as_string() == "optimizer")
    out.push_back(z->where() +
                  ": zero optimizer (ZeRO-1) is not run here: the optimizer state is sharded with "
                  "fsdp only");
  return out;
}

void warn_planner_keys(const Placement& p, int64_t batch, int64_t microbatches) {
  if (p.dev.rank != 0 || !std::filesystem::is_regular_file(p.spec)) return;
  for (const std::string& w : planner_key_warnings(p.spec, batch, microbatches))
    std::fprintf(stderr, "warning: [strategy] %s\n", w.c_str());
}

}  // namespace

Placement place(Devices dev, const std::string& spec) {
  check_strategy_path(spec);
  Placement p;
  p.spec = spec;
  const bool file = std::filesystem::is_regular_file(spec);
  if (file ? has_pipeline_section(spec) : mpmd::is_pipeline_preset(spec)) {
    p.pipeline = true;
    p.strategy = shard::Strategy{};
    p.strategy->mesh = shard::Mesh({"pp"}, {dev.count});
    p.strategy->file = spec;
    if (file)  // its offload: section holds for every stage
      if (auto off = io::YamlNode::load_file(spec).get("offload"))
        p.strategy->offload = YAML::Clone(off->raw());
    p.dev = std::move(dev);
    return p;
  }
  p.strategy = std::filesystem::is_regular_file(spec) ? shard::load_strategy(spec, dev.count)
                                                      : shard::preset_strategy(spec, dev.count);
  HP_CHECK(p.strategy->mesh.size() == dev.count, "strategy ", p.strategy->file, " uses ",
           p.strategy->mesh.size(), " devices but --devices gives ", dev.count);
  p.dev = std::move(dev);
  return p;
}

Placement parse_placement(const Args& a) {
  if (!a.has("devices") && !a.has("strategy")) return Placement{};
  Devices dev = parse_devices(a.has("devices") ? a.str("devices") : "threads:1");
  const std::string spec = a.has("strategy") ? a.str("strategy") : "dp" + std::to_string(dev.count);
  return place(std::move(dev), spec);
}

std::optional<io::YamlNode> Placement::offload_section() const {
  if (!strategy || !strategy->offload) return std::nullopt;
  return io::YamlNode(strategy->offload, std::make_shared<const std::string>(strategy->file),
                      "offload");
}

shard::Topology planning_topology() {
  return shard::Topology::uniform(20e9, 5e-6, "threads");
}

int threads_per_rank(const Args& a, const Devices& dev) {
  if (a.has("threads")) return int(a.i64("threads"));
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  return int(std::max<int64_t>(1, cores / (dev.mpi ? 1 : dev.count)));
}

bool overlap_pays(const Devices& dev, int threads_per_rank) {
  if (dev.kind == "mpi") return true;
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  return int64_t(dev.count) * threads_per_rank < cores;
}

std::unique_ptr<train::StepPlan> plan_for(const io::ModelConfig& cfg, const Placement& p,
                                          int64_t batch, int64_t seq, int threads_per_rank) {
  if (!p.mesh()) return train::plan_step(cfg, batch, seq);
  if (p.pipeline) {  // a preset: 1F1B over as many micro-batches as stages (rows permitting)
    const int64_t world = p.dev.count;
    const mpmd::BalanceInput costs = train::block_costs(cfg, seq);  // blocks balanced by FLOPs
    const mpmd::PipelineSpec spec =
        std::filesystem::is_regular_file(p.spec)
            ? mpmd::load_pipeline(p.spec, world, cfg.blocks(), &costs)
            : mpmd::pipeline_from_preset(
                  p.spec, world, cfg.blocks(), mpmd::ScheduleKind::k1F1B,
                  std::min(mpmd::split_pp_preset(p.spec, world).stages, batch), 2, &costs);
    warn_planner_keys(p, batch, spec.microbatches);
    auto plan = train::plan_pipeline(cfg, spec, batch, seq, planning_topology());
    plan->lower.overlap = overlap_pays(p.dev, threads_per_rank);  // inside stages of several
    return plan;
  }
  warn_planner_keys(p, batch, 0);
  auto plan = train::plan_step(cfg, *p.strategy, batch, seq, planning_topology());
  plan->lower.overlap = overlap_pays(p.dev, threads_per_rank);
  if (p.dev.rank == 0)
    for (const auto& w : plan->prop.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  return plan;
}

StepsResult run_steps(const train::StepPlan& plan, const Devices& dev, const io::TensorMap& params,
                      const train::TrainOptions& opt,
                      const std::vector<std::pair<Tensor, Tensor>>& batches,
                      const std::function<void(int64_t, const train::StepResult&)>& on_step,
                      const std::function<void(train::Trainer&)>& on_start) {
  StepsResult res;
  const size_t n = size_t(dev.count);
  std::mutex mu;
  run_ranks(dev, [&](comm::Communicator& c) {
    train::Trainer tr(plan, c, params, opt);
    const bool lead = c.rank() == 0;
    if (lead && on_start) on_start(tr);
    for (size_t s = 0; s < batches.size(); ++s) {
      train::StepResult r = tr.step(batches[s].first, batches[s].second);
      if (s == 0) {
        io::TensorMap g = tr.grads();
        if (lead)  // one device: the live buffers, which the next step overwrites
          for (auto& [k, t] : g) res.grads0.emplace(k, t.clone());
      }
      if (lead) {
        res.losses.push_back(r.loss);
        if (on_step) on_step(int64_t(s), r);
      }
    }
    io::TensorMap fp = tr.params();
    // Every rank's byte counts reach rank 0 (each process of mpi holds only its own).
    std::vector<int64_t> bytes(3 * n, 0);
    bytes[size_t(c.rank())] = int64_t(tr.state_bytes());
    bytes[n + size_t(c.rank())] = int64_t(tr.device().peak_bytes());
    bytes[2 * n + size_t(c.rank())] = int64_t(tr.device_budget());
    c.all_reduce(bytes.data(), bytes.data(), bytes.size(), DType::kI64, comm::ReduceOp::kSum)
        .wait(tr.rank_comm().timeout());
    if (!lead) return;
    std::lock_guard<std::mutex> lock(mu);
    res.final_params = std::move(fp);
    for (size_t r = 0; r < n; ++r) {
      res.state_bytes.push_back(size_t(bytes[r]));
      res.peak_bytes.push_back(size_t(bytes[n + r]));
      res.budgets.push_back(size_t(bytes[2 * n + r]));
    }
  });
  return res;
}

}  // namespace hp::cli

namespace hp::cli {

mpmd::Simulation gather_timeline(comm::Communicator& c, const std::vector<mpmd::Interval>& mine,
                                 std::string name, std::chrono::milliseconds timeout) {
  constexpr size_t kFields = 8;  // start and end (ns), kind, chunk, micro-batch, peer, peer chunk,
                                 // gradient
  std::vector<int64_t> out;
  for (const mpmd::Interval& iv : mine) {
    const mpmd::Action& a = iv.action;
    out.insert(out.end(),
               {int64_t(std::llround(iv.start * 1e9)), int64_t(std::llround(iv.end * 1e9)),
                int64_t(a.kind), a.chunk, a.microbatch, a.peer, a.peer_chunk, int64_t(a.grad)});
  }
  const size_t n = size_t(c.size());
  std::vector<int64_t> counts(n);
  const int64_t count = int64_t(out.size());
  c.all_gather(&count, counts.data(), 1, DType::kI64).wait(timeout);
  std::vector<size_t> sizes(counts.begin(), counts.end());
  size_t total = 0;
  for (size_t s : sizes) total += s;
  std::vector<int64_t> all(std::max<size_t>(total, 1));
  c.all_gather(out.data(), all.data(), sizes, DType::kI64).wait(timeout);
  int64_t origin = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < total; i += kFields) origin = std::min(origin, all[i]);
  mpmd::Simulation sim;
  sim.name = std::move(name);
  sim.timeline.resize(n);
  sim.busy.assign(n, 0.0);
  size_t at = 0;
  for (size_t r = 0; r < n; ++r)
    for (const size_t end = at + sizes[r]; at < end; at += kFields) {
      const int64_t* f = all.data() + at;
      mpmd::Interval iv{.start = 1e-9 * double(f[0] - origin),
                        .end = 1e-9 * double(f[1] - origin),
                        .action = {.kind = mpmd::ActionKind(f[2]),
                                   .chunk = int(f[3]),
                                   .microbatch = int(f[4]),
                                   .peer = int(f[5]),
                                   .peer_chunk = int(f[6]),
                                   .grad = f[7] != 0}};
      sim.step_time = std::max(sim.step_time, iv.end);
      if (mpmd::is_compute(iv.action.kind)) sim.busy[r] += iv.end - iv.start;
      sim.timeline[r].push_back(iv);
    }
  for (size_t r = 0; r < n; ++r)
    sim.bubble.push_back(sim.step_time > 0 ? (sim.step_time - sim.busy[r]) / sim.step_time : 0);
  return sim;
}

}  // namespace hp::cli
