// Byte-level BPE tokenizers as GPT-2 and Hugging Face write them: GPT-2's `vocab.json` +
// `merges.txt`, or a `tokenizer.json` whose model is BPE behind a ByteLevel pre-tokenizer (GPT-2,
// GPT-J, RoBERTa and most byte-level BPE models on the Hub). Text is split by GPT-2's
// pre-tokenizer regex, each piece's bytes are mapped to printable characters (GPT-2's
// bytes_to_unicode) and merged by rank; added tokens (`<|endoftext|>`) are matched before the
// split. Lossless: decode(encode(s)) == s for any byte string whose bytes the vocabulary covers.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hp::data {

// GPT-2's pre-tokenizer: the pieces of `text` that
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ matches in turn, with
// Unicode letters, numbers and white space as the `regex` module classifies them. Bytes that are
// not valid UTF-8 count as symbols (neither letter, number nor space), one byte each.
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

// GPT-2's bytes_to_unicode: the character (as UTF-8) that stands for each byte in vocabularies.
const std::vector<std::string>& byte_symbols();

class BpeTokenizer {
 public:
  // `vocab.json` (token -> id) and `merges.txt` (one "left right" pair per line, by rank; a
  // first line starting "#version" is skipped).
  static BpeTokenizer from_gpt2_files(const std::filesystem::path& vocab_json,
                                      const std::filesystem::path& merges_txt);
  // A Hugging Face `tokenizer.json` with `model.type` BPE and a ByteLevel pre-tokenizer; what it
  // cannot follow exactly (a normalizer, another pre-tokenizer or regex, byte fallback, dropout)
  // is refused naming the field.
  static BpeTokenizer from_hf_json(const std::filesystem::path& tokenizer_json);
  // A file (`tokenizer.json`) or a directory holding `tokenizer.json` or `vocab.json` +
  // `merges.txt`.
  static BpeTokenizer load(const std::filesystem::path& path);

  // One past the largest id (added tokens included).
  int64_t vocab() const { return vocab_size_; }
  std::vector<int64_t> encode(std::string_view text) const;
  // Throws naming the id when one is not in the vocabulary.
  std::string decode(std::span<const int64_t> ids) const;
  // The id of a token string (an added token such as "<|endoftext|>", or a vocabulary entry).
  std::optional<int64_t> id_of(const std::string& token) const;

 private:
  BpeTokenizer() = default;
  void add_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                  const std::string& where);
  void finish(const std::string& where);
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;  // mapped token -> id
  std::vector<std::string> tokens_;                 // id -> mapped token ("" for gaps)
  std::map<std::pair<std::string, std::string>, int64_t> ranks_;
  std::vector<std::pair<std::string, int64_t>> added_;  // longest first
  std::vector<bool> is_added_;                          // by id: decoded verbatim
  std::unordered_map<std::string, int> unicode_byte_;   // mapped character -> byte
  int64_t vocab_size_ = 0;
  bool prefix_space_ = false;   // ByteLevel add_prefix_space: " " before text not starting with one
  bool ignore_merges_ = false;  // a piece that is a token as a whole is taken without merging
};

}  // namespace hp::data
