// CPU kernels of the KV-cache ops (src/ops/kv_cache.cpp): kv_write copies one layer's new keys
// and values into their blocks of the pool; paged_attention reads a sequence's cached keys and
// values through its block table: a decode step (few query rows per kv head) in place, block by
// block, for the whole GQA group at once; a prefill chunk by gathering them into rows and running
// two sgemm products with a causal softmax between. kv_fetch stages a layer's host blocks.
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

// Where one layer's keys (kind 0) and values (kind 1) of a token lie, for a sequence's block table
// row: in the pool [blocks, layers, 2, block_tokens, Hkv, Dh] for ids below its block count, else
// in the host pool (id - blocks) or, fetched, in the staging [rows, 2, block_tokens, Hkv, Dh]
// (sequence b's host blocks in table order from row b * slots).
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

  // The first float of (block table row `row` of sequence `b`, position `pos`, layer, kind);
  // `slot`: the host blocks before it in the row (fetched only). Throws when the position lies
  // beyond the table or its block outside the pool.
  float* at(const int64_t* row, int64_t b, int64_t pos, int64_t layer, int kind,
            int64_t slot = 0) const {
    HP_CHECK(pos >= 0 && pos < max_blocks * block_tokens, "position ", pos,
             " outside the block table's ", max_blocks * block_tokens, " positions");
    const int64_t col = pos / block_tokens, blk = row[col], r = pos % block_tokens;
    const int64_t token = kv_heads * head_dim;
    if (blk >= 0 && blk < blocks)
      return base + (((blk * layers + layer) * 2 + kind) * block_tokens + r) * token;
    HP_CHECK(host && blk >= blocks && (fetched || blk - blocks < slots), "block ", blk,
             " (position ", pos, ") outside the pool's ", blocks, " blocks and ",
             fetched ? 0 : slots, " host blocks");
    if (!fetched)
      return host + ((((blk - blocks) * layers + layer) * 2 + kind) * block_tokens + r) * token;
    HP_CHECK(slot < slots, "host block ", blk, " beyond the ", slots, " staged blocks");
    return host + (((b * slots + slot) * 2 + kind) * block_tokens + r) * token;
  }
};

void kv_write(KernelArgs& k) {
  const PoolView pool(*k.in[0], *k.in[3], k.in.size() > 5 ? k.in[5] : nullptr);
  const Shape& s = k.in[1]->shape();
  const int64_t B = s[0], T = s[1], row = s[2] * s[3];
  const int64_t layer = k.node.attrs.i("layer");
  const int64_t* table = k.in[3]->i64();
  const int64_t* pos = k.in[4]->i64();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      const int64_t* trow = table + b * pool.max_blocks;
      std::copy_n(k.in[1]->f32() + i * row, row, pool.at(trow, b, pos[i], layer, 0));
      std::copy_n(k.in[2]->f32() + i * row, row, pool.at(trow, b, pos[i], layer, 1));
    }
    k.out[0]->i64()[b] = T > 0 ? pos[b * T + T - 1] + 1 : 0;
  }
}

// Copies positions [0, len) of one kv head's keys (kind 0) or values (kind 1) out of the pool
// into rows [len, Dh], one block at a time.
void gather(const PoolView& pool, const int64_t* trow, int64_t b, int64_t layer, int kind,
            int64_t kvh, int64_t len, float* rows) {
  const int64_t Dh = pool.head_dim, BT = pool.block_tokens, stride = pool.kv_heads * Dh;
  for (int64_t p0 = 0, slot = 0; p0 < len; p0 += BT) {
    const float* src = pool.at(trow, b, p0, layer, kind, slot) + kvh * Dh;
    slot += trow[p0 / BT] >= pool.blocks;
    for (int64_t j = 0, n = std::min(BT, len - p0); j < n; ++j)
      std::copy_n(src + j * stride, Dh, rows + (p0 + j) * Dh);
  }
}

// softmax of r[0, n) in place, eight lanes at a time.
void softmax_row(float* r, int64_t n) {
  using namespace detail;
  const __m256 mx = _mm256_set1_ps(row_max(r, n));
  const float z = row_reduce(n, [&](int64_t i, int64_t k) {
    const __m256 e = vexp(_mm256_sub_ps(ld(r + i, k), mx));
    st(r + i, k, e);
    return e;
  });
  const __m256 inv = _mm256_set1_ps(1.0f / z);
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

// [sum of a[0]'s lanes, ..., sum of a[7]'s lanes].
__m256 hsum8(const __m256* a) {
  const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20),
                       _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// out[j] = scale * q . key_j for the n <= 8 key rows at keys + j * stride, Dh a multiple of 8.
// Always eight rows in registers (rows past n repeat the last one and are not stored).
void dots8(const float* q, const float* keys, int64_t stride, int64_t n, int64_t Dh, float scale,
           float* out) {
  const float* row[8];
  for (int64_t j = 0; j < 8; ++j) row[j] = keys + std::min(j, n - 1) * stride;
  __m256 acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t d = 0; d < Dh; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(row[j] + d), acc[j]);
  }
  detail::st(out, n, _mm256_mul_ps(_mm256_set1_ps(scale), hsum8(acc)));
}

// o[0, Dh) += sum over j < n of p[j] * value_j (at values + j * stride), Dh a multiple of 8:
// eight columns of o stay in a register across the rows.
void axpy_rows(const float* p, const float* values, int64_t stride, int64_t n, int64_t Dh,
               float* o) {
  for (int64_t d = 0; d < Dh; d += 8) {
    __m256 acc = _mm256_loadu_ps(o + d);
    for (int64_t j = 0; j < n; ++j)
      acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(values + j * stride + d),
                            acc);
    _mm256_storeu_ps(o + d, acc);
  }
}

// Asks for the next block's rows of one kv head (`rows` rows of Dh floats, `stride` apart) while
// the current one is worked on: each block is its own few KiB of the pool, where the hardware's
// stream prefetch stops.
void prefetch_rows(const float* first, int64_t rows, int64_t stride, int64_t Dh) {
  for (int64_t j = 0; j < rows; ++j)
    for (int64_t d = 0; d < Dh; d += 16)
      _mm_prefetch(reinterpret_cast<const char*>(first + j * stride + d), _MM_HINT_T0);
}

// At most this many query rows per kv head (query heads of the group x rows of the chunk) are
// attended in place; more go through the gathered rows and sgemm, which then pay for the copy.
constexpr int64_t kInPlaceRows = 16;

// fn(p0, n, rows) for each block of positions [p0, p0 + n) below len of one kv head's keys
// (kind 0) or values (kind 1): its rows where the block lives, `stride` floats apart; the next
// block's rows are prefetched first.
template <typename Fn>
void for_each_block(const PoolView& pool, const int64_t* trow, int64_t b, int64_t layer, int kind,
                    int64_t kvh, int64_t len, const Fn& fn) {
  const int64_t Dh = pool.head_dim, BT = pool.block_tokens, stride = pool.kv_heads * Dh;
  for (int64_t p0 = 0, slot = 0; p0 < len; p0 += BT) {
    const float* rows = pool.at(trow, b, p0, layer, kind, slot) + kvh * Dh;
    slot += trow[p0 / BT] >= pool.blocks;
    if (p0 + BT < len)
      prefetch_rows(pool.at(trow, b, p0 + BT, layer, kind, slot) + kvh * Dh,
                    std::min(BT, len - p0 - BT), stride, Dh);
    fn(p0, std::min(BT, len - p0), rows);
  }
}

// One sequence's kv head in place: the `heads` query heads of its group, T rows each, against
// the cached keys and values read once, block by block, where they live (device pool, host pool
// or staging). Query row (t, h) at q + t * qstride + h * Dh, its output at the same offset of
// out; `scores` holds heads * T rows of len. The order of every sum depends on the shapes only,
// never on where a block lives.
void attend_in_place(const PoolView& pool, const int64_t* trow, int64_t b, int64_t layer,
                     int64_t kvh, int64_t len, int64_t T, int64_t heads, float scale,
                     const float* q, float* out, int64_t qstride, float* scores) {
  const int64_t Dh = pool.head_dim, stride = pool.kv_heads * Dh;
  const int64_t rows = heads * T;
  for_each_block(pool, trow, b, layer, 0, kvh, len, [&](int64_t p0, int64_t n, const float* keys) {
    for (int64_t j = 0; j < n; j += 8) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* qr = q + (r % T) * qstride + (r / T) * Dh;
        float* out_r = scores + r * len + p0 + j;
        const int64_t m = std::min<int64_t>(8, n - j);
        if (Dh % 8 == 0) {
          dots8(qr, keys + j * stride, stride, m, Dh, scale, out_r);
          continue;
        }
        for (int64_t i = 0; i < m; ++i) {
          const float* key = keys + (j + i) * stride;
          float dot = 0;
          for (int64_t d = 0; d < Dh; ++d) dot += qr[d] * key[d];
          out_r[i] = scale * dot;
        }
      }
    }
  });
  for (int64_t r = 0; r < rows; ++r) softmax_row(scores + r * len, len - T + 1 + r % T);
  for (int64_t r = 0; r < rows; ++r) std::fill_n(out + (r % T) * qstride + (r / T) * Dh, Dh, 0.0f);
  for_each_block(pool, trow, b, layer, 1, kvh, len,
                 [&](int64_t p0, int64_t n, const float* values) {
                   for (int64_t r = 0; r < rows; ++r) {
                     const int64_t t = r % T;
                     // The positions of this block row t may see (up to len - T + t).
                     const int64_t seen = std::min(n, len - T + t + 1 - p0);
                     const float* p = scores + r * len + p0;
                     float* o = out + t * qstride + (r / T) * Dh;
                     if (Dh % 8 == 0) {
                       axpy_rows(p, values, stride, seen, Dh, o);
                       continue;
                     }
                     for (int64_t j = 0; j < seen; ++j)
                       for (int64_t d = 0; d < Dh; ++d) o[d] += p[j] * values[j * stride + d];
                   }
                 });
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
    // Kept by the thread across calls: a decode step runs this once per layer and token, and a
    // fresh buffer of this size would be mapped and faulted in each time.
    thread_local std::vector<float> scores;
    if (scores.size() < size_t(team * group * T * most))
      scores.resize(size_t(team * group * T * most));
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
                        scores.data() + size_t(omp_get_thread_num() * group * T * most));
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

// Per sequence, its host blocks (ids >= device_blocks) holding positions below its length, in
// table order: one contiguous [2, block_tokens, Hkv, Dh] slice of `layer` each, into its rows of
// the staging.
void kv_fetch(KernelArgs& k) {
  const Tensor& host = *k.in[1];
  const Shape& hs = host.shape();
  const int64_t layers = hs[1], piece = 2 * hs[3] * hs[4] * hs[5], BT = hs[3];
  const int64_t layer = k.node.attrs.i("layer"), D = k.node.attrs.i("device_blocks");
  const int64_t slots = k.node.attrs.i("fetch_slots"), max_blocks = k.in[2]->shape()[1];
  const int64_t B = k.in[2]->shape()[0], *table = k.in[2]->i64(), *lens = k.in[3]->i64();
  float* out = const_cast<float*>(k.in[0]->f32());  // the staging is written in place
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* row = table + b * max_blocks;
    int64_t slot = 0;
    for (int64_t c = 0; c * BT < lens[b] && c < max_blocks; ++c) {
      if (row[c] < D) continue;
      HP_CHECK(row[c] - D < hs[0], "block ", row[c], " outside the ", D, " device and ", hs[0],
               " host blocks");
      HP_CHECK(slot < slots, "sequence ", b, " holds more than the ", slots, " staged host blocks");
      std::copy_n(host.f32() + ((row[c] - D) * layers + layer) * piece, piece,
                  out + (b * slots + slot) * piece);
      ++slot;
    }
    k.out[0]->i64()[b] = lens[b];
  }
}

}  // namespace

void add_kv_cache_kernels(KernelTable& t) {
  t.add(OpId::kKvWrite, kernel(kv_write));
  t.add(OpId::kKvFetch, kernel(kv_fetch));
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
