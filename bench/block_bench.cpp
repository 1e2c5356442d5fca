// One GPT-2 block, forward + backward, against the oneDNN sgemm peak measured in the same run:
// prints sgemm GFLOP/s at the block's GEMM shapes, the block's achieved GFLOP/s, their ratio,
// and where the block's time goes per op.
// Usage: bench_block [--threads K] [--batch B] [--seq T] [--dim D] [--heads H] [--iters N]
// Not a model benchmark: bench/compare_torch.sh trains whole models against PyTorch.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "hp/autodiff/grad.hpp"
#include "hp/backend/cpu/gemm.hpp"
#include "hp/core/rng.hpp"
#include "hp/nn/model.hpp"
#include "hp/ops/ops.hpp"
#include "hp/runtime/executor.hpp"

using namespace hp;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Tensor random_tensor(const Shape& s, uint64_t stream, double std_) {
  Tensor t(s, DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.f32()[i] = float(std_ * rng::normal(7, stream, uint64_t(i)));
  return t;
}

// Best-of sgemm GFLOP/s for C[m,n] = op(A) op(B) with inner k.
double sgemm_gflops(int threads, bool ta, bool tb, int64_t m, int64_t n, int64_t k, int iters) {
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(k * n), 0.25f), c(size_t(m * n));
  cpu::Context ctx{threads};
  double best = 1e30;
  for (int i = 0; i < iters + 1; ++i) {
    double t0 = now();
    cpu::gemm(ctx, ta, tb, m, n, k, 1.0f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.0f,
              c.data(), n);
    if (i > 0) best = std::min(best, now() - t0);
  }
  return 2.0 * double(m) * double(n) * double(k) / best / 1e9;
}

int64_t arg(int argc, char** argv, const char* name, int64_t dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return std::stoll(argv[i + 1]);
  return dflt;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = int(arg(argc, argv, "--threads", 2));
  const int64_t B = arg(argc, argv, "--batch", 8), T = arg(argc, argv, "--seq", 128);
  const int64_t D = arg(argc, argv, "--dim", 256), H = arg(argc, argv, "--heads", 4);
  const int iters = int(arg(argc, argv, "--iters", 20));
  const int64_t M = B * T;

  // The block's GEMMs: forward x W, input gradient dy W^T, weight gradient x^T dy.
  struct Shape3 {
    const char* what;
    bool ta, tb;
    int64_t m, n, k;
  };
  const Shape3 shapes[] = {
      {"qkv fwd", false, false, M, 3 * D, D}, {"qkv dW", true, false, D, 3 * D, M},
      {"qkv dX", false, true, M, D, 3 * D},   {"fc fwd", false, false, M, 4 * D, D},
      {"fc dW", true, false, D, 4 * D, M},    {"proj fwd", false, false, M, D, 4 * D},
      {"proj dX", false, true, M, 4 * D, D},  {"attn-out fwd", false, false, M, D, D},
  };
  // The peak is the best shape's best time, measured before and after the block so that a
  // noisy neighbour during one of the two does not lower it.
  double peak = 0;
  std::vector<double> best_of(std::size(shapes), 0.0);
  auto measure_peak = [&] {
    for (size_t i = 0; i < std::size(shapes); ++i) {
      const auto& s = shapes[i];
      best_of[i] = std::max(best_of[i], sgemm_gflops(threads, s.ta, s.tb, s.m, s.n, s.k, iters));
      peak = std::max(peak, best_of[i]);
    }
  };
  measure_peak();

  io::ModelConfig cfg = io::ModelConfig::from_json({{"model_type", "gpt2"},
                                                    {"n_layer", 1},
                                                    {"n_embd", D},
                                                    {"n_head", H},
                                                    {"n_positions", T},
                                                    {"vocab_size", 256}},
                                                   "bench");
  ir::Graph g;
  nn::ParamVars P;
  std::vector<ir::Var> wrt;
  std::map<ir::ValueId, Tensor> feeds;
  for (const auto& pi : nn::param_infos(cfg)) {
    if (pi.name.rfind("h.0.", 0) != 0) continue;
    P[pi.name] = g.param(pi.name, pi.shape);
    wrt.push_back(P[pi.name]);
    feeds[P[pi.name].id] = pi.init_std > 0 ? random_tensor(pi.shape, wrt.size(), pi.init_std)
                                           : Tensor::zeros(pi.shape);
  }
  ir::Var x = g.param("x", {B, T, D});
  ir::Var r = g.input("r", {{B, T, D}, DType::kF32});
  feeds[x.id] = random_tensor({B, T, D}, 1000, 1.0);
  feeds[r.id] = random_tensor({B, T, D}, 1001, 1.0);
  wrt.push_back(x);
  ir::Var y = nn::block(cfg, P, 0, x);
  ir::Var loss = sum(y * r);
  auto grads = autodiff::grad(loss, wrt);
  std::vector<ir::ValueId> outs{loss.id};
  for (auto& gv : grads) outs.push_back(gv.id);
  runtime::Program prog = runtime::compile(g, outs);
  runtime::Executor ex(prog, default_allocator(), runtime::Context{threads});
  for (auto& [v, t] : feeds) ex.bind(v, t);
  ex.run();  // warm-up
  ex.set_profile(true);
  double best = 1e30, total = 0;
  for (int i = 0; i < iters; ++i) {
    double t0 = now();
    ex.run();
    double dt = now() - t0;
    best = std::min(best, dt);
    total += dt;
  }
  measure_peak();
  std::printf("oneDNN sgemm, %d threads (GFLOP/s, best of two rounds):\n", threads);
  for (size_t i = 0; i < std::size(shapes); ++i) {
    const auto& s = shapes[i];
    std::printf("  %-13s [%lld x %lld] x [%lld x %lld]%s%s : %7.1f\n", s.what, (long long)s.m,
                (long long)s.k, (long long)s.k, (long long)s.n, s.ta ? " A^T" : "",
                s.tb ? " B^T" : "", best_of[i]);
  }
  const double gf = prog.flops / best / 1e9;
  std::printf(
      "GPT-2 block fwd+bwd, B=%lld T=%lld D=%lld H=%lld, %d threads: %.2f ms, %.2f GFLOP "
      "-> %.1f GFLOP/s = %.0f%% of the sgemm peak (%.1f GFLOP/s)\n",
      (long long)B, (long long)T, (long long)D, (long long)H, threads, best * 1e3, prog.flops / 1e9,
      gf, 100.0 * gf / peak, peak);
  std::vector<std::pair<double, std::string>> ops;
  for (auto& [k, v] : ex.profile()) ops.push_back({v, k});
  std::sort(ops.rbegin(), ops.rend());
  std::printf("time per op (share of the block):");
  for (auto& [v, k] : ops) std::printf(" %s %.0f%%", k.c_str(), 100.0 * v / total);
  std::printf("\n");
  return 0;
}
