// `hp plan`: propagates a strategy over a model's training step without running it and prints
// the mesh, the collectives inserted (with bytes), per-device memory (parameters + gradients +
// optimizer state, and the activations' planned peak) and, with --explain, every value's layout.
// Not a search: the strategy is given (a file or a preset); see docs/strategy.md.
#include <cstdio>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "hp/runtime/program.hpp"

namespace hp::cli {

int cmd_plan(const std::vector<std::string>& argv) {
  Args a(argv, {"model", "batch", "seq", "devices", "strategy"}, {"explain", "help"});
  if (a.flag("help") || !a.has("strategy")) {
    std::fputs(
        "usage: hp plan --model NAME|CONFIG --batch B --seq T --devices threads:N "
        "--strategy FILE|PRESET [--explain]\n",
        a.flag("help") ? stdout : stderr);
    return a.flag("help") ? 0 : 2;
  }
  io::ModelConfig cfg = resolve_model(a.str("model", "gpt2-tiny"));
  Devices dev = parse_devices(a.str("devices", "threads:1"));
  const int64_t batch = a.i64("batch", 8), seq = a.i64("seq", std::min<int64_t>(128, cfg.max_seq));
  auto plan = plan_for(cfg, a.str("strategy"), dev, batch, seq);
  const auto& p = plan->prop;
  const ir::Graph& g = *plan->traced.graph;
  std::printf("model %s, batch %lld x %lld, mesh %s, mode %s\n", io::architecture_name(cfg.arch),
              (long long)batch, (long long)seq, p.mesh.str().c_str(),
              shard::mode_name(plan->strategy.mode).c_str());
  if (a.flag("explain")) std::fputs(p.str(g).c_str(), stdout);
  std::printf("collectives per step:\n");
  int64_t total = 0;
  for (const auto& r : p.redistributions) {
    bool comm = false;
    for (const auto& st : r.plan.steps)
      comm =
          comm || (st.kind != shard::StepKind::kSlice && st.kind != shard::StepKind::kMakePartial);
    if (!comm) continue;
    const auto& v = g.value(r.value);
    std::string steps, name = v.name;
    for (const auto& st : r.plan.steps) {
      if (!steps.empty()) steps.append(" + ");
      steps.append(shard::step_kind_name(st.kind));
      if (!st.axis.empty()) steps.append("(").append(st.axis).append(")");
    }
    if (name.empty()) name.append("%").append(std::to_string(r.value));
    std::printf("  %-14s %s %s %s -> %s  %s  at %s%s\n", steps.c_str(), name.c_str(),
                ir::type_str(v.type).c_str(), r.plan.from.str().c_str(), r.plan.to.str().c_str(),
                human_bytes(double(r.plan.bytes)).c_str(), r.where.c_str(),
                r.implicit ? " (implicit)" : "");
    total += r.plan.bytes;
  }
  std::printf("  total %s received by the busiest device per step\n",
              human_bytes(double(total)).c_str());
  size_t single = 0;
  for (const auto& pi : plan->infos) single += 4 * sizeof(float) * size_t(numel(pi.shape));
  std::printf("memory per device (parameters + gradients + AdamW state | activations peak):\n");
  std::printf("  one device: %s\n", human_bytes(double(single)).c_str());
  for (int r = 0; r < dev.count; ++r) {
    shard::Lowered L = shard::lower(g, p, r);
    runtime::Program prog = runtime::compile(*L.graph, L.outputs);
    const size_t st = train::planned_state_bytes(*plan, r);
    std::printf("  rank %d: %s (%.1f%%) | %s, %d collectives\n", r, human_bytes(double(st)).c_str(),
                100.0 * double(st) / double(single), human_bytes(double(prog.arena_bytes)).c_str(),
                L.collectives);
  }
  return 0;
}

}  // namespace hp::cli
