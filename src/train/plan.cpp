// The step as plain values: trace and differentiate once (propagating over the strategy on a
// mesh), then per rank lower, compile and plan the memory.
#include "hp/train/plan.hpp"

#include <set>

#include "hp/autodiff/grad.hpp"
#include "hp/mpmd/synth.hpp"
#include "hp/mpmd/verify.hpp"

namespace hp::train {

using shard::Layout;

namespace {

// Traces and differentiates; names every gradient "grad/<parameter>".
std::unique_ptr<StepPlan> traced_step(const io::ModelConfig& cfg, shard::Strategy strategy,
                                      bool sharded, int64_t batch, int64_t seq) {
  auto P = std::make_unique<StepPlan>();
  P->cfg = cfg;
  P->strategy = std::move(strategy);
  P->sharded = sharded;
  P->batch = batch;
  P->seq = seq;
  nn::TraceOptions to;
  to.logical_qkv = sharded;
  P->traced = nn::trace(cfg, batch, seq, true, to);
  P->infos = nn::param_infos(cfg);
  P->grads = autodiff::grad(P->traced.loss, P->traced.params);
  for (size_t i = 0; i < P->infos.size(); ++i)
    P->traced.graph->set_name(P->grads[i].id, "grad/" + P->infos[i].name);
  return P;
}

}  // namespace

std::unique_ptr<StepPlan> plan_step(const io::ModelConfig& cfg, int64_t batch, int64_t seq) {
  auto P = traced_step(cfg, shard::Strategy{}, false, batch, seq);
  for (const auto& pi : P->infos) P->param_layouts.push_back(Layout::replicated(pi.shape.size()));
  return P;
}

std::unique_ptr<StepPlan> plan_step(const io::ModelConfig& cfg, const shard::Strategy& strategy,
                                    int64_t batch, int64_t seq, const shard::Topology& topo) {
  shard::Strategy s = strategy;
  shard::fit_presets_to_kv_heads(s, cfg.n_kv_head);
  auto P = traced_step(cfg, std::move(s), true, batch, seq);
  ir::Graph& g = *P->traced.graph;
  std::vector<ir::ValueId> outs{P->traced.loss.id};
  std::vector<Layout> out_layouts{Layout::replicated(0)};
  std::map<ir::ValueId, Layout> sources;
  for (size_t i = 0; i < P->infos.size(); ++i) {
    const auto& pi = P->infos[i];
    Layout stored = P->strategy.layout_for(pi.name, pi.shape.size());
    Layout l = logical_layout(stored, pi.shape, P->traced.params[i].shape());
    l.check(P->strategy.mesh);
    P->param_layouts.push_back(l);
    sources[P->traced.params[i].id] = l;
    outs.push_back(P->grads[i].id);
    out_layouts.push_back(l);
  }
  // Every rule the user wrote must match a named value (parameter, gradient or activation):
  // strict mode rejects one that matches nothing, naming it; other modes warn.
  std::vector<shard::NamedTensor> named;
  for (const ir::Value& v : g.values())
    if (!v.name.empty()) named.push_back({v.name, v.type.shape});
  std::vector<std::string> unmatched = shard::validate(P->strategy, named);
  P->prop = shard::propagate(g, outs, out_layouts, P->strategy, topo, sources);
  P->prop.warnings.insert(P->prop.warnings.begin(), unmatched.begin(), unmatched.end());
  P->eval_prop =
      shard::propagate(g, {P->traced.loss.id}, {Layout::replicated(0)}, P->strategy, topo, sources);
  return P;
}

namespace {

// Forward FLOPs of one row of `seq` tokens through chunk `k`, from its nodes' op records.
double chunk_flops(const io::ModelConfig& cfg, int64_t seq, const nn::Chunk& k) {
  const nn::Traced t = nn::trace_chunk(cfg, 1, seq, k, k.head);
  double f = 0;
  for (const ir::Node& n : t.graph->nodes()) f += ir::node_cost(*t.graph, n).flops;
  return f;
}

}  // namespace

mpmd::BalanceInput block_costs(const io::ModelConfig& cfg, int64_t seq) {
  mpmd::BalanceInput in;
  in.cost.assign(size_t(cfg.blocks()), 1.0);
  if (cfg.has_vision()) {
    in.first_cost = in.last_cost = 1;
    return in;
  }
  // Every decoder block has the same shapes: one traced block prices them all.
  const double block = chunk_flops(cfg, seq, {0, 0, false, false});
  HP_CHECK(block > 0, "[pipeline] a block of ", cfg.model_type(), " has no FLOPs to balance by");
  in.first_cost = chunk_flops(cfg, seq, {0, -1, true, false}) / block;
  in.last_cost = chunk_flops(cfg, seq, {cfg.blocks(), cfg.blocks() - 1, false, true}) / block;
  return in;
}

mpmd::CostModel modelled_costs(const mpmd::ChunkGraph& g, const std::vector<nn::Chunk>& chunks,
                               const mpmd::BalanceInput& in) {
  mpmd::CostModel costs = mpmd::CostModel::uniform(g);
  for (size_t c = 0; c < chunks.size(); ++c) {
    const nn::Chunk& k = chunks[c];
    double f = (k.embed ? in.first_cost : 0) + (k.head ? in.last_cost : 0);
    for (int64_t b = k.first; b <= k.last; ++b) f += in.cost.at(size_t(b));
    costs.chunks[c] = k.embed ? mpmd::ChunkCost{.f = f, .b = 0, .w = 2 * f}
                              : mpmd::ChunkCost{.f = f, .b = f, .w = f};
  }
  return costs;
}

namespace {

// The schedule a pipeline spec asks for; `auto` is synthesised from modelled costs, and the
// zero-bubble schedules (B and W apart, whose generators order for equal F, B and W) are ordered
// at them (mpmd::schedule_at_costs: the first chunk's backward is all W, the head costs more).
mpmd::Schedule pipeline_schedule(const io::ModelConfig& cfg, int64_t seq,
                                 const mpmd::PipelineSpec& spec, const std::vector<nn::Chunk>& cs) {
  using K = mpmd::ScheduleKind;
  const mpmd::ChunkGraph g = spec.chunk_graph();
  const int m = int(spec.microbatches);
  const K k = spec.schedule;
  if (k != K::kAuto && k != K::kZbH1 && k != K::kZbV) return mpmd::schedule_on(k, g, m);
  return mpmd::schedule_at_costs(k, g, m, modelled_costs(g, cs, block_costs(cfg, seq)));
}

}  // namespace

Layout StagePlan::grad_layout(size_t i) const {
  Layout l = param_layouts[i];
  for (const auto& a : data_axes)
    if (l.is_unused(a)) l.partial.push_back(a);
  l.normalize();
  return l;
}

int PipelinePlan::stage_of(int world_rank) const {
  for (size_t s = 0; s < stages.size(); ++s)
    if (stages[s].holds(world_rank)) return int(s);
  throw Error(detail::cat("[pipeline] rank ", world_rank, " belongs to no stage"));
}

namespace {

// Stage `i`'s strategy over its own devices: its preset or rules (a mesh of one rank for a
// one-device stage), the parameters' logical layouts on it and its boundary layout.
StagePlan plan_stage(const io::ModelConfig& cfg, const std::vector<nn::ParamInfo>& infos,
                     const mpmd::StageSpec& s, size_t i) {
  StagePlan st;
  st.first_rank = int(s.first_rank);
  st.sharded = s.devices > 1;
  const std::string what = "[pipeline] stage " + std::to_string(i) + " (" + s.where + ")";
  const bool given =
      !s.strategy.empty() || (s.strategy_rules.IsDefined() && !s.strategy_rules.IsNull());
  HP_CHECK(given || !st.sharded, what, " runs on ", s.devices,
           " devices and has no strategy for them (e.g. strategy: dp", s.devices, ")");
  if (given) {  // parsed for one device too, so that a wrong one is reported, not ignored
    try {
      st.strategy = !s.strategy.empty()
                        ? shard::preset_strategy(s.strategy, s.devices)
                        : shard::parse_strategy(YAML::Dump(s.strategy_rules), s.devices, s.where);
    } catch (const Error& e) {
      throw Error(detail::cat(what, ": its strategy: ", e.what()));
    }
  }
  if (!st.sharded) {  // runs its chunks as traced: a mesh of one rank, everything replicated
    st.strategy.mesh = shard::Mesh({"stage"}, {1});
    for (const auto& pi : infos) st.param_layouts.push_back(Layout::replicated(pi.shape.size()));
    st.boundary = Layout::replicated(3);
    return st;
  }
  HP_CHECK(st.strategy.mesh.size() == s.devices, what, " has ", s.devices,
           " devices but its strategy's mesh ", st.strategy.mesh.str(), " has ",
           st.strategy.mesh.size());
  shard::fit_presets_to_kv_heads(st.strategy, cfg.n_kv_head);
  for (const auto& pi : infos) {
    Layout l = logical_layout(st.strategy.layout_for(pi.name, pi.shape.size()), pi.shape,
                              st.param_shape(pi));
    l.check(st.strategy.mesh);
    st.param_layouts.push_back(std::move(l));
  }
  Layout tokens = st.strategy.layout_for("tokens", 2, false);
  HP_CHECK(tokens.partial.empty() && tokens.dims[1].empty(), what,
           ": the tokens' layout must split the batch only, got ", tokens.str());
  st.boundary.dims = {tokens.dims[0], {}, {}};
  for (const auto& a : st.strategy.mesh.axis_names())
    if (tokens.dim_of(a) == 0) st.data_axes.push_back(a);
  return st;
}

}  // namespace

shard::Propagation propagate_chunk(const StagePlan& stage, const nn::Traced& t,
                                   const std::vector<ir::ValueId>& outputs,
                                   const std::vector<Layout>& output_layouts,
                                   const shard::Topology& topo) {
  std::map<ir::ValueId, Layout> sources;
  for (size_t j = 0; j < t.params.size(); ++j)
    sources[t.params[j].id] = stage.param_layouts[t.param_index[j]];
  if (t.x_in.id >= 0) sources[t.x_in.id] = stage.boundary;
  if (t.g_out.id >= 0) sources[t.g_out.id] = stage.boundary;
  return shard::propagate(*t.graph, outputs, output_layouts, stage.strategy, topo, sources);
}

std::unique_ptr<StepPlan> plan_pipeline(const io::ModelConfig& cfg, const mpmd::PipelineSpec& spec,
                                        int64_t batch, int64_t seq, const shard::Topology& topo) {
  HP_CHECK(spec.microbatches <= batch, "[pipeline] ", spec.microbatches,
           " micro-batches of a batch of ", batch, " rows: at most one micro-batch per row");
  auto P = std::make_unique<StepPlan>();
  P->cfg = cfg;
  P->batch = batch;
  P->seq = seq;
  P->infos = nn::param_infos(cfg);
  P->strategy.mesh = shard::Mesh({"pp"}, {spec.world_size()});
  for (const auto& pi : P->infos) P->param_layouts.push_back(Layout::replicated(pi.shape.size()));
  PipelinePlan pp;
  pp.spec = spec;
  pp.topo = topo;
  for (size_t i = 0; i < spec.stages.size(); ++i)
    pp.stages.push_back(plan_stage(cfg, P->infos, spec.stages[i], i));
  const auto chunks = spec.chunks();
  for (size_t c = 0; c < chunks.size(); ++c)
    pp.chunks.push_back(
        {chunks[c].first.first, chunks[c].first.last, c == 0, c + 1 == chunks.size()});
  pp.schedule = pipeline_schedule(cfg, seq, spec, pp.chunks);
  mpmd::verify(pp.schedule);
  P->pipeline = std::move(pp);
  return P;
}

size_t planned_state_bytes(const StepPlan& plan, int rank) {
  size_t b = 0;
  if (plan.pipeline) {  // the pieces of the parameters of the rank's stage's chunks
    std::set<size_t> held;
    const PipelinePlan& pp = *plan.pipeline;
    const int s = pp.stage_of(rank);
    const StagePlan& st = pp.stages[size_t(s)];
    for (size_t c = 0; c < pp.chunks.size(); ++c)
      if (pp.schedule.graph.rank_of[c] == s)
        for (size_t i : nn::chunk_params(plan.cfg, pp.chunks[c])) held.insert(i);
    for (size_t i : held) {
      const auto& pi = plan.infos[i];
      b += 4 * sizeof(float) *
           size_t(numel(shard::local_shape(st.param_shape(pi), st.param_layouts[i],
                                           st.strategy.mesh, rank - st.first_rank)));
    }
    return b;
  }
  for (size_t i = 0; i < plan.infos.size(); ++i)  // parameter, gradient, two AdamW moments
    b += 4 * sizeof(float) *
         size_t(numel(shard::local_shape(plan.traced.params[i].shape(), plan.param_layouts[i],
                                         plan.strategy.mesh, rank)));
  return b;
}

namespace {

// Lowers (sharded plans) and compiles the program of `rank` computing `prop`'s outputs, or
// `outputs` of the global graph on one device.
std::unique_ptr<RankProgram> compile_rank(const StepPlan& plan, int rank,
                                          const shard::Propagation& prop,
                                          std::vector<ir::ValueId> outputs) {
  auto R = std::make_unique<RankProgram>();
  R->rank = rank;
  if (plan.sharded) {
    R->lowered = shard::lower(*plan.traced.graph, prop, rank, plan.lower);
    R->outputs = R->lowered.outputs;
    R->program = runtime::compile(*R->lowered.graph, R->outputs);
  } else {
    R->outputs = std::move(outputs);
    R->program = runtime::compile(*plan.traced.graph, R->outputs);
  }
  return R;
}

}  // namespace

std::unique_ptr<RankProgram> plan_rank(const StepPlan& plan, int rank,
                                       const memory::OffloadOptions& o, int threads) {
  std::vector<ir::ValueId> outs{plan.traced.loss.id};
  for (const ir::Var& g : plan.grads) outs.push_back(g.id);
  auto R = compile_rank(plan, rank, plan.prop, std::move(outs));
  // The moments of this rank's shards: half of what planned_state_bytes counts.
  R->request = plan_request(R->program, planned_state_bytes(plan, rank) / 2, o, threads, &R->peak);
  R->budget = R->request.device_budget;
  if (wants_plan(o, R->budget, R->peak)) R->offload = memory::plan_offload(R->program, R->request);
  return R;
}

std::unique_ptr<RankProgram> plan_eval(const StepPlan& plan, const RankProgram& train) {
  auto R = compile_rank(plan, train.rank, plan.eval_prop, {plan.traced.loss.id});
  R->peak = train.peak;
  R->budget = train.budget;
  R->request = train.request;
  if (train.offload) R->offload = memory::plan_offload(R->program, R->request);
  return R;
}

bool wants_plan(const memory::OffloadOptions& o, size_t budget, size_t peak) {
  if (o.auto_mode && budget != 0) return budget < peak;  // offload only what does not fit
  return !o.device_budget.unlimited() || o.optimizer_state != Tier::kDevice;
}

memory::PlanRequest plan_request(const runtime::Program& program, size_t state_bytes,
                                 const memory::OffloadOptions& o, int threads, size_t* peak) {
  memory::PlanRequest req;
  req.scratch_bytes = runtime::scratch_bytes(program, threads);
  // Peak with nothing offloaded: the reference every fraction is taken of.
  const size_t unconstrained = memory::unconstrained_peak(program, state_bytes, req.scratch_bytes);
  if (peak) *peak = unconstrained;
  req.device_budget = o.device_budget.resolve(unconstrained);
  req.resident_bytes = o.optimizer_state == Tier::kDevice ? state_bytes : 0;
  req.params = o.params;
  req.grads = o.grads;
  req.activations = o.activations;
  req.recompute = o.recompute;
  req.cost.gflops = o.gflops;
  req.cost.link_bytes_per_s = o.link_gbps * 1e9;
  req.cost.latency_s = o.link_latency_us * 1e-6;
  req.cost.inline_copies = o.copies == memory::CopyMode::kInline;
  return req;
}

}  // namespace hp::train
