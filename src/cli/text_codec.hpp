// Text to token ids and back for `hp generate` and `hp serve`: the byte vocabulary (one id per
// byte, the default), or a byte-level BPE tokenizer given by --tokenizer (a GPT-2 vocab.json +
// merges.txt directory, or an HF tokenizer.json; hp/data/bpe.hpp).
// Not a tokenizer: it only chooses one and keeps each id's bytes for stop strings and streaming.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hp/data/bpe.hpp"
#include "hp/io/model_config.hpp"

namespace hp::cli {

class TextCodec {
 public:
  TextCodec() = default;  // bytes
  // `path` empty: bytes; else the tokenizer there (throws naming the file it cannot read).
  static TextCodec load(const std::string& path);
  // Throws unless the model's vocabulary holds every id the tokenizer makes.
  void check_model(const io::ModelConfig& cfg) const;

  std::vector<int64_t> encode(std::string_view text) const;
  // The bytes of each id in turn; an id the vocabulary lacks (a model larger than its
  // tokenizer) gives none.
  std::string decode(std::span<const int64_t> ids) const;
  // For infer::EngineOptions::token_text: empty for bytes (the engine's own reading).
  std::function<std::string(int64_t)> token_text() const;
  // "bytes" or the tokenizer's path, with its vocabulary size.
  std::string describe() const;

 private:
  struct Bpe {
    data::BpeTokenizer tok;
    std::vector<std::string> bytes;  // per id ("" for gaps)
    std::string path;
  };
  std::shared_ptr<const Bpe> bpe_;
};

}  // namespace hp::cli
