// The engine: programs compiled per [B, T] shape on first use, prefill in chunks, decode steps,
// and the continuous-batching loop over requests.
#include "hp/infer/engine.hpp"

#include <algorithm>
#include <optional>

#include "hp/memory/runner.hpp"
#include "hp/nn/model.hpp"
#include "hp/shard/lower.hpp"

namespace hp::infer {

struct Engine::Compiled {
  nn::InferTraced tr;
  shard::Lowered lowered;  // on a mesh: this rank's graph, which prog refers to
  runtime::Program prog;
  std::optional<memory::OffloadPlan> plan;  // fetch: prog with its stagings' and weights' moves
  std::unique_ptr<runtime::Executor> ex;    // refers to prog (or plan): built after, never moved
  std::unique_ptr<memory::OffloadRunner> runner;  // carries the plan out on ex
  Tensor tokens, positions, table;
  ir::ValueId logits = -1;  // in prog's graph
};

namespace {

bool on_mesh(const EngineMesh& m) {
  return m.comm != nullptr;
}

// The pool [blocks, layers, 2, block_tokens, kv heads, head dim] on the mesh: a "kv_pool" rule's
// layout, else kv heads split over tp where tp divides them (attention's heads split with them).
shard::Layout pool_layout(const io::ModelConfig& cfg, const EngineMesh& m) {
  if (!on_mesh(m)) return shard::Layout::replicated(6);
  if (m.strategy.rule_for("kv_pool", false)) return m.strategy.layout_for("kv_pool", 6, false);
  shard::Layout l = shard::Layout::replicated(6);
  if (m.strategy.mesh.has_axis("tp") && cfg.n_kv_head % m.strategy.mesh.axis_size("tp") == 0)
    l.dims[4] = {"tp"};
  l.normalize();
  return l;
}

// The config whose pool shape is this rank's piece of the pool: its kv heads.
io::ModelConfig pool_config(io::ModelConfig cfg, const EngineMesh& m, const shard::Layout& l) {
  if (!on_mesh(m)) return cfg;
  cfg.n_kv_head =
      shard::local_shape(nn::kv_pool_shape(cfg, 1, 1), l, m.strategy.mesh, m.comm->rank())[4];
  return cfg;
}

// The strategy as the programs use it: the presets' kv-head fit, and only their parameter rules
// (their activation rules are written for the training step's [B, T, ...] values).
EngineMesh fitted(EngineMesh m, int64_t kv_heads) {
  if (on_mesh(m)) {
    HP_CHECK(m.strategy.mesh.size() == m.comm->mesh().size(), "[engine] the strategy's mesh ",
             m.strategy.mesh.str(), " is not the communicator's ", m.comm->mesh().str());
    shard::fit_presets_to_kv_heads(m.strategy, kv_heads);
    std::erase_if(m.strategy.rules,
                  [](const shard::Rule& r) { return r.from_preset && !r.params_only; });
  }
  return m;
}

}  // namespace

memory::PlanRequest streamed_request(const nn::InferTraced& tr, const io::ModelConfig& cfg,
                                     const std::set<std::string>& names) {
  memory::PlanRequest req;
  req.grads = req.activations = req.recompute = false;  // sources alone move
  const auto infos = nn::param_infos(cfg);
  std::set<ir::ValueId> moving;
  for (size_t i = 0; i < infos.size(); ++i)
    if (names.count(infos[i].name)) moving.insert(tr.params[i].id);
  HP_CHECK(moving.size() == names.size(), "[engine] ", names.size() - moving.size(),
           " streamed weight(s) are not parameters of the model");
  for (size_t l = 0; l < tr.staging.size(); ++l) {
    moving.insert(tr.staging[l].id);
    req.not_before.push_back({tr.staging[l].id, tr.kv_writes.at(l)});
  }
  for (size_t v = 0; v < tr.graph->values().size(); ++v)
    if (tr.graph->value(ir::ValueId(v)).kind != ir::ValueKind::kNode &&
        !moving.count(ir::ValueId(v)))
      req.fixed.push_back(ir::ValueId(v));
  return req;
}

shard::Strategy replica_strategy(const shard::Strategy& s) {
  if (!s.mesh.has_axis("dp")) return s;
  shard::Strategy r = s;
  std::vector<std::string> names;
  std::vector<int64_t> sizes;
  for (size_t a = 0; a < s.mesh.ndim(); ++a)
    if (s.mesh.axis_names()[a] != "dp") {
      names.push_back(s.mesh.axis_names()[a]);
      sizes.push_back(s.mesh.sizes()[a]);
    }
  if (names.empty()) names = {"dp"}, sizes = {1};  // pure dp: a replica is one device
  r.mesh = shard::Mesh(names, sizes);
  std::erase(r.presets, std::string("dp"));
  for (shard::Rule& rule : r.rules) {
    for (auto& d : rule.layout.dims) std::erase(d, std::string("dp"));
    std::erase(rule.layout.partial, std::string("dp"));
    rule.layout.normalize();
  }
  return r;
}

Engine::Engine(const io::ModelConfig& cfg, const io::TensorMap& params, EngineOptions o,
               std::shared_ptr<Allocator> device, EngineMesh mesh)
    : cfg_(cfg),
      mesh_(fitted(std::move(mesh), cfg.n_kv_head)),
      pool_layout_(pool_layout(cfg, mesh_)),
      params_(params),
      o_(o),
      device_(device),
      pool_(
          pool_config(cfg, mesh_, pool_layout_),
          o.pool_blocks > 0 ? o.pool_blocks : o.max_batch * nn::kv_max_blocks(cfg, o.block_tokens),
          o.block_tokens, device, o.kv) {
  HP_CHECK(o.prefill_chunk > 0, "[engine] prefill_chunk must be positive, got ", o.prefill_chunk);
  HP_CHECK(o.max_batch > 0, "[engine] max_batch must be positive, got ", o.max_batch);
  HP_CHECK(o.token_budget >= 0, "[engine] token_budget must be >= 0, got ", o.token_budget);
  HP_CHECK(o.threads > 0, "[engine] threads must be positive, got ", o.threads);
  if (o_.token_budget == 0) o_.token_budget = o_.prefill_chunk + o_.max_batch;
  o_.prefill_chunk = std::min(o_.prefill_chunk, cfg.max_seq);
  HP_CHECK(
      (o_.streaming.names.empty() && o_.kv.fetch_slots == 0) ||
          (o_.streaming.budget > 0 && o_.streaming.tiers && o_.streaming.engine && !on_mesh(mesh_)),
      "[engine] streamed weights and fetched KV blocks need a budget, a tiered pool and a "
      "transfer engine, on one device");
  if (!on_mesh(mesh_)) return;
  HP_CHECK(o_.kv.host_blocks == 0,
           "[engine] KV offload under a strategy is not supported: run on one device, or give "
           "the budget room for the whole cache");
  const shard::Mesh& m = mesh_.strategy.mesh;
  for (const auto& pi : nn::param_infos(cfg)) {
    const Shape& shape = pi.logical.empty() ? pi.shape : pi.logical;
    shard::Layout l =
        shard::logical_layout(mesh_.strategy.layout_for(pi.name, pi.shape.size()), pi.shape, shape);
    l.check(m);
    param_layouts_.push_back(l);
    const Tensor full = params.at(pi.name).to(DType::kF32).reshape(shape);
    params_[pi.name] = shard::local_piece(full, l, m, mesh_.comm->rank());
  }
}

Engine::~Engine() = default;

Engine::Compiled& Engine::program(int64_t batch, int64_t seq) {
  auto& slot = programs_[{batch, seq}];
  if (slot) return *slot;
  auto c = std::make_unique<Compiled>();
  nn::TraceOptions to;
  to.logical_qkv = on_mesh(mesh_);
  c->tr = nn::trace_infer(cfg_, batch, seq, pool_.blocks(), pool_.block_tokens(), o_.kv.host_blocks,
                          o_.kv.fetch_slots, o_.kv.staging_blocks, to);
  auto local = [&c](ir::ValueId v) { return c->lowered.graph ? c->lowered.map[size_t(v)] : v; };
  if (on_mesh(mesh_)) {
    std::map<ir::ValueId, shard::Layout> sources{{c->tr.pool.id, pool_layout_}};
    for (size_t i = 0; i < c->tr.params.size(); ++i)
      sources[c->tr.params[i].id] = param_layouts_[i];
    const shard::Propagation prop =
        shard::propagate(*c->tr.graph, {c->tr.logits.id}, {shard::Layout::replicated(2)},
                         mesh_.strategy, shard::Topology::uniform(20e9, 5e-6, "threads"), sources);
    // The programs write the pool in place: a copy moved elsewhere would lose the writes.
    for (const auto& r : prop.redistributions)
      HP_CHECK(r.value != c->tr.pool.id, "[engine] the strategy moves the KV pool at ", r.where,
               " (", r.plan.from.str(), " -> ", r.plan.to.str(),
               "): it must be read where it lies; give kv_pool the layout of the heads");
    shard::LowerOptions lo;
    lo.overlap = false;  // a decode step has nothing to overlap its few collectives with
    c->lowered = shard::lower(*c->tr.graph, prop, mesh_.comm->rank(), lo);
    c->logits = c->lowered.outputs[0];
    c->prog = runtime::compile(*c->lowered.graph, {c->logits});
  } else {
    c->logits = c->tr.logits.id;
    c->prog = runtime::compile(*c->tr.graph, {c->logits});
  }
  const Streaming& sw = o_.streaming;
  if (!sw.names.empty() || !c->tr.staging.empty()) {  // the training offload planner's
    memory::PlanRequest req = streamed_request(c->tr, cfg_, sw.names);
    req.device_budget = sw.budget;
    req.cost = sw.cost;
    c->plan = memory::plan_offload(c->prog, req);
  }
  c->ex = std::make_unique<runtime::Executor>(c->plan ? c->plan->program : c->prog, device_,
                                              runtime::Context{o_.threads});
  if (c->plan)
    c->runner =
        std::make_unique<memory::OffloadRunner>(*c->plan, *sw.tiers, *sw.engine, sw.timeout);
  if (on_mesh(mesh_)) c->ex->set_comm_runner(&mesh_.comm->runner(c->lowered.plans));
  auto bind = [&c](ir::ValueId v, const Tensor& t) {
    if (c->runner)
      c->runner->bind(v, t);
    else
      c->ex->bind(v, t);
  };
  const auto infos = nn::param_infos(cfg_);
  for (size_t i = 0; i < infos.size(); ++i)
    bind(local(c->tr.params[i].id), params_.at(infos[i].name));
  c->tokens = Tensor({batch, seq}, DType::kI64, device_);
  c->positions = Tensor({batch, seq}, DType::kI64, device_);
  c->table = Tensor({batch, pool_.max_blocks()}, DType::kI64, device_);
  bind(local(c->tr.tokens.id), c->tokens);
  bind(local(c->tr.positions.id), c->positions);
  bind(local(c->tr.block_table.id), c->table);
  bind(local(c->tr.pool.id), pool_.tensor());
  if (c->tr.host_pool.defined()) bind(local(c->tr.host_pool.id), pool_.host_tensor());
  for (size_t l = 0; l < c->tr.staging.size(); ++l)  // gathered by its prefetch
    c->runner->bind_fill(c->tr.staging[l].id, [this, l](char* dst, size_t bytes) {
      pool_.gather(int64_t(l), fill_seqs_, fill_lengths_, dst, bytes, *o_.streaming.engine);
    });
  slot = std::move(c);
  return *slot;
}

std::vector<float> Engine::run(const std::vector<SeqKv*>& seqs, std::span<const int64_t> tokens,
                               int64_t seq) {
  const int64_t B = int64_t(seqs.size());
  HP_CHECK(int64_t(tokens.size()) == B * seq, "[engine] ", tokens.size(), " tokens for ", B,
           " sequences of ", seq);
  Compiled& c = program(B, seq);
  for (SeqKv* s : seqs) pool_.reserve(*s, s->length + seq);
  int64_t *tok = c.tokens.i64(), *pos = c.positions.i64(), *table = c.table.i64();
  std::fill_n(table, c.table.numel(), -1);  // a position outside a sequence's blocks throws
  for (int64_t b = 0; b < B; ++b) {
    const SeqKv& s = *seqs[size_t(b)];
    std::copy(s.blocks.begin(), s.blocks.end(), table + b * pool_.max_blocks());
    for (int64_t t = 0; t < seq; ++t) {
      tok[b * seq + t] = tokens[size_t(b * seq + t)];
      pos[b * seq + t] = s.length + t;
    }
  }
  fill_seqs_.assign(seqs.begin(), seqs.end());
  fill_lengths_.clear();
  for (SeqKv* s : seqs) fill_lengths_.push_back(s->length + seq);  // after this run's writes
  if (c.runner)
    c.runner->run(*c.ex);
  else
    c.ex->run();
  for (SeqKv* s : seqs) s->length += seq;
  const Tensor l = c.runner ? c.runner->result(c.logits) : c.ex->get(c.logits);
  return std::vector<float>(l.f32(), l.f32() + l.numel());
}

std::vector<float> Engine::prefill(SeqKv& s, std::span<const int64_t> tokens) {
  HP_CHECK(!tokens.empty(), "[engine] prefill of no tokens");
  std::vector<float> logits;
  for (size_t off = 0; off < tokens.size();) {
    // A full chunk, else the largest power of two that fits: few program shapes, none padded.
    const int64_t left = int64_t(tokens.size() - off);
    int64_t T = o_.prefill_chunk;
    if (left < T)
      for (T = 1; T * 2 <= left;) T *= 2;
    logits = run({&s}, tokens.subspan(off, size_t(T)), T);
    off += size_t(T);
  }
  return logits;
}

std::vector<float> Engine::decode(const std::vector<SeqKv*>& seqs,
                                  std::span<const int64_t> tokens) {
  return run(seqs, tokens, 1);
}

}  // namespace hp::infer
