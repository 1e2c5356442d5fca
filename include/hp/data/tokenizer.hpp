// Byte-level tokenizer: each byte is one token (vocabulary 256). Lossless for any byte string.
// Not BPE: merges and special tokens belong to a future tokenizer with its own header.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hp::data {

class ByteTokenizer {
 public:
  static constexpr int64_t kVocab = 256;
  int64_t vocab() const { return kVocab; }
  // One token in [0, 256) per byte.
  std::vector<int32_t> encode(std::string_view text) const;
  std::vector<int64_t> encode_i64(std::string_view text) const;
  // Bytes back; invalid UTF-8 passes through unchanged. Throws on a token outside [0, 256).
  std::string decode(std::span<const int32_t> tokens) const;
  std::string decode(std::span<const int64_t> tokens) const;
};

}  // namespace hp::data
