// CPU kernels of the KV-cache ops (src/ops/kv_cache.cpp): kv_write copies one layer's new keys
// and values into their blocks of the pool; paged_attention gathers a sequence's cached keys and
// values through its block table and runs the query rows of a chunk (or the one row of a decode
// step) against them with two sgemm products and a causal softmax between.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels/table.hpp"
#include "hp/backend/cpu/gemm.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {

namespace {

// Where one layer's keys (kind 0) and values (kind 1) of a token lie in the pool
// [blocks, layers, 2, block_tokens, Hkv, Dh], for a sequence's block table row.
struct PoolView {
  float* base;
  int64_t blocks, layers, block_tokens, kv_heads, head_dim, max_blocks;

  PoolView(const Tensor& pool, const Tensor& table)
      : base(const_cast<float*>(pool.f32())),  // the pool is written in place (kv_write)
        blocks(pool.shape()[0]),
        layers(pool.shape()[1]),
        block_tokens(pool.shape()[3]),
        kv_heads(pool.shape()[4]),
        head_dim(pool.shape()[5]),
        max_blocks(table.shape()[1]) {}

  // The first float of (block table row `row`, position `pos`, layer, kind); throws when the
  // position lies beyond the table or its block outside the pool.
  float* at(const int64_t* row, int64_t pos, int64_t layer, int kind) const {
    HP_CHECK(pos >= 0 && pos < max_blocks * block_tokens, "position ", pos,
             " outside the block table's ", max_blocks * block_tokens, " positions");
    const int64_t blk = row[pos / block_tokens];
    HP_CHECK(blk >= 0 && blk < blocks, "block ", blk, " (position ", pos, ") outside the pool's ",
             blocks, " blocks");
    const int64_t tok = ((blk * layers + layer) * 2 + kind) * block_tokens + pos % block_tokens;
    return base + tok * kv_heads * head_dim;
  }
};

void kv_write(KernelArgs& k) {
  const PoolView pool(*k.in[0], *k.in[3]);
  const Shape& s = k.in[1]->shape();
  const int64_t B = s[0], T = s[1], row = s[2] * s[3];
  const int64_t layer = k.node.attrs.i("layer");
  const int64_t* table = k.in[3]->i64();
  const int64_t* pos = k.in[4]->i64();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      const int64_t* trow = table + b * pool.max_blocks;
      std::copy_n(k.in[1]->f32() + i * row, row, pool.at(trow, pos[i], layer, 0));
      std::copy_n(k.in[2]->f32() + i * row, row, pool.at(trow, pos[i], layer, 1));
    }
    k.out[0]->i64()[b] = T > 0 ? pos[b * T + T - 1] + 1 : 0;
  }
}

// Copies positions [0, len) of one kv head's keys (kind 0) or values (kind 1) out of the pool
// into rows [len, Dh], one block at a time.
void gather(const PoolView& pool, const int64_t* trow, int64_t layer, int kind, int64_t kvh,
            int64_t len, float* rows) {
  const int64_t Dh = pool.head_dim, BT = pool.block_tokens, stride = pool.kv_heads * Dh;
  for (int64_t p0 = 0; p0 < len; p0 += BT) {
    const float* src = pool.at(trow, p0, layer, kind) + kvh * Dh;
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
  const PoolView pool(*k.in[1], *k.in[2]);
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
  std::vector<float> keys(size_t(cap * Dh)), values(keys.size()), scores(size_t(T * cap));
  const Context ctx = context(k);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lens[b], *trow = table + b * pool.max_blocks;
    for (int64_t kvh = off / group; kvh <= (off + H - 1) / group; ++kvh) {
      gather(pool, trow, layer, 0, kvh, len, keys.data());
      gather(pool, trow, layer, 1, kvh, len, values.data());
      for (int64_t h = std::max<int64_t>(0, kvh * group - off);
           h < std::min(H, (kvh + 1) * group - off); ++h) {
        const int64_t first = (b * T * H + h) * Dh;  // row t of head h at first + t * H * Dh
        gemm(ctx, false, true, T, len, Dh, scale, k.in[0]->f32() + first, H * Dh, keys.data(), Dh,
             0.0f, scores.data(), len);
        causal_softmax(scores.data(), T, len);
        gemm(ctx, false, false, T, Dh, len, 1.0f, scores.data(), len, values.data(), Dh, 0.0f,
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
