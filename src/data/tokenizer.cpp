// Byte-level tokenizer.
// Not a text normaliser: no Unicode handling, bytes are tokens.
#include "hp/data/tokenizer.hpp"

#include "hp/core/error.hpp"

namespace hp::data {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::vector<int64_t> ByteTokenizer::encode_i64(std::string_view text) const {
  std::vector<int64_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

namespace {
template <typename T>
std::string decode_any(std::span<const T> tokens) {
  std::string out(tokens.size(), '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    HP_CHECK(tokens[i] >= 0 && tokens[i] < ByteTokenizer::kVocab, "[tokenizer] token ", tokens[i],
             " at position ", i, " is outside the byte vocabulary [0, 256)");
    out[i] = static_cast<char>(static_cast<unsigned char>(tokens[i]));
  }
  return out;
}
}  // namespace

std::string ByteTokenizer::decode(std::span<const int32_t> tokens) const {
  return decode_any(tokens);
}
std::string ByteTokenizer::decode(std::span<const int64_t> tokens) const {
  return decode_any(tokens);
}

}  // namespace hp::data
