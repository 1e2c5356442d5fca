// The tracing API: model code calls these on Vars and reads like ordinary tensor code,
// `auto y = matmul(x, w) + b;`. Each call appends one node to the Vars' graph.
// Not eager: nothing is computed here; shapes and dtypes are checked as the graph is built.
#pragma once
#include <utility>
#include <vector>

#include "hp/ir/graph.hpp"

namespace hp {

using ir::Var;

// a [..., M, K] (or [..., K, M] when ta) x b [K, N] (or [N, K] when tb), b either 2-D (shared by
// every batch) or with the same leading dims as a -> [..., M, N].
Var matmul(Var a, Var b, bool ta = false, bool tb = false);

// Elementwise with numpy broadcasting; float dtypes; the result has a's dtype.
Var add(Var a, Var b);
Var sub(Var a, Var b);
Var mul(Var a, Var b);
Var div(Var a, Var b);
Var operator+(Var a, Var b);
Var operator-(Var a, Var b);
Var operator*(Var a, Var b);
Var operator/(Var a, Var b);
Var operator-(Var a);
Var operator*(Var a, double s);
Var operator*(double s, Var a);
Var scale(Var a, double s);  // a * s
Var neg(Var x);
Var exp(Var x);
Var log(Var x);
Var sqrt(Var x);
Var rsqrt(Var x);
Var tanh(Var x);
Var gelu(Var x);  // tanh approximation
Var silu(Var x);
Var relu(Var x);
Var square(Var x);
// gelu(x + bias) in one pass; x [..., N], bias [N].
Var bias_gelu(Var x, Var bias);
Var cast(Var x, DType to);

// Normalisation over the last dim; gamma, beta [D].
Var softmax(Var x);
Var layer_norm(Var x, Var gamma, Var beta, double eps);
Var rms_norm(Var x, Var gamma, double eps);
// Residual add fused with the layer norm that reads it: returns (x + res, layer_norm(x + res)).
std::pair<Var, Var> add_layer_norm(Var x, Var res, Var gamma, Var beta, double eps);

// table [V, D], ids (i64) [...] -> [..., D].
Var embedding(Var table, Var ids);
// Mean token cross-entropy: logits [..., V], targets (i64) [...] -> scalar []; targets equal to
// ignore_index are skipped. Fused and numerically stable (log-sum-exp).
Var cross_entropy(Var logits, Var targets, int64_t ignore_index = -100);
// Rotary position embedding on x [B, T, H, Dh] (Hugging Face rotate_half convention).
Var rope(Var x, double theta, int64_t pos_offset = 0);
// The same with token t of sequence b at positions[b, t] (i64 [B, T]).
Var rope(Var x, double theta, Var positions);
// Causal self-attention, fused: q [B, T, H, Dh], k and v [B, T, Hkv, Dh] -> [B, T, H, Dh].
Var attention(Var q, Var k, Var v, double scale);

// The inference programs' KV cache (docs/inference.md). `pool` f32 [blocks, layers, 2,
// block_tokens, Hkv, Dh] is a source the caller binds and keeps across runs; `block_table` i64
// [B, max_blocks] lists each sequence's blocks in order; `positions` i64 [B, T] the position of
// each new token (consecutive per sequence).
// Writes k and v [B, T, Hkv, Dh] of `layer` into the pool in place at their positions; returns
// each sequence's length after the write, i64 [B] (last position + 1), which paged_attention
// reads, so the write is ordered before every read.
// With an offloaded pool, `host` f32 [host blocks, layers, 2, block_tokens, Hkv, Dh] holds the
// blocks whose ids are >= the device pool's block count (id - device blocks), written in place too.
Var kv_write(Var pool, Var k, Var v, Var block_table, Var positions, int64_t layer, Var host = {});
// Causal attention of q [B, T, H, Dh] (the last T positions of each sequence, which end at
// lengths[b]) over the pool's keys and values of `layer` at positions [0, lengths[b]). Blocks
// with ids >= the pool's block count are read from `host`: the host pool itself (attention where
// the KV lives, fetch_slots 0), or a staging f32 [rows, 2, block_tokens, Hkv, Dh] of `layer`'s
// host blocks gathered beforehand (fetch_slots per sequence: sequence b's host blocks in table
// order at rows b * slots, b * slots + 1, ...; infer::KvPool::gather).
Var paged_attention(Var q, Var pool, Var block_table, Var lengths, int64_t layer, double scale,
                    Var host = {}, int64_t fetch_slots = 0);
// Layout. reshape accepts one -1.
Var reshape(Var x, Shape shape);
Var permute(Var x, std::vector<int64_t> perm);
Var transpose(Var x, int64_t a, int64_t b);
Var slice(Var x, int64_t axis, int64_t start, int64_t end);
Var concat(const std::vector<Var>& xs, int64_t axis);
std::vector<Var> split(Var x, int64_t axis, const std::vector<int64_t>& sizes);

// Reductions over `axes` (empty: all).
Var sum(Var x, std::vector<int64_t> axes = {}, bool keepdim = false);
Var mean(Var x, std::vector<int64_t> axes = {}, bool keepdim = false);
Var max(Var x, std::vector<int64_t> axes = {}, bool keepdim = false);
// Sums x over broadcast dims down to `shape` (the VJP of broadcasting).
Var sum_to(Var x, Shape shape);
Var broadcast_to(Var x, Shape shape);

}  // namespace hp
