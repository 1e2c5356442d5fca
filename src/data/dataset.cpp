// Token storage (mmap or owned bytes) and the TokenDataset views over it.
// Not a tokenizer: text files are byte tokens; anything else arrives pre-tokenised.
#include "hp/data/dataset.hpp"

#include <bit>
#include <cmath>
#include <cstring>

#include "hp/core/error.hpp"
#include "hp/data/corpus.hpp"
#include "hp/io/file.hpp"

namespace hp::data {

static_assert(std::endian::native == std::endian::little, "token files are little-endian");

namespace detail {
struct TokenStore {
  std::string name;
  io::MappedFile map;          // file-backed tokens, or
  std::vector<uint8_t> owned;  // in-memory tokens
  const uint8_t* base = nullptr;
  int width = 1;
  int64_t count = 0;

  int64_t get(int64_t i) const {
    const uint8_t* p = base + size_t(i) * size_t(width);
    if (width == 1) return *p;
    if (width == 2) {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
};
}  // namespace detail

const char* token_width_name(TokenWidth w) {
  switch (w) {
    case TokenWidth::kU8:
      return "u8";
    case TokenWidth::kU16:
      return "u16";
    case TokenWidth::kU32:
      return "u32";
  }
  return "?";
}

TokenWidth parse_token_width(const std::string& name) {
  if (name == "u8" || name == "uint8") return TokenWidth::kU8;
  if (name == "u16" || name == "uint16") return TokenWidth::kU16;
  if (name == "u32" || name == "uint32") return TokenWidth::kU32;
  throw Error("[dataset] unknown token width '" + name + "' (expected u8, u16 or u32)");
}

TokenDataset TokenDataset::from_text(std::string text, std::string name) {
  auto s = std::make_shared<detail::TokenStore>();
  s->name = std::move(name);
  s->owned.assign(text.begin(), text.end());
  s->base = s->owned.data();
  s->count = int64_t(s->owned.size());
  TokenDataset d;
  d.end_ = s->count;
  d.vocab_ = 256;
  d.store_ = std::move(s);
  return d;
}

TokenDataset TokenDataset::from_text_file(const std::filesystem::path& path) {
  io::MappedFile f(path);
  if (is_block_compressed({f.data(), f.size()})) {
    return from_text(decode_block_compressed({f.data(), f.size()}, path.string()), path.string());
  }
  auto s = std::make_shared<detail::TokenStore>();
  s->name = path.string();
  s->map = std::move(f);
  s->base = s->map.data();
  s->count = int64_t(s->map.size());
  TokenDataset d;
  d.end_ = s->count;
  d.vocab_ = 256;
  d.store_ = std::move(s);
  return d;
}

TokenDataset TokenDataset::from_token_file(const std::filesystem::path& path, TokenWidth width,
                                           int64_t vocab) {
  const int w = int(width);
  HP_CHECK(vocab > 0, "[dataset] ", path.string(), ": vocab must be positive, got ", vocab);
  auto s = std::make_shared<detail::TokenStore>();
  s->name = path.string();
  s->map = io::MappedFile(path);
  HP_CHECK(s->map.size() % size_t(w) == 0, "[dataset] ", path.string(), ": size ", s->map.size(),
           " bytes is not a multiple of the token width (", token_width_name(width), ", ", w,
           " bytes); wrong width?");
  s->base = s->map.data();
  s->width = w;
  s->count = int64_t(s->map.size() / size_t(w));
  if (vocab < (int64_t(1) << (8 * w))) {  // otherwise every value fits
    for (int64_t i = 0; i < s->count; ++i) {
      int64_t t = s->get(i);
      HP_CHECK(t < vocab, "[dataset] ", path.string(), ": token ", t, " at position ", i,
               " is >= the vocabulary size ", vocab, " (wrong width or vocab?)");
    }
  }
  TokenDataset d;
  d.end_ = s->count;
  d.vocab_ = vocab;
  d.store_ = std::move(s);
  return d;
}

TokenDataset TokenDataset::from_tokens(const std::vector<int32_t>& tokens, int64_t vocab,
                                       std::string name) {
  HP_CHECK(vocab > 0, "[dataset] ", name, ": vocab must be positive, got ", vocab);
  auto s = std::make_shared<detail::TokenStore>();
  s->name = std::move(name);
  s->width = 4;
  s->owned.resize(tokens.size() * 4);
  for (size_t i = 0; i < tokens.size(); ++i) {
    HP_CHECK(tokens[i] >= 0 && tokens[i] < vocab, "[dataset] ", s->name, ": token ", tokens[i],
             " at position ", i, " is outside [0, ", vocab, ")");
    uint32_t v = uint32_t(tokens[i]);
    std::memcpy(s->owned.data() + 4 * i, &v, 4);
  }
  s->base = s->owned.data();
  s->count = int64_t(tokens.size());
  TokenDataset d;
  d.end_ = s->count;
  d.vocab_ = vocab;
  d.store_ = std::move(s);
  return d;
}

const std::string& TokenDataset::name() const {
  static const std::string kEmpty = "<empty>";
  return store_ ? store_->name : kEmpty;
}

int64_t TokenDataset::at(int64_t i) const {
  HP_CHECK(i >= 0 && i < size(), "[dataset] ", name(), ": index ", i, " outside [0, ", size(), ")");
  return store_->get(begin_ + i);
}

void TokenDataset::read(int64_t begin, int64_t n, int64_t* out) const {
  HP_CHECK(begin >= 0 && n >= 0 && begin + n <= size(), "[dataset] ", name(), ": read [", begin,
           ", ", begin + n, ") outside [0, ", size(), ")");
  for (int64_t i = 0; i < n; ++i) out[i] = store_->get(begin_ + begin + i);
}

TokenDataset TokenDataset::slice(int64_t begin, int64_t end) const {
  HP_CHECK(0 <= begin && begin <= end && end <= size(), "[dataset] ", name(), ": slice [", begin,
           ", ", end, ") outside [0, ", size(), ")");
  TokenDataset d = *this;
  d.begin_ = begin_ + begin;
  d.end_ = begin_ + end;
  return d;
}

TokenDataset::Split TokenDataset::split(double val_fraction) const {
  HP_CHECK(val_fraction >= 0 && val_fraction < 1, "[dataset] ", name(),
           ": val_fraction must be in [0, 1), got ", val_fraction);
  const int64_t n_val = int64_t(std::floor(double(size()) * val_fraction));
  return {slice(0, size() - n_val), slice(size() - n_val, size())};
}

}  // namespace hp::data
