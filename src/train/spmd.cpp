// SPMD training: plan (trace, grad, propagate) once, then per rank lower, compile, bind shards,
// run, clip by the global norm (replicas counted once) and step AdamW on the local shards.
#include "hp/train/spmd.hpp"

#include <cmath>
#include <filesystem>

#include "hp/autodiff.hpp"
#include "hp/memory/trainer.hpp"

namespace hp::train {

using shard::Layout;
namespace fs = std::filesystem;

Layout logical_layout(const Layout& stored, const Shape& ss, const Shape& ls) {
  if (ss == ls) return stored;
  Layout out;
  out.dims.resize(ls.size());
  out.partial = stored.partial;
  out.reduce = stored.reduce;
  size_t i = 0, j = 0;
  while (i < ss.size() && j < ls.size()) {
    const size_t a = i, c = j;
    int64_t pi = ss[i++], pj = ls[j++];
    while (pi != pj) {
      if (pi < pj)
        pi *= ss[i++];
      else
        pj *= ls[j++];
    }
    size_t last = c;  // innermost logical dim of the group with extent > 1
    for (size_t k = c; k < j; ++k)
      if (ls[k] > 1) last = k;
    for (size_t k = a; k < i; ++k)
      out.dims[last].insert(out.dims[last].end(), stored.dims[k].begin(), stored.dims[k].end());
  }
  out.normalize();
  return out;
}

std::unique_ptr<SpmdPlan> plan_spmd(const io::ModelConfig& cfg, const shard::Strategy& strategy,
                                    int64_t batch, int64_t seq, const shard::Topology& topo) {
  auto P = std::make_unique<SpmdPlan>();
  P->cfg = cfg;
  P->strategy = strategy;
  shard::fit_presets_to_kv_heads(P->strategy, cfg.n_kv_head);
  P->batch = batch;
  P->seq = seq;
  nn::TraceOptions to;
  to.logical_qkv = true;
  P->traced = nn::trace(cfg, batch, seq, true, to);
  P->infos = nn::param_infos(cfg);
  P->grads = autodiff::grad(P->traced.loss, P->traced.params);
  ir::Graph& g = *P->traced.graph;
  std::vector<ir::ValueId> outs{P->traced.loss.id};
  std::vector<Layout> out_layouts{Layout::replicated(0)};
  std::map<ir::ValueId, Layout> sources;
  for (size_t i = 0; i < P->infos.size(); ++i) {
    const auto& pi = P->infos[i];
    g.set_name(P->grads[i].id, "grad/" + pi.name);
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

size_t planned_state_bytes(const SpmdPlan& plan, int rank) {
  size_t b = 0;
  for (size_t i = 0; i < plan.infos.size(); ++i)  // parameter, gradient, two AdamW moments
    b += 4 * sizeof(float) *
         size_t(numel(shard::local_shape(plan.traced.params[i].shape(), plan.param_layouts[i],
                                         plan.strategy.mesh, rank)));
  return b;
}

SpmdTrainer::SpmdTrainer(const SpmdPlan& plan, comm::Communicator& world,
                         const io::TensorMap& params, TrainOptions opt,
                         memory::OffloadOptions offload)
    : plan_(plan),
      opt_(opt),
      device_(
          std::make_shared<Allocator>("device" + std::to_string(world.rank()), opt.device_budget)),
      rc_(plan.strategy.mesh, world),
      off_(std::move(offload)) {
  const int rank = world.rank();
  lowered_ = shard::lower(*plan_.traced.graph, plan_.prop, rank, plan_.lower);
  prog_ = runtime::compile(*lowered_.graph, lowered_.outputs);
  const bool disk = off_.optimizer_state == Tier::kDisk;
  fs::path dir = off_.offload_dir;
  if (disk) dir /= "rank" + std::to_string(rank);  // each rank its own files
  pool_ = std::make_unique<memory::TieredPool>(device_, off_.host_budget, disk ? dir : fs::path());
  engine_ = std::make_unique<memory::TransferEngine>(off_.transfer_threads);
  if (off_.copies == memory::CopyMode::kInline)
    copies_ = std::make_unique<memory::TransferEngine>(opt_.threads, memory::CopyMode::kInline);

  // Offload: the same planning as memory::plan_step, on this rank's program and its shards'
  // two AdamW moments (half of what planned_state_bytes counts).
  size_t peak = 0;
  request_ =
      memory::plan_request(prog_, planned_state_bytes(plan_, rank) / 2, off_, opt_.threads, &peak);
  const bool planned = memory::wants_plan(off_, request_.device_budget, peak);
  budget_ = planned ? request_.device_budget : 0;
  // The allocator holds the tensors; the plan kept the kernels' workspace free of the budget.
  if (budget_ != 0 && (opt_.device_budget == 0 || budget_ < opt_.device_budget))
    device_->set_budget(budget_ - request_.scratch_bytes);

  // Shards on the device, or on the host tier under a plan (prefetched as the plan says).
  const auto& home = planned ? pool_->host() : device_;
  std::vector<optim::ParamRef> refs;
  for (size_t i = 0; i < plan_.infos.size(); ++i) {
    const auto& pi = plan_.infos[i];
    auto it = params.find(pi.name);
    HP_CHECK(it != params.end(), "[spmd] missing parameter '", pi.name, "'");
    Tensor full = it->second.to(DType::kF32).reshape(plan_.traced.params[i].shape());
    params_.push_back(shard::local_piece(full, plan_.param_layouts[i], plan_.strategy.mesh, rank)
                          .to(DType::kF32, home));
    refs.push_back({pi.name, params_.back(), pi.decay});
  }
  adam_ = std::make_unique<memory::OffloadedAdamW>(opt_.adam, refs, off_.optimizer_state, *pool_,
                                                   *engine_,
                                                   std::chrono::milliseconds(off_.timeout_ms));
  exec_ = make_executor(prog_, lowered_, planned, oplan_, runner_);
  // Shards, moments and gradient buffers: what is charged beyond the executor's arena (under a
  // plan, buffers come and go with the plan and only what stays resident counts).
  state_bytes_ = device_->live_bytes() - (planned ? 0 : prog_.arena_bytes);
}

SpmdTrainer::~SpmdTrainer() = default;

std::unique_ptr<runtime::Executor> SpmdTrainer::make_executor(
    const runtime::Program& prog, const shard::Lowered& low, bool planned,
    std::optional<memory::OffloadPlan>& plan, std::unique_ptr<memory::OffloadRunner>& runner) {
  const runtime::Context ctx{opt_.threads};
  std::unique_ptr<runtime::Executor> ex;
  if (planned) {
    plan = memory::plan_offload(prog, request_);
    ex = std::make_unique<runtime::Executor>(plan->program, device_, ctx);
    runner = std::make_unique<memory::OffloadRunner>(*plan, *pool_, copies_ ? *copies_ : *engine_,
                                                     std::chrono::milliseconds(off_.timeout_ms));
    for (size_t i = 0; i < params_.size(); ++i)
      runner->bind(low.map[size_t(plan_.traced.params[i].id)], params_[i]);
  } else {
    ex = std::make_unique<runtime::Executor>(prog, device_, ctx);
    for (size_t i = 0; i < params_.size(); ++i)
      ex->bind(low.map[size_t(plan_.traced.params[i].id)], params_[i]);
  }
  ex->set_comm_runner(&rc_.runner(low.plans));
  return ex;
}

void SpmdTrainer::run_batch(runtime::Executor& ex, memory::OffloadRunner* runner,
                            const shard::Lowered& low, const Tensor& tokens,
                            const Tensor& targets) {
  const auto& P = plan_.prop;
  const shard::Mesh& mesh = plan_.strategy.mesh;
  const int rank = rc_.rank();
  const ir::Var tv[2] = {plan_.traced.tokens, plan_.traced.targets};
  const Tensor* tt[2] = {&tokens, &targets};
  for (int k = 0; k < 2; ++k) {
    Tensor t = tt[k]->dtype() == DType::kI64 ? *tt[k] : tt[k]->to(DType::kI64);
    HP_CHECK(t.shape() == tv[k].shape(), "[spmd] batch ", shape_str(t.shape()), ", the plan needs ",
             shape_str(tv[k].shape()));
    Tensor piece = shard::local_piece(t, P.layout[size_t(tv[k].id)], mesh, rank);
    if (runner)
      runner->bind(low.map[size_t(tv[k].id)], piece.is_contiguous() ? piece : piece.clone());
    else
      ex.bind(low.map[size_t(tv[k].id)], piece);
  }
  if (runner) {
    runner->run(ex);
    stall_s_ += runner->stall_seconds();
  } else {
    ex.run();
  }
}

Tensor SpmdTrainer::output(size_t k) {
  return runner_ ? runner_->result(lowered_.outputs[k]) : exec_->get(lowered_.outputs[k]);
}

double SpmdTrainer::eval(const Tensor& tokens, const Tensor& targets) {
  if (!eval_exec_) {
    eval_lowered_ = shard::lower(*plan_.traced.graph, plan_.eval_prop, rc_.rank(), plan_.lower);
    eval_prog_ = runtime::compile(*eval_lowered_.graph, eval_lowered_.outputs);
    eval_exec_ =
        make_executor(eval_prog_, eval_lowered_, runner_ != nullptr, eval_oplan_, eval_runner_);
  }
  run_batch(*eval_exec_, eval_runner_.get(), eval_lowered_, tokens, targets);
  const ir::ValueId loss = eval_lowered_.outputs[0];
  return (eval_runner_ ? eval_runner_->result(loss) : eval_exec_->get(loss)).f32()[0];
}

StepResult SpmdTrainer::step(const std::vector<std::pair<Tensor, Tensor>>& micro) {
  HP_CHECK(!micro.empty(), "[spmd] step needs at least one micro-batch");
  const shard::Mesh& mesh = plan_.strategy.mesh;
  const int rank = rc_.rank();
  const runtime::Context ctx{opt_.threads};
  const size_t n = micro.size();
  stall_s_ = 0;
  StepResult r;
  for (size_t k = 0; k < n; ++k) {
    run_batch(*exec_, runner_.get(), lowered_, micro[k].first, micro[k].second);
    const double loss = output(0).f32()[0];
    HP_CHECK(std::isfinite(loss), "[spmd] loss is not finite (", loss, ") at optimizer step ",
             adam_->steps_done());
    r.loss += loss / double(n);
    if (n == 1) break;
    if (accum_.empty())
      for (const Tensor& p : params_)
        accum_.push_back(Tensor::zeros(p.shape(), DType::kF32, runner_ ? pool_->host() : device_));
    for (size_t i = 0; i < params_.size(); ++i) {  // the same arithmetic as train::Trainer
      const Tensor g = output(1 + i);
      runtime::default_backend().axpby(ctx, g.numel(), k == 0 ? 0.0f : 1.0f, accum_[i].f32(),
                                       1.0f / float(n), g.f32(), accum_[i].f32());
    }
  }
  std::vector<Tensor> last;  // one micro-batch: the gradients where the program left them
  if (n == 1)
    for (size_t i = 0; i < params_.size(); ++i) last.push_back(output(1 + i));
  std::vector<Tensor*> grads;
  float ss = 0;
  const auto coords = mesh.coords(rank);
  for (size_t i = 0; i < params_.size(); ++i) {
    grads.push_back(n == 1 ? &last[i] : &accum_[i]);
    bool owner = true;  // one replica of each piece counts towards the norm
    for (size_t a = 0; a < mesh.ndim(); ++a)
      if (plan_.param_layouts[i].is_unused(mesh.axis_names()[a]) && coords[a] != 0) owner = false;
    if (owner)
      ss += float(
          runtime::default_backend().sum_squares(ctx, grads.back()->f32(), grads.back()->numel()));
  }
  rc_.world().all_reduce(&ss, &ss, 1, DType::kF32, comm::ReduceOp::kSum).wait(rc_.timeout());
  r.grad_norm = std::sqrt(double(ss));
  HP_CHECK(std::isfinite(r.grad_norm), "[clip] gradient norm is not finite (", r.grad_norm, ")");
  if (opt_.clip > 0 && r.grad_norm > opt_.clip) {
    const float s = float(opt_.clip / (r.grad_norm + 1e-6));
    for (Tensor* g : grads) runtime::default_backend().scale(ctx, g->f32(), g->numel(), s);
  }
  r.lr = opt_.adam.lr * opt_.schedule.factor(adam_->steps_done());
  std::vector<const Tensor*> cg(grads.begin(), grads.end());
  adam_->step(ctx, cg, r.lr);
  return r;
}

Tensor SpmdTrainer::global(size_t i, const Tensor& local) {
  return rc_.gather(local, plan_.traced.params[i].shape(), plan_.param_layouts[i])
      .reshape(plan_.infos[i].shape);
}

io::TensorMap SpmdTrainer::params() {
  io::TensorMap m;
  for (size_t i = 0; i < params_.size(); ++i) m.emplace(plan_.infos[i].name, global(i, params_[i]));
  return m;
}

io::TensorMap SpmdTrainer::grads() {
  io::TensorMap m;
  for (size_t i = 0; i < params_.size(); ++i)
    m.emplace(plan_.infos[i].name, global(i, output(1 + i)));
  return m;
}

io::TensorMap SpmdTrainer::optimizer_state() {
  io::TensorMap local = adam_->state(), m;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& pi = plan_.infos[i];
    for (const char* k : {"m/", "v/"}) {
      const std::string name = k + pi.name;
      auto it = local.find(name);
      HP_CHECK(it != local.end(), "[spmd] optimizer state lacks '", name, "'");
      m.emplace(name, global(i, it->second));
    }
  }
  return m;
}

void SpmdTrainer::load_optimizer_state(const io::TensorMap& state, int64_t steps_done) {
  io::TensorMap local;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& pi = plan_.infos[i];
    for (const char* k : {"m/", "v/"}) {
      const std::string name = k + pi.name;
      auto it = state.find(name);
      HP_CHECK(it != state.end(), "[spmd] optimizer state lacks '", name, "'");
      HP_CHECK(numel(it->second.shape()) == numel(pi.shape), "[spmd] optimizer state '", name,
               "' is ", shape_str(it->second.shape()), ", the parameter is ", shape_str(pi.shape));
      Tensor full = it->second.to(DType::kF32).reshape(plan_.traced.params[i].shape());
      local.emplace(
          name, shard::local_piece(full, plan_.param_layouts[i], plan_.strategy.mesh, rc_.rank()));
    }
  }
  adam_->load_state(local, steps_done);
}

}  // namespace hp::train
