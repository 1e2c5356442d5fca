// Model builders: trace a GPT-2, Llama or vision-language (ViT encoder, projector, Llama decoder)
// training step (forward + loss) from a ModelConfig, with Hugging Face-style parameter names and
// layouts, so HF safetensors checkpoints load unchanged.
// Not a module system: a model is a function that appends nodes to a Graph.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/ir/graph.hpp"

namespace hp::nn {

struct ParamInfo {
  std::string name;  // HF name, e.g. "h.0.attn.c_attn.weight"
  Shape shape;
  double init_std;  // 0: constant init_value
  double init_value;
  bool decay;  // weight decay applies (2 or more dims)
  // The shape traced with TraceOptions::logical_qkv when it differs from `shape` (same row-major
  // bytes): GPT-2's c_attn weight [D, 3, D] and bias [3, D]. Empty: same as `shape`.
  Shape logical;
};

// The inputs of a [batch, seq] step: tokens and targets [batch, seq]. A vision-language model's
// token row is its image's pixel levels (0..255, channels x rows x columns) followed by `seq`
// caption tokens, and its targets cover the image's patch tokens then the caption (ignored
// positions -100): i64 [batch, pixels + seq] and [batch, image tokens + seq].
struct BatchShapes {
  Shape tokens, targets;
};
BatchShapes batch_shapes(const io::ModelConfig& cfg, int64_t batch, int64_t seq);
// The positions the decoder runs over for `seq` tokens: seq after the image's tokens.
int64_t boundary_seq(const io::ModelConfig& cfg, int64_t seq);

// The parameters of a model, in a stable order.
std::vector<ParamInfo> param_infos(const io::ModelConfig& cfg);

// A traced step: graph, its token inputs, the loss, and the parameter values. A chunk of the
// model (a pipeline stage's part, trace_chunk) reads an activation instead of tokens unless it
// holds the embeddings, and unless it holds the head ends in an activation, with a gradient for
// it as an input and sum(x_out * g_out) as its loss: that loss's gradients are the chunk's
// vector-Jacobian product.
struct Traced {
  std::unique_ptr<ir::Graph> graph;
  ir::Var tokens;        // i64 batch_shapes().tokens (a chunk with the embeddings)
  ir::Var targets;       // i64 batch_shapes().targets (train, a chunk with the head)
  ir::Var loss;          // f32 [] (train)
  ir::Var logits;        // f32 [B, T, V] (a chunk with the head)
  ir::Var x_in;          // f32 [B, T', D] (a chunk without the embeddings)
  ir::Var x_out, g_out;  // f32 [B, T', D] (a chunk without the head; g_out: train)
  // (T' = T, or image tokens + T for a vision-language model: boundary_seq)
  std::vector<ir::Var> params;      // in param_infos() order: all, or the chunk's
  std::vector<size_t> param_index;  // params[k] is param_infos()[param_index[k]]
};

using ParamVars = std::map<std::string, ir::Var>;  // HF name -> parameter value

// How a block places its tokens and attends: by default (no hooks) the training step's, tokens
// at 0..T-1 and causal attention over the block's own q, k, v; the inference programs
// (trace_infer) give each token its position and attend through the KV cache.
struct BlockHooks {
  ir::Var positions;  // i64 [B, T] (Llama's rotary positions); undefined: 0..T-1
  // The attention output [B, T, H, Dh] of layer `layer` from q [B, T, H, Dh], k and v [B, T,
  // Hkv, Dh] (rotated for Llama); empty: causal attention.
  std::function<ir::Var(int64_t layer, ir::Var q, ir::Var k, ir::Var v)> attend;
};

// One transformer block `layer` of the model on x [B, T, D], reading its parameters from P.
ir::Var block(const io::ModelConfig& cfg, const ParamVars& P, int64_t layer, ir::Var x,
              const BlockHooks& hooks = {});

struct TraceOptions {
  // Trace parameters in their logical shapes (ParamInfo::logical): GPT-2's fused c_attn becomes
  // [D, 3, D] and q, k, v are sliced on the size-3 dim, so splitting the last dim over devices
  // splits each of q, k and v (head-parallel) instead of the fused [q | k | v] columns.
  bool logical_qkv = false;
};

// Throws unless batch and seq are positive and seq (after a vision-language model's image
// tokens) fits the model's positions.
void check_tokens(const io::ModelConfig& c, int64_t batch, int64_t seq);

// Forward (and, when `with_loss`, mean cross-entropy against targets) for a [batch, seq] batch.
// Throws when seq exceeds the model's max positions.
Traced trace(const io::ModelConfig& cfg, int64_t batch, int64_t seq, bool with_loss = true,
             TraceOptions options = {});

// A contiguous part of the model: transformer blocks [first, last] (inclusive; none when
// last < first; numbered as ModelConfig::blocks() counts them, a vision-language model's encoder
// first), with the embeddings and/or the final norm and head. A vision-language model's chunk
// with the embeddings (patches and caption tokens) holds the whole encoder and the projector:
// every chunk boundary carries [B, image tokens + seq, d_model].
struct Chunk {
  int64_t first = 0, last = -1;
  bool embed = false, head = false;
  static Chunk whole(const io::ModelConfig& cfg) { return {0, cfg.blocks() - 1, true, true}; }
};
// The parameters `chunk` reads (indices into param_infos()); a tied embedding belongs to both
// the chunk with the embeddings and the one with the head.
std::vector<size_t> chunk_params(const io::ModelConfig& cfg, const Chunk& chunk);
// One chunk for a [batch, seq] micro-batch; `with_loss`: training (see Traced).
Traced trace_chunk(const io::ModelConfig& cfg, int64_t batch, int64_t seq, const Chunk& chunk,
                   bool with_loss = true, TraceOptions options = {});

// An inference program's graph: T new tokens of each of B sequences, their keys and values
// written to the paged KV pool and their attention read through each sequence's block table
// (docs/inference.md), and the logits of each sequence's last new token. Prefill chunks run it
// with B = 1, decode steps with T = 1; the same model code as trace().
struct InferTraced {
  std::unique_ptr<ir::Graph> graph;
  ir::Var tokens;       // i64 [B, T]
  ir::Var positions;    // i64 [B, T]: consecutive per sequence
  ir::Var block_table;  // i64 [B, kv_max_blocks]: each sequence's pool blocks, in order
  ir::Var pool;         // f32 kv_pool_shape(): bound by the caller, written in place
  ir::Var host_pool;    // f32 kv_pool_shape() of the host blocks; undefined: none
  // Per layer, f32 [staging blocks, 2, block_tokens, kv heads, head dim]: the layer's host
  // blocks gathered for its attention (fetch); empty otherwise.
  std::vector<ir::Var> staging;
  // Per layer, the kv_write node: a staging is complete only after it (the current positions
  // may fall in host blocks).
  std::vector<ir::NodeId> kv_writes;
  ir::Var logits;               // f32 [B, V]
  std::vector<ir::Var> params;  // same order as param_infos()
};

// Blocks of `block_tokens` positions that hold the model's max_seq positions (a block table row).
int64_t kv_max_blocks(const io::ModelConfig& cfg, int64_t block_tokens);
// The pool: [blocks, layers, 2 (keys, values), block_tokens, kv heads, head dim].
Shape kv_pool_shape(const io::ModelConfig& cfg, int64_t blocks, int64_t block_tokens);
// Throws when seq exceeds the model's max positions. With host_blocks > 0 the block ids from
// pool_blocks on name blocks of the host pool: each layer's attention reads them there
// (fetch_slots 0) or from its layer's staging (a source of staging_blocks >= batch x
// fetch_slots blocks, which the caller gathers from the host pool once the layer's kv_write has
// run: the offload planner's prefetch of it). `options`: as trace's (logical shapes for
// programs that are sharded).
InferTraced trace_infer(const io::ModelConfig& cfg, int64_t batch, int64_t seq, int64_t pool_blocks,
                        int64_t block_tokens, int64_t host_blocks = 0, int64_t fetch_slots = 0,
                        int64_t staging_blocks = 0, TraceOptions options = {});

// Fresh parameters (GPT-2 / Llama initialisation: normal(0, 0.02), residual projections scaled
// by 1/sqrt(2 * n_layer), norms 1, biases 0), a pure function of (seed, name, index).
io::TensorMap init_params(const io::ModelConfig& cfg, uint64_t seed);

// Checks a loaded checkpoint against the model: every parameter present with the right shape
// (HF "transformer." prefixes and a tied "lm_head.weight" are accepted); converts to f32.
// Throws naming the missing or mis-shaped tensor.
io::TensorMap adopt_params(const io::ModelConfig& cfg, io::TensorMap loaded,
                           const std::string& where);

}  // namespace hp::nn
