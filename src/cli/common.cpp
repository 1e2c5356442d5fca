// Built-in models (the small ones here, the large ones of examples/models embedded), the default
// job, the sgemm probe and formatting.
#include "cli/common.hpp"

#include <algorithm>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "hp/backend/cpu/gemm.hpp"
#include "hp/core/error.hpp"

namespace hp::cli {

namespace {
// Built-in configs in Hugging Face form.
const std::map<std::string, const char*>& builtins() {
  static const std::map<std::string, const char*> m = {
      {"gpt2-kjv",
       R"({"model_type": "gpt2", "n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 128,
           "vocab_size": 256, "layer_norm_epsilon": 1e-5})"},
      {"gpt2-tiny",
       R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 32,
           "vocab_size": 256, "layer_norm_epsilon": 1e-5})"},
      {"gpt2-124m",
       R"({"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024,
           "vocab_size": 50304, "layer_norm_epsilon": 1e-5})"},
      {"llama-kjv",
       R"({"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256,
           "intermediate_size": 688, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 128, "vocab_size": 256, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "tie_word_embeddings": false})"},
      {"vlm-tiny",
       R"({"model_type": "vlm", "projector_hidden_act": "gelu_pytorch_tanh",
           "vision_config": {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
             "num_attention_heads": 4, "image_size": 16, "patch_size": 4, "num_channels": 3,
             "layer_norm_eps": 1e-5, "hidden_act": "gelu_pytorch_tanh"},
           "text_config": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
             "intermediate_size": 172, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 64, "vocab_size": 256, "rms_norm_eps": 1e-6,
             "rope_theta": 10000.0, "tie_word_embeddings": false}})"},
  };
  return m;
}
}  // namespace

io::ModelConfig resolve_model(const std::string& s) {
  auto it = builtins().find(s);
  if (it != builtins().end()) return io::ModelConfig::from_json(io::parse_json(it->second, s), s);
  for (const auto& [name, text] : embedded_models())
    if (name == s) return io::ModelConfig::from_json(io::parse_json(text, s), s);
  HP_CHECK(std::filesystem::exists(s), "model '", s, "' is neither a built-in (", builtin_models(),
           ") nor an existing config.json or directory");
  const std::filesystem::path c = std::filesystem::path(s) / "case.json";
  if (std::filesystem::is_directory(s) &&
      !std::filesystem::exists(std::filesystem::path(s) / "config.json") &&
      std::filesystem::exists(c)) {  // a reference case (../shared/reference/*): its model
    std::ifstream in(c);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const io::Json j = io::parse_json(text, c.string());
    HP_CHECK(j.contains("model"), "model '", s, "': ", c.string(), " has no \"model\" config");
    return io::ModelConfig::from_json(j["model"], c.string());
  }
  return io::ModelConfig::load(s);
}

std::string builtin_models() {
  std::string out;
  for (auto& [k, v] : builtins()) out += (out.empty() ? "" : ", ") + k;
  for (auto& [k, v] : embedded_models()) out += ", " + k;
  return out;
}

void check_strategy_path(const std::string& spec) {
  const auto ends = [&](const std::string& x) {
    return spec.size() >= x.size() && spec.compare(spec.size() - x.size(), x.size(), x) == 0;
  };
  if (spec.find('/') == std::string::npos && !ends(".yaml") && !ends(".yml")) return;
  HP_CHECK(std::filesystem::is_regular_file(spec), "strategy file '", spec, "' not found");
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double sgemm_peak_gflops(int threads, int64_t m, int64_t n, int64_t k, double seconds) {
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(k * n), 0.25f), c(size_t(m * n));
  cpu::Context ctx{threads};
  cpu::gemm(ctx, false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  double best = 0, spent = 0;
  while (spent < seconds) {
    auto t0 = std::chrono::steady_clock::now();
    cpu::gemm(ctx, false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spent += dt;
    best = std::max(best, 2.0 * double(m) * double(n) * double(k) / dt / 1e9);
  }
  return best;
}

size_t max_rss_bytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return size_t(u.ru_maxrss) * 1024;  // Linux reports KiB
}

void report_step(const StepReport& r, bool json, bool tty, int64_t log_every, int64_t first,
                 FILE* human, const char* memory_unit) {
  const int64_t done = r.step + 1;
  const double tps = r.tokens / r.step_s, gflops = r.flops / r.step_s / 1e9;
  const double eta = r.mean_step_s * double(r.steps - done);
  const train::StepResult& res = r.result;
  if (json) {
    std::printf(
        "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.4f, "
        "\"tokens_per_s\": %.1f, \"gflops\": %.2f, \"peak_share\": %.4f, "
        "\"peak_bytes\": %zu, \"rss_increase_bytes\": %zu, \"step_s\": %.4f}\n",
        (long long)r.step, res.loss, res.lr, res.grad_norm, tps, gflops, gflops / r.peak_gflops,
        r.peak_bytes, r.rss_increase_bytes, r.step_s);
    std::fflush(stdout);
  }
  if (json && r.step % log_every != 0 && done != r.steps) return;
  const bool line = done % log_every == 0 || done == r.steps || r.step == first;
  if (!tty && !line) return;
  std::fprintf(human,
               "%sstep %lld/%lld | loss %.4f | %.0f tok/s | %.1f GFLOP/s (%.0f%% of sgemm) | "
               "peak %s%s | ETA %s%s",
               tty ? "\r" : "", (long long)done, (long long)r.steps, res.loss, tps, gflops,
               100.0 * gflops / r.peak_gflops, human_bytes(double(r.peak_bytes)).c_str(),
               memory_unit, human_seconds(eta).c_str(), tty && !line ? "   " : "\n");
  std::fflush(human);
}

uint64_t machine_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  uint64_t mem = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
  // A container's limit (cgroup v2, then v1) when it is lower; "max" or absent: none.
  for (const char* f :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(f);
    unsigned long long limit = 0;
    if (in >> limit && limit > 0 && (mem == 0 || limit < mem)) mem = limit;
  }
  return mem;
}

void check_fits_in_memory(uint64_t need, const std::string& what) {
  const uint64_t have = machine_memory_bytes();
  HP_CHECK(have == 0 || need <= have, what, " need ", need, " bytes (", human_bytes(double(need)),
           ") but this machine has ", have, " bytes (", human_bytes(double(have)), ") of memory");
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) b /= 1024, ++i;
  char buf[32];
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
  return buf;
}

std::string human_seconds(double s) {
  char buf[32];
  long t = long(std::lround(std::max(0.0, s)));
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

StopSignals::StopSignals() {
  stop_ = 0;
  sigemptyset(&set_);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, s);
  pthread_sigmask(SIG_BLOCK, &set_, &old_);
  watcher_ = std::thread([this] {
    const timespec tick{0, 50'000'000};  // 50 ms: the watcher notices its end in time
    while (!done_) {
      const int sig = sigtimedwait(&set_, nullptr, &tick);
      if (sig > 0) stop_ = sig;
    }
  });
}

StopSignals::~StopSignals() {
  done_ = true;
  watcher_.join();
  const timespec none{0, 0};
  while (sigtimedwait(&set_, nullptr, &none) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

}  // namespace hp::cli
