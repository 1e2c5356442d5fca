// CPU kernel throughput: sgemm at transformer shapes and fused causal attention fwd / bwd,
// each reported as GFLOP/s (counter "GFLOPS") at 1 and 2 threads.
// Not a comparison with a peer framework: that lives in the side-by-side scripts.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "hp/backend/cpu/attention.hpp"
#include "hp/backend/cpu/gemm.hpp"

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOPS"] =
      benchmark::Counter(flops_per_iter * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}

// Args: threads, M, N, K, transpose mode (0: NN y = x W, 1: NT, 2: TN weight gradient).
void BM_Sgemm(benchmark::State& state) {
  const hp::cpu::Context ctx{static_cast<int>(state.range(0))};
  const int64_t M = state.range(1), N = state.range(2), K = state.range(3);
  const int mode = static_cast<int>(state.range(4));
  const bool ta = mode == 2, tb = mode == 1;
  const auto A = random_vec(static_cast<size_t>(M * K), 1);
  const auto B = random_vec(static_cast<size_t>(K * N), 2);
  std::vector<float> C(static_cast<size_t>(M * N));
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  for (auto _ : state) {
    hp::cpu::gemm(ctx, ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(state, 2.0 * M * N * K);
}

// Forward and backward shapes of a linear layer over 1024 tokens, width in / out:
// y[T,out] = x[T,in] W[in,out] (NN), dx = dy W^T (NT), dW = x^T dy (TN).
void sgemm_args(benchmark::internal::Benchmark* b) {
  const int64_t tokens = 1024;
  const int64_t dims[][2] = {{256, 256}, {768, 768}, {768, 3072}, {3072, 768}, {1024, 1024}};
  for (int64_t threads : {1, 2}) {
    for (const auto& d : dims) {
      b->Args({threads, tokens, d[1], d[0], 0});  // forward
      b->Args({threads, tokens, d[0], d[1], 1});  // input gradient
      b->Args({threads, d[0], d[1], tokens, 2});  // weight gradient
    }
  }
  b->ArgNames({"threads", "M", "N", "K", "mode"});
}
BENCHMARK(BM_Sgemm)->Apply(sgemm_args)->Unit(benchmark::kMillisecond)->UseRealTime();

// Args: threads, batch, M, N, K; C_i = A_i B_i^T, the shape of unfused per-head attention.
void BM_SgemmBatched(benchmark::State& state) {
  const hp::cpu::Context ctx{static_cast<int>(state.range(0))};
  const int64_t batch = state.range(1), M = state.range(2), N = state.range(3), K = state.range(4);
  const auto A = random_vec(static_cast<size_t>(batch * M * K), 7);
  const auto B = random_vec(static_cast<size_t>(batch * N * K), 8);
  std::vector<float> C(static_cast<size_t>(batch * M * N));
  for (auto _ : state) {
    hp::cpu::gemm_batched(ctx, batch, false, true, M, N, K, 1.0f, A.data(), K, M * K, B.data(), K,
                          N * K, 0.0f, C.data(), N, M * N);
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(state, 2.0 * batch * M * N * K);
}
BENCHMARK(BM_SgemmBatched)
    ->ArgsProduct({{1, 2}, {32}, {128, 512}, {128, 512}, {64}})
    ->ArgNames({"threads", "batch", "M", "N", "K"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

struct AttnBuffers {
  hp::cpu::AttentionShape s;
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
  AttnBuffers(int64_t B, int64_t T, int64_t H, int64_t Dh) {
    s = {B, T, H, H, Dh, static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)))};
    const auto n = static_cast<size_t>(B * T * H * Dh);
    q = random_vec(n, 3);
    k = random_vec(n, 4);
    v = random_vec(n, 5);
    dout = random_vec(n, 6);
    out.resize(n);
    dq.resize(n);
    dk.resize(n);
    dv.resize(n);
    lse.resize(static_cast<size_t>(B * H * T));
  }
  // Causal forward: half of QK^T plus half of PV, 2 flops per multiply-add.
  double fwd_flops() const {
    return 0.5 * 4.0 * double(s.batch) * s.heads * s.seq * s.seq * s.head_dim;
  }
};

// Args: threads, B, T, H, Dh.
void BM_AttentionFwd(benchmark::State& state) {
  const hp::cpu::Context ctx{static_cast<int>(state.range(0))};
  AttnBuffers a(state.range(1), state.range(2), state.range(3), state.range(4));
  for (auto _ : state) {
    hp::cpu::attention_fwd(ctx, a.s, a.q.data(), a.k.data(), a.v.data(), a.out.data(),
                           a.lse.data());
    benchmark::DoNotOptimize(a.out.data());
  }
  set_flops(state, a.fwd_flops());
}

// Backward: five tile products against the forward's two, so 2.5x the forward's flops.
void BM_AttentionBwd(benchmark::State& state) {
  const hp::cpu::Context ctx{static_cast<int>(state.range(0))};
  AttnBuffers a(state.range(1), state.range(2), state.range(3), state.range(4));
  hp::cpu::attention_fwd(ctx, a.s, a.q.data(), a.k.data(), a.v.data(), a.out.data(), a.lse.data());
  for (auto _ : state) {
    hp::cpu::attention_bwd(ctx, a.s, a.q.data(), a.k.data(), a.v.data(), a.out.data(), a.lse.data(),
                           a.dout.data(), a.dq.data(), a.dk.data(), a.dv.data());
    benchmark::DoNotOptimize(a.dq.data());
  }
  set_flops(state, 2.5 * a.fwd_flops());
}

void attention_args(benchmark::internal::Benchmark* b) {
  for (int64_t threads : {1, 2}) {
    b->Args({threads, 8, 128, 4, 64});  // the GPT-2 block benchmark shape
    b->Args({threads, 1, 512, 8, 64});
    b->Args({threads, 1, 1024, 8, 128});
  }
  b->ArgNames({"threads", "B", "T", "H", "Dh"});
}
BENCHMARK(BM_AttentionFwd)->Apply(attention_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionBwd)->Apply(attention_args)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
