// `hp bench offload`: trains a GPT-2 under each offload configuration and prints tokens/s, peak
// device memory, and predicted vs measured stall, each as a ratio to the unconstrained run. The
// simulator is calibrated first: compute rate from the unconstrained step, link from a memcpy.
#include "hp/memory/bench.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "hp/error.hpp"
#include "hp/memory/trainer.hpp"

namespace hp::memory {

namespace {
struct Row {
  std::string name;
  double tokens_per_s = 0;
  size_t peak = 0, budget = 0;
  double predicted_stall = 0, measured_stall = 0, step_s = 0;
  int transfers = 0, recomputed = 0;
};

Tensor random_tokens(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v(size_t(b * t));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& e : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = int64_t(x % uint64_t(vocab));
  }
  return Tensor::from_i64({b, t}, v);
}

// Bytes per second of one thread's memcpy of 64 MiB (the transfer engine's copy on this machine).
double memcpy_bandwidth() {
  const size_t n = size_t(64) << 20;
  std::vector<char> a(n, 1), b(n, 0);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), n);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return double(n) / best;
}
}  // namespace

int bench_main(const std::vector<std::string>& args) {
  int64_t layers = 12, d = 768, heads = 12, seq = 128, batch = 2, vocab = 50304, steps = 2;
  int threads = 2;
  std::string dir = "offload_bench";
  bool show = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto next = [&]() -> std::string {
      HP_CHECK(i + 1 < args.size(), "[bench offload] ", args[i], " needs a value");
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--layers")
      layers = std::stoll(next());
    else if (a == "--d-model")
      d = std::stoll(next());
    else if (a == "--heads")
      heads = std::stoll(next());
    else if (a == "--seq")
      seq = std::stoll(next());
    else if (a == "--batch")
      batch = std::stoll(next());
    else if (a == "--vocab")
      vocab = std::stoll(next());
    else if (a == "--steps")
      steps = std::stoll(next());
    else if (a == "--threads")
      threads = int(std::stoll(next()));
    else if (a == "--offload-dir")
      dir = next();
    else if (a == "--explain")
      show = true;
    else
      throw Error("[bench offload] unknown option '" + a + "'");
  }
  HP_CHECK(steps >= 1 && batch >= 1 && threads >= 1, "[bench offload] steps, batch, threads >= 1");
  io::Json j = {{"model_type", "gpt2"},
                {"n_layer", layers},
                {"n_embd", d},
                {"n_head", heads},
                {"n_positions", std::max<int64_t>(seq, 1024)},
                {"vocab_size", vocab}};
  const io::ModelConfig cfg = io::ModelConfig::from_json(j, "bench");
  const io::TensorMap init = nn::init_params(cfg, 1234);
  const Tensor tok = random_tokens(batch, seq, vocab, 1), tgt = random_tokens(batch, seq, vocab, 2);

  struct Config {
    std::string name, budget, state;
  };
  const std::vector<Config> configs = {{"unconstrained", "", "device"},
                                       {"budget 50%", "50%", "host"},
                                       {"budget 25%", "25%", "host"},
                                       {"optimizer on disk", "", "disk"}};
  std::printf(
      "hp bench offload: GPT-2 %lld layers, D=%lld, T=%lld, B=%lld, vocab %lld, %d "
      "threads, %lld timed steps (+1 warm-up)\n",
      (long long)layers, (long long)d, (long long)seq, (long long)batch, (long long)vocab, threads,
      (long long)steps);
  std::vector<Row> rows;
  const double link_gbps = memcpy_bandwidth() / 1e9;
  double gflops = 0;  // measured by the unconstrained run, used by the plans after it
  for (const Config& c : configs) {
    OffloadTrainConfig tc;
    tc.batch = batch;
    tc.seq = seq;
    tc.threads = threads;
    if (!c.budget.empty()) set_option(tc.offload, "device_budget", c.budget);
    set_option(tc.offload, "optimizer_state", c.state);
    tc.offload.offload_dir = dir;
    if (gflops > 0) tc.offload.gflops = gflops, tc.offload.link_gbps = link_gbps;
    OffloadTrainer tr(cfg, init, tc);
    Row r;
    r.name = c.name;
    r.budget = tr.device_budget();
    SimResult sim;
    if (const OffloadPlan* p = tr.plan()) {
      CostModel cm;
      cm.gflops = tc.offload.gflops;
      cm.link_bytes_per_s = tc.offload.link_gbps * 1e9;
      sim = simulate(*p, cm);
      r.transfers = int(p->transfers.size());
      r.recomputed = p->recomputed;
      if (show) std::cout << c.name << ":\n" << explain(*p, sim, 30) << "\n";
    }
    tr.step(tok, tgt);  // warm-up
    double secs = 0, stall = 0;
    for (int64_t s = 0; s < steps; ++s) {
      OffloadStep st = tr.step(tok, tgt);
      secs += st.seconds;
      stall += st.stall_seconds;
    }
    r.step_s = secs / double(steps);
    r.tokens_per_s = double(batch * seq) / r.step_s;
    r.peak = tr.device().peak_bytes();
    r.measured_stall = stall / double(steps);
    r.predicted_stall = sim.stall_s;
    if (gflops == 0) {
      gflops = tr.flops_per_step() / r.step_s / 1e9;
      std::printf(
          "calibrated cost model: %.1f GFLOP/s (unconstrained step), link %.1f GB/s "
          "(memcpy)\n",
          gflops, link_gbps);
    }
    rows.push_back(r);
    std::filesystem::remove_all(dir);
  }
  const Row& base = rows[0];
  std::printf("\n%-18s %10s %8s %12s %8s %12s %10s %10s %9s %6s\n", "config", "tokens/s", "ratio",
              "peak MiB", "ratio", "budget MiB", "pred stall", "meas stall", "transfers", "recomp");
  for (const Row& r : rows) {
    std::printf("%-18s %10.1f %8.3f %12.1f %8.3f %12.1f %8.1fms %8.1fms %9d %6d\n", r.name.c_str(),
                r.tokens_per_s, r.tokens_per_s / base.tokens_per_s, double(r.peak) / 1048576.0,
                double(r.peak) / double(base.peak), double(r.budget) / 1048576.0,
                r.predicted_stall * 1e3, r.measured_stall * 1e3, r.transfers, r.recomputed);
  }
  return 0;
}

}  // namespace hp::memory
