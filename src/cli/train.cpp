// `hp train`: trains a GPT-2, Llama or vision-language model from a YAML config (flags override it)
// with a live progress line, JSON records, validation, atomic checkpoints, bitwise resume and
// Ctrl-C, on one device or one rank per device of --devices threads:N|mpi under --strategy (see
// docs/cli.md). One loop for every world: rank 0 reads the data and broadcasts every batch (and the
// Ctrl-C decision), prints the progress line and JSON records; every rank writes its own pieces of
// a sharded checkpoint (cli/ckpt_save.hpp), which any world and strategy can resume from.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "cli/args.hpp"
#include "cli/ckpt_save.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/generate.hpp"
#include "cli/offload.hpp"
#include "cli/options.hpp"
#include "hp/data/corpus.hpp"
#include "hp/data/image_caption.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/io/yaml.hpp"
#include "hp/train/checkpoint.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

namespace {

std::unique_ptr<data::BatchSource> make_source(const std::string& spec, const std::string& fmt,
                                               const io::ModelConfig& cfg, data::LoaderOptions lo,
                                               double val_fraction,
                                               std::unique_ptr<data::BatchSource>* val) {
  HP_CHECK((spec == "images") == cfg.has_vision(), "--data ", spec, ": ",
           cfg.has_vision() ? "a vision-language model trains on --data images"
                            : "--data images is for a vision-language model");
  if (spec == "images") {  // the synthetic set; validation draws other samples
    if (val)
      *val = std::make_unique<data::ImageCaptionSource>(
          cfg.vision, data::LoaderOptions{lo.batch, lo.seq, lo.seed + 1});
    return std::make_unique<data::ImageCaptionSource>(cfg.vision, lo);
  }
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

// Everything hp train reads from its options and config, parsed once; the defaults are the
// table's (train_command in options.hpp).
struct TrainJob {
  io::ModelConfig cfg;
  Placement place;           // one device unless --devices or --strategy
  train::TrainOptions step;  // batch, seq, threads per rank, AdamW, schedule, clip, offload
  int64_t steps = 0, accum = 0;
  uint64_t seed = 0;
  std::string init, data, data_format;
  double val_fraction = 0;
  int64_t val_every = 0, val_batches = 0, log_every = 0, sample_tokens = 0;
  std::string ckpt_dir, resume;  // resume: false, true or auto
  int64_t ckpt_every = 0, keep = 0;
  bool ckpt_single = false;  // --ckpt-format single: gathered to rank 0, one file per kind
  bool ckpt_async = true;    // --ckpt-mode async: shards written on a thread while training goes on
  bool json = false;
  std::string trace;     // --trace: the measured timeline's Chrome-trace file, or none
  bool reorder = false;  // --reorder-pipeline
};

// The step's options from the command line (and the YAML applied to it). Unless given, the
// sequence is at most the model's positions and threads per rank are this process's cores
// shared among its ranks.
train::TrainOptions step_options(const Args& a, const TrainJob& job) {
  train::TrainOptions opt;
  opt.batch = a.i64("batch");
  // A vision-language model's positions start with its image's tokens.
  opt.seq = a.has("seq") ? a.i64("seq")
                         : std::min<int64_t>(128, job.cfg.max_seq - job.cfg.vision.tokens());
  opt.threads = threads_per_rank(a, job.place.dev);
  opt.adam.lr = a.f64("lr");
  opt.adam.beta1 = a.f64("beta1");
  opt.adam.beta2 = a.f64("beta2");
  opt.adam.eps = a.f64("eps");
  opt.adam.weight_decay = a.f64("weight-decay");
  opt.clip = a.f64("clip");
  opt.schedule.warmup = a.i64("warmup");
  opt.schedule.total = job.steps;
  opt.schedule.min_ratio = a.f64("min-lr-ratio");
  return opt;
}

// --strategy auto: the planner's choice for this job on --cluster (hp calibrate's `local` by
// default) with the devices' count, written to a strategy file of this process (the checkpoints
// record its path as they do any file's) and printed by rank 0 before training.
Placement place_auto(const Args& a, const TrainJob& job) {
  const Devices& dev = job.place.dev;
  const AutoStrategy s = auto_strategy(job.cfg, job.step.batch, job.step.seq, dev.count,
                                       a.has("cluster") ? a.str("cluster") : "local");
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("hp-strategy-auto-" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(file);
    out << s.yaml;
    HP_CHECK(out.good(), "--strategy auto: cannot write ", file.string());
  }
  if (dev.rank == 0) {
    std::fprintf(a.flag("json") ? stderr : stdout, "%s; written to %s:\n%s", s.summary.c_str(),
                 file.string().c_str(), s.yaml.c_str());
    std::fflush(stdout);
  }
  return place(dev, file.string());
}

// Reads the job from the options, the YAML config (or the embedded default job) applied to them
// and the strategy: an `offload:` section may come from the config or the strategy file, not both.
TrainJob read_job(Args& a) {
  std::optional<io::YamlNode> offload;
  if (a.has("config"))
    apply_yaml(a, io::YamlNode::load_file(a.str("config")), offload);
  else if (!a.has("model"))
    apply_yaml(a, io::YamlNode::parse(kDefaultTrainYaml, "<default job>"), offload);
  TrainJob job;
  job.cfg = resolve_model(a.str("model"));
  job.steps = a.i64("steps");
  const bool planned = a.has("strategy") && a.str("strategy") == "auto";
  HP_CHECK(!a.has("cluster") || planned, "--cluster applies with --strategy auto only");
  if (planned) {
    HP_CHECK(a.has("devices"), "--strategy auto needs --devices threads:N or mpi");
    job.place.dev = parse_devices(a.str("devices"));
  } else {
    job.place = parse_placement(a);
  }
  job.step = step_options(a, job);
  if (planned) job.place = place_auto(a, job);
  if (auto st = job.place.offload_section()) {
    HP_CHECK(!offload, "offload: given in both the config and the strategy; keep one");
    offload = st;
  }
  job.step.offload = offload_options(a, offload);
  job.accum = a.i64("grad-accum");
  job.seed = uint64_t(a.i64("seed"));
  job.init = a.has("init") ? a.str("init") : "";
  // A vision-language model's data is the synthetic image + caption set unless named.
  job.data = job.cfg.has_vision() && !a.has("data") ? "images" : a.str("data");
  job.data_format = a.str("data-format");
  job.val_fraction = a.f64("val-fraction");
  job.val_every = a.i64("val-every");
  job.val_batches = a.i64("val-batches");
  job.log_every = a.i64("log-every");
  job.sample_tokens = a.i64("sample-tokens");
  HP_CHECK(job.sample_tokens == 0 || !job.cfg.has_vision(),
           "--sample-tokens: a vision-language model has no image to caption after training");
  job.ckpt_dir = a.has("ckpt-dir") ? a.str("ckpt-dir") : "";
  job.ckpt_every = a.i64("ckpt-every");
  job.keep = a.i64("keep");
  job.ckpt_single = a.str("ckpt-format") == "single";
  job.ckpt_async = a.str("ckpt-mode") == "async";
  job.resume = a.flag("no-resume") ? "false" : a.flag("resume") ? "true" : a.str("resume-mode");
  job.json = a.flag("json");
  job.trace = a.has("trace") ? a.str("trace") : "";
  job.reorder = a.flag("reorder-pipeline");
  HP_CHECK(!job.reorder || job.place.pipeline,
           "option --reorder-pipeline needs a pipeline strategy (ppN or a pipeline: section)");
  return job;
}

// Fail fast: a model that cannot fit would otherwise be allocated tensor by tensor until the
// kernel kills the process. A lower bound whatever the strategy: every process holds the full
// parameters; one process (threads, or one device) also holds the gradients, AdamW's two moments
// (unless on disk) and the step's logits.
void check_fits(const TrainJob& job) {
  const io::ModelConfig& cfg = job.cfg;
  const bool mpi = job.place.dev.mpi != nullptr;
  const int64_t n = cfg.parameter_count();
  const int64_t per_param = mpi ? 4 : job.step.offload.optimizer_state == Tier::kDisk ? 8 : 16;
  const int64_t logits =
      mpi ? 0 : checked_mul(checked_mul(job.step.batch, job.step.seq), checked_mul(cfg.vocab, 4));
  check_fits_in_memory(uint64_t(checked_add(checked_mul(n, per_param), logits)),
                       std::string(cfg.model_type()) + " with " + std::to_string(n) +
                           " parameters: its parameters" +
                           (mpi ? "" : ", gradients, AdamW state and logits"));
}

// What a run resumes from: the step directory and its state, as global tensors (single-file
// checkpoints) or as the index of a sharded one, whose boxes each rank reads itself.
struct Resume {
  int64_t step = 0;
  std::filesystem::path dir;
  std::optional<io::Checkpoint> single;
  std::optional<io::ShardIndex> index;
};

// The latest checkpoint of the job's directory when it resumes (every process reads it: one
// machine or a shared disk): a single-file one's model checked against the config naming the
// file; a sharded one's index and files checked (a corrupt or incomplete one is an error naming
// the previous complete step). The data position is restored. None when there is none and that
// is allowed.
std::optional<Resume> load_resume(const TrainJob& job, data::BatchSource& src, FILE* human) {
  if (job.ckpt_dir.empty() || job.resume == "false") return std::nullopt;
  std::optional<std::filesystem::path> dir;
  try {
    dir = io::resume_dir(job.ckpt_dir);
  } catch (const Error& e) {
    throw Error(std::string("--resume: ") + e.what());
  }
  HP_CHECK(dir || job.resume == "auto", "--resume: no checkpoint in ", job.ckpt_dir);
  if (!dir) return std::nullopt;
  Resume r;
  r.dir = *dir;
  io::Json data;
  if (io::is_sharded(r.dir)) {
    try {
      r.index = io::load_index(r.dir);
    } catch (const Error& e) {
      throw Error("--resume: checkpoint " + r.dir.string() +
                  " is corrupt or incomplete: " + e.what() + "; " +
                  io::previous_complete(job.ckpt_dir, io::step_of(r.dir).value_or(0)));
    }
    r.step = r.index->step;
    data = r.index->data;
  } else {
    r.single = io::load_checkpoint(r.dir);
    r.step = r.single->step;
    data = r.single->data;
  }
  const io::Json& extra = r.index ? r.index->extra : r.single->extra;
  if (extra.contains("config")) {  // a checkpoint of another model is never continued
    const std::string diff =
        io::ModelConfig::from_json(extra["config"], r.dir.string()).first_difference(job.cfg);
    HP_CHECK(diff.empty(), "--resume: ", r.dir.string(),
             " holds another model than this job's: ", diff,
             " (the checkpoint's config against this job's); train it with its own config, or "
             "start afresh in another --ckpt-dir");
  }
  if (r.single)
    r.single->model = nn::adopt_params(job.cfg, std::move(r.single->model),
                                       (r.dir / "model.safetensors").string());
  src.set_position(data::LoaderPosition::from_json(data));
  if (job.place.dev.rank == 0) std::fprintf(human, "resumed from %s\n", r.dir.string().c_str());
  return r;
}

// Rank 0's tensor (i64 [shape]) on every rank; `t` is read on rank 0 only. One rank: `t`.
// Shapes: nn::batch_shapes.
Tensor broadcast_i64(comm::Communicator& c, const Tensor& t, const Shape& shape,
                     std::chrono::milliseconds timeout) {
  if (c.size() == 1) return t.dtype() == DType::kI64 ? t : t.to(DType::kI64);
  Tensor out = c.rank() == 0 ? t.to(DType::kI64).clone() : Tensor(shape, DType::kI64);
  HP_CHECK(out.shape() == shape, "[train] batch ", shape_str(out.shape()), ", expected ",
           shape_str(shape));
  c.broadcast(out.raw(), size_t(out.numel()), DType::kI64, 0).wait(timeout);
  return out;
}

// The stop signal any rank received (threads share one; under mpirun each process has its own),
// the same on every rank; 0 when none.
int stop_signal(comm::Communicator& c, std::chrono::milliseconds timeout) {
  int64_t sig = StopSignals::received();
  if (c.size() > 1) c.all_reduce(&sig, &sig, 1, DType::kI64, comm::ReduceOp::kMax).wait(timeout);
  return int(sig);
}

// What every rank's loop shares: the job, the data (read on rank 0), the checkpoint resumed from
// and what rank 0 prints with.
struct Run {
  const TrainJob& job;
  const train::StepPlan& plan;
  const io::TensorMap& params;  // fresh or --init; a resumed checkpoint's model wins
  const std::optional<Resume>& ck;
  data::BatchSource& src;
  data::BatchSource* val;
  double peak_gflops;  // sgemm, summed over the devices
  size_t rss0;         // one device: the process's RSS before the model existed
  FILE* human;
  bool tty;
};

// The start-up lines: the model, batch, world and threads, then what is offloaded.
void print_header(const Run& R, const train::Trainer& tr) {
  const TrainJob& job = R.job;
  const io::ModelConfig& cfg = job.cfg;
  const train::TrainOptions& o = job.step;
  std::fprintf(R.human, "model %s: %lld layers, d=%lld, %lld heads, vocab %lld | batch %lld x %lld",
               cfg.model_type(), (long long)cfg.n_layer, (long long)cfg.d_model,
               (long long)cfg.n_head, (long long)cfg.vocab, (long long)o.batch, (long long)o.seq);
  if (!job.place.mesh()) {
    std::fprintf(R.human, " x %lld micro | %d threads | sgemm peak %.1f GFLOP/s\n",
                 (long long)job.accum, o.threads, R.peak_gflops);
    if (std::string s = offload_summary(tr); !s.empty()) std::fprintf(R.human, "%s\n", s.c_str());
    std::fflush(R.human);
    return;
  }
  std::fprintf(R.human,
               " | %d devices (%s, strategy %s), %d threads each | sgemm peak %.1f GFLOP/s\n",
               job.place.dev.count, job.place.dev.kind.c_str(), job.place.spec.c_str(), o.threads,
               R.peak_gflops);
  std::fflush(R.human);
  if (const memory::OffloadPlan* p = tr.offload_plan())
    std::fprintf(R.human,
                 "offload per rank: device budget %s, optimizer state on %s; rank 0: %zu "
                 "transfers (%s) and %d recomputations per micro-batch, planned peak %s\n",
                 memory::format_bytes(tr.device_budget()).c_str(),
                 tier_name(o.offload.optimizer_state), p->transfers.size(),
                 human_bytes(double(p->bytes_to_device + p->bytes_to_host)).c_str(), p->recomputed,
                 memory::format_bytes(p->peak_device).c_str());
}

// One rank's run: the trainer, the loop over steps with validation, checkpoints and Ctrl-C, the
// summary and the sample. Returns the exit code (128 + the signal after a stop signal: 130 after
// Ctrl-C, 143 after SIGTERM).
class RankLoop {
 public:
  RankLoop(const Run& run, comm::Communicator& c)
      : R_(run),
        job_(run.job),
        c_(c),
        lead_(c.rank() == 0),
        tr_(run.plan, c, run.ck && run.ck->single ? run.ck->single->model : run.params,
            run.job.step),
        timeout_(tr_.rank_comm().timeout()),
        shapes_(nn::batch_shapes(run.job.cfg, run.job.step.batch, run.job.step.seq)) {
    if (R_.ck) restore();
    if (!job_.ckpt_dir.empty() && !job_.ckpt_single)
      saver_ = std::make_unique<ShardedSaver>(
          SaveOptions{.dir = job_.ckpt_dir, .keep = int(job_.keep), .async = job_.ckpt_async}, c_,
          timeout_, lead_ ? R_.human : nullptr);
    if (lead_) print_header(R_, tr_);
  }
  int run();

 private:
  // Work of one step summed over ranks (replicated compute counted on every rank).
  double step_flops();
  std::vector<std::pair<Tensor, Tensor>> next_micro_batches();
  void report(int64_t s, const train::StepResult& r, double dt, double mean_dt, double flops);
  void validate(int64_t s, int64_t done);
  void restore();
  void save(int64_t done);
  void save_single(int64_t done);
  void sample();
  void write_trace();

  const Run& R_;
  const TrainJob& job_;
  comm::Communicator& c_;
  const bool lead_;
  train::Trainer tr_;
  const std::chrono::milliseconds timeout_;
  const nn::BatchShapes shapes_;
  std::unique_ptr<ShardedSaver> saver_;
  int64_t saved_ = -1;                 // the step last saved
  std::vector<mpmd::Interval> trace_;  // --trace: every step's actions, seconds on the steady clock
};

// The resumed state into this rank's pieces: a single-file checkpoint's moments (its parameters
// went to the trainer), or a sharded one's boxes that intersect this rank's pieces.
void RankLoop::restore() {
  const Resume& ck = *R_.ck;
  try {
    if (ck.single) return tr_.load_optimizer_state(ck.single->optimizer, ck.step);
    io::BoxReader reader(ck.dir);
    train::restore(tr_, ck.dir, *ck.index, reader);
  } catch (const Error& e) {
    if (ck.single) throw Error((ck.dir / "optimizer.safetensors").string() + ": " + e.what());
    throw Error("--resume: checkpoint " + ck.dir.string() + " is corrupt: " + e.what() + "; " +
                io::previous_complete(job_.ckpt_dir, ck.step));
  }
}

double RankLoop::step_flops() {
  double flops = tr_.flops_per_micro_batch();
  if (c_.size() == 1) return flops;
  int64_t f = int64_t(flops);
  c_.all_reduce(&f, &f, 1, DType::kI64, comm::ReduceOp::kSum).wait(timeout_);
  return double(f);
}

std::vector<std::pair<Tensor, Tensor>> RankLoop::next_micro_batches() {
  std::vector<std::pair<Tensor, Tensor>> micro;
  for (int64_t m = 0; m < job_.accum; ++m) {
    data::Batch b;
    if (lead_) b = R_.src.next();
    Tensor x = broadcast_i64(c_, b.input, shapes_.tokens, timeout_);
    Tensor y = broadcast_i64(c_, b.target, shapes_.targets, timeout_);
    micro.push_back({x, y});
  }
  return micro;
}

void RankLoop::report(int64_t s, const train::StepResult& r, double dt, double mean_dt,
                      double flops) {
  const bool mesh = job_.place.mesh();
  report_step({.step = s,
               .steps = job_.steps,
               .result = r,
               .tokens = double(job_.step.batch * job_.step.seq * job_.accum),
               .flops = flops * double(job_.accum),
               .step_s = dt,
               .mean_step_s = mean_dt,
               .peak_gflops = R_.peak_gflops,
               .peak_bytes = tr_.device().peak_bytes(),
               .rss_increase_bytes = mesh ? 0 : max_rss_bytes() - R_.rss0},
              job_.json, R_.tty, job_.log_every, R_.ck ? R_.ck->step : 0, R_.human,
              mesh ? "/device" : "");
}

void RankLoop::validate(int64_t s, int64_t done) {
  if (lead_) R_.val->set_position({});
  double vl = 0;
  for (int64_t k = 0; k < job_.val_batches; ++k) {
    data::Batch vb;
    if (lead_) vb = R_.val->next();
    vl += tr_.eval(broadcast_i64(c_, vb.input, shapes_.tokens, timeout_),
                   broadcast_i64(c_, vb.target, shapes_.targets, timeout_)) /
          double(job_.val_batches);
  }
  if (!lead_) return;
  if (job_.json) std::printf("{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)s, vl);
  std::fprintf(R_.human, "%sstep %lld: validation loss %.4f\n", R_.tty ? "\n" : "", (long long)done,
               vl);
  std::fflush(stdout);
}

void RankLoop::save(int64_t done) {
  if (job_.ckpt_dir.empty() || done == saved_) return;
  saved_ = done;
  if (!saver_) return save_single(done);
  io::ShardIndex meta;
  meta.step = done;
  meta.rng = {{"seed", job_.seed}};
  meta.data = R_.src.position().to_json();  // rank 0's is the one written
  meta.extra = {{"config", job_.cfg.to_json()}, {"seed", job_.seed}, {"world", c_.size()}};
  if (job_.place.mesh()) meta.extra["strategy"] = job_.place.spec;
  saver_->save(tr_, meta);
}

// --ckpt-format single: every parameter and moment gathered to rank 0, which writes them.
void RankLoop::save_single(int64_t done) {
  const auto t0 = std::chrono::steady_clock::now();
  io::Checkpoint out;
  out.step = done;
  out.model = tr_.params();  // collective on a mesh: every rank gathers, rank 0 writes
  out.optimizer = tr_.optimizer_state();
  if (!lead_) return;
  out.data = R_.src.position().to_json();
  out.extra = {{"config", job_.cfg.to_json()}, {"seed", job_.seed}};
  if (job_.place.mesh()) out.extra["strategy"] = job_.place.spec;
  io::save_checkpoint(job_.ckpt_dir, out, {int(job_.keep)});
  std::fprintf(R_.human, "checkpoint step-%lld: gathered and written in %.3f s\n", (long long)done,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

int RankLoop::run() {
  const double flops = step_flops();
  const int64_t start = R_.ck ? R_.ck->step : 0;
  double spent = 0;
  int64_t done = start, timed = 0;
  int stopped = 0;  // the signal that stopped the run
  for (int64_t s = start; s < job_.steps; ++s) {
    if ((stopped = stop_signal(c_, timeout_))) break;
    const std::vector<std::pair<Tensor, Tensor>> micro = next_micro_batches();
    const auto t0 = std::chrono::steady_clock::now();
    const train::StepResult r = tr_.step(micro);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!job_.trace.empty()) {
      const double at = std::chrono::duration<double>(t0.time_since_epoch()).count();
      for (mpmd::Interval iv : tr_.step_timeline()) {
        iv.start += at, iv.end += at;
        trace_.push_back(iv);
      }
    }
    done = s + 1;
    // The second step's action times (the first compiles and warms up), the same on every rank.
    if (job_.reorder && s == start + 1) {
      const bool changed = tr_.reorder_pipeline(tr_.measured_pipeline_costs());
      if (lead_)
        std::fprintf(stderr, "pipeline schedule %s at the measured costs\n",
                     changed ? "reordered" : "kept: its order is no slower");
    }
    if (s > start) spent += dt, ++timed;  // the first step warms caches up
    if (lead_) report(s, r, dt, timed ? spent / double(timed) : dt, flops);
    if (R_.val && job_.val_every > 0 && (done % job_.val_every == 0 || done == job_.steps))
      validate(s, done);
    if (job_.ckpt_every > 0 && done % job_.ckpt_every == 0) save(done);
    if (saver_) saver_->poll();
  }
  if (done > start) save(done);
  if (saver_) saver_->finish();
  write_trace();
  if (stopped) {
    if (lead_)
      std::fprintf(
          R_.human, "\n%s: interrupted after step %lld%s\n", strsignal(stopped), (long long)done,
          job_.ckpt_dir.empty()
              ? ""
              : ("; checkpoint saved in " + job_.ckpt_dir + ", run again to resume").c_str());
    return 128 + stopped;  // as a shell reports a process the signal ended
  }
  if (lead_ && timed > 0)
    std::fprintf(
        R_.human, "done: %lld steps, %.0f tok/s average, peak memory %s%s\n", (long long)done,
        double(job_.step.batch * job_.step.seq * job_.accum) * double(timed) / spent,
        human_bytes(double(tr_.device().peak_bytes())).c_str(), job_.place.mesh() ? "/device" : "");
  sample();
  return 0;
}

// --trace: every rank's actions gathered to rank 0 (collective), which writes them.
void RankLoop::write_trace() {
  if (job_.trace.empty()) return;
  const mpmd::Simulation sim = gather_timeline(c_, trace_, "hp train", timeout_);
  if (!lead_) return;
  mpmd::write_chrome_trace(sim, job_.trace);
  size_t n = 0;
  for (const auto& row : sim.timeline) n += row.size();
  std::fprintf(R_.human, "trace: %zu actions of %zu ranks over %.3f s written to %s\n", n,
               sim.timeline.size(), sim.step_time, job_.trace.c_str());
}

// The sample after training (--sample-tokens), from rank 0.
void RankLoop::sample() {
  if (job_.sample_tokens <= 0) return;
  io::TensorMap p = tr_.params();  // collective on a mesh
  if (!lead_) return;
  SampleOptions so;
  so.tokens = job_.sample_tokens;
  so.threads = job_.step.threads;
  so.seed = job_.seed;
  std::fprintf(R_.human, "sample:\nAnd God said%s\n",
               sample_text(job_.cfg, p, "And God said", so).c_str());
}

}  // namespace

int cmd_train(const std::vector<std::string>& argv) {
  StopSignals signals;  // before any thread is made: they all inherit the blocked signals
  Args a(argv, train_command());
  if (printed_help(a)) return 0;
  const TrainJob job = read_job(a);
  FILE* human = job.json ? stderr : stdout;
  const size_t rss0 = max_rss_bytes();  // before the model exists (as the PyTorch baseline does)
  check_fits(job);

  std::unique_ptr<data::BatchSource> val;
  auto src = make_source(job.data, job.data_format, job.cfg,
                         {job.step.batch, job.step.seq, job.seed}, job.val_fraction, &val);
  io::TensorMap params = job.init.empty()
                             ? nn::init_params(job.cfg, job.seed)
                             : nn::adopt_params(job.cfg, io::read_safetensors(job.init), job.init);
  auto plan = plan_for(job.cfg, job.place, job.step.batch, job.step.seq, job.step.threads);
  const std::optional<Resume> ck = load_resume(job, *src, human);
  const Devices& dev = job.place.dev;
  const int64_t D = job.cfg.d_model;
  const double peak =
      dev.rank == 0
          ? sgemm_peak_gflops(job.step.threads, job.step.batch * job.step.seq, 4 * D, D) * dev.count
          : 1;
  const Run run{job,       *plan, params, ck,    *src,
                val.get(), peak,  rss0,   human, !job.json && isatty(fileno(stdout))};
  std::atomic<int> rc{0};
  run_ranks(dev, [&](comm::Communicator& c) {
    RankLoop loop(run, c);
    if (int r = loop.run(); r != 0) rc = r;
  });
  return rc;
}

}  // namespace hp::cli
