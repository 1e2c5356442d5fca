// CPU kernels of the KV-cache ops (src/ops/kv_cache.cpp): kv_write copies one layer's new keys
// and values into their blocks of the pool; paged_attention runs each query row against its
// sequence's cached positions, read through the block table (scores, softmax, weighted values),
// one (sequence, head, row) per OpenMP iteration.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/kernels/table.hpp"
#include "backend/cpu/vec_math.hpp"
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

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {};  // eight lanes the compiler keeps in one vector register
  int64_t e = 0;
  for (; e + 8 <= n; e += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[e + l] * b[e + l];
  float d = 0;
  for (; e < n; ++e) d += a[e] * b[e];
  for (float x : acc) d += x;
  return d;
}

// One query row against positions [0, len) of its sequence: out = softmax(scale q.K) V, walking
// the block table one block at a time.
void attend_row(const PoolView& pool, const int64_t* trow, int64_t layer, int64_t kvh,
                const float* q, int64_t len, float scale, float* scores, float* out) {
  const int64_t Dh = pool.head_dim, BT = pool.block_tokens, stride = pool.kv_heads * Dh;
  float mx = -INFINITY;
  for (int64_t p0 = 0; p0 < len; p0 += BT) {
    const float* kb = pool.at(trow, p0, layer, 0) + kvh * Dh;
    for (int64_t j = 0, n = std::min(BT, len - p0); j < n; ++j) {
      scores[p0 + j] = dot(q, kb + j * stride, Dh) * scale;
      mx = std::max(mx, scores[p0 + j]);
    }
  }
  float z = 0;
  for (int64_t j = 0; j < len; ++j) z += (scores[j] = std::exp(scores[j] - mx));
  std::fill_n(out, Dh, 0.0f);
  for (int64_t p0 = 0; p0 < len; p0 += BT) {
    const float* vb = pool.at(trow, p0, layer, 1) + kvh * Dh;
    for (int64_t j = 0, n = std::min(BT, len - p0); j < n; ++j) {
      const float p = scores[p0 + j] / z;
      const float* vr = vb + j * stride;
      for (int64_t e = 0; e < Dh; ++e) out[e] += p * vr[e];
    }
  }
}

void paged_attention(KernelArgs& k) {
  const PoolView pool(*k.in[1], *k.in[2]);
  const Shape& s = k.in[0]->shape();
  const int64_t B = s[0], T = s[1], H = s[2], Dh = s[3], group = H / pool.kv_heads;
  const int64_t layer = k.node.attrs.i("layer");
  const float scale = float(k.node.attrs.f("scale"));
  const int64_t* table = k.in[2]->i64();
  const int64_t* lens = k.in[3]->i64();
  const int64_t cap = pool.max_blocks * pool.block_tokens;
  for (int64_t b = 0; b < B; ++b)
    HP_CHECK(lens[b] >= T && lens[b] <= cap, "sequence ", b, " has length ", lens[b], ": needs ", T,
             " to ", cap, " positions");
  const float* q = k.in[0]->f32();
  float* out = k.out[0]->f32();
  const int64_t rows = B * T * H;
  const int team = detail::team_size(context(k), rows * cap * Dh);
  std::string error;
#pragma omp parallel num_threads(team)
  {
    std::vector<float> scores(static_cast<size_t>(cap));
#pragma omp for schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / (T * H), t = (r / H) % T, h = r % H;
      try {
        attend_row(pool, table + b * pool.max_blocks, layer, h / group, q + r * Dh,
                   lens[b] - T + t + 1, scale, scores.data(), out + r * Dh);
      } catch (const Error& e) {  // no exception may leave an OpenMP region
#pragma omp critical
        error = e.what();
      }
    }
  }
  HP_CHECK(error.empty(), error);
}

}  // namespace

void add_kv_cache_kernels(KernelTable& t) {
  t.add(OpId::kKvWrite, kernel(kv_write));
  t.add(OpId::kPagedAttention,
        kernel(paged_attention, [](const Types& in, const ir::Attrs&, int threads) {
          return sizeof(float) * size_t(threads) * size_t(in[2].shape[1] * in[1].shape[3]);
        }));
}

}  // namespace hp::cpu
