// The text side of generate and serve: bytes, or a BPE tokenizer whose ids' bytes are read once.
#include "cli/text_codec.hpp"

#include "hp/core/error.hpp"
#include "hp/data/tokenizer.hpp"

namespace hp::cli {

TextCodec TextCodec::load(const std::string& path) {
  TextCodec c;
  if (path.empty()) return c;
  std::optional<data::BpeTokenizer> tok;
  try {
    tok = data::BpeTokenizer::load(path);
  } catch (const Error& e) {
    throw Error("option --tokenizer: " + std::string(e.what()));
  }
  auto b = std::make_shared<Bpe>(Bpe{std::move(*tok), {}, path});
  b->bytes.resize(size_t(b->tok.vocab()));
  for (int64_t id = 0; id < b->tok.vocab(); ++id) {
    const int64_t one[] = {id};
    try {
      b->bytes[size_t(id)] = b->tok.decode(one);
    } catch (const Error&) {  // a gap in the ids: no token, no bytes
    }
  }
  c.bpe_ = std::move(b);
  return c;
}

void TextCodec::check_model(const io::ModelConfig& cfg) const {
  const int64_t v = bpe_ ? bpe_->tok.vocab() : data::ByteTokenizer::kVocab;
  HP_CHECK(v <= cfg.vocab, "the tokenizer (", describe(), ") makes ids up to ", v - 1,
           " but the model's vocabulary has ", cfg.vocab, bpe_ ? "" : " (give --tokenizer)");
}

std::vector<int64_t> TextCodec::encode(std::string_view text) const {
  return bpe_ ? bpe_->tok.encode(text) : data::ByteTokenizer().encode_i64(text);
}

std::string TextCodec::decode(std::span<const int64_t> ids) const {
  std::string s;
  for (int64_t id : ids) {
    if (!bpe_) {
      if (id >= 0 && id < 256) s.push_back(char(id));
    } else if (id >= 0 && id < int64_t(bpe_->bytes.size())) {
      s += bpe_->bytes[size_t(id)];
    }
  }
  return s;
}

std::function<std::string(int64_t)> TextCodec::token_text() const {
  if (!bpe_) return {};
  return [b = bpe_](int64_t id) {
    return id >= 0 && id < int64_t(b->bytes.size()) ? b->bytes[size_t(id)] : std::string();
  };
}

std::string TextCodec::describe() const {
  if (!bpe_) return "bytes";
  return bpe_->path + ", " + std::to_string(bpe_->tok.vocab()) + " ids";
}

}  // namespace hp::cli
