// The verifier rejects broken schedules with a trace naming ranks and actions: a swapped send or
// receive (orders differ, or a deadlock), a missing action, a dependency out of order, one over
// its memory budget; it accepts every generator's output (schedule_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>

#include "hp/core/error.hpp"
#include "hp/mpmd/schedule.hpp"
#include "hp/mpmd/verify.hpp"
#include "mpmd/find_action.hpp"

namespace hp::mpmd {
namespace {

std::string error_of(const Schedule& s, const CostModel* costs = nullptr) {
  try {
    if (costs)
      verify(s, *costs);
    else
      verify(s);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MpmdVerify, SwappedReceivesOfOnePairAreAnOrderMismatch) {
  Schedule s = gpipe(chain_graph(2), 2);
  auto& r1 = s.actions[1];
  std::swap(r1[find_action(r1, "RECV act c0->c1 m0 from r0")],
            r1[find_action(r1, "RECV act c0->c1 m1 from r0")]);
  std::string e = error_of(s);
  EXPECT_NE(e.find("sends and receives of r0->r1 are in different orders: message 0 is sent as "
                   "r0 #1 SEND act c0->c1 m0 to r1 but received as r1 #0 RECV act c0->c1 m1"),
            std::string::npos)
      << e;
}

TEST(MpmdVerify, ASendMovedAfterAReceiveIsADeadlockCycle) {
  // Rank 0 waits for the gradient of m0 before sending the activations rank 1 needs to make it.
  Schedule s = one_f_one_b(chain_graph(2), 2);
  auto& r0 = s.actions[0];
  std::vector<Action> sends;
  for (auto it = r0.begin(); it != r0.end();) {
    if (it->kind == ActionKind::kSend)
      sends.push_back(*it), it = r0.erase(it);
    else
      ++it;
  }
  size_t recv = find_action(r0, "RECV grad c1->c0 m0 from r1");
  r0.insert(r0.begin() + long(recv) + 1, sends.begin(), sends.end());
  std::string e = error_of(s);
  EXPECT_NE(e.find("deadlock: ranks wait on each other in a cycle:"), std::string::npos) << e;
  EXPECT_NE(e.find("r1 blocks at #0 RECV act c0->c1 m0 from r0; r0 sends it only after its own "
                   "#2 RECV grad c1->c0 m0 from r1"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("r0 blocks at #2 RECV grad c1->c0 m0 from r1"), std::string::npos) << e;
}

TEST(MpmdVerify, AMissingActionIsNamedWithItsRank) {
  Schedule s = one_f_one_b(chain_graph(3), 4);
  auto& r1 = s.actions[1];
  r1.erase(r1.begin() + long(find_action(r1, "BW c1 m2")));
  std::string e = error_of(s);
  EXPECT_NE(e.find("BW c1 m2 is missing: rank 1 never runs it"), std::string::npos) << e;
}

TEST(MpmdVerify, AnActionBeforeItsInputIsNamedWithWhereTheInputIs) {
  Schedule s = one_f_one_b(chain_graph(2), 2);
  auto& r1 = s.actions[1];
  size_t recv = find_action(r1, "RECV act c0->c1 m1 from r0"), f = find_action(r1, "F c1 m1");
  std::swap(r1[recv], r1[f]);
  std::string e = error_of(s);
  EXPECT_NE(e.find("r1 #" + std::to_string(recv) +
                   " F c1 m1 runs before its input from c0, which "
                   "is at r1 #" +
                   std::to_string(f) + " RECV act c0->c1 m1 from r0"),
            std::string::npos)
      << e;
}

TEST(MpmdVerify, OverItsMemoryBudgetNamesTheLiveForwards) {
  Schedule s = one_f_one_b(chain_graph(4), 8);  // rank 0 holds 4 micro-batches at its peak
  CostModel costs = CostModel::uniform(s.graph);
  costs.memory_budget = {3, 3, 3, 3};
  std::string e = error_of(s, &costs);
  EXPECT_NE(e.find("rank 0 holds 4 of activations after #6 F c0 m3, over its budget of 3; live "
                   "forwards: #0 F c0 m0 #2 F c0 m1 #4 F c0 m2 #6 F c0 m3"),
            std::string::npos)
      << e;
  costs.memory_budget = {4, 3, 2, 1};
  VerifyReport rep = verify(s, costs);
  EXPECT_EQ(rep.peak_memory, (std::vector<double>{4, 3, 2, 1}));
}

TEST(MpmdVerify, DuplicatesWrongRanksAndStrayEdgesAreRejected) {
  Schedule s = gpipe(chain_graph(2), 1);
  Schedule dup = s;
  dup.actions[0].insert(dup.actions[0].begin() + 1, dup.actions[0][0]);
  EXPECT_NE(error_of(dup).find("F c0 m0 appears twice"), std::string::npos) << error_of(dup);
  Schedule wrong = s;
  wrong.actions[1].insert(wrong.actions[1].begin(), wrong.actions[0][0]);
  EXPECT_NE(error_of(wrong).find("chunk c0 runs on rank 0"), std::string::npos);
  Schedule fused = s;
  fused.split_backward = true;
  EXPECT_NE(error_of(fused).find("a fused backward in a schedule with B and W split"),
            std::string::npos);
}

}  // namespace
}  // namespace hp::mpmd
