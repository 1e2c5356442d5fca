// The engine: programs compiled per [B, T] shape on first use, prefill in chunks, decode steps,
// and the continuous-batching loop over requests.
#include "hp/infer/engine.hpp"

#include <algorithm>

#include "hp/nn/model.hpp"

namespace hp::infer {

struct Engine::Compiled {
  nn::InferTraced tr;
  runtime::Program prog;
  std::unique_ptr<runtime::Executor> ex;  // refers to prog: built after it, never moved
  Tensor tokens, positions, table;
};

Engine::Engine(const io::ModelConfig& cfg, const io::TensorMap& params, EngineOptions o,
               std::shared_ptr<Allocator> device)
    : cfg_(cfg),
      params_(params),
      o_(o),
      device_(device),
      pool_(
          cfg,
          o.pool_blocks > 0 ? o.pool_blocks : o.max_batch * nn::kv_max_blocks(cfg, o.block_tokens),
          o.block_tokens, device, o.kv) {
  HP_CHECK(o.prefill_chunk > 0, "[engine] prefill_chunk must be positive, got ", o.prefill_chunk);
  HP_CHECK(o.max_batch > 0, "[engine] max_batch must be positive, got ", o.max_batch);
  HP_CHECK(o.token_budget >= 0, "[engine] token_budget must be >= 0, got ", o.token_budget);
  HP_CHECK(o.threads > 0, "[engine] threads must be positive, got ", o.threads);
  if (o_.token_budget == 0) o_.token_budget = o_.prefill_chunk + o_.max_batch;
  o_.prefill_chunk = std::min(o_.prefill_chunk, cfg.max_seq);
}

Engine::~Engine() = default;

Engine::Compiled& Engine::program(int64_t batch, int64_t seq) {
  auto& slot = programs_[{batch, seq}];
  if (slot) return *slot;
  auto c = std::make_unique<Compiled>();
  c->tr = nn::trace_infer(cfg_, batch, seq, pool_.blocks(), pool_.block_tokens(), o_.kv.host_blocks,
                          o_.kv.fetch_slots, o_.kv.staging_blocks);
  c->prog = runtime::compile(*c->tr.graph, {c->tr.logits.id});
  c->ex = std::make_unique<runtime::Executor>(c->prog, device_, runtime::Context{o_.threads});
  const auto infos = nn::param_infos(cfg_);
  for (size_t i = 0; i < infos.size(); ++i)
    c->ex->bind(c->tr.params[i].id, params_.at(infos[i].name));
  c->tokens = Tensor({batch, seq}, DType::kI64, device_);
  c->positions = Tensor({batch, seq}, DType::kI64, device_);
  c->table = Tensor({batch, pool_.max_blocks()}, DType::kI64, device_);
  c->ex->bind(c->tr.tokens.id, c->tokens);
  c->ex->bind(c->tr.positions.id, c->positions);
  c->ex->bind(c->tr.block_table.id, c->table);
  c->ex->bind(c->tr.pool.id, pool_.tensor());
  if (c->tr.host_pool.defined()) c->ex->bind(c->tr.host_pool.id, pool_.host_tensor());
  if (c->tr.staging.defined()) c->ex->bind(c->tr.staging.id, pool_.staging_tensor());
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
  c.ex->run();
  for (SeqKv* s : seqs) s->length += seq;
  const Tensor& l = c.ex->get(c.tr.logits.id);
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
