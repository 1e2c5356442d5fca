// The supernode study of docs/mpmd.md: a vision-language model (a ViT encoder of about 6B
// parameters in front of a Llama-style decoder of about 19B, 1 to 6 images per sample) on 64
// devices of a cluster preset. Every uniform layout (pp stages of equal device counts, tp x dp
// inside, the 96 blocks split to balance their mean cost, 1F1B) against every placement of the
// encoder on a sub-mesh of its own in front of a decoder pipeline (tp and dp chosen per part, the
// schedule synthesised by `auto`). Per-block costs come from the planner's cost model (GEMMs at
// their efficiency, attention, element-wise work, exposed tp all-reduces, selective
// recomputation); each micro-batch's cost follows its images (mpmd::CostModel::microbatch_scale),
// and the dp member with the most work sets a group's pace.
// Usage: vlm_supernode [CLUSTER:64] [GLOBAL_BATCH] [SEED]
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "hp/core/error.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/mpmd/synth.hpp"
#include "hp/planner/cost.hpp"

using namespace hp;

namespace {

constexpr double kElem = 2;  // bf16 activations and parameters
constexpr int64_t kPatches = 1025, kImageTokens = 256, kText = 1024;

io::ModelConfig part(io::Architecture a, int64_t layers, int64_t d, int64_t heads, int64_t kv,
                     int64_t ff, int64_t seq) {
  io::ModelConfig m;
  m.arch = a, m.n_layer = layers, m.d_model = d, m.n_head = heads, m.n_kv_head = kv;
  m.head_dim = d / heads, m.d_ff = ff, m.max_seq = seq, m.vocab = 32000;
  return m;
}

struct Study {
  planner::Cluster cl;
  planner::Efficiency eff;
  io::ModelConfig enc = part(io::Architecture::kGpt2, 48, 3200, 25, 25, 12800, kPatches);
  io::ModelConfig dec = part(io::Architecture::kLlama, 48, 6144, 48, 8, 16384, 8192);
  std::vector<int64_t> images;  // per sample of the step

  // One block of `m` over one sample's `tokens` in sequences of `seq`, forward + backward with
  // selective recomputation and exposed tp all-reduces, on a group of tp `t`.
  double block_s(const io::ModelConfig& m, double tokens, int64_t seq, int64_t t) const {
    const planner::BlockCost bc = planner::block_cost(m, seq, kElem);
    const double gemm = planner::block_gemm_s(bc, tokens, double(t), cl.peak_flops, eff);
    const double attn = tokens * bc.attn_flops / double(t) / (cl.peak_flops * eff.attention);
    const double ew = tokens * (bc.elementwise_whole + bc.elementwise_split / double(t)) /
                      (cl.memory_bandwidth * eff.memory);
    const double ar =
        t > 1 ? planner::all_reduce_s(cl, t, 1, tokens * double(m.d_model) * kElem, eff.network)
              : 0;
    return 3 * (gemm + attn + ew) + attn + 4 * ar;
  }
  double enc_block(int64_t s, int64_t t) const {
    return block_s(enc, double(images[size_t(s)] * kPatches), kPatches, t);
  }
  double dec_block(int64_t s, int64_t t) const {
    const int64_t n = images[size_t(s)] * kImageTokens + kText;
    return block_s(dec, double(n), n, t);
  }
  // Model FLOPs of the step: 6 x parameters x tokens plus attention, no recomputation.
  double model_flops() const {
    double f = 0;
    for (int64_t k : images) {
      const double et = double(k * kPatches), dt = double(k * kImageTokens + kText);
      f += double(enc.n_layer) * 3 * et * planner::block_cost(enc, kPatches, kElem).gemm_flops;
      f += double(enc.n_layer) * 3 * et * planner::block_cost(enc, kPatches, kElem).attn_flops;
      const planner::BlockCost d = planner::block_cost(dec, int64_t(dt), kElem);
      f += double(dec.n_layer) * 3 * dt * (d.gemm_flops + d.attn_flops);
      f += 6 * dt * double(dec.d_model * dec.vocab);
    }
    return f;
  }
};

// A group of n = t x d devices running blocks [b0, b1) of the 96 (encoder first) on micro-batch
// `mb` of `size` samples, the samples dealt to its d members largest first to the least loaded
// (a loader that balances images across replicas): the busiest member's time.
double group_s(const Study& st, int64_t b0, int64_t b1, int64_t t, int64_t d, int64_t mb,
               int64_t size) {
  const int64_t e = std::max<int64_t>(0, std::min<int64_t>(b1, 48) - b0);
  const int64_t k = std::max<int64_t>(0, b1 - std::max<int64_t>(b0, 48));
  std::vector<double> work;
  for (int64_t j = 0; j < size; ++j) {
    const int64_t s = mb * size + j;
    work.push_back(double(e) * st.enc_block(s, t) + double(k) * st.dec_block(s, t));
  }
  std::sort(work.rbegin(), work.rend());
  std::vector<double> member(size_t(d), 0.0);
  for (double w : work) *std::min_element(member.begin(), member.end()) += w;
  return *std::max_element(member.begin(), member.end());
}

// Parameters of blocks [b0, b1) and the decoder's embeddings and head on its last stage.
double params(const Study& st, int64_t b0, int64_t b1) {
  const double pe = planner::block_cost(st.enc, kPatches, kElem).params;
  const double pd = planner::block_cost(st.dec, 2048, kElem).params;
  double p = 0;
  for (int64_t b = b0; b < b1; ++b) p += b < 48 ? pe : pd;
  if (b1 == 96) p += 2 * double(st.dec.d_model * st.dec.vocab);
  return p;
}

struct Group {
  int64_t b0, b1, t, d;
};

struct Result {
  std::string layout, schedule;
  double step = 0, mfu = 0;
  bool fits = false;
};

// Simulates a chain of groups (rank r = group r, on consecutive devices) over the step's
// micro-batches of `size` samples: `auto` when synth, else 1F1B.
Result run_chain(const Study& st, const std::vector<Group>& gs, int64_t size, bool synth) {
  const int ranks = int(gs.size());
  const int64_t m = int64_t(st.images.size()) / size;
  mpmd::ChunkGraph g = mpmd::chain_graph(ranks);
  mpmd::CostModel costs = mpmd::CostModel::uniform(g);
  costs.microbatch_scale.assign(size_t(ranks), std::vector<double>(size_t(m), 1.0));
  std::vector<int> first;
  int dev = 0;
  Result r;
  r.fits = true;
  for (int c = 0; c < ranks; ++c) {
    const Group& gr = gs[size_t(c)];
    std::vector<double> t(static_cast<size_t>(m));
    for (int64_t mb = 0; mb < m; ++mb)
      t[size_t(mb)] = group_s(st, gr.b0, gr.b1, gr.t, gr.d, mb, size);
    const double mean = std::accumulate(t.begin(), t.end(), 0.0) / double(m);
    for (int64_t mb = 0; mb < m; ++mb)
      costs.microbatch_scale[size_t(c)][size_t(mb)] = t[size_t(mb)] / mean;
    // Forward a quarter of the block's time (3 units of 3 + 1), the weight gradient another.
    mpmd::ChunkCost& k = costs.chunks[size_t(c)];
    k.f = mean / 4, k.w = mean / 4, k.b = mean / 2;
    // Activations of a micro-batch (mean tokens) kept for the backward, per device.
    double tokens_e = 0, tokens_d = 0;
    for (int64_t s = 0; s < int64_t(st.images.size()); ++s)
      tokens_e += double(st.images[size_t(s)] * kPatches),
          tokens_d += double(st.images[size_t(s)] * kImageTokens + kText);
    tokens_e *= double(size) / double(st.images.size()) / double(gr.d);
    tokens_d *= double(size) / double(st.images.size()) / double(gr.d);
    const planner::BlockCost be = planner::block_cost(st.enc, kPatches, kElem);
    const planner::BlockCost bd = planner::block_cost(st.dec, 2048, kElem);
    const int64_t e = std::max<int64_t>(0, std::min<int64_t>(gr.b1, 48) - gr.b0);
    const int64_t dd = std::max<int64_t>(0, gr.b1 - std::max<int64_t>(gr.b0, 48));
    k.act_bytes = double(e) * tokens_e * (be.act_whole + be.act_split / double(gr.t)) +
                  double(dd) * tokens_d * (bd.act_whole + bd.act_split / double(gr.t));
    // What the group sends on: decoder hidden states, the projector's image tokens, or the
    // encoder's hidden states when a uniform stage ends inside the encoder.
    k.out_bytes =
        kElem * (gr.b1 > 48    ? tokens_d * double(st.dec.d_model)
                 : gr.b1 == 48 ? tokens_e / kPatches * kImageTokens * double(st.dec.d_model)
                               : tokens_e * double(st.enc.d_model));
    // Parameters (bf16), gradients (fp32) and ZeRO-1 optimizer state per device; the rest of
    // the usable memory holds activations.
    const double p = params(st, gr.b0, gr.b1) / double(gr.t);
    const double fixed = p * (kElem + 4) + 12 * p / double(gr.d);
    costs.memory_budget.push_back(st.eff.usable_memory * st.cl.memory_bytes - fixed);
    if (costs.memory_budget.back() <= 0) r.fits = false;
    // The gradients' all-reduce over the group's dp members after the last backward.
    costs.opt.push_back(gr.d > 1 ? planner::all_reduce_s(st.cl, gr.d, gr.t, 4 * p, st.eff.network)
                                 : 0);
    first.push_back(dev);
    dev += int(gr.t * gr.d);
    char name[96];
    std::snprintf(name, sizeof name, "%s%s[%lld-%lld] tp%lld dp%lld", c ? " | " : "",
                  gr.b1 <= 48   ? "enc"
                  : gr.b0 >= 48 ? "dec"
                                : "enc+dec",
                  (long long)gr.b0, (long long)gr.b1 - 1, (long long)gr.t, (long long)gr.d);
    r.layout += name;
  }
  if (!r.fits) return r;
  std::vector<mpmd::LinkLevel> levels;
  for (const planner::Tier& tier : st.cl.tiers)
    levels.push_back(
        {tier.name, int(tier.devices), {tier.latency, tier.bandwidth * st.eff.network}});
  costs.link = mpmd::hierarchical_links(levels, first);
  mpmd::Simulation sim;
  if (synth) {
    try {
      const mpmd::SynthResult sr = mpmd::synthesise(g, int(m), costs, {.evaluations = 60});
      sim = mpmd::simulate(sr.schedule, costs);
      r.schedule = "auto";
    } catch (const Error&) {
      r.fits = false;
      return r;
    }
  } else {
    sim = mpmd::simulate(mpmd::schedule_on(mpmd::ScheduleKind::k1F1B, g, int(m)), costs);
    r.schedule = ranks > 1 ? "1f1b" : "none";
    for (int c = 0; c < ranks; ++c)
      if (sim.peak_memory[size_t(c)] > costs.memory_budget[size_t(c)]) r.fits = false;
  }
  r.step = sim.step_time;
  r.mfu = st.model_flops() / (double(dev) * st.cl.peak_flops * r.step);
  return r;
}

// The contiguous split of blocks [0, 96) into p stages that minimises the largest mean cost.
std::vector<int64_t> balance(const Study& st, int64_t p, int64_t t) {
  std::vector<double> cost(96);
  for (int64_t b = 0; b < 96; ++b)
    for (int64_t s = 0; s < int64_t(st.images.size()); ++s)
      cost[size_t(b)] += b < 48 ? st.enc_block(s, t) : st.dec_block(s, t);
  std::vector<std::vector<double>> best(size_t(p + 1), std::vector<double>(97, 1e300));
  std::vector<std::vector<int64_t>> cut(size_t(p + 1), std::vector<int64_t>(97, 0));
  best[0][0] = 0;
  for (int64_t k = 1; k <= p; ++k)
    for (int64_t j = k; j <= 96; ++j) {
      double sum = 0;
      for (int64_t i = j - 1; i >= k - 1; --i) {
        sum += cost[size_t(i)];
        const double v = std::max(best[size_t(k - 1)][size_t(i)], sum);
        if (v < best[size_t(k)][size_t(j)])
          best[size_t(k)][size_t(j)] = v, cut[size_t(k)][size_t(j)] = i;
      }
    }
  std::vector<int64_t> bounds(size_t(p + 1), 96);
  for (int64_t k = p, j = 96; k > 0; --k) bounds[size_t(k - 1)] = j = cut[size_t(k)][size_t(j)];
  return bounds;
}

void print(const char* what, const Result& r) {
  std::printf("| %s | %s | %s | %.2f | %.1f%% |\n", what, r.layout.c_str(), r.schedule.c_str(),
              r.step, 100 * r.mfu);
}

}  // namespace

int main(int argc, char** argv) try {
  Study st;
  st.cl = planner::resolve_cluster(argc > 1 ? argv[1] : "h100-dgx:64");
  const int64_t n = st.cl.devices, batch = argc > 2 ? std::stoll(argv[2]) : 256;
  std::mt19937_64 rng(argc > 3 ? std::stoull(argv[3]) : 1);
  for (int64_t s = 0; s < batch; ++s) st.images.push_back(int64_t(rng() % 6) + 1);
  std::printf(
      "%s: %lld devices; encoder %.2fB, decoder %.2fB parameters; %lld samples, %.2f "
      "images each on average\n",
      st.cl.name.c_str(), (long long)n, params(st, 0, 48) / 1e9, params(st, 48, 96) / 1e9,
      (long long)batch,
      double(std::accumulate(st.images.begin(), st.images.end(), int64_t(0))) / double(batch));
  Result uni, het;
  int64_t uni_n = 0, het_n = 0;
  for (int64_t t : {1, 2, 4, 8})
    for (int64_t p = 1; p <= 16 && t * p <= n; ++p) {
      if (n % (t * p)) continue;
      const int64_t d = n / (t * p);
      for (int64_t size = d; size <= std::min<int64_t>(batch, 4 * d); size *= 2) {
        if (batch % size) continue;
        const std::vector<int64_t> cuts = balance(st, p, t);
        std::vector<Group> gs;
        for (int64_t k = 0; k < p; ++k) gs.push_back({cuts[size_t(k)], cuts[size_t(k + 1)], t, d});
        const Result r = run_chain(st, gs, size, false);
        ++uni_n;
        if (r.fits && (uni.step == 0 || r.step < uni.step)) uni = r;
      }
    }
  // The encoder on e devices in pe stages of tp te, the decoder on the rest in p stages of tp td.
  for (int64_t e = 8; e <= n / 2; e += 8)
    for (int64_t pe : {1, 2, 4})
      for (int64_t te : {1, 2, 4, 8})
        for (int64_t td : {1, 2, 4, 8})
          for (int64_t p : {1, 2, 3, 4, 6, 8}) {
            if (e % (te * pe) || (n - e) % (td * p) || 48 % p) continue;
            const int64_t de = e / (te * pe), dd = (n - e) / (td * p);
            const int64_t size = std::lcm(de, dd);
            if (batch % size || size > batch / 2) continue;
            std::vector<Group> gs;
            for (int64_t k = 0; k < pe; ++k) gs.push_back({k * 48 / pe, (k + 1) * 48 / pe, te, de});
            for (int64_t k = 0; k < p; ++k)
              gs.push_back({48 + k * 48 / p, 48 + (k + 1) * 48 / p, td, dd});
            const Result r = run_chain(st, gs, size, true);
            ++het_n;
            if (r.fits && (het.step == 0 || r.step < het.step)) het = r;
          }
  std::printf(
      "| layout kind | best layout | schedule | step s | utilisation (MFU) "
      "|\n|---|---|---|---|---|\n");
  print("uniform SPMD / 1F1B", uni);
  print("encoder on its own sub-mesh, auto", het);
  std::printf("layouts simulated: %lld uniform, %lld heterogeneous; utilisation ratio %.3f\n",
              (long long)uni_n, (long long)het_n, het.mfu / uni.mfu);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vlm_supernode: %s\n", e.what());
  return 1;
}
