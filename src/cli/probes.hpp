// Measurements of this machine shared by the benchmarks and hp calibrate: memcpy bandwidth, one
// collective's time on a communicator, and the host link as the offload transfer engine carries
// a copy.
// Not a benchmark's table: callers print what they measure.
#pragma once
#include <cstddef>
#include <functional>

#include "hp/comm/communicator.hpp"
#include "hp/memory/planner.hpp"
#include "hp/memory/transfer.hpp"

namespace hp::cli {

// Best-of-5 memcpy of `bytes` by each of `threads` threads at once, as GB/s per thread (bytes
// copied, like algbw). With threads = ranks this is what the data movement allows each rank
// when every rank copies through the same memory system at the same time.
double memcpy_gbps(size_t bytes, int threads = 1);
// Median of 15 reads of `bytes` (summed) by each of `threads` threads at once, as GB/s per
// thread: the median, as neighbours on a shared machine move the best and the worst.
double read_gbps(size_t bytes, int threads = 1);

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
// wait included, between buffers allocated as the tiers allocate theirs, each copy between a
// pair of its own (a step copies many values, none of them in cache): bandwidth and the fixed
// cost per transfer from the medians of 8 MiB and 1 MiB copies. A write-back copies a value
// the compute has just written: `writeback_gbps` is measured so, from a 4 MiB source written
// right before each copy into destinations that are not in cache, and holds for write-backs of
// up to `writeback_cached_bytes` (half the last-level cache; 0 where the size is unknown).
struct Link {
  double gbps = 0, latency_us = 0, writeback_gbps = 0;
  size_t writeback_cached_bytes = 0;
};
// The link's rates and fixed cost on a memory::CostModel.
void set_link(memory::CostModel& cm, const Link& l);
// With `busy_threads` > 0 the copies are timed while a team of that many threads runs sgemm, as
// the compute does while a transfer thread copies in a step (on a CPU the two share the cores and
// the memory bus; leave it 0 for inline copies, which run in place of the compute).
Link calibrate_link(memory::TransferEngine& engine, int busy_threads = 0);

}  // namespace hp::cli
