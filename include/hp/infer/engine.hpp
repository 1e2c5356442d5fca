// The inference engine (docs/inference.md): prefill and decode programs traced from the model
// code (nn::trace_infer), compiled once per shape and run on one backend over a paged KV pool,
// and the continuous-batching loop that serves requests with them: each step decodes one token
// of every running sequence first, then spends what is left of the token budget on prefill
// chunks of the sequences still reading their prompt; finished sequences free their blocks and
// waiting requests take their place. Every request has its own context of the model's max_seq
// positions (the pool holds max_batch of them unless told otherwise).
// Requests come either all at once (generate) or one at a time while others run (submit, step,
// cancel: what a server's engine thread calls), each token reaching the caller through the
// request's sink as soon as no stop string can take it back.
// On a mesh (EngineMesh) every rank runs the same engine over the same requests: its programs are
// lowered for the rank, which holds its pieces of the weights and of the pool.
// Not a server and not thread-safe: one caller, one engine.
#pragma once
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hp/infer/kv_pool.hpp"
#include "hp/infer/sampling.hpp"
#include "hp/io/model_config.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/memory/planner.hpp"
#include "hp/memory/tiers.hpp"
#include "hp/memory/transfer.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/shard/comm.hpp"
#include "hp/shard/strategy.hpp"

namespace hp::nn {
struct InferTraced;
}

namespace hp::infer {

// What the offload planner of training streams for the engine: the parameters named here (they
// live in the host tier) and, with fetched KV blocks, each layer's staging (gathered from the
// host pool). Every program run then goes through memory::plan_offload and a
// memory::OffloadRunner on `engine`, within `budget` device bytes for the program's own values
// and what it streams. No names and no fetch: the programs run as bound.
struct Streaming {
  std::set<std::string> names;
  size_t budget = 0;
  memory::TieredPool* tiers = nullptr;       // its device allocator is the engine's
  memory::TransferEngine* engine = nullptr;  // the copies
  memory::CostModel cost;
  std::chrono::milliseconds timeout{60000};  // each wait on a copy
};

// The offload planner's request for a program traced as `tr` whose weights `names` and layer
// stagings (fetch) it moves: each prefetched before its use (a staging once its layer's kv_write
// has run: gathered from the host pool, the current positions included) and dropped after; every
// other source, the pool and the inputs included, fixed where bound. No budget or cost set.
memory::PlanRequest streamed_request(const nn::InferTraced& tr, const io::ModelConfig& cfg,
                                     const std::set<std::string>& names);

struct EngineOptions {
  int64_t block_tokens = 16;   // positions per pool block
  int64_t prefill_chunk = 64;  // at most this many prompt tokens per program run
  int64_t max_batch = 1;       // sequences running (holding cache) at once
  int64_t token_budget = 0;    // tokens per step; 0: prefill_chunk + max_batch
  int64_t pool_blocks = 0;     // on the device; 0: max_batch contexts of max_seq positions
  KvPlacement kv;              // offloaded blocks (infer::plan_kv); default: none
  Streaming streaming;         // the stagings and streamed weights (infer::plan_kv, fetch)
  int threads = 1;
  // The bytes of a token, which stop strings are matched on; empty: ids below 256 are bytes and
  // others none (the byte vocabulary).
  std::function<std::string(int64_t)> token_text;
};

// Where the programs run: one device (no comm), or the rank of comm on the strategy's mesh. There
// every program is traced in logical shapes, propagated over the strategy (weights in its
// layouts; the pool's kv heads split over "tp" when it divides them, else whole, unless a rule
// names "kv_pool") and lowered for the rank; the logits come out whole on every rank (a
// vocabulary-split head is gathered), so every rank samples the same tokens.
struct EngineMesh {
  shard::Strategy strategy;
  shard::RankComm* comm = nullptr;  // not owned; outlives the engine
};

// The strategy of one data-parallel replica of `s`: the "dp" axis dropped from its mesh and
// rules (replicas serve disjoint requests; each shards its programs over the rest).
shard::Strategy replica_strategy(const shard::Strategy& s);

struct Request {
  std::vector<int64_t> prompt;  // at least one token, at most max_seq
  int64_t max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings, matched on the generated text (token_text)
  int64_t eos = -1;               // end-of-sequence id; -1: none
};

struct Result {
  std::vector<int64_t> tokens;  // generated ids (a stop string and what follows removed)
  std::string finish;           // "length", "stop" or "eos"
  double ttft_ms = 0;           // admission to the first token
  double decode_tok_s = 0;      // tokens after the first over the time they took
};

// A submitted request's handle (Engine::submit).
using SeqId = uint64_t;

// Called on the thread that runs Engine::step with the request's next final tokens: those no
// stop string can take back any more (the tokens of the last `longest stop - 1` generated bytes
// are held until it finishes). `done` is null while it runs; at the end it is the whole result, and
// the tokens passed with it are the last ones not passed before; it is never called after that.
using TokenSink = std::function<void(std::span<const int64_t> tokens, const Result* done)>;

// What the engine is doing, for a server's metrics.
struct EngineStats {
  int64_t waiting = 0;        // submitted, not admitted yet
  int64_t running = 0;        // admitted, holding blocks
  int64_t generated = 0;      // tokens generated since the engine was made
  int64_t window_shifts = 0;  // contexts that filled max_seq and were prefilled again
  int64_t free_blocks = 0;    // of the pool
};

class Engine {
 public:
  // Throws hp::Error for options out of range and hp::OutOfMemory when `device` cannot hold the
  // pool.
  Engine(const io::ModelConfig& cfg, const io::TensorMap& params, EngineOptions o,
         std::shared_ptr<Allocator> device, EngineMesh mesh = {});
  ~Engine();

  // Serves every request; request i is sequence seqs[i] of the draws (SamplingParams), or i
  // when `seqs` is empty. Requests submitted before and not finished yet are served along with
  // them.
  std::vector<Result> generate(const std::vector<Request>& requests,
                               std::span<const uint64_t> seqs = {});

  // Queues a request behind those waiting; it runs once a place among max_batch is free. `seq`
  // is its sequence number for the draws (two requests with the same seq, seed and prompt draw
  // the same tokens). Throws hp::Error for a bad request, before queueing it. A request of
  // max_tokens 0 is done at once: its sink is called here.
  SeqId submit(Request r, uint64_t seq, TokenSink sink);
  // One step of continuous batching: admits waiting requests into free places, decodes one
  // token of every running sequence, spends the rest of the token budget on prefill chunks and
  // retires finished sequences (their sinks called, their blocks given back). False when there
  // was nothing to do.
  bool step();
  // Drops a waiting or running request and gives back its blocks; its sink is never called
  // again. False when `id` is unknown (finished, or cancelled before).
  bool cancel(SeqId id);
  bool idle() const { return waiting_.empty() && active_.empty(); }
  EngineStats stats() const;

  // The steps generate() is made of, for tests and benchmarks. prefill: `tokens` appended to
  // `s` in chunks of at most prefill_chunk, returning the last one's logits [V]. decode: one
  // token per sequence in one program run, returning logits [B, V] row-major.
  std::vector<float> prefill(SeqKv& s, std::span<const int64_t> tokens);
  std::vector<float> decode(const std::vector<SeqKv*>& seqs, std::span<const int64_t> tokens);

  KvPool& pool() { return pool_; }
  const EngineOptions& options() const { return o_; }
  const io::ModelConfig& config() const { return cfg_; }

 private:
  struct Compiled;
  // A submitted request, waiting or running (batching.cpp).
  struct Sequence {
    SeqId id = 0;
    uint64_t seq = 0;  // its sequence number for the draws
    Request req;
    TokenSink sink;
    Result out;
    SeqKv kv;
    std::vector<int64_t> todo;     // tokens still to prefill
    std::vector<int64_t> context;  // prompt and generated tokens (for a window shift)
    int64_t next = -1;             // sampled, not yet in the cache
    std::string text;              // the generated text (EngineOptions::token_text)
    std::vector<size_t> text_tok;  // the token each byte came from
    size_t passed = 0;             // tokens given to the sink
    size_t hold = 0;               // bytes held back from the sink: the longest stop - 1
    std::chrono::steady_clock::time_point admitted, first, last;
    bool done = false;
  };
  // Samples the sequence's next token from its logits, decides whether it is done and passes
  // its final tokens on.
  void accept(Sequence& s, std::span<const float> logits);
  void finish(Sequence& s);
  Compiled& program(int64_t batch, int64_t seq);
  // One run of the [B, T] program: T tokens for each of `seqs`; logits [B, V].
  std::vector<float> run(const std::vector<SeqKv*>& seqs, std::span<const int64_t> tokens,
                         int64_t seq);

  io::ModelConfig cfg_;
  EngineMesh mesh_;
  std::vector<shard::Layout> param_layouts_;  // on a mesh: per parameter, logical shapes
  shard::Layout pool_layout_;
  io::TensorMap params_;  // on a mesh: this rank's pieces, logical shapes
  EngineOptions o_;
  std::shared_ptr<Allocator> device_;
  KvPool pool_;
  // The sequences of the run in progress and their lengths after it: what a staging's gather
  // (its prefetch, during the run) reads.
  std::vector<const SeqKv*> fill_seqs_;
  std::vector<int64_t> fill_lengths_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Compiled>> programs_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> active_;
  SeqId next_id_ = 1;
  int64_t generated_ = 0, window_shifts_ = 0;
};

}  // namespace hp::infer
