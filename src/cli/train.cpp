// `hp train`: trains a GPT-2 or Llama model from a YAML config (flags override it) with a live
// progress line, JSON records, validation, atomic checkpoints, bitwise resume and Ctrl-C.
// One device here; --devices/--strategy hand the job to train_spmd.cpp (see docs/cli.md).
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/generate.hpp"
#include "cli/offload.hpp"
#include "cli/train_spmd.hpp"
#include "hp/data/corpus.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/io/yaml.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_sigint(int) {
  g_stop = 1;
}

const std::set<std::string> kValued = {
    "config",      "model",         "init",          "data",        "data-format",
    "batch",       "seq",           "steps",         "threads",     "lr",
    "warmup",      "min-lr-ratio",  "weight-decay",  "beta1",       "beta2",
    "eps",         "clip",          "grad-accum",    "seed",        "val-every",
    "val-batches", "val-fraction",  "ckpt-dir",      "ckpt-every",  "keep",
    "log-every",   "sample-tokens", "device-memory", "resume-mode", "devices",
    "strategy"};
const std::set<std::string> kFlags = {"json", "resume", "no-resume", "help"};

const char* kHelp =
    "usage: hp train [--config FILE.yaml] [--model NAME|CONFIG.json|DIR] [--init W.safetensors]\n"
    "                [--data kjv|random|PATH] [--data-format text|u16|u32] [--batch B] [--seq T]\n"
    "                [--steps N] [--threads K] [--json] [--resume|--no-resume] ...\n"
    "With no --config and no --model, runs the embedded default job (a small GPT-2 on the KJV\n"
    "text). Every option can be a key of the YAML config; flags given here override it.\n"
    "Optimizer: --lr --warmup --min-lr-ratio --weight-decay --beta1 --beta2 --eps --clip\n"
    "           --grad-accum M (micro-batches per step)\n"
    "Data:      --seed --val-fraction F --val-every N --val-batches K\n"
    "Output:    --log-every N --ckpt-dir DIR --ckpt-every N --keep K --sample-tokens N\n"
    "Memory:    --device-memory SIZE (offload budget: 512MiB, or 25% of the unconstrained peak)\n"
    "           --host-memory SIZE --optimizer-state device|host|disk --offload-dir DIR\n"
    "           (or an offload: map in the YAML config; see docs/offload.md)\n"
    "Devices:   --devices threads:N|mpi --strategy FILE.yaml|PRESET (dp2, fsdp4, tp2, ...)\n";

// YAML keys become defaults for the same-named options; an `offload:` map goes to `offload`.
void apply_yaml(Args& a, const io::YamlNode& y, std::optional<io::YamlNode>& offload) {
  const std::set<std::string> valued = with_offload_options(kValued);
  std::vector<std::string> allowed(valued.begin(), valued.end());
  allowed.push_back("resume");
  allowed.push_back("offload");
  y.check_keys(allowed);
  for (auto& [k, v] : y.entries()) {
    if (k == "resume")
      a.set_default("resume-mode", v.as_string());
    else if (k == "offload")
      offload = v;
    else
      a.set_default(k, v.as_string());
  }
}

std::unique_ptr<data::BatchSource> make_source(const std::string& spec, const std::string& fmt,
                                               const io::ModelConfig& cfg, data::LoaderOptions lo,
                                               double val_fraction,
                                               std::unique_ptr<data::BatchSource>* val) {
  if (spec == "random") {
    if (val)
      *val = std::make_unique<data::RandomTokenSource>(
          cfg.vocab, data::LoaderOptions{lo.batch, lo.seq, lo.seed + 1});
    return std::make_unique<data::RandomTokenSource>(cfg.vocab, lo);
  }
  data::TokenDataset ds;
  if (spec == "kjv")
    ds = data::TokenDataset::from_text_file(data::default_corpus_path());
  else if (fmt == "text")
    ds = data::TokenDataset::from_text_file(spec);
  else
    ds = data::TokenDataset::from_token_file(spec, data::parse_token_width(fmt), cfg.vocab);
  HP_CHECK(ds.vocab() <= cfg.vocab, "data '", spec, "' has vocabulary ", ds.vocab(),
           " but the model's is ", cfg.vocab);
  auto split = ds.split(val_fraction);
  if (val) {
    data::LoaderOptions vo = lo;
    vo.seed = lo.seed + 1;
    *val = std::make_unique<data::BatchLoader>(split.val.size() > lo.seq ? split.val : split.train,
                                               vo);
  }
  return std::make_unique<data::BatchLoader>(split.train, lo);
}

// The step's options from the command line (and the YAML applied to it), with their defaults.
train::TrainOptions train_options(const Args& a, const io::ModelConfig& cfg, int64_t steps) {
  train::TrainOptions opt;
  opt.batch = a.i64("batch", 8);
  opt.seq = a.i64("seq", std::min<int64_t>(128, cfg.max_seq));
  opt.threads = int(a.i64("threads", std::max(1u, std::thread::hardware_concurrency())));
  opt.adam.lr = a.f64("lr", 3e-4);
  opt.adam.beta1 = a.f64("beta1", 0.9);
  opt.adam.beta2 = a.f64("beta2", 0.95);
  opt.adam.eps = a.f64("eps", 1e-8);
  opt.adam.weight_decay = a.f64("weight-decay", 0.1);
  opt.clip = a.f64("clip", 1.0);
  opt.schedule.warmup = a.i64("warmup", 0);
  opt.schedule.total = steps;
  opt.schedule.min_ratio = a.f64("min-lr-ratio", 0.1);
  return opt;
}

// Fail fast: a model that cannot fit would otherwise be allocated tensor by tensor until the
// kernel kills the process. A lower bound whatever the strategy: every process holds the full
// parameters; one process (threads, or one device) also holds the gradients, AdamW's two moments
// (unless on disk) and the step's logits.
void check_fits(const io::ModelConfig& cfg, const train::TrainOptions& opt,
                const memory::OffloadOptions& off, bool mpi) {
  const int64_t n = cfg.parameter_count();
  const int64_t per_param = mpi ? 4 : off.optimizer_state == Tier::kDisk ? 8 : 16;
  const int64_t logits =
      mpi ? 0 : checked_mul(checked_mul(opt.batch, opt.seq), checked_mul(cfg.vocab, 4));
  check_fits_in_memory(uint64_t(checked_add(checked_mul(n, per_param), logits)),
                       std::string(io::architecture_name(cfg.arch)) + " with " + std::to_string(n) +
                           " parameters: its parameters" +
                           (mpi ? "" : ", gradients, AdamW state and logits"));
}

// Loads the latest checkpoint of `dir` into the trainer and the data position; returns its step
// (0 when there is none and that is allowed). Names and shapes are checked against the model,
// naming the file, before any copy.
int64_t resume(const io::ModelConfig& cfg, const std::string& dir, bool optional, LoopTrainer& tr,
               data::BatchSource& src, FILE* human) {
  auto ck = io::load_latest(dir);
  HP_CHECK(ck || optional, "--resume: no checkpoint in ", dir);
  if (!ck) return 0;
  const std::string step_dir = dir + "/" + io::checkpoint_dir_name(ck->step);
  const io::TensorMap model =
      nn::adopt_params(cfg, std::move(ck->model), step_dir + "/model.safetensors");
  for (auto& [name, t] : tr.params()) const_cast<Tensor&>(t).copy_from(model.at(name));
  try {
    tr.load_optimizer_state(ck->optimizer, ck->step);
  } catch (const Error& e) {
    throw Error(step_dir + "/optimizer.safetensors: " + e.what());
  }
  src.set_position(data::LoaderPosition::from_json(ck->data));
  std::fprintf(human, "resumed from %s/step-%lld\n", dir.c_str(), (long long)ck->step);
  return ck->step;
}

}  // namespace

int cmd_train(const std::vector<std::string>& argv) {
  Args a(argv, with_offload_options(kValued), kFlags);
  if (a.flag("help")) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  std::optional<io::YamlNode> offload_yaml;
  if (a.has("config"))
    apply_yaml(a, io::YamlNode::load_file(a.str("config")), offload_yaml);
  else if (!a.has("model"))
    apply_yaml(a, io::YamlNode::parse(kDefaultTrainYaml, "<default job>"), offload_yaml);
  const bool json = a.flag("json");
  FILE* human = json ? stderr : stdout;
  const size_t rss0 = max_rss_bytes();  // before the model exists (as the PyTorch baseline does)

  io::ModelConfig cfg = resolve_model(a.str("model", "gpt2-kjv"));
  const int64_t steps = a.i64("steps", 100);
  train::TrainOptions opt = train_options(a, cfg, steps);
  if (auto st = strategy_offload_section(a.str("strategy", ""))) {
    HP_CHECK(!offload_yaml, "offload: given in both the config and the strategy; keep one");
    offload_yaml = st;
  }
  const memory::OffloadOptions off = offload_options(a, offload_yaml);
  const int64_t accum = a.i64("grad-accum", 1);
  const uint64_t seed = uint64_t(a.i64("seed", 1));
  HP_CHECK(opt.batch > 0 && opt.seq > 0 && steps >= 0 && accum >= 1 && opt.threads >= 1,
           "batch, seq, threads and grad-accum must be positive");
  check_fits(cfg, opt, off, a.str("devices", "").rfind("mpi", 0) == 0);

  std::unique_ptr<data::BatchSource> val;
  auto src = make_source(a.str("data", "kjv"), a.str("data-format", "text"), cfg,
                         {opt.batch, opt.seq, seed}, a.f64("val-fraction", 0.05), &val);

  io::TensorMap params =
      a.has("init") ? nn::adopt_params(cfg, io::read_safetensors(a.str("init")), a.str("init"))
                    : nn::init_params(cfg, seed);
  if (a.has("devices") || a.has("strategy"))  // a mesh of devices: train_spmd.cpp
    return train_spmd(a, cfg, opt, steps, seed, *src, val.get(), params, off);
  auto tr = make_trainer(cfg, params, opt, off);  // train::Trainer, or the offload trainer

  const std::string ckpt_dir = a.str("ckpt-dir", "");
  const std::string resume_mode = a.flag("no-resume") ? "false"
                                  : a.flag("resume")  ? "true"
                                                      : a.str("resume-mode", "false");
  int64_t start = 0;
  if (!ckpt_dir.empty() && resume_mode != "false")
    start = resume(cfg, ckpt_dir, resume_mode == "auto", *tr, *src, human);
  auto save = [&](int64_t done) {
    if (ckpt_dir.empty()) return;
    io::Checkpoint ck;
    ck.step = done;
    ck.model = tr->params();
    ck.optimizer = tr->optimizer_state();
    ck.data = src->position().to_json();
    ck.extra = {{"config", cfg.to_json()}, {"seed", seed}};
    io::save_checkpoint(ckpt_dir, ck, {int(a.i64("keep", 3))});
  };

  const int64_t D = cfg.d_model;
  const double peak = sgemm_peak_gflops(opt.threads, opt.batch * opt.seq, 4 * D, D);
  const double tokens_per_step = double(opt.batch * opt.seq * accum);
  std::fprintf(human,
               "model %s: %lld layers, d=%lld, %lld heads, vocab %lld | batch %lld x %lld x %lld "
               "micro | %d threads | sgemm peak %.1f GFLOP/s\n",
               io::architecture_name(cfg.arch), (long long)cfg.n_layer, (long long)D,
               (long long)cfg.n_head, (long long)cfg.vocab, (long long)opt.batch,
               (long long)opt.seq, (long long)accum, opt.threads, peak);
  if (std::string s = tr->summary(); !s.empty()) std::fprintf(human, "%s\n", s.c_str());
  std::fflush(human);

  g_stop = 0;
  auto old = std::signal(SIGINT, on_sigint);
  const int64_t log_every = std::max<int64_t>(1, a.i64("log-every", 10));
  const int64_t val_every = a.i64("val-every", 0), ckpt_every = a.i64("ckpt-every", 0);
  const bool tty = !json && isatty(fileno(stdout));
  double spent = 0;
  int64_t done = start, timed = 0;
  for (int64_t s = start; s < steps && !g_stop; ++s) {
    std::vector<std::pair<Tensor, Tensor>> micro;
    for (int64_t m = 0; m < accum; ++m) {
      data::Batch b = src->next();
      micro.push_back({b.input, b.target});
    }
    auto t0 = std::chrono::steady_clock::now();
    train::StepResult r = tr->step(micro);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    done = s + 1;
    if (s > start) spent += dt, ++timed;  // the first step warms caches up
    report_step({.step = s,
                 .steps = steps,
                 .result = r,
                 .tokens = tokens_per_step,
                 .flops = tr->flops_per_micro_batch() * double(accum),
                 .step_s = dt,
                 .mean_step_s = timed ? spent / double(timed) : dt,
                 .peak_gflops = peak,
                 .peak_bytes = tr->peak_device_bytes(),
                 .rss_increase_bytes = max_rss_bytes() - rss0},
                json, tty, log_every, start, human, "");
    if (val_every > 0 && (done % val_every == 0 || done == steps)) {
      val->set_position({});
      double vl = 0;
      const int64_t nb = std::max<int64_t>(1, a.i64("val-batches", 4));
      for (int64_t k = 0; k < nb; ++k) {
        data::Batch b = val->next();
        vl += tr->eval(b.input, b.target) / double(nb);
      }
      if (json) std::printf("{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)s, vl);
      std::fprintf(human, "%sstep %lld: validation loss %.4f\n", tty ? "\n" : "", (long long)done,
                   vl);
      std::fflush(stdout);
    }
    if (ckpt_every > 0 && done % ckpt_every == 0) save(done);
  }
  std::signal(SIGINT, old);
  if (done > start) save(done);
  if (g_stop) {
    std::fprintf(human, "\ninterrupted after step %lld%s\n", (long long)done,
                 ckpt_dir.empty()
                     ? ""
                     : ("; checkpoint saved in " + ckpt_dir + ", run again to resume").c_str());
    return 130;
  }
  if (timed > 0)
    std::fprintf(human, "done: %lld steps, %.0f tok/s average, peak memory %s\n", (long long)done,
                 tokens_per_step * double(timed) / spent,
                 human_bytes(double(tr->peak_device_bytes())).c_str());
  if (int64_t n = a.i64("sample-tokens", 0); n > 0) {
    SampleOptions so;
    so.tokens = n;
    so.threads = opt.threads;
    so.seed = seed;
    std::fprintf(human, "sample:\nAnd God said%s\n",
                 sample_text(cfg, tr->params(), "And God said", so).c_str());
  }
  return 0;
}

}  // namespace hp::cli
