// Continuous batching: requests are submitted (all at once by generate, or one at a time while
// others run), and each step decodes one token for every running sequence that has its prompt in
// the cache, then spends the rest of the token budget on prefill chunks in admission order;
// finished sequences give back their blocks and the waiting requests take their places. A
// sequence whose context fills the model's max_seq positions keeps its last max_seq / 2 tokens
// and prefills them again (a window shift) to go on.
#include <algorithm>
#include <chrono>

#include "hp/infer/engine.hpp"

namespace hp::infer {

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void check_request(const Request& r, const std::string& which, int64_t max_seq) {
  HP_CHECK(!r.prompt.empty(), "[engine] ", which, " has an empty prompt");
  HP_CHECK(int64_t(r.prompt.size()) <= max_seq, "[engine] ", which, ": a prompt of ",
           r.prompt.size(), " tokens exceeds the model's ", max_seq, " positions");
  HP_CHECK(r.max_tokens >= 0, "[engine] ", which, ": max_tokens must be >= 0, got ", r.max_tokens);
  check(r.sampling);
}

}  // namespace

void Engine::accept(Sequence& s, std::span<const float> logits) {
  Result& out = s.out;
  const Request& req = s.req;
  const size_t i = out.tokens.size();
  const int64_t tok = sample(logits, req.prompt, out.tokens, req.sampling, s.seq, i);
  const auto now = Clock::now();
  if (i == 0) {
    out.ttft_ms = ms_between(s.admitted, now);
    s.first = now;
  }
  s.last = now;
  ++generated_;
  out.tokens.push_back(tok);
  s.context.push_back(tok);
  if (o_.token_text) {
    const std::string bytes = o_.token_text(tok);
    s.text += bytes;
    s.text_tok.insert(s.text_tok.end(), bytes.size(), i);
  } else if (tok >= 0 && tok < 256) {
    s.text.push_back(char(tok));
    s.text_tok.push_back(i);
  }
  s.next = -1;
  s.done = true;
  if (tok == req.eos) {
    out.finish = "eos";
  } else if (const size_t at = find_stop(s.text, req.stop); at != std::string::npos) {
    out.tokens.resize(s.text_tok[at]);
    out.finish = "stop";
  } else if (int64_t(out.tokens.size()) >= req.max_tokens) {
    out.finish = "length";
  } else {
    s.next = tok;
    s.done = false;
  }
  if (s.done) return;  // finish() passes the rest
  // A stop string completed later starts in the last `hold` bytes at the earliest: the tokens
  // before the one of that byte are final.
  size_t safe = out.tokens.size();
  if (s.hold > 0) safe = s.text.size() > s.hold ? s.text_tok[s.text.size() - s.hold] : 0;
  if (s.sink && safe > s.passed) {
    s.sink(std::span<const int64_t>(out.tokens.data() + s.passed, safe - s.passed), nullptr);
    s.passed = safe;
  }
}

void Engine::finish(Sequence& s) {
  Result& res = s.out;
  const double sec = ms_between(s.first, s.last) / 1e3;
  res.decode_tok_s = res.tokens.size() > 1 && sec > 0 ? double(res.tokens.size() - 1) / sec : 0;
  pool_.release(s.kv);
  if (!s.sink) return;
  const size_t from = std::min(s.passed, res.tokens.size());
  s.sink(std::span<const int64_t>(res.tokens.data() + from, res.tokens.size() - from), &res);
}

SeqId Engine::submit(Request r, uint64_t seq, TokenSink sink) {
  const SeqId id = next_id_++;
  check_request(r, "request " + std::to_string(id), cfg_.max_seq);
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->seq = seq;
  s->sink = std::move(sink);
  for (const auto& stop : r.stop) s->hold = std::max(s->hold, stop.empty() ? 0 : stop.size() - 1);
  s->req = std::move(r);
  if (s->req.max_tokens == 0) {
    s->out.finish = "length";
    if (s->sink) s->sink({}, &s->out);
    return id;
  }
  waiting_.push_back(std::move(s));
  return id;
}

bool Engine::cancel(SeqId id) {
  auto same = [id](const auto& s) { return s->id == id; };
  if (auto it = std::find_if(waiting_.begin(), waiting_.end(), same); it != waiting_.end()) {
    waiting_.erase(it);
    return true;
  }
  auto it = std::find_if(active_.begin(), active_.end(), same);
  if (it == active_.end()) return false;
  pool_.release((*it)->kv);
  active_.erase(it);
  return true;
}

EngineStats Engine::stats() const {
  return {int64_t(waiting_.size()), int64_t(active_.size()), generated_, window_shifts_,
          pool_.free_blocks()};
}

bool Engine::step() {
  if (idle()) return false;
  while (!waiting_.empty() && int64_t(active_.size()) < o_.max_batch) {
    auto s = std::move(waiting_.front());
    waiting_.pop_front();
    s->todo = s->context = s->req.prompt;
    s->admitted = Clock::now();
    active_.push_back(std::move(s));
  }
  int64_t budget = o_.token_budget;
  // Decodes first: one token of every sequence whose prompt is in the cache.
  std::vector<Sequence*> dec;
  std::vector<SeqKv*> kvs;
  std::vector<int64_t> toks;
  for (auto& s : active_) {
    if (s->done || !s->todo.empty() || s->next < 0) continue;
    if (s->kv.length == cfg_.max_seq) {  // the context is full: shift the window
      pool_.release(s->kv);
      const size_t keep = size_t(std::max<int64_t>(1, cfg_.max_seq / 2));
      s->todo.assign(s->context.end() - int64_t(keep), s->context.end());
      ++window_shifts_;
      continue;
    }
    dec.push_back(s.get());
    kvs.push_back(&s->kv);
    toks.push_back(s->next);
  }
  if (!dec.empty()) {
    const std::vector<float> logits = decode(kvs, toks);
    const size_t V = size_t(cfg_.vocab);
    for (size_t b = 0; b < dec.size(); ++b)
      accept(*dec[b], std::span<const float>(logits.data() + b * V, V));
    budget -= int64_t(dec.size());
  }
  // Then prefill chunks with what is left of the budget.
  for (auto& s : active_) {
    if (budget <= 0) break;
    if (s->done || s->todo.empty()) continue;
    const int64_t n = std::min({o_.prefill_chunk, int64_t(s->todo.size()), budget});
    const std::vector<float> logits =
        prefill(s->kv, std::span<const int64_t>(s->todo.data(), size_t(n)));
    s->todo.erase(s->todo.begin(), s->todo.begin() + n);
    budget -= n;
    if (s->todo.empty()) accept(*s, logits);
  }
  // Retire the finished: taken out first, so that a sink may submit or cancel.
  std::vector<std::unique_ptr<Sequence>> done;
  for (auto& s : active_)
    if (s->done) done.push_back(std::move(s));
  std::erase_if(active_, [](const auto& s) { return !s; });
  for (auto& s : done) finish(*s);
  return true;
}

std::vector<Result> Engine::generate(const std::vector<Request>& requests,
                                     std::span<const uint64_t> seqs) {
  HP_CHECK(seqs.empty() || seqs.size() == requests.size(), "[engine] ", seqs.size(),
           " sequence numbers for ", requests.size(), " requests");
  for (size_t i = 0; i < requests.size(); ++i)
    check_request(requests[i], "request " + std::to_string(i), cfg_.max_seq);
  std::vector<Result> out(requests.size());
  std::vector<SeqId> ids;
  try {
    for (size_t i = 0; i < requests.size(); ++i)
      ids.push_back(submit(requests[i], seqs.empty() ? i : seqs[i],
                           [&out, i](std::span<const int64_t>, const Result* done) {
                             if (done) out[i] = *done;
                           }));
    while (step()) {
    }
  } catch (...) {  // no sink may outlive `out`
    for (SeqId id : ids) cancel(id);
    throw;
  }
  return out;
}

}  // namespace hp::infer
