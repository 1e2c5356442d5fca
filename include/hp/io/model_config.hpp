// ModelConfig: the normalised shape of a GPT-2 or Llama model, or of a vision-language model (a
// ViT encoder and projector in front of a Llama decoder), parsed from a Hugging Face-style
// config.json and written back in the same form.
// Not a model builder (nn/ does that) and not every HF option: unsupported ones are errors.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "hp/io/json.hpp"

namespace hp::io {

enum class Architecture { kGpt2, kLlama };
// "gpt2" / "llama" (the HF model_type).
const char* architecture_name(Architecture a);

// Upper bounds of config.json sizes: far above any real model, low enough that every element
// and byte count of the model fits int64 and no loop over layers runs for hours.
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxWidth = int64_t(1) << 20;      // d_model, d_ff, heads x head_dim
inline constexpr int64_t kMaxHeads = int64_t(1) << 16;      // n_head, n_kv_head, head_dim
inline constexpr int64_t kMaxPositions = int64_t(1) << 24;  // max_seq
inline constexpr int64_t kMaxVocab = int64_t(1) << 24;

// The vision encoder of a vision-language model (config.json "vision_config"): square images of
// `channels` x `image_size` x `image_size` cut into patches of `patch_size` x `patch_size`, each
// patch a token; pre-norm blocks with bidirectional attention and a gelu (tanh) MLP.
struct VisionConfig {
  int64_t n_layer = 0;  // 0: no vision encoder (a text-only model)
  int64_t d_model = 0;
  int64_t n_head = 0;
  int64_t d_ff = 0;
  int64_t image_size = 0;
  int64_t patch_size = 0;
  int64_t channels = 0;
  double norm_eps = 1e-5;

  int64_t grid() const { return patch_size > 0 ? image_size / patch_size : 0; }
  int64_t tokens() const { return grid() * grid(); }  // patches per image
  int64_t patch_dim() const { return channels * patch_size * patch_size; }
  int64_t pixels() const { return channels * image_size * image_size; }
};

struct ModelConfig {
  Architecture arch = Architecture::kGpt2;
  int64_t n_layer = 0;
  int64_t d_model = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;  // == n_head for GPT-2
  int64_t head_dim = 0;
  int64_t d_ff = 0;
  int64_t max_seq = 0;
  int64_t vocab = 0;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;  // Llama only
  bool tied_embeddings = true;
  std::string activation = "gelu_new";  // GPT-2: gelu_new / gelu_pytorch_tanh / gelu; Llama: silu
  // A vision-language model (model_type "vlm"): the decoder above is its "text_config" (Llama),
  // its input starts with one token per image patch, projected to d_model.
  VisionConfig vision;

  bool has_vision() const { return vision.n_layer > 0; }
  // The config's model_type: "gpt2", "llama" or "vlm".
  const char* model_type() const { return has_vision() ? "vlm" : architecture_name(arch); }
  // The blocks a pipeline numbers: the encoder's (a vision-language model), then the decoder's.
  int64_t blocks() const { return vision.n_layer + n_layer; }

  // From a parsed config.json; `where` names it in errors. Validates.
  static ModelConfig from_json(const Json& j, const std::string& where = "config.json");
  // From a config.json file, or a directory holding one.
  static ModelConfig load(const std::filesystem::path& path);
  // Throws "[config] <where>: ..." naming the offending key when sizes are inconsistent or out
  // of range (the kMax* bounds above).
  void validate(const std::string& where = "config") const;
  // Number of parameters (elements), from the sizes alone: no tensors, no per-layer loop.
  int64_t parameter_count() const;
  // The HF form (model_type plus that architecture's keys).
  Json to_json() const;
  // The first HF key (in key order) whose value differs between this config and `other`, as
  // "'n_layer' is 2 against 1" (this value first); "" when they describe the same model.
  std::string first_difference(const ModelConfig& other) const;
};

}  // namespace hp::io
