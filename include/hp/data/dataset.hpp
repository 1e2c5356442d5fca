// TokenDataset: a read-only sequence of token ids from a text file (bytes are tokens), a flat
// little-endian token file (u16 or u32, mmap'd), or memory; slices and a train/validation split.
// Not a sampler: batching and shuffling are BatchLoader's job.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace hp::data {

// Bytes per token in a flat token file.
enum class TokenWidth : uint8_t { kU8 = 1, kU16 = 2, kU32 = 4 };
// "u8" / "u16" / "u32"; parse_token_width throws on anything else.
const char* token_width_name(TokenWidth w);
TokenWidth parse_token_width(const std::string& name);

namespace detail {
struct TokenStore;
}

class TokenDataset {
 public:
  TokenDataset() = default;
  // Text: every byte one token, vocabulary 256. Plain files are mmap'd; EC02 files are decoded.
  static TokenDataset from_text_file(const std::filesystem::path& path);
  static TokenDataset from_text(std::string text, std::string name = "<text>");
  // Flat little-endian token file. Throws naming the file when its size is not a multiple of
  // the width, or (naming the position) when a token is >= vocab.
  static TokenDataset from_token_file(const std::filesystem::path& path, TokenWidth width,
                                      int64_t vocab);
  // In-memory tokens (tests, generated data); each must lie in [0, vocab).
  static TokenDataset from_tokens(const std::vector<int32_t>& tokens, int64_t vocab,
                                  std::string name = "<tokens>");

  int64_t size() const { return end_ - begin_; }
  int64_t vocab() const { return vocab_; }
  const std::string& name() const;
  // Token i in [0, size()).
  int64_t at(int64_t i) const;
  // Tokens [begin, begin + n) widened into `out`.
  void read(int64_t begin, int64_t n, int64_t* out) const;
  // Tokens [begin, end), sharing storage.
  TokenDataset slice(int64_t begin, int64_t end) const;

  struct Split;
  // Train = all but the last floor(size * val_fraction) tokens; val = those. 0 <= fraction < 1.
  Split split(double val_fraction = 0.05) const;

 private:
  std::shared_ptr<const detail::TokenStore> store_;
  int64_t begin_ = 0;
  int64_t end_ = 0;
  int64_t vocab_ = 0;
};

struct TokenDataset::Split {
  TokenDataset train;
  TokenDataset val;
};

}  // namespace hp::data
