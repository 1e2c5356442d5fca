// Offload on the command line: the options --device-memory, --host-memory, --optimizer-state and
// --offload-dir over a YAML `offload:` section, and the one trainer interface the loops of
// hp train and hp check drive: train::Trainer, or memory::OffloadTrainer when offload is asked for.
// Not the offload logic (hp::memory) and not a loop: parsing, choosing and adapting only.
#pragma once
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "cli/args.hpp"
#include "hp/io/yaml.hpp"
#include "hp/memory/options.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

// The valued options above, for a subcommand's Args.
const std::set<std::string>& offload_option_names();
// Adds them to a subcommand's set of valued options.
std::set<std::string> with_offload_options(std::set<std::string> valued);
// `section` (an `offload:` map, or none) overridden by the command-line options.
memory::OffloadOptions offload_options(const Args& a, const std::optional<io::YamlNode>& section);
// The `offload:` section of a strategy file; none when `spec` is a preset or has no section.
std::optional<io::YamlNode> strategy_offload_section(const std::string& spec);

// What the training loops need from a trainer, whichever runs the step.
class LoopTrainer {
 public:
  virtual ~LoopTrainer() = default;
  virtual train::StepResult step(const std::vector<std::pair<Tensor, Tensor>>& micro) = 0;
  virtual double eval(const Tensor& tokens, const Tensor& targets) = 0;
  virtual io::TensorMap params() const = 0;
  virtual io::TensorMap grads() const = 0;  // of the last micro-batch
  virtual io::TensorMap optimizer_state() const = 0;
  virtual void load_optimizer_state(const io::TensorMap& state, int64_t steps_done) = 0;
  virtual size_t peak_device_bytes() = 0;
  virtual double flops_per_micro_batch() const = 0;
  // One line about offload ("" when nothing is offloaded).
  virtual std::string summary() const = 0;
};

// train::Trainer when `off` asks for nothing, else memory::OffloadTrainer (which throws
// hp::OutOfMemory naming the smallest feasible budget when the budget is too small).
std::unique_ptr<LoopTrainer> make_trainer(const io::ModelConfig& cfg, const io::TensorMap& params,
                                          const train::TrainOptions& opt,
                                          const memory::OffloadOptions& off);

}  // namespace hp::cli
