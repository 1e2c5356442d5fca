// The costs a schedule is checked and simulated against: per chunk compute times and activation
// memory, per rank memory budgets and optimizer time, and the links between ranks (latency plus
// bytes over bandwidth, per level of a simple hierarchy).
// Not measured here: a profiling step or a model fills these numbers in.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

struct ChunkCost {
  double f = 1, b = 1, w = 1;  // seconds (or any unit) per micro-batch; BW costs b + w
  double act_bytes = 1;        // held from the start of F until its backward (B or BW) ends
  double w_bytes = 0;          // of act_bytes, still held after B until W ends (split backward)
  double out_bytes = 0;        // activation sent to each consumer (its gradient is as large)
};

// A point-to-point link: time(bytes) = latency + bytes / bandwidth (bandwidth <= 0: infinite).
struct Link {
  double latency = 0;
  double bandwidth = 0;
  double time(double bytes) const { return latency + (bandwidth > 0 ? bytes / bandwidth : 0); }
};

// One level of a hierarchy: ranks r and s share it when r / domain == s / domain (0: everyone).
struct LinkLevel {
  std::string name;
  int domain = 0;
  Link link;
};

struct CostModel {
  std::vector<ChunkCost> chunks;       // one per chunk of the schedule's graph
  std::vector<double> opt;             // per rank optimizer step time; empty: 0
  std::vector<double> memory_budget;   // per rank, in act_bytes units; empty or <= 0: unlimited
  std::function<Link(int, int)> link;  // (from rank, to rank); empty: free and instantaneous
  // Each rank's link to its host tier, in act_bytes units: an OFFLOAD or RELOAD copies a
  // micro-batch's act_bytes over it on the rank's own time (copies on the compute cores).
  Link host_link;
  // Per chunk and micro-batch, a factor on f, b and w (inputs whose work varies by micro-batch:
  // images per sample); empty: 1. The synthesiser schedules on the chunk costs (the mean, when
  // these average 1) and simulates with the factors.
  std::vector<std::vector<double>> microbatch_scale;

  // Every chunk of g with the same costs.
  static CostModel uniform(const ChunkGraph& g, double f = 1, double b = 1, double w = 1);
  double transfer_time(int from, int to, double bytes) const {
    return link ? link(from, to).time(bytes) : 0.0;
  }
  double duration(const Action& a) const;  // compute time of an action (0 for SEND and RECV)
  double scale(int chunk, int microbatch) const {
    return microbatch_scale.empty() ? 1.0
                                    : microbatch_scale.at(size_t(chunk)).at(size_t(microbatch));
  }
  // Throws unless there is one ChunkCost per chunk of g and no negative number.
  void check(const ChunkGraph& g) const;
};

// Links from levels (fastest first, the last with domain 0) over the devices of each rank: rank r
// of a schedule is a stage group whose first device is first_device[r]; two groups talk over the
// innermost level that holds both first devices.
std::function<Link(int, int)> hierarchical_links(std::vector<LinkLevel> levels,
                                                 std::vector<int> first_device);

}  // namespace hp::mpmd
