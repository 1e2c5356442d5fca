// StageRunner: the schedule's actions on one rank, over its chunks' compiled programs.
#include "train/pipeline.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <set>
#include <utility>

#include "hp/autodiff/grad.hpp"
#include "hp/io/box_file.hpp"
#include "hp/ir/split.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/mpmd/synth.hpp"
#include "hp/mpmd/verify.hpp"
#include "hp/runtime/backend.hpp"
#include "hp/shard/layout.hpp"

namespace hp::train {

std::vector<BoundaryPart> boundary_parts(const Shape& shape, const StagePlan& from,
                                         const shard::Layout& lf, const StagePlan& to,
                                         const shard::Layout& lt) {
  const shard::Mesh& mf = from.strategy.mesh;
  std::vector<BoundaryPart> out;
  for (int s = 0; s < from.size(); ++s) {
    const auto coords = mf.coords(s);
    bool copy = true;  // the one copy of its piece that is sent
    for (size_t a = 0; a < mf.ndim(); ++a)
      if (lf.is_unused(mf.axis_names()[a]) && coords[a] != 0) copy = false;
    if (!copy) continue;
    const shard::Box held = shard::local_box(shape, lf, mf, s);
    for (int r = 0; r < to.size(); ++r) {
      shard::Box b = shard::intersect(held, shard::local_box(shape, lt, to.strategy.mesh, r));
      if (b.numel() > 0) out.push_back({from.first_rank + s, to.first_rank + r, std::move(b)});
    }
  }
  return out;
}

Tensor extract_box(const Tensor& piece, const shard::Box& pb, const shard::Box& box) {
  Tensor out(box.extent, piece.dtype());
  if (box.numel() == 0) return out;
  io::copy_box(static_cast<const uint8_t*>(piece.raw()), pb.offset, pb.extent,
               static_cast<uint8_t*>(out.raw()), box.offset, box.extent, box.offset, box.extent,
               dtype_size(piece.dtype()));
  return out;
}

void insert_box(Tensor& piece, const shard::Box& pb, const shard::Box& box, const Tensor& part) {
  if (box.numel() == 0) return;
  io::copy_box(static_cast<const uint8_t*>(part.raw()), box.offset, box.extent,
               static_cast<uint8_t*>(piece.raw()), pb.offset, pb.extent, box.offset, box.extent,
               dtype_size(piece.dtype()));
}

namespace {

// Rows [first, first + n) of a [B, ...] tensor, as a contiguous tensor of its own.
Tensor rows_of(const Tensor& t, int64_t first, int64_t n) {
  Shape s = t.shape();
  const size_t row = t.nbytes() / size_t(s[0]);
  s[0] = n;
  Tensor out(s, t.dtype());
  std::memcpy(out.raw(), static_cast<const char*>(t.raw()) + size_t(first) * row, size_t(n) * row);
  return out;
}

int64_t counted_targets(const Tensor& targets, int64_t first, int64_t n) {
  const int64_t per_row = targets.numel() / targets.shape()[0];
  const int64_t* t = targets.i64() + first * per_row;
  return std::count_if(t, t + n * per_row, [](int64_t v) { return v != -100; });
}

}  // namespace

// One chunk's programs for one row count: the forward (to x_out; the head chunk: to its loss;
// for eval), or the training step (the loss, every chunk parameter's gradient, x_in's, then
// x_out) cut in parts (F, then B and W or BW), each with its own executor. On a stage of several
// devices the step is first lowered for this rank.
struct StageRunner::Programs {
  nn::Traced traced;
  std::vector<ir::Var> grads;
  shard::Propagation prop;        // a stage of several devices
  shard::Lowered lowered;         // idem: its graph, or none (the traced graph is the rank's)
  std::vector<ir::ValueId> outs;  // the program's outputs (local ids), in the order traced
  runtime::Program program;
  std::unique_ptr<runtime::Executor> ex;
  std::vector<ir::GraphPart> parts;  // the training step cut in parts
  std::vector<runtime::Program> part_programs;
  std::vector<std::unique_ptr<runtime::Executor>> part_ex;

  // Whether a part after `k` reads value `v` of the step.
  bool read_after(size_t k, ir::ValueId v) const {
    for (size_t j = k + 1; j < parts.size(); ++j)
      for (const auto& in : parts[j].inputs)
        if (in.first == v) return true;
    return false;
  }

  // This rank's value of a value of the chunk's step; -1 for none (a chunk without that input).
  ir::ValueId local(ir::ValueId global) const {
    return global < 0 || !lowered.graph ? global : lowered.map.at(size_t(global));
  }
  // The outputs, in the layouts the stage delivers them in (local ids): the loss (the head's,
  // or the training step's), parameter j's gradient and x_in's (training), x_out (a forward, or
  // a training step that is not the head's).
  ir::ValueId loss() const { return outs.front(); }
  ir::ValueId grad(size_t j) const { return outs[1 + j]; }
  ir::ValueId x_in_grad() const { return outs[1 + traced.params.size()]; }
  ir::ValueId x_out() const { return outs.back(); }
  // The layout of an input on the stage's mesh (none on one device).
  shard::Layout layout(ir::ValueId v) const {
    return lowered.graph ? prop.layout[size_t(v)] : shard::Layout();
  }
};

// A micro-batch of a chunk between its forward and its backward: the input it read, and the
// gradient of its output once the next chunk's backward sent it.
struct StageRunner::Flight {
  Tensor input;
  Tensor g_out;
  std::map<ir::ValueId, Tensor> kept;  // values of the chunk's step its later parts read
};

StageRunner::StageRunner(const StepPlan& plan, comm::Communicator& world, int threads,
                         std::shared_ptr<Allocator> device, std::chrono::milliseconds timeout)
    : plan_(plan),
      pp_(*plan.pipeline),
      schedule_(pp_.schedule),
      world_(world),
      ctx_{threads},
      device_(std::move(device)),
      timeout_(timeout) {
  HP_CHECK(
      int(pp_.stages.size()) == pp_.schedule.graph.ranks && world.size() == pp_.spec.world_size(),
      "[pipeline] the schedule has ", pp_.schedule.graph.ranks, " stages over ",
      pp_.spec.world_size(), " devices but the world ", world.size(), " ranks");
  stage_ = pp_.stage_of(world.rank());
  const StagePlan& st = stage_plan();
  local_ = world.rank() - st.first_rank;
  split_ = pp_.schedule.split_backward;
  if (st.sharded) {  // the stage's own communicator and mesh (collective over the stage)
    std::vector<int> ranks(size_t(st.size()));
    for (int r = 0; r < st.size(); ++r) ranks[size_t(r)] = st.first_rank + r;
    stage_world_ = world.split(ranks);
    rc_ = std::make_unique<shard::RankComm>(st.strategy.mesh, *stage_world_, timeout);
  }
  holders_.resize(plan.infos.size());
  for (int c = 0; c < int(pp_.chunks.size()); ++c)
    for (size_t i : nn::chunk_params(plan.cfg, pp_.chunks[size_t(c)])) {
      auto& h = holders_[i];
      if (std::find(h.begin(), h.end(), rank_of_chunk(c)) == h.end()) h.push_back(rank_of_chunk(c));
      if (rank_of_chunk(c) == stage_) ids_.push_back(i);
    }
  for (auto& h : holders_) {
    HP_CHECK(!h.empty(), "[pipeline] a parameter no chunk reads");
    std::sort(h.begin(), h.end());
    owner_.push_back(h.front());
  }
  std::sort(ids_.begin(), ids_.end());
  ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
}

StageRunner::~StageRunner() = default;

int StageRunner::rank_of_chunk(int c) const {
  return pp_.schedule.graph.rank_of[size_t(c)];
}

void StageRunner::bind_params(const std::vector<Tensor>& params) {
  HP_CHECK(params.size() == ids_.size(), "[pipeline] ", params.size(), " parameters for ",
           ids_.size());
  params_ = params;
  programs_.clear();
}

StageRunner::Programs& StageRunner::programs(int chunk, int64_t rows, bool train) {
  auto& slot = programs_[{chunk, rows, train}];
  if (slot) return *slot;
  const nn::Chunk& k = pp_.chunks[size_t(chunk)];
  const StagePlan& st = stage_plan();
  auto P = std::make_unique<Programs>();
  nn::TraceOptions to;
  to.logical_qkv = st.sharded;
  P->traced = nn::trace_chunk(plan_.cfg, rows, plan_.seq, k, train || k.head, to);
  std::vector<ir::ValueId> outs{k.head || train ? P->traced.loss.id : P->traced.x_out.id};
  // Where a stage of several devices delivers them: the loss replicated, each gradient in its
  // parameter's layout but partial over the data axes (summed once per step, reduce_grads),
  // activations and their gradients in the boundary layout.
  std::vector<shard::Layout> layouts{k.head || train ? shard::Layout::replicated(0) : st.boundary};
  if (train) {
    std::vector<ir::Var> wrt = P->traced.params;
    if (!k.embed) wrt.push_back(P->traced.x_in);
    P->grads = autodiff::grad(P->traced.loss, wrt);
    for (const ir::Var& g : P->grads) outs.push_back(g.id);
    for (size_t j = 0; j < P->traced.params.size(); ++j)
      layouts.push_back(st.grad_layout(P->traced.param_index[j]));
    if (!k.embed) layouts.push_back(st.boundary);
    if (!k.head) {  // F's output, sent on in the boundary layout
      outs.push_back(P->traced.x_out.id);
      layouts.push_back(st.boundary);
    }
  }
  // The program's graph: the chunk's step itself on one device, lowered for this rank on several.
  const ir::Graph* step = P->traced.graph.get();
  if (st.sharded) {
    P->prop = propagate_chunk(st, P->traced, outs, layouts, pp_.topo);
    // What F and B hand over (the loss or x_out, x_in's gradient) is reduced on its own: in a
    // bucket it would wait for gradients a later part computes.
    shard::LowerOptions lo = plan_.lower;
    lo.unbucketed = {outs.front()};
    if (train && !k.embed) lo.unbucketed.push_back(P->grads.back().id);
    if (train && !k.head) lo.unbucketed.push_back(P->traced.x_out.id);
    P->lowered = shard::lower(*P->traced.graph, P->prop, local_, lo);
    P->outs = P->lowered.outputs;
    step = P->lowered.graph.get();
  } else {
    P->outs = std::move(outs);
  }
  runtime::CommRunner* comm = st.sharded ? &rc_->runner(P->lowered.plans) : nullptr;
  // The parameter tensor a value of the step stands for, or null.
  auto param_of = [&](ir::ValueId v) -> const Tensor* {
    for (size_t j = 0; j < P->traced.params.size(); ++j)
      if (P->local(P->traced.params[j].id) == v) {
        const auto it = std::lower_bound(ids_.begin(), ids_.end(), P->traced.param_index[j]);
        return &params_[size_t(it - ids_.begin())];
      }
    return nullptr;
  };
  if (train) {  // F: x_out (the head: its loss); B: x_in's gradient; W: the parameters'
    std::vector<ir::ValueId> f{k.head ? P->loss() : P->x_out()}, b, w;
    if (!k.embed) b.push_back(P->x_in_grad());
    for (size_t j = 0; j < P->traced.params.size(); ++j) w.push_back(P->grad(j));
    if (!split_) b.insert(b.end(), w.begin(), w.end());
    P->parts = ir::split_graph(*step, split_ ? std::vector{f, b, w} : std::vector{f, b});
    for (const ir::GraphPart& part : P->parts) {
      std::vector<ir::ValueId> outs;
      for (const auto& o : part.outputs) outs.push_back(o.second);
      P->part_programs.push_back(runtime::compile(*part.graph, outs));
    }
    for (size_t i = 0; i < P->parts.size(); ++i) {  // the programs no longer move
      P->part_ex.push_back(std::make_unique<runtime::Executor>(P->part_programs[i], device_, ctx_));
      if (comm) P->part_ex[i]->set_comm_runner(comm);
      for (const auto& [v, in] : P->parts[i].inputs)  // every part reads the same tensors
        if (const Tensor* t = param_of(v)) P->part_ex[i]->bind(in, *t);
    }
    slot = std::move(P);
    return *slot;
  }
  P->program = runtime::compile(*step, P->outs);
  P->ex = std::make_unique<runtime::Executor>(P->program, device_, ctx_);
  if (comm) P->ex->set_comm_runner(comm);
  for (ir::ValueId v : P->program.sources)
    if (const Tensor* t = param_of(v)) P->ex->bind(v, *t);
  slot = std::move(P);
  return *slot;
}

double StageRunner::broadcast_loss(double loss) {
  int64_t bits;  // the last chunk's rank computed it; the bits of a double travel as an integer
  std::memcpy(&bits, &loss, sizeof bits);
  const int head = rank_of_chunk(int(pp_.chunks.size()) - 1);  // every rank of it has the loss
  world_.broadcast(&bits, 1, DType::kI64, pp_.stages[size_t(head)].first_rank).wait(timeout_);
  std::memcpy(&loss, &bits, sizeof bits);
  return loss;
}

int StageRunner::tag(int consumer_chunk, int mb, bool grad) const {
  const int t = (mb * int(pp_.chunks.size()) + consumer_chunk) * 2 + (grad ? 1 : 0);
  HP_CHECK(t < kSharedGradTag, "[pipeline] ", pp_.chunks.size(), " chunks and ",
           pp_.schedule.microbatches, " micro-batches need more message tags than ",
           kSharedGradTag);
  return t;
}

void StageRunner::send(const Tensor& piece, int64_t rows, int peer, int tag) {
  const StagePlan& from = stage_plan();
  const StagePlan& to = pp_.stages[size_t(peer)];
  const Shape shape = boundary_shape(rows);
  const shard::Box held = shard::local_box(shape, from.boundary, from.strategy.mesh, local_);
  for (const BoundaryPart& p : boundary_parts(shape, from, from.boundary, to, to.boundary)) {
    if (p.from != world_.rank()) continue;
    Tensor part = held == p.box ? piece : extract_box(piece, held, p.box);
    sends_.emplace_back(world_.send(part.raw(), size_t(part.numel()), part.dtype(), p.to, tag),
                        part);
  }
}

Tensor StageRunner::recv(int64_t rows, int peer, int tag) {
  const StagePlan& from = pp_.stages[size_t(peer)];
  const StagePlan& to = stage_plan();
  const Shape shape = boundary_shape(rows);
  const shard::Box mine = shard::local_box(shape, to.boundary, to.strategy.mesh, local_);
  Tensor piece(mine.extent, DType::kF32);
  // Every part is posted before any is waited for: the sending ranks send in their own order.
  std::vector<std::pair<comm::Work, Tensor>> works;
  std::vector<shard::Box> boxes;
  for (const BoundaryPart& p : boundary_parts(shape, from, from.boundary, to, to.boundary)) {
    if (p.to != world_.rank()) continue;
    Tensor part = p.box == mine ? piece : Tensor(p.box.extent, DType::kF32);
    works.emplace_back(world_.recv(part.raw(), size_t(part.numel()), DType::kF32, p.from, tag),
                       part);
    boxes.push_back(p.box);
  }
  for (size_t j = 0; j < works.size(); ++j) {
    works[j].first.wait(timeout_);
    if (!(boxes[j] == mine)) insert_box(piece, mine, boxes[j], works[j].second);
  }
  return piece;
}

Tensor StageRunner::input_piece(const Tensor& t, int64_t first, int64_t n,
                                const shard::Layout& layout) const {
  Tensor rows = rows_of(t, first, n);
  const StagePlan& st = stage_plan();
  return st.sharded ? shard::local_piece(rows, layout, st.strategy.mesh, local_) : rows;
}

void StageRunner::forward(int chunk, int mb) {
  const nn::Chunk& k = pp_.chunks[size_t(chunk)];
  Flight& f = flights_[{chunk, mb}];
  const auto [first, n] = rows_[size_t(mb)];
  Programs& P = programs(chunk, n, true);
  if (k.embed) f.input = input_piece(tokens_, first, n, P.layout(P.traced.tokens.id));
  HP_CHECK(f.input.defined(), "[pipeline] forward of chunk ", chunk, " micro-batch ", mb,
           " before its input arrived");
  std::vector<Tensor> none;
  const auto outs = run_part(chunk, 0, f, mb, none);
  if (k.head) {
    loss_ += weights_[size_t(mb)] * double(outs.at(P.loss()).f32()[0]);
    return;
  }
  Tensor x = outs.at(P.x_out()).clone();
  if (rank_of_chunk(chunk + 1) == stage_)
    flights_[{chunk + 1, mb}].input = x;
  else
    outgoing_[{chunk, mb, false}] = x;
}

std::map<ir::ValueId, Tensor> StageRunner::run_part(int chunk, size_t k, Flight& f, int mb,
                                                    std::vector<Tensor>& accum) {
  const auto [first, n] = rows_[size_t(mb)];
  Programs& P = programs(chunk, n, true);
  const ir::GraphPart& part = P.parts[k];
  runtime::Executor& ex = *P.part_ex[k];
  std::vector<ir::ValueId> bound;  // this micro-batch's inputs; parameters are bound once
  for (const auto& [v, in] : part.inputs) {
    Tensor t;
    if (v == P.local(P.traced.tokens.id) || v == P.local(P.traced.x_in.id)) t = f.input;
    if (v == P.local(P.traced.g_out.id)) {
      HP_CHECK(f.g_out.defined(), "[pipeline] backward of chunk ", chunk, " micro-batch ", mb,
               " before its output's gradient arrived");
      t = f.g_out;
    }
    if (v == P.local(P.traced.targets.id))
      t = input_piece(targets_, first, n, P.layout(P.traced.targets.id));
    if (auto it = f.kept.find(v); it != f.kept.end()) t = it->second;
    if (!t.defined()) continue;
    ex.bind(in, std::move(t));
    bound.push_back(in);
  }
  if (!part.outputs.empty()) ex.run();                 // a first chunk's B has nothing to compute
  for (auto it = f.kept.begin(); it != f.kept.end();)  // what no later part reads is done with
    it = P.read_after(k, it->first) ? std::next(it) : f.kept.erase(it);
  std::map<ir::ValueId, Tensor> outs;
  std::vector<ir::ValueId> kept, taken;  // what later parts read leaves with its buffer
  for (const auto& [v, o] : part.outputs) {
    outs[v] = ex.get(o);
    if (P.read_after(k, v)) kept.push_back(v), taken.push_back(o);
  }
  const std::vector<Tensor> held = ex.take(taken);
  for (size_t i = 0; i < kept.size(); ++i) outs[kept[i]] = f.kept[kept[i]] = held[i];
  ex.unbind(bound);  // the micro-batch's values are held no longer than its flight
  // The head's loss is its micro-batch's mean: weighted into the batch's, and so are all the
  // gradients that flow from it (the other chunks' arrive weighted).
  const float scale = pp_.chunks[size_t(chunk)].head ? float(weights_[size_t(mb)]) : 1.0f;
  for (size_t j = 0; j < P.traced.params.size(); ++j)
    if (auto it = outs.find(P.grad(j)); it != outs.end())
      accumulate(P, j, it->second, scale, accum);
  return outs;
}

void StageRunner::accumulate(const Programs& P, size_t j, const Tensor& g, float scale,
                             std::vector<Tensor>& accum) {
  const auto pos =
      size_t(std::lower_bound(ids_.begin(), ids_.end(), P.traced.param_index[j]) - ids_.begin());
  runtime::default_backend().axpby(ctx_, g.numel(), 1.0f, accum[pos].f32(), scale * weight_,
                                   g.f32(), accum[pos].f32());
}

void StageRunner::backward(int chunk, int mb, std::vector<Tensor>& accum) {
  const nn::Chunk& k = pp_.chunks[size_t(chunk)];
  Flight f;  // its input and what its forward kept
  if (auto it = flights_.find({chunk, mb}); it != flights_.end()) {
    f = std::move(it->second);
    flights_.erase(it);
  }
  HP_CHECK(f.input.defined(), "[pipeline] backward of chunk ", chunk, " micro-batch ", mb,
           " before its forward");
  Programs& P = programs(chunk, rows_[size_t(mb)].second, true);
  const float scale = k.head ? float(weights_[size_t(mb)]) : 1.0f;
  const auto outs = run_part(chunk, 1, f, mb, accum);
  Tensor gin;
  if (!k.embed) gin = outs.at(P.x_in_grad()).clone();
  if (split_) flights_[{chunk, mb}] = std::move(f);  // its W reads what B kept
  if (k.embed) return;
  if (scale != 1.0f) runtime::default_backend().scale(ctx_, gin.f32(), gin.numel(), scale);
  if (rank_of_chunk(chunk - 1) == stage_)
    flights_[{chunk - 1, mb}].g_out = gin;
  else
    outgoing_[{chunk, mb, true}] = gin;
}

void StageRunner::weight_grads(int chunk, int mb, std::vector<Tensor>& accum) {
  if (!split_) return;  // B's program computed them
  auto it = flights_.find({chunk, mb});
  HP_CHECK(it != flights_.end(), "[pipeline] W of chunk ", chunk, " micro-batch ", mb,
           " before its B");
  Flight f = std::move(it->second);
  flights_.erase(it);
  run_part(chunk, 2, f, mb, accum);
}

void StageRunner::move_kept(int chunk, int mb, bool to_host) {
  auto it = flights_.find({chunk, mb});
  HP_CHECK(it != flights_.end() && copies_ != nullptr, "[pipeline] ",
           to_host ? "OFFLOAD" : "RELOAD", " of chunk ", chunk, " micro-batch ", mb,
           copies_ ? " with nothing in flight" : " without a host tier");
  const std::shared_ptr<Allocator>& to = to_host ? host_ : device_;
  std::vector<memory::Transfer> pending;
  std::vector<Tensor> sources;  // freed once every copy has landed
  for (auto& [v, t] : it->second.kept) {
    Tensor moved(t.shape(), t.dtype(), to);
    pending.push_back(copies_->copy(moved.raw(), t.raw(), t.nbytes(),
                                    to_host ? "activation offload" : "activation reload"));
    sources.push_back(std::exchange(t, std::move(moved)));
  }
  for (const memory::Transfer& x : pending) x.wait(timeout_);
}

double StageRunner::run(const Tensor& tokens, const Tensor& targets, double weight,
                        std::vector<Tensor>& accum) {
  const nn::BatchShapes shapes = nn::batch_shapes(plan_.cfg, plan_.batch, plan_.seq);
  HP_CHECK(tokens.shape() == shapes.tokens && targets.shape() == shapes.targets,
           "[pipeline] batch ", shape_str(tokens.shape()), " and targets ",
           shape_str(targets.shape()), ", the plan needs ", shape_str(shapes.tokens), " and ",
           shape_str(shapes.targets));
  tokens_ = tokens.dtype() == DType::kI64 ? tokens : tokens.to(DType::kI64);
  targets_ = targets.dtype() == DType::kI64 ? targets : targets.to(DType::kI64);
  const int m = pp_.schedule.microbatches;
  rows_.clear();
  weights_.clear();
  const double total = double(counted_targets(targets_, 0, plan_.batch));
  HP_CHECK(total > 0, "[pipeline] the batch has no counted targets");
  for (int mb = 0; mb < m; ++mb) {
    rows_.push_back(shard::split_range(plan_.batch, m, mb));
    weights_.push_back(double(counted_targets(targets_, rows_.back().first, rows_.back().second)) /
                       total);
  }
  weight_ = float(weight);
  loss_ = 0;
  timeline_.clear();
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (const mpmd::Action& a : schedule_.actions[size_t(stage_)]) {
    const double start = seconds();
    if (a.kind != mpmd::ActionKind::kOpt) timeline_.push_back({start, start, a});
    switch (a.kind) {
      case mpmd::ActionKind::kF:
        forward(a.chunk, a.microbatch);
        break;
      case mpmd::ActionKind::kB:
      case mpmd::ActionKind::kBW:
        backward(a.chunk, a.microbatch, accum);
        break;
      case mpmd::ActionKind::kW:
        weight_grads(a.chunk, a.microbatch, accum);
        break;
      case mpmd::ActionKind::kOpt:  // the trainer's, after the batch
        break;
      case mpmd::ActionKind::kOffload:
      case mpmd::ActionKind::kReload:
        move_kept(a.chunk, a.microbatch, a.kind == mpmd::ActionKind::kOffload);
        break;
      case mpmd::ActionKind::kSend: {
        auto it = outgoing_.find({a.chunk, a.microbatch, a.grad});
        HP_CHECK(it != outgoing_.end(), "[pipeline] ", a.str(), " before its data was computed");
        send(it->second, rows_[size_t(a.microbatch)].second, a.peer,
             tag(a.peer_chunk, a.microbatch, a.grad));
        outgoing_.erase(it);
        break;
      }
      case mpmd::ActionKind::kRecv: {
        Tensor t =
            recv(rows_[size_t(a.microbatch)].second, a.peer, tag(a.chunk, a.microbatch, a.grad));
        Flight& f = flights_[{a.chunk, a.microbatch}];
        (a.grad ? f.g_out : f.input) = std::move(t);
        break;
      }
    }
    if (!timeline_.empty() && timeline_.back().start == start) timeline_.back().end = seconds();
  }
  for (auto& [w, buf] : sends_) w.wait(timeout_);
  sends_.clear();
  HP_CHECK(flights_.empty() && outgoing_.empty(), "[pipeline] the schedule left ", flights_.size(),
           " micro-batches in flight");
  return broadcast_loss(loss_);
}

void StageRunner::reduce_grads(std::vector<Tensor>& accum) {
  const StagePlan& st = stage_plan();
  if (!st.sharded) return;
  // Each group of partial axes: its gradients packed into one buffer, all-reduced, unpacked.
  std::map<std::vector<std::string>, std::vector<size_t>> groups;
  for (size_t k = 0; k < ids_.size(); ++k) {
    const shard::Layout l = st.grad_layout(ids_[k]);
    if (l.partial.empty()) continue;
    std::vector<std::string> axes;  // mesh order
    for (const auto& a : st.strategy.mesh.axis_names())
      if (l.is_partial(a)) axes.push_back(a);
    groups[axes].push_back(k);
  }
  for (const auto& [axes, ks] : groups) {
    size_t n = 0;
    for (size_t k : ks) n += size_t(accum[k].numel());
    std::vector<float> buf(n);
    size_t at = 0;
    for (size_t k : ks) {
      std::memcpy(buf.data() + at, accum[k].raw(), accum[k].nbytes());
      at += size_t(accum[k].numel());
    }
    rc_->group(axes)
        .all_reduce(buf.data(), buf.data(), n, DType::kF32, comm::ReduceOp::kSum)
        .wait(timeout_);
    at = 0;
    for (size_t k : ks) {
      std::memcpy(accum[k].raw(), buf.data() + at, accum[k].nbytes());
      at += size_t(accum[k].numel());
    }
  }
}

StageRunner::DeviceNeeds StageRunner::prepare_device() {
  const int m = pp_.schedule.microbatches, C = int(pp_.chunks.size());
  DeviceNeeds out;
  out.act.assign(size_t(C), 0.0);
  out.w.assign(size_t(C), 0.0);
  std::set<int64_t> rows;
  for (int mb = 0; mb < m; ++mb) rows.insert(shard::split_range(plan_.batch, m, mb).second);
  for (int c = 0; c < C; ++c) {
    if (rank_of_chunk(c) != stage_) continue;
    for (int64_t n : rows) {
      Programs& P = programs(c, n, true);
      for (const runtime::Program& prog : P.part_programs)
        out.scratch = std::max(out.scratch, runtime::scratch_bytes(prog, ctx_.threads));
      if (n != *rows.rbegin()) continue;
      // After part k: what later parts read of the values parts 0..k computed.
      auto kept_after = [&](size_t k) {
        double bytes = 0;
        for (size_t j = 0; j <= k; ++j)
          for (const auto& [v, o] : P.parts[j].outputs)
            if (P.read_after(k, v)) {
              const ir::TensorType& t = P.parts[j].graph->value(o).type;
              bytes += double(byte_count(t.shape, dtype_size(t.dtype)));
            }
        return bytes;
      };
      out.act[size_t(c)] = kept_after(0);
      if (split_) out.w[size_t(c)] = kept_after(1);
    }
    Programs& E = programs(c, plan_.batch, false);  // eval's forward over the whole batch
    out.scratch = std::max(out.scratch, runtime::scratch_bytes(E.program, ctx_.threads));
  }
  return out;
}

double StageRunner::eval(const Tensor& tokens, const Tensor& targets) {
  const Tensor tok = tokens.dtype() == DType::kI64 ? tokens : tokens.to(DType::kI64);
  const Tensor tgt = targets.dtype() == DType::kI64 ? targets : targets.to(DType::kI64);
  const int64_t B = tok.shape()[0];
  const int me = stage_, C = int(pp_.chunks.size());
  double loss = 0;
  Tensor x;
  for (int c = 0; c < C; ++c) {
    if (rank_of_chunk(c) != me) continue;
    const nn::Chunk& k = pp_.chunks[size_t(c)];
    if (!k.embed && !x.defined()) x = recv(B, rank_of_chunk(c - 1), tag(c, 0, false));
    Programs& P = programs(c, B, false);
    P.ex->bind(P.local(k.embed ? P.traced.tokens.id : P.traced.x_in.id),
               k.embed ? input_piece(tok, 0, B, P.layout(P.traced.tokens.id)) : x);
    if (k.head)
      P.ex->bind(P.local(P.traced.targets.id),
                 input_piece(tgt, 0, B, P.layout(P.traced.targets.id)));
    P.ex->run();
    if (k.head) {
      loss = double(P.ex->get(P.outs[0]).f32()[0]);
      break;
    }
    x = P.ex->get(P.outs[0]).clone();
    if (rank_of_chunk(c + 1) != me) {
      send(x, B, rank_of_chunk(c + 1), tag(c + 1, 0, false));
      x = Tensor();
    }
  }
  for (auto& [w, buf] : sends_) w.wait(timeout_);
  sends_.clear();
  return broadcast_loss(loss);
}

void StageRunner::offload_activations(mpmd::Schedule s, std::shared_ptr<Allocator> host,
                                      memory::TransferEngine& copies) {
  schedule_ = std::move(s);
  host_ = std::move(host);
  copies_ = &copies;
}

bool StageRunner::reorder(const mpmd::CostModel& costs) {
  if (copies_) return false;  // the moves are planned for this order
  mpmd::Schedule s = mpmd::schedule_at_costs(pp_.spec.schedule, pp_.schedule.graph,
                                             pp_.schedule.microbatches, costs);
  if (s.split_backward != schedule_.split_backward ||
      mpmd::simulate(s, costs).step_time >= mpmd::simulate(schedule_, costs).step_time)
    return false;
  mpmd::verify(s);  // throws, with the trace that breaks
  schedule_ = std::move(s);
  return true;
}

std::vector<mpmd::ChunkCost> StageRunner::measured_costs() {
  const int C = int(pp_.chunks.size());
  HP_CHECK(!timeline_.empty() || world_.size() == 1,
           "[pipeline] measured_costs: no step has run on rank ", world_.rank());
  // Per chunk: F, B (or BW) and W seconds summed over the step's micro-batches, and their count.
  std::vector<double> sum(size_t(3 * C), 0.0), count(size_t(3 * C), 0.0);
  for (const mpmd::Interval& iv : timeline_) {
    if (!mpmd::is_compute(iv.action.kind) || mpmd::is_move(iv.action.kind)) continue;
    const int part = iv.action.kind == mpmd::ActionKind::kF   ? 0
                     : iv.action.kind == mpmd::ActionKind::kW ? 2
                                                              : 1;
    sum[size_t(3 * iv.action.chunk + part)] += iv.end - iv.start;
    count[size_t(3 * iv.action.chunk + part)] += 1;
  }
  // Each chunk's means come from the first rank of the stage holding it: summed over ranks in
  // nanoseconds.
  std::vector<int64_t> ns(sum.size());
  for (size_t i = 0; i < sum.size(); ++i)
    ns[i] = count[i] > 0 && local_ == 0 ? int64_t(1e9 * sum[i] / count[i]) : 0;
  world_.all_reduce(ns.data(), ns.data(), ns.size(), DType::kI64, comm::ReduceOp::kSum)
      .wait(timeout_);
  std::vector<mpmd::ChunkCost> out;
  for (int c = 0; c < C; ++c)
    out.push_back({.f = 1e-9 * double(ns[size_t(3 * c)]),
                   .b = 1e-9 * double(ns[size_t(3 * c + 1)]),
                   .w = 1e-9 * double(ns[size_t(3 * c + 2)])});
  return out;
}

double StageRunner::flops_per_batch() {
  double f = 0;
  const int m = pp_.schedule.microbatches;
  for (int c = 0; c < int(pp_.chunks.size()); ++c) {
    if (rank_of_chunk(c) != stage_) continue;
    for (int mb = 0; mb < m; ++mb) {
      const int64_t n = shard::split_range(plan_.batch, m, mb).second;
      const Programs& P = programs(c, n, true);
      f += P.program.flops;
      for (const runtime::Program& part : P.part_programs) f += part.flops;
    }
  }
  return f;
}

}  // namespace hp::train
