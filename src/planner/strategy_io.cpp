// Strategies in and out of the planner: preset expressions that fix a layout, the YAML a plan is
// written as (--emit) and read back (--strategy FILE).
#include <cctype>
#include <cstdio>
#include <sstream>

#include "hp/core/error.hpp"
#include "hp/mpmd/pipeline.hpp"
#include "hp/planner/search.hpp"

namespace hp::planner {

namespace {

int64_t& degree(Space& s, char axis) {
  return axis == 'd' ? s.dp : axis == 'p' ? s.pp : s.tp;
}

}  // namespace

void fix_layout(Space& s, const std::string& expr, int64_t devices) {
  s.dp = s.tp = s.pp = 0;
  s.order.clear();
  char missing = 0;
  std::stringstream ss(expr);
  std::string term;
  while (std::getline(ss, term, 'x')) {
    std::string t = term;
    const bool sp = t.size() > 3 && t.compare(t.size() - 3, 3, "+sp") == 0;
    if (sp) t.resize(t.size() - 3);
    size_t digits = t.size();
    while (digits > 0 && std::isdigit(static_cast<unsigned char>(t[digits - 1]))) --digits;
    const std::string name = t.substr(0, digits);
    const char axis = name == "dp" || name == "fsdp" ? 'd'
                      : name == "pp"                 ? 'p'
                      : name == "tp"                 ? 't'
                                                     : 0;
    HP_CHECK(axis, "[planner] strategy '", expr, "': unknown term '", term,
             "' (dpN, fsdpN, ppN, tpN, tpN+sp, outermost first)");
    HP_CHECK(s.order.find(axis) == std::string::npos, "[planner] strategy '", expr, "': axis of '",
             term, "' appears twice");
    HP_CHECK(!sp || axis == 't', "[planner] strategy '", expr, "': +sp goes with tp, not '", term,
             "'");
    s.order += axis;
    if (name == "fsdp") s.zero = Zero::kFull;
    if (axis == 't') s.sp = sp;  // tp8 and tp8+sp are different presets
    if (digits == t.size()) {
      HP_CHECK(!missing, "[planner] strategy '", expr, "': at most one size may be left out");
      missing = axis;
      continue;
    }
    degree(s, axis) = std::stoll(t.substr(digits));
    HP_CHECK(degree(s, axis) >= 1, "[planner] strategy '", expr, "': size 0 in '", term, "'");
  }
  for (char a : std::string("dpt"))
    if (s.order.find(a) == std::string::npos) s.order += a, degree(s, a) = 1;
  if (s.tp == 1) s.sp = false;
  int64_t known = 1;
  for (char a : std::string("dpt"))
    if (a != missing) known *= degree(s, a);
  if (missing) {
    HP_CHECK(devices % known == 0, "[planner] strategy '", expr, "': ", known,
             " does not divide the ", devices, " devices");
    degree(s, missing) = devices / known;
  }
  HP_CHECK(s.dp * s.tp * s.pp == devices, "[planner] strategy '", expr, "' spans ",
           s.dp * s.tp * s.pp, " devices, the cluster has ", devices);
}

void fix_from_yaml(Space& s, const std::string& text, const std::string& file, const Workload& w,
                   int64_t devices) {
  const io::YamlNode root = io::YamlNode::parse(text, file);
  HP_CHECK(root.is_map(), "[planner] ", root.where(), ": expected a strategy map with 'mesh'");
  root.check_keys({"mesh", "presets", "mode", "pipeline", "micro_batch", "recompute",
                   "recompute_blocks", "zero", "offload"});
  std::string expr;
  for (const auto& [name, size] : root["mesh"].entries()) {
    HP_CHECK(name == "dp" || name == "fsdp" || name == "pp" || name == "tp", "[planner] ",
             size.where(), ": unknown mesh axis '", name, "' (dp, fsdp, pp, tp)");
    expr += (expr.empty() ? "" : "x") + name + std::to_string(size.as_int());
  }
  fix_layout(s, expr, devices);
  s.sp = false;
  if (auto presets = root.get("presets"))
    for (const auto& p : presets->is_sequence() ? presets->items() : std::vector{*presets})
      if (p.as_string() == "sp") s.sp = true;
  if (auto z = root.get("zero")) {
    const std::string v = z->as_string();
    HP_CHECK(v == "none" || v == "optimizer" || v == "full", "[planner] ", z->where(),
             ": zero must be none, optimizer or full, got '", v, "'");
    s.zero = v == "none" ? Zero::kNone : v == "optimizer" ? Zero::kOptimizer : Zero::kFull;
  }
  if (auto r = root.get("recompute")) {
    try {
      s.recomputes = {parse_recompute(r->as_string())};
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " at " + r->where());
    }
  }
  if (auto k = root.get("recompute_blocks")) {
    s.recompute_blocks = k->as_int();
    HP_CHECK(s.recompute_blocks >= 1 && s.recomputes == std::vector{Recompute::kFull}, "[planner] ",
             k->where(), ": recompute_blocks must be >= 1, with recompute: full");
  }
  s.offloads = {false};
  s.activation_offloads = {false};
  if (auto off = root.get("offload")) {
    off->check_keys({"optimizer_state", "offload"});
    s.offloads = {off->get_string("optimizer_state", "device") != "device"};
    std::stringstream items(off->get_string("offload", "none"));
    for (std::string item; std::getline(items, item, ',');) {
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      HP_CHECK(item == "activations" || item == "none", "[planner] ", (*off)["offload"].where(),
               ": the planner offloads optimizer state and activations, not '", item, "'");
      if (item == "activations") s.activation_offloads = {true};
    }
  }
  int64_t m = 0;
  if (root.has("pipeline")) {  // checked as mpmd reads it; stages balanced over the blocks
    HP_CHECK(s.pp > 1, "[planner] ", root["pipeline"].where(),
             ": a pipeline section needs a pp axis of 2 or more in the mesh");
    const mpmd::PipelineSpec spec = mpmd::parse_pipeline_text(text, devices, w.model.n_layer, file);
    s.schedules = {parse_schedule(mpmd::schedule_name(spec.schedule))};
    s.virtual_stages = spec.virtual_chunks;
    m = spec.microbatches;
  }
  if (auto mb = root.get("micro_batch")) s.micro_batches = {mb->as_int()};
  if (m > 0) {
    const int64_t b = w.global_batch / (s.dp * m);
    HP_CHECK(b * s.dp * m == w.global_batch, "[planner] ", file, ": ", m, " micro-batches on dp",
             s.dp, " do not divide the global batch ", w.global_batch);
    HP_CHECK(s.micro_batches.empty() || s.micro_batches[0] == b, "[planner] ", file,
             ": micro_batch ", s.micro_batches.empty() ? 0 : s.micro_batches[0], " with ", m,
             " micro-batches on dp", s.dp, " is not the global batch ", w.global_batch);
    s.micro_batches = {b};
  }
}

std::string strategy_yaml(const Plan& p, const Workload& w, const Cluster& cl) {
  const Config& c = p.config;
  const Estimate& e = p.estimate;
  std::ostringstream y;
  char line[256];
  std::snprintf(line, sizeof line,
                "# hp plan: %s, %lld layers, d %lld, on %s (%lld devices), global batch %lld x "
                "%lld tokens\n# predicted step %.4g s, %.3g TFLOP/s per device, MFU %.1f%%, "
                "peak memory %.3g GiB of %.3g GiB\n",
                io::architecture_name(w.model.arch), (long long)w.model.n_layer,
                (long long)w.model.d_model, cl.name.c_str(), (long long)cl.devices,
                (long long)w.global_batch, (long long)w.seq, e.step_s, e.tflops_per_device,
                100 * e.mfu, e.memory.total() / (1 << 30), cl.memory_bytes / (1 << 30));
  y << line << "mesh: {";
  std::string presets;
  bool first = true;
  for (char a : c.order) {
    const int64_t n = a == 'd' ? c.dp : a == 'p' ? c.pp : c.tp;
    if (n == 1 && !(a == 'd' && c.devices() == 1)) continue;
    const std::string name = a == 'd'   ? (c.zero == Zero::kFull ? "fsdp" : "dp")
                             : a == 'p' ? "pp"
                                        : "tp";
    y << (first ? "" : ", ") << name << ": " << n;
    first = false;
    if (a != 'p') presets += (presets.empty() ? "" : ", ") + name;
  }
  if (c.sp) presets += ", sp";
  y << "}\n";
  if (!presets.empty()) y << "presets: [" << presets << "]\n";
  y << "mode: warn\n";
  if (c.pp > 1) {
    y << "pipeline: {schedule: " << schedule_name(c.schedule)
      << ", microbatches: " << e.microbatches;
    if (c.schedule == Schedule::kInterleaved) y << ", virtual: " << c.virtual_stages;
    y << "}\n";
  }
  y << "micro_batch: " << c.micro_batch << "\nrecompute: " << recompute_name(c.recompute) << "\n";
  if (c.recompute == Recompute::kFull)
    y << "recompute_blocks: " << full_blocks(c, stage_blocks(w.model, c.pp)) << "\n";
  y << "zero: " << zero_name(c.zero) << "\n";
  if (c.offload || c.offload_activations) {
    y << "offload: {";
    if (c.offload) y << "optimizer_state: host" << (c.offload_activations ? ", " : "");
    if (c.offload_activations) y << "offload: activations";
    y << "}\n";
  }
  return y.str();
}

}  // namespace hp::planner
