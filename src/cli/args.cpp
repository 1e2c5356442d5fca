// Option parsing for the hp tool.
#include "cli/args.hpp"

#include <cmath>

#include "hp/error.hpp"

namespace hp::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& valued,
           const std::set<std::string>& flags) {
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
    if (flags.count(k)) {
      HP_CHECK(!has_v, "option --", k, " takes no value");
      flags_.insert(k);
    } else if (valued.count(k)) {
      if (!has_v) {
        HP_CHECK(i + 1 < argv.size(), "option --", k, " needs a value");
        v = argv[++i];
      }
      values_[k] = v;
    } else {
      throw Error("unknown option --" + k + " (see --help)");
    }
  }
}

std::string Args::str(const std::string& k, const std::string& dflt) const {
  auto it = values_.find(k);
  return it == values_.end() ? dflt : it->second;
}
std::string Args::str(const std::string& k) const {
  auto it = values_.find(k);
  HP_CHECK(it != values_.end(), "option --", k, " is required");
  return it->second;
}
namespace {
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
}  // namespace

int64_t Args::i64(const std::string& k, int64_t dflt) const {
  auto it = values_.find(k);
  if (it == values_.end()) return dflt;
  if (is_decimal(it->second, true)) {
    try {
      return std::stoll(it->second);
    } catch (const std::exception&) {  // out of range
    }
  }
  throw Error("option --" + k + " must be a decimal integer within int64, got '" + it->second +
              "'");
}
double Args::f64(const std::string& k, double dflt) const {
  auto it = values_.find(k);
  if (it == values_.end()) return dflt;
  if (is_decimal(it->second, false)) {
    try {
      double v = std::stod(it->second);
      if (std::isfinite(v)) return v;
    } catch (const std::exception&) {  // out of range
    }
  }
  throw Error("option --" + k + " must be a finite decimal number, got '" + it->second + "'");
}

}  // namespace hp::cli
