// `hp check DIR`: replays a reference case (case.json, weights, batch, optimizer, steps) and,
// when expected.safetensors is present, compares losses, step-0 gradients and final weights.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/args.hpp"
#include "cli/devices.hpp"
#include "cli/offload.hpp"
#include "cli/options.hpp"
#include "hp/data/image_caption.hpp"
#include "hp/io/json.hpp"
#include "hp/io/safetensors.hpp"

namespace hp::cli {

namespace fs = std::filesystem;

namespace {

// Tolerances (why each is what it is: docs/cli.md). Losses: relative, per step. Step-0
// gradients: max |a - b| / max |b| per tensor. Final weights, in units of the learning rate (one
// AdamW step moves an element by about lr): per tensor the mean |a - b| (a systematic error, such
// as one update too many on a whole tensor), and per element |a - b| beyond a few float32 ulps of
// the weight (one element off).
constexpr double kLossTol = 1e-5;
constexpr double kGradTol = 1e-4;
constexpr double kFinalMeanTol = 0.02;  // lr, mean over a tensor
constexpr double kFinalElemTol = 0.25;  // lr, any element
constexpr double kFinalElemRtol = 1e-6;

// tokens [B, T+1] -> (inputs [B, T], targets [B, T]) as i64.
std::pair<Tensor, Tensor> shift(const Tensor& tokens) {
  HP_CHECK(tokens.rank() == 2 && tokens.dim(1) >= 2, "[check] batch tokens must be [B, T+1], got ",
           shape_str(tokens.shape()));
  const int64_t B = tokens.dim(0), T = tokens.dim(1) - 1;
  std::vector<int64_t> all = tokens.to_i64_vector(), x, y;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      x.push_back(all[size_t(b * (T + 1) + t)]);
      y.push_back(all[size_t(b * (T + 1) + t + 1)]);
    }
  return {Tensor::from_i64({B, T}, x), Tensor::from_i64({B, T}, y)};
}

// The step's inputs and targets: the tokens shifted, or for a vision-language case its images
// (pixel_values) then its captions (tokens [B, T+1]) as nn::batch_shapes lays them out.
std::pair<Tensor, Tensor> case_inputs(const io::ModelConfig& cfg, const io::TensorMap& batch,
                                      const std::string& where) {
  if (!cfg.has_vision()) return shift(batch.at("tokens"));
  HP_CHECK(batch.count("pixel_values"), "[check] ", where,
           ": a vision-language case's batch needs a 'pixel_values' tensor");
  data::Batch b = data::image_caption_batch(data::pixel_levels(batch.at("pixel_values")),
                                            batch.at("tokens"), cfg.vision.tokens());
  return {b.input, b.target};
}

// One kind of comparison (losses, gradients or final weights): how many were compared, the worst
// error and where, and what failed outright (missing, unmatched, non-finite, beyond tolerance).
struct Tally {
  Tally(const char* w, double t) : what(w), tol(t) {}
  const char* what;
  double tol;
  int compared = 0;
  std::string worst;
  double err = 0;
  std::vector<std::string> problems;

  void see(const std::string& where, double e) {
    ++compared;
    if (!std::isfinite(e)) {
      problems.push_back(where + ": non-finite error");
    } else if (e > err || worst.empty()) {
      worst = where, err = e;
    }
    if (std::isfinite(e) && e > tol)
      problems.push_back(where + ": error " + fmt(e) + " > " + fmt(tol));
  }
  static std::string fmt(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3e", v);
    return b;
  }
  // One JSON record; problems go to stderr. False when something failed or nothing was compared.
  bool report() const {
    const bool ok = problems.empty() && compared > 0;
    std::printf(
        "{\"check\": \"%s\", \"compared\": %d, \"worst\": \"%s\", \"max_err\": %.3e, "
        "\"tol\": %.3g, \"ok\": %s}\n",
        what, compared, worst.c_str(), err, tol, ok ? "true" : "false");
    for (const auto& p : problems) std::fprintf(stderr, "check %s: %s\n", what, p.c_str());
    if (compared == 0) std::fprintf(stderr, "check %s: nothing compared\n", what);
    return ok;
  }
};

// The expected tensor `key`, present, of `shape` and finite; otherwise a problem is noted.
const Tensor* expected(const io::TensorMap& e, const std::string& key, const Shape& shape,
                       Tally& t) {
  auto it = e.find(key);
  if (it == e.end()) {
    t.problems.push_back("'" + key + "' missing from the expected file");
    return nullptr;
  }
  if (it->second.shape() != shape) {
    t.problems.push_back("'" + key + "' is " + shape_str(it->second.shape()) + ", the run's is " +
                         shape_str(shape));
    return nullptr;
  }
  for (float v : it->second.to_f32_vector())
    if (!std::isfinite(v)) {
      t.problems.push_back("'" + key + "' holds a non-finite expected value");
      return nullptr;
    }
  return &it->second;
}

// max |a - b| / max |b| (0/0 counts as 0); NaN or inf in `a` gives NaN.
double rel_err(const Tensor& a, const Tensor& b) {
  auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return std::nan("");
    num = std::max(num, std::fabs(double(x[i]) - double(y[i])));
    den = std::max(den, std::fabs(double(y[i])));
  }
  return den == 0 ? num : num / den;
}

// Final weights in units of `lr`: the mean |a - b| over the tensor, and the worst element's
// |a - b| - rtol |b| (NaN when `a` holds a non-finite value).
std::pair<double, double> final_err(const Tensor& a, const Tensor& b, double lr) {
  auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double sum = 0, elem = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return {std::nan(""), std::nan("")};
    const double d = std::fabs(double(x[i]) - double(y[i]));
    sum += d;
    elem = std::max(elem, d - kFinalElemRtol * std::fabs(double(y[i])));
  }
  return {x.empty() ? 0 : sum / double(x.size()) / lr, elem / lr};
}

// Compares a run with the case's expected results: every loss, every parameter's step-0
// gradient and final value must be present, finite and within tolerance, and the file may hold
// nothing else. Prints one record per kind; returns whether all passed.
bool compare(const io::TensorMap& e, const std::vector<double>& losses, const io::TensorMap& grads0,
             const io::TensorMap& final_params, double lr) {
  Tally tl("loss", kLossTol), tg("grad", kGradTol), tm("final_mean_lr", kFinalMeanTol),
      te("final_elem_lr", kFinalElemTol);
  if (const Tensor* ref = expected(e, "loss", {int64_t(losses.size())}, tl)) {
    auto r = ref->to_f32_vector();
    for (size_t s = 0; s < losses.size(); ++s)
      tl.see("step " + std::to_string(s),
             r[s] == 0 ? std::fabs(losses[s]) : std::fabs(losses[s] - r[s]) / std::fabs(r[s]));
  }
  for (const auto& [k, g] : grads0)
    if (const Tensor* ref = expected(e, "grad/" + k, g.shape(), tg)) tg.see(k, rel_err(g, *ref));
  for (const auto& [k, p] : final_params)
    if (const Tensor* ref = expected(e, "final/" + k, p.shape(), tm)) {
      auto [mean, elem] = final_err(p, *ref, lr);
      tm.see(k, mean);
      te.see(k, elem);
    }
  for (const auto& [k, t] : e) {  // anything the run did not produce is a mismatch
    const bool known = k == "loss" || (k.rfind("grad/", 0) == 0 && grads0.count(k.substr(5))) ||
                       (k.rfind("final/", 0) == 0 && final_params.count(k.substr(6)));
    Tally& kind = k.rfind("grad/", 0) == 0 ? tg : k.rfind("final/", 0) == 0 ? tm : tl;
    if (!known) kind.problems.push_back("expected tensor '" + k + "' matches nothing the run made");
  }
  bool ok = tl.report();
  ok &= tg.report();
  ok &= tm.report();
  ok &= te.report();
  return ok;
}

// The state each rank holds (parameters, gradients, AdamW moments): one device's, the planned and
// the measured maximum over ranks; with offload each rank's device peak under its budget.
void print_state_memory(const train::StepPlan& plan, const StepsResult& res, bool offload) {
  size_t single = 0, planned = 0, measured = 0;
  for (const auto& pi : plan.infos) single += 4 * sizeof(float) * size_t(numel(pi.shape));
  for (int r = 0; r < plan.world(); ++r) {
    planned = std::max(planned, train::planned_state_bytes(plan, r));
    measured = std::max(measured, res.state_bytes[size_t(r)]);
  }
  std::printf(
      "{\"memory\": \"state\", \"single_device\": %zu, \"planned_max\": %zu, "
      "\"measured_max\": %zu}\n",
      single, planned, measured);
  if (!offload) return;
  for (int r = 0; r < plan.world(); ++r)
    std::printf("{\"memory\": \"device\", \"rank\": %d, \"budget\": %zu, \"peak\": %zu}\n", r,
                res.budgets[size_t(r)], res.peak_bytes[size_t(r)]);
}

// What hp check reads from its options, once (defaults: check_command in options.hpp).
struct CheckOptions {
  fs::path dir;
  std::optional<int64_t> steps;  // the case's unless given
  int threads = 0;
  Placement place;  // one device unless --devices or --strategy
  // Options, or a strategy file's offload: section; on a mesh, per rank.
  memory::OffloadOptions offload;
};

CheckOptions read_check_options(const Args& a) {
  HP_CHECK(a.positional().size() == 1, "usage: ", a.command().usage, " (see --help)");
  CheckOptions o;
  o.dir = a.positional()[0];
  if (a.has("steps")) o.steps = a.i64("steps");
  o.threads = int(a.i64("threads"));
  o.place = parse_placement(a);
  o.offload = offload_options(a, o.place.offload_section());
  return o;
}

}  // namespace

int cmd_check(const std::vector<std::string>& argv) {
  Args a(argv, check_command());
  if (printed_help(a)) return 0;
  const CheckOptions co = read_check_options(a);
  const fs::path& dir = co.dir;
  const Placement& place = co.place;
  io::Json c = io::read_json(dir / "case.json");
  const std::string where = (dir / "case.json").string();
  io::ModelConfig cfg = io::ModelConfig::from_json(io::json_require(c, "model", where), where);
  auto params = nn::adopt_params(
      cfg, io::read_safetensors(dir / io::json_string(c, "weights", "weights.safetensors", where)),
      where);
  auto batch = io::read_safetensors(dir / io::json_string(c, "batch", "batch.safetensors", where));
  HP_CHECK(batch.count("tokens"), "[check] ", where, ": batch has no 'tokens' tensor");
  auto [x, y] = case_inputs(cfg, batch, where);
  const int64_t case_steps = io::json_int(c, "steps", where);
  const int64_t steps = co.steps.value_or(case_steps);
  HP_CHECK(steps >= 1, "[check] ", where, ": steps must be at least 1, got ", steps);
  // The expected results: the file the case names must exist; a case that names none and has no
  // expected.safetensors is only replayed (and says so).
  const bool names_expected = c.contains("expected");
  const fs::path exp = dir / io::json_string(c, "expected", "expected.safetensors", where);
  const bool comparing = names_expected || fs::exists(exp);
  HP_CHECK(!comparing || fs::is_regular_file(exp), "[check] ", where, " names expected results ",
           exp.string(), ", which does not exist");
  HP_CHECK(!comparing || steps == case_steps, "[check] --steps ", steps, " differs from the ",
           case_steps, " steps ", exp.string(), " holds results for");

  train::TrainOptions opt;
  opt.batch = x.dim(0);
  opt.seq = batch.at("tokens").dim(1) - 1;  // a vision-language model's: caption tokens
  opt.threads = co.threads;
  opt.clip = 0;
  const io::Json& o = io::json_require(c, "optimizer", where);
  HP_CHECK(io::json_string(o, "name", where) == "adamw", "[check] ", where,
           ": only the adamw optimizer is supported");
  opt.adam.lr = io::json_double(o, "lr", where);
  const io::Json& betas = io::json_require(o, "betas", where);
  HP_CHECK(betas.is_array() && betas.size() == 2, "[check] ", where, ": betas must be [b1, b2]");
  opt.adam.beta1 = betas[0].get<double>();
  opt.adam.beta2 = betas[1].get<double>();
  opt.adam.eps = io::json_double(o, "eps", 1e-8, where);
  opt.adam.weight_decay = io::json_double(o, "weight_decay", 0.0, where);

  opt.offload = co.offload;
  auto plan = plan_for(cfg, place, opt.batch, opt.seq, opt.threads);
  StepsResult res = run_steps(
      *plan, place.dev, params, opt, std::vector<std::pair<Tensor, Tensor>>(size_t(steps), {x, y}),
      [](int64_t s, const train::StepResult& r) {
        std::printf("{\"step\": %lld, \"loss\": %.6f}\n", (long long)s, r.loss);
        std::fflush(stdout);
      },
      [&](train::Trainer& tr) {
        if (std::string s = offload_summary(tr); !s.empty() && !place.mesh())
          std::fprintf(stderr, "%s\n", s.c_str());
      });
  if (place.dev.rank != 0) return 0;  // under mpi, rank 0's process reports
  if (place.mesh()) print_state_memory(*plan, res, co.offload.enabled());
  if (!comparing) {
    std::fprintf(stderr, "check: %s names no expected results: replayed only, nothing compared\n",
                 where.c_str());
    return 0;
  }
  HP_CHECK(opt.adam.lr > 0, "[check] ", where, ": optimizer.lr must be > 0 (final weights are ",
           "compared in learning-rate units)");
  const bool ok =
      compare(io::read_safetensors(exp), res.losses, res.grads0, res.final_params, opt.adam.lr);
  return ok ? 0 : 1;
}

}  // namespace hp::cli
