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
int64_t Args::i64(const std::string& k, int64_t dflt) const {
  auto it = values_.find(k);
  if (it == values_.end()) return dflt;
  try {
    size_t used = 0;
    int64_t v = std::stoll(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("option --" + k + " must be an integer, got '" + it->second + "'");
}
double Args::f64(const std::string& k, double dflt) const {
  auto it = values_.find(k);
  if (it == values_.end()) return dflt;
  try {
    size_t used = 0;
    double v = std::stod(it->second, &used);
    if (used == it->second.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  throw Error("option --" + k + " must be a number, got '" + it->second + "'");
}

uint64_t parse_bytes(const std::string& s, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw Error(what + ": cannot read size '" + s + "' (e.g. 64MiB, 2GB, 1048576)");
  }
  std::string unit = s.substr(used);
  double mul = unit.empty() || unit == "B"    ? 1
               : unit == "KiB" || unit == "K" ? 1024.0
               : unit == "MiB" || unit == "M" ? 1024.0 * 1024
               : unit == "GiB" || unit == "G" ? 1024.0 * 1024 * 1024
               : unit == "KB"                 ? 1e3
               : unit == "MB"                 ? 1e6
               : unit == "GB"                 ? 1e9
                                              : -1;
  HP_CHECK(mul > 0 && v >= 0, what, ": unknown size unit in '", s, "'");
  return uint64_t(v * mul);
}

}  // namespace hp::cli
