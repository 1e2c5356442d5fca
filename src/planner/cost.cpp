// The closed-form cost model of one configuration (docs/planner.md gives the formulas and their
// sources): one block costed per token, times the blocks of the busiest stage.
#include "hp/planner/cost.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "hp/core/error.hpp"
#include "hp/mpmd/schedule.hpp"
#include "hp/mpmd/simulate.hpp"

namespace hp::planner {

namespace {

constexpr double kFp32 = 4;

// Parameters of the busiest stage (its blocks, one vocabulary table, positions and the final
// norm: the first and last stages hold about as much), before tp.
double stage_params(const io::ModelConfig& m, const BlockCost& bc, int64_t blocks) {
  const bool gpt = m.arch == io::Architecture::kGpt2;
  const double h = double(m.d_model);
  return double(blocks) * bc.params + double(m.vocab) * h +
         (gpt ? double(m.max_seq) * h + 2 * h : h);
}

// Parameter tensors of the busiest stage, counted as stage_params counts elements.
double stage_tensors(const io::ModelConfig& m, const BlockCost& bc, int64_t blocks) {
  const bool gpt = m.arch == io::Architecture::kGpt2;
  return double(blocks) * bc.tensors + (gpt ? 4 : 2);
}

}  // namespace

int64_t stage_blocks(const io::ModelConfig& m, int64_t pp) {
  return (m.n_layer + pp - 1) / pp;
}

int64_t full_blocks(const Config& c, int64_t blocks) {
  if (c.recompute != Recompute::kFull) return 0;
  return c.recompute_blocks > 0 ? std::min(c.recompute_blocks, blocks) : blocks;
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::kNone:
      return "none";
    case Schedule::kGpipe:
      return "gpipe";
    case Schedule::k1F1B:
      return "1f1b";
    case Schedule::kInterleaved:
      return "interleaved";
    case Schedule::kZbH1:
      return "zb-h1";
    case Schedule::kZbV:
      return "zbv";
  }
  return "?";
}

const char* recompute_name(Recompute r) {
  return r == Recompute::kNone ? "none" : r == Recompute::kSelective ? "selective" : "full";
}

const char* zero_name(Zero z) {
  return z == Zero::kNone ? "none" : z == Zero::kOptimizer ? "optimizer" : "full";
}

Schedule parse_schedule(const std::string& s) {
  for (Schedule k :
       {Schedule::kGpipe, Schedule::k1F1B, Schedule::kInterleaved, Schedule::kZbH1, Schedule::kZbV})
    if (s == schedule_name(k)) return k;
  throw Error("[planner] unknown schedule '" + s + "' (gpipe, 1f1b, interleaved, zb-h1, zbv)");
}

Recompute parse_recompute(const std::string& s) {
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull})
    if (s == recompute_name(r)) return r;
  throw Error("[planner] unknown recompute '" + s + "' (none, selective, full)");
}

int64_t Config::stride(char axis) const {
  int64_t s = 1;
  for (size_t i = order.size(); i-- > 0 && order[i] != axis;)
    s *= order[i] == 'd' ? dp : order[i] == 'p' ? pp : tp;
  return s;
}

std::string Config::strategy() const {
  std::string out;
  for (char a : order) {
    const int64_t n = a == 'd' ? dp : a == 'p' ? pp : tp;
    if (n == 1) continue;
    if (!out.empty()) out += "x";
    out += (a == 'd'   ? (zero == Zero::kFull ? "fsdp" : "dp")
            : a == 'p' ? "pp"
                       : "tp") +
           std::to_string(n);
    if (a == 't' && sp) out += "+sp";
  }
  return out.empty() ? "dp1" : out;
}

BlockCost block_cost(const io::ModelConfig& m, int64_t seq, double element_bytes) {
  const double elem = element_bytes;  // bytes of an activation element
  const double h = double(m.d_model), f = double(m.d_ff);
  const double q = double(m.n_head * m.head_dim), kv = double(m.n_kv_head * m.head_dim);
  const bool gpt = m.arch == io::Architecture::kGpt2;
  const double matrices = h * q + 2 * h * kv + q * h + (gpt ? 2 : 3) * h * f;
  BlockCost b;
  b.matrices = {{{h, q + 2 * kv}, {q, h}, {h, (gpt ? 1 : 2) * f}, {f, h}}};
  b.gemm_flops = 2 * matrices;
  b.attn_flops = 4 * double(seq) * q;  // QK^T and AV, the full square as Megatron counts it
  b.params = matrices + (gpt ? (q + 2 * kv + h + f + h) + 4 * h : 2 * h);
  b.tensors = gpt ? 12 : 9;
  // Korthikanti et al. 2022, generalised to GQA and SwiGLU: Q, K, V, the output projection's
  // input and the MLP's inner activations are split by tp; norms' inputs, the blocks' inputs and
  // dropout masks (1 byte, GPT only) are not.
  b.act_split = elem * (2 * q + 2 * kv) + elem * (gpt ? 2 : 3) * f;
  b.act_whole = elem * 4 * h + (gpt ? 2 * h : 0);
  // Two norms (read, write: 4h), two residual adds (6h), GPT's two dropouts (6h with masks);
  // GELU reads and writes f, SwiGLU reads gate and up and writes f, RoPE rewrites q and k.
  b.elementwise_whole = elem * (gpt ? 16 * h : 10 * h);
  b.elementwise_split = elem * (gpt ? 2 * f : 3 * f + 2 * (q + kv));
  const double mask = gpt ? 0.5 : 0;  // GPT's attention dropout, a 1-byte mask per score
  b.score_bytes_f = elem * (gpt ? 6 + mask : 4);
  b.score_bytes_b = elem * (gpt ? 9 + mask : 7);
  return b;
}

double embedding_params(const io::ModelConfig& m) {
  const bool gpt = m.arch == io::Architecture::kGpt2;
  const double h = double(m.d_model), table = double(m.vocab) * h;
  return table * (m.tied_embeddings ? 1 : 2) + (gpt ? double(m.max_seq) * h + 2 * h : h);
}

double model_flops(const Workload& w) {
  const BlockCost b = block_cost(w.model, w.seq);
  const double tokens = double(w.global_batch) * double(w.seq);
  const double params = double(w.model.n_layer) * b.params + embedding_params(w.model);
  return tokens * (6 * params + 3 * double(w.model.n_layer) * b.attn_flops);
}

double block_gemm_s(const BlockCost& bc, double tokens, double tp, double peak,
                    const Efficiency& eff) {
  if (eff.gemm_shapes.empty()) return tokens * bc.gemm_flops / tp / (peak * eff.gemm);
  double s = 0;
  for (size_t i = 0; i < bc.matrices.size(); ++i) {
    const auto [k, n] = bc.matrices[i];
    const bool row = i % 2 == 1;  // the output projection and MLP out: row-parallel
    s += 2 * tokens * k * n / tp /
         (peak * eff.gemm_share(tokens, row ? k / tp : k, row ? n : n / tp));
  }
  return s;
}

double fit_block_efficiency(Cluster& cl, const io::ModelConfig& m, double tokens, int64_t seq,
                            const BlockTiming& t) {
  HP_CHECK(cl.efficiency.has_value() && t.s > 0 && t.gemm > 0 && t.attention > 0 && t.whole > 0 &&
               t.gemm + t.attention + t.whole < 1,
           "[planner] fit_block_efficiency: a block of ", t.s, " s, ", t.gemm, " GEMMs, ",
           t.attention, " attention, ", t.whole, " on the model's width");
  Efficiency& e = *cl.efficiency;
  const BlockCost bc = block_cost(m, seq, cl.element_bytes);
  const double scale = 3 * block_gemm_s(bc, tokens, 1, cl.peak_flops, e) / (t.s * t.gemm);
  e.gemm = std::min(1.0, e.gemm * scale);
  for (GemmShape& g : e.gemm_shapes) g.share = std::min(1.0, g.share * scale);
  // Forward, backward (twice the forward) and the backward's recomputation of the scores.
  e.attention = std::min(1.0, 4 * tokens * bc.attn_flops / (cl.peak_flops * t.s * t.attention));
  const double rest = t.s * (1 - t.gemm - t.attention - t.whole);
  e.memory = std::min(kMaxMemoryShare,
                      3 * tokens * bc.elementwise_whole / (t.s * t.whole) / cl.memory_bandwidth);
  e.memory_split =
      std::min(kMaxMemoryShare, 3 * tokens * bc.elementwise_split / rest / cl.memory_bandwidth);
  return scale;
}

double block_row_ratio(const Cluster& cl, const io::ModelConfig& m, int64_t seq, double gemm,
                       int64_t rows, int64_t ref_rows) {
  HP_CHECK(cl.efficiency.has_value() && gemm >= 0 && gemm <= 1 && rows > 0 && ref_rows > 0,
           "[planner] block_row_ratio: GEMM share ", gemm, ", rows ", rows, " and ", ref_rows);
  const BlockCost bc = block_cost(m, seq, cl.element_bytes);
  const auto per_row = [&](int64_t r) {
    return block_gemm_s(bc, double(r * seq), 1, cl.peak_flops, *cl.efficiency) / double(r);
  };
  return gemm * per_row(rows) / per_row(ref_rows) + (1 - gemm);
}

double all_reduce_s(const Cluster& c, int64_t n, int64_t stride, double bytes, double net_eff) {
  return 2 * all_gather_s(c, n, stride, bytes, net_eff);
}

double all_gather_s(const Cluster& c, int64_t n, int64_t stride, double bytes, double net_eff) {
  double t = 0, inner = 1;  // members joined by the tiers inside
  for (const Tier& tier : c.tiers) {
    if (inner >= double(n)) break;
    const double k =
        tier.devices == 0
            ? double(n)
            : std::clamp(double(tier.devices / std::max<int64_t>(stride, 1)), 1.0, double(n));
    if (k <= inner) continue;
    const double f = k / inner;  // ring members at this tier
    t += (f - 1) / f * (bytes / inner) / (tier.bandwidth * net_eff) + (f - 1) * tier.latency;
    inner = k;
  }
  return t;
}

const Tier& p2p_tier(const Cluster& c, int64_t n, int64_t stride) {
  return c.tier_for_span(n * stride);
}

double bubble_microbatches(Schedule s, int64_t p, int64_t v) {
  const double gap = double(p - 1);
  switch (s) {
    case Schedule::kNone:
      return 0;
    case Schedule::kGpipe:
    case Schedule::k1F1B:
      return gap;
    case Schedule::kInterleaved:
      return gap / double(v);
    case Schedule::kZbH1:
      return gap / 3;
    case Schedule::kZbV:
      return gap / 6;
  }
  return gap;
}

double simulated_bubble_microbatches(Schedule s, int64_t p, int64_t v, int64_t m) {
  const double closed = bubble_microbatches(s, p, v);
  if (s == Schedule::kNone || p < 2 || p * v * m > kSimulatedChunkSteps) return closed;
  static std::mutex mu;
  static std::map<std::tuple<Schedule, int64_t, int64_t, int64_t>, double> cache;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(s, p, v, m);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const mpmd::ScheduleKind kind = mpmd::parse_schedule_kind(schedule_name(s));
  const mpmd::Schedule sched = mpmd::make_schedule(kind, int(p), int(m), int(v));
  mpmd::CostModel costs = mpmd::CostModel::uniform(sched.graph);
  costs.chunks[0].b = 0, costs.chunks[0].w = 2;
  const double per_mb = 3 * double(sched.graph.chunks() / p);  // a rank's chunks, F + B + W
  const double sim = (mpmd::simulate(sched, costs).step_time - double(m) * per_mb) / per_mb;
  return cache[key] = std::max(sim, closed);
}

double inflight_microbatches(Schedule s, int64_t p, int64_t m, int64_t v) {
  switch (s) {
    case Schedule::kNone:
      return 1;
    case Schedule::kGpipe:
      return double(m);
    case Schedule::kInterleaved:
      return std::min(double(m), double(p) * (1 + double(p - 1) / double(p * v)));
    default:
      return double(std::min(p, m));
  }
}

bool admissible(const Workload& w, const Config& c, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  std::string sorted = c.order;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != "dpt") return no("mesh order '" + c.order + "' is not a permutation of d, p, t");
  if (c.dp < 1 || c.tp < 1 || c.pp < 1 || c.micro_batch < 1) return no("a degree below 1");
  if (w.global_batch % (c.dp * c.micro_batch) != 0)
    return no("global batch " + std::to_string(w.global_batch) + " is not a multiple of dp x " +
              "micro-batch = " + std::to_string(c.dp * c.micro_batch));
  if (w.model.n_head % c.tp != 0)
    return no("tp" + std::to_string(c.tp) + " does not divide " + std::to_string(w.model.n_head) +
              " heads");
  if (c.pp > w.model.n_layer) return no("more stages than blocks");
  if (c.sp && c.tp == 1) return no("sp needs tp > 1");
  if (c.recompute_blocks < 0 || c.recompute_blocks > stage_blocks(w.model, c.pp) ||
      (c.recompute_blocks > 0 && c.recompute != Recompute::kFull))
    return no("recompute_blocks is a count of a stage's blocks, with full recomputation");
  if (c.zero != Zero::kNone && c.dp == 1) return no("optimizer sharding needs dp > 1");
  if ((c.pp == 1) != (c.schedule == Schedule::kNone))
    return no(c.pp == 1 ? "a schedule without pp" : "pp without a schedule");
  const int64_t m = w.global_batch / (c.dp * c.micro_batch);
  if (c.schedule == Schedule::kInterleaved) {
    if (c.virtual_stages < 2 || c.pp * c.virtual_stages > w.model.n_layer)
      return no("interleaved needs v >= 2 and a block per chunk (pp x v <= blocks)");
    if (m % c.pp != 0) return no("interleaved needs the micro-batches to be a multiple of pp");
  } else if (c.schedule == Schedule::kZbV) {
    if (c.virtual_stages != 2 || 2 * c.pp > w.model.n_layer)
      return no("zbv holds 2 chunks per stage: 2 x pp must not exceed the blocks");
  } else if (c.virtual_stages != 1) {
    return no(std::string("virtual stages apply to interleaved and zbv, not ") +
              schedule_name(c.schedule));
  }
  return true;
}

namespace {

struct Activations {
  double stored = 0, working = 0;
};

// Of one micro-batch's stored activations, what stays on the device: all of them, or with
// activation offload two blocks' worth (the block whose activations are leaving and the one
// whose are arriving).
double device_stored(const Workload& w, const Config& c, const Activations& act) {
  if (!c.offload_activations) return act.stored;
  return act.stored * std::min(1.0, 2.0 / double(stage_blocks(w.model, c.pp)));
}

// Memory of the busiest stage; `act` is one micro-batch's activations of the whole stage.
Memory stage_memory(const Workload& w, const Config& c, const BlockCost& bc, double p_dev,
                    const Activations& act, double inflight, double elem) {
  Memory mem;
  const double tokens = double(c.micro_batch * w.seq);
  const double shard = c.zero == Zero::kNone ? 1 : double(c.dp);
  const bool full = c.zero == Zero::kFull;
  mem.params = elem * (full ? p_dev / double(c.dp) + 2 * bc.params / double(c.tp) : p_dev);
  mem.grads = kFp32 * (full ? p_dev / double(c.dp) : p_dev);
  // Adam m and v, and an fp32 master copy unless the parameters are fp32 already.
  const double state = (elem < kFp32 ? 3 : 2) * kFp32;
  mem.optimizer = c.offload ? 0 : state * p_dev / shard;
  const double logits = 2 * kFp32 * tokens * double(w.model.vocab) / double(c.tp);
  mem.activations = inflight * device_stored(w, c, act) + act.working + logits;
  // tp/sp gather buffers and the pipeline's send and receive buffers.
  mem.buffers = 4 * elem * tokens * double(w.model.d_model);
  return mem;
}

// Activations of one micro-batch of a stage holding `blocks` blocks, per device: fully
// recomputed blocks keep their input only, the others what backward reads (and the attention
// scores without recomputation). `working`: one block's activations while it is recomputed,
// held once whatever the micro-batches in flight.
Activations microbatch_activations(const Workload& w, const Config& c, const BlockCost& bc,
                                   int64_t blocks, double elem, bool scores_in_memory) {
  const double tokens = double(c.micro_batch * w.seq), t = double(c.tp);
  const double whole = bc.act_whole / (c.sp ? t : 1), split = bc.act_split / t;
  const double scores =  // softmax, dropout
      scores_in_memory ? 5 * double(w.model.n_head) * double(w.seq) / t : 0;
  const double kept = whole + split + (c.recompute == Recompute::kNone ? scores : 0);
  const double full = double(full_blocks(c, blocks));
  const double input = elem * double(w.model.d_model) / (c.sp ? t : 1);
  return {tokens * (full * input + (double(blocks) - full) * kept), full > 0 ? tokens * kept : 0};
}

}  // namespace

double device_params(const io::ModelConfig& m, int64_t tp, int64_t pp) {
  return stage_params(m, block_cost(m, 1), stage_blocks(m, pp)) / double(tp);
}

Memory memory_floor(const Workload& w, const Config& c, double element_bytes,
                    bool scores_in_memory) {
  const BlockCost bc = block_cost(w.model, w.seq, element_bytes);
  const int64_t blocks = stage_blocks(w.model, c.pp);
  return stage_memory(w, c, bc, stage_params(w.model, bc, blocks) / double(c.tp),
                      microbatch_activations(w, c, bc, blocks, element_bytes, scores_in_memory), 1,
                      element_bytes);
}

Estimate estimate(const Workload& w, const Cluster& cl, const Config& c, const Efficiency& eff) {
  std::string why;
  HP_CHECK(admissible(w, c, &why), "[planner] ", c.strategy(), ": ", why);
  const io::ModelConfig& m = w.model;
  const double elem = cl.element_bytes;  // bytes of an activation and parameter element
  const BlockCost bc = block_cost(m, w.seq, elem);
  const int64_t blocks = stage_blocks(m, c.pp), mb = w.global_batch / (c.dp * c.micro_batch);
  const double t = double(c.tp), tokens = double(c.micro_batch * w.seq);
  const double attn_rate = cl.peak_flops * eff.attention;
  const double mem_rate = cl.memory_bandwidth * eff.memory, h = double(m.d_model);
  const double split_rate =
      eff.memory_split > 0 ? cl.memory_bandwidth * eff.memory_split : mem_rate;
  Estimate e;
  e.microbatches = mb;
  // One block, one micro-batch, forward, per device.
  const double gemm_f = block_gemm_s(bc, tokens, t, cl.peak_flops, eff);
  const double attn_f = tokens * bc.attn_flops / t / attn_rate;
  const double elem_f = tokens * (bc.elementwise_whole / (c.sp ? t : 1) / mem_rate +
                                  bc.elementwise_split / t / split_rate);
  const double head = 3 * tokens * 2 * h * double(m.vocab) / t /
                      (cl.peak_flops * eff.gemm_share(tokens, h, double(m.vocab) / t));
  // Scores kept in memory: each of the micro-batch's heads on this device, s x s of them.
  const double scores = eff.attention_in_memory ? double(c.micro_batch) * double(m.n_head) / t *
                                                      double(w.seq) * double(w.seq)
                                                : 0;
  const double score_f = scores * bc.score_bytes_f / mem_rate,
               score_b = scores * bc.score_bytes_b / mem_rate;
  const double block_fb = 3 * (gemm_f + attn_f + elem_f) + score_f + score_b;
  // Pipeline stages run the step cut in parts (the runtime's F, B, W), at the efficiency the
  // cluster measured for them.
  const bool split = c.schedule == Schedule::kZbH1 || c.schedule == Schedule::kZbV;
  const double cut = c.pp > 1 ? (split ? eff.pipeline_split : eff.pipeline_fused) : 1;
  // Fully recomputed blocks repeat their forward; the rest recompute the attention core.
  const double full = double(full_blocks(c, blocks));
  const double stage_rc = c.recompute == Recompute::kNone
                              ? 0
                              : cut * (full * (gemm_f + attn_f + elem_f + score_f) +
                                       (double(blocks) - full) * (attn_f + score_f));
  // Exposed tp collectives: two per block forward, two backward, two more when recomputed.
  const double tp_one =
      c.tp > 1 ? all_reduce_s(cl, c.tp, c.stride('t'), tokens * h * elem, eff.network) : 0;
  // Activations are [batch, sequence, width] in this runtime: with sp, a sequence shard of a
  // micro-batch of several rows is not one contiguous piece, so each reduce-scatter and all-gather
  // also copies the whole activation through a staging buffer (shard::RankComm), read and written
  // at the memory's rate; a single row's shard is contiguous and moves in place.
  const double sp_staging =
      c.sp && c.micro_batch > 1 ? 2 * (2 * tokens * h * elem) / cl.memory_bandwidth : 0;
  const double tp_mb = (4 * double(blocks) + 2 * full) * (tp_one + sp_staging);
  double pp_mb = 0;
  if (c.pp > 1) {  // activations forward and their gradients back, per chunk, split over tp
    const Tier& tier = p2p_tier(cl, c.pp, c.stride('p'));
    pp_mb = 2 * double(c.virtual_stages) *
            (tier.latency + tokens * h * elem / t / (tier.bandwidth * eff.network));
  }
  const double p_dev = stage_params(m, bc, blocks) / t;
  const double shard = c.zero == Zero::kNone ? 1 : double(c.dp);
  const int64_t dstride = c.stride('d');
  // A runtime that issues a collective per parameter tensor pays the rings' latency per tensor:
  // what every call beyond the first adds to a gather (an all-reduce pays it twice).
  const double per_call =
      eff.per_tensor_collectives
          ? (stage_tensors(m, bc, blocks) - 1) * all_gather_s(cl, c.dp, dstride, 0, eff.network)
          : 0;
  double fsdp_mb = 0;  // ZeRO-3 gathers the stage's parameters per micro-batch, overlapped
  if (c.zero == Zero::kFull) {
    const double gathers = full > 0 ? 3 : 2;
    fsdp_mb = gathers * (all_gather_s(cl, c.dp, dstride, elem * p_dev, eff.network) + per_call);
  }
  const double compute_mb = cut * (double(blocks) * block_fb + head);
  const double fsdp_exposed = eff.overlap ? std::max(0.0, fsdp_mb - compute_mb) : fsdp_mb;
  const Activations act = microbatch_activations(w, c, bc, blocks, elem, eff.attention_in_memory);
  // Offloaded activations go down after each block's forward and come back before its
  // backward, on the host link while the micro-batch computes.
  const double act_link = c.offload_activations ? 2 * (act.stored - device_stored(w, c, act)) /
                                                      (cl.host_bandwidth * eff.network)
                                                : 0;
  const double act_exposed =
      eff.overlap ? std::max(0.0, act_link - (compute_mb + stage_rc)) : act_link;
  const double core_mb = compute_mb + stage_rc + tp_mb + pp_mb + act_exposed;
  e.compute_s = double(mb) * compute_mb;
  e.recompute_s = double(mb) * stage_rc;
  e.tp_s = double(mb) * tp_mb;
  e.pp_s = double(mb) * pp_mb;
  e.act_offload_s = double(mb) * act_exposed;
  e.bubble_s = simulated_bubble_microbatches(c.schedule, c.pp, c.virtual_stages, mb) *
               (core_mb + fsdp_exposed);
  if (c.dp > 1) {  // once per step, after the last backward: reduce-scatter (+ all-gather)
    const double rs = all_gather_s(cl, c.dp, dstride, kFp32 * p_dev, eff.network) + per_call;
    e.dp_s = c.zero == Zero::kNone ? 2 * rs
             : c.zero == Zero::kOptimizer
                 ? rs + all_gather_s(cl, c.dp, dstride, elem * p_dev, eff.network) + per_call
                 : rs + double(mb) * fsdp_exposed;
  }
  const double p_opt = p_dev / shard;
  if (c.offload)  // fp32 gradients down, bf16 parameters up, in both directions at once
    e.offload_s = kFp32 * p_opt / (cl.host_bandwidth * eff.network);
  else  // Adam reads and writes the fp32 master, m and v, reads the gradient, writes bf16; the
    // clipping norm reads the gradient once more. At the optimizer's own measured share, else the
    // element-wise one but no share above the bandwidth (the state streams from memory; an
    // element-wise share above 1 is activations served from cache).
    e.optimizer_s =
        (elem < kFp32 ? 34 : 32) * p_opt /
        (cl.memory_bandwidth * (eff.optimizer > 0 ? eff.optimizer : std::min(eff.memory, 1.0)));
  e.step_s = double(mb) * core_mb + e.bubble_s + e.dp_s + e.optimizer_s + e.offload_s;
  const double step_tokens = double(w.global_batch * w.seq);
  const double share = full / double(blocks);  // of all blocks, fully recomputed
  const double rc_flops =
      c.recompute == Recompute::kNone
          ? 0
          : share * (bc.gemm_flops + bc.attn_flops) + (1 - share) * bc.attn_flops;
  e.hardware_flops = step_tokens *
                     (double(m.n_layer) * (3 * (bc.gemm_flops + bc.attn_flops) + rc_flops) +
                      6 * h * double(m.vocab)) /
                     double(c.devices());
  e.tflops_per_device = e.hardware_flops / e.step_s / 1e12;
  e.mfu = model_flops(w) / (double(c.devices()) * cl.peak_flops * e.step_s);
  const double inflight = inflight_microbatches(c.schedule, c.pp, mb, c.virtual_stages);
  e.memory = stage_memory(w, c, bc, p_dev, act, inflight, elem);
  e.host_bytes = (c.offload ? (elem < kFp32 ? 3 : 2) * kFp32 * p_opt : 0) +
                 inflight * (act.stored - device_stored(w, c, act));
  e.fits = e.memory.total() <= eff.usable_memory * cl.memory_bytes &&
           e.host_bytes <= cl.host_memory_bytes;
  return e;
}

}  // namespace hp::planner
