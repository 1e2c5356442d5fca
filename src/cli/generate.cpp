// `hp generate`: sample text from a checkpoint with a fixed-shape forward program (the context
// window is padded; causal attention makes the padding invisible to earlier positions).
// Not a serving engine: no KV cache, one sequence at a time.
#include <cmath>
#include <cstdio>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/generate.hpp"
#include "cli/options.hpp"
#include "hp/core/rng.hpp"
#include "hp/data/tokenizer.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/executor.hpp"

namespace hp::cli {

std::string sample_text(const io::ModelConfig& cfg, const io::TensorMap& params,
                        const std::string& prompt, const SampleOptions& o) {
  const int64_t ctx_len = cfg.max_seq;
  nn::Traced tr = nn::trace(cfg, 1, ctx_len, false);
  runtime::Program prog = runtime::compile(*tr.graph, {tr.logits.id});
  runtime::Executor ex(prog, default_allocator(), runtime::Context{o.threads});
  auto infos = nn::param_infos(cfg);
  for (size_t i = 0; i < infos.size(); ++i) ex.bind(tr.params[i].id, params.at(infos[i].name));
  data::ByteTokenizer tok;
  std::vector<int64_t> seq = tok.encode_i64(prompt);
  if (seq.empty()) seq.push_back('\n');
  const size_t start = seq.size();
  Tensor window({1, ctx_len}, DType::kI64);
  ex.bind(tr.tokens.id, window);
  const int64_t V = cfg.vocab;
  for (int64_t n = 0; n < o.tokens; ++n) {
    const size_t len = std::min<size_t>(seq.size(), size_t(ctx_len));
    int64_t* w = window.i64();
    for (int64_t i = 0; i < ctx_len; ++i)
      w[i] = size_t(i) < len ? seq[seq.size() - len + size_t(i)] : 0;
    ex.run();
    const float* logits = ex.get(tr.logits.id).f32() + (len - 1) * size_t(V);
    // Temperature + top-k sampling with a counter-based draw (reproducible from the seed).
    std::vector<std::pair<float, int64_t>> cand;
    for (int64_t v = 0; v < V; ++v) cand.push_back({logits[v], v});
    int64_t k = o.top_k > 0 ? std::min(o.top_k, V) : V;
    std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                      [](auto& x, auto& y) { return x.first > y.first; });
    cand.resize(size_t(k));
    int64_t next = cand[0].second;
    if (o.temperature > 0) {
      double mx = cand[0].first, z = 0;
      std::vector<double> p;
      for (auto& c : cand) p.push_back(std::exp((c.first - mx) / o.temperature)), z += p.back();
      double u = rng::uniform(o.seed, 0x5a3b1e, uint64_t(n)) * z, acc = 0;
      for (size_t i = 0; i < p.size(); ++i) {
        acc += p[i];
        if (u < acc) {
          next = cand[i].second;
          break;
        }
      }
    }
    seq.push_back(next);
  }
  return tok.decode(std::span<const int64_t>(seq.data() + start, seq.size() - start));
}

int cmd_generate(const std::vector<std::string>& argv) {
  Args a(argv, generate_command());
  if (printed_help(a)) return 0;
  SampleOptions o;  // what hp generate reads from its options, once
  o.tokens = a.i64("tokens");
  o.temperature = a.f64("temperature");
  o.top_k = a.i64("top-k");
  o.seed = uint64_t(a.i64("seed"));
  o.threads = int(a.i64("threads"));
  const std::string prompt = a.str("prompt");
  std::filesystem::path dir = a.str("ckpt");
  const bool step_given = io::is_sharded(dir) || std::filesystem::exists(dir / "state.json");
  std::optional<std::filesystem::path> step_dir = step_given ? dir : io::resume_dir(dir);
  HP_CHECK(step_dir.has_value(), "no checkpoint in ", dir.string());
  std::optional<io::Checkpoint> ck = io::load_step(*step_dir, false);
  const char* meta = io::is_sharded(*step_dir) ? io::kIndexFile : "state.json";
  HP_CHECK(ck->extra.contains("config"), "checkpoint in ", dir.string(), " has no model config");
  io::ModelConfig cfg = io::ModelConfig::from_json(ck->extra["config"],
                                                   (*step_dir / meta).string() + " (extra.config)");
  {  // before the model is traced: its weights and the logits of one context window
    const int64_t n = cfg.parameter_count();
    check_fits_in_memory(
        uint64_t(checked_add(checked_mul(n, 4), checked_mul(cfg.max_seq, cfg.vocab * 4))),
        "the model of " + dir.string() + " (" + std::to_string(n) +
            " parameters): its weights and logits");
  }
  auto params = nn::adopt_params(cfg, ck->model, step_dir->string());
  std::printf("%s%s\n", prompt.c_str(), sample_text(cfg, params, prompt, o).c_str());
  return 0;
}

}  // namespace hp::cli
