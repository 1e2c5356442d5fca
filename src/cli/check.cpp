// `hp check DIR`: replays a reference case (case.json, weights, batch, optimizer, steps) and,
// when expected.safetensors is present, compares losses, step-0 gradients and final weights.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cli/args.hpp"
#include "cli/devices.hpp"
#include "cli/offload.hpp"
#include "hp/io/json.hpp"
#include "hp/io/safetensors.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

namespace fs = std::filesystem;

namespace {

// Tolerances (documented in docs/cli.md): losses relative; tensors as max |a - b| / max |b|.
constexpr double kLossTol = 1e-5;
constexpr double kGradTol = 1e-4;
constexpr double kWeightTol = 1e-3;  // AdamW amplifies rounding where |grad| ~ eps

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

// max |a - b| / max |b| over a tensor (0/0 counts as 0).
double rel_err(const Tensor& a, const Tensor& b) {
  auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::fabs(double(x[i]) - double(y[i])));
    den = std::max(den, std::fabs(double(y[i])));
  }
  return den == 0 ? num : num / den;
}

struct Worst {
  std::string name;
  double err = 0;
  void see(const std::string& n, double e) {
    if (e > err || name.empty()) name = n, err = e;
  }
};

bool report(const char* what, const Worst& w, double tol) {
  bool ok = w.err <= tol;
  std::printf(
      "{\"check\": \"%s\", \"worst\": \"%s\", \"max_rel_err\": %.3e, \"tol\": %.0e, "
      "\"ok\": %s}\n",
      what, w.name.c_str(), w.err, tol, ok ? "true" : "false");
  return ok;
}

}  // namespace

int cmd_check(const std::vector<std::string>& argv) {
  const char* usage =
      "usage: hp check DIR [--threads K] [--steps N] [--devices threads:N|mpi --strategy S] "
      "[--device-memory SIZE|P% --host-memory SIZE --optimizer-state device|host|disk "
      "--offload-dir DIR]";
  Args a(argv, with_offload_options({"threads", "steps", "devices", "strategy"}), {"help"});
  if (a.flag("help")) {
    std::printf("%s\n", usage);
    return 0;
  }
  HP_CHECK(a.positional().size() == 1, usage);
  // Offload: options, or a strategy file's offload: section; on a mesh, per rank.
  const memory::OffloadOptions off =
      offload_options(a, strategy_offload_section(a.str("strategy", "")));
  fs::path dir = a.positional()[0];
  io::Json c = io::read_json(dir / "case.json");
  const std::string where = (dir / "case.json").string();
  io::ModelConfig cfg = io::ModelConfig::from_json(io::json_require(c, "model", where), where);
  auto params = nn::adopt_params(
      cfg, io::read_safetensors(dir / io::json_string(c, "weights", "weights.safetensors", where)),
      where);
  auto batch = io::read_safetensors(dir / io::json_string(c, "batch", "batch.safetensors", where));
  HP_CHECK(batch.count("tokens"), "[check] ", where, ": batch has no 'tokens' tensor");
  auto [x, y] = shift(batch.at("tokens"));
  const int64_t steps = a.i64("steps", io::json_int(c, "steps", where));

  train::TrainOptions opt;
  opt.batch = x.dim(0);
  opt.seq = x.dim(1);
  opt.threads = int(a.i64("threads", 1));
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

  std::vector<double> losses;
  io::TensorMap grads0, final_params;
  if (a.has("devices") || a.has("strategy")) {  // on a mesh of devices
    Devices dev = parse_devices(a.str("devices", "threads:1"));
    auto plan =
        plan_for(cfg, a.str("strategy", "dp" + std::to_string(dev.count)), dev, opt.batch, opt.seq);
    opt.threads = int(a.i64("threads", 1));
    auto res = run_distributed(
        *plan, dev, params, opt, std::vector<std::pair<Tensor, Tensor>>(size_t(steps), {x, y}),
        [](int64_t s, const train::StepResult& r) {
          std::printf("{\"step\": %lld, \"loss\": %.6f}\n", (long long)s, r.loss);
          std::fflush(stdout);
        },
        off);
    if (dev.rank != 0) return 0;  // under mpi, rank 0's process reports
    losses = res.losses;
    size_t single = 0, planned = 0, measured = 0;  // parameters + gradients + AdamW moments
    for (const auto& pi : plan->infos) single += 4 * sizeof(float) * size_t(numel(pi.shape));
    for (int r = 0; r < dev.count; ++r) {
      planned = std::max(planned, train::planned_state_bytes(*plan, r));
      measured = std::max(measured, res.state_bytes[size_t(r)]);
    }
    std::printf(
        "{\"memory\": \"state\", \"single_device\": %zu, \"planned_max\": %zu, "
        "\"measured_max\": %zu}\n",
        single, planned, measured);
    if (off.enabled()) {  // each rank's device peak under its offload budget
      for (int r = 0; r < dev.count; ++r)
        std::printf("{\"memory\": \"device\", \"rank\": %d, \"budget\": %zu, \"peak\": %zu}\n", r,
                    res.budgets[size_t(r)], res.peak_bytes[size_t(r)]);
    }
    grads0 = std::move(res.grads0);
    final_params = std::move(res.final_params);
  } else {
    auto tr = make_trainer(cfg, params, opt, off);  // train::Trainer, or the offload trainer
    if (std::string s = tr->summary(); !s.empty()) std::fprintf(stderr, "%s\n", s.c_str());
    for (int64_t s = 0; s < steps; ++s) {
      auto r = tr->step({{x, y}});
      if (s == 0)
        for (auto& [k, g] : tr->grads()) grads0.emplace(k, g.clone());
      losses.push_back(r.loss);
      std::printf("{\"step\": %lld, \"loss\": %.6f}\n", (long long)s, r.loss);
      std::fflush(stdout);
    }
    final_params = tr->params();
  }

  fs::path exp = dir / io::json_string(c, "expected", "expected.safetensors", where);
  if (!fs::exists(exp)) return 0;
  auto e = io::read_safetensors(exp);
  bool ok = true;
  Worst wl, wg, ww;
  if (e.count("loss")) {
    auto ref = e.at("loss").to_f32_vector();
    for (size_t s = 0; s < losses.size() && s < ref.size(); ++s)
      wl.see("step " + std::to_string(s), std::fabs(losses[s] - ref[s]) / std::fabs(ref[s]));
    ok &= report("loss", wl, kLossTol);
  }
  for (auto& [k, g] : grads0)
    if (e.count("grad/" + k)) wg.see(k, rel_err(g, e.at("grad/" + k)));
  if (!wg.name.empty()) ok &= report("grad", wg, kGradTol);
  if (steps == io::json_int(c, "steps", where)) {
    for (auto& [k, p] : final_params)
      if (e.count("final/" + k)) ww.see(k, rel_err(p, e.at("final/" + k)));
    if (!ww.name.empty()) ok &= report("final", ww, kWeightTol);
  }
  return ok ? 0 : 1;
}

}  // namespace hp::cli
