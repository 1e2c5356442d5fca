// Presets: dp, fsdp, tp and sp as rules over GPT-2 and Llama (Hugging Face) names, and the
// command-line preset expressions ("dp2xtp2", "fsdp4", "tp2+sp") that build a whole strategy.
// Not a search: presets are the fixed recipes a person would write; the planner finds others.
#include <algorithm>
#include <cctype>

#include "hp/core/error.hpp"
#include "hp/shard/strategy.hpp"

namespace hp::shard {

namespace {

using Dims = std::vector<std::vector<std::string>>;

Layout make(Dims dims) {
  Layout l;
  l.dims = std::move(dims);
  return l;
}

// Megatron pairs: column-parallel layers split their output features, row-parallel layers their
// input features. GPT-2 stores Conv1D weights [in, out]; Llama stores Linear weights [out, in].
struct TpRule {
  const char* pattern;
  int64_t dim;  // dim split on tp
  size_t rank;  // tensor rank (so the layout lists every dim)
};
constexpr TpRule kTpRules[] = {
    // GPT-2
    {"h.*.attn.c_attn.weight", 1, 2},
    {"h.*.attn.c_attn.bias", 0, 1},
    {"h.*.mlp.c_fc.weight", 1, 2},
    {"h.*.mlp.c_fc.bias", 0, 1},
    {"h.*.attn.c_proj.weight", 0, 2},
    {"h.*.mlp.c_proj.weight", 0, 2},
    {"wte.weight", 0, 2},  // vocabulary-parallel embedding (and tied head)
    // Llama (a leading * also matches a vision-language model's "language_model." decoder)
    {"*model.layers.*.self_attn.q_proj.weight", 0, 2},
    {"*model.layers.*.self_attn.k_proj.weight", 0, 2},
    {"*model.layers.*.self_attn.v_proj.weight", 0, 2},
    {"*model.layers.*.self_attn.o_proj.weight", 1, 2},
    {"*model.layers.*.mlp.gate_proj.weight", 0, 2},
    {"*model.layers.*.mlp.up_proj.weight", 0, 2},
    {"*model.layers.*.mlp.down_proj.weight", 1, 2},
    {"*model.embed_tokens.weight", 0, 2},
    // both: an untied head [vocab, d_model] is vocabulary-parallel
    {"*lm_head.weight", 0, 2},
};

// Modules whose input and output activations sequence parallelism splits on the sequence dim
// (the model names them "<module>.input" and "<module>").
constexpr const char* kNormModules[] = {
    "h.*.ln_1",
    "h.*.ln_2",
    "ln_f",
    "*model.layers.*.input_layernorm",
    "*model.layers.*.post_attention_layernorm",
    "*model.norm",
};

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

std::vector<Rule> expand_presets(const std::vector<std::string>& presets, const Mesh& mesh) {
  bool dp = false, fsdp = false, tp = false, sp = false;
  for (const auto& p : presets) {
    bool* flag = p == "dp"     ? &dp
                 : p == "fsdp" ? &fsdp
                 : p == "tp"   ? &tp
                 : p == "sp"   ? &sp
                               : nullptr;
    HP_CHECK(flag, "[strategy] unknown preset '", p, "' (dp, fsdp, tp, sp)");
    HP_CHECK(!*flag, "[strategy] preset '", p, "' listed twice");
    *flag = true;
  }
  HP_CHECK(!sp || tp, "[strategy] preset 'sp' splits sequences over the tp axis: add 'tp'");
  for (const auto& p : presets) {
    if (p == "sp") continue;
    HP_CHECK(mesh.has_axis(p), "[strategy] preset '", p, "' needs a mesh axis named '", p,
             "'; the mesh is ", mesh.str());
  }
  std::vector<std::string> data;  // batch-splitting axes, in mesh order
  for (const auto& a : mesh.axis_names()) {
    if ((a == "dp" && dp) || (a == "fsdp" && fsdp)) data.push_back(a);
  }
  std::vector<Rule> rules;
  auto add = [&](std::string pattern, Layout l, const std::string& origin, bool params = false) {
    Rule r;
    r.params_only = params;
    r.pattern = std::move(pattern);
    l.normalize();
    r.layout = std::move(l);
    r.where = "preset " + origin;
    r.from_preset = true;
    rules.push_back(std::move(r));
  };
  const std::string data_origin = joined(data, "+");
  // Activations: the batch is split over the data axes; logits over the vocabulary with tp.
  if (!data.empty()) {
    add("tokens", make({data, {}}), data_origin);
    add("targets", make({data, {}}), data_origin);
  }
  if (!data.empty() || tp) {
    add("logits",
        make({data, {}, tp ? std::vector<std::string>{"tp"} : std::vector<std::string>{}}),
        tp ? (data.empty() ? "tp" : data_origin + "+tp") : data_origin);
  }
  if (sp) {
    for (const char* m : kNormModules) {  // the norm's output and its input (the residual)
      add(m, make({data, {"tp"}, {}}), "sp");
      add(std::string(m) + ".input", make({data, {"tp"}, {}}), "sp");
    }
  }
  // Parameters: tp splits the Megatron pairs; fsdp then splits dim 0 of every parameter again
  // (innermost, so that one all-gather over fsdp restores the tp shard before use).
  if (tp) {
    for (const TpRule& t : kTpRules) {
      Dims dims(t.rank);
      dims[size_t(t.dim)].push_back("tp");
      if (fsdp) dims[0].push_back("fsdp");
      add(t.pattern, make(dims), fsdp ? "tp+fsdp" : "tp", true);
    }
  }
  if (fsdp) {
    add("*.weight", make({{"fsdp"}}), "fsdp", true);
    add("*.bias", make({{"fsdp"}}), "fsdp", true);
  }
  return rules;
}

void fit_presets_to_kv_heads(Strategy& strategy, int64_t kv_heads) {
  if (!strategy.mesh.has_axis("tp") || kv_heads % strategy.mesh.axis_size("tp") == 0) return;
  for (Rule& r : strategy.rules) {
    if (!r.from_preset || (!glob_match(r.pattern, "model.layers.0.self_attn.k_proj.weight") &&
                           !glob_match(r.pattern, "model.layers.0.self_attn.v_proj.weight")))
      continue;
    for (auto& d : r.layout.dims) std::erase(d, std::string("tp"));
    r.layout.normalize();
    r.where += " (kv heads replicated on tp)";
  }
}

namespace {

// Presets that fit a world of n devices, as examples for an error.
std::string preset_examples(int64_t n) {
  const std::string w = std::to_string(n);
  std::string s = "dp" + w + ", fsdp" + w + ", tp" + w + "+sp";
  if (n > 2 && n % 2 == 0) {
    const std::string h = std::to_string(n / 2);
    s += ", hsdp2, dp" + h + "xtp2, fsdp" + h + "xtp2";
  }
  return s;
}

}  // namespace

Strategy preset_strategy(const std::string& expr, int64_t world_size) {
  HP_CHECK(world_size >= 1, "[strategy] world size ", world_size);
  auto fail = [&](const std::string& what) -> Error {
    return Error("[strategy] preset '" + expr + "': " + what + " (expected e.g., for a world of " +
                 std::to_string(world_size) + ": " + preset_examples(world_size) + ")");
  };
  std::string base = expr;
  bool sp = false;
  if (const size_t plus = expr.find('+'); plus != std::string::npos) {
    base = expr.substr(0, plus);
    const std::string mod = expr.substr(plus + 1);
    if (mod != "sp") throw fail("unknown modifier '+" + mod + "'");
    sp = true;
  }
  std::vector<std::string> names;
  std::vector<int64_t> sizes;
  int64_t unknown = -1;
  size_t start = 0;
  while (start <= base.size()) {
    size_t end = base.find('x', start);
    if (end == std::string::npos) end = base.size();
    const std::string term = base.substr(start, end - start);
    size_t digits = term.size();
    while (digits > 0 && std::isdigit(static_cast<unsigned char>(term[digits - 1]))) --digits;
    const std::string name = term.substr(0, digits);
    if (name == "hsdp") {  // hybrid sharding: fsdp within groups of N, dp across the groups
      if (digits == term.size()) throw fail("'hsdp' needs its shard group size, e.g. hsdp4");
      if (unknown >= 0) throw fail("only one size may be left out (hsdp leaves out dp's)");
      for (const char* n : {"dp", "fsdp"})
        if (std::find(names.begin(), names.end(), n) != names.end())
          throw fail(std::string("'hsdp' and '") + n + "' together");
      unknown = int64_t(names.size());
      names.push_back("dp");
      sizes.push_back(0);
      base.replace(start, digits, "fsdp");  // the rest parses as the fsdp term
      continue;
    }
    if (name != "dp" && name != "fsdp" && name != "tp") {
      throw fail("unknown term '" + term + "'");
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      throw fail("'" + name + "' appears twice");
    }
    int64_t size = 0;
    if (digits == term.size()) {
      if (unknown >= 0) throw fail("only one size may be left out");
      unknown = int64_t(names.size());
    } else {
      if (term.size() - digits > 9) throw fail("size of '" + name + "' is too large");
      size = std::stoll(term.substr(digits));
      if (size < 1) throw fail("'" + name + "' has size " + std::to_string(size));
    }
    names.push_back(name);
    sizes.push_back(size);
    start = end + 1;
  }
  int64_t known = 1;
  for (int64_t s : sizes) known *= s ? s : 1;
  if (unknown >= 0) {
    if (world_size % known != 0) {
      throw fail("the given sizes (" + std::to_string(known) +
                 " devices) do not divide the world of " + std::to_string(world_size));
    }
    sizes[size_t(unknown)] = world_size / known;
    known = world_size;
  }
  if (known != world_size) {
    throw fail("uses " + std::to_string(known) + " devices but the world has " +
               std::to_string(world_size));
  }
  Strategy s;
  s.file = "preset '" + expr + "'";
  s.mesh = Mesh(names, sizes);
  s.presets = names;
  if (sp) s.presets.push_back("sp");
  try {
    s.rules = expand_presets(s.presets, s.mesh);
  } catch (const Error& e) {
    throw fail(e.what());
  }
  s.mode = StrategyMode::kWarn;
  return s;
}

}  // namespace hp::shard
