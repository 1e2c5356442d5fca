// `hp plan --explain` for offload plans: a per-tier memory timeline and the list of transfers.
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "hp/memory/options.hpp"
#include "hp/memory/planner.hpp"

namespace hp::memory {

namespace {
std::string bar(size_t v, size_t full, int width) {
  int n = full == 0 ? 0 : int(double(v) / double(full) * width + 0.5);
  n = std::clamp(n, 0, width);
  return std::string(size_t(n), '#') + std::string(size_t(width - n), '.');
}
std::string mib(size_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%9.2f", double(b) / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

std::string explain(const OffloadPlan& plan, const SimResult& sim, int rows) {
  const runtime::Program& p = plan.program;
  const ir::Graph& g = *p.graph;
  std::ostringstream os;
  os << "offload plan: budget " << (plan.budget ? format_bytes(plan.budget) : "unlimited")
     << ", peak without offload " << format_bytes(plan.unconstrained_peak) << ", smallest feasible "
     << format_bytes(plan.min_budget) << ", resident " << format_bytes(plan.resident_bytes)
     << ", kernel workspace " << format_bytes(plan.scratch_bytes) << "\n  planned peak: device "
     << format_bytes(plan.peak_device) << ", host " << format_bytes(plan.peak_host)
     << "\n  transfers: " << plan.transfers.size() << " (" << format_bytes(plan.bytes_to_device)
     << " to device, " << format_bytes(plan.bytes_to_host)
     << " to host), recomputed nodes: " << plan.recomputed << " (" << plan.recompute_flops
     << " flops)\n  simulated: compute " << sim.compute_s * 1e3 << " ms, step " << sim.step_s * 1e3
     << " ms, stall " << sim.stall_s * 1e3 << " ms, link busy " << sim.link_busy_s * 1e3 << " ms\n";

  // Timeline: the maximum over each window of instructions, so peaks are never hidden.
  const size_t n = p.instrs.size();
  const size_t per =
      std::max<size_t>(1, (n + size_t(std::max(rows, 1)) - 1) / size_t(std::max(rows, 1)));
  const size_t full = std::max(plan.budget, plan.peak_device);
  os << "\n  instrs            device MiB                                 host MiB   first node\n";
  for (size_t s = 0; s < n; s += per) {
    size_t dev = 0, host = 0;
    std::string first;
    for (size_t k = s; k < std::min(n, s + per); ++k) {
      dev = std::max(dev, plan.device_bytes[k]);
      host = std::max(host, plan.host_bytes[k]);
      if (first.empty() && p.instrs[k].kind == runtime::InstrKind::kCompute) {
        const ir::Node& node = g.node(p.instrs[k].node);
        first = node.def->name + (node.scope.empty() ? "" : " " + node.scope);
      }
    }
    char range[32];
    std::snprintf(range, sizeof range, "%6zu-%-6zu", s, std::min(n, s + per) - 1);
    os << "  " << range << mib(dev) << " |" << bar(dev, full, 30) << "| " << mib(host) << "   "
       << first << "\n";
  }

  os << "\n  transfers (issue -> wait, instruction indexes):\n";
  for (const PlannedTransfer& t : plan.transfers) {
    char line[96];
    std::snprintf(line, sizeof line, "  %-9s %10.3f MiB  %6d -> %-6s ",
                  t.to_device ? "prefetch" : "writeback", double(t.bytes) / (1024.0 * 1024.0),
                  t.issue, t.wait >= 0 ? std::to_string(t.wait).c_str() : "end");
    os << line << plan.value_name(t.value) << "\n";
  }
  return os.str();
}

}  // namespace hp::memory
