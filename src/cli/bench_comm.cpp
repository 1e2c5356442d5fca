// `hp bench comm`: nccl-tests style table (size, count, time, algbw, busbw) per collective and
// message size. threads: busbw also as a share of this machine's memcpy bandwidth, measured in
// the same run. mpi: the same collective called directly through MPI, and our overhead in %.
// Options from bench_comm_command (options.hpp); the world from --devices as every command.
// Not a correctness test: buffers hold constants; tests/comm/comm_test.cpp checks values.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cli/args.hpp"
#include "cli/bench_options.hpp"
#include "cli/devices.hpp"
#include "cli/probes.hpp"
#include "hp/comm/communicator.hpp"
#include "hp/core/bytes.hpp"
#ifdef HP_HAVE_MPI
#include <mpi.h>
#endif

namespace hp::cli {
namespace {

using comm::Communicator;
using comm::ReduceOp;

// What hp bench comm reads from its options, once.
struct BenchOptions {
  Devices dev;
  size_t min_bytes = 0, max_bytes = 0;
  int iters = 0, warmup = 0;
};

BenchOptions read_options(const Args& a) {
  BenchOptions o;
  o.dev = parse_devices(a.str("devices"));
  o.min_bytes = parse_bytes(a.str("min-bytes"), "--min-bytes");
  o.max_bytes = parse_bytes(a.str("max-bytes"), "--max-bytes");
  o.iters = int(a.i64("iters"));
  o.warmup = int(a.i64("warmup"));
  HP_CHECK(o.min_bytes >= 4 && o.min_bytes <= o.max_bytes,
           "[bench] need 4 <= --min-bytes <= --max-bytes");
  return o;
}

// The busbw that shared-memory data movement allows, as a share of the memcpy bandwidth each
// rank gets while all copy at once. A rank's bytes read + written, against memcpy's 2 per byte:
//   all-reduce (reduce-scatter + all-gather): N + N/n, then 2N(n-1)/n  -> 4(n-1)/(3n-1)
//   all-gather: out of place copies all N (own piece too) -> (n-1)/n; in place (n-1)N/n -> 1
//   reduce-scatter: reads N, writes N/n -> 2(n-1)/(n+1)
double allowed_share(Coll c, int n, bool in_place) {
  if (n <= 1) return 1.0;
  switch (c) {
    case Coll::kAllReduce:
      return 4.0 * (n - 1) / (3.0 * n - 1);
    case Coll::kAllGather:
      return in_place ? 1.0 : double(n - 1) / n;
    case Coll::kReduceScatter:
      return 2.0 * (n - 1) / (n + 1);
  }
  return 1.0;
}

// Sizes are the whole buffer (nccl-tests convention): all-reduce buffer, all-gather output,
// reduce-scatter input. Rounded to a multiple of ranks * 4 bytes.
std::vector<size_t> sizes(const BenchOptions& o, int n) {
  std::vector<size_t> out;
  size_t unit = size_t(n) * 4;
  for (size_t b = o.min_bytes; b <= o.max_bytes; b *= 2)
    out.push_back(std::max(unit, b / unit * unit));
  return out;
}

void print_header(const char* extra) {
  std::printf("%-15s %12s %12s %10s %10s %10s %s\n", "collective", "size(B)", "count(f32)",
              "time(us)", "algbw(GB/s)", "busbw(GB/s)", extra);
}

// Threads: the header with this machine's memcpy bandwidth, then rows from rank 0.
void bench_threads(const BenchOptions& o) {
  const int ranks = o.dev.count;
  const double mem1 = memcpy_gbps(o.max_bytes);
  const double mem = memcpy_gbps(o.max_bytes, ranks);
  std::printf("# hp bench comm: backend threads, %d ranks, %d iters (+%d warmup), f32 sum\n", ranks,
              o.iters, o.warmup);
  std::printf(
      "# memcpy bandwidth (%zu B): %.2f GB/s on 1 thread; %.2f GB/s per thread with %d "
      "threads copying at once; 'of allowed' compares busbw with what that bandwidth allows each "
      "collective\n",
      o.max_bytes, mem1, mem, ranks);
  std::printf("%-15s %12s %12s %10s %10s %10s %s\n", "collective", "size(B)", "count(f32)",
              "time(us)", "algbw(GB/s)", "busbw(GB/s)",
              "of allowed  in-place: time(us) of allowed");
  run_ranks(o.dev, [&](Communicator& c) {
    std::vector<float> in(o.max_bytes / 4 + 64, 1.0f), out(o.max_bytes / 4 + 64, 0.0f);
    for (Coll k : {Coll::kAllReduce, Coll::kAllGather, Coll::kReduceScatter}) {
      for (size_t bytes : sizes(o, c.size())) {
        const size_t total = bytes / 4, chunk = total / size_t(c.size());
        double t = time_collective(c, o.iters, o.warmup, [&] {
          issue_collective(c, k, in.data(), out.data(), total).wait(std::chrono::minutes(5));
        });
        // In place, as nccl-tests also reports: all-gather's input is this rank's piece of the
        // output, reduce-scatter's output is its piece of the input, all-reduce reads and
        // writes one buffer.
        const float* ip =
            k == Coll::kAllGather ? out.data() + size_t(c.rank()) * chunk : out.data();
        float* op = k == Coll::kReduceScatter ? out.data() + size_t(c.rank()) * chunk : out.data();
        double ti = time_collective(c, o.iters, o.warmup, [&] {
          issue_collective(c, k, ip, op, total).wait(std::chrono::minutes(5));
        });
        if (c.rank() != 0) continue;
        double alg = double(bytes) / t / 1e9, bus = alg * bus_factor(k, c.size());
        double bus_i = double(bytes) / ti / 1e9 * bus_factor(k, c.size());
        const double allowed = mem * allowed_share(k, c.size(), false);
        const double allowed_i = mem * allowed_share(k, c.size(), true);
        std::printf("%-15s %12zu %12zu %10.1f %10.2f %10.2f %9.1f%%  %17.1f %9.1f%%\n",
                    coll_name(k), bytes, total, t * 1e6, alg, bus, 100.0 * bus / allowed, ti * 1e6,
                    100.0 * bus_i / allowed_i);
        std::fflush(stdout);
      }
    }
  });
}

#ifdef HP_HAVE_MPI
// MPI (this process's rank of mpirun): each row also times the same MPI call made directly.
void bench_mpi(const BenchOptions& o, Communicator& c) {
  MPI_Comm direct;
  MPI_Comm_dup(MPI_COMM_WORLD, &direct);
  double mem = memcpy_gbps(o.max_bytes);
  if (c.rank() == 0) {
    std::printf("# hp bench comm: backend mpi, %d ranks, %d iters (+%d warmup), f32 sum\n",
                c.size(), o.iters, o.warmup);
    std::printf("# memcpy bandwidth (1 thread, %zu B): %.2f GB/s\n", o.max_bytes, mem);
    print_header(
        "  blocking(us) overhead   non-blocking(us) overhead  (the same MPI call, direct)");
  }
  std::vector<float> in(o.max_bytes / 4 + 64, 1.0f), out(o.max_bytes / 4 + 64, 0.0f);
  for (Coll k : {Coll::kAllReduce, Coll::kAllGather, Coll::kReduceScatter}) {
    for (size_t bytes : sizes(o, c.size())) {
      size_t total = bytes / 4;
      int per = int(total / size_t(c.size()));
      double t = time_collective(c, o.iters, o.warmup, [&] {
        issue_collective(c, k, in.data(), out.data(), total).wait(std::chrono::minutes(5));
      });
      std::vector<int> counts(size_t(c.size()), per);
      double td = time_collective(c, o.iters, o.warmup, [&] {
        if (k == Coll::kAllReduce)
          MPI_Allreduce(in.data(), out.data(), int(total), MPI_FLOAT, MPI_SUM, direct);
        else if (k == Coll::kAllGather)
          MPI_Allgather(in.data(), per, MPI_FLOAT, out.data(), per, MPI_FLOAT, direct);
        else
          MPI_Reduce_scatter(in.data(), out.data(), counts.data(), MPI_FLOAT, MPI_SUM, direct);
      });
      // The backend issues MPI_I* collectives (so waits can time out); this is the same call
      // made directly and waited for with MPI_Wait.
      double tn = time_collective(c, o.iters, o.warmup, [&] {
        MPI_Request r;
        if (k == Coll::kAllReduce)
          MPI_Iallreduce(in.data(), out.data(), int(total), MPI_FLOAT, MPI_SUM, direct, &r);
        else if (k == Coll::kAllGather)
          MPI_Iallgather(in.data(), per, MPI_FLOAT, out.data(), per, MPI_FLOAT, direct, &r);
        else
          MPI_Ireduce_scatter(in.data(), out.data(), counts.data(), MPI_FLOAT, MPI_SUM, direct, &r);
        MPI_Wait(&r, MPI_STATUS_IGNORE);
      });
      if (c.rank() != 0) continue;
      double alg = double(bytes) / t / 1e9, bus = alg * bus_factor(k, c.size());
      std::printf("%-15s %12zu %12zu %10.1f %10.2f %10.2f %14.1f %7.1f%% %16.1f %7.1f%%\n",
                  coll_name(k), bytes, total, t * 1e6, alg, bus, td * 1e6, 100.0 * (t - td) / td,
                  tn * 1e6, 100.0 * (t - tn) / tn);
      std::fflush(stdout);
    }
  }
  MPI_Comm_free(&direct);
}
#endif

}  // namespace

int bench_comm(const std::vector<std::string>& argv) {
  Args a(argv, bench_comm_command());
  if (printed_help(a)) return 0;
  const BenchOptions o = read_options(a);
  if (o.dev.kind == "threads") {
    bench_threads(o);
    return 0;
  }
#ifdef HP_HAVE_MPI
  run_ranks(o.dev, [&](Communicator& c) { bench_mpi(o, c); });
  return 0;
#else
  throw Error("[bench] this build has no MPI backend");
#endif
}

}  // namespace hp::cli
