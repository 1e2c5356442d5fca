// Command-line parsing for the `hp` tool, driven by one option table per command (options.hpp):
// the table says each option's kind, default, range, help text and group; from it the parser
// accepts or rejects `--key value`, `--key=value` and `--flag`, and `--help` is generated.
// Values are checked when given (kind, range, choices), so bad input fails before any work.
// Not a general library: only what the subcommands need.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hp/io/yaml.hpp"

namespace hp::cli {

enum class Kind {
  kInt,     // a plain decimal integer within int64
  kFloat,   // a plain finite decimal number
  kString,  // any text
  kBytes,   // a byte size ("512MiB"), or none/unlimited
  kBudget,  // a byte size or a share of the unconstrained peak ("25%")
  kFlag,    // no value
  kEnum,    // one of `choices`
};

struct Option {
  std::string name;  // without the leading "--"
  Kind kind = Kind::kString;
  std::string meta{};  // the value's placeholder in --help ("N", "FILE"); an enum's is its choices
  std::string dflt{};  // the default as typed on the command line; "" when there is none
  std::string computed{};  // what an option without `dflt` defaults to, in words ("all cores")
  double min = -std::numeric_limits<double>::infinity();  // numbers: the range, inclusive
  double max = std::numeric_limits<double>::infinity();
  std::vector<std::string> choices{};  // kEnum
  bool required = false;
  std::string help{};
};

struct OptionGroup {
  std::string title;
  std::vector<Option> options;
};

// One command's options and what its --help says around them.
struct Command {
  std::string usage;  // "hp check DIR [options]"
  std::string about;  // paragraphs after the usage line
  std::vector<OptionGroup> groups;
};

class Args {
 public:
  // Throws on unknown options, missing or bad values and missing required options (unless
  // --help is given, which every command accepts).
  Args(const std::vector<std::string>& argv, const Command& cmd);
  // Given on the command line (or by set_default); a table default does not count.
  bool has(const std::string& k) const { return values_.count(k) || flags_.count(k); }
  bool flag(const std::string& k) const;
  // The value given, else the table's default; throws "option --k is required" with neither.
  std::string str(const std::string& k) const;
  // A comma-separated value's entries, in order; an empty entry is an error naming the option.
  std::vector<std::string> list(const std::string& k) const;
  int64_t i64(const std::string& k) const;
  double f64(const std::string& k) const;
  const std::vector<std::string>& positional() const { return pos_; }
  // Sets a value (e.g. from a YAML config) only where the command line gave none; checked as a
  // command-line value is.
  void set_default(const std::string& k, const std::string& v);
  const Command& command() const { return cmd_; }

 private:
  const Option& option(const std::string& k) const;

  const Command& cmd_;
  std::map<std::string, const Option*> table_;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> pos_;
};

// The command's --help: usage, about, then each group's options with their value placeholder,
// help text, default and range.
std::string help_text(const Command& cmd);
// Prints the command's generated help to stdout when --help was given; true when it did.
bool printed_help(const Args& a);

// A YAML config applied to `a` (hp train --config): every key is the same-named valued option
// of the command (`resume` sets --resume-mode), set where the command line gave none; an
// `offload:` map goes to `offload`. Unknown keys and bad values name the file and line.
void apply_yaml(Args& a, const io::YamlNode& y, std::optional<io::YamlNode>& offload);

// Subcommands; each returns the process exit code.
int cmd_train(const std::vector<std::string>& argv);
int cmd_check(const std::vector<std::string>& argv);
int cmd_generate(const std::vector<std::string>& argv);
int cmd_serve(const std::vector<std::string>& argv);
int cmd_bench(const std::vector<std::string>& argv);
int cmd_plan(const std::vector<std::string>& argv);
int cmd_calibrate(const std::vector<std::string>& argv);
// hp plan with --cluster: the strategy planner (plan_search.cpp).
int plan_search(const Args& a);
int cmd_ckpt(const std::vector<std::string>& argv);

}  // namespace hp::cli
