// The machine measurements shared by hp bench comm, hp bench offload and hp calibrate.
#include "cli/probes.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include <unistd.h>

#include "hp/backend/cpu/context.hpp"
#include "hp/backend/cpu/gemm.hpp"
#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"

namespace hp::cli {

namespace {
using Clock = std::chrono::steady_clock;

// Seconds each of `reps` rounds took, a round being job(t) on `threads` threads at once.
template <typename Job>
std::vector<double> round_seconds(int threads, int reps, const Job& job) {
  std::vector<double> out;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { job(size_t(t)); });
    for (auto& th : pool) th.join();
    out.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return out;
}
}  // namespace

double memcpy_gbps(size_t bytes, int threads) {
  std::vector<std::vector<char>> a(size_t(threads), std::vector<char>(bytes, 1)),
      b(size_t(threads), std::vector<char>(bytes, 2));
  const std::vector<double> t =
      round_seconds(threads, 5, [&](size_t i) { std::memcpy(b[i].data(), a[i].data(), bytes); });
  return double(bytes) / *std::min_element(t.begin(), t.end()) / 1e9;
}

double read_gbps(size_t bytes, int threads) {
  std::vector<std::vector<uint64_t>> a(size_t(threads), std::vector<uint64_t>(bytes / 8, 1));
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  std::vector<double> t = round_seconds(threads, 15, [&](size_t i) {
    sums[i] = std::accumulate(a[i].begin(), a[i].end(), uint64_t{0});
  });
  for (uint64_t s : sums) HP_CHECK(s == bytes / 8, "read probe summed ", s, " ones of ", bytes / 8);
  std::nth_element(t.begin(), t.begin() + 7, t.end());
  return double(bytes / 8 * 8) / t[7] / 1e9;
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

Link calibrate_link(memory::TransferEngine& engine, int busy_threads) {
  std::atomic<bool> stop{false};
  std::thread busy;
  if (busy_threads > 0)
    busy = std::thread([&] {
      const int64_t n = 512;
      std::vector<float> a(size_t(n * n), 0.5f), b(size_t(n * n), 0.25f), c(size_t(n * n));
      const cpu::Context ctx{busy_threads};
      while (!stop.load())
        cpu::gemm(ctx, false, false, n, n, n, 1, a.data(), n, b.data(), n, 0, c.data(), n);
    });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join{stop, busy};
  // Buffers as the tiers allocate them (huge pages where the kernel gives them).
  auto mem = std::make_shared<Allocator>("calibration", 0, Tier::kHost);
  auto time_copy = [&](char* dst, const char* src, size_t n) {
    auto t0 = Clock::now();
    engine.copy(dst, src, n).wait(std::chrono::seconds(60));
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  auto median = [](std::vector<double> t) {
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  // Copies between distinct buffers, as a step's are (each value its own home and device
  // buffer): a ring of pairs, 256 MiB in all, so that no copy finds its buffers in cache.
  auto median_seconds = [&](size_t n, int reps) {
    const size_t pairs = std::clamp<size_t>((size_t(256) << 20) / (2 * n), 2, 64);
    std::vector<std::unique_ptr<Storage>> a, b;
    for (size_t i = 0; i < pairs; ++i) {
      a.push_back(std::make_unique<Storage>(mem, n));
      b.push_back(std::make_unique<Storage>(mem, n));
      std::memset(a.back()->data(), 1, n);
      std::memset(b.back()->data(), 0, n);
    }
    std::vector<double> t;
    for (int r = 0; r < reps; ++r)
      t.push_back(time_copy(static_cast<char*>(b[size_t(r) % pairs]->data()),
                            static_cast<const char*>(a[size_t(r) % pairs]->data()), n));
    return median(t);
  };
  // Two sizes the inline team splits alike: the bandwidth from their difference, the fixed cost
  // per transfer (submission, waking the team) from what the smaller one takes beyond it.
  const size_t big = size_t(8) << 20, small = size_t(1) << 20;
  const double t_big = median_seconds(big, 33), t_small = median_seconds(small, 65);
  // Write-backs: the source written just before (as the op producing the value leaves it), the
  // destination one of 16 rotating buffers (64 MiB in all), so it is not in cache.
  const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE) > 0 ? sysconf(_SC_LEVEL3_CACHE_SIZE)
                                                      : sysconf(_SC_LEVEL2_CACHE_SIZE);
  const size_t wb = size_t(4) << 20;
  Storage src(mem, wb);
  std::vector<std::unique_ptr<Storage>> dst;
  for (int i = 0; i < 16; ++i) {
    dst.push_back(std::make_unique<Storage>(mem, wb));
    std::memset(dst.back()->data(), 0, wb);
  }
  std::vector<double> t;
  for (int r = 0; r < 33; ++r) {
    std::memset(src.data(), r, wb);
    t.push_back(time_copy(static_cast<char*>(dst[size_t(r) % dst.size()]->data()),
                          static_cast<const char*>(src.data()), wb));
  }
  const memory::LinkFit f = memory::fit_link(small, t_small, big, t_big, wb, median(t));
  Link l;
  l.gbps = f.bytes_per_s / 1e9;
  l.latency_us = f.latency_s * 1e6;
  l.writeback_gbps = f.writeback_bytes_per_s / 1e9;
  l.writeback_cached_bytes = llc > 0 ? size_t(llc) / 2 : 0;
  return l;
}

void set_link(memory::CostModel& cm, const Link& l) {
  cm.link_bytes_per_s = l.gbps * 1e9;
  cm.latency_s = l.latency_us * 1e-6;
  cm.writeback_bytes_per_s = l.writeback_gbps * 1e9;
  cm.writeback_cached_bytes = l.writeback_cached_bytes;
}

}  // namespace hp::cli
