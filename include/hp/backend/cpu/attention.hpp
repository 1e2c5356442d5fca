// Fused causal self-attention (flash-attention style): forward and backward never materialise a
// T x T matrix per head; they tile queries and keys and keep an online softmax.
// Not a general attention: causal, no dropout, no padding mask. Grouped-query heads supported.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hp/backend/cpu/context.hpp"

namespace hp::cpu {

struct AttentionShape {
  int64_t batch = 1;     // B
  int64_t seq = 1;       // T
  int64_t heads = 1;     // H (query heads)
  int64_t kv_heads = 1;  // Hkv; query head h reads kv head (head_offset + h) / group
  int64_t head_dim = 1;  // Dh
  float scale = 1.0f;    // usually 1/sqrt(Dh)
  // Query heads per kv head (0: H / Hkv, and then H % Hkv == 0) and the index of the first query
  // head within those groups: a rank holding some query heads of a group and its whole kv head
  // (tensor parallelism with fewer kv heads than ranks) passes its offset and the global group.
  int64_t group = 0;
  int64_t head_offset = 0;
};

// q, out: [B, T, H, Dh]; k, v: [B, T, Hkv, Dh] (all contiguous); lse: [B, H, T] log-sum-exp of
// the scaled scores of each query row (saved for the backward).
void attention_fwd(const Context& ctx, const AttentionShape& s, const float* q, const float* k,
                   const float* v, float* out, float* lse);

// Given dout [B, T, H, Dh] and the forward's q, k, v, out, lse: writes (overwrites) dq
// [B, T, H, Dh], dk and dv [B, T, Hkv, Dh] (zero for kv heads no query head here reads).
void attention_bwd(const Context& ctx, const AttentionShape& s, const float* q, const float* k,
                   const float* v, const float* out, const float* lse, const float* dout, float* dq,
                   float* dk, float* dv);

// Bytes of workspace attention_fwd / attention_bwd allocate for themselves (outside any
// Allocator) for these arguments: the per-thread tiles and, in the backward, per-head partials.
size_t attention_fwd_scratch_bytes(const Context& ctx, const AttentionShape& s);
size_t attention_bwd_scratch_bytes(const Context& ctx, const AttentionShape& s);

}  // namespace hp::cpu
