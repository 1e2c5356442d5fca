// Command-line parsing for the `hp` tool: `--key value`, `--key=value` and boolean `--flag`s,
// checked against the options each subcommand declares, so a typo is an error, not ignored.
// Not a general library: only what the subcommands need.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace hp::cli {

class Args {
 public:
  // `valued`: options that take a value; `flags`: boolean options. Throws on unknown ones.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& valued,
       const std::set<std::string>& flags);
  bool has(const std::string& k) const { return values_.count(k) || flags_.count(k); }
  bool flag(const std::string& k) const { return flags_.count(k) != 0; }
  std::string str(const std::string& k, const std::string& dflt) const;
  std::string str(const std::string& k) const;  // required
  int64_t i64(const std::string& k, int64_t dflt) const;
  double f64(const std::string& k, double dflt) const;
  const std::vector<std::string>& positional() const { return pos_; }
  // Overrides values (e.g. from a YAML config) only where the command line gave none.
  void set_default(const std::string& k, const std::string& v) {
    if (!values_.count(k)) values_[k] = v;
  }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> pos_;
};

// Subcommands; each returns the process exit code.
int cmd_train(const std::vector<std::string>& argv);
int cmd_check(const std::vector<std::string>& argv);
int cmd_generate(const std::vector<std::string>& argv);
int cmd_bench(const std::vector<std::string>& argv);
int cmd_plan(const std::vector<std::string>& argv);

}  // namespace hp::cli
