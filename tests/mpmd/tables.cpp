// Prints the simulated bubbles of every built-in schedule under unit costs and the synthesiser on
// heterogeneous chains (the tables in docs/mpmd.md), and writes example timelines.
// usage: mpmd_tables [DIR]   (DIR: where to write <schedule>-p4-m8.svg; default: none written)
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "hp/mpmd/schedule.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/mpmd/synth.hpp"

namespace {

using namespace hp::mpmd;

// The published bubble relative to the ideal step (busiest rank's work), unit costs.
std::string bound(ScheduleKind k, int p, int m, int v) {
  char buf[64];
  switch (k) {
    case ScheduleKind::kGpipe:
    case ScheduleKind::k1F1B:
      std::snprintf(buf, sizeof buf, "(p-1)/m = %.1f%%", 100.0 * (p - 1) / m);
      break;
    case ScheduleKind::kInterleaved:
      std::snprintf(buf, sizeof buf, "(p-1)/(vm) = %.1f%%", 100.0 * (p - 1) / (v * m));
      break;
    case ScheduleKind::kZbH1:
      std::snprintf(buf, sizeof buf, "(p-1)/(3m) = %.1f%%", 100.0 * (p - 1) / (3 * m));
      break;
    default:  // zbv: the synchronous step's (p-1 half-stage units over 6m)
      std::snprintf(buf, sizeof buf, "(p-1)/(6m) = %.1f%%", 100.0 * (p - 1) / (6 * m));
      break;
  }
  return buf;
}

void builtin_table() {
  std::printf(
      "| schedule | p | m | v | step | bubble (share of step) | bubble / ideal | bound "
      "| peak act. r0 |\n|---|---|---|---|---|---|---|---|---|\n");
  for (auto kind : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved,
                    ScheduleKind::kZbH1, ScheduleKind::kZbV}) {
    for (int m : {4, 8, 9}) {
      const int p = 4;
      Schedule s = make_schedule(kind, p, m, 2);
      Simulation sim = simulate(s, CostModel::uniform(s.graph));
      int v = s.graph.chunks() / p;
      std::printf("| %s | %d | %d | %d | %g | %.1f%% | %.1f%% | %s | %g |\n", s.name.c_str(), p, m,
                  v, sim.step_time, 100 * sim.mean_bubble(), 100 * sim.bubble_vs_ideal(),
                  bound(kind, p, m, v).c_str(), sim.peak_memory[0]);
    }
  }
}

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// One row: built-ins (or "over budget (peak)") against auto on a 4-stage chain.
void synth_row(const std::vector<double>& stage, double lat, double budget, int m) {
  ChunkGraph g = chain_graph(int(stage.size()));
  CostModel costs = CostModel::uniform(g);
  for (size_t c = 0; c < stage.size(); ++c)
    costs.chunks[c].f = costs.chunks[c].b = costs.chunks[c].w = stage[c];
  costs.link = [lat](int, int) { return Link{lat, 0}; };
  costs.memory_budget.assign(stage.size(), budget);
  std::string cell[3], name;
  int i = 0;
  for (auto k : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kZbH1}) {
    Simulation sim = simulate(schedule_on(k, g, m), costs);
    double peak = *std::max_element(sim.peak_memory.begin(), sim.peak_memory.end());
    cell[i++] = budget > 0 && peak > budget ? "over (" + fmt(peak) + ")" : fmt(sim.step_time);
  }
  SynthResult r = synthesise(g, m, costs);
  for (double x : stage) {
    if (!name.empty()) name += ",";
    name += fmt(x);
  }
  std::printf("| %s | %g | %s | %d | %s | %s | %s | %g | %g | %.1f%% |\n", name.c_str(), lat,
              budget > 0 ? fmt(budget).c_str() : "-", m, cell[0].c_str(), cell[1].c_str(),
              cell[2].c_str(), r.step_time, r.bound.value(), 100 * r.gap());
}

void synth_table() {
  std::printf(
      "\n| stage costs (F=B=W) | link latency | budget | m | gpipe | 1f1b | zb-h1 | auto "
      "| lower bound | gap |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& stage :
       std::vector<std::vector<double>>{{3, 1, 1, 1}, {1, 1, 1, 3}, {1, 2, 1, 2}})
    for (double lat : {0.0, 0.5}) synth_row(stage, lat, 0, 8);
  for (const auto& stage : std::vector<std::vector<double>>{{1, 1, 1, 1}, {3, 1, 1, 1}})
    for (double budget : {2.0, 3.0}) synth_row(stage, 0, budget, 8);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
    std::fprintf(stderr, "usage: mpmd_tables [DIR]  (the tables on stdout; with DIR, timelines)\n");
    return 2;
  }
  builtin_table();
  synth_table();
  if (argc > 1) {
    std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    for (auto kind : {ScheduleKind::k1F1B, ScheduleKind::kZbH1}) {
      Schedule s = make_schedule(kind, 4, 8, 2);
      write_timeline_svg(simulate(s, CostModel::uniform(s.graph)), dir / (s.name + "-p4-m8.svg"));
    }
  }
  return 0;
}
