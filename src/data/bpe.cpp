// Byte-level BPE: GPT-2's pre-tokenizer over Unicode classes (ICU), bytes_to_unicode, merges
// by rank, added tokens split out first; vocab.json + merges.txt and tokenizer.json readers.
#include "hp/data/bpe.hpp"

#include <unicode/uchar.h>

#include <algorithm>
#include <limits>

#include "hp/core/error.hpp"
#include "hp/io/file.hpp"
#include "hp/io/json.hpp"

namespace fs = std::filesystem;

namespace hp::data {

namespace {

// Ids above this are refused: a vocabulary is at most a few hundred thousand entries, and an id
// sizes the id -> token table.
constexpr int64_t kMaxId = int64_t(1) << 24;

enum class Class { kLetter, kNumber, kSpace, kOther };

// The code point at text[i] and its length in bytes; an invalid or truncated sequence is one
// byte of code point -1.
std::pair<int32_t, size_t> next_code_point(std::string_view text, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned c = b(i);
  if (c < 0x80) return {int32_t(c), 1};
  const size_t len = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (len == 0 || (len == 3 && c >= 0xF0) || i + len > text.size()) return {-1, 1};
  int32_t cp = int32_t(c & (0x7F >> len));
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return {-1, 1};
    cp = (cp << 6) | int32_t(b(i + k) & 0x3F);
  }
  const int32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {-1, 1};
  return {cp, len};
}

Class class_of(int32_t cp) {
  if (cp < 0) return Class::kOther;
  if (u_isUWhiteSpace(cp)) return Class::kSpace;
  switch (u_charType(cp)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return Class::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return Class::kNumber;
    default:
      return Class::kOther;
  }
}

std::string utf8(int32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// The length of the contraction ('s 't 're 've 'm 'll 'd) at text[i], or 0.
size_t contraction(std::string_view text, size_t i) {
  if (text[i] != '\'' || i + 1 >= text.size()) return 0;
  for (std::string_view s : {"s", "t", "re", "ve", "m", "ll", "d"})
    if (text.substr(i + 1, s.size()) == s) return 1 + s.size();
  return 0;
}

std::string where_of(const fs::path& p) {
  return p.string();
}

}  // namespace

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (size_t c = contraction(text, i)) {
      out.push_back(text.substr(i, c));
      i += c;
      continue;
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then one class's run.
    const size_t j = text[i] == ' ' && i + 1 < n ? i + 1 : i;
    const Class run = class_of(next_code_point(text, j).first);
    if (run != Class::kSpace) {
      size_t e = j;
      while (e < n) {
        const auto [cp, len] = next_code_point(text, e);
        if (class_of(cp) != run) break;
        e += len;
      }
      out.push_back(text.substr(i, e - i));
      i = e;
      continue;
    }
    // `\s+(?!\S)|\s+`: a run of white space, less its last character when more follows.
    size_t e = i, last = i;
    while (e < n) {
      const auto [cp, len] = next_code_point(text, e);
      if (class_of(cp) != Class::kSpace) break;
      last = e, e += len;
    }
    if (e < n && last > i) e = last;
    out.push_back(text.substr(i, e - i));
    i = e;
  }
  return out;
}

const std::vector<std::string>& byte_symbols() {
  static const std::vector<std::string> table = [] {
    // Printable Latin-1 bytes stand for themselves; the others, in order, for 256, 257, ...
    std::vector<std::string> t(256);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[size_t(b)] = utf8(printable ? b : next++);
    }
    return t;
  }();
  return table;
}

BpeTokenizer BpeTokenizer::from_gpt2_files(const fs::path& vocab_json, const fs::path& merges_txt) {
  BpeTokenizer t;
  const io::Json v = io::read_json(vocab_json);
  const std::string where = where_of(vocab_json);
  HP_CHECK(v.is_object(), "[bpe] ", where, ": expected an object of token -> id");
  for (const auto& [token, id] : v.items()) {
    HP_CHECK(id.is_number_integer(), "[bpe] ", where, ": the id of '", token,
             "' must be an integer, got ", id.dump());
    t.vocab_[token] = id.get<int64_t>();
    // GPT-2 marks its special tokens <|endoftext|> this way; they are matched whole in text.
    if (token.size() > 4 && token.rfind("<|", 0) == 0 && token.substr(token.size() - 2) == "|>")
      t.added_.emplace_back(token, id.get<int64_t>());
  }
  const std::string text = io::read_text_file(merges_txt);
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1, ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    HP_CHECK(sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                 line.find(' ', sp + 1) == std::string_view::npos,
             "[bpe] ", where_of(merges_txt), ":", line_no,
             ": a merge is two tokens separated by one space, got '", std::string(line), "'");
    merges.emplace_back(std::string(line.substr(0, sp)), std::string(line.substr(sp + 1)));
  }
  t.add_merges(merges, where_of(merges_txt));
  t.finish(where);
  return t;
}

BpeTokenizer BpeTokenizer::from_hf_json(const fs::path& tokenizer_json) {
  const std::string where = where_of(tokenizer_json);
  const io::Json j = io::read_json(tokenizer_json);
  HP_CHECK(j.is_object(), "[bpe] ", where, ": expected a JSON object");
  const auto refuse_unless = [&](bool ok, const std::string& field, const io::Json& value) {
    HP_CHECK(ok, "[bpe] ", where, ": '", field, "' = ", value.dump(),
             " is not supported (a byte-level BPE tokenizer is)");
  };
  const io::Json& model = io::json_require(j, "model", where);
  refuse_unless(model.is_object() && io::json_string(model, "type", "BPE", where) == "BPE",
                "model.type", model.is_object() ? model.value("type", io::Json()) : model);
  for (const char* k : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
    if (io::json_has(model, k))
      refuse_unless(model[k].is_string() && model[k].get<std::string>().empty(),
                    std::string("model.") + k, model[k]);
  if (io::json_has(model, "byte_fallback"))
    refuse_unless(model["byte_fallback"] == false, "model.byte_fallback", model["byte_fallback"]);
  if (io::json_has(j, "normalizer")) refuse_unless(false, "normalizer", j["normalizer"]);
  const io::Json& pre = io::json_require(j, "pre_tokenizer", where);
  refuse_unless(pre.is_object() && pre.value("type", "") == "ByteLevel" &&
                    pre.value("use_regex", true) == true,
                "pre_tokenizer", pre);
  if (io::json_has(j, "decoder"))
    refuse_unless(j["decoder"].is_object() && j["decoder"].value("type", "") == "ByteLevel",
                  "decoder", j["decoder"]);

  BpeTokenizer t;
  t.prefix_space_ = io::json_bool(pre, "add_prefix_space", false, where + " (pre_tokenizer)");
  t.ignore_merges_ = io::json_bool(model, "ignore_merges", false, where + " (model)");
  const io::Json& vocab = io::json_require(model, "vocab", where + " (model)");
  HP_CHECK(vocab.is_object(), "[bpe] ", where, ": 'model.vocab' must be an object");
  for (const auto& [token, id] : vocab.items()) {
    HP_CHECK(id.is_number_integer(), "[bpe] ", where, ": model.vocab['", token,
             "'] must be an integer, got ", id.dump());
    t.vocab_[token] = id.get<int64_t>();
  }
  const io::Json& merges = io::json_require(model, "merges", where + " (model)");
  HP_CHECK(merges.is_array(), "[bpe] ", where, ": 'model.merges' must be an array");
  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t k = 0; k < merges.size(); ++k) {
    const io::Json& m = merges[k];
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      HP_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < s.size() &&
                   s.find(' ', sp + 1) == std::string::npos,
               "[bpe] ", where, ": model.merges[", k, "] = '", s,
               "' is not two tokens separated by one space");
      pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      HP_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), "[bpe] ",
               where, ": model.merges[", k, "] must be \"a b\" or [\"a\", \"b\"], got ", m.dump());
      pairs.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  t.add_merges(pairs, where);
  if (io::json_has(j, "added_tokens")) {
    const io::Json& added = j["added_tokens"];
    HP_CHECK(added.is_array(), "[bpe] ", where, ": 'added_tokens' must be an array");
    for (size_t k = 0; k < added.size(); ++k) {
      const std::string w = where + " (added_tokens[" + std::to_string(k) + "])";
      const io::Json& a = added[k];
      HP_CHECK(a.is_object(), "[bpe] ", w, ": must be an object");
      const std::string content = io::json_string(a, "content", w);
      HP_CHECK(!content.empty(), "[bpe] ", w, ": 'content' is empty");
      for (const char* k2 : {"lstrip", "rstrip", "single_word"})
        refuse_unless(!io::json_bool(a, k2, false, w),
                      "added_tokens[" + std::to_string(k) + "]." + k2, a[k2]);
      const int64_t id = io::json_int(a, "id", w);
      t.vocab_[content] = id;
      t.added_.emplace_back(content, id);
    }
  }
  t.finish(where);
  return t;
}

BpeTokenizer BpeTokenizer::load(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return from_hf_json(path);
  if (fs::exists(path / "tokenizer.json", ec)) return from_hf_json(path / "tokenizer.json");
  HP_CHECK(fs::exists(path / "vocab.json", ec) && fs::exists(path / "merges.txt", ec), "[bpe] ",
           path.string(), ": holds neither tokenizer.json nor vocab.json and merges.txt");
  return from_gpt2_files(path / "vocab.json", path / "merges.txt");
}

void BpeTokenizer::add_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                              const std::string& where) {
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    for (const std::string& tok : {a, b, a + b}) {
      HP_CHECK(vocab_.count(tok), "[bpe] ", where, ": merge ", r + 1, " ('", a, " ", b,
               "') names '", tok, "', which is not in the vocabulary");
    }
    ranks_.emplace(merges[r], int64_t(r));  // the first of duplicate merges keeps its rank
  }
}

void BpeTokenizer::finish(const std::string& where) {
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab_) {
    HP_CHECK(id >= 0 && id <= kMaxId, "[bpe] ", where, ": the id of '", token, "' is ", id,
             ", outside [0, ", kMaxId, "]");
    max_id = std::max(max_id, id);
  }
  HP_CHECK(max_id >= 0, "[bpe] ", where, ": the vocabulary is empty");
  vocab_size_ = max_id + 1;
  tokens_.assign(size_t(vocab_size_), "");
  is_added_.assign(size_t(vocab_size_), false);
  std::vector<bool> seen(size_t(vocab_size_), false);
  for (const auto& [token, id] : vocab_) {
    HP_CHECK(!seen[size_t(id)] || tokens_[size_t(id)] == token, "[bpe] ", where, ": id ", id,
             " is given to both '", tokens_[size_t(id)], "' and '", token, "'");
    seen[size_t(id)] = true, tokens_[size_t(id)] = token;
  }
  for (const auto& [content, id] : added_) is_added_[size_t(id)] = true;
  std::sort(added_.begin(), added_.end(),
            [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
  const std::vector<std::string>& sym = byte_symbols();
  for (int b = 0; b < 256; ++b) unicode_byte_[sym[size_t(b)]] = b;
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  std::vector<std::string> parts;
  std::string whole;
  for (unsigned char c : piece) parts.push_back(byte_symbols()[c]), whole += parts.back();
  if (ignore_merges_) {
    if (auto it = vocab_.find(whole); it != vocab_.end()) return out.push_back(it->second);
  }
  while (parts.size() > 1) {
    // The adjacent pair of the lowest rank; every occurrence of it merges, left to right.
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t at = 0;
    for (size_t k = 0; k + 1 < parts.size(); ++k) {
      auto it = ranks_.find({parts[k], parts[k + 1]});
      if (it != ranks_.end() && it->second < best) best = it->second, at = k;
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    const std::string a = parts[at], b = parts[at + 1];
    std::vector<std::string> merged;
    for (size_t k = 0; k < parts.size(); ++k) {
      if (k + 1 < parts.size() && parts[k] == a && parts[k + 1] == b) {
        merged.push_back(a + b), ++k;
      } else {
        merged.push_back(parts[k]);
      }
    }
    parts = std::move(merged);
  }
  for (const std::string& p : parts) {
    auto it = vocab_.find(p);
    HP_CHECK(it != vocab_.end(), "[bpe] the vocabulary has no token '", p, "' (in the text '",
             std::string(piece), "')");
    out.push_back(it->second);
  }
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  size_t start = 0;
  // Each stretch between added tokens is pre-tokenized on its own (as Hugging Face does, the
  // prefix space included).
  const auto plain = [&](std::string_view s) {
    if (s.empty()) return;
    std::string prefixed;
    if (prefix_space_ && s.front() != ' ') prefixed.append(1, ' ').append(s), s = prefixed;
    for (std::string_view piece : gpt2_pretokenize(s)) encode_piece(piece, out);
  };
  for (size_t i = 0; i < text.size();) {
    const auto hit = std::find_if(added_.begin(), added_.end(), [&](const auto& a) {
      return text.compare(i, a.first.size(), a.first) == 0;
    });
    if (hit == added_.end()) {
      ++i;
      continue;
    }
    plain(text.substr(start, i - start));
    out.push_back(hit->second);
    i += hit->first.size(), start = i;
  }
  plain(text.substr(start));
  return out;
}

std::string BpeTokenizer::decode(std::span<const int64_t> ids) const {
  std::string out;
  for (int64_t id : ids) {
    HP_CHECK(id >= 0 && id < vocab_size_ && !tokens_[size_t(id)].empty(), "[bpe] token id ", id,
             " is not in the vocabulary (size ", vocab_size_, ")");
    const std::string& tok = tokens_[size_t(id)];
    if (is_added_[size_t(id)]) {
      out += tok;
      continue;
    }
    for (size_t i = 0; i < tok.size();) {
      const size_t len = next_code_point(tok, i).second;
      auto it = unicode_byte_.find(tok.substr(i, len));
      HP_CHECK(it != unicode_byte_.end(), "[bpe] token ", id, " ('", tok,
               "') holds a character that stands for no byte");
      out += char(it->second);
      i += len;
    }
  }
  return out;
}

std::optional<int64_t> BpeTokenizer::id_of(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

}  // namespace hp::data
