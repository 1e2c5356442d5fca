// CPU kernels of the KV-cache ops (src/ops/kv_cache.cpp): kv_write copies one layer's new keys
// and values into their blocks of the pool; paged_attention gathers a sequence's cached keys and
// values through its block table and runs the query rows of a chunk (or the one row of a decode
// step) against them with two sgemm products and a causal softmax between.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "backend/cpu/kernels/table.hpp"
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

// Row t of s [T, len] (query row t sits at position len - T + t): softmax over the positions it
// may see, zero after them.
void causal_softmax(float* s, int64_t T, int64_t len) {
  for (int64_t t = 0; t < T; ++t) {
    float* r = s + t * len;
    const int64_t seen = len - T + t + 1;
    const float mx = *std::max_element(r, r + seen);
    float z = 0;
    for (int64_t j = 0; j < seen; ++j) z += (r[j] = std::exp(r[j] - mx));
    for (int64_t j = 0; j < seen; ++j) r[j] /= z;
    std::fill(r + seen, r + len, 0.0f);
  }
}

// Per sequence and kv head: its cached keys and values gathered into contiguous rows, then for
// each query head of the group S = scale Q K^T [T, len], the causal softmax, and out = S V, the
// two products on the backend's sgemm (strided over q's and out's [B, T, H, Dh] layout).
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
