// Trainer: per rank, plan -> executor (under an offload runner when planned) -> clip by the
// global norm (replicas counted once) -> AdamW on the local shards. On one device the program is
// the global step's and clipping is optim::clip_grad_norm, as without a mesh.
#include "hp/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "hp/mpmd/offload.hpp"
#include "hp/mpmd/verify.hpp"
#include "hp/runtime/backend.hpp"
#include "train/pipeline.hpp"

namespace hp::train {

namespace fs = std::filesystem;

Trainer::Trainer(const StepPlan& plan, comm::Communicator& world, const io::TensorMap& params,
                 TrainOptions opt)
    : Trainer(nullptr, &plan, &world, params, std::move(opt)) {}

Trainer::Trainer(const io::ModelConfig& cfg, const io::TensorMap& params, TrainOptions opt)
    : Trainer(plan_step(cfg, opt.batch, opt.seq), nullptr, nullptr, params, opt) {}

Trainer::Trainer(std::unique_ptr<StepPlan> own, const StepPlan* plan, comm::Communicator* world,
                 const io::TensorMap& params, TrainOptions opt)
    : own_plan_(std::move(own)),
      plan_(plan ? *plan : *own_plan_),
      opt_(std::move(opt)),
      world_(world) {
  HP_CHECK(opt_.threads >= 1, "[train] threads must be >= 1");
  HP_CHECK(world_ || !plan_.sharded, "[train] a sharded step needs its rank's communicator");
  if (plan_.pipeline) {
    init_pipeline(params);
    return;
  }
  const int rank = world_ ? world_->rank() : 0;
  const memory::OffloadOptions& off = opt_.offload;
  rp_ = plan_rank(plan_, rank, off, opt_.threads);
  // The allocator holds the tensors; the plan kept the kernels' workspace free of the budget.
  const size_t tensors = rp_->budget == 0 ? 0 : rp_->budget - rp_->request.scratch_bytes;
  device_ = std::make_shared<Allocator>("device" + std::to_string(rank), tensors);
  if (world_) rc_ = std::make_unique<shard::RankComm>(plan_.strategy.mesh, *world_);
  const bool disk = off.optimizer_state == Tier::kDisk;
  fs::path dir = off.offload_dir;
  if (disk && plan_.sharded) dir /= "rank" + std::to_string(rank);  // each rank its own files
  pool_ = std::make_unique<memory::TieredPool>(device_, off.host_budget, disk ? dir : fs::path());
  engine_ = std::make_unique<memory::TransferEngine>(off.transfer_threads);
  if (off.copies == memory::CopyMode::kInline)
    copies_ = std::make_unique<memory::TransferEngine>(opt_.threads, memory::CopyMode::kInline);

  // Shards on the device, or on the host tier under a plan (prefetched as the plan says).
  const bool planned = rp_->offload.has_value();
  const auto& home = planned ? pool_->host() : device_;
  std::vector<optim::ParamRef> refs;
  for (size_t i = 0; i < plan_.infos.size(); ++i) {
    const auto& pi = plan_.infos[i];
    auto it = params.find(pi.name);
    HP_CHECK(it != params.end(), "[train] missing parameter '", pi.name, "'");
    params_.push_back(piece(i, it->second).to(DType::kF32, home));
    refs.push_back({pi.name, params_.back(), pi.decay});
  }
  adam_ = std::make_unique<OffloadedAdamW>(opt_.adam, refs, off.optimizer_state, *pool_, *engine_,
                                           std::chrono::milliseconds(off.timeout_ms));
  exec_ = make_executor(*rp_, runner_);
  // Shards, moments and gradient buffers: what is charged beyond the executor's arena (under a
  // plan, buffers come and go with the plan and only what stays resident counts).
  state_bytes_ = device_->live_bytes() - (planned ? 0 : rp_->program.arena_bytes);
}

void Trainer::init_pipeline(const io::TensorMap& params) {
  HP_CHECK(world_, "[train] a pipeline step needs its rank's communicator");
  const memory::OffloadOptions& off = opt_.offload;
  const int rank = world_->rank();
  device_ = std::make_shared<Allocator>("device" + std::to_string(rank), 0);
  rc_ = std::make_unique<shard::RankComm>(plan_.strategy.mesh, *world_);
  // Each stage's optimizer state in the tier asked for; on disk, each rank its own files.
  const bool disk = off.optimizer_state == Tier::kDisk;
  pool_ = std::make_unique<memory::TieredPool>(
      device_, off.host_budget,
      disk ? off.offload_dir / ("rank" + std::to_string(rank)) : fs::path());
  engine_ = std::make_unique<memory::TransferEngine>(off.transfer_threads);
  if (off.copies == memory::CopyMode::kInline)
    copies_ = std::make_unique<memory::TransferEngine>(opt_.threads, memory::CopyMode::kInline);
  stage_ = std::make_unique<StageRunner>(plan_, *world_, opt_.threads, device_, rc_->timeout());
  std::vector<optim::ParamRef> refs;
  for (size_t i : stage_->param_ids()) {
    const auto& pi = plan_.infos[i];
    auto it = params.find(pi.name);
    HP_CHECK(it != params.end(), "[train] missing parameter '", pi.name, "'");
    params_.push_back(stage_piece(i, it->second).to(DType::kF32, device_));
    refs.push_back({pi.name, params_.back(), pi.decay});
  }
  stage_->bind_params(params_);
  adam_ = std::make_unique<OffloadedAdamW>(opt_.adam, refs, off.optimizer_state, *pool_, *engine_,
                                           std::chrono::milliseconds(off.timeout_ms));
  for (const Tensor& p : params_) accum_.push_back(Tensor::zeros(p.shape(), DType::kF32, device_));
  state_bytes_ = device_->live_bytes();
  if (!off.device_budget.unlimited()) check_pipeline_budget();
}

// Every stage's device bytes: what it holds throughout (parameters, gradient accumulators,
// optimizer state on the device, its programs' arenas and outputs, the kernels' largest
// workspace) plus the activations its micro-batches keep between F and their backward at the
// schedule's peak, as the verifier replays it with each rank's budget. Over it, and with
// activations allowed off the device (offload: activations, the default), the schedule gains
// OFFLOAD / RELOAD actions (mpmd::plan_activation_offload) and is verified again. The same
// numbers on every rank (all-reduced), so every rank plans or refuses alike, naming the smallest
// budget that fits. Then the device allocator holds the rest of the step to the budget.
void Trainer::check_pipeline_budget() {
  const StageRunner::DeviceNeeds needs = stage_->prepare_device();
  const auto& pp = *plan_.pipeline;
  const size_t stages = pp.stages.size(), chunks = needs.act.size();
  // Per chunk its act and w bytes, per stage its fixed bytes: each rank fills its own, the
  // largest over a stage's ranks counts (a tp piece may be one row longer).
  std::vector<int64_t> v(2 * chunks + stages, 0);
  for (size_t c = 0; c < chunks; ++c)
    v[c] = int64_t(needs.act[c]), v[chunks + c] = int64_t(needs.w[c]);
  v[2 * chunks + size_t(stage_->stage())] = int64_t(device_->live_bytes() + needs.scratch);
  world_->all_reduce(v.data(), v.data(), v.size(), DType::kI64, comm::ReduceOp::kMax)
      .wait(rc_->timeout());
  mpmd::CostModel costs = mpmd::CostModel::uniform(pp.schedule.graph);
  for (size_t c = 0; c < chunks; ++c)
    costs.chunks[c].act_bytes = double(v[c]), costs.chunks[c].w_bytes = double(v[chunks + c]);
  const std::vector<double> peak = mpmd::verify(pp.schedule, costs).peak_memory;
  size_t smallest = 0;  // what the most demanding stage needs
  std::vector<size_t> need(stages);
  std::string each;  // "stage 0 52.10 MiB held + 34.10 MiB of activations at the ...; ..."
  for (size_t s = 0; s < stages; ++s) {
    need[s] = size_t(v[2 * chunks + s]) + size_t(peak[s]);
    smallest = std::max(smallest, need[s]);
    each += detail::cat(s ? "; " : "", "stage ", s, " ",
                        memory::format_bytes(size_t(v[2 * chunks + s])), " held + ",
                        memory::format_bytes(size_t(peak[s])),
                        " of activations at the schedule's peak");
  }
  // With activation offload, what the most demanding stage needs when every micro-batch but the
  // one an action works on may wait on the host.
  const bool offload = opt_.offload.activations;
  if (offload) {
    const std::vector<double> least = mpmd::least_offload_budget(pp.schedule, costs);
    smallest = 0;
    for (size_t s = 0; s < stages; ++s)
      smallest = std::max(smallest, size_t(v[2 * chunks + s]) + size_t(least[s]));
  }
  const memory::Budget& budget = opt_.offload.device_budget;
  costs.memory_budget.resize(stages);
  for (size_t s = 0; s < stages; ++s)
    costs.memory_budget[s] = double(budget.resolve(need[s])) - double(v[2 * chunks + s]);
  const size_t mine = budget.resolve(need[size_t(stage_->stage())]);
  try {
    // Nothing left for activations (the verifier reads a budget <= 0 as unlimited).
    if (std::any_of(costs.memory_budget.begin(), costs.memory_budget.end(),
                    [](double b) { return b <= 0; }))
      throw Error("a stage's parameters, gradients, optimizer state and programs alone exceed it");
    try {
      mpmd::verify(pp.schedule, costs);
    } catch (const Error&) {  // over a budget: the schedule was verified without one
      if (!offload) throw;
      // Every rank plans the same schedule from the same all-reduced numbers.
      mpmd::Schedule moved = mpmd::plan_activation_offload(pp.schedule, costs);
      mpmd::verify(moved, costs);
      stage_->offload_activations(std::move(moved), pool_->host(), copies_ ? *copies_ : *engine_);
    }
  } catch (const Error& e) {
    throw OutOfMemory(detail::cat(
        "[train] device budget ", budget.str(), " under pipeline ", pp.schedule.name, ": ",
        e.what(), "; per device, ", each, ": the smallest budget this pipeline fits in is ",
        smallest, " bytes (", memory::format_bytes(smallest), ")",
        offload ? " with activations offloaded" : "",
        opt_.offload.optimizer_state == Tier::kDevice
            ? " (less with the optimizer state off the device: --optimizer-state host|disk)"
            : ""));
  }
  device_->set_budget(mine - needs.scratch);
  pipeline_budget_ = mine;
  pipeline_scratch_ = needs.scratch;
}

Tensor Trainer::stage_piece(size_t i, const Tensor& global) const {
  const StagePlan& st = stage_->stage_plan();
  Tensor full = global.to(DType::kF32).reshape(st.param_shape(plan_.infos[i]));
  if (!st.sharded) return full;
  return shard::local_piece(full, st.param_layouts[i], st.strategy.mesh, stage_->local_rank());
}

// Each parameter held by several stages (a tied embedding: the first and the last): every rank
// holding a piece of it adds the other stages' contributions to that piece, received as the parts
// of the other stages' layouts that it needs (boundary_parts), so all copies stay identical.
void Trainer::exchange_shared_grads() {
  const int me = world_->rank();
  const auto& stages = plan_.pipeline->stages;
  const StagePlan& mine = stage_->stage_plan();
  const auto timeout = rc_->timeout();
  std::vector<std::pair<comm::Work, Tensor>> sends;
  for (size_t k = 0; k < params_.size(); ++k) {
    const size_t i = stage_->param_ids()[k];
    const std::vector<int>& holders = stage_->holders(i);
    if (holders.size() < 2) continue;
    const int tag = kSharedGradTag + int(i);
    const nn::ParamInfo& pi = plan_.infos[i];
    const Shape& shape = mine.param_shape(pi);
    const shard::Box held =
        shard::local_box(shape, mine.param_layouts[i], mine.strategy.mesh, stage_->local_rank());
    std::vector<std::pair<comm::Work, Tensor>> recvs;
    std::vector<shard::Box> boxes;
    for (int other : holders) {
      if (other == stage_->stage()) continue;
      const StagePlan& st = stages[size_t(other)];
      HP_CHECK(st.param_shape(pi) == shape, "[train] parameter '", pi.name, "' is held as ",
               shape_str(st.param_shape(pi)), " by stage ", other, " and as ", shape_str(shape),
               " by stage ", stage_->stage());
      for (const BoundaryPart& p :
           boundary_parts(shape, mine, mine.param_layouts[i], st, st.param_layouts[i]))
        if (p.from == me) {
          Tensor part = extract_box(accum_[k], held, p.box);
          sends.emplace_back(world_->send(part.raw(), size_t(part.numel()), DType::kF32, p.to, tag),
                             part);
        }
      for (const BoundaryPart& p :
           boundary_parts(shape, st, st.param_layouts[i], mine, mine.param_layouts[i]))
        if (p.to == me) {
          Tensor part(p.box.extent, DType::kF32);
          recvs.emplace_back(
              world_->recv(part.raw(), size_t(part.numel()), DType::kF32, p.from, tag), part);
          boxes.push_back(p.box);
        }
    }
    // The parts sent above are copies: accum_ may take the sum while they are in flight.
    for (size_t j = 0; j < recvs.size(); ++j) {
      recvs[j].first.wait(timeout);
      Tensor cur = extract_box(accum_[k], held, boxes[j]);
      runtime::default_backend().axpby(runtime::Context{opt_.threads}, cur.numel(), 1.0f, cur.f32(),
                                       1.0f, recvs[j].second.f32(), cur.f32());
      insert_box(accum_[k], held, boxes[j], cur);
    }
  }
  for (auto& [w, buf] : sends) w.wait(timeout);
}

// Parameter i's value on every rank, from the lowest stage holding it (`local(k)` on its ranks is
// their piece, k its position among the stage's parameters): gathered over that stage's mesh,
// then broadcast from its first rank. Collective.
Tensor Trainer::from_owner(size_t i, const std::function<Tensor(size_t)>& local) {
  const int owner = stage_->owners()[i];
  const StagePlan& st = plan_.pipeline->stages[size_t(owner)];
  const auto& ids = stage_->param_ids();
  const nn::ParamInfo& pi = plan_.infos[i];
  Tensor t(pi.shape, DType::kF32);
  if (owner == stage_->stage()) {
    const size_t k = size_t(std::lower_bound(ids.begin(), ids.end(), i) - ids.begin());
    t = st.sharded ? stage_->stage_comm()->gather(local(k), st.param_shape(pi), st.param_layouts[i])
                   : local(k).clone();
    t = t.reshape(pi.shape);
    if (!t.is_contiguous()) t = t.clone();
  }
  world_->broadcast(t.raw(), size_t(t.numel()), DType::kF32, st.first_rank).wait(rc_->timeout());
  return t;
}

Trainer::~Trainer() = default;

mpmd::CostModel Trainer::measured_pipeline_costs() {
  HP_CHECK(stage_ != nullptr, "[train] measured_pipeline_costs: not a pipeline step");
  mpmd::CostModel costs;
  costs.chunks = stage_->measured_costs();
  return costs;
}

bool Trainer::reorder_pipeline(const mpmd::CostModel& costs) {
  HP_CHECK(stage_ != nullptr, "[train] reorder_pipeline: not a pipeline step");
  return stage_->reorder(costs);
}

const mpmd::Schedule& Trainer::pipeline_schedule() const {
  HP_CHECK(stage_ != nullptr, "[train] pipeline_schedule: not a pipeline step");
  return stage_->schedule();
}

const RankProgram& Trainer::rank_program() const {
  HP_CHECK(rp_ != nullptr, "[train] a pipeline rank has one program per chunk, not one");
  return *rp_;
}

double Trainer::flops_per_micro_batch() {
  return stage_ ? stage_->flops_per_batch() : rp_->program.flops;
}

shard::RankComm& Trainer::rank_comm() {
  HP_CHECK(rc_ != nullptr, "[train] a trainer made without a communicator has no mesh");
  return *rc_;
}

Tensor Trainer::piece(size_t i, const Tensor& global) const {
  if (!plan_.sharded) return global;
  Tensor full = global.to(DType::kF32).reshape(plan_.traced.params[i].shape());
  return shard::local_piece(full, plan_.param_layouts[i], plan_.strategy.mesh, rp_->rank);
}

Tensor Trainer::global(size_t i, const Tensor& local) {
  if (!plan_.sharded) return local;
  return rc_->gather(local, plan_.traced.params[i].shape(), plan_.param_layouts[i])
      .reshape(plan_.infos[i].shape);
}

std::unique_ptr<runtime::Executor> Trainer::make_executor(
    const RankProgram& rp, std::unique_ptr<memory::OffloadRunner>& runner) {
  const runtime::Context ctx{opt_.threads};
  std::unique_ptr<runtime::Executor> ex;
  if (rp.offload) {
    ex = std::make_unique<runtime::Executor>(rp.offload->program, device_, ctx);
    runner =
        std::make_unique<memory::OffloadRunner>(*rp.offload, *pool_, copies_ ? *copies_ : *engine_,
                                                std::chrono::milliseconds(opt_.offload.timeout_ms));
    for (size_t i = 0; i < params_.size(); ++i)
      runner->bind(rp.local(plan_.traced.params[i].id), params_[i]);
  } else {
    ex = std::make_unique<runtime::Executor>(rp.program, device_, ctx);
    for (size_t i = 0; i < params_.size(); ++i)
      ex->bind(rp.local(plan_.traced.params[i].id), params_[i]);
  }
  if (plan_.sharded) ex->set_comm_runner(&rc_->runner(rp.lowered.plans));
  return ex;
}

void Trainer::run_batch(runtime::Executor& ex, memory::OffloadRunner* runner, const RankProgram& rp,
                        const Tensor& tokens, const Tensor& targets) {
  const ir::Var tv[2] = {plan_.traced.tokens, plan_.traced.targets};
  const Tensor* tt[2] = {&tokens, &targets};
  for (int k = 0; k < 2; ++k) {
    Tensor t = tt[k]->dtype() == DType::kI64 ? *tt[k] : tt[k]->to(DType::kI64);
    if (plan_.sharded) {
      HP_CHECK(t.shape() == tv[k].shape(), "[train] batch ", shape_str(t.shape()),
               ", the plan needs ", shape_str(tv[k].shape()));
      t = shard::local_piece(t, plan_.prop.layout[size_t(tv[k].id)], plan_.strategy.mesh, rp.rank);
    }
    if (runner)
      runner->bind(rp.local(tv[k].id), t.is_contiguous() ? t : t.clone());
    else
      ex.bind(rp.local(tv[k].id), t);
  }
  if (runner) {
    runner->run(ex);
    stall_s_ += runner->stall_seconds();
  } else {
    ex.run();
  }
}

Tensor Trainer::output(size_t k) {
  const ir::ValueId v = rp_->outputs[k];
  return runner_ ? runner_->result(v) : exec_->get(v);
}

double Trainer::eval(const Tensor& tokens, const Tensor& targets) {
  if (stage_) return stage_->eval(tokens, targets);
  if (!eval_exec_) {
    eval_rp_ = plan_eval(plan_, *rp_);
    eval_exec_ = make_executor(*eval_rp_, eval_runner_);
  }
  run_batch(*eval_exec_, eval_runner_.get(), *eval_rp_, tokens, targets);
  const ir::ValueId loss = eval_rp_->outputs[0];
  return (eval_runner_ ? eval_runner_->result(loss) : eval_exec_->get(loss)).f32()[0];
}

StepResult Trainer::step(const std::vector<std::pair<Tensor, Tensor>>& micro) {
  HP_CHECK(!micro.empty(), "[train] step needs at least one micro-batch");
  const runtime::Context ctx{opt_.threads};
  const size_t n = micro.size();
  stall_s_ = 0;
  StepResult r;
  timeline_.clear();
  const auto t_step = std::chrono::steady_clock::now();
  auto since_step = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_step).count();
  };
  if (stage_) {  // each batch through the schedule, its gradients weighted into accum_
    for (Tensor& a : accum_) std::memset(a.raw(), 0, a.nbytes());
    for (const auto& [tokens, targets] : micro) {
      const double at = since_step();
      r.loss += stage_->run(tokens, targets, 1.0 / double(n), accum_) / double(n);
      for (mpmd::Interval iv : stage_->timeline()) {
        iv.start += at, iv.end += at;
        timeline_.push_back(iv);
      }
    }
    stage_->reduce_grads(accum_);
    HP_CHECK(std::isfinite(r.loss), "[train] loss is not finite (", r.loss, ") at optimizer step ",
             adam_->steps_done());
    exchange_shared_grads();
  }
  for (size_t k = 0; k < n && !stage_; ++k) {
    const double at = since_step();
    run_batch(*exec_, runner_.get(), *rp_, micro[k].first, micro[k].second);
    timeline_.push_back(
        {at, since_step(), {.kind = mpmd::ActionKind::kBW, .chunk = 0, .microbatch = int(k)}});
    const double loss = output(0).f32()[0];
    HP_CHECK(std::isfinite(loss), "[train] loss is not finite (", loss, ") at optimizer step ",
             adam_->steps_done());
    r.loss += loss / double(n);
    if (n == 1) break;
    if (accum_.empty())
      for (const Tensor& p : params_)
        accum_.push_back(Tensor::zeros(p.shape(), DType::kF32, runner_ ? pool_->host() : device_));
    for (size_t i = 0; i < params_.size(); ++i) {  // accum = (k ? accum : 0) + g / n
      const Tensor g = output(1 + i);
      runtime::default_backend().axpby(ctx, g.numel(), k == 0 ? 0.0f : 1.0f, accum_[i].f32(),
                                       1.0f / float(n), g.f32(), accum_[i].f32());
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Tensor> last;  // one micro-batch: the gradients where the program left them
  if (n == 1 && !stage_)
    for (size_t i = 0; i < params_.size(); ++i) last.push_back(output(1 + i));
  std::vector<Tensor*> grads;
  for (size_t i = 0; i < params_.size(); ++i)
    grads.push_back(n == 1 && !stage_ ? &last[i] : &accum_[i]);
  r.grad_norm = clip(ctx, grads);
  r.lr = opt_.adam.lr * opt_.schedule.factor(adam_->steps_done());
  std::vector<const Tensor*> cg(grads.begin(), grads.end());
  adam_->step(ctx, cg, r.lr);
  r.stall_seconds = stall_s_;
  r.optimizer_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double end = since_step();
  timeline_.push_back({end - r.optimizer_seconds, end, {.kind = mpmd::ActionKind::kOpt}});
  return r;
}

double Trainer::clip(const runtime::Context& ctx, const std::vector<Tensor*>& grads) {
  if (!plan_.sharded && !stage_) return optim::clip_grad_norm(ctx, grads, opt_.clip);
  const shard::Mesh& mesh = plan_.strategy.mesh;
  const auto coords = mesh.coords(world_->rank());
  float ss = 0;
  // Every piece counts once towards the norm: the ranks holding copies of it (those differing
  // only along axes the layout leaves unused) each sum squares over their own slice of it. A
  // pipeline: only the ranks of the stage owning the parameter count it, over their stage's mesh.
  auto add = [&](const Tensor& g, const shard::Layout& l, const shard::Mesh& m,
                 const std::vector<int64_t>& at) {
    int64_t copies = 1, index = 0;
    for (size_t a = 0; a < m.ndim(); ++a)
      if (l.is_unused(m.axis_names()[a]))
        index = index * m.sizes()[a] + at[a], copies *= m.sizes()[a];
    const auto [off, len] = shard::split_range(g.numel(), copies, index);
    ss += float(runtime::default_backend().sum_squares(ctx, g.f32() + off, len));
  };
  for (size_t i = 0; i < grads.size() && stage_; ++i) {
    const size_t id = stage_->param_ids()[i];
    const StagePlan& st = stage_->stage_plan();
    if (stage_->owners()[id] == stage_->stage())
      add(*grads[i], st.param_layouts[id], st.strategy.mesh,
          st.strategy.mesh.coords(stage_->local_rank()));
  }
  for (size_t i = 0; i < grads.size() && !stage_; ++i)
    add(*grads[i], plan_.param_layouts[i], mesh, coords);
  world_->all_reduce(&ss, &ss, 1, DType::kF32, comm::ReduceOp::kSum).wait(rc_->timeout());
  const double norm = std::sqrt(double(ss));
  HP_CHECK(std::isfinite(norm), "[clip] gradient norm is not finite (", norm, ")");
  if (opt_.clip > 0 && norm > opt_.clip) {
    const float s = float(opt_.clip / (norm + 1e-6));
    for (Tensor* g : grads) runtime::default_backend().scale(ctx, g->f32(), g->numel(), s);
  }
  return norm;
}

io::TensorMap Trainer::params() {
  io::TensorMap m;
  if (stage_) {
    for (size_t i = 0; i < plan_.infos.size(); ++i)
      m.emplace(plan_.infos[i].name, from_owner(i, [&](size_t k) { return params_[k]; }));
    return m;
  }
  for (size_t i = 0; i < params_.size(); ++i) m.emplace(plan_.infos[i].name, global(i, params_[i]));
  return m;
}

io::TensorMap Trainer::grads() {
  io::TensorMap m;
  if (stage_) {  // the last step's, summed over its micro-batches
    for (size_t i = 0; i < plan_.infos.size(); ++i)
      m.emplace(plan_.infos[i].name, from_owner(i, [&](size_t k) { return accum_[k]; }));
    return m;
  }
  for (size_t i = 0; i < params_.size(); ++i)
    m.emplace(plan_.infos[i].name, global(i, output(1 + i)));
  return m;
}

io::TensorMap Trainer::optimizer_state() {
  io::TensorMap local = adam_->state();
  if (stage_) {
    io::TensorMap m;
    for (size_t i = 0; i < plan_.infos.size(); ++i)
      for (const char* key : {"m/", "v/"}) {
        const std::string name = key + plan_.infos[i].name;
        m.emplace(name, from_owner(i, [&](size_t) { return local.at(name); }));
      }
    return m;
  }
  if (!plan_.sharded) return local;
  io::TensorMap m;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const char* k : {"m/", "v/"}) {
      const std::string name = k + plan_.infos[i].name;
      auto it = local.find(name);
      HP_CHECK(it != local.end(), "[train] optimizer state lacks '", name, "'");
      m.emplace(name, global(i, it->second));
    }
  }
  return m;
}

void Trainer::load_optimizer_state(const io::TensorMap& state, int64_t steps_done) {
  if (stage_) {  // the moments of this rank's parameters
    io::TensorMap local;
    for (size_t i : stage_->param_ids())
      for (const char* key : {"m/", "v/"}) {
        const std::string name = key + plan_.infos[i].name;
        auto it = state.find(name);
        HP_CHECK(it != state.end(), "[train] optimizer state lacks '", name, "'");
        local.emplace(name, stage_piece(i, it->second));
      }
    return adam_->load_state(local, steps_done);
  }
  if (!plan_.sharded) return adam_->load_state(state, steps_done);
  io::TensorMap local;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& pi = plan_.infos[i];
    for (const char* k : {"m/", "v/"}) {
      const std::string name = k + pi.name;
      auto it = state.find(name);
      HP_CHECK(it != state.end(), "[train] optimizer state lacks '", name, "'");
      HP_CHECK(numel(it->second.shape()) == numel(pi.shape), "[train] optimizer state '", name,
               "' is ", shape_str(it->second.shape()), ", the parameter is ", shape_str(pi.shape));
      local.emplace(name, piece(i, it->second));
    }
  }
  adam_->load_state(local, steps_done);
}

std::vector<Trainer::PieceBox> Trainer::piece_boxes() const {
  std::vector<PieceBox> out;
  const shard::Mesh* mesh = plan_.sharded ? &plan_.strategy.mesh : nullptr;
  for (size_t i = 0; i < params_.size(); ++i) {
    // A pipeline rank holds whole parameters, some of them: the lowest rank holding one stores it.
    const size_t id = stage_ ? stage_->param_ids()[i] : i;
    const nn::ParamInfo& pi = plan_.infos[id];
    PieceBox b{pi.name, pi.logical.empty() ? pi.shape : pi.logical, pi.shape, {}, {}, true};
    if (stage_ && stage_->stage_plan().sharded) {  // its piece on the stage's mesh
      const StagePlan& st = stage_->stage_plan();
      const shard::Layout& l = st.param_layouts[id];
      const shard::Box box = shard::local_box(b.shape, l, st.strategy.mesh, stage_->local_rank());
      b.offset = box.offset;
      b.extent = box.extent;
      const auto coords = st.strategy.mesh.coords(stage_->local_rank());
      b.stores = stage_->owners()[id] == stage_->stage();
      for (size_t a = 0; a < st.strategy.mesh.ndim(); ++a)
        if (l.is_unused(st.strategy.mesh.axis_names()[a]) && coords[a] != 0) b.stores = false;
      out.push_back(std::move(b));
      continue;
    }
    if (!mesh) {
      b.offset.assign(b.shape.size(), 0);
      b.extent = b.shape;
      b.stores = !stage_ || (stage_->owners()[id] == stage_->stage() && stage_->local_rank() == 0);
      out.push_back(std::move(b));
      continue;
    }
    const shard::Layout& l = plan_.param_layouts[i];
    const Shape& traced = plan_.traced.params[i].shape();
    HP_CHECK(traced == b.shape && l.partial.empty(), "[train] parameter '", pi.name, "' traced as ",
             shape_str(traced), " with layout ", l.str(), " cannot be stored as ",
             shape_str(b.shape));
    const shard::Box box = shard::local_box(traced, l, *mesh, rp_->rank);
    b.offset = box.offset;
    b.extent = box.extent;
    const auto coords = mesh->coords(rp_->rank);
    for (size_t a = 0; a < mesh->ndim(); ++a)
      if (l.is_unused(mesh->axis_names()[a]) && coords[a] != 0) b.stores = false;
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<Trainer::PieceBox> Trainer::global_boxes() const {
  std::vector<PieceBox> out;
  for (const nn::ParamInfo& pi : plan_.infos) {
    const Shape& shape = pi.logical.empty() ? pi.shape : pi.logical;
    out.push_back({pi.name, shape, pi.shape, Shape(shape.size(), 0), shape, true});
  }
  return out;
}

Trainer::Snapshot Trainer::snapshot() {
  const std::vector<PieceBox> boxes = piece_boxes();
  const io::TensorMap state = adam_->state();
  Snapshot s;
  for (size_t i = 0; i < params_.size(); ++i) {
    s.param.emplace_back(), s.m.emplace_back(), s.v.emplace_back();
    if (!boxes[i].stores) continue;
    s.param.back() = params_[i].clone();
    s.m.back() = state.at("m/" + boxes[i].name).clone();
    s.v.back() = state.at("v/" + boxes[i].name).clone();
  }
  return s;
}

void Trainer::restore(const PieceReader& read, int64_t steps_done) {
  const std::vector<PieceBox> boxes = piece_boxes();
  io::TensorMap moments;
  for (size_t i = 0; i < params_.size(); ++i) {
    const PieceBox& b = boxes[i];
    HP_CHECK(numel(params_[i].shape()) == numel(b.extent) && params_[i].is_contiguous() &&
                 params_[i].dtype() == DType::kF32,
             "[train] piece of '", b.name, "' is ", shape_str(params_[i].shape()), ", its box ",
             shape_str(b.extent));
    read(b.name, b, params_[i]);
    for (const char* k : {"m/", "v/"}) {
      Tensor t = Tensor::zeros(params_[i].shape(), DType::kF32);
      read(k + b.name, b, t);
      moments.emplace(k + b.name, std::move(t));
    }
  }
  adam_->load_state(moments, steps_done);
}

}  // namespace hp::train
