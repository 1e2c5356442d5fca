// Parsing the pipeline section and `ppN` presets into a PipelineSpec, checking block coverage and
// device counts, and placing balanced blocks when stages are not listed.
// Not a strategy parser: a stage's strategy is kept as text (or a raw map) for HyperShard.
#include "hp/mpmd/pipeline.hpp"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <set>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::mpmd {

int64_t PipelineSpec::world_size() const {
  int64_t n = 0;
  for (const auto& s : stages) n += s.devices;
  return n;
}

std::vector<std::pair<BlockRange, int>> PipelineSpec::chunks() const {
  std::vector<std::pair<BlockRange, int>> out;
  for (size_t i = 0; i < stages.size(); ++i)
    for (const auto& r : stages[i].blocks) out.emplace_back(r, int(i));
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first.first < b.first.first; });
  return out;
}

ChunkGraph PipelineSpec::chunk_graph() const {
  std::vector<int> placement;
  for (const auto& [range, stage] : chunks()) placement.push_back(stage);
  ChunkGraph g = placed_chain(std::move(placement));
  g.ranks = int(stages.size());
  g.check();
  return g;
}

std::string PipelineSpec::str() const {
  std::ostringstream os;
  os << schedule_name(schedule) << ", " << microbatches << " micro-batches";
  if (virtual_chunks > 1) os << ", " << virtual_chunks << " chunks per stage";
  os << ":";
  for (size_t i = 0; i < stages.size(); ++i) {
    os << (i ? " |" : "") << " stage " << i << " blocks";
    for (size_t k = 0; k < stages[i].blocks.size(); ++k)
      os << (k ? "," : " ") << stages[i].blocks[k].str();
    os << " on " << stages[i].devices << (stages[i].devices == 1 ? " device" : " devices");
    if (!stages[i].strategy.empty()) os << " (" << stages[i].strategy << ")";
  }
  return os.str();
}

namespace {

[[noreturn]] void fail_at(const io::YamlNode& n, const std::string& what) {
  throw Error("[mpmd] " + n.where() + ": " + what);
}

std::string trim(std::string s) {
  auto sp = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && sp(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && sp(s[i])) ++i;
  return s.substr(i);
}

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// "3" or "0-3" (inclusive), within [0, num_blocks).
BlockRange parse_range(const io::YamlNode& n, int64_t num_blocks) {
  std::string s = trim(n.as_string());
  size_t dash = s.find('-');
  std::string a = trim(s.substr(0, dash)),
              b = dash == std::string::npos ? a : trim(s.substr(dash + 1));
  if (!all_digits(a) || !all_digits(b) || a.size() > 9 || b.size() > 9)
    fail_at(n, "blocks '" + s + "': expected a block \"3\" or an inclusive range \"0-3\"");
  BlockRange r{std::stoll(a), std::stoll(b)};
  if (r.first > r.last) fail_at(n, "blocks '" + s + "': the range runs backwards");
  if (r.last >= num_blocks)
    fail_at(n, "blocks '" + s + "' out of range: the model has " + std::to_string(num_blocks) +
                   " blocks (0-" + std::to_string(num_blocks - 1) + ")");
  return r;
}

std::vector<BlockRange> parse_blocks(const io::YamlNode& n, int64_t num_blocks) {
  std::vector<BlockRange> out;
  if (n.is_sequence()) {
    for (const auto& item : n.items()) out.push_back(parse_range(item, num_blocks));
    if (out.empty()) fail_at(n, "an empty list of blocks");
  } else {
    out.push_back(parse_range(n, num_blocks));
  }
  return out;
}

// Every block in exactly one stage.
void check_coverage(const std::vector<StageSpec>& stages, int64_t num_blocks,
                    const std::string& where) {
  std::vector<int> owner(size_t(num_blocks), -1);
  for (size_t i = 0; i < stages.size(); ++i) {
    for (const auto& r : stages[i].blocks) {
      for (int64_t b = r.first; b <= r.last; ++b) {
        int& o = owner[size_t(b)];
        if (o >= 0)
          throw Error("[mpmd] " + stages[i].where + ": block " + std::to_string(b) +
                      " is in stage " + std::to_string(o) + " (" + stages[size_t(o)].where +
                      ") and in stage " + std::to_string(i));
        o = int(i);
      }
    }
  }
  for (int64_t b = 0; b < num_blocks; ++b) {
    if (owner[size_t(b)] >= 0) continue;
    int64_t e = b;
    while (e + 1 < num_blocks && owner[size_t(e + 1)] < 0) ++e;
    throw Error("[mpmd] " + where + ": blocks " + BlockRange{b, e}.str() +
                " belong to no stage (the model has " + std::to_string(num_blocks) + " blocks)");
  }
}

StageSpec parse_stage(const io::YamlNode& n, int64_t num_blocks) {
  n.check_keys({"blocks", "devices", "strategy"});
  StageSpec s;
  s.where = n.where();
  s.blocks = parse_blocks(n["blocks"], num_blocks);
  s.devices = n.get_int("devices", 1);
  if (s.devices < 1) fail_at(*n.get("devices"), "devices must be >= 1");
  if (auto st = n.get("strategy")) {
    if (st->is_map())
      s.strategy_rules = st->raw();
    else
      s.strategy = st->as_string();
  }
  return s;
}

// Chunk c of p * v balanced chunks goes to stage c % p (interleaved) or in a V (zbv) or, with one
// chunk per stage, in order.
int stage_of_chunk(ScheduleKind kind, int64_t c, int64_t p) {
  if (kind == ScheduleKind::kZbV) return int(c < p ? c : 2 * p - 1 - c);
  return int(c % p);
}

// Stages with balanced blocks: `count` stages of world / count devices each.
std::vector<StageSpec> balanced_stages(ScheduleKind kind, int64_t count, int64_t v,
                                       int64_t world_size, int64_t num_blocks,
                                       const BalanceInput* costs, const std::string& where) {
  HP_CHECK(count >= 1 && world_size % count == 0, "[mpmd] ", where, ": ", count,
           " stages do not divide ", world_size, " devices evenly");
  BalanceInput in;
  if (costs) in = *costs;
  if (in.cost.empty()) in.cost.assign(size_t(num_blocks), 1.0);
  HP_CHECK(int64_t(in.cost.size()) == num_blocks, "[mpmd] ", where, ": block costs for ",
           in.cost.size(), " blocks, the model has ", num_blocks);
  in.parts = int(count * v);
  HP_CHECK(num_blocks >= in.parts, "[mpmd] ", where, ": ", count, " stages",
           v > 1 ? " of " + std::to_string(v) + " chunks each" : std::string(), " need ", in.parts,
           " chunks of at least one block, the model has ", num_blocks, " blocks: use fewer stages",
           kind == ScheduleKind::kInterleaved && v > 1 ? " or a smaller virtual" : "");
  // Per-stage caps hold v chunks each: each chunk gets its share (the DP places chunks).
  if (!in.memory_cap.empty() && in.memory_cap.size() == size_t(count)) {
    std::vector<double> per_chunk(size_t(in.parts));
    for (int c = 0; c < in.parts; ++c)
      per_chunk[size_t(c)] = in.memory_cap[size_t(stage_of_chunk(kind, c, count))] / double(v);
    in.memory_cap = per_chunk;
  }
  Balance b = balance_blocks(in);
  std::vector<StageSpec> stages(static_cast<size_t>(count));
  for (int64_t c = 0; c < in.parts; ++c)
    stages[size_t(stage_of_chunk(kind, c, count))].blocks.push_back(b.ranges[size_t(c)]);
  for (int64_t i = 0; i < count; ++i) {
    stages[size_t(i)].devices = world_size / count;
    stages[size_t(i)].where = where + " (balanced stage " + std::to_string(i) + ")";
  }
  return stages;
}

}  // namespace

PipelineSpec parse_pipeline(const io::YamlNode& node, int64_t world_size, int64_t num_blocks,
                            const PipelineParseOptions& options) {
  HP_CHECK(world_size >= 1 && num_blocks >= 1, "[mpmd] ", node.where(), ": a pipeline needs a ",
           "world of at least one device and a model of at least one block");
  node.check_keys({"schedule", "microbatches", "stages", "virtual"});
  PipelineSpec spec;
  spec.file = node.where();
  if (auto s = node.get("schedule")) {
    try {
      spec.schedule = parse_schedule_kind(s->as_string());
    } catch (const Error& e) {
      fail_at(*s, std::string(e.what()).substr(7));  // drop the "[mpmd] " prefix
    }
  }
  spec.microbatches = node.get_int("microbatches", 1);
  if (spec.microbatches < 1)
    fail_at(*node.get("microbatches"),
            "microbatches must be >= 1, got " + std::to_string(spec.microbatches));
  bool chunked = spec.schedule == ScheduleKind::kInterleaved || spec.schedule == ScheduleKind::kZbV;
  auto virt = node.get("virtual");
  if (virt && !chunked)
    fail_at(*virt, "virtual applies to interleaved and zbv, not " + schedule_name(spec.schedule));
  spec.virtual_chunks = virt ? virt->as_int() : (chunked ? 2 : 1);
  if (spec.virtual_chunks < 1 || (spec.schedule == ScheduleKind::kZbV && spec.virtual_chunks != 2))
    fail_at(virt ? *virt : node, spec.schedule == ScheduleKind::kZbV
                                     ? "zbv holds exactly 2 chunks per stage (a V)"
                                     : "virtual must be >= 1");
  if (auto st = node.get("stages")) {
    for (const auto& item : st->items()) spec.stages.push_back(parse_stage(item, num_blocks));
    if (spec.stages.empty()) fail_at(*st, "an empty list of stages");
    if (options.mesh_pp > 0 && int64_t(spec.stages.size()) != options.mesh_pp)
      fail_at(*st, std::to_string(spec.stages.size()) + " stages, but the mesh's pp axis is " +
                       std::to_string(options.mesh_pp));
    check_coverage(spec.stages, num_blocks, st->where());
    // Chunks per stage: interleaved and zbv take `virtual` (default 2) and every stage must list
    // that many ranges; other schedules run the chunks the stages list (v when they agree).
    size_t first = spec.stages[0].blocks.size();
    bool same = std::all_of(spec.stages.begin(), spec.stages.end(),
                            [&](const StageSpec& s) { return s.blocks.size() == first; });
    if (!chunked) spec.virtual_chunks = same ? int64_t(first) : 1;
    for (size_t i = 0; chunked && i < spec.stages.size(); ++i)
      if (int64_t(spec.stages[i].blocks.size()) != spec.virtual_chunks)
        throw Error("[mpmd] " + spec.stages[i].where + ": stage " + std::to_string(i) + " lists " +
                    std::to_string(spec.stages[i].blocks.size()) + " block ranges; " +
                    schedule_name(spec.schedule) + " with virtual " +
                    std::to_string(spec.virtual_chunks) +
                    " needs one per chunk, e.g. blocks: " + "[\"0-1\", \"4-5\"]");
  } else {
    int64_t count = options.mesh_pp > 0 ? options.mesh_pp : world_size;
    spec.stages = balanced_stages(spec.schedule, count, spec.virtual_chunks, world_size, num_blocks,
                                  options.costs, node.where());
    spec.balanced = true;
  }
  int64_t devices = 0;
  for (auto& s : spec.stages) s.first_rank = devices, devices += s.devices;
  if (devices != world_size)
    fail_at(*node.get("stages"), "the stages' devices add up to " + std::to_string(devices) +
                                     ", the world has " + std::to_string(world_size) + " devices");
  return spec;
}

namespace {

// The stage strategy a strategy document's mesh implies around its `pp` axis: its other axes as
// a preset expression ("dp2", "dp2xtp2+sp"), when every one of them is named in `presets:`
// (dp, fsdp, tp; sp joins tp). Empty when the document lays tensors out by rules instead.
std::string stage_preset_of_mesh(const io::YamlNode& doc) {
  const auto mesh = doc.get("mesh");
  const auto presets = doc.get("presets");
  if (!mesh || !mesh->is_map() || !presets || !presets->is_sequence()) return "";
  std::set<std::string> named;
  for (const io::YamlNode& p : presets->items()) named.insert(p.as_string());
  std::string out;
  for (const auto& [axis, size] : mesh->entries()) {
    if (axis == "pp") continue;
    if (!named.count(axis) || (axis != "dp" && axis != "fsdp" && axis != "tp")) return "";
    out += (out.empty() ? "" : "x") + axis + std::to_string(size.as_int());
    if (axis == "tp" && named.count("sp")) out += "+sp";
  }
  return out;
}

// The `pipeline:` section of a parsed strategy document; stages neither listed nor given a
// strategy take the one the mesh implies.
PipelineSpec pipeline_of_document(const io::YamlNode& doc, int64_t world_size, int64_t num_blocks,
                                  const BalanceInput* costs) {
  PipelineParseOptions opts;
  opts.costs = costs;
  if (auto mesh = doc.get("mesh"); mesh && mesh->is_map()) opts.mesh_pp = mesh->get_int("pp", 0);
  PipelineSpec spec = parse_pipeline(doc["pipeline"], world_size, num_blocks, opts);
  if (opts.mesh_pp > 0 && !doc["pipeline"].get("stages")) {
    const std::string preset = stage_preset_of_mesh(doc);
    for (StageSpec& st : spec.stages)
      if (st.strategy.empty() && st.devices > 1) st.strategy = preset;
  }
  return spec;
}

}  // namespace

PipelineSpec parse_pipeline_text(const std::string& text, int64_t world_size, int64_t num_blocks,
                                 const std::string& file, const BalanceInput* costs) {
  return pipeline_of_document(io::YamlNode::parse(text, file), world_size, num_blocks, costs);
}

PipelineSpec load_pipeline(const std::filesystem::path& path, int64_t world_size,
                           int64_t num_blocks, const BalanceInput* costs) {
  return pipeline_of_document(io::YamlNode::load_file(path), world_size, num_blocks, costs);
}

namespace {

struct Term {
  std::string name, text;
  int64_t size = 0;  // 0: omitted
};

// "pp2xtp2+sp" -> {pp, 2}, {tp, 2, "tp2+sp"}.
std::vector<Term> preset_terms(const std::string& expr) {
  std::vector<Term> out;
  std::stringstream ss(expr);
  std::string t;
  while (std::getline(ss, t, 'x')) {
    Term term;
    term.text = t;
    size_t i = 0;
    while (i < t.size() && std::isalpha(static_cast<unsigned char>(t[i]))) ++i;
    term.name = t.substr(0, i);
    size_t j = i;
    while (j < t.size() && std::isdigit(static_cast<unsigned char>(t[j]))) ++j;
    HP_CHECK(!term.name.empty() && j - i <= 9, "[mpmd] preset '", expr, "': malformed term '", t,
             "'");
    term.size = j > i ? std::stoll(t.substr(i, j - i)) : 0;
    HP_CHECK(j == i || term.size >= 1, "[mpmd] preset '", expr, "': size 0 in '", t, "'");
    out.push_back(term);
  }
  HP_CHECK(!out.empty(), "[mpmd] empty preset expression");
  return out;
}

}  // namespace

bool is_pipeline_preset(const std::string& expr) {
  return expr.rfind("pp", 0) == 0 &&
         (expr.size() == 2 || expr[2] == 'x' || std::isdigit(static_cast<unsigned char>(expr[2])));
}

PresetStages split_pp_preset(const std::string& expr, int64_t world_size) {
  auto terms = preset_terms(expr);
  for (size_t i = 1; i < terms.size(); ++i)
    HP_CHECK(terms[i].name != "pp", "[mpmd] preset '", expr,
             "': pp must be the outermost (first) term, as in pp2xdp2");
  HP_CHECK(terms[0].name == "pp", "[mpmd] preset '", expr, "' has no outermost pp term");
  PresetStages out;
  int64_t rest = 1;
  bool rest_known = true;
  for (size_t i = 1; i < terms.size(); ++i) {
    out.stage_preset += (i > 1 ? "x" : "") + terms[i].text;
    if (terms[i].size == 0)
      rest_known = false;
    else
      rest *= terms[i].size;
  }
  out.stages = terms[0].size;
  if (out.stages == 0) {
    HP_CHECK(rest_known && world_size % rest == 0, "[mpmd] preset '", expr,
             "': the pp size can be left out only when the other sizes are given and divide the ",
             world_size, " devices");
    out.stages = world_size / rest;
  }
  HP_CHECK(world_size % out.stages == 0, "[mpmd] preset '", expr, "': ", out.stages,
           " stages do not divide ", world_size, " devices");
  out.devices_per_stage = world_size / out.stages;
  HP_CHECK(!rest_known || rest == out.devices_per_stage, "[mpmd] preset '", expr, "': each of ",
           out.stages, " stages has ", out.devices_per_stage, " devices but '", out.stage_preset,
           "' covers ", rest);
  HP_CHECK(!out.stage_preset.empty() || out.devices_per_stage == 1, "[mpmd] preset '", expr,
           "': each stage has ", out.devices_per_stage, " devices and no strategy for them (e.g. ",
           expr, "xdp", out.devices_per_stage, ")");
  return out;
}

PipelineSpec pipeline_from_preset(const std::string& expr, int64_t world_size, int64_t num_blocks,
                                  ScheduleKind schedule, int64_t microbatches, int64_t v,
                                  const BalanceInput* costs) {
  HP_CHECK(microbatches >= 1, "[mpmd] preset '", expr, "': micro-batches must be >= 1, got ",
           microbatches);
  PresetStages ps = split_pp_preset(expr, world_size);
  PipelineSpec spec;
  spec.file = "preset " + expr;
  spec.schedule = schedule;
  spec.microbatches = microbatches;
  bool chunked = schedule == ScheduleKind::kInterleaved || schedule == ScheduleKind::kZbV;
  spec.virtual_chunks = chunked ? (schedule == ScheduleKind::kZbV ? 2 : v) : 1;
  HP_CHECK(spec.virtual_chunks >= 1, "[mpmd] preset '", expr, "': virtual must be >= 1");
  spec.stages = balanced_stages(schedule, ps.stages, spec.virtual_chunks, world_size, num_blocks,
                                costs, spec.file);
  spec.balanced = true;
  int64_t rank = 0;
  for (auto& s : spec.stages) s.strategy = ps.stage_preset, s.first_rank = rank, rank += s.devices;
  return spec;
}

}  // namespace hp::mpmd
