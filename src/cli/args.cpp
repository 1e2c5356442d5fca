// Option parsing and --help for the hp tool, from each command's option table.
#include "cli/args.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hp/core/error.hpp"
#include "hp/memory/options.hpp"

namespace hp::cli {

namespace {

const Option kHelpOption{.name = "help", .kind = Kind::kFlag, .help = "print this help"};

// Plain decimal: [+-]digits, and unless `integer` also [.digits] and [e[+-]digits]. What
// std::stod accepts beyond that (hex "0x10", "inf", "nan", leading blanks) is a typo here.
bool is_decimal(const std::string& s, bool integer) {
  size_t i = 0, digits = 0;
  auto run = [&] {
    size_t n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++n;
    return n;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  digits = run();
  if (!integer && i < s.size() && s[i] == '.') ++i, digits += run();
  if (digits == 0) return false;
  if (!integer && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (run() == 0) return false;
  }
  return i == s.size();
}

// A number as people write it in a range: 1, 0.5, 1e-08.
std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// The range of a number option in words ("" when unbounded).
std::string range_text(const Option& o) {
  const bool lo = std::isfinite(o.min), hi = std::isfinite(o.max);
  if (lo && hi) return std::string("in [") + num(o.min) + ", " + num(o.max) + "]";
  if (lo) return std::string("at least ") + num(o.min);
  if (hi) return std::string("at most ") + num(o.max);
  return "";
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

void check_range(const Option& o, double v, const std::string& text) {
  if (v < o.min || v > o.max)
    throw Error("option --" + o.name + " must be " + range_text(o) + ", got '" + text + "'");
}

int64_t to_i64(const Option& o, const std::string& v) {
  if (is_decimal(v, true)) {
    try {
      const int64_t x = std::stoll(v);
      check_range(o, double(x), v);
      return x;
    } catch (const std::out_of_range&) {
    }
  }
  throw Error("option --" + o.name + " must be a decimal integer within int64, got '" + v + "'");
}

double to_f64(const Option& o, const std::string& v) {
  if (is_decimal(v, false)) {
    try {
      const double x = std::stod(v);
      if (std::isfinite(x)) {
        check_range(o, x, v);
        return x;
      }
    } catch (const std::out_of_range&) {
    }
  }
  throw Error("option --" + o.name + " must be a finite decimal number, got '" + v + "'");
}

// Throws naming the option unless `v` is a value of its kind within its range or choices.
void check_value(const Option& o, const std::string& v) {
  switch (o.kind) {
    case Kind::kInt:
      to_i64(o, v);
      return;
    case Kind::kFloat:
      to_f64(o, v);
      return;
    case Kind::kEnum:
      for (const auto& c : o.choices)
        if (v == c) return;
      throw Error("option --" + o.name + " must be one of " + join(o.choices, ", ") + ", got '" +
                  v + "'");
    case Kind::kBytes:
    case Kind::kBudget:
      try {
        if (o.kind == Kind::kBytes)
          memory::parse_bytes(v);
        else
          memory::parse_budget(v);
      } catch (const Error& e) {
        throw Error("option --" + o.name + ": " + e.what());
      }
      return;
    case Kind::kString:
    case Kind::kFlag:
      return;
  }
}

}  // namespace

Args::Args(const std::vector<std::string>& argv, const Command& cmd) : cmd_(cmd) {
  table_["help"] = &kHelpOption;
  for (const auto& g : cmd.groups)
    for (const auto& o : g.options) table_[o.name] = &o;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0) {
      pos_.push_back(a);
      continue;
    }
    std::string k = a.substr(2), v;
    bool has_v = false;
    if (auto eq = k.find('='); eq != std::string::npos) {
      v = k.substr(eq + 1);
      k = k.substr(0, eq);
      has_v = true;
    }
    auto it = table_.find(k);
    if (it == table_.end()) throw Error("unknown option --" + k + " (see --help)");
    if (it->second->kind == Kind::kFlag) {
      HP_CHECK(!has_v, "option --", k, " takes no value");
      flags_.insert(k);
      continue;
    }
    if (!has_v) {
      HP_CHECK(i + 1 < argv.size(), "option --", k, " needs a value");
      v = argv[++i];
    }
    check_value(*it->second, v);
    values_[k] = v;
  }
  if (flag("help")) return;
  for (const auto& [k, o] : table_)
    HP_CHECK(!o->required || values_.count(k), "option --", k, " is required");
}

const Option& Args::option(const std::string& k) const {
  auto it = table_.find(k);
  HP_CHECK(it != table_.end(), "internal: option --", k, " is not in the table of '", cmd_.usage,
           "'");
  return *it->second;
}

bool Args::flag(const std::string& k) const {
  HP_CHECK(option(k).kind == Kind::kFlag, "internal: option --", k, " is not a flag");
  return flags_.count(k) != 0;
}

std::string Args::str(const std::string& k) const {
  const Option& o = option(k);
  auto it = values_.find(k);
  if (it != values_.end()) return it->second;
  HP_CHECK(!o.dflt.empty(), "option --", k, " is required");
  return o.dflt;
}

std::vector<std::string> Args::list(const std::string& k) const {
  const std::string v = str(k);
  std::vector<std::string> out;
  for (size_t at = 0;;) {
    const size_t comma = std::min(v.find(',', at), v.size());
    out.push_back(v.substr(at, comma - at));
    HP_CHECK(!out.back().empty(), "option --", k, ": an empty entry in '", v, "'");
    if (comma == v.size()) return out;
    at = comma + 1;
  }
}

int64_t Args::i64(const std::string& k) const {
  const Option& o = option(k);
  HP_CHECK(o.kind == Kind::kInt, "internal: option --", k, " is not an integer");
  return to_i64(o, str(k));
}

double Args::f64(const std::string& k) const {
  const Option& o = option(k);
  HP_CHECK(o.kind == Kind::kFloat, "internal: option --", k, " is not a number");
  return to_f64(o, str(k));
}

void Args::set_default(const std::string& k, const std::string& v) {
  if (values_.count(k)) return;
  check_value(option(k), v);
  values_[k] = v;
}

namespace {

// "--name META" as the help's left column.
std::string left_column(const Option& o) {
  std::string s = "--" + o.name;
  if (o.kind == Kind::kEnum) return s + " " + join(o.choices, "|");
  if (o.kind != Kind::kFlag) s.append(" ").append(o.meta.empty() ? "VALUE" : o.meta);
  return s;
}

// The help text's parenthesis: "(default: 8, at least 1)", "(required)", or "".
std::string default_text(const Option& o) {
  if (o.kind == Kind::kFlag) return "";
  std::vector<std::string> parts;
  if (o.required)
    parts.push_back("required");
  else
    parts.push_back(std::string("default: ") + (!o.dflt.empty()       ? o.dflt
                                                : !o.computed.empty() ? o.computed
                                                                      : "none"));
  if (o.kind == Kind::kInt || o.kind == Kind::kFloat)
    if (std::string r = range_text(o); !r.empty()) parts.push_back(r);
  return std::string("(") + join(parts, ", ") + ")";
}

// `text` wrapped at `width` columns, continuation lines indented by `indent`.
std::string wrap(const std::string& text, size_t indent, size_t width) {
  std::string out, word;
  size_t col = indent;
  auto flush = [&] {
    if (word.empty()) return;
    if (col > indent && col + 1 + word.size() > width) {
      out.append("\n").append(indent, ' ');
      col = indent;
    } else if (col > indent) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
    word.clear();
  };
  for (char c : text) {
    if (c == ' ')
      flush();
    else
      word += c;
  }
  flush();
  return out;
}

}  // namespace

std::string help_text(const Command& cmd) {
  constexpr size_t kWidth = 100, kColumn = 30;
  std::string s = "usage: " + cmd.usage + "\n";
  if (!cmd.about.empty()) s += cmd.about + "\n";
  std::vector<OptionGroup> groups = cmd.groups;
  groups.push_back({"Help", {kHelpOption}});
  for (const auto& g : groups) {
    s += "\n" + g.title + ":\n";
    for (const auto& o : g.options) {
      std::string line = std::string("  ") + left_column(o);
      if (line.size() + 2 > kColumn)
        line.append("\n").append(kColumn, ' ');
      else
        line += std::string(kColumn - line.size(), ' ');
      std::string h = o.help;
      if (std::string d = default_text(o); !d.empty()) h += (h.empty() ? "" : " ") + d;
      s += line + wrap(h, kColumn, kWidth) + "\n";
    }
  }
  return s;
}

void apply_yaml(Args& a, const io::YamlNode& y, std::optional<io::YamlNode>& offload) {
  std::vector<std::string> allowed = {"resume", "offload"};
  for (const auto& g : a.command().groups)
    for (const auto& o : g.options)
      if (o.kind != Kind::kFlag) allowed.push_back(o.name);
  y.check_keys(allowed);
  for (auto& [k, v] : y.entries()) {
    if (k == "offload") {
      offload = v;
      continue;
    }
    try {
      a.set_default(k == "resume" ? "resume-mode" : k, v.as_string());
    } catch (const Error& e) {
      throw Error(v.where() + ": " + e.what());
    }
  }
}

bool printed_help(const Args& a) {
  if (!a.flag("help")) return false;
  std::fputs(help_text(a.command()).c_str(), stdout);
  return true;
}

}  // namespace hp::cli
