// Vectorised, multi-threaded f32 CPU kernels for everything but GEMM and attention.
// Not shape-checked: the ops' type inference has validated shapes; all buffers are contiguous.
// Backward kernels overwrite their outputs unless the name says `_acc`.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hp/backend/cpu/context.hpp"

namespace hp::cpu {

using Dims = std::vector<int64_t>;

// ---- elementwise -------------------------------------------------------------------------
enum class Unary { kNeg, kExp, kLog, kSqrt, kRsqrt, kTanh, kGelu, kSilu, kRelu, kSquare };
enum class Binary { kAdd, kSub, kMul, kDiv, kMax, kMin };

// y[i] = f(x[i]).
void unary(const Context& ctx, Unary op, const float* x, float* y, int64_t n);
// dx[i] = dy[i] * f'(x[i]) (y = f(x) is passed for ops whose derivative uses it: exp, sqrt,
// rsqrt, tanh).
void unary_bwd(const Context& ctx, Unary op, const float* x, const float* y, const float* dy,
               float* dx, int64_t n);
// out = a OP b with numpy broadcasting; a_shape and b_shape are already right-aligned to
// out_shape's rank (size-1 dims broadcast).
void binary(const Context& ctx, Binary op, const float* a, const Dims& a_shape, const float* b,
            const Dims& b_shape, float* out, const Dims& out_shape);
// out[i] = a[i] * alpha + b[i] * beta (same length).
void axpby(const Context& ctx, int64_t n, float alpha, const float* a, float beta, const float* b,
           float* out);
// y = gelu(x + bias) and its backward (x: [rows, cols], bias: [cols]); the backward writes
// dx = dy * gelu'(x + bias) and dbias = column sums of dx.
void bias_gelu_fwd(const Context& ctx, const float* x, const float* bias, float* y, int64_t rows,
                   int64_t cols);
void bias_gelu_bwd(const Context& ctx, const float* x, const float* bias, const float* dy,
                   float* dx, float* dbias, int64_t rows, int64_t cols);
// Bytes of workspace a kernel that sums `k` [rows, cols] column gradients block by block
// allocates for itself (bias_gelu_bwd: k = 1, layer_norm_bwd: 2, rms_norm_bwd: 1).
size_t column_sums_scratch_bytes(int64_t rows, int64_t cols, int k);

// ---- reductions and layout ---------------------------------------------------------------
enum class Reduce { kSum, kMean, kMax };
// Reduces x (shape `shape`) over the axes where `reduce_mask[i]` is true; out has the shape
// with those dims set to 1 (same element count as keepdim=true).
void reduce(const Context& ctx, Reduce op, const float* x, const Dims& shape,
            const std::vector<bool>& reduce_mask, float* out);
// Broadcasts `x` of shape x_shape (rank-aligned, size-1 dims broadcast) to out_shape, scaled.
void broadcast_to(const Context& ctx, const float* x, const Dims& x_shape, float* out,
                  const Dims& out_shape, float scale);
// out = x permuted: out dim i is x dim perm[i].
void permute(const Context& ctx, const float* x, const Dims& shape, const Dims& perm, float* out);
// Copies the box [start, start+out_shape) of x into out.
void slice(const Context& ctx, const float* x, const Dims& shape, const Dims& start, float* out,
           const Dims& out_shape);
// Adds `x` (shape x_shape) into the box at `start` of out (shape out_shape) — slice's backward.
void slice_bwd_acc(const Context& ctx, const float* x, const Dims& x_shape, const Dims& start,
                   float* out, const Dims& out_shape);

// ---- normalisation and softmax (rows x cols, normalised over cols) -----------------------
void layer_norm_fwd(const Context& ctx, const float* x, const float* gamma, const float* beta,
                    float* y, float* mean, float* rstd, int64_t rows, int64_t cols, float eps);
// Residual + layer norm in one pass: sum = x + res, then y = layer_norm(sum).
void add_layer_norm_fwd(const Context& ctx, const float* x, const float* res, float* sum,
                        const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps);
// dgamma, dbeta: [cols], overwritten with sums over rows.
void layer_norm_bwd(const Context& ctx, const float* dy, const float* x, const float* gamma,
                    const float* mean, const float* rstd, float* dx, float* dgamma, float* dbeta,
                    int64_t rows, int64_t cols);
// y = x * rstd * gamma, rstd = 1/sqrt(mean(x^2) + eps).
void rms_norm_fwd(const Context& ctx, const float* x, const float* gamma, float* y, float* rstd,
                  int64_t rows, int64_t cols, float eps);
void rms_norm_bwd(const Context& ctx, const float* dy, const float* x, const float* gamma,
                  const float* rstd, float* dx, float* dgamma, int64_t rows, int64_t cols);
void softmax_fwd(const Context& ctx, const float* x, float* y, int64_t rows, int64_t cols);
void softmax_bwd(const Context& ctx, const float* y, const float* dy, float* dx, int64_t rows,
                 int64_t cols);

// ---- losses, embeddings, positions ------------------------------------------------------
// A shard of a vocabulary: logits columns (or table rows) [offset, offset + n) of a vocabulary of
// `total` entries, as vocabulary-parallel embeddings and losses hold it. total 0: not sharded.
struct VocabShard {
  int64_t offset = 0;
  int64_t total = 0;
};
// Targets [rows] that are not ignore_index; throws hp::Error for a target outside [0, vocab).
int64_t count_targets(const int64_t* targets, int64_t rows, int64_t vocab, int64_t ignore_index,
                      const char* who);
// Mean cross-entropy of logits [rows, vocab] against targets [rows] (int64; `ignore_index`
// rows are skipped and not counted). Writes lse [rows] and returns the mean loss over `count`
// targets (-1: those of these rows; a count summed over ranks when rows are split).
float cross_entropy_fwd(const Context& ctx, const float* logits, const int64_t* targets, float* lse,
                        int64_t rows, int64_t vocab, int64_t ignore_index, int64_t count = -1);
// dlogits = dloss * (softmax(logits) - onehot(target)) / count (count -1: as above). With a
// shard, logits are its columns and lse the log-sum-exp of the whole row.
void cross_entropy_bwd(const Context& ctx, const float* logits, const int64_t* targets,
                       const float* lse, float dloss, float* dlogits, int64_t rows, int64_t vocab,
                       int64_t ignore_index, const VocabShard& shard = {}, int64_t count = -1);
// Vocabulary-parallel forward, in two halves around an all-gather. Parts: per row, the
// log-sum-exp of this shard's columns and the target's logit when the target falls in the shard
// (else 0): parts [rows, 2].
void cross_entropy_parts(const Context& ctx, const float* logits, const int64_t* targets,
                         float* parts, int64_t rows, int64_t vocab, int64_t ignore_index,
                         const VocabShard& shard);
// Combine: the parts of every shard, [rows, shards, 2], give lse [rows] and the mean loss over
// `count` targets (-1: those of these rows).
float cross_entropy_combine(const float* parts, const int64_t* targets, float* lse, int64_t rows,
                            int64_t shards, int64_t ignore_index, int64_t count);
// out[i, :] = table[ids[i], :]; throws hp::Error for an id outside [0, vocab). With a shard the
// table holds rows [offset, offset + vocab) of `total`; other ids give zero rows.
void embedding_fwd(const Context& ctx, const float* table, const int64_t* ids, float* out,
                   int64_t n, int64_t vocab, int64_t dim, const VocabShard& shard = {});
// dtable (zeroed first) += scatter of dout rows by ids (with a shard: the ids it holds).
void embedding_bwd(const Context& ctx, const float* dout, const int64_t* ids, float* dtable,
                   int64_t n, int64_t vocab, int64_t dim, const VocabShard& shard = {});
// Rotary embedding, Hugging Face "rotate_half" convention: x [B, T, H, Dh], position of token t
// is pos_offset + t, or positions[b * T + t] when `positions` ([B, T]) is given (the inference
// programs: each sequence at its own offset); frequency i is theta^(-2i/Dh) for i < Dh/2, pairs
// (i, i + Dh/2). inverse=true applies the opposite rotation (the backward).
void rope(const Context& ctx, const float* x, float* y, int64_t batch, int64_t seq, int64_t heads,
          int64_t head_dim, float theta, int64_t pos_offset, bool inverse,
          const int64_t* positions = nullptr);
// Bytes of workspace rope allocates for itself (its cos / sin tables) over `rows` positions: T,
// or B x T with per-token positions.
size_t rope_scratch_bytes(int64_t rows, int64_t head_dim);

// ---- optimizer ---------------------------------------------------------------------------
// One AdamW step in place (PyTorch semantics): p -= lr * wd * p; m,v moments; bias-corrected
// with `step` (1-based).
void adamw(const Context& ctx, float* p, const float* g, float* m, float* v, int64_t n, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step);
// Sum of squares (double accumulation).
double sum_squares(const Context& ctx, const float* x, int64_t n);
// x *= s.
void scale(const Context& ctx, float* x, int64_t n, float s);

}  // namespace hp::cpu
