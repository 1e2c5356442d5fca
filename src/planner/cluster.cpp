// Cluster YAML: parsing, checks that name the file and key, the embedded presets.
#include "hp/planner/cluster.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::planner {

namespace {

constexpr double kGB = 1e9;                    // bandwidths are written in GB/s
constexpr double kGiB = 1024.0 * 1024 * 1024;  // memories in GiB

// A positive number at `key` of `n`; errors name the file, line and key.
double positive(const io::YamlNode& n, const std::string& key) {
  const io::YamlNode v = n[key];
  const double x = v.as_double();
  HP_CHECK(x > 0, "[cluster] ", v.where(), ": ", key, " must be positive, got ", x);
  return x;
}

Tier parse_tier(const io::YamlNode& t) {
  t.check_keys({"name", "devices", "bandwidth_gbps", "latency_us"});
  Tier tier;
  tier.name = t["name"].as_string();
  tier.devices = t["devices"].as_int();
  HP_CHECK(tier.devices >= 0, "[cluster] ", t["devices"].where(),
           ": devices must be >= 0 (0: all)");
  tier.bandwidth = positive(t, "bandwidth_gbps") * kGB;
  const io::YamlNode lat = t["latency_us"];
  tier.latency = lat.as_double() * 1e-6;
  HP_CHECK(tier.latency >= 0, "[cluster] ", lat.where(), ": latency_us must be >= 0");
  return tier;
}

void check_tiers(const io::YamlNode& node, const std::vector<Tier>& tiers) {
  HP_CHECK(!tiers.empty(), "[cluster] ", node.where(), ": at least one tier is needed");
  for (size_t i = 0; i < tiers.size(); ++i) {
    const bool last = i + 1 == tiers.size();
    const std::string at = node.items()[i].where();
    HP_CHECK(last == (tiers[i].devices == 0), "[cluster] ", at, ": ",
             last ? "the outermost tier must have devices: 0 (everyone)"
                  : "only the outermost tier may have devices: 0");
    if (i > 0 && !last)
      HP_CHECK(
          tiers[i].devices > tiers[i - 1].devices && tiers[i].devices % tiers[i - 1].devices == 0,
          "[cluster] ", at, ": a tier of ", tiers[i].devices,
          " devices does not nest the one inside it (", tiers[i - 1].devices, ")");
  }
}

// A share of a peak at `key` of `n`: in (0, most].
double share(const io::YamlNode& n, const std::string& key, double most = 1) {
  const io::YamlNode v = n[key];
  const double x = v.as_double();
  HP_CHECK(x > 0 && x <= most, "[cluster] ", v.where(), ": ", key, " must be in (0, ", most,
           "], got ", x);
  return x;
}

// The `efficiency:` section: every key optional but the ones given checked.
Efficiency parse_efficiency(const io::YamlNode& e) {
  e.check_keys({"gemm", "attention", "memory", "memory_split", "network", "usable_memory",
                "overlap", "per_tensor_collectives", "pipeline_fused", "pipeline_split",
                "optimizer", "attention_in_memory"});
  Efficiency eff;
  if (auto g = e.get("gemm")) {
    if (g->is_sequence()) {
      for (const io::YamlNode& s : g->items()) {
        s.check_keys({"m", "k", "n", "share"});
        eff.gemm_shapes.push_back(
            {positive(s, "m"), positive(s, "k"), positive(s, "n"), share(s, "share")});
      }
      HP_CHECK(!eff.gemm_shapes.empty(), "[cluster] ", g->where(), ": gemm lists no shape");
      std::sort(
          eff.gemm_shapes.begin(), eff.gemm_shapes.end(),
          [](const GemmShape& a, const GemmShape& b) { return a.m * a.k * a.n < b.m * b.k * b.n; });
      eff.gemm = eff.gemm_shapes.back().share;
    } else {
      eff.gemm = share(e, "gemm");
    }
  }
  if (e.has("attention")) eff.attention = share(e, "attention");
  if (e.has("memory")) eff.memory = share(e, "memory", kMaxMemoryShare);
  if (e.has("memory_split")) eff.memory_split = share(e, "memory_split", kMaxMemoryShare);
  if (e.has("optimizer")) eff.optimizer = share(e, "optimizer", kMaxMemoryShare);
  if (e.has("network")) eff.network = share(e, "network");
  if (e.has("usable_memory")) eff.usable_memory = share(e, "usable_memory");
  if (auto o = e.get("overlap")) eff.overlap = o->as_bool();
  if (auto o = e.get("per_tensor_collectives")) eff.per_tensor_collectives = o->as_bool();
  if (auto o = e.get("attention_in_memory")) eff.attention_in_memory = o->as_bool();
  if (e.has("pipeline_fused")) eff.pipeline_fused = positive(e, "pipeline_fused");
  if (e.has("pipeline_split")) eff.pipeline_split = positive(e, "pipeline_split");
  return eff;
}

}  // namespace

double Efficiency::gemm_share(double m, double k, double n) const {
  if (gemm_shapes.empty()) return gemm;
  double sum = 0, weights = 0;
  for (const GemmShape& g : gemm_shapes) {
    const double dm = std::log(m / g.m), dk = std::log(k / g.k), dn = std::log(n / g.n);
    const double d2 = dm * dm + dk * dk + dn * dn;
    if (d2 < 1e-18) return g.share;
    sum += g.share / (d2 * d2), weights += 1 / (d2 * d2);
  }
  return sum / weights;
}

const Tier& Cluster::tier_for_span(int64_t span) const {
  for (const Tier& t : tiers)
    if (t.devices == 0 || span <= t.devices) return t;
  return tiers.back();
}

std::string Cluster::str() const {
  char b[256];
  std::snprintf(b, sizeof b, "%s: %lld x %s (%.0f TFLOP/s bf16, %.1f GiB, host link %.0f GB/s)",
                name.c_str(), (long long)devices, device_name.c_str(), peak_flops / 1e12,
                memory_bytes / kGiB, host_bandwidth / kGB);
  std::string out = b;
  for (const Tier& t : tiers) {
    std::snprintf(b, sizeof b, " | %s %s: %.0f GB/s, %.0f us", t.name.c_str(),
                  t.devices ? std::to_string(t.devices).c_str() : "all", t.bandwidth / kGB,
                  t.latency * 1e6);
    out += b;
  }
  return out;
}

Cluster parse_cluster(const io::YamlNode& root) {
  HP_CHECK(root.is_map(), "[cluster] ", root.where(), ": expected a map (name, device, tiers)");
  root.check_keys({"name", "devices", "device", "host", "tiers", "efficiency"});
  Cluster c;
  c.file = root.where();
  c.name = root["name"].as_string();
  c.devices = root["devices"].as_int();
  HP_CHECK(c.devices >= 1, "[cluster] ", root["devices"].where(), ": devices must be >= 1");
  const io::YamlNode dev = root["device"];
  dev.check_keys(
      {"name", "peak_bf16_tflops", "peak_f32_tflops", "memory_gib", "memory_bandwidth_gbps"});
  c.device_name = dev["name"].as_string();
  const bool f32 = dev.has("peak_f32_tflops");
  HP_CHECK(f32 != dev.has("peak_bf16_tflops"), "[cluster] ", dev.where(),
           ": give one of peak_bf16_tflops and peak_f32_tflops (the precision the device trains "
           "in)");
  c.peak_flops = positive(dev, f32 ? "peak_f32_tflops" : "peak_bf16_tflops") * 1e12;
  c.element_bytes = f32 ? 4 : 2;
  c.memory_bytes = positive(dev, "memory_gib") * kGiB;
  c.memory_bandwidth = positive(dev, "memory_bandwidth_gbps") * kGB;
  const io::YamlNode host = root["host"];
  host.check_keys({"memory_gib", "bandwidth_gbps"});
  c.host_memory_bytes = positive(host, "memory_gib") * kGiB;
  c.host_bandwidth = positive(host, "bandwidth_gbps") * kGB;
  const io::YamlNode tiers = root["tiers"];
  for (const auto& t : tiers.items()) c.tiers.push_back(parse_tier(t));
  check_tiers(tiers, c.tiers);
  if (auto e = root.get("efficiency")) c.efficiency = parse_efficiency(*e);
  return c;
}

std::string cluster_yaml(const Cluster& c, const std::string& comment) {
  std::ostringstream y;
  y.precision(6);
  std::istringstream lines(comment);
  for (std::string line; std::getline(lines, line);) y << "# " << line << "\n";
  y << "name: " << c.name << "\ndevices: " << c.devices << "\ndevice:\n  name: \"" << c.device_name
    << "\"\n  " << (c.element_bytes == 4 ? "peak_f32_tflops: " : "peak_bf16_tflops: ")
    << c.peak_flops / 1e12 << "\n  memory_gib: " << c.memory_bytes / kGiB
    << "\n  memory_bandwidth_gbps: " << c.memory_bandwidth / kGB
    << "\nhost:\n  memory_gib: " << c.host_memory_bytes / kGiB
    << "\n  bandwidth_gbps: " << c.host_bandwidth / kGB << "\ntiers:\n";
  for (const Tier& t : c.tiers)
    y << "  - {name: " << t.name << ", devices: " << t.devices
      << ", bandwidth_gbps: " << t.bandwidth / kGB << ", latency_us: " << t.latency * 1e6 << "}\n";
  if (!c.efficiency) return y.str();
  const Efficiency& e = *c.efficiency;
  y << "efficiency:\n";
  if (e.gemm_shapes.empty()) {
    y << "  gemm: " << e.gemm << "\n";
  } else {
    y << "  gemm:\n";
    for (const GemmShape& g : e.gemm_shapes)
      y << "    - {m: " << g.m << ", k: " << g.k << ", n: " << g.n << ", share: " << g.share
        << "}\n";
  }
  y << "  attention: " << e.attention << "\n  memory: " << e.memory << "\n  network: " << e.network
    << "\n  usable_memory: " << e.usable_memory << "\n  overlap: " << (e.overlap ? "true" : "false")
    << "\n  per_tensor_collectives: " << (e.per_tensor_collectives ? "true" : "false")
    << "\n  pipeline_fused: " << e.pipeline_fused << "\n  pipeline_split: " << e.pipeline_split
    << "\n";
  if (e.memory_split > 0) y << "  memory_split: " << e.memory_split << "\n";
  if (e.optimizer > 0) y << "  optimizer: " << e.optimizer << "\n";
  if (e.attention_in_memory) y << "  attention_in_memory: true\n";
  return y.str();
}

std::filesystem::path local_cluster_path() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  const std::filesystem::path base = xdg && *xdg     ? std::filesystem::path(xdg)
                                     : home && *home ? std::filesystem::path(home) / ".config"
                                                     : std::filesystem::path(".config");
  return base / "hp" / "cluster-local.yaml";
}

Cluster parse_cluster_text(const std::string& text, const std::string& file) {
  return parse_cluster(io::YamlNode::parse(text, file));
}

Cluster load_cluster(const std::filesystem::path& path) {
  return parse_cluster(io::YamlNode::load_file(path));
}

std::string cluster_presets() {
  std::string out;
  for (const auto& [name, text] : embedded_clusters()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

Cluster resolve_cluster(const std::string& spec) {
  std::string what = spec, count;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos) what = spec.substr(0, colon), count = spec.substr(colon + 1);
  Cluster c;
  bool found = false;
  for (const auto& [name, text] : embedded_clusters())
    if (name == what) c = parse_cluster_text(text, "<preset " + name + ">"), found = true;
  if (!found && what == "local") {
    const std::filesystem::path p = local_cluster_path();
    HP_CHECK(std::filesystem::exists(p),
             "[cluster] 'local' is this machine as measured by hp "
             "calibrate, and there is no calibration at ",
             p.string(),
             ": run `hp calibrate` first "
             "(or pass the file it wrote with --cluster FILE)");
    c = load_cluster(p), found = true;
  }
  if (!found) {
    HP_CHECK(std::filesystem::exists(what), "[cluster] '", what, "' is neither a preset (",
             cluster_presets(), ") nor an existing cluster YAML file");
    c = load_cluster(what);
  }
  if (!count.empty()) {
    size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(count, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    HP_CHECK(used == count.size() && n >= 1, "[cluster] '", spec,
             "': the device count after ':' must be a positive integer, got '", count, "'");
    c.devices = n;
  }
  for (const Tier& t : c.tiers)
    HP_CHECK(t.devices == 0 || c.devices <= t.devices || c.devices % t.devices == 0, "[cluster] ",
             c.name, ": ", c.devices, " devices do not fill whole ", t.name, " domains of ",
             t.devices);
  return c;
}

}  // namespace hp::planner
