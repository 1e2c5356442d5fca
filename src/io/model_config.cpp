// Parsing and validation of HF config.json for GPT-2, Llama and the vision-language model (a
// LLaVA-style config: vision_config, text_config) into ModelConfig.
// Not a general HF config loader: keys that change the math and are not implemented are errors.
#include "hp/io/model_config.hpp"

#include "hp/core/error.hpp"
#include "hp/core/shape.hpp"

namespace hp::io {

const char* architecture_name(Architecture a) {
  return a == Architecture::kGpt2 ? "gpt2" : "llama";
}

namespace {

void check_positive(int64_t v, const char* key, const std::string& where) {
  HP_CHECK(v > 0, "[config] ", where, ": '", key, "' must be positive, got ", v);
}

// A size in 1..max, checked as soon as it is read so that nothing multiplies it unchecked.
int64_t check_size(int64_t v, const char* key, int64_t max, const std::string& where) {
  check_positive(v, key, where);
  HP_CHECK(v <= max, "[config] ", where, ": '", key, "' = ", v, " is out of range (max ", max, ")");
  return v;
}

ModelConfig parse_gpt2(const Json& j, const std::string& w) {
  ModelConfig c;
  c.arch = Architecture::kGpt2;
  c.n_layer = json_int(j, "n_layer", w);
  c.d_model = check_size(json_int(j, "n_embd", w), "n_embd", kMaxWidth, w);
  c.n_head = check_size(json_int(j, "n_head", w), "n_head", kMaxHeads, w);
  c.n_kv_head = c.n_head;
  if (json_has(j, "n_positions")) {
    c.max_seq = json_int(j, "n_positions", w);
  } else {
    HP_CHECK(json_has(j, "n_ctx"), "[config] ", w, ": missing key 'n_positions' (or 'n_ctx')");
    c.max_seq = json_int(j, "n_ctx", w);
  }
  c.vocab = json_int(j, "vocab_size", w);
  c.norm_eps = json_double(j, "layer_norm_epsilon", 1e-5, w);
  c.d_ff = json_int(j, "n_inner", 4 * c.d_model, w);
  c.activation = json_string(j, "activation_function", "gelu_new", w);
  HP_CHECK(
      c.activation == "gelu_new" || c.activation == "gelu_pytorch_tanh" || c.activation == "gelu",
      "[config] ", w, ": activation_function '", c.activation,
      "' is not supported (use gelu_new, gelu_pytorch_tanh or gelu)");
  c.tied_embeddings = json_bool(j, "tie_word_embeddings", true, w);
  HP_CHECK(json_bool(j, "scale_attn_weights", true, w), "[config] ", w,
           ": scale_attn_weights=false is not supported");
  HP_CHECK(!json_bool(j, "scale_attn_by_inverse_layer_idx", false, w), "[config] ", w,
           ": scale_attn_by_inverse_layer_idx=true is not supported");
  if (c.n_head > 0) c.head_dim = c.d_model / c.n_head;
  return c;
}

ModelConfig parse_llama(const Json& j, const std::string& w) {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.n_layer = json_int(j, "num_hidden_layers", w);
  c.d_model = check_size(json_int(j, "hidden_size", w), "hidden_size", kMaxWidth, w);
  c.d_ff = json_int(j, "intermediate_size", w);
  c.n_head = check_size(json_int(j, "num_attention_heads", w), "num_attention_heads", kMaxHeads, w);
  c.n_kv_head = json_int(j, "num_key_value_heads", c.n_head, w);
  c.max_seq = json_int(j, "max_position_embeddings", w);
  c.vocab = json_int(j, "vocab_size", w);
  c.norm_eps = json_double(j, "rms_norm_eps", 1e-6, w);
  c.rope_theta = json_double(j, "rope_theta", 10000.0, w);
  c.tied_embeddings = json_bool(j, "tie_word_embeddings", false, w);
  if (json_has(j, "head_dim")) {
    c.head_dim = json_int(j, "head_dim", w);
  } else {
    HP_CHECK(c.d_model % c.n_head == 0, "[config] ", w, ": 'hidden_size' (", c.d_model,
             ") is not divisible by 'num_attention_heads' (", c.n_head, ")");
    c.head_dim = c.d_model / c.n_head;
  }
  c.activation = json_string(j, "hidden_act", "silu", w);
  HP_CHECK(c.activation == "silu", "[config] ", w, ": hidden_act '", c.activation,
           "' is not supported (only silu)");
  HP_CHECK(!json_has(j, "rope_scaling"), "[config] ", w, ": rope_scaling ",
           j.contains("rope_scaling") ? j["rope_scaling"].dump() : "",
           " is not supported (must be null)");
  HP_CHECK(!json_bool(j, "attention_bias", false, w), "[config] ", w,
           ": attention_bias=true is not supported");
  HP_CHECK(!json_bool(j, "mlp_bias", false, w), "[config] ", w, ": mlp_bias=true is not supported");
  return c;
}

// A LLaVA-style config: "vision_config" (the ViT encoder) and "text_config" (a Llama decoder).
ModelConfig parse_vlm(const Json& j, const std::string& w) {
  const Json& t = json_require(j, "text_config", w);
  const std::string tw = w + ": text_config";
  HP_CHECK(t.is_object() && json_string(t, "model_type", "llama", tw) == "llama", "[config] ", tw,
           ": the decoder must be a llama config object");
  ModelConfig c = parse_llama(t, tw);
  const Json& v = json_require(j, "vision_config", w);
  const std::string vw = w + ": vision_config";
  HP_CHECK(v.is_object(), "[config] ", vw, ": expected a JSON object");
  VisionConfig& vc = c.vision;
  vc.n_layer =
      check_size(json_int(v, "num_hidden_layers", vw), "num_hidden_layers", kMaxLayers, vw);
  vc.d_model = check_size(json_int(v, "hidden_size", vw), "hidden_size", kMaxWidth, vw);
  vc.n_head =
      check_size(json_int(v, "num_attention_heads", vw), "num_attention_heads", kMaxHeads, vw);
  vc.d_ff = check_size(json_int(v, "intermediate_size", vw), "intermediate_size", kMaxWidth, vw);
  vc.image_size = check_size(json_int(v, "image_size", vw), "image_size", kMaxHeads, vw);
  vc.patch_size = check_size(json_int(v, "patch_size", vw), "patch_size", kMaxHeads, vw);
  vc.channels = check_size(json_int(v, "num_channels", 3, vw), "num_channels", 64, vw);
  vc.norm_eps = json_double(v, "layer_norm_eps", 1e-5, vw);
  // The encoder's MLP and the projector use the tanh gelu the gelu op computes.
  const std::string act = json_string(v, "hidden_act", "gelu_pytorch_tanh", vw);
  HP_CHECK(act == "gelu_pytorch_tanh", "[config] ", vw, ": hidden_act '", act,
           "' is not supported (only gelu_pytorch_tanh)");
  const std::string pact = json_string(j, "projector_hidden_act", "gelu_pytorch_tanh", w);
  HP_CHECK(pact == "gelu_pytorch_tanh", "[config] ", w, ": projector_hidden_act '", pact,
           "' is not supported (only gelu_pytorch_tanh)");
  return c;
}

}  // namespace

ModelConfig ModelConfig::from_json(const Json& j, const std::string& where) {
  HP_CHECK(j.is_object(), "[config] ", where, ": expected a JSON object, got ", j.type_name());
  const std::string type = json_string(j, "model_type", where);
  ModelConfig c;
  if (type == "gpt2") {
    c = parse_gpt2(j, where);
  } else if (type == "llama") {
    c = parse_llama(j, where);
  } else if (type == "vlm") {
    c = parse_vlm(j, where);
  } else {
    throw Error("[config] " + where + ": model_type '" + type +
                "' is not supported (use gpt2, llama or vlm)");
  }
  c.validate(where);
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& path) {
  std::filesystem::path p = path;
  if (std::filesystem::is_directory(p)) p /= "config.json";
  HP_CHECK(std::filesystem::exists(p), "[config] ", p.string(), " does not exist");
  return from_json(read_json(p), p.string());
}

void ModelConfig::validate(const std::string& where) const {
  const bool gpt2 = arch == Architecture::kGpt2;
  check_size(n_layer, gpt2 ? "n_layer" : "num_hidden_layers", kMaxLayers, where);
  check_size(d_model, gpt2 ? "n_embd" : "hidden_size", kMaxWidth, where);
  check_size(n_head, gpt2 ? "n_head" : "num_attention_heads", kMaxHeads, where);
  check_size(n_kv_head, "num_key_value_heads", kMaxHeads, where);
  check_size(d_ff, gpt2 ? "n_inner" : "intermediate_size", kMaxWidth, where);
  check_size(max_seq, gpt2 ? "n_positions" : "max_position_embeddings", kMaxPositions, where);
  check_size(vocab, "vocab_size", kMaxVocab, where);
  check_size(head_dim, "head_dim", kMaxHeads, where);
  // Heads x head_dim is the width of q (and of k, v): bounded like d_model.
  HP_CHECK(n_head * head_dim <= kMaxWidth, "[config] ", where, ": ",
           gpt2 ? "'n_head'" : "'num_attention_heads'", " * 'head_dim' = ", n_head * head_dim,
           " is out of range (max ", kMaxWidth, ")");
  HP_CHECK(norm_eps > 0, "[config] ", where, ": '", gpt2 ? "layer_norm_epsilon" : "rms_norm_eps",
           "' must be positive, got ", norm_eps);
  if (gpt2) {
    HP_CHECK(d_model % n_head == 0, "[config] ", where, ": 'n_embd' (", d_model,
             ") is not divisible by 'n_head' (", n_head, ")");
    HP_CHECK(head_dim * n_head == d_model, "[config] ", where, ": head_dim ", head_dim,
             " * n_head ", n_head, " != n_embd ", d_model);
    HP_CHECK(n_kv_head == n_head, "[config] ", where, ": GPT-2 has no grouped-query attention");
  } else {
    HP_CHECK(n_head % n_kv_head == 0, "[config] ", where, ": 'num_attention_heads' (", n_head,
             ") is not divisible by 'num_key_value_heads' (", n_kv_head, ")");
    HP_CHECK(head_dim % 2 == 0, "[config] ", where, ": 'head_dim' must be even for RoPE, got ",
             head_dim);
    HP_CHECK(rope_theta > 0, "[config] ", where, ": 'rope_theta' must be positive, got ",
             rope_theta);
  }
  if (!has_vision()) return;
  const VisionConfig& v = vision;
  const std::string vw = where + ": vision_config";
  HP_CHECK(!gpt2, "[config] ", where, ": a vision-language model's decoder must be llama");
  check_size(v.d_model, "hidden_size", kMaxWidth, vw);
  check_size(v.n_head, "num_attention_heads", kMaxHeads, vw);
  check_size(v.d_ff, "intermediate_size", kMaxWidth, vw);
  check_size(v.patch_size, "patch_size", kMaxHeads, vw);
  check_size(v.channels, "num_channels", 64, vw);
  HP_CHECK(v.n_layer <= kMaxLayers, "[config] ", vw, ": 'num_hidden_layers' = ", v.n_layer,
           " is out of range (max ", kMaxLayers, ")");
  HP_CHECK(v.d_model % v.n_head == 0, "[config] ", vw, ": 'hidden_size' (", v.d_model,
           ") is not divisible by 'num_attention_heads' (", v.n_head, ")");
  HP_CHECK(v.image_size % v.patch_size == 0, "[config] ", vw, ": 'image_size' (", v.image_size,
           ") is not divisible by 'patch_size' (", v.patch_size, ")");
  HP_CHECK(v.patch_dim() <= kMaxWidth, "[config] ", vw, ": a patch has ", v.patch_dim(),
           " values (max ", kMaxWidth, ")");
  HP_CHECK(v.norm_eps > 0, "[config] ", vw, ": 'layer_norm_eps' must be positive, got ",
           v.norm_eps);
  // The decoder's positions hold the image's tokens and at least one caption token.
  HP_CHECK(max_seq > v.tokens(), "[config] ", where, ": text_config 'max_position_embeddings' (",
           max_seq, ") must exceed the image's ", v.tokens(), " patch tokens");
}

int64_t ModelConfig::parameter_count() const {
  validate();  // the bounds make every product below fit int64; checked anyway
  auto mul = [](int64_t a, int64_t b) { return checked_mul(a, b, "parameter count"); };
  auto add = [](int64_t a, int64_t b) { return checked_add(a, b, "parameter count"); };
  const int64_t D = d_model, F = d_ff, V = vocab;
  int64_t per_layer = 0, rest = 0;
  if (arch == Architecture::kGpt2) {
    // ln_1, ln_2 (2D each); c_attn D x 3D + 3D; c_proj D x D + D; c_fc D x F + F; proj F x D + D.
    per_layer = add(add(mul(4 * D, D), 9 * D), add(mul(2 * D, F), F));
    rest = add(mul(add(V, max_seq), D), 2 * D);  // wte, wpe, ln_f
  } else {
    const int64_t Q = n_head * head_dim, KV = n_kv_head * head_dim;
    // two norms; q, o: Q x D; k, v: KV x D; gate, up, down: F x D.
    per_layer = add(add(2 * D, mul(2 * Q + 2 * KV, D)), mul(3 * F, D));
    rest = add(mul(V, D), D);  // embed_tokens, norm
  }
  if (!tied_embeddings) rest = add(rest, mul(V, D));
  if (has_vision()) {
    const VisionConfig& v = vision;
    // Per encoder block: two layer norms (2 Dv each), q, k, v, o (Dv x Dv each, and a bias but
    // k's), fc1 (Fv x Dv + Fv), fc2 (Dv x Fv + Dv); then patch embedding, positions, final norm,
    // projector.
    const int64_t Dv = v.d_model, Fv = v.d_ff;
    const int64_t block = add(add(mul(4 * Dv, Dv), 8 * Dv), add(mul(2 * Dv, Fv), Fv));
    rest = add(rest, mul(v.n_layer, block));
    rest = add(rest, add(mul(v.patch_dim() + 1 + v.tokens(), Dv), 2 * Dv));
    rest = add(rest, add(mul(Dv + 1, D), mul(D + 1, D)));
  }
  return add(mul(n_layer, per_layer), rest);
}

Json ModelConfig::to_json() const {
  Json j;
  j["model_type"] = architecture_name(arch);
  j["vocab_size"] = vocab;
  j["tie_word_embeddings"] = tied_embeddings;
  if (arch == Architecture::kGpt2) {
    j["architectures"] = {"GPT2LMHeadModel"};
    j["n_layer"] = n_layer;
    j["n_embd"] = d_model;
    j["n_head"] = n_head;
    j["n_positions"] = max_seq;
    j["n_ctx"] = max_seq;
    j["n_inner"] = d_ff;
    j["layer_norm_epsilon"] = norm_eps;
    j["activation_function"] = activation;
  } else {
    j["architectures"] = {"LlamaForCausalLM"};
    j["num_hidden_layers"] = n_layer;
    j["hidden_size"] = d_model;
    j["intermediate_size"] = d_ff;
    j["num_attention_heads"] = n_head;
    j["num_key_value_heads"] = n_kv_head;
    j["head_dim"] = head_dim;
    j["max_position_embeddings"] = max_seq;
    j["rms_norm_eps"] = norm_eps;
    j["rope_theta"] = rope_theta;
    j["rope_scaling"] = nullptr;
    j["hidden_act"] = activation;
  }
  if (!has_vision()) return j;
  Json v;
  v["model_type"] = "vit";
  v["num_hidden_layers"] = vision.n_layer;
  v["hidden_size"] = vision.d_model;
  v["intermediate_size"] = vision.d_ff;
  v["num_attention_heads"] = vision.n_head;
  v["image_size"] = vision.image_size;
  v["patch_size"] = vision.patch_size;
  v["num_channels"] = vision.channels;
  v["layer_norm_eps"] = vision.norm_eps;
  v["hidden_act"] = "gelu_pytorch_tanh";
  j["model_type"] = "llama";
  j.erase("architectures");
  return Json{{"model_type", "vlm"},
              {"architectures", {"VlmForConditionalGeneration"}},
              {"projector_hidden_act", "gelu_pytorch_tanh"},
              {"vision_config", v},
              {"text_config", j}};
}

std::string ModelConfig::first_difference(const ModelConfig& other) const {
  const Json a = to_json(), b = other.to_json();
  if (a.value("model_type", "") != b.value("model_type", ""))
    return "'model_type' is " + a["model_type"].dump() + " against " + b["model_type"].dump();
  for (const auto& [key, value] : a.items()) {
    auto it = b.find(key);
    if (it == b.end() || *it != value)
      return "'" + key + "' is " + value.dump() + " against " +
             (it == b.end() ? "none" : it->dump());
  }
  return "";
}

}  // namespace hp::io
