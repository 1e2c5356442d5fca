// OffloadTrainer: the step of train::Trainer (same graph, kernels, clipping and AdamW order), with
// the device tier reduced to what the offload plan keeps there.
#include "hp/memory/trainer.hpp"

#include <chrono>
#include <cmath>

#include "hp/autodiff.hpp"

namespace hp::memory {

std::unique_ptr<StepPlan> plan_step(const io::ModelConfig& cfg, int64_t batch, int64_t seq,
                                    const OffloadOptions& o, int threads) {
  auto sp = std::make_unique<StepPlan>();
  sp->traced = nn::trace(cfg, batch, seq, true);
  sp->infos = nn::param_infos(cfg);
  sp->grad_vars = autodiff::grad(sp->traced.loss, sp->traced.params);
  for (size_t i = 0; i < sp->grad_vars.size(); ++i)
    sp->traced.graph->set_name(sp->grad_vars[i].id, "grad/" + sp->infos[i].name);
  std::vector<ir::ValueId> outs{sp->traced.loss.id};
  for (auto& g : sp->grad_vars) outs.push_back(g.id);
  sp->program = runtime::compile(*sp->traced.graph, outs);

  for (auto& info : sp->infos) sp->param_bytes += byte_count(info.shape, sizeof(float));
  sp->state_bytes = 2 * sp->param_bytes;
  sp->request = plan_request(sp->program, sp->state_bytes, o, threads, &sp->peak);
  sp->budget = sp->request.device_budget;
  if (wants_plan(o, sp->budget, sp->peak)) sp->plan = plan_offload(sp->program, sp->request);
  return sp;
}

bool wants_plan(const OffloadOptions& o, size_t budget, size_t peak) {
  if (o.auto_mode && budget != 0) return budget < peak;  // offload only what does not fit
  return !o.device_budget.unlimited() || o.optimizer_state != Tier::kDevice;
}

PlanRequest plan_request(const runtime::Program& program, size_t state_bytes,
                         const OffloadOptions& o, int threads, size_t* peak) {
  PlanRequest req;
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
  req.cost.inline_copies = o.copies == CopyMode::kInline;
  return req;
}

OffloadTrainer::OffloadTrainer(const io::ModelConfig& cfg, const io::TensorMap& params,
                               OffloadTrainConfig c)
    : cfg_(cfg), c_(std::move(c)) {
  HP_CHECK(c_.threads >= 1, "[offload] threads must be >= 1");
  const OffloadOptions& o = c_.offload;
  sp_ = plan_step(cfg_, c_.batch, c_.seq, o, c_.threads);
  const bool plan = sp_->plan.has_value();

  engine_ = std::make_unique<TransferEngine>(o.transfer_threads);
  if (o.copies == CopyMode::kInline)
    inline_copies_ = std::make_unique<TransferEngine>(c_.threads, CopyMode::kInline);
  TransferEngine& copies = inline_copies_ ? *inline_copies_ : *engine_;
  const bool needs_disk = o.optimizer_state == Tier::kDisk;
  // The allocator holds the tensors; the plan kept the kernels' workspace free of the budget.
  const size_t tensors = sp_->budget == 0 ? 0 : sp_->budget - sp_->request.scratch_bytes;
  pool_ =
      std::make_unique<TieredPool>(std::make_shared<Allocator>("device0", tensors), o.host_budget,
                                   needs_disk ? o.offload_dir : std::filesystem::path());
  const auto timeout = std::chrono::milliseconds(o.timeout_ms);

  // Parameters live on the host tier under a plan, on the device otherwise.
  const auto& palloc = plan ? pool_->host() : pool_->device();
  std::vector<optim::ParamRef> refs;
  for (size_t i = 0; i < sp_->infos.size(); ++i) {
    auto it = params.find(sp_->infos[i].name);
    HP_CHECK(it != params.end(), "[offload] missing parameter '", sp_->infos[i].name, "'");
    params_.push_back(it->second.to(DType::kF32, palloc));
    refs.push_back({sp_->infos[i].name, params_.back(), sp_->infos[i].decay});
  }
  const auto& params_ids = sp_->traced.params;
  if (plan) {
    exec_ = std::make_unique<runtime::Executor>(sp_->plan->program, pool_->device(),
                                                runtime::Context{c_.threads});
    runner_ = std::make_unique<OffloadRunner>(*sp_->plan, *pool_, copies, timeout);
    for (size_t i = 0; i < params_.size(); ++i) runner_->bind(params_ids[i].id, params_[i]);
  } else {
    exec_ = std::make_unique<runtime::Executor>(sp_->program, pool_->device(),
                                                runtime::Context{c_.threads});
    for (size_t i = 0; i < params_.size(); ++i) exec_->bind(params_ids[i].id, params_[i]);
  }
  adam_ =
      std::make_unique<OffloadedAdamW>(c_.adam, refs, o.optimizer_state, *pool_, *engine_, timeout);
}

OffloadTrainer::~OffloadTrainer() = default;

void OffloadTrainer::run(runtime::Executor& ex, OffloadRunner* runner, const Tensor& tokens,
                         const Tensor& targets) {
  Tensor tok = tokens.dtype() == DType::kI64 ? tokens : tokens.to(DType::kI64);
  Tensor tgt = targets.dtype() == DType::kI64 ? targets : targets.to(DType::kI64);
  if (runner) {
    runner->bind(sp_->traced.tokens.id, tok.is_contiguous() ? tok : tok.clone());
    runner->bind(sp_->traced.targets.id, tgt.is_contiguous() ? tgt : tgt.clone());
    runner->run(ex);
  } else {
    ex.bind(sp_->traced.tokens.id, tok);
    ex.bind(sp_->traced.targets.id, tgt);
    ex.run();
  }
}

Tensor OffloadTrainer::get(runtime::Executor& ex, OffloadRunner* runner, ir::ValueId v) const {
  return runner ? runner->result(v) : ex.get(v);
}

OffloadStep OffloadTrainer::step(const Tensor& tokens, const Tensor& targets) {
  return step(std::vector<std::pair<Tensor, Tensor>>{{tokens, targets}});
}

OffloadStep OffloadTrainer::step(const std::vector<std::pair<Tensor, Tensor>>& micro) {
  HP_CHECK(!micro.empty(), "[offload] step needs at least one micro-batch");
  const auto t0 = std::chrono::steady_clock::now();
  const runtime::Context ctx{c_.threads};
  const size_t n = micro.size();
  OffloadStep r;
  for (size_t k = 0; k < n; ++k) {
    grads_.clear();  // may hold device buffers: give them back before the plan runs again
    run(*exec_, runner_.get(), micro[k].first, micro[k].second);
    if (runner_) r.stall_seconds += runner_->stall_seconds();
    const double loss = get(*exec_, runner_.get(), sp_->traced.loss.id).f32()[0];
    HP_CHECK(std::isfinite(loss), "[offload] loss is not finite (", loss, ") at optimizer step ",
             adam_->steps_done());
    r.loss += loss / double(n);
    for (auto& g : sp_->grad_vars) grads_.push_back(get(*exec_, runner_.get(), g.id));
    if (n == 1) break;
    // The same accumulation as train::Trainer: accum = (k ? accum : 0) + g / n, on the host.
    if (accum_.empty())
      for (auto& g : sp_->grad_vars)
        accum_.push_back(Tensor::zeros(g.shape(), DType::kF32, pool_->host()));
    for (size_t i = 0; i < grads_.size(); ++i)
      runtime::default_backend().axpby(ctx, grads_[i].numel(), k == 0 ? 0.0f : 1.0f,
                                       accum_[i].f32(), 1.0f / float(n), grads_[i].f32(),
                                       accum_[i].f32());
  }
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<Tensor*> gp;
  for (size_t i = 0; i < grads_.size(); ++i) gp.push_back(n == 1 ? &grads_[i] : &accum_[i]);
  r.grad_norm = optim::clip_grad_norm(ctx, gp, c_.clip);
  r.lr = c_.adam.lr * c_.schedule.factor(adam_->steps_done());
  std::vector<const Tensor*> cg(gp.begin(), gp.end());
  adam_->step(ctx, cg, r.lr);
  const auto t2 = std::chrono::steady_clock::now();
  r.optimizer_seconds = std::chrono::duration<double>(t2 - t1).count();
  r.seconds = std::chrono::duration<double>(t2 - t0).count();
  return r;
}

double OffloadTrainer::eval(const Tensor& tokens, const Tensor& targets) {
  grads_.clear();
  if (!eval_exec_) {
    eval_prog_ = runtime::compile(*sp_->traced.graph, {sp_->traced.loss.id});
    const auto& ids = sp_->traced.params;
    if (sp_->plan) {
      eval_plan_ = plan_offload(*eval_prog_, sp_->request);
      eval_exec_ = std::make_unique<runtime::Executor>(eval_plan_->program, pool_->device(),
                                                       runtime::Context{c_.threads});
      eval_runner_ = std::make_unique<OffloadRunner>(
          *eval_plan_, *pool_, inline_copies_ ? *inline_copies_ : *engine_,
          std::chrono::milliseconds(c_.offload.timeout_ms));
      for (size_t i = 0; i < params_.size(); ++i) eval_runner_->bind(ids[i].id, params_[i]);
    } else {
      eval_exec_ = std::make_unique<runtime::Executor>(*eval_prog_, pool_->device(),
                                                       runtime::Context{c_.threads});
      for (size_t i = 0; i < params_.size(); ++i) eval_exec_->bind(ids[i].id, params_[i]);
    }
  }
  run(*eval_exec_, eval_runner_.get(), tokens, targets);
  return get(*eval_exec_, eval_runner_.get(), sp_->traced.loss.id).f32()[0];
}

io::TensorMap OffloadTrainer::grads() const {
  io::TensorMap m;
  for (size_t i = 0; i < grads_.size(); ++i) m.emplace(sp_->infos[i].name, grads_[i]);
  return m;
}

void OffloadTrainer::load_optimizer_state(const io::TensorMap& state, int64_t steps_done) {
  adam_->load_state(state, steps_done);
}

io::TensorMap OffloadTrainer::params() const {
  io::TensorMap m;
  for (size_t i = 0; i < sp_->infos.size(); ++i) m.emplace(sp_->infos[i].name, params_[i]);
  return m;
}

io::TensorMap OffloadTrainer::optimizer_state() const {
  return adam_->state();
}

}  // namespace hp::memory
