// Byte-level BPE (a second source of data_test): GPT-2's pre-tokenizer split and byte mapping
// against hand-derived vectors, merges by rank, added tokens, both file formats, and errors.
#include <gtest/gtest.h>

#include <fstream>

#include "hp/data/bpe.hpp"
#include "hp/io/json.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace hp::data {
namespace {

using test::error_of;
using Pieces = std::vector<std::string>;

Pieces split(std::string_view text) {
  Pieces out;
  for (std::string_view p : gpt2_pretokenize(text)) out.emplace_back(p);
  return out;
}

TEST(Bpe, Gpt2PretokenizerSplitsAsItsRegex) {
  EXPECT_EQ(split("Hello world's 123  x"), (Pieces{"Hello", " world", "'s", " 123", " ", " x"}));
  // A run of white space gives its last character to the word after it; a single newline
  // before a word stands alone.
  EXPECT_EQ(split("I'm  fine.\n\nOK!!"),
            (Pieces{"I", "'m", " ", " fine", ".", "\n", "\n", "OK", "!!"}));
  EXPECT_EQ(split("x   "), (Pieces{"x", "   "}));
  EXPECT_EQ(split("'tis ''s 've"), (Pieces{"'t", "is", " ''", "s", " '", "ve"}));
  // Unicode letters (Latin with diacritics, Han), Arabic-Indic digits, a dash (punctuation).
  EXPECT_EQ(split("café 中文 ٣٤ naïve—x"), (Pieces{"café", " 中文", " ٣٤", " naïve", "—", "x"}));
  // A no-break space is white space but not the optional space before a word.
  EXPECT_EQ(split("a\u00a0b"), (Pieces{"a", "\u00a0", "b"}));
  // Bytes that are not UTF-8 are symbols.
  EXPECT_EQ(split("a\xff\xfe"
                  "b 1a"),
            (Pieces{"a", "\xff\xfe", "b", " 1", "a"}));
  EXPECT_EQ(split(""), Pieces{});
}

TEST(Bpe, ByteSymbolsAreGpt2s) {
  const auto& s = byte_symbols();
  ASSERT_EQ(s.size(), 256u);
  EXPECT_EQ(s[' '], "\u0120");   // Ġ
  EXPECT_EQ(s['\n'], "\u010a");  // Ċ
  EXPECT_EQ(s[0], "\u0100");     // Ā
  EXPECT_EQ(s['!'], "!");
  EXPECT_EQ(s[0x7f], "\u0121");  // after the 33 control bytes and space
  EXPECT_EQ(s[0xad], "\u0143");  // the soft hyphen, the last one remapped: Ń
  EXPECT_EQ(s[0xe9], "\u00e9");
}

// A vocabulary of the 256 byte symbols (id = byte) plus merges whose ranks disagree with
// left-to-right order, and GPT-2's <|endoftext|>.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"l", "l"}, {"e", "ll"}, {"h", "e"}, {"\u0120", "t"}, {"\u0120t", "he"}, {"\u0120", "h"}};

io::Json vocab_json() {
  io::Json v = io::Json::object();
  for (int b = 0; b < 256; ++b) v[byte_symbols()[size_t(b)]] = b;
  int64_t id = 256;
  for (const auto& [a, b] : kMerges) v[a + b] = id++;
  v["<|endoftext|>"] = id;
  return v;
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p) << s;
}

fs::path write_gpt2(const fs::path& dir) {
  write_text(dir / "vocab.json", vocab_json().dump());
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : kMerges) merges += a + " " + b + "\n";
  write_text(dir / "merges.txt", merges);
  return dir;
}

io::Json hf_json(bool array_merges) {
  io::Json v = vocab_json();
  const int64_t eot = v["<|endoftext|>"];
  v.erase("<|endoftext|>");
  io::Json merges = io::Json::array();
  for (const auto& [a, b] : kMerges)
    merges.push_back(array_merges ? io::Json::array({a, b}) : io::Json(a + " " + b));
  return {{"version", "1.0"},
          {"normalizer", nullptr},
          {"added_tokens",
           {{{"id", eot}, {"content", "<|endoftext|>"}, {"special", true}, {"lstrip", false}}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", v}, {"merges", merges}}}};
}

class BpeFiles : public test::TempDir {};

const std::vector<int64_t> kExpected = {104, 257, 111, 260, 262, 261, 257, 111, 10};
const char* kText = "hello the<|endoftext|> hello\n";

TEST_F(BpeFiles, MergesByRankFromGpt2Files) {
  const BpeTokenizer t = BpeTokenizer::load(write_gpt2(dir_));
  EXPECT_EQ(t.vocab(), 263);
  // "hello": l+l (rank 1), then e+ll (2) -- not h+e (3), which comes first from the left.
  // " the": h+e, then Ġ+t, then Ġt+he. " hello": l+l, e+ll, then Ġ+h.
  EXPECT_EQ(t.encode(kText), kExpected);
  EXPECT_EQ(t.decode(kExpected), kText);
  EXPECT_EQ(t.encode("café"), (std::vector<int64_t>{99, 97, 102, 0xc3, 0xa9}));
  EXPECT_EQ(t.id_of("<|endoftext|>"), 262);
  // Every byte string round-trips, UTF-8 or not.
  std::string all;
  for (int b = 255; b >= 0; --b) all += char(b), all += " x";
  EXPECT_EQ(t.decode(t.encode(all)), all);
  EXPECT_NE(error_of([&] { t.decode(std::vector<int64_t>{263}); }).find("token id 263"),
            std::string::npos);
}

TEST_F(BpeFiles, HuggingFaceTokenizerJsonGivesTheSameIds) {
  for (bool array_merges : {false, true}) {
    write_text(dir_ / "tokenizer.json", hf_json(array_merges).dump());
    const BpeTokenizer t = BpeTokenizer::load(dir_);
    EXPECT_EQ(t.encode(kText), kExpected);
    EXPECT_EQ(t.decode(kExpected), kText);
  }
  io::Json j = hf_json(false);
  j["pre_tokenizer"]["add_prefix_space"] = true;
  write_text(dir_ / "prefix.json", j.dump());
  EXPECT_EQ(BpeTokenizer::load(dir_ / "prefix.json").encode("hello"),
            (std::vector<int64_t>{261, 257, 111}));
}

TEST_F(BpeFiles, RefusesWhatItCannotFollowNamingTheField) {
  const auto refusal = [&](io::Json j) {
    write_text(dir_ / "t.json", j.dump());
    return error_of([&] { BpeTokenizer::load(dir_ / "t.json"); });
  };
  io::Json j = hf_json(false);
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_NE(refusal(j).find("'normalizer'"), std::string::npos);
  j = hf_json(false);
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(refusal(j).find("'model.type' = \"WordPiece\""), std::string::npos);
  j = hf_json(false);
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  EXPECT_NE(refusal(j).find("'pre_tokenizer'"), std::string::npos);
  j = hf_json(false);
  j["model"]["byte_fallback"] = true;
  EXPECT_NE(refusal(j).find("'model.byte_fallback'"), std::string::npos);
  j = hf_json(false);
  j["model"]["merges"].push_back("zz q");
  EXPECT_NE(refusal(j).find("merge 7 ('zz q') names 'zz'"), std::string::npos);
  j = hf_json(false);
  j["model"]["merges"][0] = "ll";
  EXPECT_NE(refusal(j).find("model.merges[0] = 'll'"), std::string::npos);
  j = hf_json(false);
  j["model"]["vocab"]["x"] = 5;  // id 5 is also byte 5's symbol
  EXPECT_NE(refusal(j).find("id 5 is given to both"), std::string::npos);
  j = hf_json(false);
  j["model"]["vocab"]["x"] = -1;
  EXPECT_NE(refusal(j).find("outside [0,"), std::string::npos);

  write_gpt2(dir_);
  write_text(dir_ / "merges.txt", "#version: 0.2\nl l\nh e x\n");
  EXPECT_NE(error_of([&] { BpeTokenizer::load(dir_); }).find("merges.txt:3"), std::string::npos);
  fs::remove(dir_ / "merges.txt");
  EXPECT_NE(error_of([&] { BpeTokenizer::load(dir_); }).find("holds neither"), std::string::npos);
}

}  // namespace
}  // namespace hp::data
