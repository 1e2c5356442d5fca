// CPU kernels of the KV-cache ops (src/ops/kv_cache.cpp): kv_write copies one layer's new keys
// and values into their blocks of the pool; paged_attention reads a sequence's cached keys and
// values through its block table: a decode step (few query rows per kv head) in place, block by
// block, for the whole GQA group at once; a prefill chunk by gathering them into rows and running
// two sgemm products with a causal softmax between.
#include <omp.h>
#include <algorithm>
#include <cmath>
#include <exception>
#include <memory>
#include <vector>

#include "backend/cpu/kernels/table.hpp"
#include "backend/cpu/vec_math.hpp"
#include "hp/backend/cpu/gemm.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {

namespace {

// Where one layer's keys (kind 0) and values (kind 1) of a block lie, for a sequence's block table
// row: in the pool [blocks, layers, 2, block_tokens, Hkv, Dh] for ids below its block count, else
// in the host pool (id - blocks) or, fetched, in the staging [rows, 2, block_tokens, Hkv, Dh]
// (sequence b's host blocks in table order from row b * slots). A block's slice of one layer and
// kind holds its kv heads one after another, Dh x block_tokens floats each: keys transposed (the
// element (t, h, d) at (h * Dh + d) * block_tokens + t, so that a vector holds eight positions'
// element d), values by position (at (h * block_tokens + t) * Dh + d). Only these kernels read
// or write the pool, and infer::KvPool::gather copies whole slices, so the layout is theirs
// alone.
struct PoolView {
  float* base;
  float* host = nullptr;  // the host pool or the staging; null: every block on the device
  bool fetched = false;
  int64_t blocks, layers, block_tokens, kv_heads, head_dim, max_blocks, slots = 0;

  PoolView(const Tensor& pool, const Tensor& table, const Tensor* host_t = nullptr,
           int64_t fetch_slots = 0)
      : base(const_cast<float*>(pool.f32())),  // the pool is written in place (kv_write)
        host(host_t ? const_cast<float*>(host_t->f32()) : nullptr),
        fetched(fetch_slots > 0),
        blocks(pool.shape()[0]),
        layers(pool.shape()[1]),
        block_tokens(pool.shape()[3]),
        kv_heads(pool.shape()[4]),
        head_dim(pool.shape()[5]),
        max_blocks(table.shape()[1]),
        slots(host_t ? (fetch_slots > 0 ? fetch_slots : host_t->shape()[0]) : 0) {}

  // The first float of kv head `kvh`'s part (Dh x block_tokens floats) of the (layer, kind)
  // slice of the block holding position `pos` in block table row `row` of sequence `b`; `slot`:
  // the host blocks before it in the row (fetched only). Throws when the position lies beyond the
  // table or its block outside the pool.
  float* head(const int64_t* row, int64_t b, int64_t pos, int64_t layer, int kind, int64_t kvh,
              int64_t slot = 0) const {
    HP_CHECK(pos >= 0 && pos < max_blocks * block_tokens, "position ", pos,
             " outside the block table's ", max_blocks * block_tokens, " positions");
    const int64_t blk = row[pos / block_tokens], piece = block_tokens * kv_heads * head_dim;
    const int64_t part = kvh * head_dim * block_tokens;
    if (blk >= 0 && blk < blocks) return base + ((blk * layers + layer) * 2 + kind) * piece + part;
    HP_CHECK(host && blk >= blocks && (fetched || blk - blocks < slots), "block ", blk,
             " (position ", pos, ") outside the pool's ", blocks, " blocks and ",
             fetched ? 0 : slots, " host blocks");
    if (!fetched) return host + (((blk - blocks) * layers + layer) * 2 + kind) * piece + part;
    HP_CHECK(slot < slots, "host block ", blk, " beyond the ", slots, " staged blocks");
    return host + ((b * slots + slot) * 2 + kind) * piece + part;
  }
};

void kv_write(KernelArgs& k) {
  const PoolView pool(*k.in[0], *k.in[3], k.in.size() > 5 ? k.in[5] : nullptr);
  const Shape& s = k.in[1]->shape();
  const int64_t B = s[0], T = s[1], Hkv = s[2], Dh = s[3], BT = pool.block_tokens;
  const int64_t layer = k.node.attrs.i("layer");
  const int64_t* table = k.in[3]->i64();
  const int64_t* pos = k.in[4]->i64();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t, r = pos[i] % BT;
      const int64_t* trow = table + b * pool.max_blocks;
      for (int64_t h = 0; h < Hkv; ++h) {
        const float* key = k.in[1]->f32() + (i * Hkv + h) * Dh;
        float* keys = pool.head(trow, b, pos[i], layer, 0, h);
        for (int64_t d = 0; d < Dh; ++d) keys[d * BT + r] = key[d];
        std::copy_n(k.in[2]->f32() + (i * Hkv + h) * Dh, Dh,
                    pool.head(trow, b, pos[i], layer, 1, h) + r * Dh);
      }
    }
    k.out[0]->i64()[b] = T > 0 ? pos[b * T + T - 1] + 1 : 0;
  }
}

// Copies positions [0, len) of one kv head's keys (kind 0) or values (kind 1) out of the pool
// into rows [len, Dh], one block at a time.
void gather(const PoolView& pool, const int64_t* trow, int64_t b, int64_t layer, int kind,
            int64_t kvh, int64_t len, float* rows) {
  const int64_t Dh = pool.head_dim, BT = pool.block_tokens;
  for (int64_t p0 = 0, slot = 0; p0 < len; p0 += BT) {
    const float* src = pool.head(trow, b, p0, layer, kind, kvh, slot);
    slot += trow[p0 / BT] >= pool.blocks;
    const int64_t n = std::min(BT, len - p0);
    if (kind == 1) {
      std::copy_n(src, n * Dh, rows + p0 * Dh);
      continue;
    }
    for (int64_t d = 0; d < Dh; ++d)
      for (int64_t j = 0; j < n; ++j) rows[(p0 + j) * Dh + d] = src[d * BT + j];
  }
}

// r[0, n) = exp(r - mx) in place, eight lanes at a time; returns their sum.
float exp_row(float* r, int64_t n, float mx) {
  using namespace detail;
  const __m256 m = _mm256_set1_ps(mx);
  return row_reduce(n, [&](int64_t i, int64_t k) {
    const __m256 e = vexp(_mm256_sub_ps(ld(r + i, k), m));
    st(r + i, k, e);
    return e;
  });
}

// softmax of r[0, n) in place.
void softmax_row(float* r, int64_t n) {
  using namespace detail;
  const __m256 inv = _mm256_set1_ps(1.0f / exp_row(r, n, row_max(r, n)));
  row_for(n, [&](int64_t i, int64_t k) { st(r + i, k, _mm256_mul_ps(ld(r + i, k), inv)); });
}

// Row t of s [T, len] (query row t sits at position len - T + t): softmax over the positions it
// may see, zero after them.
void causal_softmax(float* s, int64_t T, int64_t len) {
  for (int64_t t = 0; t < T; ++t) {
    float* r = s + t * len;
    const int64_t seen = len - T + t + 1;
    softmax_row(r, seen);
    std::fill(r + seen, r + len, 0.0f);
  }
}

// out[r * C + c] = scale * [q_r . key_j for j in [8c, 8c + 8)] for the R query rows q[r] and
// sixteen or eight positions of one kv head's block of keys, stored transposed (key_j's element d
// at keys[d * BT + j]): the R x C sums stay in registers across Dh, each vector of keys loaded
// once for the R rows, each query element broadcast once for the C vectors.
template <int R, int C>
void qk_tile(const float* const* q, const float* keys, int64_t BT, int64_t Dh, float scale,
             __m256* out) {
  __m256 acc[R * C];
#pragma GCC unroll 8
  for (int i = 0; i < R * C; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t d = 0; d < Dh; ++d) {
    __m256 k[C];
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) k[c] = _mm256_loadu_ps(keys + d * BT + 8 * c);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 qd = _mm256_broadcast_ss(q[r] + d);
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) acc[r * C + c] = _mm256_fmadd_ps(qd, k[c], acc[r * C + c]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R * C; ++i) out[i] = _mm256_mul_ps(_mm256_set1_ps(scale), acc[i]);
}

using QkTile = void (*)(const float* const*, const float*, int64_t, int64_t, float, __m256*);
// qk_tile<R, C> for R in [1, 4], C in [1, 2].
QkTile qk_tile_for(int64_t R, int64_t C) {
  static constexpr QkTile tiles[4][2] = {{qk_tile<1, 1>, qk_tile<1, 2>},
                                         {qk_tile<2, 1>, qk_tile<2, 2>},
                                         {qk_tile<3, 1>, qk_tile<3, 2>},
                                         {qk_tile<4, 1>, qk_tile<4, 2>}};
  return tiles[R - 1][C - 1];
}

// o_r[0, Dh) += sum over j < n of p_r[j] * value_j (at values + j * stride) for the R query rows
// r, columns [d, d + 8 C): R x C registers of the outputs stay put across the block's rows, each
// row of values is loaded once for all R query rows, and the R x C sums are independent chains.
template <int R, int C>
void axpy_tile(const float* const* p, const float* values, int64_t stride, int64_t n,
               float* const* o, int64_t d) {
  __m256 acc[R * C];  // row r, columns [d + 8 c, d + 8 c + 8) at acc[r * C + c]
#pragma GCC unroll 8
  for (int i = 0; i < R * C; ++i) acc[i] = _mm256_loadu_ps(o[i / C] + d + 8 * (i % C));
  for (int64_t j = 0; j < n; ++j) {
    __m256 v[C];
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) v[c] = _mm256_loadu_ps(values + j * stride + d + 8 * c);
#pragma GCC unroll 8
    for (int i = 0; i < R * C; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(p[i / C] + j), v[i % C], acc[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < R * C; ++i) _mm256_storeu_ps(o[i / C] + d + 8 * (i % C), acc[i]);
}

// axpy_tile over `rows` query rows and Dh columns (a multiple of 8), in tiles of at most four
// rows by sixteen columns. Each output's sum runs over j in order, whatever the tiling.
void axpy_rows(const float* const* p, const float* values, int64_t stride, int64_t n, int64_t Dh,
               int64_t rows, float* const* o) {
  using AxpyTile =
      void (*)(const float* const*, const float*, int64_t, int64_t, float* const*, int64_t);
  static constexpr AxpyTile tiles[4][2] = {{axpy_tile<1, 1>, axpy_tile<1, 2>},
                                           {axpy_tile<2, 1>, axpy_tile<2, 2>},
                                           {axpy_tile<3, 1>, axpy_tile<3, 2>},
                                           {axpy_tile<4, 1>, axpy_tile<4, 2>}};
  for (int64_t r = 0; r < rows; r += 4) {
    const int64_t R = std::min<int64_t>(4, rows - r);
    for (int64_t d = 0; d < Dh; d += 16)
      tiles[R - 1][d + 16 <= Dh ? 1 : 0](p + r, values, stride, n, o + r, d);
  }
}

// Asks for `floats` floats from `first` ahead of their use: each block is its own few KiB of the
// pool, where the hardware's stream prefetch stops.
template <int Hint>
void prefetch_span(const float* first, int64_t floats) {
  for (int64_t i = 0; i < floats; i += 16)
    _mm_prefetch(reinterpret_cast<const char*>(first + i), _mm_hint(Hint));
}

// At most this many query rows per kv head (query heads of the group x rows of the chunk) are
// attended in place; more go through the gathered rows and sgemm, which then pay for the copy.
constexpr int64_t kInPlaceRows = 16;

// A block of one kv head is a few KiB worked through in a few hundred cycles, less than a trip
// to memory: the block this far ahead is asked for into the last-level cache, and the one this
// near into the first (the far one took a fifth off llama-long's decode attention at 10240
// positions on two cores).
constexpr int64_t kFarBlocks = 8, kNearBlocks = 2;

// fn(p0, n, part) for each block of positions [p0, p0 + n) below len: kv head kvh's part of the
// block's keys (kind 0) or values (kind 1) where the block lives (PoolView::head), after asking
// for the parts of the blocks kNearBlocks and kFarBlocks further on.
template <typename Fn>
void for_each_block(const PoolView& pool, const int64_t* trow, int64_t b, int64_t layer, int kind,
                    int64_t kvh, int64_t len, const Fn& fn) {
  const int64_t BT = pool.block_tokens, part = BT * pool.head_dim;
  const int64_t blocks = (len + BT - 1) / BT;
  std::vector<const float*> parts(static_cast<size_t>(blocks));
  for (int64_t c = 0, slot = 0; c < blocks; ++c) {
    parts[size_t(c)] = pool.head(trow, b, c * BT, layer, kind, kvh, slot);
    slot += trow[c] >= pool.blocks;
  }
  for (int64_t c = 0; c < std::min(kNearBlocks, blocks); ++c)
    prefetch_span<_MM_HINT_T0>(parts[size_t(c)], part);
  for (int64_t c = 0; c < blocks; ++c) {
    if (c + kNearBlocks < blocks) prefetch_span<_MM_HINT_T0>(parts[size_t(c + kNearBlocks)], part);
    if (c + kFarBlocks < blocks) prefetch_span<_MM_HINT_T2>(parts[size_t(c + kFarBlocks)], part);
    fn(c * BT, std::min(BT, len - c * BT), parts[size_t(c)]);
  }
}

// One sequence's kv head in place: the `heads` query heads of its group, T rows each, against
// the cached keys and values read once, block by block, where they live (device pool, host pool
// or staging). The keys' pass writes each row's scores and keeps their running maximum over the
// positions the row may see; the weights exp(score - maximum) are not normalised: the values'
// pass sums them into the output, which is divided by their sum at the end. Query row (t, h) at
// q + t * qstride + h * Dh, its output at the same offset of out; `scores` holds heads * T rows
// of len. The order of every sum depends on the shapes only, never on where a block lives.
void attend_in_place(const PoolView& pool, const int64_t* trow, int64_t b, int64_t layer,
                     int64_t kvh, int64_t len, int64_t T, int64_t heads, float scale,
                     const float* q, float* out, int64_t qstride, float* scores) {
  const int64_t Dh = pool.head_dim, BT = pool.block_tokens;
  const int64_t rows = heads * T;
  // Row r = (query head r / T, chunk row t = r % T): its query, its output, the positions it may
  // see (up to len - T + t).
  const float* qr[kInPlaceRows];
  float* o[kInPlaceRows];
  int64_t seen[kInPlaceRows];
  __m256 most[kInPlaceRows];
  for (int64_t r = 0; r < rows; ++r) {
    qr[r] = q + (r % T) * qstride + (r / T) * Dh;
    o[r] = out + (r % T) * qstride + (r / T) * Dh;
    seen[r] = len - T + 1 + r % T;
    most[r] = _mm256_set1_ps(-INFINITY);
  }
  for_each_block(pool, trow, b, layer, 0, kvh, len, [&](int64_t p0, int64_t n, const float* keys) {
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
      const int64_t R = std::min<int64_t>(4, rows - r0);
      int64_t j = 0;
      // Vectors of eight positions (two, or one, or none left) whose lanes lie in the block's rows.
      const auto vectors = [&](int64_t j) -> int64_t {
        return j + 16 <= BT && n - j > 8 ? 2 : j + 8 <= BT && j < n ? 1 : 0;
      };
      for (int64_t C; (C = vectors(j)) > 0; j += 8 * C) {
        __m256 v[8];
        qk_tile_for(R, C)(qr + r0, keys + j, BT, Dh, scale, v);
        for (int64_t i = 0; i < R * C; ++i) {
          const int64_t r = r0 + i / C, at = j + 8 * (i % C);
          const int64_t m = std::min<int64_t>(8, n - at);  // lanes past m: rows beyond the sequence
          if (m <= 0) continue;
          detail::st(scores + r * len + p0 + at, m, v[i]);
          const int64_t visible = std::min(m, seen[r] - p0 - at);
          if (visible > 0)
            most[r] = _mm256_max_ps(
                most[r], visible == 8
                             ? v[i]
                             : _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v[i],
                                                _mm256_castsi256_ps(detail::tail_mask(visible))));
        }
      }
      for (; j < n; ++j)  // a block size that is not a multiple of eight: the last few positions
        for (int64_t r = r0; r < r0 + R; ++r) {
          float dot = 0;
          for (int64_t d = 0; d < Dh; ++d) dot += qr[r][d] * keys[d * BT + j];
          scores[r * len + p0 + j] = scale * dot;
          if (p0 + j < seen[r]) most[r] = _mm256_max_ps(most[r], _mm256_set1_ps(scale * dot));
        }
    }
  });
  // Each row's weights over the positions it may see, zero after them (so that the values' pass
  // runs every row over whole blocks), and their sum.
  float sum[kInPlaceRows];
  for (int64_t r = 0; r < rows; ++r) {
    float* s = scores + r * len;
    sum[r] = exp_row(s, seen[r], detail::hmax(most[r]));
    std::fill(s + seen[r], s + len, 0.0f);
    std::fill_n(o[r], Dh, 0.0f);
  }
  const float* p[kInPlaceRows];
  for_each_block(pool, trow, b, layer, 1, kvh, len,
                 [&](int64_t p0, int64_t n, const float* values) {
                   for (int64_t r = 0; r < rows; ++r) p[r] = scores + r * len + p0;
                   if (Dh % 8 == 0) return axpy_rows(p, values, Dh, n, Dh, rows, o);
                   for (int64_t r = 0; r < rows; ++r)
                     for (int64_t j = 0; j < n; ++j)
                       for (int64_t d = 0; d < Dh; ++d) o[r][d] += p[r][j] * values[j * Dh + d];
                 });
  for (int64_t r = 0; r < rows; ++r) {
    const float inv = 1.0f / sum[r];
    for (int64_t d = 0; d < Dh; ++d) o[r][d] *= inv;
  }
}

// Per sequence and kv head: its cached keys and values gathered into contiguous rows, then for
// each query head of the group S = scale Q K^T [T, len], the causal softmax, and out = S V, the
// two products on the backend's sgemm (strided over q's and out's [B, T, H, Dh] layout). A decode
// step (few rows per kv head) reads the blocks in place instead (attend_in_place), each
// (sequence, kv head) on its own thread.
void paged_attention(KernelArgs& k) {
  const PoolView pool(*k.in[1], *k.in[2], k.in.size() > 4 ? k.in[4] : nullptr,
                      k.node.attrs.i("fetch_slots", 0));
  const Shape& s = k.in[0]->shape();
  // A rank of a tensor-parallel program holds query heads [off, off + H) of groups of `group`
  // (attributes set by lowering); otherwise all of them.
  const int64_t B = s[0], T = s[1], H = s[2], Dh = s[3];
  const int64_t group = k.node.attrs.i("group", H / pool.kv_heads);
  const int64_t off = k.node.attrs.i("head_offset", 0);
  const int64_t layer = k.node.attrs.i("layer");
  const float scale = float(k.node.attrs.f("scale"));
  const int64_t* table = k.in[2]->i64();
  const int64_t* lens = k.in[3]->i64();
  const int64_t cap = pool.max_blocks * pool.block_tokens;
  for (int64_t b = 0; b < B; ++b)
    HP_CHECK(lens[b] >= T && lens[b] <= cap, "sequence ", b, " has length ", lens[b], ": needs ", T,
             " to ", cap, " positions");
  // Sized to the longest sequence, not the table's capacity, and left uninitialised: every row
  // read is written first (gather, then the products).
  const int64_t most = *std::max_element(lens, lens + B);
  const int64_t first_kvh = off / group, kvhs = (off + H - 1) / group - first_kvh + 1;
  if (group * T <= kInPlaceRows) {
    const int64_t items = B * kvhs;
    const int team = detail::team_size(context(k), items * most * Dh);
    // The calling thread's buffer, kept across calls (a decode step runs this once per layer and
    // token, and a fresh buffer of this size would be mapped and faulted in each time) and shared
    // out to the team below.
    thread_local std::vector<float> scores;
    if (scores.size() < size_t(team * group * T * most))
      scores.resize(size_t(team * group * T * most));
    float* const shared_scores = scores.data();
    std::vector<std::exception_ptr> failed(static_cast<size_t>(items));  // a bad block id, per item
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t i = 0; i < items; ++i) {
      const int64_t b = i / kvhs, kvh = first_kvh + i % kvhs;
      const int64_t h0 = std::max<int64_t>(0, kvh * group - off);
      const int64_t h1 = std::min(H, (kvh + 1) * group - off);
      const int64_t first = (b * T * H + h0) * Dh;
      try {
        attend_in_place(pool, table + b * pool.max_blocks, b, layer, kvh, lens[b], T, h1 - h0,
                        scale, k.in[0]->f32() + first, k.out[0]->f32() + first, H * Dh,
                        shared_scores + size_t(omp_get_thread_num() * group * T * most));
      } catch (...) {
        failed[size_t(i)] = std::current_exception();
      }
    }
    for (const auto& e : failed)
      if (e) std::rethrow_exception(e);
    return;
  }
  const std::unique_ptr<float[]> keys(new float[size_t(most * Dh)]),
      values(new float[size_t(most * Dh)]), scores(new float[size_t(T * most)]);
  const Context ctx = context(k);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lens[b], *trow = table + b * pool.max_blocks;
    for (int64_t kvh = off / group; kvh <= (off + H - 1) / group; ++kvh) {
      gather(pool, trow, b, layer, 0, kvh, len, keys.get());
      gather(pool, trow, b, layer, 1, kvh, len, values.get());
      for (int64_t h = std::max<int64_t>(0, kvh * group - off);
           h < std::min(H, (kvh + 1) * group - off); ++h) {
        const int64_t first = (b * T * H + h) * Dh;  // row t of head h at first + t * H * Dh
        gemm(ctx, false, true, T, len, Dh, scale, k.in[0]->f32() + first, H * Dh, keys.get(), Dh,
             0.0f, scores.get(), len);
        causal_softmax(scores.get(), T, len);
        gemm(ctx, false, false, T, Dh, len, 1.0f, scores.get(), len, values.get(), Dh, 0.0f,
             k.out[0]->f32() + first, H * Dh);
      }
    }
  }
}

}  // namespace

void add_kv_cache_kernels(KernelTable& t) {
  t.add(OpId::kKvWrite, kernel(kv_write));
  // The gathered keys and values of one kv head and the scores of one query head, at the block
  // table's capacity, and the products' own workspace.
  t.add(OpId::kPagedAttention, kernel(paged_attention, [](const Types& in, const ir::Attrs&, int) {
          const int64_t T = in[0].shape[1], Dh = in[0].shape[3];
          const int64_t cap = in[2].shape[1] * in[1].shape[3];
          return sizeof(float) * size_t(2 * cap * Dh + T * cap) +
                 gemm_scratch_bytes(false, true, T, cap, Dh, 0.0f) +
                 gemm_scratch_bytes(false, false, T, Dh, cap, 0.0f);
        }));
}

}  // namespace hp::cpu
