// Prints the simulated bubbles of every built-in schedule under unit costs (the table in
// docs/mpmd.md) and writes the example timeline docs/img/1f1b-p4-m8.svg.
// usage: mpmd_tables [DIR]   (DIR: where to write the SVGs; default: none written)
#include <cstdio>
#include <filesystem>
#include <string>

#include "hp/mpmd/schedule.hpp"
#include "hp/mpmd/simulate.hpp"

int main(int argc, char** argv) {
  using namespace hp::mpmd;
  std::printf(
      "| schedule | p | m | v | step | bubble (share of step) | bubble / ideal | peak r0 |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (auto kind : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved,
                    ScheduleKind::kZbH1, ScheduleKind::kZbV}) {
    for (int p : {4}) {
      for (int m : {4, 8, 9}) {
        Schedule s = make_schedule(kind, p, m, 2);
        Simulation sim = simulate(s, CostModel::uniform(s.graph));
        int v = s.graph.chunks() / p;
        std::printf("| %s | %d | %d | %d | %g | %.1f%% | %.1f%% | %g |\n", s.name.c_str(), p, m, v,
                    sim.step_time, 100 * sim.mean_bubble(), 100 * sim.bubble_vs_ideal(),
                    sim.peak_memory[0]);
      }
    }
  }
  if (argc > 1) {
    std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    for (auto kind : {ScheduleKind::k1F1B, ScheduleKind::kZbV}) {
      Schedule s = make_schedule(kind, 4, 8, 2);
      Simulation sim = simulate(s, CostModel::uniform(s.graph));
      write_timeline_svg(sim, dir / (s.name + "-p4-m8.svg"));
    }
  }
  return 0;
}
