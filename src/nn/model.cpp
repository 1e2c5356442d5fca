// GPT-2, Llama and the vision-language model as traced graphs with Hugging Face names and weight
// layouts: GPT-2 uses Conv1D weights [in, out] (x @ W), Llama and the vision encoder nn.Linear
// weights [out, in] (x @ W^T). The vision-language model's decoder is the Llama code below, its
// names under "language_model."; its encoder is a ViT under "vision_tower.vision_model.".
#include "hp/nn/model.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "hp/core/rng.hpp"
#include "hp/ops/ops.hpp"

namespace hp::nn {

using io::Architecture;
using io::ModelConfig;

namespace {

// A decoder parameter's name: a vision-language model's sits under "language_model.".
std::string text(const ModelConfig& c, const std::string& name) {
  return c.has_vision() ? "language_model." + name : name;
}

std::string layer(const ModelConfig& c, int64_t i) {
  return c.arch == Architecture::kGpt2 ? "h." + std::to_string(i) + "."
                                       : text(c, "model.layers." + std::to_string(i) + ".");
}

const char kVision[] = "vision_tower.vision_model.";
const char kProjector[] = "multi_modal_projector.";

std::string vision_layer(int64_t i) {
  return kVision + std::string("encoder.layers.") + std::to_string(i) + ".";
}

void add(std::vector<ParamInfo>& v, std::string name, Shape s, double std_, double value = 0,
         Shape logical = {}) {
  bool decay = s.size() >= 2;
  v.push_back({std::move(name), std::move(s), std_, value, decay, std::move(logical)});
}

// The encoder (ViT: patch embedding as a linear over flattened patches, learned positions,
// pre-norm blocks, a final norm) and the projector (linear, gelu, linear) into the decoder's width.
void add_vision(std::vector<ParamInfo>& p, const ModelConfig& c) {
  const io::VisionConfig& v = c.vision;
  const int64_t Dv = v.d_model, Fv = v.d_ff, D = c.d_model;
  const double s = 0.02;
  const std::string e = kVision + std::string("embeddings.");
  add(p, e + "patch_embedding.weight", {Dv, v.patch_dim()}, s);
  add(p, e + "patch_embedding.bias", {Dv}, 0);
  add(p, e + "position_embedding.weight", {v.tokens(), Dv}, s);
  for (int64_t i = 0; i < v.n_layer; ++i) {
    const std::string l = vision_layer(i);
    add(p, l + "layer_norm1.weight", {Dv}, 0, 1);
    add(p, l + "layer_norm1.bias", {Dv}, 0);
    // k_proj has no bias (as Whisper's): it would add one constant to all of a query's scores,
    // which the softmax ignores, so its gradient is zero.
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      add(p, l + "self_attn." + proj + ".weight", {Dv, Dv}, s);
      if (proj != std::string("k_proj")) add(p, l + "self_attn." + proj + ".bias", {Dv}, 0);
    }
    add(p, l + "layer_norm2.weight", {Dv}, 0, 1);
    add(p, l + "layer_norm2.bias", {Dv}, 0);
    add(p, l + "mlp.fc1.weight", {Fv, Dv}, s);
    add(p, l + "mlp.fc1.bias", {Fv}, 0);
    add(p, l + "mlp.fc2.weight", {Dv, Fv}, s);
    add(p, l + "mlp.fc2.bias", {Dv}, 0);
  }
  add(p, kVision + std::string("post_layernorm.weight"), {Dv}, 0, 1);
  add(p, kVision + std::string("post_layernorm.bias"), {Dv}, 0);
  add(p, kProjector + std::string("linear_1.weight"), {D, Dv}, s);
  add(p, kProjector + std::string("linear_1.bias"), {D}, 0);
  add(p, kProjector + std::string("linear_2.weight"), {D, D}, s);
  add(p, kProjector + std::string("linear_2.bias"), {D}, 0);
}

}  // namespace

BatchShapes batch_shapes(const ModelConfig& c, int64_t batch, int64_t seq) {
  if (!c.has_vision()) return {{batch, seq}, {batch, seq}};
  return {{batch, c.vision.pixels() + seq}, {batch, c.vision.tokens() + seq}};
}

int64_t boundary_seq(const ModelConfig& c, int64_t seq) {
  return c.vision.tokens() + seq;
}

std::vector<ParamInfo> param_infos(const ModelConfig& c) {
  std::vector<ParamInfo> p;
  const int64_t D = c.d_model, F = c.d_ff, V = c.vocab;
  const double s = 0.02, sres = 0.02 / std::sqrt(2.0 * double(c.n_layer));
  if (c.arch == Architecture::kGpt2) {
    add(p, "wte.weight", {V, D}, s);
    add(p, "wpe.weight", {c.max_seq, D}, 0.01);
    for (int64_t i = 0; i < c.n_layer; ++i) {
      std::string l = layer(c, i);
      add(p, l + "ln_1.weight", {D}, 0, 1);
      add(p, l + "ln_1.bias", {D}, 0);
      add(p, l + "attn.c_attn.weight", {D, 3 * D}, s, 0, {D, 3, D});
      add(p, l + "attn.c_attn.bias", {3 * D}, 0, 0, {3, D});
      add(p, l + "attn.c_proj.weight", {D, D}, sres);
      add(p, l + "attn.c_proj.bias", {D}, 0);
      add(p, l + "ln_2.weight", {D}, 0, 1);
      add(p, l + "ln_2.bias", {D}, 0);
      add(p, l + "mlp.c_fc.weight", {D, F}, s);
      add(p, l + "mlp.c_fc.bias", {F}, 0);
      add(p, l + "mlp.c_proj.weight", {F, D}, sres);
      add(p, l + "mlp.c_proj.bias", {D}, 0);
    }
    add(p, "ln_f.weight", {D}, 0, 1);
    add(p, "ln_f.bias", {D}, 0);
    if (!c.tied_embeddings) add(p, "lm_head.weight", {V, D}, s);
  } else {
    if (c.has_vision()) add_vision(p, c);
    const int64_t Q = c.n_head * c.head_dim, KV = c.n_kv_head * c.head_dim;
    add(p, text(c, "model.embed_tokens.weight"), {V, D}, s);
    for (int64_t i = 0; i < c.n_layer; ++i) {
      std::string l = layer(c, i);
      add(p, l + "input_layernorm.weight", {D}, 0, 1);
      add(p, l + "self_attn.q_proj.weight", {Q, D}, s);
      add(p, l + "self_attn.k_proj.weight", {KV, D}, s);
      add(p, l + "self_attn.v_proj.weight", {KV, D}, s);
      add(p, l + "self_attn.o_proj.weight", {D, Q}, sres);
      add(p, l + "post_attention_layernorm.weight", {D}, 0, 1);
      add(p, l + "mlp.gate_proj.weight", {F, D}, s);
      add(p, l + "mlp.up_proj.weight", {F, D}, s);
      add(p, l + "mlp.down_proj.weight", {D, F}, sres);
    }
    add(p, text(c, "model.norm.weight"), {D}, 0, 1);
    if (!c.tied_embeddings) add(p, text(c, "lm_head.weight"), {V, D}, s);
  }
  return p;
}

namespace {

// Names a norm's input "<module>.input" (the residual stream) and its output "<module>", the
// values a strategy places to run the norm regions sequence-parallel. Returns the output.
Var norm_named(ir::Graph& g, const std::string& module, Var in, Var out) {
  if (g.value(in.id).name.empty()) g.set_name(in.id, module + ".input");
  g.set_name(out.id, module);
  return out;
}

// The block's attention: the hooks' (the inference programs' cache) or causal attention.
Var attend(const BlockHooks& hk, int64_t i, Var q, Var k, Var v, double scale) {
  return hk.attend ? hk.attend(i, q, k, v) : attention(q, k, v, scale);
}

Var gpt2_block(ir::Graph& g, const ModelConfig& c, const ParamVars& P, int64_t i, Var x,
               const BlockHooks& hk) {
  const std::string l = layer(c, i);
  g.set_scope("h." + std::to_string(i) + ".attn");
  const int64_t B = x.dim(0), T = x.dim(1), D = c.d_model, H = c.n_head, Dh = c.head_dim;
  Var h = norm_named(g, l + "ln_1", x,
                     layer_norm(x, P.at(l + "ln_1.weight"), P.at(l + "ln_1.bias"), c.norm_eps));
  Var w = P.at(l + "attn.c_attn.weight"), b = P.at(l + "attn.c_attn.bias");
  std::vector<Var> parts;
  if (w.rank() == 3) {  // logical [D, 3, D]: one product per q, k, v
    for (int64_t j = 0; j < 3; ++j)
      parts.push_back(matmul(h, reshape(slice(w, 1, j, j + 1), {D, D})) +
                      reshape(slice(b, 0, j, j + 1), {D}));
  } else {
    Var qkv = matmul(h, w) + b;
    parts = split(qkv, 2, {D, D, D});
  }
  Var q = reshape(parts[0], {B, T, H, Dh});
  Var k = reshape(parts[1], {B, T, H, Dh});
  Var v = reshape(parts[2], {B, T, H, Dh});
  Var y = reshape(attend(hk, i, q, k, v, 1.0 / std::sqrt(double(Dh))), {B, T, D});
  Var attn_out = matmul(y, P.at(l + "attn.c_proj.weight")) + P.at(l + "attn.c_proj.bias");
  g.set_scope("h." + std::to_string(i) + ".mlp");
  std::tie(x, h) =
      add_layer_norm(x, attn_out, P.at(l + "ln_2.weight"), P.at(l + "ln_2.bias"), c.norm_eps);
  norm_named(g, l + "ln_2", x, h);
  Var f = bias_gelu(matmul(h, P.at(l + "mlp.c_fc.weight")), P.at(l + "mlp.c_fc.bias"));
  return x + (matmul(f, P.at(l + "mlp.c_proj.weight")) + P.at(l + "mlp.c_proj.bias"));
}

Var llama_block(ir::Graph& g, const ModelConfig& c, const ParamVars& P, int64_t i, Var x,
                const BlockHooks& hk) {
  const std::string l = layer(c, i);
  g.set_scope("layers." + std::to_string(i) + ".attn");
  const int64_t B = x.dim(0), T = x.dim(1), H = c.n_head, KV = c.n_kv_head, Dh = c.head_dim;
  Var h = norm_named(g, l + "input_layernorm", x,
                     rms_norm(x, P.at(l + "input_layernorm.weight"), c.norm_eps));
  Var q = reshape(matmul(h, P.at(l + "self_attn.q_proj.weight"), false, true), {B, T, H, Dh});
  Var k = reshape(matmul(h, P.at(l + "self_attn.k_proj.weight"), false, true), {B, T, KV, Dh});
  Var v = reshape(matmul(h, P.at(l + "self_attn.v_proj.weight"), false, true), {B, T, KV, Dh});
  const bool at = hk.positions.defined();
  q = at ? rope(q, c.rope_theta, hk.positions) : rope(q, c.rope_theta);
  k = at ? rope(k, c.rope_theta, hk.positions) : rope(k, c.rope_theta);
  Var y = reshape(attend(hk, i, q, k, v, 1.0 / std::sqrt(double(Dh))), {B, T, H * Dh});
  x = x + matmul(y, P.at(l + "self_attn.o_proj.weight"), false, true);
  g.set_scope("layers." + std::to_string(i) + ".mlp");
  h = norm_named(g, l + "post_attention_layernorm", x,
                 rms_norm(x, P.at(l + "post_attention_layernorm.weight"), c.norm_eps));
  Var gate = silu(matmul(h, P.at(l + "mlp.gate_proj.weight"), false, true));
  Var up = matmul(h, P.at(l + "mlp.up_proj.weight"), false, true);
  return x + matmul(gate * up, P.at(l + "mlp.down_proj.weight"), false, true);
}

// Pre-norm ViT block `i` on x [B, N, Dv]: bidirectional attention (every patch attends to every
// patch, composed of batched products and a softmax), then a gelu MLP; nn.Linear weights.
Var vision_block(ir::Graph& g, const io::VisionConfig& v, const ParamVars& P, int64_t i, Var x) {
  const std::string l = vision_layer(i);
  g.set_scope("vision.layers." + std::to_string(i) + ".attn");
  const int64_t B = x.dim(0), N = x.dim(1), H = v.n_head, Dh = v.d_model / v.n_head;
  auto linear = [&](Var in, const std::string& name) {
    Var y = matmul(in, P.at(name + ".weight"), false, true);
    auto b = P.find(name + ".bias");
    return b == P.end() ? y : y + b->second;
  };
  Var h = layer_norm(x, P.at(l + "layer_norm1.weight"), P.at(l + "layer_norm1.bias"), v.norm_eps);
  auto heads = [&](const char* proj) {  // [B, H, N, Dh]
    return permute(reshape(linear(h, l + "self_attn." + proj), {B, N, H, Dh}), {0, 2, 1, 3});
  };
  Var q = heads("q_proj"), k = heads("k_proj"), vv = heads("v_proj");
  Var p = softmax(scale(matmul(q, k, false, true), 1.0 / std::sqrt(double(Dh))));
  Var y = reshape(permute(matmul(p, vv), {0, 2, 1, 3}), {B, N, v.d_model});
  x = x + linear(y, l + "self_attn.out_proj");
  g.set_scope("vision.layers." + std::to_string(i) + ".mlp");
  h = layer_norm(x, P.at(l + "layer_norm2.weight"), P.at(l + "layer_norm2.bias"), v.norm_eps);
  Var f = bias_gelu(matmul(h, P.at(l + "mlp.fc1.weight"), false, true), P.at(l + "mlp.fc1.bias"));
  return x + linear(f, l + "mlp.fc2");
}

// The image tokens [B, N, d_model] of the pixel levels f32 [B, C*S*S] (0..255, channel-major):
// patches flattened in (channel, row, column) order, as a convolution's weight [Dv, C, p, p]
// reads them, embedded, the encoder, the final norm, then the projector.
Var image_tokens(ir::Graph& g, const ModelConfig& c, const ParamVars& P, Var pixels) {
  const io::VisionConfig& v = c.vision;
  g.set_scope("vision.embed");
  const int64_t B = pixels.dim(0), C = v.channels, G = v.grid(), p = v.patch_size;
  Var x = scale(pixels, 1.0 / 255.0);
  x = reshape(permute(reshape(x, {B, C, G, p, G, p}), {0, 2, 4, 1, 3, 5}), {B, G * G, C * p * p});
  const std::string e = kVision + std::string("embeddings.");
  x = matmul(x, P.at(e + "patch_embedding.weight"), false, true) +
      P.at(e + "patch_embedding.bias") + P.at(e + "position_embedding.weight");
  for (int64_t i = 0; i < v.n_layer; ++i) x = vision_block(g, v, P, i, x);
  g.set_scope("vision.projector");
  x = layer_norm(x, P.at(kVision + std::string("post_layernorm.weight")),
                 P.at(kVision + std::string("post_layernorm.bias")), v.norm_eps);
  const std::string m = kProjector;
  x = bias_gelu(matmul(x, P.at(m + "linear_1.weight"), false, true), P.at(m + "linear_1.bias"));
  return matmul(x, P.at(m + "linear_2.weight"), false, true) + P.at(m + "linear_2.bias");
}

// The parameters `index` names (indices into param_infos(), ascending) as graph sources, and by
// name.
std::vector<Var> declare_params(ir::Graph& g, const ModelConfig& c, bool logical_qkv,
                                const std::vector<size_t>& index, ParamVars& P) {
  const std::vector<ParamInfo> infos = param_infos(c);
  std::vector<Var> out;
  for (size_t i : index) {
    const ParamInfo& pi = infos[i];
    const bool logical = logical_qkv && !pi.logical.empty();
    out.push_back(g.param(pi.name, logical ? pi.logical : pi.shape));
    P[pi.name] = out.back();
  }
  return out;
}

// Token embeddings plus, for GPT-2, the learned positions: those of `positions` when defined,
// else 0..T-1.
Var embed(ir::Graph& g, const ModelConfig& c, const ParamVars& P, Var tokens, Var positions) {
  g.set_scope("embed");
  if (c.arch != Architecture::kGpt2)
    return embedding(P.at(text(c, "model.embed_tokens.weight")), tokens);
  Var wpe = P.at("wpe.weight");
  if (positions.defined()) return embedding(P.at("wte.weight"), tokens) + embedding(wpe, positions);
  if (tokens.dim(1) < c.max_seq) wpe = slice(wpe, 0, 0, tokens.dim(1));
  return embedding(P.at("wte.weight"), tokens) + wpe;
}

// The final norm and the vocabulary projection of x [..., D].
Var head(ir::Graph& g, const ModelConfig& c, const ParamVars& P, Var x) {
  g.set_scope("head");
  std::string w;
  if (c.arch == Architecture::kGpt2) {
    x = norm_named(g, "ln_f", x, layer_norm(x, P.at("ln_f.weight"), P.at("ln_f.bias"), c.norm_eps));
    w = c.tied_embeddings ? "wte.weight" : "lm_head.weight";
  } else {
    x = norm_named(g, text(c, "model.norm"), x,
                   rms_norm(x, P.at(text(c, "model.norm.weight")), c.norm_eps));
    w = text(c, c.tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  }
  return matmul(x, P.at(w), false, true);
}

}  // namespace

void check_tokens(const ModelConfig& c, int64_t batch, int64_t seq) {
  HP_CHECK(batch > 0 && seq > 0, "[model] batch and seq must be positive, got ", batch, " and ",
           seq);
  const int64_t image = c.vision.tokens();
  HP_CHECK(image + seq <= c.max_seq, "[model] sequence length ", seq,
           image ? " after " + std::to_string(image) + " image tokens" : std::string(),
           " exceeds the model's ", c.max_seq, " positions");
}

Var block(const ModelConfig& c, const ParamVars& P, int64_t layer, Var x, const BlockHooks& hk) {
  return c.arch == Architecture::kGpt2 ? gpt2_block(*x.g, c, P, layer, x, hk)
                                       : llama_block(*x.g, c, P, layer, x, hk);
}

std::vector<size_t> chunk_params(const ModelConfig& c, const Chunk& k) {
  const bool gpt2 = c.arch == Architecture::kGpt2;
  const std::string embed = gpt2 ? "wte.weight" : text(c, "model.embed_tokens.weight");
  const int64_t Lv = c.vision.n_layer;  // the encoder's blocks go with the embeddings
  auto in_chunk = [&](const std::string& name) {
    for (int64_t i = std::max(k.first, Lv); i <= k.last; ++i)
      if (name.rfind(layer(c, i - Lv), 0) == 0) return true;
    if (k.embed && (name == embed || (gpt2 && name == "wpe.weight"))) return true;
    if (k.embed && (name.rfind(kVision, 0) == 0 || name.rfind(kProjector, 0) == 0)) return true;
    if (!k.head) return false;
    if (name == text(c, "lm_head.weight") || (c.tied_embeddings && name == embed)) return true;
    return name.rfind(gpt2 ? "ln_f." : text(c, "model.norm."), 0) == 0;
  };
  std::vector<size_t> out;
  const std::vector<ParamInfo> infos = param_infos(c);
  for (size_t i = 0; i < infos.size(); ++i)
    if (in_chunk(infos[i].name)) out.push_back(i);
  return out;
}

Traced trace_chunk(const ModelConfig& c, int64_t batch, int64_t seq, const Chunk& k, bool with_loss,
                   TraceOptions options) {
  check_tokens(c, batch, seq);
  HP_CHECK(k.first >= 0 && k.last < c.blocks() && (k.first <= k.last || k.embed || k.head),
           "[model] chunk of blocks ", k.first, "-", k.last, " outside the model's ", c.blocks());
  const int64_t Lv = c.vision.n_layer;
  HP_CHECK(k.embed ? k.first == 0 && k.last >= Lv - 1 : k.first >= Lv, "[model] chunk of blocks ",
           k.first, "-", k.last, ": the encoder's blocks 0-", Lv - 1,
           " go whole with the embeddings (a stage boundary inside the encoder is not supported)");
  Traced t;
  t.graph = std::make_unique<ir::Graph>();
  ir::Graph& g = *t.graph;
  ParamVars P;
  t.param_index = chunk_params(c, k);
  t.params = declare_params(g, c, options.logical_qkv, t.param_index, P);
  Var x;
  const BatchShapes shapes = batch_shapes(c, batch, seq);
  if (k.embed && c.has_vision()) {  // the image's tokens, then the caption's
    t.tokens = g.input("tokens", {shapes.tokens, DType::kI64});
    // The row is cut in f32 (slices are float kernels): token ids below the vocabulary bound
    // (2^24) and levels are exact in f32.
    const int64_t px = c.vision.pixels();
    Var row = cast(t.tokens, DType::kF32);
    Var image = image_tokens(g, c, P, slice(row, 1, 0, px));
    Var caption = cast(slice(row, 1, px, px + seq), DType::kI64);
    x = concat({image, embed(g, c, P, caption, Var{})}, 1);
  } else if (k.embed) {
    t.tokens = g.input("tokens", {shapes.tokens, DType::kI64});
    x = embed(g, c, P, t.tokens, Var{});
  } else {
    x = t.x_in = g.input("x_in", {{batch, boundary_seq(c, seq), c.d_model}, DType::kF32});
  }
  for (int64_t i = std::max(k.first, Lv); i <= k.last; ++i) x = block(c, P, i - Lv, x);
  if (!k.head) {
    t.x_out = x;
    g.set_name(x.id, "x_out");
    if (with_loss) {  // sum(x_out * g_out): its gradients are the chunk's VJP of g_out
      t.g_out = g.input("g_out", {{batch, boundary_seq(c, seq), c.d_model}, DType::kF32});
      g.set_scope("loss");
      t.loss = sum(x * t.g_out);
      g.set_name(t.loss.id, "loss");
    }
    g.set_scope("");
    return t;
  }
  t.logits = head(g, c, P, x);
  g.set_name(t.logits.id, "logits");
  if (with_loss) {
    t.targets = g.input("targets", {shapes.targets, DType::kI64});
    g.set_scope("loss");
    t.loss = cross_entropy(t.logits, t.targets);
    g.set_name(t.loss.id, "loss");
  }
  g.set_scope("");
  return t;
}

Traced trace(const ModelConfig& c, int64_t batch, int64_t seq, bool with_loss,
             TraceOptions options) {
  return trace_chunk(c, batch, seq, Chunk::whole(c), with_loss, options);
}

int64_t kv_max_blocks(const ModelConfig& c, int64_t block_tokens) {
  HP_CHECK(block_tokens > 0, "[model] block_tokens must be positive, got ", block_tokens);
  return (c.max_seq + block_tokens - 1) / block_tokens;
}

Shape kv_pool_shape(const ModelConfig& c, int64_t blocks, int64_t block_tokens) {
  return {blocks, c.n_layer, 2, block_tokens, c.n_kv_head, c.head_dim};
}

InferTraced trace_infer(const ModelConfig& c, int64_t batch, int64_t seq, int64_t pool_blocks,
                        int64_t block_tokens, int64_t host_blocks, int64_t fetch_slots,
                        int64_t staging_blocks, TraceOptions options) {
  check_tokens(c, batch, seq);
  HP_CHECK(!c.has_vision(), "[model] inference of a vision-language model is not supported");
  HP_CHECK(pool_blocks > 0, "[model] the KV pool needs blocks, got ", pool_blocks);
  InferTraced t;
  t.graph = std::make_unique<ir::Graph>();
  ir::Graph& g = *t.graph;
  ParamVars P;
  t.params = declare_params(g, c, options.logical_qkv, chunk_params(c, Chunk::whole(c)), P);
  t.tokens = g.input("tokens", {{batch, seq}, DType::kI64});
  t.positions = g.input("positions", {{batch, seq}, DType::kI64});
  t.block_table = g.input("block_table", {{batch, kv_max_blocks(c, block_tokens)}, DType::kI64});
  // Persistent state, not a per-step input: splitting it (kv heads over tp) splits no batch.
  t.pool = g.input("kv_pool", {kv_pool_shape(c, pool_blocks, block_tokens), DType::kF32},
                   ir::ValueKind::kState);
  BlockHooks hk;
  hk.positions = t.positions;
  if (host_blocks > 0)
    t.host_pool =
        g.input("kv_host_pool", {kv_pool_shape(c, host_blocks, block_tokens), DType::kF32});
  if (host_blocks > 0 && fetch_slots > 0)
    for (int64_t l = 0; l < c.n_layer; ++l)
      t.staging.push_back(
          g.input("kv_staging." + std::to_string(l),
                  {{staging_blocks, 2, block_tokens, c.n_kv_head, c.head_dim}, DType::kF32}));
  hk.attend = [&t, &g, fetch_slots](int64_t layer, Var q, Var k, Var v) {
    Var lengths = kv_write(t.pool, k, v, t.block_table, t.positions, layer, t.host_pool);
    t.kv_writes.push_back(g.value(lengths.id).producer);
    return paged_attention(q, t.pool, t.block_table, lengths, layer,
                           1.0 / std::sqrt(double(q.dim(3))),
                           t.staging.empty() ? t.host_pool : t.staging[size_t(layer)], fetch_slots);
  };
  Var x = embed(g, c, P, t.tokens, t.positions);
  for (int64_t i = 0; i < c.n_layer; ++i) x = block(c, P, i, x, hk);
  if (seq > 1) x = slice(x, 1, seq - 1, seq);  // only the last position's logits are read
  t.logits = reshape(head(g, c, P, x), {batch, c.vocab});
  g.set_name(t.logits.id, "logits");
  g.set_scope("");
  return t;
}

io::TensorMap init_params(const ModelConfig& c, uint64_t seed) {
  io::TensorMap out;
  for (const auto& pi : param_infos(c)) {
    Tensor t(pi.shape, DType::kF32);
    float* p = t.f32();
    const uint64_t stream = rng::stream_of(pi.name.c_str());
    for (int64_t i = 0; i < t.numel(); ++i)
      p[i] = pi.init_std > 0 ? float(pi.init_std * rng::normal(seed, stream, uint64_t(i)))
                             : float(pi.init_value);
    out.emplace(pi.name, std::move(t));
  }
  return out;
}

io::TensorMap adopt_params(const ModelConfig& c, io::TensorMap loaded, const std::string& where) {
  io::TensorMap out;
  for (const auto& pi : param_infos(c)) {
    auto it = loaded.find(pi.name);
    if (it == loaded.end()) it = loaded.find("transformer." + pi.name);
    HP_CHECK(it != loaded.end(), "[model] ", where, ": missing parameter '", pi.name, "'");
    HP_CHECK(it->second.shape() == pi.shape, "[model] ", where, ": parameter '", pi.name,
             "' has shape ", shape_str(it->second.shape()), ", the config needs ",
             shape_str(pi.shape));
    Tensor t = it->second.dtype() == DType::kF32 ? it->second : it->second.to(DType::kF32);
    // A NaN or infinite weight is a damaged file, never a model: refuse it before it computes.
    const float* v = t.is_contiguous() ? t.f32() : (t = t.clone()).f32();
    for (int64_t k = 0, n = t.numel(); k < n; ++k)
      HP_CHECK(std::isfinite(v[k]), "[model] ", where, ": parameter '", pi.name,
               "' holds a non-finite value (", v[k], ") at element ", k);
    out.emplace(pi.name, t);
  }
  return out;
}

}  // namespace hp::nn
