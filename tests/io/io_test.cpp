// I/O: safetensors (reference files, round trips, every malformation), JSON, model configs,
// YAML helpers and atomic checkpoints.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "hp/io/checkpoint.hpp"
#include "hp/io/file.hpp"
#include "hp/io/json.hpp"
#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/io/yaml.hpp"
#include "test_util.hpp"
#include "test_inputs.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace hp::io {
namespace {

const fs::path kShared = HP_SHARED_DIR;

using test::error_of;
using test::TempDir;

fs::path reference(const std::string& model) {
  const fs::path p = kShared / "reference" / model;
  return fs::is_directory(p) ? p : fs::path();
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Writes 8-byte length + header + `data` verbatim, for malformed files.
void write_raw(const fs::path& p, const std::string& header, const std::string& data,
               int64_t length_override = -1) {
  std::ofstream f(p, std::ios::binary);
  uint64_t n = length_override >= 0 ? uint64_t(length_override) : header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << data;
}

// Expects SafetensorsReader(p) to throw with every fragment in the message.
void expect_bad(const fs::path& p, const std::vector<std::string>& fragments) {
  try {
    SafetensorsReader r(p);
    ADD_FAILURE() << "no error for " << p;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << f << " | " << msg;
  }
}

// ---- safetensors: reference files ----

TEST(SafetensorsReference, Gpt2Weights) {
  const fs::path ref = reference("gpt2-tiny");
  HP_REQUIRE_INPUT(!ref.empty(), kShared / "reference" / "gpt2-tiny");
  SafetensorsReader r(ref / "weights.safetensors");
  EXPECT_EQ(r.tensors().size(), 28u);
  EXPECT_EQ(r.tensors().front().name, "wte.weight");  // file order, not name order
  EXPECT_EQ(r.info("wte.weight").shape, (Shape{256, 64}));
  EXPECT_EQ(r.info("wpe.weight").shape, (Shape{32, 64}));
  EXPECT_EQ(r.info("h.0.attn.c_attn.weight").shape, (Shape{64, 192}));
  EXPECT_EQ(r.info("h.1.mlp.c_proj.weight").shape, (Shape{256, 64}));
  EXPECT_EQ(r.info("ln_f.bias").shape, (Shape{64}));
  Tensor wte = r.load("wte.weight");
  EXPECT_EQ(wte.dtype(), DType::kF32);
  EXPECT_FLOAT_EQ(wte.f32()[0], -0.0017662015743553638f);
  EXPECT_FLOAT_EQ(wte.f32()[3], 0.020102299749851227f);
  EXPECT_THROW(r.load("transformer.wte.weight"), Error);
  EXPECT_EQ(read_safetensors(ref / "weights.safetensors").size(), 28u);
}

TEST(SafetensorsReference, LlamaWeightsAndBatches) {
  const fs::path ref = reference("llama-tiny");
  HP_REQUIRE_INPUT(!ref.empty(), kShared / "reference" / "llama-tiny");
  TensorMap w = read_safetensors(ref / "weights.safetensors");
  EXPECT_EQ(w.at("model.embed_tokens.weight").shape(), (Shape{256, 64}));
  EXPECT_EQ(w.at("model.layers.0.self_attn.k_proj.weight").shape(), (Shape{32, 64}));
  EXPECT_EQ(w.at("model.layers.1.mlp.down_proj.weight").shape(), (Shape{64, 172}));
  EXPECT_EQ(w.at("lm_head.weight").shape(), (Shape{256, 64}));
  for (const char* model : {"gpt2-tiny", "llama-tiny"}) {
    Metadata meta;
    TensorMap b = read_safetensors(reference(model) / "batch.safetensors", &meta);
    ASSERT_EQ(b.size(), 1u);
    const Tensor& tok = b.at("tokens");
    EXPECT_EQ(tok.dtype(), DType::kI32);
    EXPECT_EQ(tok.shape(), (Shape{2, 33}));
    for (int64_t i = 0; i < tok.numel(); ++i) {
      EXPECT_GE(tok.i32()[i], 0);
      EXPECT_LT(tok.i32()[i], 256);
    }
    EXPECT_TRUE(meta.empty());
  }
  EXPECT_EQ(read_safetensors(reference("gpt2-tiny") / "batch.safetensors").at("tokens").i32()[1],
            231);
}

TEST(SafetensorsReference, ExpectedFilesParse) {
  for (const char* model : {"gpt2-tiny", "llama-tiny"}) {
    const fs::path ref = reference(model);
    HP_REQUIRE_INPUT(!ref.empty(), kShared / "reference" / model);
    SafetensorsReader r(ref / "expected.safetensors");
    EXPECT_EQ(r.info("loss").shape, (Shape{5}));
  }
}

// ---- safetensors: round trips ----

class Safetensors : public TempDir {};

TEST_F(Safetensors, RoundTripEveryDType) {
  TensorMap m;
  Tensor f = Tensor::from_f32({2, 3}, {1.5f, -2, 3.25f, 0, 1e-3f, -7});
  m["z.f32"] = f;
  m["a.bf16"] = f.to(DType::kBF16);
  m["m.f16"] = f.to(DType::kF16);
  m["i32"] = Tensor::from_i64({5}, {1, -2, 3, 2147483647, -2147483647}).to(DType::kI32);
  m["i64"] = Tensor::from_i64({2, 2}, {int64_t(1) << 40, -5, 0, 9});
  m["scalar"] = Tensor::from_f32({}, {42});
  m["empty"] = Tensor({0, 4}, DType::kF32);
  const Metadata meta{{"format", "pt"}, {"note", "x"}};
  write_safetensors(dir_ / "t.safetensors", m, meta);

  Metadata got_meta;
  TensorMap got = read_safetensors(dir_ / "t.safetensors", &got_meta);
  EXPECT_EQ(got_meta, meta);
  ASSERT_EQ(got.size(), m.size());
  for (const auto& [name, t] : m) EXPECT_TRUE(same_bytes(t, got.at(name))) << name;

  // Header padded with spaces to 8 bytes; tensors laid out in sorted name order.
  std::string bytes = read_text_file(dir_ / "t.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.find("}") < n + 8, true);
  EXPECT_EQ(bytes.substr(8 + n - 1, 1).find_first_of(" }"), 0u);
  SafetensorsReader r(dir_ / "t.safetensors");
  std::vector<std::string> order;
  for (const auto& i : r.tensors()) order.push_back(i.name);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename(), "t.safetensors") << "temporary left behind";
  }
}

TEST_F(Safetensors, WideningDTypes) {
  // Hand-built file holding the dtypes that load converted.
  std::string data;
  auto put = [&](const void* p, size_t n) { data.append(static_cast<const char*>(p), n); };
  const double f64[2] = {1.25, -3.5};
  put(f64, 16);
  const uint8_t u8[3] = {0, 200, 255};
  put(u8, 3);
  const int8_t i8[3] = {-128, -1, 7};
  put(i8, 3);
  const uint16_t u16[2] = {65535, 3};
  put(u16, 4);
  const int16_t i16[2] = {-32768, 5};
  put(i16, 4);
  const uint32_t u32[1] = {4000000000u};
  put(u32, 4);
  const uint8_t b[2] = {1, 0};
  put(b, 2);
  const std::string header = R"({"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                             R"("u8":{"dtype":"U8","shape":[3],"data_offsets":[16,19]},)"
                             R"("i8":{"dtype":"I8","shape":[3],"data_offsets":[19,22]},)"
                             R"("u16":{"dtype":"U16","shape":[2],"data_offsets":[22,26]},)"
                             R"("i16":{"dtype":"I16","shape":[2],"data_offsets":[26,30]},)"
                             R"("u32":{"dtype":"U32","shape":[1],"data_offsets":[30,34]},)"
                             R"("b":{"dtype":"BOOL","shape":[2],"data_offsets":[34,36]}})";
  write_raw(dir_ / "w.safetensors", header, data);
  TensorMap m = read_safetensors(dir_ / "w.safetensors");
  EXPECT_EQ(m.at("d").dtype(), DType::kF32);
  EXPECT_EQ(m.at("d").to_f32_vector(), (std::vector<float>{1.25f, -3.5f}));
  EXPECT_EQ(m.at("u8").to_i64_vector(), (std::vector<int64_t>{0, 200, 255}));
  EXPECT_EQ(m.at("i8").to_i64_vector(), (std::vector<int64_t>{-128, -1, 7}));
  EXPECT_EQ(m.at("u16").to_i64_vector(), (std::vector<int64_t>{65535, 3}));
  EXPECT_EQ(m.at("i16").to_i64_vector(), (std::vector<int64_t>{-32768, 5}));
  EXPECT_EQ(m.at("u32").dtype(), DType::kI64);
  EXPECT_EQ(m.at("u32").to_i64_vector(), (std::vector<int64_t>{4000000000}));
  EXPECT_EQ(m.at("b").to_i64_vector(), (std::vector<int64_t>{1, 0}));
}

TEST_F(Safetensors, Malformations) {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');
  // Control: the well-formed version of the file loads.
  write_raw(dir_ / "ok.safetensors", "{" + ok_entry + "}", eight);
  EXPECT_EQ(read_safetensors(dir_ / "ok.safetensors").at("a").numel(), 2);

  {
    std::ofstream f(dir_ / "short.safetensors", std::ios::binary);
    f << "abc";
  }
  expect_bad(dir_ / "short.safetensors", {"truncated"});
  write_raw(dir_ / "len.safetensors", "{" + ok_entry + "}", eight, 1 << 20);
  expect_bad(dir_ / "len.safetensors", {"header length 1048576", "beyond the file size"});
  write_raw(dir_ / "json.safetensors", "{\"a\": [1, 2", "");
  expect_bad(dir_ / "json.safetensors", {"bad JSON"});
  write_raw(dir_ / "array.safetensors", "[1, 2]", "");
  expect_bad(dir_ / "array.safetensors", {"JSON object"});
  write_raw(dir_ / "dtype.safetensors",
            R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", eight);
  expect_bad(dir_ / "dtype.safetensors", {"'w'", "F8_E4M3", "supported"});
  write_raw(dir_ / "overlap.safetensors",
            "{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(12, '\0'));
  expect_bad(dir_ / "overlap.safetensors", {"overlap", "'a'", "'b'"});
  write_raw(dir_ / "hole.safetensors",
            "{" + ok_entry + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
            std::string(16, '\0'));
  expect_bad(dir_ / "hole.safetensors", {"belong to no tensor", "'b'"});
  write_raw(dir_ / "range.safetensors", "{" + ok_entry + "}", std::string(4, '\0'));
  expect_bad(dir_ / "range.safetensors", {"'a'", "run past the data section"});
  write_raw(dir_ / "size.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
            eight);
  expect_bad(dir_ / "size.safetensors", {"'a'", "[3]", "needs 12"});
  write_raw(dir_ / "trail.safetensors", "{" + ok_entry + "}", std::string(12, '\0'));
  expect_bad(dir_ / "trail.safetensors", {"trailing"});
  write_raw(dir_ / "dup.safetensors", "{" + ok_entry + "," + ok_entry + "}", eight);
  expect_bad(dir_ / "dup.safetensors", {"'a' appears twice"});
  write_raw(dir_ / "rev.safetensors", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
            eight);
  expect_bad(dir_ / "rev.safetensors", {"reversed"});
  write_raw(dir_ / "neg.safetensors", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
            eight);
  expect_bad(dir_ / "neg.safetensors", {"non-negative"});
  write_raw(dir_ / "meta.safetensors", R"({"__metadata__":{"k":3}})", "");
  expect_bad(dir_ / "meta.safetensors", {"__metadata__", "'k'"});
  EXPECT_THROW(SafetensorsReader(dir_ / "missing.safetensors"), Error);
}

TEST_F(Safetensors, InMemoryBytesReadLikeTheFile) {
  TensorMap m;
  m["w"] = Tensor::from_f32({2, 3}, {1, 2, 3, 4, 5, 6});
  write_safetensors(dir_ / "m.safetensors", m);
  MappedFile f(dir_ / "m.safetensors");
  SafetensorsReader r(std::vector<uint8_t>(f.data(), f.data() + f.size()), "mem.safetensors");
  EXPECT_TRUE(same_bytes(r.load("w"), m.at("w")));
  EXPECT_EQ(r.path(), "mem.safetensors");
  std::string msg = error_of([] { SafetensorsReader({1, 2, 3}, "mem.safetensors"); });
  EXPECT_NE(msg.find("mem.safetensors: truncated file"), std::string::npos) << msg;
}

// Found by fuzz_safetensors and fuzz_model_config (tests/fuzz/corpus/*/regress_number_overflow*):
// a number beyond double's range (1e999) escaped the JSON parser as nlohmann's out_of_range
// instead of an hp::Error naming the file.
TEST_F(Safetensors, NumberBeyondDoubleRangeIsAnError) {
  write_raw(dir_ / "big.safetensors",
            R"({"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", std::string(4, '\0'));
  expect_bad(dir_ / "big.safetensors", {"bad JSON header", "1e999"});
  write_atomic(dir_ / "c.json", std::string("{\"rms_norm_eps\": 1e999}"));
  std::string msg = error_of([&] { read_json(dir_ / "c.json"); });
  EXPECT_NE(msg.find("c.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1e999"), std::string::npos) << msg;
}

// A config.json of a million '[' crashed hp (exit 139): the error message's dump() recursed once
// per level (tests/fuzz/corpus/model_config/regress_deep_nesting.json).
TEST_F(Safetensors, DeepNestingIsAnError) {
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  write_atomic(dir_ / "c.json", "{\"model_type\": \"gpt2\", \"n_layer\": " + deep + "}");
  std::string msg = error_of([&] { ModelConfig::load(dir_ / "c.json"); });
  EXPECT_NE(msg.find("c.json: nested deeper than 1000 levels"), std::string::npos) << msg;
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_EQ(parse_json(ok, "ok").size(), 1u);
  write_raw(dir_ / "deep.safetensors", "{\"__metadata__\": " + deep + "}", "");
  expect_bad(dir_ / "deep.safetensors", {"nested deeper than 1000 levels"});
}

TEST_F(Safetensors, FailedWriteLeavesOldFile) {
  TensorMap good{{"x", Tensor::from_f32({1}, {1})}};
  write_safetensors(dir_ / "m.safetensors", good);
  TensorMap bad{{"x", Tensor::from_f32({1}, {2})}, {"y", Tensor()}};
  EXPECT_THROW(write_safetensors(dir_ / "m.safetensors", bad), Error);
  EXPECT_EQ(read_safetensors(dir_ / "m.safetensors").at("x").f32()[0], 1.0f);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

// ---- JSON ----

class JsonFiles : public TempDir {};

TEST_F(JsonFiles, ParseErrorsNameFileAndPosition) {
  write_atomic(dir_ / "c.json", std::string("{\n  \"a\": 1,\n  \"b\": ]\n}\n"));
  std::string msg = error_of([&] { read_json(dir_ / "c.json"); });
  EXPECT_NE(msg.find("c.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_THROW(read_json(dir_ / "nope.json"), Error);
  Json j = {{"n", 3}, {"f", 2.0}, {"x", 2.5}, {"s", "hi"}, {"nul", nullptr}};
  write_json(dir_ / "j.json", j);
  EXPECT_EQ(read_json(dir_ / "j.json"), j);
  EXPECT_EQ(json_int(j, "n", "j"), 3);
  EXPECT_EQ(json_int(j, "f", "j"), 2);
  EXPECT_EQ(json_int(j, "nul", 7, "j"), 7);
  EXPECT_NE(error_of([&] { json_int(j, "x", "j"); }).find("'x' must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { json_int(j, "q", "j"); }).find("missing key 'q'"), std::string::npos);
  EXPECT_THROW(json_string(j, "n", "j"), Error);
}

// ---- model configs ----

class Config : public TempDir {
 protected:
  // Small valid configs the tests below break one field at a time.
  const Json kGpt2 = {{"model_type", "gpt2"}, {"n_layer", 2},      {"n_embd", 64},
                      {"n_head", 4},          {"n_positions", 32}, {"vocab_size", 256}};
  const Json kLlama = {
      {"model_type", "llama"},         {"num_hidden_layers", 2},   {"hidden_size", 64},
      {"intermediate_size", 172},      {"num_attention_heads", 4}, {"num_key_value_heads", 2},
      {"max_position_embeddings", 32}, {"vocab_size", 256}};
};

TEST_F(Config, FirstDifferenceNamesTheKey) {
  const ModelConfig a = ModelConfig::from_json(kGpt2);
  EXPECT_EQ(a.first_difference(ModelConfig::from_json(kGpt2)), "");
  Json j = kGpt2;
  j["n_layer"] = 1;
  EXPECT_EQ(a.first_difference(ModelConfig::from_json(j)), "'n_layer' is 2 against 1");
  j = kGpt2;
  j["layer_norm_epsilon"] = 1e-6;
  EXPECT_NE(a.first_difference(ModelConfig::from_json(j)).find("'layer_norm_epsilon'"),
            std::string::npos);
  j = kGpt2;
  j["activation_function"] = "gelu";
  EXPECT_EQ(a.first_difference(ModelConfig::from_json(j)),
            "'activation_function' is \"gelu_new\" against \"gelu\"");
  EXPECT_EQ(a.first_difference(ModelConfig::from_json(kLlama)),
            "'model_type' is \"gpt2\" against \"llama\"");
}

TEST_F(Config, ReferenceConfigs) {
  const fs::path g = reference("gpt2-tiny"), l = reference("llama-tiny");
  HP_REQUIRE_INPUT(!g.empty() && !l.empty(), kShared / "reference");
  ModelConfig c = ModelConfig::from_json(read_json(g / "case.json")["model"]);
  EXPECT_EQ(c.arch, Architecture::kGpt2);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.d_model, 64);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_kv_head, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.d_ff, 256);  // n_inner defaults to 4 * n_embd
  EXPECT_EQ(c.max_seq, 32);
  EXPECT_EQ(c.vocab, 256);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.activation, "gelu_new");

  ModelConfig k = ModelConfig::from_json(read_json(l / "case.json")["model"]);
  EXPECT_EQ(k.arch, Architecture::kLlama);
  EXPECT_EQ(k.n_layer, 2);
  EXPECT_EQ(k.d_model, 64);
  EXPECT_EQ(k.n_head, 4);
  EXPECT_EQ(k.n_kv_head, 2);
  EXPECT_EQ(k.head_dim, 16);
  EXPECT_EQ(k.d_ff, 172);
  EXPECT_EQ(k.max_seq, 32);
  EXPECT_DOUBLE_EQ(k.norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(k.rope_theta, 10000.0);
  EXPECT_FALSE(k.tied_embeddings);

  // to_json round-trips through a file and through a directory holding config.json.
  for (const ModelConfig& m : {c, k}) {
    write_json(dir_ / "config.json", m.to_json());
    ModelConfig back = ModelConfig::load(dir_);
    EXPECT_EQ(back.to_json(), m.to_json());
    EXPECT_EQ(ModelConfig::load(dir_ / "config.json").d_ff, m.d_ff);
  }
}

TEST_F(Config, DefaultsAndAlternatives) {
  Json g = {{"model_type", "gpt2"},
            {"n_layer", 1},
            {"n_embd", 32},
            {"n_head", 2},
            {"n_ctx", 16},
            {"vocab_size", 50},
            {"n_inner", nullptr},
            {"activation_function", "gelu_pytorch_tanh"},
            {"tie_word_embeddings", false}};
  ModelConfig c = ModelConfig::from_json(g);
  EXPECT_EQ(c.max_seq, 16);
  EXPECT_EQ(c.d_ff, 128);
  EXPECT_FALSE(c.tied_embeddings);
  Json l = {{"model_type", "llama"},   {"num_hidden_layers", 1},   {"hidden_size", 32},
            {"intermediate_size", 64}, {"num_attention_heads", 4}, {"max_position_embeddings", 8},
            {"vocab_size", 10},        {"rope_scaling", nullptr},  {"head_dim", 16},
            {"hidden_act", "silu"}};
  ModelConfig k = ModelConfig::from_json(l);
  EXPECT_EQ(k.n_kv_head, 4);
  EXPECT_EQ(k.head_dim, 16);  // explicit head_dim need not be hidden / heads
}

TEST_F(Config, BadConfigsNameTheKey) {
  const Json g = kGpt2, l = kLlama;
  ASSERT_NO_THROW(ModelConfig::from_json(g));
  ASSERT_NO_THROW(ModelConfig::from_json(l));
  auto bad = [](Json base, const std::string& key, const Json& value, const std::string& expect) {
    if (value.is_discarded()) {
      base.erase(key);
    } else {
      base[key] = value;
    }
    std::string msg = error_of([&] { ModelConfig::from_json(base, "my.json"); });
    EXPECT_NE(msg.find(expect), std::string::npos) << key << ": " << msg;
    EXPECT_NE(msg.find("my.json"), std::string::npos) << msg;
  };
  const Json drop = Json(Json::value_t::discarded);
  bad(g, "model_type", "bert", "model_type 'bert'");
  bad(g, "n_embd", drop, "missing key 'n_embd'");
  bad(g, "n_positions", drop, "n_positions");
  bad(g, "n_head", 5, "'n_embd' (64) is not divisible by 'n_head' (5)");
  bad(g, "n_layer", 0, "'n_layer' must be positive");
  bad(g, "vocab_size", -3, "'vocab_size' must be positive");
  bad(g, "n_embd", 64.5, "'n_embd' must be an integer");
  bad(g, "activation_function", "relu", "activation_function 'relu'");
  bad(g, "tie_word_embeddings", "yes", "'tie_word_embeddings' must be true or false");
  bad(g, "scale_attn_by_inverse_layer_idx", true, "scale_attn_by_inverse_layer_idx");
  bad(l, "num_key_value_heads", 3,
      "'num_attention_heads' (4) is not divisible by "
      "'num_key_value_heads' (3)");
  bad(l, "num_attention_heads", 3, "'hidden_size' (64) is not divisible");
  bad(l, "hidden_act", "gelu", "hidden_act 'gelu'");
  bad(l, "rope_scaling", Json{{"type", "linear"}, {"factor", 2.0}}, "rope_scaling");
  bad(l, "rope_scaling", Json{{"type", "linear"}}, "not supported");
  bad(l, "intermediate_size", drop, "missing key 'intermediate_size'");
  bad(l, "rms_norm_eps", -1.0, "'rms_norm_eps' must be positive");
  bad(l, "attention_bias", true, "attention_bias");
  bad(l, "head_dim", 15, "'head_dim' must be even");
  EXPECT_THROW(ModelConfig::from_json(Json::array()), Error);
  EXPECT_THROW(ModelConfig::load(dir_), Error);  // no config.json there
}

// Sizes are bounded when read, so no element or byte count of the model can overflow and no
// loop over layers runs for hours: the error names the file, the field and the bound.
TEST_F(Config, SizesOutOfRangeNameTheFieldAndBound) {
  const Json g = kGpt2, l = kLlama;
  auto bad = [](Json base, const std::string& key, const Json& value, const std::string& expect) {
    base[key] = value;
    std::string msg = error_of([&] { ModelConfig::from_json(base, "config.json"); });
    EXPECT_NE(msg.find("config.json: " + expect), std::string::npos) << key << ": " << msg;
  };
  bad(g, "n_inner", int64_t(4611686018427387905),
      "'n_inner' = 4611686018427387905 is out of range (max 1048576)");
  bad(g, "n_positions", int64_t(288230376151711745),
      "'n_positions' = 288230376151711745 is out of range (max 16777216)");
  bad(g, "n_layer", 1000000000, "'n_layer' = 1000000000 is out of range (max 4096)");
  bad(g, "n_embd", int64_t(1) << 61, "'n_embd' = 2305843009213693952 is out of range");
  bad(g, "vocab_size", uint64_t(18446744073709551615ull),
      "'vocab_size' = 18446744073709551615 is out of range");
  bad(l, "head_dim", 1 << 17, "'head_dim' = 131072 is out of range (max 65536)");
  bad(l, "num_key_value_heads", 1 << 17, "'num_key_value_heads' = 131072 is out of range");
  Json wide = l;
  wide["num_attention_heads"] = 32;
  bad(wide, "head_dim", 1 << 16, "'num_attention_heads' * 'head_dim' = 2097152 is out of range");
  bad(l, "intermediate_size", int64_t(1) << 40,
      "'intermediate_size' = 1099511627776 is out of range");
  // The bounds themselves are accepted, and the parameter count is computed without a loop.
  Json edge = g;
  edge["n_layer"] = kMaxLayers;
  edge["vocab_size"] = kMaxVocab;
  const ModelConfig c = ModelConfig::from_json(edge);
  EXPECT_GT(c.parameter_count(), kMaxLayers * 12 * 64 * 64);
  // gpt2-tiny-sized: 2 layers of 4D^2 + 2DF + 9D + F, plus wte, wpe and ln_f.
  EXPECT_EQ(ModelConfig::from_json(g).parameter_count(),
            2 * (4 * 64 * 64 + 2 * 64 * 256 + 9 * 64 + 256) + (256 + 32) * 64 + 2 * 64);
}

// ---- YAML ----

class Yaml : public TempDir {};

// Found by fuzz_yaml_config (tests/fuzz/corpus/yaml_config/regress_*_key.yaml): a key that is a
// sequence or a map escaped as yaml-cpp's BadConversion instead of an hp::Error.
TEST_F(Yaml, KeysThatAreNotNamesAreErrors) {
  const YamlNode y = YamlNode::parse("a: 1\n[b, c]: 2\n", "t.yaml");
  std::string msg = error_of([&] { y.entries(); });
  EXPECT_NE(msg.find("t.yaml:2:1: a key must be a plain name, got a sequence"), std::string::npos)
      << msg;
  msg = error_of([&] { y.check_keys({"a"}); });
  EXPECT_NE(msg.find("t.yaml:2:1"), std::string::npos) << msg;
  msg = error_of([] { YamlNode::parse("? {a: 1}\n: 2\n", "m.yaml").entries(); });
  EXPECT_NE(msg.find("got a map"), std::string::npos) << msg;
}

TEST_F(Yaml, TypedAccessWithLocations) {
  const std::string text =
      "train:\n"
      "  steps: 10\n"
      "  lr: 3.0e-4\n"
      "  compile: true\n"
      "  name: tiny\n"
      "mesh:\n"
      "  shape: [2, 4]\n"
      "  bad: [1, x]\n"
      "  typo_keyy: 1\n";
  write_atomic(dir_ / "s.yaml", text);
  YamlNode y = YamlNode::load_file(dir_ / "s.yaml");
  EXPECT_EQ(y["train"]["steps"].as_int(), 10);
  EXPECT_DOUBLE_EQ(y["train"]["lr"].as_double(), 3.0e-4);
  EXPECT_TRUE(y["train"]["compile"].as_bool());
  EXPECT_EQ(y["train"].get_string("name", ""), "tiny");
  EXPECT_EQ(y["train"].get_int("warmup", 5), 5);
  EXPECT_EQ(y["mesh"]["shape"].as_int_list(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(y.entries().size(), 2u);
  EXPECT_EQ(y.entries()[1].first, "mesh");

  const std::string f = (dir_ / "s.yaml").string();
  std::string msg = error_of([&] { y["train"]["seed"]; });
  EXPECT_NE(msg.find(f + ":2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.seed"), std::string::npos) << msg;
  msg = error_of([&] { y["train"]["name"].as_int(); });
  EXPECT_NE(msg.find(f + ":5:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'tiny'"), std::string::npos) << msg;
  msg = error_of([&] { y["mesh"]["bad"].as_int_list(); });
  EXPECT_NE(msg.find(f + ":8:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mesh.bad[1]"), std::string::npos) << msg;
  msg = error_of([&] { y["mesh"].check_keys({"shape", "bad"}); });
  EXPECT_NE(msg.find(f + ":9:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mesh.typo_keyy"), std::string::npos) << msg;
  msg = error_of([&] { YamlNode::parse("a: [1, 2\nb: 3\n", "broken.yaml"); });
  EXPECT_NE(msg.find("broken.yaml:"), std::string::npos) << msg;
  EXPECT_THROW(YamlNode::load_file(dir_ / "missing.yaml"), Error);
}

// ---- checkpoints ----

class Checkpoints : public TempDir {};

Checkpoint make_ckpt(int64_t step) {
  Checkpoint c;
  c.step = step;
  c.model["wte.weight"] = Tensor::from_f32({2, 2}, {float(step), 1, 2, 3});
  c.model["ln_f.bias"] = Tensor::from_f32({2}, {0.5f, float(-step)}).to(DType::kBF16);
  c.optimizer["m/wte.weight"] = Tensor::from_f32({2, 2}, {0, 0, 0, float(step)});
  c.optimizer["v/wte.weight"] = Tensor::from_f32({2, 2}, {1, 1, 1, 1});
  c.rng = {{"seed", 1234}, {"offset", step * 10}};
  c.data = {{"epoch", 0}, {"index", step * 4}};
  c.extra = {{"loss", 1.5}};
  return c;
}

void expect_ckpt(const Checkpoint& got, const Checkpoint& want) {
  EXPECT_EQ(got.step, want.step);
  ASSERT_EQ(got.model.size(), want.model.size());
  for (const auto& [k, t] : want.model) EXPECT_TRUE(same_bytes(got.model.at(k), t)) << k;
  ASSERT_EQ(got.optimizer.size(), want.optimizer.size());
  for (const auto& [k, t] : want.optimizer) EXPECT_TRUE(same_bytes(got.optimizer.at(k), t)) << k;
  EXPECT_EQ(got.rng, want.rng);
  EXPECT_EQ(got.data, want.data);
  EXPECT_EQ(got.extra, want.extra);
}

TEST_F(Checkpoints, SaveLoadAndKeepLast) {
  EXPECT_FALSE(load_latest(dir_ / "none").has_value());
  EXPECT_FALSE(load_latest(dir_).has_value());
  for (int64_t s : {10, 20, 30}) {
    fs::path p = save_checkpoint(dir_, make_ckpt(s), {.keep_last = 2});
    EXPECT_EQ(p, dir_ / ("step-" + std::to_string(s)));
  }
  EXPECT_EQ(list_checkpoints(dir_), (std::vector<int64_t>{20, 30}));
  EXPECT_EQ(read_text_file(dir_ / "latest"), "step-30\n");
  auto latest = load_latest(dir_);
  ASSERT_TRUE(latest.has_value());
  expect_ckpt(*latest, make_ckpt(30));
  expect_ckpt(load_checkpoint(dir_ / "step-20"), make_ckpt(20));
  EXPECT_TRUE(fs::exists(dir_ / "step-30" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ / "step-30" / "optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ / "step-30" / "state.json"));
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_NE(e.path().filename().string().rfind(".tmp", 0), 0u) << e.path();
  }
}

TEST_F(Checkpoints, CrashMidWriteKeepsPrevious) {
  save_checkpoint(dir_, make_ckpt(4));
  // A crash while writing step 5: its temporary directory is half full, `latest` untouched.
  const fs::path tmp = dir_ / ".tmp-step-5-99999";
  fs::create_directories(tmp);
  write_atomic(tmp / "model.safetensors", std::string("garbage"));
  auto got = load_latest(dir_);
  ASSERT_TRUE(got.has_value());
  expect_ckpt(*got, make_ckpt(4));
  EXPECT_EQ(list_checkpoints(dir_), (std::vector<int64_t>{4}));

  // A crash after step 6 was renamed into place but before `latest` moved: latest still rules.
  save_checkpoint(dir_ / "elsewhere", make_ckpt(6));
  fs::copy(dir_ / "elsewhere" / "step-6", dir_ / "step-6");
  fs::remove_all(dir_ / "elsewhere");
  expect_ckpt(*load_latest(dir_), make_ckpt(4));

  // Without `latest`, the highest complete step wins; incomplete step dirs are ignored.
  fs::remove(dir_ / "latest");
  fs::create_directories(dir_ / "step-9");
  expect_ckpt(*load_latest(dir_), make_ckpt(6));

  // The next save clears the leftover temporary directory.
  save_checkpoint(dir_, make_ckpt(7), {.keep_last = 0});
  EXPECT_FALSE(fs::exists(tmp));
  expect_ckpt(*load_latest(dir_), make_ckpt(7));
  EXPECT_EQ(list_checkpoints(dir_), (std::vector<int64_t>{4, 6, 7}));
}

// A step in state.json or a step-<N> directory name out of range is an error naming the file
// and field (a 19-digit directory name used to overflow while being parsed).
TEST_F(Checkpoints, StepsOutOfRangeAreErrors) {
  EXPECT_THROW(save_checkpoint(dir_, make_ckpt(-1)), Error);
  save_checkpoint(dir_, make_ckpt(2));
  const fs::path state = dir_ / "step-2" / "state.json";
  for (const std::string step : {"-5", "9223372036854775807", "18446744073709551615"}) {
    Json j = read_json(state);
    j["step"] = Json::parse(step);
    write_json(state, j);
    std::string msg = error_of([&] { load_checkpoint(dir_ / "step-2"); });
    EXPECT_NE(msg.find("state.json: 'step' = " + step + " is out of range"), std::string::npos)
        << msg;
  }
  fs::create_directories(dir_ / "step-9999999999999999999");
  EXPECT_EQ(list_checkpoints(dir_), (std::vector<int64_t>{2}));  // not a step of ours
  write_atomic(dir_ / "latest", std::string("step-99999999999999999999\n"));
  std::string msg = error_of([&] { load_latest(dir_); });
  EXPECT_NE(msg.find("not step-<N>"), std::string::npos) << msg;
}

// A FIFO given as a file is refused without blocking (opening it would wait for a writer).
TEST_F(JsonFiles, FifoIsRefusedWithoutBlocking) {
  const fs::path fifo = dir_ / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (auto fn :
       std::vector<std::function<void()>>{[&] { read_json(fifo); }, [&] { MappedFile m(fifo); },
                                          [&] { read_safetensors(fifo); }}) {
    std::string msg = error_of(fn);
    EXPECT_NE(msg.find("pipe is not a regular file (a FIFO)"), std::string::npos) << msg;
  }
  std::string msg = error_of([&] { read_json(dir_); });
  EXPECT_NE(msg.find("is not a regular file (a directory)"), std::string::npos) << msg;
}

TEST_F(Checkpoints, ResaveSameStepAndBadFiles) {
  save_checkpoint(dir_, make_ckpt(3));
  Checkpoint again = make_ckpt(3);
  again.extra = {{"loss", 0.25}};
  save_checkpoint(dir_, again);
  expect_ckpt(*load_latest(dir_), again);
  EXPECT_EQ(list_checkpoints(dir_), (std::vector<int64_t>{3}));

  write_atomic(dir_ / "latest", std::string("nonsense\n"));
  EXPECT_THROW(load_latest(dir_), Error);
  write_atomic(dir_ / "latest", std::string("step-3\n"));
  fs::remove(dir_ / "step-3" / "optimizer.safetensors");
  std::string msg = error_of([&] { load_checkpoint(dir_ / "step-3"); });
  EXPECT_NE(msg.find("optimizer.safetensors"), std::string::npos) << msg;
}

}  // namespace
}  // namespace hp::io
