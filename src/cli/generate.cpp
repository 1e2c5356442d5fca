// `hp generate`: options read once into a GenerateJob, the model loaded from a checkpoint or a
// config (random or given weights), the prompts made into requests and served by the KV-cache
// engine (hp::infer, docs/inference.md); --recompute runs the earlier window-recompute loop
// instead, for comparison. With --devices/--strategy each rank runs the engine over its piece of
// the model (tp) and its share of the requests (dp); rank 0 prints every request's result.
// Not a server: one batch of requests per run.
#include "cli/generate.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/options.hpp"
#include "cli/text_codec.hpp"
#include "hp/core/rng.hpp"
#include "hp/data/tokenizer.hpp"
#include "hp/infer/engine.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/io/json.hpp"
#include "hp/memory/tiers.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/executor.hpp"

namespace hp::cli {

namespace {

using Clock = std::chrono::steady_clock;

infer::Request request_of(const SampleOptions& o) {
  infer::Request r;
  r.max_tokens = o.tokens;
  r.sampling.temperature = o.temperature;
  r.sampling.top_k = o.top_k;
  r.sampling.seed = o.seed;
  return r;
}

// The earlier generate loop, without a KV cache: the padded window of max_seq positions (the
// last max_seq tokens) recomputed for every token; draws as the engine's.
infer::Result recompute_generate(const io::ModelConfig& cfg, const io::TensorMap& params,
                                 const infer::Request& req, uint64_t seq, int threads) {
  const auto t0 = Clock::now();  // compiling counts towards the first token, as in the engine
  const int64_t ctx_len = cfg.max_seq;
  nn::Traced tr = nn::trace(cfg, 1, ctx_len, false);
  runtime::Program prog = runtime::compile(*tr.graph, {tr.logits.id});
  runtime::Executor ex(prog, default_allocator(), runtime::Context{threads});
  auto infos = nn::param_infos(cfg);
  for (size_t i = 0; i < infos.size(); ++i) ex.bind(tr.params[i].id, params.at(infos[i].name));
  Tensor window({1, ctx_len}, DType::kI64);
  ex.bind(tr.tokens.id, window);
  std::vector<int64_t> seq_tokens = req.prompt;
  infer::Result res;
  Clock::time_point first;
  for (int64_t n = 0; n < req.max_tokens; ++n) {
    const size_t len = std::min<size_t>(seq_tokens.size(), size_t(ctx_len));
    int64_t* w = window.i64();
    for (int64_t i = 0; i < ctx_len; ++i)
      w[i] = size_t(i) < len ? seq_tokens[seq_tokens.size() - len + size_t(i)] : 0;
    ex.run();
    const float* logits = ex.get(tr.logits.id).f32() + (len - 1) * size_t(cfg.vocab);
    const int64_t next = infer::sample(std::span<const float>(logits, size_t(cfg.vocab)),
                                       req.prompt, res.tokens, req.sampling, seq, uint64_t(n));
    res.tokens.push_back(next);
    seq_tokens.push_back(next);
    if (n == 0) {
      first = Clock::now();
      res.ttft_ms = std::chrono::duration<double, std::milli>(first - t0).count();
    }
  }
  const double s = std::chrono::duration<double>(Clock::now() - first).count();
  if (res.tokens.size() > 1 && s > 0) res.decode_tok_s = double(res.tokens.size() - 1) / s;
  res.finish = "length";
  return res;
}

// What hp generate reads from its options, once.
struct GenerateJob {
  ModelSource source;
  std::vector<std::string> prompts;  // texts, or empty with prompt_tokens
  int64_t prompt_tokens = 0;         // random ids per sequence (--prompt-tokens)
  int64_t batch = 1;
  infer::Request request;  // everything but the prompt
  infer::EngineOptions engine;
  memory::Budget device_memory;  // --device-memory; unlimited: none
  OffloadChoice offload;         // --kv-offload, --offload-dir, --offload-weights
  bool recompute = false, json = false;
  TextCodec codec;
  Placement place;  // one device unless --devices or --strategy
};

std::vector<std::string> read_prompts(const Args& a, int64_t batch) {
  const int given = int(a.has("prompt")) + int(a.has("prompt-file")) + int(a.has("prompt-tokens"));
  HP_CHECK(given <= 1, "give one of --prompt, --prompt-file and --prompt-tokens, not ", given);
  if (a.has("prompt-tokens")) return {};
  if (!a.has("prompt-file")) return std::vector<std::string>(size_t(batch), a.str("prompt"));
  std::ifstream f(a.str("prompt-file"), std::ios::binary);
  HP_CHECK(f, "option --prompt-file: cannot read ", a.str("prompt-file"));
  std::stringstream ss;
  ss << f.rdbuf();
  if (batch == 1) return {ss.str()};
  std::vector<std::string> lines;
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) lines.push_back(line);
  HP_CHECK(!lines.empty(), "option --prompt-file: ", a.str("prompt-file"), " holds no prompt");
  return lines;
}

GenerateJob read_job(const Args& a) {
  GenerateJob j;
  j.source = model_source(a);
  j.batch = a.i64("batch");
  j.prompts = read_prompts(a, j.batch);
  j.prompt_tokens = a.has("prompt-tokens") ? a.i64("prompt-tokens") : 0;
  infer::SamplingParams& s = j.request.sampling;
  s.temperature = a.f64("temperature");
  s.top_k = a.i64("top-k");
  s.top_p = a.f64("top-p");
  HP_CHECK(s.top_p > 0, "option --top-p must be in (0, 1], got ", s.top_p);
  s.min_p = a.f64("min-p");
  s.repetition_penalty = a.f64("repetition-penalty");
  HP_CHECK(s.repetition_penalty > 0, "option --repetition-penalty must be > 0, got ",
           s.repetition_penalty);
  s.presence_penalty = a.f64("presence-penalty");
  s.frequency_penalty = a.f64("frequency-penalty");
  s.seed = uint64_t(a.i64("seed"));
  j.request.max_tokens = a.i64("tokens");
  if (a.has("stop")) j.request.stop = {a.str("stop")};
  j.request.eos = a.i64("eos");
  j.engine.prefill_chunk = a.i64("prefill-chunk");
  j.engine.token_budget = a.i64("token-budget");
  j.engine.max_batch = j.batch;
  if (a.has("device-memory")) j.device_memory = memory::parse_budget(a.str("device-memory"));
  j.offload = offload_choice(a);
  j.recompute = a.flag("recompute");
  j.json = a.flag("json");
  j.codec = TextCodec::load(a.has("tokenizer") ? a.str("tokenizer") : "");
  j.engine.token_text = j.codec.token_text();
  j.place = parse_placement(a);
  j.engine.threads = threads_per_rank(a, j.place.dev);
  HP_CHECK(!j.place.pipeline, "hp generate: --strategy ", j.place.spec,
           " is a pipeline; inference runs dp and tp strategies");
  HP_CHECK(!j.recompute || !j.place.mesh(), "option --recompute runs on one device only");
  HP_CHECK(j.device_memory.unlimited() || !j.place.mesh(),
           "option --device-memory (KV offload) runs on one device only");
  return j;
}

// The checkpoint's config and weights (its latest, or one step-<N>).
std::pair<io::ModelConfig, io::TensorMap> load_checkpoint_model(const std::filesystem::path& dir) {
  const bool step_given = io::is_sharded(dir) || std::filesystem::exists(dir / "state.json");
  std::optional<std::filesystem::path> step_dir = step_given ? dir : io::resume_dir(dir);
  HP_CHECK(step_dir.has_value(), "no checkpoint in ", dir.string());
  std::optional<io::Checkpoint> ck = io::load_step(*step_dir, false);
  const char* meta = io::is_sharded(*step_dir) ? io::kIndexFile : "state.json";
  HP_CHECK(ck->extra.contains("config"), "checkpoint in ", dir.string(), " has no model config");
  io::ModelConfig cfg = io::ModelConfig::from_json(ck->extra["config"],
                                                   (*step_dir / meta).string() + " (extra.config)");
  check_fits_in_memory(uint64_t(checked_mul(cfg.parameter_count(), 4)),
                       "the model of " + dir.string() + " (" +
                           std::to_string(cfg.parameter_count()) + " parameters): its weights");
  auto params = nn::adopt_params(cfg, ck->model, step_dir->string());
  return {cfg, std::move(params)};
}

// One request per prompt (or per sequence of random ids); the prompts' texts where there are.
std::vector<infer::Request> requests_of(const GenerateJob& j, const io::ModelConfig& cfg) {
  std::vector<infer::Request> out;
  const size_t n = j.prompts.empty() ? size_t(j.batch) : j.prompts.size();
  for (size_t s = 0; s < n; ++s) {
    infer::Request r = j.request;
    if (j.prompts.empty()) {
      for (int64_t i = 0; i < j.prompt_tokens; ++i)
        r.prompt.push_back(
            int64_t(rng::bits(r.sampling.seed, rng::mix(0x70726f6d7074ull ^ s), uint64_t(i)) %
                    uint64_t(cfg.vocab)));
    } else {
      r.prompt = j.codec.encode(j.prompts[s]);
      if (r.prompt.empty()) r.prompt.push_back('\n');
    }
    HP_CHECK(int64_t(r.prompt.size()) <= cfg.max_seq, "prompt ", s, " has ", r.prompt.size(),
             " tokens, more than the model's ", cfg.max_seq, " positions");
    out.push_back(std::move(r));
  }
  return out;
}

void print_results(const GenerateJob& j, const std::vector<infer::Request>& reqs,
                   const std::vector<infer::Result>& res, const PlannedRun* run) {
  for (size_t s = 0; s < res.size(); ++s) {
    if (!j.json) {
      const std::string prompt = j.prompts.empty() ? "" : j.prompts[s];
      std::printf("%s%s\n", prompt.c_str(), j.codec.decode(res[s].tokens).c_str());
      continue;
    }
    io::Json rec = {
        {"sequence", s},
        {"prompt_tokens", reqs[s].prompt.size()},
        {"tokens", res[s].tokens},
        {"text", j.codec.decode(res[s].tokens)},
        {"finish", res[s].finish},
        {"ttft_ms", res[s].ttft_ms},
        {"decode_tok_s", res[s].decode_tok_s},
        {"peak_device_bytes", run ? run->peak_device_bytes : default_allocator()->peak_bytes()},
        {"kv_offloaded_bytes", run ? run->kv_offloaded_bytes : 0},
        {"kv_cache", !j.recompute}};
    if (run) {
      rec["kv_plan"] = run->plan.mode;
      rec["kv_disk_bytes"] = run->kv_disk_bytes;
      rec["weight_host_bytes"] = run->plan.weight_host_bytes;
      rec["weights_streamed"] = run->plan.streamed_weights.size();
      rec["planner_bytes_fetched"] = run->planner_bytes_fetched;
      rec["device_budget"] = run->plan.budget;
      rec["kv_dtype"] = "f32";
    }
    std::printf("%s\n", rec.dump(-1, ' ', false, io::Json::error_handler_t::replace).c_str());
  }
}

}  // namespace

std::string text_of(const std::vector<int64_t>& tokens) {
  std::string s;
  for (int64_t t : tokens)
    if (t >= 0 && t < 256) s.push_back(char(t));
  return s;
}

ModelSource model_source(const Args& a) {
  HP_CHECK(a.has("ckpt") != a.has("model"), "give one of --ckpt DIR and --model CONFIG|NAME");
  HP_CHECK(!a.has("init") || a.has("model"), "option --init needs --model");
  ModelSource m;
  m.ckpt = a.has("ckpt") ? a.str("ckpt") : "";
  m.model = a.has("model") ? a.str("model") : "";
  m.init = a.has("init") ? a.str("init") : "";
  return m;
}

std::pair<io::ModelConfig, io::TensorMap> load_model(const ModelSource& m) {
  if (!m.ckpt.empty()) return load_checkpoint_model(m.ckpt);
  io::ModelConfig cfg = resolve_model(m.model);
  check_fits_in_memory(uint64_t(checked_mul(cfg.parameter_count(), 4)),
                       "the model " + m.model + " (" + std::to_string(cfg.parameter_count()) +
                           " parameters): its weights");
  if (m.init.empty()) return {cfg, nn::init_params(cfg, 1)};
  return {cfg, nn::adopt_params(cfg, io::read_safetensors(m.init), m.init)};
}

std::string sample_text(const io::ModelConfig& cfg, const io::TensorMap& params,
                        const std::string& prompt, const SampleOptions& o) {
  infer::EngineOptions eo;
  eo.threads = o.threads;
  infer::Engine engine(cfg, params, eo, default_allocator());
  infer::Request r = request_of(o);
  r.prompt = data::ByteTokenizer().encode_i64(prompt);
  if (r.prompt.empty()) r.prompt.push_back('\n');
  if (int64_t(r.prompt.size()) > cfg.max_seq)  // keep the prompt's end, as the window did
    r.prompt.erase(r.prompt.begin(), r.prompt.end() - cfg.max_seq);
  return text_of(engine.generate({r})[0].tokens);
}

namespace {

// The pool of an engine serving `reqs`: the `max_batch` largest contexts they can reach.
int64_t pool_blocks_for(const std::vector<infer::Request>& reqs, const io::ModelConfig& cfg,
                        const infer::EngineOptions& eo) {
  std::vector<int64_t> need;
  for (const auto& r : reqs)
    need.push_back(
        (std::min(int64_t(r.prompt.size()) + r.max_tokens, cfg.max_seq) + eo.block_tokens - 1) /
        eo.block_tokens);
  std::sort(need.rbegin(), need.rend());
  int64_t blocks = 0;
  for (size_t i = 0; i < need.size() && int64_t(i) < eo.max_batch; ++i) blocks += need[i];
  return std::max<int64_t>(blocks, 1);
}

// Each rank of the placement's world serves the requests of its data-parallel replica (request
// i on replica i mod dp, drawing as sequence i) with an engine over the replica's tensor-parallel
// mesh; every rank gets every result (one sum over the world of what each replica's first rank
// holds). Runs one device's engine when there is no mesh.
std::vector<infer::Result> sharded_generate(const GenerateJob& job, const io::ModelConfig& cfg,
                                            const io::TensorMap& params,
                                            const std::vector<infer::Request>& reqs) {
  const shard::Strategy& st = *job.place.strategy;
  const shard::Mesh& mesh = st.mesh;
  const int64_t dp = mesh.has_axis("dp") ? mesh.axis_size("dp") : 1;
  const size_t n = reqs.size();
  const int64_t width = 4 + job.request.max_tokens;  // count, finish, ttft, tok/s, tokens
  std::vector<infer::Result> out(n);
  std::mutex mu;
  run_ranks(job.place.dev, [&](comm::Communicator& c) {
    shard::RankComm world(mesh, c);
    const int64_t replica = dp > 1 ? mesh.coords(c.rank())[mesh.axis_index("dp")] : 0;
    infer::EngineMesh em{infer::replica_strategy(st), nullptr};
    std::unique_ptr<shard::RankComm> rc;
    if (em.strategy.mesh.size() > 1) {
      rc = std::make_unique<shard::RankComm>(
          em.strategy.mesh, world.group(em.strategy.mesh.axis_names()), world.timeout());
      em.comm = rc.get();
    }
    std::vector<infer::Request> mine;
    std::vector<uint64_t> seqs;
    for (size_t i = size_t(replica); i < n; i += size_t(dp)) {
      mine.push_back(reqs[i]);
      seqs.push_back(i);
    }
    std::vector<int64_t> packed(n * size_t(width), 0);
    if (!mine.empty()) {
      infer::EngineOptions eo = job.engine;
      eo.pool_blocks = pool_blocks_for(mine, cfg, eo);
      infer::Engine engine(cfg, params, eo, default_allocator(), em);
      const std::vector<infer::Result> res = engine.generate(mine, seqs);
      if (!rc || rc->rank() == 0)  // one rank of the replica reports it
        for (size_t k = 0; k < res.size(); ++k) {
          int64_t* row = packed.data() + seqs[k] * size_t(width);
          const infer::Result& r = res[k];
          row[0] = int64_t(r.tokens.size());
          row[1] = r.finish == "length" ? 1 : r.finish == "stop" ? 2 : 3;
          row[2] = int64_t(r.ttft_ms * 1e3);
          row[3] = int64_t(r.decode_tok_s * 1e3);
          std::copy(r.tokens.begin(), r.tokens.end(), row + 4);
        }
    }
    c.all_reduce(packed.data(), packed.data(), packed.size(), DType::kI64, comm::ReduceOp::kSum)
        .wait(world.timeout());
    if (c.rank() != 0) return;
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < n; ++i) {
      const int64_t* row = packed.data() + i * size_t(width);
      out[i].tokens.assign(row + 4, row + 4 + row[0]);
      out[i].finish = row[1] == 1 ? "length" : row[1] == 2 ? "stop" : "eos";
      out[i].ttft_ms = double(row[2]) / 1e3;
      out[i].decode_tok_s = double(row[3]) / 1e3;
    }
  });
  return out;
}

int64_t longest_context(const io::ModelConfig& cfg, const std::vector<infer::Request>& reqs) {
  int64_t context = 1;
  for (const auto& r : reqs)
    context = std::max(context, std::min(int64_t(r.prompt.size()) + r.max_tokens, cfg.max_seq));
  return context;
}
}  // namespace

size_t resolve_budget(const io::ModelConfig& cfg, const infer::EngineOptions& eo, int64_t context,
                      const memory::Budget& budget) {
  if (budget.bytes != 0 || budget.unlimited()) return budget.bytes;
  return budget.resolve(infer::plan_kv(cfg, eo, context, 0, "none").device_bytes());
}

OffloadChoice offload_choice(const Args& a) {
  return {.mode = a.str("kv-offload"),
          .dir = a.has("offload-dir") ? a.str("offload-dir") : "",
          .weights = a.flag("offload-weights")};
}

PlannedModel place_model(const io::ModelConfig& cfg, const io::TensorMap& params,
                         infer::EngineOptions eo, int64_t context, const memory::Budget& budget,
                         const OffloadChoice& offload) {
  PlannedModel p;
  p.plan = infer::plan_kv(cfg, eo, context, resolve_budget(cfg, eo, context, budget), offload.mode,
                          offload.weights);
  p.device = std::make_shared<Allocator>("device",
                                         p.plan.budget ? p.plan.budget - p.plan.scratch_bytes : 0);
  p.tiers = std::make_unique<memory::TieredPool>(p.device, 0);
  p.engine = p.plan.engine(eo);
  p.engine.kv.host = p.tiers->host();
  if (p.engine.streaming.budget > 0) {  // fetch: copies on the compute cores, where issued
    p.copies = std::make_unique<memory::TransferEngine>(eo.threads, memory::CopyMode::kInline);
    p.engine.streaming.tiers = p.tiers.get();
    p.engine.streaming.engine = p.copies.get();
    p.engine.streaming.cost.inline_copies = true;
  }
  if (p.plan.tier == "disk") {
    p.disk = std::make_shared<Allocator>("kv-disk", 0, Tier::kDisk);
    p.disk->set_file_backing(offload.dir.empty() ? std::filesystem::temp_directory_path().string()
                                                 : offload.dir);
    p.engine.kv.host = p.disk;
  }
  const std::set<std::string> host(p.plan.host_weights.begin(), p.plan.host_weights.end());
  for (const auto& [name, t] : params)
    p.params.emplace(name, t.clone(host.count(name) ? p.tiers->host() : p.device));
  return p;
}

PlannedRun run_planned(const io::ModelConfig& cfg, const io::TensorMap& params,
                       const std::vector<infer::Request>& reqs, infer::EngineOptions eo,
                       const memory::Budget& budget, const OffloadChoice& offload) {
  PlannedModel p = place_model(cfg, params, eo, longest_context(cfg, reqs), budget, offload);
  PlannedRun out;
  {
    infer::Engine engine(cfg, p.params, p.engine, p.device);
    out.results = engine.generate(reqs);
    out.kv_offloaded_bytes = engine.pool().host_bytes();
  }
  out.plan = p.plan;
  out.peak_device_bytes = p.device->peak_bytes();
  if (p.copies) out.planner_bytes_fetched = p.copies->bytes_moved();
  if (p.disk) out.kv_disk_bytes = p.disk->peak_bytes();
  return out;
}

int64_t block_tokens_of(const Args& a, const io::ModelConfig& cfg) {
  return a.has("block-tokens") ? a.i64("block-tokens") : infer::block_tokens_for(cfg);
}

int cmd_generate(const std::vector<std::string>& argv) {
  Args a(argv, generate_command());
  if (printed_help(a)) return 0;
  GenerateJob job = read_job(a);
  auto [cfg, params] = load_model(job.source);
  job.engine.block_tokens = block_tokens_of(a, cfg);
  if (!job.prompts.empty()) job.codec.check_model(cfg);  // random prompts are ids of the model's
  const std::vector<infer::Request> reqs = requests_of(job, cfg);
  std::vector<infer::Result> res;
  if (job.place.mesh()) {
    res = sharded_generate(job, cfg, params, reqs);
    if (job.place.dev.rank != 0) return 0;  // mpi: rank 0 prints
    print_results(job, reqs, res, nullptr);
    return 0;
  }
  if (job.recompute) {
    for (size_t s = 0; s < reqs.size(); ++s)
      res.push_back(recompute_generate(cfg, params, reqs[s], s, job.engine.threads));
    print_results(job, reqs, res, nullptr);
    return 0;
  }
  const PlannedRun run = run_planned(cfg, params, reqs, job.engine, job.device_memory, job.offload);
  if (!job.json && !job.device_memory.unlimited())
    std::fprintf(stderr, "%s", run.plan.explain().c_str());
  print_results(job, reqs, run.results, &run);
  return 0;
}

}  // namespace hp::cli
