// Activation offload of schedules: the planned moves keep every rank within its budget down to
// least_offload_budget, pair up, come before the backwards and cost their bytes over the host
// link; the verifier rejects a schedule whose moves are missing, misplaced or unpaired.
#include <gtest/gtest.h>

#include <algorithm>

#include "hp/core/error.hpp"
#include "hp/mpmd/offload.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/mpmd/verify.hpp"
#include "mpmd/find_action.hpp"

namespace hp::mpmd {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

int count(const Schedule& s, int rank, ActionKind k) {
  return int(std::count_if(s.actions[size_t(rank)].begin(), s.actions[size_t(rank)].end(),
                           [k](const Action& a) { return a.kind == k; }));
}

// GPipe over 2 ranks holds all 4 micro-batches; with room for 2, rank 0 and rank 1 each move
// two out and back, in time for their backwards.
TEST(MpmdOffload, GpipeFitsTwoOfFourMicroBatchesAndVerifies) {
  const Schedule s = gpipe(chain_graph(2), 4);
  CostModel costs = CostModel::uniform(s.graph);
  EXPECT_EQ(verify(s, costs).peak_memory, (std::vector<double>{4, 4}));
  EXPECT_EQ(least_offload_budget(s, costs), (std::vector<double>{1, 1}));
  costs.memory_budget = {2, 2};
  EXPECT_NE(error_of([&] { verify(s, costs); }).find("over its budget of 2"), std::string::npos);
  const Schedule o = plan_activation_offload(s, costs);
  const VerifyReport rep = verify(o, costs);
  EXPECT_EQ(rep.peak_memory, (std::vector<double>{2, 2}));
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(count(o, r, ActionKind::kOffload), 2) << o.str();
    EXPECT_EQ(count(o, r, ActionKind::kReload), 2) << o.str();
  }
  // The furthest backward goes first: backwards run in micro-batch order, so at F m2 it is m1
  // that leaves (m0's backward comes first), at F m3 m2; each comes back right before its
  // backward, and m0 and m3 never leave.
  const auto& r0 = o.actions[0];
  EXPECT_LT(find_action(r0, "OFFLOAD c0 m1"), find_action(r0, "F c0 m2"));
  EXPECT_LT(find_action(r0, "F c0 m2"), find_action(r0, "OFFLOAD c0 m2"));
  EXPECT_EQ(find_action(r0, "RELOAD c0 m1") + 1, find_action(r0, "BW c0 m1"));
  EXPECT_EQ(find_action(r0, "RELOAD c0 m2") + 1, find_action(r0, "BW c0 m2"));
  // Without a host link the moves are free; over one, each costs its bytes on its rank.
  const Simulation free = simulate(o, costs);
  EXPECT_DOUBLE_EQ(free.step_time, simulate(s, CostModel::uniform(s.graph)).step_time);
  costs.host_link = {0.0, 4.0};  // a micro-batch's act_bytes (1) in 0.25
  const Simulation paid = simulate(o, costs);
  for (size_t r = 0; r < 2; ++r) EXPECT_NEAR(paid.busy[r], free.busy[r] + 4 * 0.25, 1e-9);
  EXPECT_GT(paid.step_time, free.step_time);
  EXPECT_EQ(paid.peak_memory, (std::vector<double>{2, 2}));
  // Below the least budget: refused, naming it.
  costs.memory_budget = {0.5, 2};
  const std::string e = error_of([&] { plan_activation_offload(s, costs); });
  EXPECT_NE(e.find("rank 0 cannot keep its activations within 0.5 at #0 F c0 m0"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("it needs 1"), std::string::npos) << e;
}

// A split backward keeps W's share on the device: the least budget counts it, and the plan
// meets any budget down to it.
TEST(MpmdOffload, SplitBackwardKeepsWhatWReadsAndMeetsTheLeastBudget) {
  const Schedule s = zb_h1(chain_graph(3), 6);
  CostModel costs = CostModel::uniform(s.graph);
  for (ChunkCost& c : costs.chunks) c.act_bytes = 4, c.w_bytes = 1;
  const std::vector<double> least = least_offload_budget(s, costs);
  const std::vector<double> peak = verify(s, costs).peak_memory;
  for (int r = 0; r < 3; ++r) EXPECT_GE(least[size_t(r)], 4.0);
  EXPECT_GT(peak[0], least[0]);
  for (double budget : {least[0], (least[0] + peak[0]) / 2, peak[0]}) {
    costs.memory_budget.clear();
    for (int r = 0; r < 3; ++r) costs.memory_budget.push_back(std::max(budget, least[size_t(r)]));
    const Schedule o = plan_activation_offload(s, costs);
    const VerifyReport rep = verify(o, costs);
    for (int r = 0; r < 3; ++r)
      EXPECT_LE(rep.peak_memory[size_t(r)], costs.memory_budget[size_t(r)]);
    if (budget == peak[0]) {
      EXPECT_EQ(count(o, 0, ActionKind::kOffload), 0) << o.str();
    } else {
      EXPECT_GT(count(o, 0, ActionKind::kOffload), 0) << o.str();
    }
  }
}

TEST(MpmdOffload, TheVerifierRejectsMisplacedOrUnpairedMoves) {
  const Schedule s = gpipe(chain_graph(2), 4);
  CostModel costs = CostModel::uniform(s.graph);
  costs.memory_budget = {2, 2};
  const Schedule o = plan_activation_offload(s, costs);
  {  // the RELOAD dropped
    Schedule b = o;
    auto& r0 = b.actions[0];
    r0.erase(r0.begin() + std::ptrdiff_t(find_action(r0, "RELOAD c0 m1")));
    const std::string e = error_of([&] { verify(b, costs); });
    EXPECT_NE(e.find("RELOAD c0 m1 is missing: r0 #"), std::string::npos) << e;
  }
  {  // the RELOAD after the backward
    Schedule b = o;
    auto& r0 = b.actions[0];
    const size_t i = find_action(r0, "RELOAD c0 m1");
    std::swap(r0[i], r0[i + 1]);
    const std::string e = error_of([&] { verify(b, costs); });
    EXPECT_NE(e.find("BW c0 m1 runs while its forward's values are on the host: RELOAD c0 m1 is at "
                     "r0 #"),
              std::string::npos)
        << e;
  }
  {  // an OFFLOAD before its forward
    Schedule b = o;
    auto& r0 = b.actions[0];
    const size_t i = find_action(r0, "OFFLOAD c0 m1");
    const Action off = r0[i];
    r0.erase(r0.begin() + std::ptrdiff_t(i));
    r0.insert(r0.begin(), off);
    const std::string e = error_of([&] { verify(b, costs); });
    EXPECT_NE(e.find("r0 #0 OFFLOAD c0 m1 runs before its forward"), std::string::npos) << e;
  }
  {  // moves the memory does not need are still within budget, but a missing one is not
    Schedule b = o;
    auto& r1 = b.actions[1];
    r1.erase(r1.begin() + std::ptrdiff_t(find_action(r1, "OFFLOAD c1 m1")));
    r1.erase(r1.begin() + std::ptrdiff_t(find_action(r1, "RELOAD c1 m1")));
    const std::string e = error_of([&] { verify(b, costs); });
    EXPECT_NE(e.find("rank 1 holds 3 of activations"), std::string::npos) << e;
  }
  // A schedule that already moves activations is not planned again.
  EXPECT_NE(error_of([&] { plan_activation_offload(o, costs); }).find("already moves activations"),
            std::string::npos);
}

}  // namespace
}  // namespace hp::mpmd
