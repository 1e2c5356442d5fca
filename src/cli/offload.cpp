// The offload options of the hp subcommands and the two LoopTrainer adapters.
#include "cli/offload.hpp"

#include <filesystem>

#include "cli/common.hpp"
#include "hp/memory/trainer.hpp"

namespace hp::cli {

const std::set<std::string>& offload_option_names() {
  static const std::set<std::string> names = {"device-memory", "host-memory", "optimizer-state",
                                              "offload-dir"};
  return names;
}

std::set<std::string> with_offload_options(std::set<std::string> valued) {
  valued.insert(offload_option_names().begin(), offload_option_names().end());
  return valued;
}

memory::OffloadOptions offload_options(const Args& a, const std::optional<io::YamlNode>& section) {
  memory::OffloadOptions o = section ? memory::parse_offload(*section) : memory::OffloadOptions{};
  const std::pair<const char*, const char*> keys[] = {{"device-memory", "device_budget"},
                                                      {"host-memory", "host_budget"},
                                                      {"optimizer-state", "optimizer_state"},
                                                      {"offload-dir", "offload_dir"}};
  for (auto [flag, key] : keys) {
    if (!a.has(flag)) continue;
    try {
      memory::set_option(o, key, a.str(flag));
    } catch (const Error& e) {
      throw Error(std::string("--") + flag + ": " + e.what());
    }
  }
  // Under a device budget the optimizer state, unless placed explicitly, leaves the device: it is
  // the largest thing that can move and the host-side update needs no transfers of its own.
  const bool state_given = a.has("optimizer-state") || (section && section->has("optimizer_state"));
  if (!o.device_budget.unlimited() && !state_given) o.optimizer_state = Tier::kHost;
  return o;
}

std::optional<io::YamlNode> strategy_offload_section(const std::string& spec) {
  if (spec.empty() || !std::filesystem::is_regular_file(spec)) return std::nullopt;
  return io::YamlNode::load_file(spec).get("offload");
}

namespace {

class PlainTrainer final : public LoopTrainer {
 public:
  PlainTrainer(const io::ModelConfig& cfg, const io::TensorMap& params,
               const train::TrainOptions& opt)
      : tr_(cfg, params, opt) {}
  train::StepResult step(const std::vector<std::pair<Tensor, Tensor>>& micro) override {
    return tr_.step(micro);
  }
  double eval(const Tensor& tokens, const Tensor& targets) override {
    return tr_.eval(tokens, targets);
  }
  io::TensorMap params() const override { return tr_.params(); }
  io::TensorMap grads() const override { return tr_.grads(); }
  io::TensorMap optimizer_state() const override {
    return const_cast<train::Trainer&>(tr_).optimizer().state();
  }
  void load_optimizer_state(const io::TensorMap& s, int64_t steps) override {
    tr_.optimizer().load_state(s, steps);
  }
  size_t peak_device_bytes() override { return tr_.device().peak_bytes(); }
  double flops_per_micro_batch() const override { return tr_.flops_per_micro_batch(); }
  std::string summary() const override { return ""; }

 private:
  train::Trainer tr_;
};

class OffloadedTrainer final : public LoopTrainer {
 public:
  OffloadedTrainer(const io::ModelConfig& cfg, const io::TensorMap& params,
                   memory::OffloadTrainConfig c)
      : tier_(c.offload.optimizer_state), tr_(cfg, params, std::move(c)) {}
  train::StepResult step(const std::vector<std::pair<Tensor, Tensor>>& micro) override {
    memory::OffloadStep s = tr_.step(micro);
    return {s.loss, s.grad_norm, s.lr};
  }
  double eval(const Tensor& tokens, const Tensor& targets) override {
    return tr_.eval(tokens, targets);
  }
  io::TensorMap params() const override { return tr_.params(); }
  io::TensorMap grads() const override { return tr_.grads(); }
  io::TensorMap optimizer_state() const override { return tr_.optimizer_state(); }
  void load_optimizer_state(const io::TensorMap& s, int64_t steps) override {
    tr_.load_optimizer_state(s, steps);
  }
  size_t peak_device_bytes() override { return tr_.device().peak_bytes(); }
  double flops_per_micro_batch() const override { return tr_.flops_per_step(); }
  std::string summary() const override {
    const memory::StepPlan& sp = tr_.step_plan();
    std::string s = "offload: device budget " +
                    (sp.budget ? memory::format_bytes(sp.budget) : std::string("unlimited")) +
                    " (unconstrained peak " + memory::format_bytes(sp.peak) +
                    "), optimizer state on " + tier_name(tier_);
    if (const memory::OffloadPlan* p = tr_.plan()) {
      const memory::SimResult sim = memory::simulate(*p, sp.request.cost);
      s += ", " + std::to_string(p->transfers.size()) + " transfers (" +
           human_bytes(double(p->bytes_to_device + p->bytes_to_host)) + ") and " +
           std::to_string(p->recomputed) + " recomputations per micro-batch, planned peak " +
           memory::format_bytes(p->peak_device) + ", predicted stall " +
           std::to_string(int64_t(sim.stall_s * 1e3 + 0.5)) + " ms";
    }
    return s;
  }

 private:
  Tier tier_;
  memory::OffloadTrainer tr_;
};

}  // namespace

std::unique_ptr<LoopTrainer> make_trainer(const io::ModelConfig& cfg, const io::TensorMap& params,
                                          const train::TrainOptions& opt,
                                          const memory::OffloadOptions& off) {
  if (!off.enabled()) return std::make_unique<PlainTrainer>(cfg, params, opt);
  memory::OffloadTrainConfig c;
  c.batch = opt.batch;
  c.seq = opt.seq;
  c.threads = opt.threads;
  c.adam = opt.adam;
  c.schedule = opt.schedule;
  c.clip = opt.clip;
  c.offload = off;
  return std::make_unique<OffloadedTrainer>(cfg, params, std::move(c));
}

}  // namespace hp::cli
