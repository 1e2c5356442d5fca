// The machine measurements shared by hp bench comm, hp bench offload and hp calibrate.
#include "cli/probes.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"

namespace hp::cli {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

double memcpy_gbps(size_t bytes, int threads) {
  std::vector<std::vector<char>> a(size_t(threads), std::vector<char>(bytes, 1)),
      b(size_t(threads), std::vector<char>(bytes, 2));
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { std::memcpy(b[size_t(t)].data(), a[size_t(t)].data(), bytes); });
    for (auto& th : pool) th.join();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return double(bytes) / best / 1e9;
}

const char* coll_name(Coll c) {
  return c == Coll::kAllReduce   ? "all_reduce"
         : c == Coll::kAllGather ? "all_gather"
                                 : "reduce_scatter";
}

double bus_factor(Coll c, int n) {
  if (n <= 1) return 1.0;
  return c == Coll::kAllReduce ? 2.0 * (n - 1) / n : double(n - 1) / n;
}

comm::Work issue_collective(comm::Communicator& c, Coll k, const float* in, float* out,
                            size_t total) {
  const size_t n = size_t(c.size());
  switch (k) {
    case Coll::kAllReduce:
      return c.all_reduce(in, out, total, DType::kF32, comm::ReduceOp::kSum);
    case Coll::kAllGather:
      return c.all_gather(in, out, total / n, DType::kF32);
    case Coll::kReduceScatter:
      return c.reduce_scatter(in, out, total / n, DType::kF32, comm::ReduceOp::kSum);
  }
  return {};
}

double time_collective(comm::Communicator& c, int iters, int warmup,
                       const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  c.barrier().wait(std::chrono::minutes(5));
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) fn();
  double t = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
  // Agree on the slowest rank's time (a collective of its own, not timed).
  double all = t;
  c.all_reduce(&t, &all, 1, DType::kI64, comm::ReduceOp::kMax).wait(std::chrono::minutes(1));
  return all;
}

Link calibrate_link(memory::TransferEngine& engine) {
  auto median_seconds = [&](size_t n, int reps) {
    // Buffers as the tiers allocate them (huge pages where the kernel gives them).
    auto mem = std::make_shared<Allocator>("calibration", 0, Tier::kHost);
    Storage sa(mem, n), sb(mem, n);
    char *a = static_cast<char*>(sa.data()), *b = static_cast<char*>(sb.data());
    std::memset(a, 1, n);
    std::memset(b, 0, n);
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      auto t0 = Clock::now();
      engine.copy(b, a, n).wait(std::chrono::seconds(60));
      t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const size_t big = size_t(64) << 20, small = size_t(256) << 10;
  Link l;
  const double bw = double(big) / median_seconds(big, 9);
  l.gbps = bw / 1e9;
  l.latency_us = std::max(0.0, median_seconds(small, 41) - double(small) / bw) * 1e6;
  return l;
}

}  // namespace hp::cli
