// Model builders: the vision-language model's config, parameters and chunks (its numerics are
// checked against PyTorch float64 by the reference case tests/reference/vlm-tiny, hp check).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "hp/core/error.hpp"
#include "hp/nn/model.hpp"
#include "test_util.hpp"

namespace hp::nn {
namespace {

using test::error_of;

io::Json vlm_json() {
  return io::parse_json(R"({"model_type": "vlm",
      "vision_config": {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64,
        "num_attention_heads": 4, "image_size": 16, "patch_size": 4, "num_channels": 3},
      "text_config": {"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 48,
        "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 40, "vocab_size": 256}})",
                        "vlm");
}

TEST(Vlm, ConfigRoundTripsAndCountsItsParameters) {
  const io::ModelConfig c = io::ModelConfig::from_json(vlm_json());
  ASSERT_TRUE(c.has_vision());
  EXPECT_EQ(c.vision.tokens(), 16);
  EXPECT_EQ(c.vision.patch_dim(), 48);
  EXPECT_EQ(c.blocks(), 5);
  const io::ModelConfig back = io::ModelConfig::from_json(c.to_json());
  EXPECT_EQ(back.first_difference(c), "");
  io::ModelConfig other = c;
  other.vision.patch_size = 8;
  EXPECT_NE(other.first_difference(c), "");
  int64_t n = 0;
  std::set<std::string> names;
  for (const ParamInfo& pi : param_infos(c)) n += numel(pi.shape), names.insert(pi.name);
  EXPECT_EQ(c.parameter_count(), n);
  for (const char* name :
       {"vision_tower.vision_model.embeddings.patch_embedding.weight",
        "vision_tower.vision_model.encoder.layers.1.self_attn.out_proj.bias",
        "vision_tower.vision_model.post_layernorm.weight", "multi_modal_projector.linear_2.weight",
        "language_model.model.layers.2.mlp.down_proj.weight", "language_model.lm_head.weight"})
    EXPECT_TRUE(names.count(name)) << name;
}

TEST(Vlm, ConfigErrorsNameTheKey) {
  auto err = [](const char* ptr, io::Json v) {
    io::Json j = vlm_json();
    j[io::Json::json_pointer(ptr)] = std::move(v);
    return error_of([&] { io::ModelConfig::from_json(j); });
  };
  EXPECT_NE(err("/vision_config/patch_size", 5).find("'image_size' (16) is not divisible"),
            std::string::npos);
  EXPECT_NE(err("/text_config/max_position_embeddings", 16).find("16 patch tokens"),
            std::string::npos);
  EXPECT_NE(err("/vision_config/hidden_act", "gelu").find("hidden_act 'gelu'"), std::string::npos);
  EXPECT_NE(err("/text_config/model_type", "gpt2").find("must be a llama config"),
            std::string::npos);
  EXPECT_NE(err("/vision_config/num_attention_heads", 5).find("not divisible"), std::string::npos);
}

// The step's shapes: image levels then caption tokens in, image tokens then caption positions out.
TEST(Vlm, TracedShapes) {
  const io::ModelConfig c = io::ModelConfig::from_json(vlm_json());
  const Traced t = trace(c, 2, 10);
  EXPECT_EQ(t.tokens.shape(), Shape({2, 768 + 10}));
  EXPECT_EQ(t.targets.shape(), Shape({2, 16 + 10}));
  EXPECT_EQ(t.logits.shape(), Shape({2, 16 + 10, 256}));
  EXPECT_EQ(batch_shapes(c, 2, 10).tokens, t.tokens.shape());
  EXPECT_NE(error_of([&] { trace(c, 2, 25); }).find("after 16 image tokens exceeds"),
            std::string::npos);
}

// Pipeline chunks number the encoder's blocks first; the chunk with the embeddings holds the whole
// encoder and the projector, and the chunks' parameters cover the model once.
TEST(Vlm, ChunksSplitAfterTheEncoder) {
  const io::ModelConfig c = io::ModelConfig::from_json(vlm_json());
  const Chunk enc{0, 1, true, false}, dec{2, 4, false, true};
  std::vector<size_t> all = chunk_params(c, enc), d = chunk_params(c, dec);
  const auto infos = param_infos(c);
  for (size_t i : all)
    EXPECT_EQ(infos[i].name.rfind("language_model.model.layers.", 0), std::string::npos);
  all.insert(all.end(), d.begin(), d.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), infos.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], i);
  const Traced e = trace_chunk(c, 2, 10, enc);
  EXPECT_EQ(e.x_out.shape(), Shape({2, 16 + 10, 48}));
  EXPECT_EQ(trace_chunk(c, 2, 10, dec).x_in.shape(), Shape({2, 16 + 10, 48}));
  EXPECT_NE(error_of([&] {
              trace_chunk(c, 2, 10, {0, 0, true, false});
            }).find("the encoder's blocks 0-1 go whole with the embeddings"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              trace_chunk(c, 2, 10, {1, 4, false, true});
            }).find("encoder"),
            std::string::npos);
}

}  // namespace
}  // namespace hp::nn
