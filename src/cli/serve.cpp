// `hp serve`: an OpenAI-compatible HTTP server (cpp-httplib) over the KV-cache engine. One engine
// thread owns the engine and runs continuous batching; the HTTP handler threads parse a request
// (serve_api.hpp), put it in the engine thread's inbox (a bounded number of requests in flight:
// beyond it, 429) and wait, with a timeout, on the request's channel, where the engine thread's
// token sink pushes each final token. A streaming client that goes away cancels its request,
// which gives back its KV blocks; the others go on. SIGINT and SIGTERM (StopSignals) end the
// requests in flight with 503, stop the server and exit 0.
// Not a multi-model or multi-tenant server: one model, no authentication, no TLS.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/generate.hpp"
#include "cli/options.hpp"
#include "cli/serve_api.hpp"
#include "hp/infer/engine.hpp"

namespace hp::cli {

namespace {

using Clock = std::chrono::steady_clock;
using serve::ApiError;

// Where the engine thread puts a request's tokens and its end, and where its handler waits.
struct Channel {
  std::mutex m;
  std::condition_variable cv;
  std::vector<int64_t> tokens;         // final tokens not taken by the handler yet
  std::optional<infer::Result> done;   // the whole result, once finished
  std::optional<ApiError> error;       // ended without a result (shutdown, engine failure)
  std::atomic<bool> cancelled{false};  // the handler gave up: the engine thread drops it

  // Waits until something is there to take or `until`; false on timeout.
  bool wait(Clock::time_point until) {
    std::unique_lock lock(m);
    return cv.wait_until(lock, until, [&] { return !tokens.empty() || done || error; });
  }
};

struct Job {
  infer::Request request;
  std::shared_ptr<Channel> channel;
};

// What /metrics shows, written by the engine thread after every step.
struct Gauges {
  std::atomic<int64_t> waiting{0}, running{0}, generated{0}, window_shifts{0}, free_blocks{0};
  std::atomic<double> tokens_per_s{0};
};

// The engine thread and its inbox.
class Scheduler {
 public:
  Scheduler(infer::Engine& engine, int64_t max_in_flight)
      : engine_(engine), max_in_flight_(max_in_flight) {
    gauges_.free_blocks = engine.stats().free_blocks;
    thread_ = std::thread([this] { loop(); });
  }
  ~Scheduler() { stop(); }

  // Queues a request; throws ApiError 429 when max_in_flight requests are queued or running,
  // 503 once stopping.
  void enqueue(Job job) {
    {
      std::lock_guard lock(m_);
      if (stopping_) throw ApiError(503, "the server is shutting down", "", "shutting_down");
      if (in_flight_ >= max_in_flight_)
        throw ApiError(429,
                       "the server is busy: " + std::to_string(in_flight_) +
                           " requests are queued or running, the most it takes; retry later",
                       "", "queue_full");
      ++in_flight_;
      inbox_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  // The handler gave up on `ch` (timeout, client gone): the engine thread drops its request.
  void cancel(const std::shared_ptr<Channel>& ch) {
    ch->cancelled = true;
    cv_.notify_one();
  }
  // Ends every request in flight with 503 and joins the engine thread.
  void stop() {
    {
      std::lock_guard lock(m_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  int64_t in_flight() {
    std::lock_guard lock(m_);
    return in_flight_;
  }
  const Gauges& gauges() const { return gauges_; }

 private:
  static void end(Channel& ch, const ApiError& e) {
    {
      std::lock_guard lock(ch.m);
      ch.error = e;
    }
    ch.cv.notify_all();
  }
  void retire(size_t n) {
    std::lock_guard lock(m_);
    in_flight_ -= int64_t(n);
  }
  // Every request the engine holds ended with `e`, its blocks given back.
  void drop_all(const ApiError& e) {
    for (auto& [id, ch] : live_) {
      engine_.cancel(id);
      end(*ch, e);
    }
    retire(live_.size());
    live_.clear();
  }

  void loop() {
    std::deque<std::pair<Clock::time_point, int64_t>> rate;  // (time, generated), oldest first
    for (;;) {
      std::deque<Job> jobs;
      bool stopping;
      {
        std::unique_lock lock(m_);
        if (inbox_.empty() && engine_.idle() && !stopping_)
          cv_.wait_for(lock, std::chrono::milliseconds(100));
        jobs.swap(inbox_);
        stopping = stopping_;
      }
      if (stopping) {
        const ApiError e(503, "the server is shutting down", "", "shutting_down");
        drop_all(e);
        for (Job& j : jobs) end(*j.channel, e);
        retire(jobs.size());
        return;
      }
      for (Job& j : jobs) admit(std::move(j));
      for (auto it = live_.begin(); it != live_.end();) {
        if (!it->second->cancelled) {
          ++it;
          continue;
        }
        engine_.cancel(it->first);
        it = live_.erase(it);
        retire(1);
      }
      try {
        engine_.step();
      } catch (const std::exception& e) {
        drop_all(ApiError(500, std::string("the engine failed: ") + e.what(), "", "engine_error"));
      }
      const infer::EngineStats s = engine_.stats();
      gauges_.waiting = s.waiting;
      gauges_.running = s.running;
      gauges_.generated = s.generated;
      gauges_.window_shifts = s.window_shifts;
      gauges_.free_blocks = s.free_blocks;
      // Tokens per second over the last 10 s (over the samples' span while shorter).
      const auto now = Clock::now();
      rate.emplace_back(now, s.generated);
      while (now - rate.front().first > std::chrono::seconds(10)) rate.pop_front();
      const double span = std::chrono::duration<double>(now - rate.front().first).count();
      gauges_.tokens_per_s = span > 0 ? double(s.generated - rate.front().second) / span : 0;
      forget_done();  // after the gauges: in_flight 0 means they count every request
    }
  }

  // Forgets the requests that finished in the last step.
  void forget_done() {
    for (auto it = live_.begin(); it != live_.end();) {
      bool done;
      {
        std::lock_guard lock(it->second->m);
        done = it->second->done.has_value();
      }
      if (!done) {
        ++it;
        continue;
      }
      it = live_.erase(it);
      retire(1);
    }
  }

  void admit(Job j) {
    std::shared_ptr<Channel> ch = j.channel;
    if (ch->cancelled) {
      retire(1);
      return;
    }
    try {
      // Every request is sequence 0 of the draws: a seed gives what hp generate gives.
      const infer::SeqId id = engine_.submit(
          std::move(j.request), 0, [this, ch](std::span<const int64_t> t, const infer::Result* d) {
            {
              std::lock_guard lock(ch->m);
              ch->tokens.insert(ch->tokens.end(), t.begin(), t.end());
              if (d) ch->done = *d;
            }
            ch->cv.notify_all();
          });
      if (ch->done) {  // max_tokens 0: done in submit
        retire(1);
        return;
      }
      live_[id] = ch;
    } catch (const std::exception& e) {
      end(*ch, ApiError(400, e.what(), "", "invalid_request"));
      retire(1);
    }
  }

 private:
  infer::Engine& engine_;
  const int64_t max_in_flight_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Job> inbox_;
  int64_t in_flight_ = 0;
  bool stopping_ = false;
  std::map<infer::SeqId, std::shared_ptr<Channel>> live_;  // engine thread only
  Gauges gauges_;
  std::thread thread_;
};

// What the handlers share.
struct Service {
  Service(serve::Limits l, Scheduler& s, std::chrono::milliseconds t, int64_t blocks,
          int64_t host_blocks)
      : limits(std::move(l)),
        scheduler(s),
        timeout(t),
        kv_blocks(blocks),
        kv_host_blocks(host_blocks) {}
  serve::Limits limits;
  Scheduler& scheduler;
  std::chrono::milliseconds timeout;  // a request's whole time, queue included
  int64_t kv_blocks = 0, kv_host_blocks = 0;
  int64_t created = std::time(nullptr);
  std::atomic<int64_t> next_id{1};
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> open_streams{0};  // streamed responses not released yet
  std::mutex seeds_m;
  std::mt19937_64 seeds{std::random_device{}()};
  std::mutex counts_m;
  std::map<int, int64_t> responses;  // by status

  uint64_t seed() {
    std::lock_guard lock(seeds_m);
    return seeds();
  }
  void count(int status) {
    std::lock_guard lock(counts_m);
    ++responses[status];
  }
};

void reply_json(httplib::Response& res, int status, const io::Json& body) {
  res.status = status;
  res.set_content(serve::dump(body) + "\n", "application/json");
}

void reply_error(Service& svc, httplib::Response& res, const ApiError& e) {
  svc.count(e.status);
  reply_json(res, e.status, e.body());
}

std::string sse(const io::Json& j) {
  return "data: " + serve::dump(j) + "\n\n";
}

// A streamed request's state between the content provider's calls.
struct Stream {
  std::shared_ptr<Channel> ch;
  serve::Reply reply;
  int64_t prompt_tokens = 0;
  bool include_usage = false;
  Clock::time_point deadline;
  std::string pending;  // generated bytes not sent yet (an incomplete UTF-8 sequence)
  TextCodec codec;
  bool first = true, finished = false;
};

// One call of the chunked content provider: waits up to a second for tokens and writes them as
// an SSE chunk; at the end the finish chunk, the usage chunk if asked and [DONE]. Returns false
// (the connection is closed, the releaser cancels the request) when the client is gone.
bool stream_step(Stream& st, httplib::DataSink& sink) {
  auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
  const auto now = Clock::now();
  if (now >= st.deadline) {
    const ApiError e(504, "the request timed out", "", "timeout");
    write("data: " + serve::dump(e.body()) + "\n\ndata: [DONE]\n\n");
    sink.done();
    return true;  // not finished: the releaser cancels it
  }
  if (!st.ch->wait(std::min(st.deadline, now + std::chrono::seconds(1))))
    return write(": waiting\n\n");  // an SSE comment: finds out whether the client is still there
  std::vector<int64_t> tokens;
  std::optional<infer::Result> done;
  std::optional<ApiError> error;
  {
    std::lock_guard lock(st.ch->m);
    tokens.swap(st.ch->tokens);
    done = st.ch->done;
    error = st.ch->error;
  }
  st.pending += st.codec.decode(tokens);
  std::string out;
  const size_t n = done ? st.pending.size() : serve::utf8_complete(st.pending);
  if (n > 0 || (st.first && st.reply.chat)) {
    out += sse(serve::chunk_body(st.reply, st.pending.substr(0, n), "", st.first));
    st.pending.erase(0, n);
    st.first = false;
  }
  if (error) {
    out += "data: " + serve::dump(error->body()) + "\n\ndata: [DONE]\n\n";
  } else if (done) {
    out += sse(serve::chunk_body(st.reply, "", done->finish, false));
    if (st.include_usage)
      out += sse(serve::usage_chunk(st.reply, st.prompt_tokens, int64_t(done->tokens.size())));
    out += "data: [DONE]\n\n";
  }
  if (!out.empty() && !write(out)) return false;
  if (error || done) {
    st.finished = true;
    sink.done();
  }
  return true;
}

void handle_completion(Service& svc, const httplib::Request& req, httplib::Response& res,
                       bool chat) {
  serve::ApiRequest api;
  try {
    api = serve::parse_request(req.body, chat, svc.limits, svc.seed());
  } catch (const ApiError& e) {
    return reply_error(svc, res, e);
  }
  auto ch = std::make_shared<Channel>();
  const int64_t P = int64_t(api.engine.prompt.size());
  try {
    svc.scheduler.enqueue({std::move(api.engine), ch});
  } catch (const ApiError& e) {
    return reply_error(svc, res, e);
  }
  svc.prompt_tokens += P;
  const serve::Reply reply{(chat ? "chatcmpl-" : "cmpl-") + std::to_string(svc.next_id++),
                           int64_t(std::time(nullptr)), svc.limits.model, chat};
  const auto deadline = Clock::now() + svc.timeout;
  if (api.stream) {
    auto st = std::make_shared<Stream>();
    st->ch = ch;
    st->reply = reply;
    st->prompt_tokens = P;
    st->include_usage = api.include_usage;
    st->deadline = deadline;
    st->codec = svc.limits.codec;
    svc.count(200);
    ++svc.open_streams;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st](size_t, httplib::DataSink& sink) { return stream_step(*st, sink); },
        [st, &svc](bool) {
          if (!st->finished) svc.scheduler.cancel(st->ch);
          --svc.open_streams;
        });
    return;
  }
  for (;;) {
    if (!ch->wait(deadline)) {
      svc.scheduler.cancel(ch);
      return reply_error(svc, res, ApiError(504, "the request timed out", "", "timeout"));
    }
    std::lock_guard lock(ch->m);
    if (ch->error) return reply_error(svc, res, *ch->error);
    if (!ch->done) {
      ch->tokens.clear();  // the result holds them all
      continue;
    }
    const infer::Result& r = *ch->done;
    svc.count(200);
    return reply_json(res, 200,
                      serve::response_body(reply, svc.limits.codec.decode(r.tokens), r.finish, P,
                                           int64_t(r.tokens.size())));
  }
}

std::string metrics_text(Service& svc) {
  const Gauges& g = svc.scheduler.gauges();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
      << name << ' ' << value << '\n';
  };
  metric("hp_queue_requests", "gauge", "Requests waiting for a place in the running batch.",
         g.waiting.load());
  metric("hp_running_requests", "gauge", "Requests running (holding KV blocks).", g.running.load());
  metric("hp_in_flight_requests", "gauge", "Requests queued or running (429 beyond the limit).",
         svc.scheduler.in_flight());
  metric("hp_preemptions_total", "counter",
         "Running requests preempted for KV blocks (the pool holds every running request's "
         "whole context, so none are).",
         0);
  metric("hp_window_shifts_total", "counter",
         "Contexts that filled the model's positions and were prefilled again.",
         g.window_shifts.load());
  metric("hp_generated_tokens_total", "counter", "Tokens generated.", g.generated.load());
  metric("hp_prompt_tokens_total", "counter", "Prompt tokens of the requests accepted.",
         svc.prompt_tokens.load());
  metric("hp_tokens_per_second", "gauge", "Tokens generated per second over the last 10 s.",
         g.tokens_per_s.load());
  metric("hp_kv_free_blocks", "gauge", "Free blocks of the KV pool.", g.free_blocks.load());
  metric("hp_kv_blocks", "gauge", "Blocks of the KV pool on the device.", svc.kv_blocks);
  metric("hp_kv_host_blocks", "gauge",
         "Blocks of the KV pool offloaded by a --device-memory plan (host or disk tier).",
         svc.kv_host_blocks);
  o << "# HELP hp_responses_total Responses by HTTP status.\n"
    << "# TYPE hp_responses_total counter\n";
  std::lock_guard lock(svc.counts_m);
  for (const auto& [status, n] : svc.responses)
    o << "hp_responses_total{status=\"" << status << "\"} " << n << '\n';
  return o.str();
}

void add_routes(httplib::Server& http, Service& svc, const std::atomic<bool>& stopping) {
  http.Post("/v1/completions", [&svc](const httplib::Request& q, httplib::Response& r) {
    handle_completion(svc, q, r, false);
  });
  http.Post("/v1/chat/completions", [&svc](const httplib::Request& q, httplib::Response& r) {
    handle_completion(svc, q, r, true);
  });
  http.Get("/v1/models", [&svc](const httplib::Request&, httplib::Response& r) {
    svc.count(200);
    reply_json(r, 200,
               {{"object", "list"},
                {"data", io::Json::array({{{"id", svc.limits.model},
                                           {"object", "model"},
                                           {"created", svc.created},
                                           {"owned_by", "hp"},
                                           {"max_model_len", svc.limits.max_seq}}})}});
  });
  http.Get("/health", [&svc, &stopping](const httplib::Request&, httplib::Response& r) {
    if (stopping) return reply_error(svc, r, ApiError(503, "shutting down", "", "shutting_down"));
    reply_json(r, 200, {{"status", "ok"}});
  });
  http.Get("/metrics", [&svc](const httplib::Request&, httplib::Response& r) {
    r.set_content(metrics_text(svc), "text/plain; version=0.0.4");
  });
  // Statuses httplib sets itself (404 no route, 405, 413 too large, 400 unreadable) get an
  // OpenAI-style body too; the handlers' own errors already have one.
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([&svc](const httplib::Request& q, httplib::Response& r) {
        if (!r.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const std::string what = r.status == 404   ? "no route " + q.method + " " + q.path
                                 : r.status == 413 ? "the request body is too large"
                                                   : "the request could not be handled";
        reply_error(svc, r, ApiError(r.status, what, "", r.status == 404 ? "not_found" : ""));
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [&svc](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        reply_error(svc, r, ApiError(500, "internal error: " + what, "", "internal_error"));
      });
}

}  // namespace

int cmd_serve(const std::vector<std::string>& argv) {
  StopSignals signals;            // before any thread is made: they all inherit the blocked signals
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a kill
  Args a(argv, serve_command());
  if (printed_help(a)) return 0;
  const ModelSource source = model_source(a);
  infer::EngineOptions eo;
  eo.max_batch = a.i64("max-batch");
  eo.token_budget = a.i64("max-batch-tokens");
  eo.prefill_chunk = a.i64("prefill-chunk");
  eo.threads = threads_per_rank(a, Devices{});  // one device
  const int64_t max_queue = a.i64("max-queue");
  const double timeout_s = a.f64("request-timeout");
  const std::string host = a.str("host");
  const int port = int(a.i64("port"));
  const TextCodec codec = TextCodec::load(a.has("tokenizer") ? a.str("tokenizer") : "");
  eo.token_text = codec.token_text();

  auto [cfg, params] = load_model(source);
  codec.check_model(cfg);
  eo.block_tokens = block_tokens_of(a, cfg);
  // Under --device-memory the KV plan places the pool (and weights, with --offload-weights) for
  // max-batch requests of the model's whole context each: a request's context is its own.
  std::optional<PlannedModel> placed;
  if (a.has("device-memory")) {
    placed = place_model(cfg, params, eo, cfg.max_seq, memory::parse_budget(a.str("device-memory")),
                         offload_choice(a));
    std::fprintf(stderr, "%s", placed->plan.explain().c_str());
  }
  infer::Engine engine(cfg, placed ? placed->params : params, placed ? placed->engine : eo,
                       placed ? placed->device : default_allocator());
  Scheduler scheduler(engine, eo.max_batch + max_queue);
  serve::Limits limits;
  limits.model = source.ckpt.empty() ? source.model : source.ckpt;
  limits.max_seq = cfg.max_seq;
  limits.vocab = cfg.vocab;
  limits.codec = codec;
  // Each running request's positions: the whole pool without a plan, else its resident and its
  // offloaded blocks.
  limits.pool_positions = placed ? placed->plan.blocks_per_seq * placed->plan.block_tokens
                                 : engine.pool().blocks() * engine.pool().block_tokens();
  Service svc(limits, scheduler, std::chrono::milliseconds(int64_t(timeout_s * 1000)),
              engine.pool().blocks(), engine.pool().placement().host_blocks);
  std::atomic<bool> stopping{false};

  httplib::Server http;
  // Each streaming request holds a thread while it runs: enough for every request in flight,
  // and a few for /health and /metrics beside them.
  const size_t threads = size_t(eo.max_batch + max_queue + 4);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(size_t(8) << 20);
  http.set_read_timeout(30);
  http.set_write_timeout(30);
  // An idle kept-alive connection holds a worker, and stopping waits for it: 2 s at most.
  http.set_keep_alive_timeout(2);
  add_routes(http, svc, stopping);
  const int bound =
      port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  HP_CHECK(bound > 0, "cannot listen on ", host, ":", port, " (in use, or not an address here)");
  std::printf("hp serve: listening on http://%s:%d (model %s, %lld positions, batch %lld)\n",
              host.c_str(), bound, limits.model.c_str(), (long long)cfg.max_seq,
              (long long)eo.max_batch);
  std::fflush(stdout);
  std::atomic<bool> listen_ended{false};
  std::thread listener([&] {
    http.listen_after_bind();
    listen_ended = true;
  });
  // httplib's stop() only stops a server already running: a signal that came first waits for
  // it (5 s at most).
  const auto started_by = Clock::now() + std::chrono::seconds(5);
  while (!http.is_running() && !listen_ended && Clock::now() < started_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  while (!StopSignals::received() && !listen_ended)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int sig = StopSignals::received();
  stopping = true;
  scheduler.stop();  // the requests in flight end with 503: their handlers return
  // Streams write their 503 event and [DONE] before the server closes their connections (a
  // second at most: a client that does not read is not waited for).
  const auto until = Clock::now() + std::chrono::seconds(1);
  while (svc.open_streams > 0 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  http.stop();
  listener.join();
  std::fprintf(stderr, "hp serve: stopped%s%s\n", sig ? " by " : "", sig ? strsignal(sig) : "");
  return sig ? 0 : 1;
}

}  // namespace hp::cli
