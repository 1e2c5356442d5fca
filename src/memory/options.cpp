// Parsing OffloadOptions from YAML and CLI strings.
#include "hp/memory/options.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "hp/core/bytes.hpp"
#include "hp/core/error.hpp"

namespace hp::memory {

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}
double parse_number(const std::string& t, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  HP_CHECK(used == t.size() && std::isfinite(v) && v >= 0, "[offload] ", what, ": '", t,
           "' is not a non-negative number");
  return v;
}
bool parse_bool(const std::string& key, const std::string& v) {
  std::string l = lower(trim(v));
  if (l == "true" || l == "on" || l == "yes" || l == "1") return true;
  if (l == "false" || l == "off" || l == "no" || l == "0") return false;
  throw Error("[offload] " + key + ": '" + v + "' is not a boolean");
}
}  // namespace

size_t parse_bytes(const std::string& text) {
  const std::string l = lower(trim(text));
  // No limit is said in words: a size that comes out as 0 bytes is a mistake, not "unlimited".
  if (l == "none" || l == "unlimited") return 0;
  try {
    return size_t(hp::parse_bytes(text, "size"));
  } catch (const Error& e) {
    const std::string m = e.what();
    throw Error("[offload] " + m +
                (m.find("must be > 0") != std::string::npos ? " (use 'none' for no limit)" : ""));
  }
}

Budget parse_budget(const std::string& text) {
  std::string t = trim(text);
  Budget b;
  if (!t.empty() && t.back() == '%') {
    double pct = parse_number(trim(t.substr(0, t.size() - 1)), "budget");
    HP_CHECK(pct > 0 && pct <= 100, "[offload] budget '", text, "' must be in (0%, 100%]");
    b.fraction = pct / 100.0;
    return b;
  }
  b.bytes = parse_bytes(t);
  return b;
}

std::string format_bytes(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(bytes) / (1024.0 * 1024.0));
  return buf;
}

size_t Budget::resolve(size_t peak) const {
  if (bytes != 0) return bytes;
  if (fraction != 0) return std::max<size_t>(1, size_t(double(peak) * fraction));
  return 0;
}

std::string Budget::str() const {
  if (bytes != 0) return format_bytes(bytes);
  if (fraction != 0) {
    std::ostringstream os;
    os << fraction * 100 << "%";
    return os.str();
  }
  return "unlimited";
}

void set_option(OffloadOptions& o, const std::string& key, const std::string& value) {
  const std::string v = trim(value);
  if (key == "device_budget") {
    o.device_budget = parse_budget(v);
  } else if (key == "host_budget") {
    o.host_budget = parse_bytes(v);
  } else if (key == "optimizer_state") {
    std::string l = lower(v);
    if (l == "device")
      o.optimizer_state = Tier::kDevice;
    else if (l == "host")
      o.optimizer_state = Tier::kHost;
    else if (l == "disk")
      o.optimizer_state = Tier::kDisk;
    else
      throw Error("[offload] optimizer_state: '" + v + "' is not device, host or disk");
  } else if (key == "offload_dir") {
    HP_CHECK(!v.empty(), "[offload] offload_dir must not be empty");
    o.offload_dir = v;
  } else if (key == "offload") {
    o.params = o.grads = o.activations = false;
    std::string l = lower(v), item;
    if (l == "all") {
      o.params = o.grads = o.activations = true;
      return;
    }
    if (l == "none") return;
    std::istringstream is(l);
    while (std::getline(is, item, ',')) {
      item = trim(item);
      if (item == "params")
        o.params = true;
      else if (item == "grads")
        o.grads = true;
      else if (item == "activations")
        o.activations = true;
      else
        throw Error("[offload] offload: '" + item + "' is not params, grads or activations");
    }
  } else if (key == "recompute") {
    o.recompute = parse_bool(key, v);
  } else if (key == "auto") {
    o.auto_mode = parse_bool(key, v);
  } else if (key == "gflops") {
    o.gflops = parse_number(v, key);
    HP_CHECK(o.gflops > 0, "[offload] gflops must be > 0");
  } else if (key == "link_gbps") {
    o.link_gbps = parse_number(v, key);
    HP_CHECK(o.link_gbps > 0, "[offload] link_gbps must be > 0");
  } else if (key == "link_latency_us") {
    o.link_latency_us = parse_number(v, key);
    HP_CHECK(o.link_latency_us >= 0, "[offload] link_latency_us must be >= 0");
  } else if (key == "transfer_threads") {
    double t = parse_number(v, key);
    HP_CHECK(t >= 1 && t <= 64 && t == std::floor(t), "[offload] transfer_threads: '", v,
             "' must be an integer in [1, 64]");
    o.transfer_threads = int(t);
  } else if (key == "copies") {
    try {
      o.copies = parse_copy_mode(v);
    } catch (const Error&) {
      throw Error("[offload] copies: '" + v + "' must be inline or threads");
    }
  } else if (key == "timeout_ms") {
    double t = parse_number(v, key);
    HP_CHECK(t >= 1, "[offload] timeout_ms must be >= 1");
    o.timeout_ms = int64_t(t);
  } else {
    throw Error("[offload] unknown key '" + key +
                "' (device_budget, host_budget, optimizer_state, offload_dir, offload, recompute, "
                "auto, gflops, link_gbps, link_latency_us, transfer_threads, copies, timeout_ms)");
  }
}

OffloadOptions parse_offload(const io::YamlNode& section) {
  OffloadOptions o;
  if (section.is_null()) return o;
  HP_CHECK(section.is_map(), "[offload] ", section.where(), ": the offload section must be a map");
  section.check_keys({"device_budget", "host_budget", "optimizer_state", "offload_dir", "offload",
                      "recompute", "auto", "gflops", "link_gbps", "link_latency_us",
                      "transfer_threads", "copies", "timeout_ms"});
  for (auto& [key, node] : section.entries()) {
    std::string text;
    if (node.is_sequence()) {  // offload: [params, activations]
      for (auto& item : node.items()) {
        if (!text.empty()) text.push_back(',');
        text.append(item.as_string());
      }
    } else {
      text = node.as_string();
    }
    try {
      set_option(o, key, text);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " at " + node.where());
    }
  }
  return o;
}

OffloadOptions parse_offload_args(const std::vector<std::string>& kv) {
  OffloadOptions o;
  for (const auto& s : kv) {
    auto eq = s.find('=');
    HP_CHECK(eq != std::string::npos, "[offload] '", s, "' is not key=value");
    set_option(o, trim(s.substr(0, eq)), s.substr(eq + 1));
  }
  return o;
}

std::string OffloadOptions::str() const {
  std::ostringstream os;
  os << "offload:\n"
     << "  device_budget: " << device_budget.str() << "\n"
     << "  auto: " << (auto_mode ? "true" : "false") << "\n"
     << "  host_budget: " << (host_budget ? format_bytes(host_budget) : "unlimited") << "\n"
     << "  optimizer_state: " << tier_name(optimizer_state) << "\n"
     << "  offload_dir: " << offload_dir.string() << "\n"
     << "  offload: [" << (params ? "params " : "") << (grads ? "grads " : "")
     << (activations ? "activations" : "") << "]\n"
     << "  recompute: " << (recompute ? "true" : "false") << "\n"
     << "  gflops: " << gflops << "\n  link_gbps: " << link_gbps
     << "\n  link_latency_us: " << link_latency_us << "\n"
     << "  transfer_threads: " << transfer_threads << "\n  copies: " << copy_mode_name(copies)
     << "\n  timeout_ms: " << timeout_ms << "\n";
  return os.str();
}

}  // namespace hp::memory
