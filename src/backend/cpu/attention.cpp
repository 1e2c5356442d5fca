// Fused causal attention on the CPU: tiles of kBlock queries x kBlock keys, an online softmax in
// the forward, and a backward that recomputes probabilities from the saved log-sum-exp.
// Not general: causal only, f32, contiguous [B, T, H, Dh] inputs; no dropout, no padding mask.
#include "hp/backend/cpu/attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/attention_tiles.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {
namespace {

using detail::exp8;
using detail::hmax;
using detail::hsum;
using detail::lane_mask;
using detail::tile_mm;
using detail::TileLimits;

// Queries and keys per tile. Equal sizes put the causal diagonal inside tiles (i, i) only.
constexpr int kBlock = 64;

int64_t round8(int64_t n) {
  return (n + 7) / 8 * 8;
}

void check_shape(const char* where, const Context& ctx, const AttentionShape& s) {
  HP_CHECK(ctx.threads >= 1, "[", where, "] threads must be >= 1, got ", ctx.threads);
  HP_CHECK(s.batch >= 0 && s.seq >= 0 && s.heads >= 1 && s.kv_heads >= 1 && s.head_dim >= 1, "[",
           where, "] bad shape: B=", s.batch, " T=", s.seq, " H=", s.heads, " Hkv=", s.kv_heads,
           " Dh=", s.head_dim);
  if (s.group == 0) {
    HP_CHECK(s.heads % s.kv_heads == 0, "[", where, "] heads ", s.heads,
             " not a multiple of kv_heads ", s.kv_heads);
  } else {
    HP_CHECK(
        s.group >= 1 && s.head_offset >= 0 && (s.head_offset + s.heads - 1) / s.group < s.kv_heads,
        "[", where, "] query heads [", s.head_offset, ", ", s.head_offset + s.heads,
        ") in groups of ", s.group, " need more than the ", s.kv_heads, " kv heads given");
  }
  HP_CHECK(s.seq <= (int64_t{1} << 24) && s.head_dim <= (int64_t{1} << 16), "[", where,
           "] T or Dh too large: T=", s.seq, " Dh=", s.head_dim);
}

// Sizes shared by the forward and backward tasks.
struct Dims {
  int64_t B, T, H, Hkv, Dh, group, offset, Dhp, Tp, blocks;
  explicit Dims(const AttentionShape& s)
      : B(s.batch),
        T(s.seq),
        H(s.heads),
        Hkv(s.kv_heads),
        Dh(s.head_dim),
        group(s.group ? s.group : s.heads / s.kv_heads),
        offset(s.group ? s.head_offset : 0),
        Dhp(round8(s.head_dim)),
        Tp(round8(s.seq)),
        blocks((s.seq + kBlock - 1) / kBlock) {}
  int64_t kv_of(int64_t h) const { return (offset + h) / group; }
  // The local query heads [first, last) that read kv head kvh (empty when none does).
  int64_t first(int64_t kvh) const { return std::clamp(kvh * group - offset, int64_t{0}, H); }
  int64_t last(int64_t kvh) const { return std::clamp((kvh + 1) * group - offset, int64_t{0}, H); }
};

// dst[t, 0:Dhp] = src row t (row stride src_rs), zero-padded past Dh; rows [0, n).
void pack_rows(int64_t n, int64_t Dh, int64_t Dhp, const float* src, int64_t src_rs, float* dst) {
  for (int64_t t = 0; t < n; ++t) {
    const float* x = src + t * src_rs;
    float* y = dst + t * Dhp;
    for (int64_t d = 0; d < Dh; ++d) y[d] = x[d];
    for (int64_t d = Dh; d < Dhp; ++d) y[d] = 0.0f;
  }
}

// dst[d, t] (row stride ld) = src row t, for t in [0, n); columns [n, round8(n)) are zeroed.
void pack_transposed(int64_t n, int64_t Dh, const float* src, int64_t src_rs, float* dst,
                     int64_t ld) {
  const int64_t n8 = n / 8 * 8, d8 = Dh / 8 * 8;
  for (int64_t t = 0; t < n8; t += 8) {
    for (int64_t d = 0; d < d8; d += 8)
      detail::transpose8x8(src + t * src_rs + d, src_rs, dst + d * ld + t, ld);
    for (int64_t d = d8; d < Dh; ++d)
      for (int64_t i = 0; i < 8; ++i) dst[d * ld + t + i] = src[(t + i) * src_rs + d];
  }
  for (int64_t d = 0; d < Dh; ++d)
    for (int64_t t = n8; t < round8(n); ++t) dst[d * ld + t] = t < n ? src[t * src_rs + d] : 0.0f;
}

// ---- forward ---------------------------------------------------------------------------

struct FwdScratch {
  float* kt;  // [Dh, Tp]   keys, transposed
  float* v;   // [T, Dhp]   values, when they cannot be read in place
  float* s;   // [kBlock, kBlock] scores, then probabilities
  float* o;   // [kBlock, Dhp] unnormalised output
  float* m;   // [kBlock] running max of the scaled scores
  float* l;   // [kBlock] running sum
  static int64_t floats(const Dims& d) {
    return d.Dh * d.Tp + d.T * d.Dhp + kBlock * kBlock + kBlock * d.Dhp + 2 * kBlock;
  }
  FwdScratch(const Dims& d, float* base) {
    kt = base;
    v = kt + d.Dh * d.Tp;
    s = v + d.T * d.Dhp;
    o = s + kBlock * kBlock;
    m = o + kBlock * d.Dhp;
    l = m + kBlock;
  }
};

// One row of the online softmax over raw scores [0, cnt) of a tile row `srow`: updates the
// running max and sum of the scaled scores, turns scores into probabilities (zero past cnt, up
// to width) and returns the factor by which the earlier output accumulation must be rescaled.
float softmax_row_update(float* srow, int cnt, int width, float scale, float& m_run, float& l_run) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m256 sv = _mm256_set1_ps(scale);
  __m256 mx = _mm256_set1_ps(neg_inf);
  for (int k = 0; k < cnt; k += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(srow + k), sv);
    mx = _mm256_max_ps(mx, _mm256_blendv_ps(_mm256_set1_ps(neg_inf), x, lane_mask(cnt - k)));
  }
  const float m_new = std::max(m_run, hmax(mx));
  const __m256 mv = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  int k = 0;
  for (; k < cnt; k += 8) {
    const __m256 x = _mm256_fmsub_ps(_mm256_loadu_ps(srow + k), sv, mv);
    const __m256 p = _mm256_and_ps(exp8(x), lane_mask(cnt - k));
    sum = _mm256_add_ps(sum, p);
    _mm256_storeu_ps(srow + k, p);
  }
  for (; k < width; k += 8) _mm256_storeu_ps(srow + k, _mm256_setzero_ps());
  const float alpha = m_run == neg_inf ? 0.0f : std::exp(m_run - m_new);
  l_run = l_run * alpha + hsum(sum);
  m_run = m_new;
  return alpha;
}

// Query blocks [qb0, qb1) of head h in batch b. Keys are packed once per task, as far as the
// last block needs them; queries and (when Dh is a multiple of 8) values are read in place.
void fwd_task(const Dims& d, float scale, const float* q, const float* k, const float* v,
              float* out, float* lse, int64_t b, int64_t h, int64_t qb0, int64_t qb1,
              FwdScratch& w) {
  const int64_t kvh = d.kv_of(h);
  const int64_t rs_q = d.H * d.Dh, rs_kv = d.Hkv * d.Dh;
  const int64_t k_end = std::min(d.T, qb1 * kBlock);
  const float* kbase = k + (b * d.T * d.Hkv + kvh) * d.Dh;
  const float* vbase = v + (b * d.T * d.Hkv + kvh) * d.Dh;
  pack_transposed(k_end, d.Dh, kbase, rs_kv, w.kt, d.Tp);
  const float* vt = vbase;
  int64_t ldv = rs_kv;
  if (d.Dh != d.Dhp) {
    pack_rows(k_end, d.Dh, d.Dhp, vbase, rs_kv, w.v);
    vt = w.v;
    ldv = d.Dhp;
  }
  const int Dh = static_cast<int>(d.Dh), Dhp = static_cast<int>(d.Dhp);
  for (int64_t qb = qb0; qb < qb1; ++qb) {
    const int64_t q0 = qb * kBlock;
    const int nq = static_cast<int>(std::min<int64_t>(kBlock, d.T - q0));
    const float* qi = q + ((b * d.T + q0) * d.H + h) * d.Dh;
    for (int m = 0; m < nq; ++m) {
      w.m[m] = -std::numeric_limits<float>::infinity();
      w.l[m] = 0.0f;
    }
    for (int64_t kb = 0; kb <= qb; ++kb) {
      const int64_t k0 = kb * kBlock;
      const int nk = static_cast<int>(std::min<int64_t>(kBlock, d.T - k0));
      const int nkp = static_cast<int>(round8(nk));
      const bool diag = kb == qb;
      TileLimits s_lim, pv_lim;
      if (diag) s_lim.n_hi = pv_lim.k_hi = 0;
      tile_mm(nq, nkp, Dh, qi, rs_q, 1, w.kt + k0, d.Tp, w.s, kBlock, false, s_lim);
      for (int m = 0; m < nq; ++m) {
        const int cnt = diag ? std::min(nk, m + 1) : nk;
        const float alpha = softmax_row_update(w.s + m * kBlock, cnt, nkp, scale, w.m[m], w.l[m]);
        if (kb > 0) {
          float* orow = w.o + m * Dhp;
          const __m256 av = _mm256_set1_ps(alpha);
          for (int c = 0; c < Dhp; c += 8)
            _mm256_storeu_ps(orow + c, _mm256_mul_ps(av, _mm256_loadu_ps(orow + c)));
        }
      }
      tile_mm(nq, Dhp, nk, w.s, kBlock, 1, vt + k0 * ldv, ldv, w.o, Dhp, kb > 0, pv_lim);
    }
    float* obase = out + ((b * d.T + q0) * d.H + h) * d.Dh;
    float* lbase = lse + (b * d.H + h) * d.T + q0;
    for (int m = 0; m < nq; ++m) {
      const float inv = 1.0f / w.l[m];
      for (int64_t c = 0; c < d.Dh; ++c) obase[m * rs_q + c] = w.o[m * Dhp + c] * inv;
      lbase[m] = w.m[m] + std::log(w.l[m]);
    }
  }
}

// ---- backward --------------------------------------------------------------------------

struct BwdScratch {
  float* kt;    // [Dh, Tp] keys, transposed
  float* vt;    // [Dh, Tp] values, transposed
  float* lse;   // [T]
  float* dd;    // [T] rowsum(dout * out)
  float* p;     // [kBlock, kBlock] probabilities
  float* ds;    // [kBlock, kBlock] dP, then scale * dS
  float* rows;  // 6 x [T, Dhp]: k, q, dout, dq, dk, dv; used only when Dh % 8 != 0
  static int64_t floats(const Dims& d) {
    const int64_t padded = d.Dh == d.Dhp ? 0 : 6 * d.T * d.Dhp;
    return 2 * d.Dh * d.Tp + 2 * d.T + 2 * kBlock * kBlock + padded;
  }
  BwdScratch(const Dims& d, float* base) {
    kt = base;
    vt = kt + d.Dh * d.Tp;
    lse = vt + d.Dh * d.Tp;
    dd = lse + d.T;
    p = dd + d.T;
    ds = p + kBlock * kBlock;
    rows = ds + kBlock * kBlock;
  }
};

// P = exp(scale * S - lse) and scale * dS = scale * P * (dP - D) for keys [0, cnt) of one
// tile row; both zero up to width. Folding scale into dS makes dQ = dS K and dK = dS^T Q.
void grad_row(float* prow, float* dsrow, int cnt, int width, float scale, float lse, float dd) {
  const __m256 sv = _mm256_set1_ps(scale), lv = _mm256_set1_ps(lse), dv = _mm256_set1_ps(dd);
  int k = 0;
  for (; k < cnt; k += 8) {
    const __m256 mask = lane_mask(cnt - k);
    const __m256 p = _mm256_and_ps(exp8(_mm256_fmsub_ps(_mm256_loadu_ps(prow + k), sv, lv)), mask);
    _mm256_storeu_ps(prow + k, p);
    const __m256 g = _mm256_sub_ps(_mm256_loadu_ps(dsrow + k), dv);
    _mm256_storeu_ps(dsrow + k, _mm256_mul_ps(_mm256_mul_ps(p, sv), g));
  }
  for (; k < width; k += 8) {
    _mm256_storeu_ps(prow + k, _mm256_setzero_ps());
    _mm256_storeu_ps(dsrow + k, _mm256_setzero_ps());
  }
}

// A row-major [T, Dhp] operand: in place (strided rows of the caller's tensor) when Dh is a
// multiple of 8, else a zero-padded copy in scratch.
struct Rows {
  const float* src;  // the caller's rows (stride rs)
  int64_t rs;
  float* data;  // what the tile products read (inputs) or write (outputs only)
  int64_t ld;
};

Rows rows_view(const Dims& d, const float* src, int64_t rs, float* pad) {
  if (d.Dh == d.Dhp) return {src, rs, const_cast<float*>(src), rs};
  return {src, rs, pad, d.Dhp};
}

// Copies the padded scratch rows back to the caller's tensor; a no-op for in-place rows.
void unpad(const Dims& d, const Rows& r, float* dst) {
  if (r.data == dst) return;
  for (int64_t t = 0; t < d.T; ++t)
    for (int64_t c = 0; c < d.Dh; ++c) dst[t * r.rs + c] = r.data[t * d.Dhp + c];
}

// Gradients for query heads [h0, h1) of kv head kvh in batch b. dq is written directly; dk and
// dv (summed over the task's heads) go to dk_dst / dv_dst, rows of stride dst_rs.
void bwd_task(const Dims& d, float scale, const float* q, const float* k, const float* v,
              const float* out, const float* lse, const float* dout, float* dq, int64_t b,
              int64_t kvh, int64_t h0, int64_t h1, float* dk_dst, float* dv_dst, int64_t dst_rs,
              BwdScratch& w) {
  const int64_t T = d.T, rs_q = d.H * d.Dh, rs_kv = d.Hkv * d.Dh, pad = T * d.Dhp;
  const int Dh = static_cast<int>(d.Dh), Dhp = static_cast<int>(d.Dhp);
  const float* kbase = k + (b * T * d.Hkv + kvh) * d.Dh;
  const float* vbase = v + (b * T * d.Hkv + kvh) * d.Dh;
  pack_transposed(T, d.Dh, kbase, rs_kv, w.kt, d.Tp);
  pack_transposed(T, d.Dh, vbase, rs_kv, w.vt, d.Tp);
  const Rows kr = rows_view(d, kbase, rs_kv, w.rows);
  if (kr.data != kbase) pack_rows(T, d.Dh, d.Dhp, kbase, rs_kv, kr.data);
  const Rows dkr = rows_view(d, dk_dst, dst_rs, w.rows + 4 * pad);
  const Rows dvr = rows_view(d, dv_dst, dst_rs, w.rows + 5 * pad);
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t head_off = (b * T * d.H + h) * d.Dh;
    const Rows qr = rows_view(d, q + head_off, rs_q, w.rows + pad);
    const Rows gr = rows_view(d, dout + head_off, rs_q, w.rows + 2 * pad);
    const Rows dqr = rows_view(d, dq + head_off, rs_q, w.rows + 3 * pad);
    if (qr.data != qr.src) {
      pack_rows(T, d.Dh, d.Dhp, qr.src, rs_q, qr.data);
      pack_rows(T, d.Dh, d.Dhp, gr.src, rs_q, gr.data);
    }
    for (int64_t t = 0; t < T; ++t) {
      const float* o = out + head_off + t * rs_q;
      const float* g = dout + head_off + t * rs_q;
      __m256 acc8 = _mm256_setzero_ps();
      int c = 0;
      for (; c + 8 <= Dh; c += 8)
        acc8 = _mm256_fmadd_ps(_mm256_loadu_ps(o + c), _mm256_loadu_ps(g + c), acc8);
      float acc = hsum(acc8);
      for (; c < Dh; ++c) acc += o[c] * g[c];
      w.dd[t] = acc;
      w.lse[t] = lse[(b * d.H + h) * T + t];
    }
    for (int64_t kb = 0; kb < d.blocks; ++kb) {
      const int64_t k0 = kb * kBlock;
      const int nk = static_cast<int>(std::min<int64_t>(kBlock, T - k0));
      const int nkp = static_cast<int>(round8(nk));
      float* dk_j = dkr.data + k0 * dkr.ld;
      float* dv_j = dvr.data + k0 * dvr.ld;
      for (int64_t qb = kb; qb < d.blocks; ++qb) {
        const int64_t q0 = qb * kBlock;
        const int nq = static_cast<int>(std::min<int64_t>(kBlock, T - q0));
        const bool diag = qb == kb;
        TileLimits s_lim, kv_lim, q_lim;
        if (diag) s_lim.n_hi = kv_lim.k_lo = q_lim.k_hi = 0;
        const float* qi = qr.data + q0 * qr.ld;
        const float* gi = gr.data + q0 * gr.ld;
        tile_mm(nq, nkp, Dh, qi, qr.ld, 1, w.kt + k0, d.Tp, w.p, kBlock, false, s_lim);
        tile_mm(nq, nkp, Dh, gi, gr.ld, 1, w.vt + k0, d.Tp, w.ds, kBlock, false, s_lim);
        for (int m = 0; m < nq; ++m) {
          const int cnt = diag ? std::min(nk, m + 1) : nk;
          grad_row(w.p + m * kBlock, w.ds + m * kBlock, cnt, nkp, scale, w.lse[q0 + m],
                   w.dd[q0 + m]);
        }
        // The first contribution to a dk / dv / dq row overwrites it: no zeroing pass.
        const bool kv_acc = !(diag && h == h0);
        tile_mm(nk, Dhp, nq, w.p, 1, kBlock, gi, gr.ld, dv_j, dvr.ld, kv_acc, kv_lim);
        tile_mm(nk, Dhp, nq, w.ds, 1, kBlock, qi, qr.ld, dk_j, dkr.ld, kv_acc, kv_lim);
        tile_mm(nq, Dhp, nk, w.ds, kBlock, 1, kr.data + k0 * kr.ld, kr.ld, dqr.data + q0 * dqr.ld,
                dqr.ld, kb > 0, q_lim);
      }
    }
    unpad(d, dqr, dq + head_off);
  }
  unpad(d, dkr, dk_dst);
  unpad(d, dvr, dv_dst);
}

// The backward splits per query head (and sums per-head partials) when tasks per kv head would
// leave threads idle and heads share kv heads.
bool bwd_per_head(const Context& ctx, const Dims& d) {
  return d.group > 1 && d.B * d.Hkv < ctx.threads;
}

}  // namespace

size_t attention_fwd_scratch_bytes(const Context& ctx, const AttentionShape& s) {
  const Dims d(s);
  if (d.B == 0 || d.T == 0) return 0;
  return sizeof(float) * size_t(FwdScratch::floats(d) * ctx.threads);
}

size_t attention_bwd_scratch_bytes(const Context& ctx, const AttentionShape& s) {
  const Dims d(s);
  if (d.B == 0 || d.T == 0) return 0;
  const int64_t partial = bwd_per_head(ctx, d) ? 2 * d.B * d.H * d.T * d.Dh : 0;
  return sizeof(float) * size_t(BwdScratch::floats(d) * ctx.threads + partial);
}

void attention_fwd(const Context& ctx, const AttentionShape& s, const float* q, const float* k,
                   const float* v, float* out, float* lse) {
  check_shape("attention_fwd", ctx, s);
  const Dims d(s);
  if (d.B == 0 || d.T == 0) return;
  const int64_t per_thread = FwdScratch::floats(d);
  std::vector<float> scratch(static_cast<size_t>(per_thread * ctx.threads));
  // A task per head when heads alone balance the team (they cost the same), else per query
  // block: longer blocks first so the tail stays short.
  const int64_t heads = d.B * d.H;
  const bool whole_heads = heads % ctx.threads == 0 || heads >= 4 * ctx.threads;
  const int64_t tasks = whole_heads ? heads : heads * d.blocks;
#pragma omp parallel num_threads(ctx.threads)
  {
    FwdScratch w(d, scratch.data() + per_thread * omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < tasks; ++i) {
      const int64_t bh = i % heads;
      const int64_t qb = whole_heads ? 0 : d.blocks - 1 - i / heads;
      const int64_t qb_end = whole_heads ? d.blocks : qb + 1;
      fwd_task(d, s.scale, q, k, v, out, lse, bh / d.H, bh % d.H, qb, qb_end, w);
    }
  }
}

void attention_bwd(const Context& ctx, const AttentionShape& s, const float* q, const float* k,
                   const float* v, const float* out, const float* lse, const float* dout, float* dq,
                   float* dk, float* dv) {
  check_shape("attention_bwd", ctx, s);
  const Dims d(s);
  if (d.B == 0 || d.T == 0) return;
  const int64_t per_thread = BwdScratch::floats(d);
  std::vector<float> scratch(static_cast<size_t>(per_thread * ctx.threads));
  // One task per (b, kv head) owns its dk / dv rows. When that leaves threads idle and heads
  // share kv heads, split per query head instead and sum the per-head partials afterwards
  // (dk / dv then round differently from the one-thread run; reruns stay bitwise identical).
  const bool per_head = bwd_per_head(ctx, d);
  std::vector<float> partial;
  if (per_head) partial.resize(static_cast<size_t>(2 * d.B * d.H * d.T * d.Dh));
  const int64_t tasks = per_head ? d.B * d.H : d.B * d.Hkv;
  const int64_t rs_kv = d.Hkv * d.Dh;
#pragma omp parallel num_threads(ctx.threads)
  {
    BwdScratch w(d, scratch.data() + per_thread * omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < tasks; ++i) {
      if (per_head) {
        const int64_t b = i / d.H, h = i % d.H;
        float* pk = partial.data() + i * d.T * d.Dh;
        float* pv = pk + d.B * d.H * d.T * d.Dh;
        bwd_task(d, s.scale, q, k, v, out, lse, dout, dq, b, d.kv_of(h), h, h + 1, pk, pv, d.Dh, w);
      } else {
        const int64_t b = i / d.Hkv, kvh = i % d.Hkv;
        float* dk_dst = dk + (b * d.T * d.Hkv + kvh) * d.Dh;
        float* dv_dst = dv + (b * d.T * d.Hkv + kvh) * d.Dh;
        if (d.first(kvh) < d.last(kvh)) {
          bwd_task(d, s.scale, q, k, v, out, lse, dout, dq, b, kvh, d.first(kvh), d.last(kvh),
                   dk_dst, dv_dst, rs_kv, w);
        } else {
          for (int64_t t = 0; t < d.T; ++t) {
            std::fill_n(dk_dst + t * rs_kv, d.Dh, 0.0f);
            std::fill_n(dv_dst + t * rs_kv, d.Dh, 0.0f);
          }
        }
      }
    }
    if (per_head) {
      const float* pk_all = partial.data();
      const float* pv_all = pk_all + d.B * d.H * d.T * d.Dh;
#pragma omp for schedule(static)
      for (int64_t bt = 0; bt < d.B * d.T; ++bt) {
        const int64_t b = bt / d.T, t = bt % d.T;
        for (int64_t kvh = 0; kvh < d.Hkv; ++kvh) {
          float* yk = dk + (bt * d.Hkv + kvh) * d.Dh;
          float* yv = dv + (bt * d.Hkv + kvh) * d.Dh;
          for (int64_t c = 0; c < d.Dh; ++c) yk[c] = yv[c] = 0.0f;
          for (int64_t h = d.first(kvh); h < d.last(kvh); ++h) {
            const int64_t off = ((b * d.H + h) * d.T + t) * d.Dh;
            for (int64_t c = 0; c < d.Dh; ++c) {
              yk[c] += pk_all[off + c];
              yv[c] += pv_all[off + c];
            }
          }
        }
      }
    }
  }
}

}  // namespace hp::cpu
