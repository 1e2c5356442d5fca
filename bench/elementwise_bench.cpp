// Memory throughput (GB/s) of the row kernels that dominate non-GEMM time: layer norm, bias +
// gelu, softmax and cross-entropy, forward and backward, at rows = 1024, cols in {256, 1024}.
// Not a correctness check (tests/backend/cpu/backend_cpu_test.cpp is); bytes counted are the
// minimum each kernel must read and write once.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "hp/backend/cpu/kernels.hpp"

namespace {

using hp::cpu::Context;

constexpr int64_t kRows = 1024;

std::vector<float> random_vec(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(gen);
  return v;
}

// Threads come from the benchmark's second argument so 1 and 2 threads run side by side.
Context ctx_of(const benchmark::State& state) {
  return Context{static_cast<int>(state.range(1))};
}

void set_bytes(benchmark::State& state, int64_t floats_moved) {
  state.SetBytesProcessed(state.iterations() * floats_moved * 4);
}

void BM_LayerNormFwd(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto x = random_vec(kRows * cols, 1), g = random_vec(cols, 2), b = random_vec(cols, 3);
  std::vector<float> y(x.size()), mean(kRows), rstd(kRows);
  const Context ctx = ctx_of(state);
  for (auto _ : state) {
    hp::cpu::layer_norm_fwd(ctx, x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(),
                            kRows, cols, 1e-5f);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 2 * kRows * cols);  // read x, write y
}

void BM_LayerNormBwd(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto x = random_vec(kRows * cols, 1), g = random_vec(cols, 2), b = random_vec(cols, 3);
  const auto dy = random_vec(kRows * cols, 4);
  std::vector<float> y(x.size()), mean(kRows), rstd(kRows), dx(x.size()), dg(cols), db(cols);
  const Context ctx = ctx_of(state);
  hp::cpu::layer_norm_fwd(ctx, x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(),
                          kRows, cols, 1e-5f);
  for (auto _ : state) {
    hp::cpu::layer_norm_bwd(ctx, dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(),
                            dg.data(), db.data(), kRows, cols);
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(state, 3 * kRows * cols);  // read dy and x, write dx
}

void BM_BiasGeluFwd(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto x = random_vec(kRows * cols, 1), bias = random_vec(cols, 2);
  std::vector<float> y(x.size());
  const Context ctx = ctx_of(state);
  for (auto _ : state) {
    hp::cpu::bias_gelu_fwd(ctx, x.data(), bias.data(), y.data(), kRows, cols);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 2 * kRows * cols);
}

void BM_BiasGeluBwd(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto x = random_vec(kRows * cols, 1), bias = random_vec(cols, 2);
  const auto dy = random_vec(kRows * cols, 3);
  std::vector<float> dx(x.size()), db(cols);
  const Context ctx = ctx_of(state);
  for (auto _ : state) {
    hp::cpu::bias_gelu_bwd(ctx, x.data(), bias.data(), dy.data(), dx.data(), db.data(), kRows,
                           cols);
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(state, 3 * kRows * cols);
}

void BM_SoftmaxFwd(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto x = random_vec(kRows * cols, 1);
  std::vector<float> y(x.size());
  const Context ctx = ctx_of(state);
  for (auto _ : state) {
    hp::cpu::softmax_fwd(ctx, x.data(), y.data(), kRows, cols);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, 2 * kRows * cols);
}

void BM_SoftmaxBwd(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto x = random_vec(kRows * cols, 1), dy = random_vec(kRows * cols, 2);
  std::vector<float> y(x.size()), dx(x.size());
  const Context ctx = ctx_of(state);
  hp::cpu::softmax_fwd(ctx, x.data(), y.data(), kRows, cols);
  for (auto _ : state) {
    hp::cpu::softmax_bwd(ctx, y.data(), dy.data(), dx.data(), kRows, cols);
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(state, 3 * kRows * cols);
}

void BM_CrossEntropyFwdBwd(benchmark::State& state) {
  const int64_t vocab = state.range(0);
  const auto logits = random_vec(kRows * vocab, 1);
  std::vector<int64_t> targets(kRows);
  for (int64_t r = 0; r < kRows; ++r) targets[r] = (r * 7919) % vocab;
  std::vector<float> lse(kRows), dlogits(logits.size());
  const Context ctx = ctx_of(state);
  for (auto _ : state) {
    const float loss = hp::cpu::cross_entropy_fwd(ctx, logits.data(), targets.data(), lse.data(),
                                                  kRows, vocab, -100);
    hp::cpu::cross_entropy_bwd(ctx, logits.data(), targets.data(), lse.data(), 1.0f, dlogits.data(),
                               kRows, vocab, -100);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(dlogits.data());
  }
  set_bytes(state, 3 * kRows * vocab);  // read logits twice, write dlogits
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t cols : {256, 1024})
    for (int64_t threads : {1, 2}) b->Args({cols, threads});
  b->ArgNames({"cols", "threads"});
}

BENCHMARK(BM_LayerNormFwd)->Apply(shapes);
BENCHMARK(BM_LayerNormBwd)->Apply(shapes);
BENCHMARK(BM_BiasGeluFwd)->Apply(shapes);
BENCHMARK(BM_BiasGeluBwd)->Apply(shapes);
BENCHMARK(BM_SoftmaxFwd)->Apply(shapes);
BENCHMARK(BM_SoftmaxBwd)->Apply(shapes);
BENCHMARK(BM_CrossEntropyFwdBwd)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
