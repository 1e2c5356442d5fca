// Measurements of this machine shared by the benchmarks and hp calibrate: memcpy bandwidth, one
// collective's time on a communicator, and the host link as the offload transfer engine carries
// a copy.
// Not a benchmark's table: callers print what they measure.
#pragma once
#include <cstddef>
#include <functional>

#include "hp/comm/communicator.hpp"
#include "hp/memory/transfer.hpp"

namespace hp::cli {

// Best-of-5 memcpy of `bytes` by each of `threads` threads at once, as GB/s per thread (bytes
// copied, like algbw). With threads = ranks this is what the data movement allows each rank
// when every rank copies through the same memory system at the same time.
double memcpy_gbps(size_t bytes, int threads = 1);

enum class Coll { kAllReduce, kAllGather, kReduceScatter };
const char* coll_name(Coll c);
// nccl-tests bus bandwidth factors: 2(n-1)/n for all-reduce, (n-1)/n for the others.
double bus_factor(Coll c, int n);
// Starts collective `k` over `total` floats (the whole buffer, nccl-tests convention: all-reduce
// buffer, all-gather output, reduce-scatter input).
comm::Work issue_collective(comm::Communicator& c, Coll k, const float* in, float* out,
                            size_t total);
// Seconds per call of fn, averaged over `iters` after `warmup` calls; the same on every rank
// (the slowest rank's). Collective: every rank calls it.
double time_collective(comm::Communicator& c, int iters, int warmup,
                       const std::function<void()>& fn);

// The link as `engine` carries a copy (one transfer thread, or the inline team), submission and
// wait included, between buffers allocated as the tiers allocate theirs: bandwidth from 64 MiB
// copies, the fixed cost per transfer from 256 KiB ones (medians).
struct Link {
  double gbps = 0, latency_us = 0;
};
Link calibrate_link(memory::TransferEngine& engine);

}  // namespace hp::cli
