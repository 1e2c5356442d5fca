// Event simulation of a schedule: each rank runs its list in order, compute actions take their
// cost, a SEND puts its message on the link of its (from, to) pair (one message at a time per
// direction, overlapped with compute), a RECV waits for its message. Predicts the step time, the
// bubble per rank and activation memory over time, and draws the timeline (SVG, Chrome trace).
// Not a measurement: it replays the costs it is given.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "hp/mpmd/cost.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

struct Interval {
  double start = 0, end = 0;
  Action action;
};

struct TransferInterval {
  int from = 0, to = 0;
  double start = 0, end = 0;
  Action send;
};

struct MemoryPoint {
  double time = 0, bytes = 0;  // bytes held from `time` on
};

struct Simulation {
  std::string name;
  int microbatches = 0;
  double step_time = 0;
  std::vector<std::vector<Interval>> timeline;  // per rank: compute actions (F, B, W, BW, OPT)
  std::vector<TransferInterval> transfers;
  std::vector<double> busy;    // per rank: compute time
  std::vector<double> bubble;  // per rank: idle share of the step, (step - busy) / step
  std::vector<double> peak_memory;
  std::vector<std::vector<MemoryPoint>> memory;  // per rank, a step function

  // Mean over ranks of the idle share of the step.
  double mean_bubble() const;
  // Step time over the busiest rank's compute, minus one: the bubble relative to a step without
  // idle time ((p-1)/m for 1F1B under equal costs).
  double bubble_vs_ideal() const;
  // "1f1b: step 33, bubble 27.3% (per rank 27.3% ...), peak memory [4, 3, 2, 1]".
  std::string str() const;
};

// Verifies the schedule (memory budgets excepted: the simulation reports the peaks), then replays
// it under the costs. Throws hp::Error from the verifier.
Simulation simulate(const Schedule& s, const CostModel& costs);

// SVG: one row per rank, one box per compute action coloured by kind with its micro-batch, a
// legend and a time axis; transfers as thin bars under the rows. `span`: the time axis' length
// (0: the step), to draw several timelines on one scale.
std::string timeline_svg(const Simulation& sim, double span = 0);
// Chrome trace JSON (chrome://tracing, Perfetto): one thread per rank, one per link direction.
// `us_per_unit`: microseconds per unit of the costs (1e6 when costs are seconds).
std::string chrome_trace(const Simulation& sim, double us_per_unit = 1e6);
// Writes either to a file (atomically); throws naming the path.
void write_timeline_svg(const Simulation& sim, const std::filesystem::path& path, double span = 0);
void write_chrome_trace(const Simulation& sim, const std::filesystem::path& path,
                        double us_per_unit = 1e6);

}  // namespace hp::mpmd
