// `hp plan --cluster`: the strategy planner's front end. Reads the fixed parts of the search from
// the options, runs hp::planner::search, prints the best plans (readable, or one JSON record
// each) and writes the best one's strategy YAML (--emit).
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "hp/core/error.hpp"
#include "hp/io/json.hpp"
#include "hp/nn/model.hpp"
#include "hp/planner/search.hpp"

namespace hp::cli {

namespace {

// --recompute-blocks: a positive count, or all.
int64_t recompute_blocks(const std::string& v) {
  if (v == "all") return planner::kAllBlocks;
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  HP_CHECK(ec == std::errc() && end == v.data() + v.size() && n >= 1,
           "--recompute-blocks must be a positive integer or all, got '", v, "'");
  return n;
}

planner::Space read_space(const Args& a, const planner::Workload& w, int64_t devices) {
  planner::Space s;
  if (a.has("strategy")) {
    const std::string st = a.str("strategy");
    check_strategy_path(st);
    if (std::filesystem::is_regular_file(st)) {
      std::ifstream in(st);
      std::stringstream text;
      text << in.rdbuf();
      planner::fix_from_yaml(s, text.str(), st, w, devices);
    } else {
      planner::fix_layout(s, st, devices);
    }
  }
  if (a.has("micro-batch")) s.micro_batches = {a.i64("micro-batch")};
  if (a.has("schedule")) {
    s.schedules.clear();
    for (const std::string& one : a.list("schedule")) try {
        s.schedules.push_back(planner::parse_schedule(one));
      } catch (const Error& e) {
        throw Error(std::string("--schedule: ") + e.what());
      }
  }
  // --recompute fixes the kind, as a strategy file's recompute: does; with full, how many of a
  // stage's blocks are recomputed is searched unless --recompute-blocks fixes it.
  if (a.has("recompute")) s.recomputes = {planner::parse_recompute(a.str("recompute"))};
  if (a.has("recompute-blocks")) {
    HP_CHECK(s.recomputes == std::vector{planner::Recompute::kFull},
             "--recompute-blocks counts blocks recomputed whole: it needs --recompute full");
    s.recompute_blocks = recompute_blocks(a.str("recompute-blocks"));
  }
  if (a.has("offload")) {  // on: optimizer state on the host, activations searched
    const std::string v = a.str("offload");  // one of the option's choices
    s.offloads = {v == "on" || v == "optimizer" || v == "all"};
    if (v != "on") s.activation_offloads = {v == "activations" || v == "all"};
  }
  return s;
}

// What hp train runs, where the options left the choice open: pipelines with pp outermost and
// the mesh's other axes inside every stage, no accumulation within a step without pp (--grad-accum
// does that), full sharding but not ZeRO-1, no optimizer offload (the offload: options do that).
// Recomputation: the CPU backend's fused attention recomputes its core in the backward
// (selective); nothing else is recomputed, pipeline stages keep their forward's values too.
void runtime_space(planner::Space& s) {
  s.pipeline_outermost = true;
  s.one_microbatch = true;
  s.zeros = {planner::Zero::kNone, planner::Zero::kFull};
  if (s.recomputes.empty()) s.recomputes = {planner::Recompute::kSelective};
  if (s.recompute_blocks == 0) s.recompute_blocks = planner::kAllBlocks;  // all blocks or none
  if (s.offloads.empty()) s.offloads = {false};
  s.activation_offloads = {false};  // the trainer's offload is budget-driven (--device-memory)
}

io::Json plan_json(const planner::Plan& p, const planner::Workload& w,
                   const planner::SearchResult& r, int rank) {
  const planner::Config& c = p.config;
  const planner::Estimate& e = p.estimate;
  io::Json j;
  j["rank"] = rank;
  j["strategy"] = c.strategy();
  j["dp"] = c.dp, j["tp"] = c.tp, j["pp"] = c.pp, j["sp"] = c.sp;
  j["zero"] = planner::zero_name(c.zero);
  j["micro_batch"] = c.micro_batch;
  j["microbatches"] = e.microbatches;
  j["schedule"] = planner::schedule_name(c.schedule);
  j["virtual_stages"] = c.virtual_stages;
  j["recompute"] = planner::recompute_name(c.recompute);
  j["recompute_blocks"] = planner::full_blocks(c, planner::stage_blocks(w.model, c.pp));
  j["offload"] = c.offload || c.offload_activations ? "on" : "off";
  j["offload_optimizer"] = c.offload;
  j["offload_activations"] = c.offload_activations;
  j["step_s"] = e.step_s;
  j["tflops_per_device"] = e.tflops_per_device;
  j["mfu"] = e.mfu;
  j["peak_memory_bytes"] = e.memory.total();
  j["breakdown_s"] = {{"compute", e.compute_s},
                      {"recompute", e.recompute_s},
                      {"tp", e.tp_s},
                      {"pp", e.pp_s},
                      {"dp", e.dp_s},
                      {"bubble", e.bubble_s},
                      {"offload", e.offload_s},
                      {"activation_offload", e.act_offload_s},
                      {"optimizer", e.optimizer_s}};
  j["memory_bytes"] = {{"params", e.memory.params},
                       {"grads", e.memory.grads},
                       {"optimizer", e.memory.optimizer},
                       {"activations", e.memory.activations},
                       {"buffers", e.memory.buffers}};
  j["configs_covered"] = r.covered;
  j["configs_evaluated"] = r.evaluated;
  j["search_s"] = r.search_s;
  return j;
}

void print_plan(const planner::Plan& p, const planner::Cluster& cl, const planner::Efficiency& eff,
                int rank) {
  const planner::Config& c = p.config;
  const planner::Estimate& e = p.estimate;
  std::printf("#%d %s: micro-batch %lld (%lld per step per pipeline), schedule %s", rank,
              c.strategy().c_str(), (long long)c.micro_batch, (long long)e.microbatches,
              planner::schedule_name(c.schedule));
  if (c.virtual_stages > 1) std::printf(" v%lld", (long long)c.virtual_stages);
  std::printf(", recompute %s", planner::recompute_name(c.recompute));
  if (c.recompute == planner::Recompute::kFull)
    std::printf(" (%lld block%s per stage)", (long long)c.recompute_blocks,
                c.recompute_blocks == 1 ? "" : "s");
  const char* off = c.offload && c.offload_activations ? "optimizer state and activations"
                    : c.offload                        ? "optimizer state"
                    : c.offload_activations            ? "activations"
                                                       : "off";
  std::printf(", optimizer sharding %s, offload %s, mesh order %s\n", planner::zero_name(c.zero),
              off, c.order.c_str());
  std::printf(
      "  step %.4g s: %.3g TFLOP/s per device (hardware, recomputation counted), MFU %.1f%%\n",
      e.step_s, e.tflops_per_device, 100 * e.mfu);
  const std::pair<const char*, double> parts[] = {
      {"compute (forward + backward)", e.compute_s},    {"recomputation", e.recompute_s},
      {"tp communication (exposed)", e.tp_s},           {"pp point-to-point (exposed)", e.pp_s},
      {"dp communication (exposed)", e.dp_s},           {"pipeline bubble", e.bubble_s},
      {"offload traffic (host link)", e.offload_s},     {"optimizer step", e.optimizer_s},
      {"activation offload (exposed)", e.act_offload_s}};
  for (const auto& [what, s] : parts)
    if (s > 0) std::printf("    %-30s %10.3f s  %5.1f%%\n", what, s, 100 * s / e.step_s);
  const planner::Memory& m = e.memory;
  const double usable = eff.usable_memory * cl.memory_bytes;
  std::printf(
      "  memory per device %s of %s usable (%s): parameters %s, gradients %s, optimizer "
      "%s, activations %s, buffers %s; headroom %s\n",
      human_bytes(m.total()).c_str(), human_bytes(usable).c_str(),
      human_bytes(cl.memory_bytes).c_str(), human_bytes(m.params).c_str(),
      human_bytes(m.grads).c_str(), human_bytes(m.optimizer).c_str(),
      human_bytes(m.activations).c_str(), human_bytes(m.buffers).c_str(),
      human_bytes(usable - m.total()).c_str());
  if (e.host_bytes > 0)
    std::printf("  on the host per device %s of %s\n", human_bytes(e.host_bytes).c_str(),
                human_bytes(cl.host_memory_bytes).c_str());
}

}  // namespace

AutoStrategy auto_strategy(const io::ModelConfig& cfg, int64_t batch, int64_t seq, int devices,
                           const std::string& cluster) {
  const size_t colon = cluster.rfind(':');
  const bool counted = colon != std::string::npos && colon + 1 < cluster.size() &&
                       cluster.find_first_not_of("0123456789", colon + 1) == std::string::npos;
  const planner::Cluster cl =
      planner::resolve_cluster(counted ? cluster : cluster + ":" + std::to_string(devices));
  HP_CHECK(cl.devices == devices, "--strategy auto: --cluster ", cluster, " has ", cl.devices,
           " devices but --devices gives ", devices);
  planner::Workload w{cfg, batch, seq};
  planner::Space space;
  runtime_space(space);
  planner::SearchOptions opt;
  if (cl.efficiency) opt.efficiency = *cl.efficiency;
  const planner::SearchResult r = planner::search(w, cl, space, opt);
  HP_CHECK(!r.plans.empty(), "--strategy auto: no configuration the runtime runs fits on ", cl.name,
           " (", cl.devices, " devices) for batch ", batch, " x ", seq, ": ", r.covered,
           " covered, ", r.evaluated, " evaluated");
  AutoStrategy out;
  out.yaml = planner::strategy_yaml(r.plans[0], w, cl);
  char line[256];
  std::snprintf(line, sizeof line,
                "strategy auto: %s, predicted %.1f ms per step on %s:%lld (%lld configurations "
                "searched)",
                r.plans[0].config.strategy().c_str(), r.plans[0].estimate.step_s * 1e3,
                cl.name.c_str(), (long long)cl.devices, (long long)r.covered);
  out.summary = line;
  return out;
}

int plan_search(const Args& a) {
  HP_CHECK(!a.has("devices"),
           "--devices does not apply with --cluster: the cluster names the devices");
  planner::Workload w;
  w.model = resolve_model(a.str("model"));
  w.global_batch = a.i64("global-batch");
  w.seq = a.has("seq") ? a.i64("seq") : w.model.max_seq - w.model.vision.tokens();
  nn::check_tokens(w.model, w.global_batch, w.seq);  // what hp train would refuse
  const planner::Cluster cl = planner::resolve_cluster(a.str("cluster"));
  planner::Space space = read_space(a, w, cl.devices);
  if (cl.name == "local") runtime_space(space);  // this machine: what hp train runs here
  planner::SearchOptions opt;
  opt.top = a.i64("top");
  if (cl.efficiency) opt.efficiency = *cl.efficiency;  // measured (hp calibrate)
  const planner::SearchResult r = planner::search(w, cl, space, opt);
  HP_CHECK(r.covered > 0, "[planner] no configuration of ", a.str("model"), " on ", cl.name, " (",
           cl.devices, " devices) has what the options fix (degrees that divide the devices, ",
           "heads and batch; schedules that fit the pipeline)");
  HP_CHECK(!r.plans.empty(), "[planner] no configuration of ", a.str("model"), " fits on ", cl.name,
           " (", cl.devices, " devices): ", r.covered, " covered, ", r.evaluated,
           " evaluated, none within ", human_bytes(opt.efficiency.usable_memory * cl.memory_bytes),
           " per device");
  if (a.has("emit")) {
    std::ofstream out(a.str("emit"));
    out << planner::strategy_yaml(r.plans[0], w, cl);
    HP_CHECK(out.good(), "[planner] cannot write ", a.str("emit"));
  }
  if (a.flag("json")) {
    for (size_t i = 0; i < r.plans.size(); ++i)
      std::printf("%s\n", plan_json(r.plans[i], w, r, int(i + 1)).dump().c_str());
    return 0;
  }
  std::printf("model %s: %s, %lld blocks, d %lld, %.3g parameters; global batch %lld x %lld\n",
              a.str("model").c_str(), w.model.model_type(), (long long)w.model.n_layer,
              (long long)w.model.d_model, double(w.model.parameter_count()),
              (long long)w.global_batch, (long long)w.seq);
  std::printf("cluster %s\n", cl.str().c_str());
  std::printf("searched %lld configurations (%lld evaluated, %lld of them fit) in %.2f s\n",
              (long long)r.covered, (long long)r.evaluated, (long long)r.fitting, r.search_s);
  for (size_t i = 0; i < r.plans.size(); ++i)
    print_plan(r.plans[i], cl, opt.efficiency, int(i + 1));
  if (a.has("emit")) std::printf("strategy written to %s\n", a.str("emit").c_str());
  return 0;
}

}  // namespace hp::cli
