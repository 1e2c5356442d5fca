// `hp plan`: propagates a strategy over a model's training step without running it and prints
// the mesh, the collectives inserted (with bytes), per-device memory (parameters + gradients +
// optimizer state, and the activations' planned peak) and, with --explain, every value's layout.
// On one device with offload options, prints the offload plan instead: per-tier memory timeline
// and every transfer with its bytes (memory::explain). Not a search: the strategy is given.
#include <cstdio>
#include <thread>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/generate.hpp"
#include "cli/offload.hpp"
#include "cli/options.hpp"
#include "cli/probes.hpp"
#include "hp/data/loader.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/train/plan.hpp"

namespace hp::cli {

namespace {

// One device under offload: the plan of a training step, simulated, without running it.
// One offload plan: the --explain view, or its one-line summary.
void print_offload_plan(const memory::OffloadPlan& p, const memory::CostModel& cost, bool explain) {
  const memory::SimResult sim = memory::simulate(p, cost);
  if (explain) {
    std::fputs(memory::explain(p, sim).c_str(), stdout);
    return;
  }
  std::printf(
      "device peak %s of budget %s (unconstrained %s, smallest feasible %s); %zu "
      "transfers, %s to device, %s to host; predicted stall %.1f ms of a %.1f ms step\n",
      memory::format_bytes(p.peak_device).c_str(),
      p.budget ? memory::format_bytes(p.budget).c_str() : "unlimited",
      memory::format_bytes(p.unconstrained_peak).c_str(),
      memory::format_bytes(p.min_budget).c_str(), p.transfers.size(),
      memory::format_bytes(p.bytes_to_device).c_str(),
      memory::format_bytes(p.bytes_to_host).c_str(), sim.stall_s * 1e3, sim.step_s * 1e3);
}

int plan_offload_step(const io::ModelConfig& cfg, int64_t batch, int64_t seq,
                      const memory::OffloadOptions& off, int threads, bool explain) {
  const auto step = train::plan_step(cfg, batch, seq);
  auto rp = train::plan_rank(*step, 0, off, threads);  // refers to the step's graph
  std::printf("model %s, batch %lld x %lld, one device, offload\n%s", cfg.model_type(),
              (long long)batch, (long long)seq, off.str().c_str());
  if (!rp->offload) {
    std::printf("nothing to offload: device peak %s\n", memory::format_bytes(rp->peak).c_str());
    return 0;
  }
  print_offload_plan(*rp->offload, rp->request.cost, explain);
  return 0;
}

// What hp plan reads from its options, once (defaults: plan_command in options.hpp).
struct PlanOptions {
  io::ModelConfig cfg;
  int64_t batch = 0, seq = 0;  // seq: at most the model's positions unless given
  int threads = 0;             // all cores unless given
  Placement place;             // one device unless --devices or --strategy
  memory::OffloadOptions offload;
  bool explain = false;
  std::string timeline;  // --timeline: a pipeline's simulated timeline as SVG
  bool profile = false;  // --profile: a pipeline simulated with measured costs
};

PlanOptions read_plan_options(const Args& a) {
  PlanOptions o;
  o.cfg = resolve_model(a.str("model"));
  o.batch = a.i64("batch");
  o.seq =
      a.has("seq") ? a.i64("seq") : std::min<int64_t>(128, o.cfg.max_seq - o.cfg.vision.tokens());
  o.threads = int(a.has("threads") ? a.i64("threads")
                                   : int64_t(std::max(1u, std::thread::hardware_concurrency())));
  o.place = parse_placement(a);
  o.offload = offload_options(a, o.place.offload_section());
  o.explain = a.flag("explain");
  o.timeline = a.has("timeline") ? a.str("timeline") : "";
  o.profile = a.flag("profile");
  return o;
}

}  // namespace

// A warm-up and a profiling step of the pipeline on its devices (fresh weights, random tokens):
// the chunks' measured costs (Trainer::measured_pipeline_costs).
mpmd::CostModel profiled_costs(const train::StepPlan& plan, const PlanOptions& po) {
  train::TrainOptions opt;
  opt.batch = plan.batch;
  opt.seq = plan.seq;
  opt.threads = po.threads;
  const io::TensorMap params = nn::init_params(po.cfg, 1);
  data::RandomTokenSource src(po.cfg.vocab, {plan.batch, plan.seq, 7});
  const data::Batch b = src.next();
  mpmd::CostModel costs;
  run_ranks(po.place.dev, [&](comm::Communicator& c) {
    train::Trainer tr(plan, c, params, opt);
    tr.step(b.input, b.target);  // warm-up: programs compiled, buffers placed
    tr.step(b.input, b.target);
    mpmd::CostModel mine = tr.measured_pipeline_costs();  // collective: the same on every rank
    if (c.rank() == 0) costs = std::move(mine);
  });
  return costs;
}

// A pipeline strategy: its stages, the schedule every rank runs (verified) and what the schedule
// simulator predicts for it under modelled costs (train::modelled_costs) or, with --profile,
// measured ones; --explain prints each rank's simulated actions, --timeline draws them.
int print_pipeline(const train::StepPlan& plan, const PlanOptions& po) {
  const train::PipelinePlan& pp = *plan.pipeline;
  std::printf("model %s, batch %lld x %lld, pipeline %s\n", po.cfg.model_type(),
              (long long)plan.batch, (long long)plan.seq, pp.spec.str().c_str());
  std::printf("schedule (verified):\n%s\n", pp.schedule.compact().c_str());
  const mpmd::CostModel costs = po.profile
                                    ? profiled_costs(plan, po)
                                    : train::modelled_costs(pp.schedule.graph, pp.chunks,
                                                            train::block_costs(po.cfg, plan.seq));
  const mpmd::Simulation sim = mpmd::simulate(pp.schedule, costs);
  std::printf("simulated, %s: %s\n",
              po.profile ? "costs of a profiling step (seconds)" : "a block's forward = 1",
              sim.str().c_str());
  if (po.explain)
    for (size_t r = 0; r < sim.timeline.size(); ++r) {
      std::printf("r%zu:", r);
      for (const mpmd::Interval& iv : sim.timeline[r])
        std::printf(" %s [%.4g, %.4g)", iv.action.str().c_str(), iv.start, iv.end);
      std::printf("\n");
    }
  if (!po.timeline.empty()) {
    mpmd::write_timeline_svg(sim, po.timeline);
    std::printf("timeline written to %s\n", po.timeline.c_str());
  }
  return 0;
}

namespace {
// hp plan --infer-context N: the KV offload plan of an inference job, with the decode time
// predicted from this machine's memory: what the engine's threads read, all at once.
int plan_inference(const Args& a) {
  const io::ModelConfig cfg = resolve_model(a.str("model"));
  infer::EngineOptions eo;
  eo.max_batch = a.i64("infer-batch");
  eo.threads = threads_per_rank(a, Devices{});  // one device
  eo.block_tokens = infer::block_tokens_for(cfg);
  const int64_t context = a.i64("infer-context");
  const memory::Budget budget =
      a.has("device-memory") ? memory::parse_budget(a.str("device-memory")) : memory::Budget{};
  const infer::KvPlan p = infer::plan_kv(cfg, eo, context, resolve_budget(cfg, eo, context, budget),
                                         a.str("kv-offload"), a.flag("offload-weights"));
  // 64 MiB per thread, well beyond the last-level cache.
  const double bw = 1e9 * eo.threads * read_gbps(size_t(64) << 20, eo.threads);
  std::fputs(p.explain(bw).c_str(), stdout);
  if (!a.flag("explain") || p.mode != "fetch") return 0;
  // The decode step's plan from the offload planner of training, as hp train --explain shows a
  // step's: copies on the compute cores at the memory's read rate.
  const infer::EngineOptions e = p.engine(eo);
  const nn::InferTraced tr =
      nn::trace_infer(cfg, p.batch, 1, e.pool_blocks, e.block_tokens, e.kv.host_blocks,
                      e.kv.fetch_slots, e.kv.staging_blocks);
  const runtime::Program prog = runtime::compile(*tr.graph, {tr.logits.id});
  memory::PlanRequest req = infer::streamed_request(tr, cfg, e.streaming.names);
  req.device_budget = e.streaming.budget;
  req.cost.inline_copies = true;
  req.cost.link_bytes_per_s = req.cost.mem_bytes_per_s = bw;
  const memory::OffloadPlan op = memory::plan_offload(prog, req);
  std::printf(
      "decode step of %lld sequence(s): each layer's staging and %zu weights streamed by the "
      "offload planner:\n",
      (long long)p.batch, p.streamed_weights.size());
  std::fputs(memory::explain(op, memory::simulate(op, req.cost), 30).c_str(), stdout);
  return 0;
}
}  // namespace

int cmd_plan(const std::vector<std::string>& argv) {
  Args a(argv, plan_command());
  if (printed_help(a)) return 0;
  if (a.has("cluster")) return plan_search(a);
  if (a.has("infer-context")) return plan_inference(a);
  if (!a.has("strategy") && !offload_options(a, std::nullopt).enabled()) {
    std::fprintf(stderr, "usage: %s (see --help)\n", a.command().usage.c_str());
    return 2;
  }
  const PlanOptions po = read_plan_options(a);
  const io::ModelConfig& cfg = po.cfg;
  const int64_t batch = po.batch, seq = po.seq;
  const int threads = po.threads;
  const Placement& place = po.place;
  const memory::OffloadOptions& off = po.offload;
  if (off.enabled() && place.dev.count == 1)
    return plan_offload_step(cfg, batch, seq, off, threads, po.explain);
  HP_CHECK(a.has("strategy"), "option --strategy is required on a mesh");
  auto plan = plan_for(cfg, place, batch, seq, threads);
  HP_CHECK(plan->pipeline || (po.timeline.empty() && !po.profile),
           "--timeline and --profile need a pipeline strategy (ppN or a pipeline: section)");
  if (plan->pipeline) return print_pipeline(*plan, po);
  const auto& p = plan->prop;
  const ir::Graph& g = *plan->traced.graph;
  std::printf("model %s, batch %lld x %lld, mesh %s, mode %s\n", cfg.model_type(), (long long)batch,
              (long long)seq, p.mesh.str().c_str(), shard::mode_name(plan->strategy.mode).c_str());
  if (po.explain) std::fputs(p.str(g).c_str(), stdout);
  // As the lowering runs them: a value moved into a layout once, whoever else reads it so.
  std::printf("collectives per step:\n");
  int64_t total = 0;
  for (const shard::Redistribution* rp : shard::performed(g, p)) {
    const shard::Redistribution& r = *rp;
    if (!shard::communicates(r.plan)) continue;
    const auto& v = g.value(r.value);
    std::string steps, name = v.name;
    for (const auto& st : r.plan.steps) {
      if (!steps.empty()) steps.append(" + ");
      steps.append(shard::step_kind_name(st.kind));
      if (!st.axis.empty()) steps.append("(").append(st.axis).append(")");
    }
    if (name.empty()) name.append("%").append(std::to_string(r.value));
    std::printf("  %-14s %s %s %s -> %s  %s  at %s%s\n", steps.c_str(), name.c_str(),
                ir::type_str(v.type).c_str(), r.plan.from.str().c_str(), r.plan.to.str().c_str(),
                human_bytes(double(r.plan.bytes)).c_str(), r.where.c_str(),
                r.implicit ? " (implicit)" : "");
    total += r.plan.bytes;
  }
  std::printf("  total %s received by the busiest device per step\n",
              human_bytes(double(total)).c_str());
  size_t single = 0;
  for (const auto& pi : plan->infos) single += 4 * sizeof(float) * size_t(numel(pi.shape));
  std::printf("memory per device (parameters + gradients + AdamW state | activations peak):\n");
  std::printf("  one device: %s\n", human_bytes(double(single)).c_str());
  for (int r = 0; r < place.dev.count; ++r) {
    auto rp = train::plan_rank(*plan, r, off, threads);  // what the trainer of rank r runs
    const size_t st = train::planned_state_bytes(*plan, r);
    std::printf("  rank %d: %s (%.1f%%) | %s, %d collectives\n", r, human_bytes(double(st)).c_str(),
                100.0 * double(st) / double(single),
                human_bytes(double(rp->program.arena_bytes)).c_str(), rp->lowered.exchanges);
    if (!off.enabled()) continue;
    if (!rp->offload) {
      std::printf("    offload: nothing to offload (device peak %s)\n",
                  memory::format_bytes(rp->peak).c_str());
      continue;
    }
    std::printf("    offload: ");
    print_offload_plan(*rp->offload, rp->request.cost, false);
    if (r == 0 && po.explain) print_offload_plan(*rp->offload, rp->request.cost, true);
  }
  return 0;
}

}  // namespace hp::cli
