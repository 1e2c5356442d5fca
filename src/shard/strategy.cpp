// Strategy files: YAML parsing with located errors, glob matching of tensor names, and validation
// against a model's tensors.
// Not the presets' content (presets.cpp) and not propagation.
#include "hp/shard/strategy.hpp"

#include <algorithm>

#include "hp/core/error.hpp"
#include "hp/io/file.hpp"
#include "hp/io/yaml.hpp"

namespace hp::shard {

std::string mode_name(StrategyMode m) {
  switch (m) {
    case StrategyMode::kStrict:
      return "strict";
    case StrategyMode::kWarn:
      return "warn";
    case StrategyMode::kAuto:
      return "auto";
  }
  return "?";
}

bool glob_match(const std::string& pattern, const std::string& name) {
  // Greedy scan with one backtrack point: the last '*' seen and where it started matching.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const Rule* Strategy::rule_for(const std::string& name, bool param) const {
  for (const Rule& r : rules) {
    if ((param || !r.params_only) && glob_match(r.pattern, name)) return &r;
  }
  return nullptr;
}

Layout Strategy::layout_for(const std::string& name, size_t rank, bool param) const {
  const Rule* r = rule_for(name, param);
  if (!r) return Layout::replicated(rank);
  HP_CHECK(r->layout.rank() <= rank, "[strategy] ", r->where, ": layout ", r->layout.str(), " has ",
           r->layout.rank(), " entries but '", name, "' has rank ", rank);
  Layout l = r->layout;
  l.dims.resize(rank);
  return l;
}

namespace {

// A YAML layout: a compact string ("[-, tp]+partial(dp)") or a list whose entries are null or "-"
// (replicated), an axis name, or a list of axis names (nested splits, outermost first).
Layout parse_layout(const io::YamlNode& node, const Mesh& mesh) {
  Layout l;
  if (node.is_scalar()) {
    try {
      l = Layout::parse(node.as_string());
    } catch (const Error& e) {
      throw Error("[strategy] " + node.where() + ": " + e.what());
    }
  } else {
    HP_CHECK(node.is_sequence(), "[strategy] ", node.where(),
             ": a layout is a list such as [null, tp] or a string such as \"[-, tp]\"");
    for (const io::YamlNode& d : node.items()) {
      std::vector<std::string> axes;
      if (d.is_null()) {
        // replicated
      } else if (d.is_sequence()) {
        for (const io::YamlNode& a : d.items()) axes.push_back(a.as_string());
      } else if (d.as_string() != "-") {
        axes.push_back(d.as_string());
      }
      for (const auto& a : axes) {
        HP_CHECK(mesh.has_axis(a), "[strategy] ", d.where(), ": unknown axis '", a,
                 "'; the mesh is ", mesh.str());
      }
      l.dims.push_back(std::move(axes));
    }
  }
  for (const auto& d : l.dims) {
    for (const auto& a : d) {
      HP_CHECK(mesh.has_axis(a), "[strategy] ", node.where(), ": unknown axis '", a,
               "'; the mesh is ", mesh.str());
    }
  }
  for (const auto& a : l.partial) {
    HP_CHECK(mesh.has_axis(a), "[strategy] ", node.where(), ": unknown axis '", a,
             "'; the mesh is ", mesh.str());
  }
  try {
    l.check(mesh);
  } catch (const Error& e) {
    throw Error("[strategy] " + node.where() + ": " + e.what());
  }
  l.normalize();
  return l;
}

}  // namespace

Strategy parse_strategy(const std::string& text, int64_t world_size, const std::string& file) {
  HP_CHECK(world_size >= 1, "[strategy] ", file, ": world size ", world_size);
  const io::YamlNode root = io::YamlNode::parse(text, file);
  HP_CHECK(root.is_map(), "[strategy] ", root.where(), ": expected a map with a 'mesh' key");
  // pipeline: is mpmd's section; micro_batch, recompute, recompute_blocks and zero are the
  // planner's keys of a plan written by hp plan --emit (docs/planner.md). HyperShard reads none.
  root.check_keys({"mesh", "rules", "presets", "mode", "offload", "pipeline", "micro_batch",
                   "recompute", "recompute_blocks", "zero"});
  Strategy s;
  s.file = file;

  const io::YamlNode mesh = root["mesh"];
  std::vector<std::string> names;
  std::vector<int64_t> sizes;
  for (const auto& [name, size] : mesh.entries()) {
    names.push_back(name);
    sizes.push_back(size.as_int());
    HP_CHECK(sizes.back() >= 1, "[strategy] ", size.where(), ": axis '", name, "' has size ",
             sizes.back());
  }
  int64_t devices = 1;
  bool overflow = false;  // axis sizes such as 2^32 x 2^32
  for (int64_t n : sizes) overflow = overflow || __builtin_mul_overflow(devices, n, &devices);
  HP_CHECK(!overflow && devices <= world_size, "[strategy] ", mesh.where(), ": the mesh needs ",
           overflow ? "more than " + std::to_string(INT64_MAX) : std::to_string(devices),
           " devices but the world has ", world_size);
  s.mesh = Mesh(names, sizes);

  if (auto rules = root.get("rules")) {
    for (const io::YamlNode& r : rules->items()) {
      r.check_keys({"match", "layout"});
      Rule rule;
      const io::YamlNode match = r["match"];
      rule.pattern = match.as_string();
      HP_CHECK(!rule.pattern.empty(), "[strategy] ", match.where(), ": empty pattern");
      rule.where = match.where();
      rule.layout = parse_layout(r["layout"], s.mesh);
      s.rules.push_back(std::move(rule));
    }
  }
  if (auto presets = root.get("presets")) {
    std::vector<io::YamlNode> items;
    if (presets->is_sequence()) {
      items = presets->items();
    } else {
      items = {*presets};
    }
    for (const io::YamlNode& p : items) {
      const std::string name = p.as_string();
      HP_CHECK(name == "dp" || name == "fsdp" || name == "hsdp" || name == "tp" || name == "sp",
               "[strategy] ", p.where(), ": unknown preset '", name, "' (dp, fsdp, hsdp, tp, sp)");
      // hsdp: fsdp within the groups of the fsdp axis, dp (replication) across the dp axis.
      const std::vector<std::string> expands =
          name == "hsdp" ? std::vector<std::string>{"dp", "fsdp"} : std::vector<std::string>{name};
      for (const std::string& one : expands) {
        const std::string axis = one == "sp" ? "tp" : one;
        HP_CHECK(s.mesh.has_axis(axis), "[strategy] ", p.where(), ": preset '", name,
                 "' needs a mesh axis named '", axis, "'; the mesh is ", s.mesh.str());
        HP_CHECK(std::find(s.presets.begin(), s.presets.end(), one) == s.presets.end(),
                 "[strategy] ", p.where(), ": preset '", one, "' listed twice");
        s.presets.push_back(one);
      }
    }
    try {
      for (Rule& r : expand_presets(s.presets, s.mesh)) s.rules.push_back(std::move(r));
    } catch (const Error& e) {
      throw Error("[strategy] " + presets->where() + ": " + e.what());
    }
  }
  if (auto mode = root.get("mode")) {
    const std::string m = mode->as_string();
    if (m == "strict") {
      s.mode = StrategyMode::kStrict;
    } else if (m == "warn") {
      s.mode = StrategyMode::kWarn;
    } else if (m == "auto") {
      s.mode = StrategyMode::kAuto;
    } else {
      throw Error("[strategy] " + mode->where() + ": mode must be strict, warn or auto, got '" + m +
                  "'");
    }
  }
  if (auto off = root.get("offload")) s.offload = YAML::Clone(off->raw());
  return s;
}

Strategy load_strategy(const std::filesystem::path& path, int64_t world_size) {
  return parse_strategy(io::read_text_file(path), world_size, path.string());
}

std::vector<std::string> validate(const Strategy& strategy,
                                  const std::vector<NamedTensor>& tensors) {
  std::vector<std::string> warnings;
  for (const Rule& r : strategy.rules) {
    if (r.from_preset) continue;
    const bool used = std::any_of(tensors.begin(), tensors.end(), [&](const NamedTensor& t) {
      return glob_match(r.pattern, t.name);
    });
    if (used) continue;
    const std::string msg =
        "[strategy] " + r.where + ": pattern '" + r.pattern + "' matches no tensor";
    if (strategy.mode == StrategyMode::kStrict) throw Error(msg + " (mode: strict)");
    warnings.push_back(msg);
  }
  for (const NamedTensor& t : tensors) {
    const Rule* r = strategy.rule_for(t.name);
    if (!r) continue;
    HP_CHECK(r->layout.rank() <= t.shape.size(), "[strategy] ", r->where, ": layout ",
             r->layout.str(), " has ", r->layout.rank(), " entries but '", t.name, "' is ",
             shape_str(t.shape));
  }
  return warnings;
}

}  // namespace hp::shard
