// Request parsing and response bodies of hp serve: each field read with its type and range
// checked, the error naming it.
#include "cli/serve_api.hpp"

#include <cmath>
#include <limits>

namespace hp::cli::serve {

ApiError::ApiError(int s, std::string message, std::string p, std::string c)
    : std::runtime_error(std::move(message)), status(s), param(std::move(p)), code(std::move(c)) {}

std::string ApiError::type() const {
  if (status == 429) return "rate_limit_error";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

io::Json ApiError::body() const {
  return {{"error",
           {{"message", what()},
            {"type", type()},
            {"param", param.empty() ? io::Json(nullptr) : io::Json(param)},
            {"code", code.empty() ? io::Json(nullptr) : io::Json(code)}}}};
}

namespace {

const char* type_name(const io::Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// 'key', quoted for a message.
std::string q(const std::string& key) {
  std::string s(1, '\'');
  s.append(key).push_back('\'');
  return s;
}

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_value");
}

[[noreturn]] void wrong_type(const std::string& param, const char* want, const io::Json& v) {
  throw ApiError(400, q(param) + " must be " + want + ", got " + type_name(v), param,
                 "invalid_type");
}

// The field, or null when absent (OpenAI's clients send null for "not given").
const io::Json& field(const io::Json& body, const char* key) {
  static const io::Json null;
  auto it = body.find(key);
  return it == body.end() ? null : *it;
}

double number(const io::Json& body, const char* key, double fallback, double lo, double hi,
              bool lo_open = false) {
  const io::Json& v = field(body, key);
  if (v.is_null()) return fallback;
  if (!v.is_number()) wrong_type(key, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
    char range[96];
    std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    bad(key, q(key) + " must be in " + range + ", got " + v.dump());
  }
  return x;
}

int64_t integer(const io::Json& body, const char* key, int64_t fallback, int64_t lo) {
  const io::Json& v = field(body, key);
  if (v.is_null()) return fallback;
  if (!v.is_number_integer()) wrong_type(key, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad(key, q(key) + " is too large: " + v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < lo)
    bad(key, q(key) + " must be at least " + std::to_string(lo) + ", got " + std::to_string(x));
  return x;
}

bool boolean(const io::Json& body, const char* key, bool fallback) {
  const io::Json& v = field(body, key);
  if (v.is_null()) return fallback;
  if (!v.is_boolean()) wrong_type(key, "a boolean", v);
  return v.get<bool>();
}

// Fields whose other values this server cannot honour: refused, never ignored.
void refuse_unsupported(const io::Json& body) {
  if (integer(body, "n", 1, 1) != 1) bad("n", "only n = 1 is supported");
  if (integer(body, "best_of", 1, 1) != 1) bad("best_of", "only best_of = 1 is supported");
  if (boolean(body, "echo", false)) bad("echo", "echo is not supported");
  for (const char* key : {"logprobs", "top_logprobs"}) {
    const io::Json& v = field(body, key);
    if (!v.is_null() && !(v.is_boolean() && !v.get<bool>())) bad(key, q(key) + " is not supported");
  }
  for (const char* key : {"suffix", "tools", "functions", "response_format"}) {
    if (!field(body, key).is_null()) bad(key, q(key) + " is not supported");
  }
  const io::Json& bias = field(body, "logit_bias");
  if (!bias.is_null() && !(bias.is_object() && bias.empty()))
    bad("logit_bias", "'logit_bias' is not supported");
}

std::vector<int64_t> completion_prompt(const io::Json& body, const Limits& lim) {
  const io::Json* given = &field(body, "prompt");
  if (given->is_array() && given->size() == 1 && (*given)[0].is_string())
    given = &(*given)[0];  // ["text"]: one prompt, as OpenAI's clients may send it
  const io::Json& p = *given;
  if (p.is_null()) throw ApiError(400, "'prompt' is required", "prompt", "missing_field");
  std::vector<int64_t> ids;
  if (p.is_string()) {
    ids = lim.codec.encode(p.get<std::string>());
    if (ids.empty()) ids.push_back('\n');  // as hp generate: an empty prompt is one newline
    return ids;
  }
  if (!p.is_array()) wrong_type("prompt", "a string or an array of token ids", p);
  if (p.empty()) bad("prompt", "'prompt' is an empty array");
  if (p[0].is_string() || p[0].is_array())
    bad("prompt", "one prompt per request: 'prompt' holds several");
  for (const io::Json& t : p) {
    if (!t.is_number_integer()) wrong_type("prompt", "a string or an array of token ids", p);
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= lim.vocab)
      bad("prompt", "token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                        std::to_string(lim.vocab) + ")");
    ids.push_back(id);
  }
  return ids;
}

std::vector<std::string> stops(const io::Json& body) {
  const io::Json& v = field(body, "stop");
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > 4) bad("stop", "at most 4 stop strings, got " + std::to_string(v.size()));
    for (const io::Json& s : v) {
      if (!s.is_string()) wrong_type("stop", "a string or an array of strings", v);
      out.push_back(s.get<std::string>());
    }
  } else {
    wrong_type("stop", "a string or an array of strings", v);
  }
  std::erase_if(out, [](const std::string& s) { return s.empty(); });
  return out;
}

}  // namespace

std::string chat_prompt(const io::Json& messages) {
  if (messages.is_null())
    throw ApiError(400, "'messages' is required", "messages", "missing_field");
  if (!messages.is_array()) wrong_type("messages", "an array of messages", messages);
  if (messages.empty()) bad("messages", "'messages' is empty");
  std::string text;
  for (const io::Json& m : messages) {
    if (!m.is_object()) wrong_type("messages", "an array of objects", m);
    const io::Json& role = field(m, "role");
    if (!role.is_string()) wrong_type("messages.role", "a string", role);
    const std::string r = role.get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "developer")
      bad("messages.role", "unknown role '" + r + "' (system, developer, user or assistant)");
    const io::Json& content = field(m, "content");
    std::string c;
    if (content.is_string()) {
      c = content.get<std::string>();
    } else if (content.is_array()) {  // parts: only text
      for (const io::Json& part : content) {
        if (!part.is_object() || field(part, "type") != "text" || !field(part, "text").is_string())
          bad("messages.content", "only text parts are supported");
        c += field(part, "text").get<std::string>();
      }
    } else {
      wrong_type("messages.content", "a string or an array of text parts", content);
    }
    text += "<|" + r + "|>\n" + c + "\n";
  }
  return text + "<|assistant|>\n";
}

ApiRequest parse_request(const std::string& text, bool chat, const Limits& lim, uint64_t seed) {
  io::Json body;
  try {
    body = io::parse_json(text, "the request body");
  } catch (const std::exception& e) {
    throw ApiError(400, std::string("bad JSON: ") + e.what(), "", "invalid_json");
  }
  if (!body.is_object()) throw ApiError(400, "the body must be a JSON object", "", "invalid_json");
  ApiRequest out;
  out.chat = chat;
  const io::Json& model = field(body, "model");
  if (!model.is_null()) {
    if (!model.is_string()) wrong_type("model", "a string", model);
    if (model.get<std::string>() != lim.model)
      throw ApiError(404,
                     "the model '" + model.get<std::string>() +
                         "' does not exist; this server serves '" + lim.model + "'",
                     "model", "model_not_found");
  }
  refuse_unsupported(body);
  out.stream = boolean(body, "stream", false);
  const io::Json& so = field(body, "stream_options");
  if (!so.is_null()) {
    if (!so.is_object()) wrong_type("stream_options", "an object", so);
    out.include_usage = boolean(so, "include_usage", false);
  }
  infer::Request& r = out.engine;
  const char* prompt_param = chat ? "messages" : "prompt";
  if (chat) {
    r.prompt = lim.codec.encode(chat_prompt(field(body, "messages")));
    if (r.prompt.empty()) r.prompt.push_back('\n');
  } else {
    r.prompt = completion_prompt(body, lim);
  }
  const int64_t P = int64_t(r.prompt.size());
  const int64_t room = std::min(lim.max_seq, lim.pool_positions);
  if (P >= room)
    throw ApiError(400,
                   "the prompt has " + std::to_string(P) + " tokens; this model's context is " +
                       std::to_string(lim.max_seq) + " tokens (the KV pool holds " +
                       std::to_string(lim.pool_positions) +
                       " positions) and at least one must be "
                       "left to generate",
                   prompt_param, "context_length_exceeded");
  const char* max_key = chat && !field(body, "max_completion_tokens").is_null()
                            ? "max_completion_tokens"
                            : "max_tokens";
  r.max_tokens = integer(body, max_key, chat ? room - P : 16, 1);
  if (P + r.max_tokens > room)
    throw ApiError(400,
                   "the prompt's " + std::to_string(P) + " tokens and " + max_key + " = " +
                       std::to_string(r.max_tokens) + " exceed this model's context of " +
                       std::to_string(lim.max_seq) + " tokens (the KV pool holds " +
                       std::to_string(lim.pool_positions) + " positions)",
                   max_key, "context_length_exceeded");
  infer::SamplingParams& s = r.sampling;
  constexpr double inf = std::numeric_limits<double>::infinity();
  s.temperature = number(body, "temperature", 1.0, 0, 2);
  s.top_p = number(body, "top_p", 1.0, 0, 1, true);
  s.top_k = field(body, "top_k") == -1 ? 0 : integer(body, "top_k", 0, 0);
  s.min_p = number(body, "min_p", 0.0, 0, 1);
  s.repetition_penalty = number(body, "repetition_penalty", 1.0, 0, inf, true);
  s.presence_penalty = number(body, "presence_penalty", 0.0, -2, 2);
  s.frequency_penalty = number(body, "frequency_penalty", 0.0, -2, 2);
  s.seed = uint64_t(integer(body, "seed", int64_t(seed >> 1), 0));
  r.stop = stops(body);
  if (chat) r.stop.push_back(kChatStop);
  return out;
}

size_t utf8_complete(const std::string& b) {
  const size_t n = b.size();
  // A lead byte among the last three whose sequence runs past the end: cut before it.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(b[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return len > back ? n - back : n;
  }
  return n;
}

std::string finish_reason(const std::string& finish) {
  return finish == "length" ? "length" : "stop";
}

std::string dump(const io::Json& j) {
  return j.dump(-1, ' ', false, io::Json::error_handler_t::replace);
}

namespace {

io::Json usage(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

io::Json head(const Reply& r, bool chunk) {
  const char* object =
      r.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", r.id}, {"object", object}, {"created", r.created}, {"model", r.model}};
}

}  // namespace

io::Json response_body(const Reply& r, const std::string& text, const std::string& finish,
                       int64_t prompt_tokens, int64_t completion_tokens) {
  io::Json choice = {{"index", 0}, {"finish_reason", finish_reason(finish)}};
  if (r.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  io::Json j = head(r, false);
  j["choices"] = io::Json::array({choice});
  j["usage"] = usage(prompt_tokens, completion_tokens);
  return j;
}

io::Json chunk_body(const Reply& r, const std::string& text, const std::string& finish,
                    bool first) {
  io::Json choice = {
      {"index", 0},
      {"finish_reason", finish.empty() ? io::Json(nullptr) : io::Json(finish_reason(finish))}};
  if (r.chat) {
    io::Json delta = io::Json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish.empty())) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  io::Json j = head(r, true);
  j["choices"] = io::Json::array({choice});
  return j;
}

io::Json usage_chunk(const Reply& r, int64_t prompt_tokens, int64_t completion_tokens) {
  io::Json j = head(r, true);
  j["choices"] = io::Json::array();
  j["usage"] = usage(prompt_tokens, completion_tokens);
  return j;
}

}  // namespace hp::cli::serve
