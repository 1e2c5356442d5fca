// The offload options of the hp subcommands and the summary of what a trainer offloads.
#include "cli/offload.hpp"

#include "cli/common.hpp"

namespace hp::cli {

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

std::string offload_summary(const train::Trainer& tr) {
  const memory::OffloadOptions& o = tr.options().offload;
  if (!o.enabled()) return "";
  const size_t budget = tr.device_budget();
  std::string s = "offload: device budget " +
                  (budget ? memory::format_bytes(budget) : std::string("unlimited")) +
                  " (unconstrained peak " + memory::format_bytes(tr.unconstrained_peak()) +
                  "), optimizer state on " + tier_name(o.optimizer_state);
  if (const memory::OffloadPlan* p = tr.offload_plan()) {
    const memory::SimResult sim = memory::simulate(*p, tr.rank_program().request.cost);
    s += ", " + std::to_string(p->transfers.size()) + " transfers (" +
         human_bytes(double(p->bytes_to_device + p->bytes_to_host)) + ") and " +
         std::to_string(p->recomputed) + " recomputations per micro-batch, planned peak " +
         memory::format_bytes(p->peak_device) + ", predicted stall " +
         std::to_string(int64_t(sim.stall_s * 1e3 + 0.5)) + " ms";
  }
  return s;
}

}  // namespace hp::cli
