// The event simulator against the schedules' published bounds under equal unit costs
// (F = B = W = 1, BW = 2): GPipe and 1F1B bubbles (p-1)/(m+p-1) of the step, activation peaks m
// and p on the first rank, interleaved (p-1)/(v m) of the ideal step, ZB-H1 a third of 1F1B's
// bubble; transfers, memory over time and the two timeline formats; the synthesiser on a
// heterogeneous chain.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "hp/core/error.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/mpmd/synth.hpp"
#include "hp/mpmd/verify.hpp"

namespace hp::mpmd {
namespace {

Simulation run(const Schedule& s) {
  return simulate(s, CostModel::uniform(s.graph));
}

TEST(MpmdSimulate, GpipeAndOneFOneBBubbleIsPMinusOneOverMPlusPMinusOne) {
  for (int p = 1; p <= 5; ++p) {
    for (int m = 1; m <= 9; ++m) {
      for (auto kind : {ScheduleKind::kGpipe, ScheduleKind::k1F1B}) {
        Simulation sim = run(make_schedule(kind, p, m));
        SCOPED_TRACE(sim.str());
        EXPECT_DOUBLE_EQ(sim.step_time, 3.0 * (m + p - 1));
        for (double b : sim.bubble) EXPECT_NEAR(b, double(p - 1) / (m + p - 1), 1e-12);
        // GPipe holds every micro-batch on the first rank, 1F1B at most p.
        EXPECT_EQ(sim.peak_memory[0], kind == ScheduleKind::kGpipe ? m : std::min(m, p));
      }
    }
  }
}

TEST(MpmdSimulate, MicrobatchScalesVaryTheWorkOfOneMicrobatch) {
  // GPipe on 2 ranks, 3 micro-batches, F = 1 and BW = 2: the step is 3 (m + p - 1) = 12.
  // Micro-batch 1 costs twice as much on rank 0: its F ends at 3, which delays rank 1's F1 and
  // F2 by one, and its BW takes 4 instead of 2: rank 0's backwards end at 7 + 2 + 4 + 2 = 15.
  const Schedule s = make_schedule(ScheduleKind::kGpipe, 2, 3);
  CostModel costs = CostModel::uniform(s.graph);
  costs.microbatch_scale = {{1, 2, 1}, {1, 1, 1}};
  const Simulation sim = simulate(s, costs);
  SCOPED_TRACE(sim.str());
  EXPECT_DOUBLE_EQ(sim.step_time, 15);
  EXPECT_DOUBLE_EQ(sim.busy[0], 12);
  EXPECT_DOUBLE_EQ(sim.busy[1], 9);
  LowerBound lb = lower_bound(s.graph, 3, costs);
  EXPECT_DOUBLE_EQ(lb.busiest, 12);
  // F F B B W of the cheapest micro-batch of each chunk: 5 at scale 1; with rank 0's
  // micro-batches at 2, 2 and 3, its F, B and W take 2 each: 2 + 1 + 1 + 2 + 2 = 8.
  EXPECT_DOUBLE_EQ(lb.critical_path, 5);
  costs.microbatch_scale[0] = {2, 2, 3};
  lb = lower_bound(s.graph, 3, costs);
  EXPECT_DOUBLE_EQ(lb.critical_path, 8);
  costs.microbatch_scale[1] = {1, 1};  // too few micro-batches: an error, not a read past
  EXPECT_THROW(simulate(s, costs), std::exception);
  costs.microbatch_scale[1] = {1, -1, 1};
  EXPECT_THROW(simulate(s, costs), Error);
}

TEST(MpmdSimulate, InterleavedBubbleIsPMinusOneOverVmOfTheIdealStep) {
  // Exactly Megatron's (p-1)/(v m) for every m here, multiples of p or not.
  for (int p = 2; p <= 5; ++p) {
    for (int v = 2; v <= 3; ++v) {
      for (int m = p; m <= 3 * p; ++m) {
        Simulation sim = run(interleaved(p, v, m));
        SCOPED_TRACE(sim.str() + " v=" + std::to_string(v));
        EXPECT_NEAR(sim.bubble_vs_ideal(), double(p - 1) / (v * m), 1e-12);
      }
    }
  }
}

TEST(MpmdSimulate, ZbH1BubbleIsAThirdOfOneFOneBs) {
  // With F = B = W = 1 the bubble per rank is p - 1 against 1F1B's 3(p - 1), at 1F1B's memory.
  for (int p = 2; p <= 5; ++p) {
    for (int m = p; m <= 9; ++m) {
      Simulation zb = run(make_schedule(ScheduleKind::kZbH1, p, m));
      Simulation ob = run(make_schedule(ScheduleKind::k1F1B, p, m));
      SCOPED_TRACE(zb.str());
      EXPECT_DOUBLE_EQ(zb.step_time - 3 * m, p - 1);
      EXPECT_DOUBLE_EQ(ob.step_time - 3 * m, 3 * (p - 1));
      EXPECT_EQ(zb.peak_memory, ob.peak_memory);
    }
  }
}

TEST(MpmdSimulate, ZbvBubbleIsBelowZbH1sAtOneFOneBsPeak) {
  for (int p = 2; p <= 5; ++p) {
    for (int m = p; m <= 9; ++m) {
      Simulation v = run(make_schedule(ScheduleKind::kZbV, p, m));
      SCOPED_TRACE(v.str());
      // Two half-stage chunks per rank: ideal 6m, 1F1B's bubble 6(p-1) in these units. The last
      // rank waits for p-1 forwards before its 6m units: no synchronous step is shorter, and the
      // generator meets that bound up to 4 ranks (over 5 some m leave one unit more).
      EXPECT_GE(v.step_time - 6 * m, p - 1 - 1e-9);
      if (p <= 4) {
        EXPECT_DOUBLE_EQ(v.step_time - 6 * m, p - 1);
      }
      EXPECT_LE(v.step_time - 6 * m, 2 * (p - 1) + 1e-9);
      for (double peak : v.peak_memory) EXPECT_LE(peak, 2 * p);
    }
  }
}

TEST(MpmdSimulate, TransfersOverlapComputeAndDelayTheConsumer) {
  Schedule s = one_f_one_b(chain_graph(2), 2);
  CostModel costs = CostModel::uniform(s.graph);
  for (auto& c : costs.chunks) c.out_bytes = 100;
  costs.link = [](int, int) { return Link{0.5, 200}; };  // 0.5 + 100 / 200 = 1 per message
  Simulation sim = simulate(s, costs);
  ASSERT_EQ(sim.transfers.size(), 4u);
  EXPECT_DOUBLE_EQ(sim.transfers[0].end - sim.transfers[0].start, 1.0);
  // F c0 m0 [0,1), transfer [1,2), F c1 m0 [2,3), BW c1 m0 [3,5), transfer [5,6), BW c0 m0 ...
  EXPECT_DOUBLE_EQ(sim.timeline[1][0].start, 2.0);
  EXPECT_DOUBLE_EQ(sim.timeline[0][1].start, 1.0);  // F c0 m1 overlaps the transfer
  EXPECT_GT(sim.step_time, 3.0 * 3);
}

TEST(MpmdSimulate, HierarchicalLinksPickTheInnermostSharedLevel) {
  // Stages of 2, 1 and 4 devices starting at devices 0, 2 and 8; nodes of 8 devices.
  auto link =
      hierarchical_links({{"nvlink", 8, {1e-6, 100e9}}, {"network", 0, {1e-5, 10e9}}}, {0, 2, 8});
  EXPECT_DOUBLE_EQ(link(0, 1).time(1e9), 1e-6 + 0.01);
  EXPECT_DOUBLE_EQ(link(1, 2).time(1e9), 1e-5 + 0.1);
  EXPECT_THROW(link(0, 3), Error);
  EXPECT_THROW(hierarchical_links({{"node", 8, {}}}, {0}), Error);  // nothing spans everyone
}

TEST(MpmdSimulate, MemoryOverTimeIsAStepFunctionWithThePeak) {
  Simulation sim = run(make_schedule(ScheduleKind::kGpipe, 2, 3));
  const auto& mem = sim.memory[0];
  double peak = 0;
  for (size_t i = 1; i < mem.size(); ++i) {
    EXPECT_GT(mem[i].time, mem[i - 1].time);
    peak = std::max(peak, mem[i].bytes);
  }
  EXPECT_EQ(peak, 3);
  EXPECT_EQ(mem.back().bytes, 0);
}

TEST(MpmdSimulate, SvgAndChromeTraceDrawEveryAction) {
  Simulation sim = run(make_schedule(ScheduleKind::kZbH1, 3, 4));
  std::string svg = timeline_svg(sim);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  for (const char* k : {">F<", ">B<", ">W<", "r2</text>", "zb-h1"})
    EXPECT_NE(svg.find(k), std::string::npos) << k;
  size_t boxes = 0;
  for (const auto& row : sim.timeline) boxes += row.size();
  size_t titles = 0;
  for (size_t at = svg.find("<title>"); at != std::string::npos; at = svg.find("<title>", at + 1))
    ++titles;
  // Every action of non-zero time (the optimizer steps and free transfers take none here).
  EXPECT_EQ(titles, boxes - sim.timeline.size());
  auto trace = nlohmann::json::parse(chrome_trace(sim, 1000));
  size_t spans = 0;
  for (const auto& e : trace["traceEvents"]) spans += e["ph"] == "X";
  EXPECT_EQ(spans, boxes + sim.transfers.size());
}

TEST(MpmdSynth, AutoIsNeverWorseThanTheBestBuiltInOnAHeterogeneousChain) {
  ChunkGraph g = chain_graph(4);
  CostModel costs = CostModel::uniform(g);
  double stage[] = {3, 1, 1, 1};
  for (size_t c = 0; c < 4; ++c) {
    costs.chunks[c].f = stage[c];
    costs.chunks[c].b = stage[c];
    costs.chunks[c].w = stage[c];
  }
  for (int m : {4, 8}) {
    SynthResult res = synthesise(g, m, costs);
    SCOPED_TRACE(res.str());
    verify(res.schedule, costs);
    for (auto kind : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kZbH1})
      EXPECT_LE(res.step_time, simulate(schedule_on(kind, g, m), costs).step_time + 1e-9);
    EXPECT_LE(res.step_time, res.best_builtin_time + 1e-9);
    EXPECT_DOUBLE_EQ(res.bound.busiest, 9.0 * m);
    EXPECT_GE(res.gap(), 0);
    std::printf("  stage costs 3,1,1,1, m=%d: %s\n", m, res.str().c_str());
  }
}

TEST(MpmdSynth, AutoRespectsMemoryBudgetsOrSaysItCannot) {
  ChunkGraph g = chain_graph(3);
  CostModel costs = CostModel::uniform(g);
  costs.memory_budget = {2, 2, 2};
  SynthResult res = synthesise(g, 6, costs);
  EXPECT_LE(verify(res.schedule, costs).peak_memory[0], 2);
  costs.memory_budget = {0.5, 2, 2};  // not even one micro-batch fits on rank 0
  EXPECT_THROW(synthesise(g, 6, costs), Error);
}

TEST(MpmdSynth, ADagOfSubModelsOnRanksOfTheirOwn) {
  // An image encoder (c0 on rank 0) and a text embedding (c1 on rank 1) feed a decoder split
  // over ranks 2 and 3: built-in policies and auto both give verified schedules.
  ChunkGraph g;
  g.ranks = 4;
  g.rank_of = {0, 1, 2, 3};
  g.preds = {{}, {}, {0, 1}, {2}};
  CostModel costs = CostModel::uniform(g);
  costs.chunks[0].f = costs.chunks[0].b = costs.chunks[0].w = 2;
  for (auto kind : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kZbH1})
    EXPECT_NO_THROW(verify(schedule_on(kind, g, 5), costs)) << schedule_name(kind);
  SynthResult res = synthesise(g, 5, costs);
  verify(res.schedule, costs);
  EXPECT_LE(res.step_time, res.best_builtin_time);
  EXPECT_GE(res.step_time, res.bound.value());
  EXPECT_DOUBLE_EQ(res.bound.busiest, 30);
}

// zbv on 2 ranks over 4 micro-batches at costs profiled from a GPT-2 pipeline (ms; the first
// chunk has no input gradient, so its W does the whole backward): the unit-cost order leaves an
// 11.9% bubble; the same policy ordered at these costs reaches the lower bound, verified, with the
// same actions and the same B/W split.
TEST(MpmdSynth, ANamedPolicyOrderedAtMeasuredCostsReachesTheBound) {
  const ChunkGraph g = v_graph(2);
  CostModel costs = CostModel::uniform(g);
  const double f[] = {3.0, 2.73, 2.75, 3.32}, b[] = {0.005, 3.45, 3.45, 3.70},
               w[] = {5.87, 2.50, 2.44, 2.70};
  for (int c = 0; c < 4; ++c) costs.chunks[size_t(c)] = ChunkCost{.f = f[c], .b = b[c], .w = w[c]};
  const Schedule unit = schedule_on(ScheduleKind::kZbV, g, 4);
  const Schedule fit = schedule_at_costs(ScheduleKind::kZbV, g, 4, costs);
  verify(fit, costs);
  EXPECT_EQ(fit.split_backward, unit.split_backward);
  for (size_t r = 0; r < 2; ++r) EXPECT_EQ(fit.actions[r].size(), unit.actions[r].size());
  const double bound = lower_bound(g, 4, costs).value();
  EXPECT_GT(simulate(unit, costs).step_time, 1.09 * bound);
  EXPECT_NEAR(simulate(fit, costs).step_time, bound, 1e-9);
  // At unit costs the order is the generator's own.
  EXPECT_EQ(schedule_at_costs(ScheduleKind::kZbV, g, 4, CostModel::uniform(g)).compact(),
            unit.compact());
}

// When B costs more than F and W (1.37 times, as profiled on GPT-2 blocks) the policy's list order
// alone is still far from the bound on 4 ranks; the search over its ordering gets within 4% of
// it, never holds more activations than the generator's order, and keeps the B/W split.
TEST(MpmdSynth, OrderingSearchCloseToTheBoundWhenBackwardCostsMore) {
  const ChunkGraph g = v_graph(4);
  CostModel costs = CostModel::uniform(g, 1.0, 1.37, 1.0);
  costs.chunks[0].b = 0, costs.chunks[0].w = 2.37;
  const Schedule unit = schedule_on(ScheduleKind::kZbV, g, 16);
  const Schedule fit = schedule_at_costs(ScheduleKind::kZbV, g, 16, costs);
  verify(fit, costs);
  EXPECT_EQ(fit.name, "zbv");
  EXPECT_TRUE(fit.split_backward);
  const double bound = lower_bound(g, 16, costs).value();
  const Simulation a = simulate(unit, costs), b = simulate(fit, costs);
  EXPECT_GT(a.step_time, 1.15 * bound);
  EXPECT_LT(b.step_time, 1.04 * bound);
  for (size_t r = 0; r < 4; ++r) EXPECT_LE(b.peak_memory[r], a.peak_memory[r]);
}

TEST(MpmdSynth, LowerBoundCountsTransfersOnTheCriticalPath) {
  ChunkGraph g = chain_graph(3);
  CostModel costs = CostModel::uniform(g);
  for (auto& c : costs.chunks) c.out_bytes = 1;
  costs.link = [](int, int) { return Link{2, 0}; };
  LowerBound lb = lower_bound(g, 1, costs);
  // F 3, two hops 4, B 3, two hops back 4, the last W 1.
  EXPECT_DOUBLE_EQ(lb.critical_path, 15);
  EXPECT_DOUBLE_EQ(lb.busiest, 3);
}

}  // namespace
}  // namespace hp::mpmd
