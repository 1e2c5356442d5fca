// Strategy: the declarative description of a parallel run — a mesh, name-pattern -> layout rules,
// presets (dp, fsdp, tp, sp) that expand into rules for GPT-2 and Llama names, a mode for implicit
// communication, and an offload section kept raw for the offload planner. Loaded from YAML or
// built from a command-line preset expression such as "fsdp2xtp2" or "tp2+sp".
// Not propagation: rules name only the tensors a person would annotate; the rest is inferred.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hp/core/shape.hpp"
#include "hp/shard/layout.hpp"
#include "hp/shard/mesh.hpp"

namespace hp::shard {

// What to do with communication the strategy does not state: strict rejects it (an error naming
// the op), warn inserts it and reports it, auto inserts it silently.
enum class StrategyMode { kStrict, kWarn, kAuto };
std::string mode_name(StrategyMode m);

struct Rule {
  std::string pattern;       // glob over tensor names (see glob_match)
  Layout layout;             // may have fewer dims than the tensor: the rest are replicated
  std::string where;         // "file:line:col" of the rule, or "preset tp" for generated rules
  bool from_preset = false;  // generated rules may match nothing (they cover several models)
  bool params_only = false;  // a preset's parameter rule: never places activations or gradients
};

struct Strategy {
  std::string file = "<preset>";  // where it came from, for messages
  Mesh mesh;
  std::vector<Rule> rules;           // first match wins: the file's rules, then the presets' rules
  std::vector<std::string> presets;  // e.g. {"dp", "tp", "sp"}
  StrategyMode mode = StrategyMode::kWarn;
  YAML::Node offload;  // the raw `offload:` section (null when absent)

  // The first rule matching `name`, if any; for a value that is not a parameter (`param` false),
  // the first that is not a parameters-only rule.
  const Rule* rule_for(const std::string& name, bool param = true) const;
  // The layout of a tensor of rank `rank` named `name`: its rule's layout padded with replicated
  // dims, or replicated when no rule matches. Throws when the rule has more dims than `rank`.
  Layout layout_for(const std::string& name, size_t rank, bool param = true) const;
};

// Shell-style match of the whole name: '*' matches any run of characters (dots included, so
// "h.*.bias" matches "h.11.attn.c_proj.bias"), '?' one character; everything else is literal.
bool glob_match(const std::string& pattern, const std::string& name);

// Parses a strategy; `file` names the source in messages ("file:line:col: ..."). Throws on
// unknown keys, unknown axes in layouts or presets, a mesh with more devices than `world_size`,
// a bad mode or a malformed layout.
Strategy parse_strategy(const std::string& text, int64_t world_size,
                        const std::string& file = "<strategy>");
Strategy load_strategy(const std::filesystem::path& path, int64_t world_size);

// A preset expression: terms joined by 'x' (outermost axis first), each a preset name with its
// size ("dp2", "fsdp4", "tp8"; at most one size may be omitted and is inferred), optionally
// followed by "+sp" (sequence parallel over the tp axis). The sizes must multiply to world_size.
Strategy preset_strategy(const std::string& expr, int64_t world_size);

// Rules that presets ("dp", "fsdp", "tp", "sp"; each but sp names the mesh axis it uses, sp
// needs tp) expand to, for GPT-2 and Llama names; see docs/strategy.md for the table. Appended
// after explicit rules by parse_strategy and preset_strategy. Throws on an unknown preset or a
// preset whose axis the mesh lacks.
std::vector<Rule> expand_presets(const std::vector<std::string>& presets, const Mesh& mesh);

// Presets are written for any model; one choice depends on its shape. When the tp axis does not
// divide the kv heads (Llama-style grouped-query attention with fewer kv heads than ranks),
// k_proj and v_proj stay whole on tp: every rank computes all kv heads and attention reads those
// of its own query heads, as Megatron replicates kv heads. Rules the user wrote are left alone.
void fit_presets_to_kv_heads(Strategy& strategy, int64_t kv_heads);

struct NamedTensor {
  std::string name;
  Shape shape;
};
// Checks a strategy against the tensors of a model: every non-preset pattern must match some
// name (an error in strict mode, a returned warning otherwise), and a tensor's rule may not have
// more dims than the tensor. Errors name the rule's file and line. Returns the warnings.
std::vector<std::string> validate(const Strategy& strategy,
                                  const std::vector<NamedTensor>& tensors);

}  // namespace hp::shard
