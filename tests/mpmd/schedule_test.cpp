// Schedules as data: every generator's output passes the verifier over a grid of ranks p,
// micro-batches m and chunks v, and the orders have the shapes their papers give.
#include <gtest/gtest.h>

#include "hp/core/error.hpp"
#include "hp/mpmd/schedule.hpp"
#include "hp/mpmd/verify.hpp"

namespace hp::mpmd {
namespace {

TEST(MpmdSchedule, EveryGeneratorVerifiesOverAGrid) {
  for (int p = 1; p <= 5; ++p) {
    for (int m = 1; m <= 9; ++m) {
      for (auto kind :
           {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kZbH1, ScheduleKind::kZbV}) {
        Schedule s = make_schedule(kind, p, m);
        SCOPED_TRACE(s.name + " p=" + std::to_string(p) + " m=" + std::to_string(m));
        EXPECT_NO_THROW(verify(s)) << s.str();
      }
      for (int v = 1; v <= 3; ++v) {
        Schedule s = interleaved(p, v, m);
        SCOPED_TRACE("interleaved p=" + std::to_string(p) + " m=" + std::to_string(m) +
                     " v=" + std::to_string(v));
        EXPECT_NO_THROW(verify(s)) << s.str();
      }
    }
  }
}

TEST(MpmdSchedule, OneFOneBHasTheClassicOrder) {
  Schedule s = one_f_one_b(chain_graph(4), 8);
  // Rank r runs p - r forwards before its first backward, then alternates.
  EXPECT_EQ(s.compact(),
            "r0: F0.0 F0.1 F0.2 F0.3 BW0.0 F0.4 BW0.1 F0.5 BW0.2 F0.6 BW0.3 F0.7 BW0.4 BW0.5 "
            "BW0.6 BW0.7 OPT\n"
            "r1: F1.0 F1.1 F1.2 BW1.0 F1.3 BW1.1 F1.4 BW1.2 F1.5 BW1.3 F1.6 BW1.4 F1.7 BW1.5 "
            "BW1.6 BW1.7 OPT\n"
            "r2: F2.0 F2.1 BW2.0 F2.2 BW2.1 F2.3 BW2.2 F2.4 BW2.3 F2.5 BW2.4 F2.6 BW2.5 F2.7 "
            "BW2.6 BW2.7 OPT\n"
            "r3: F3.0 BW3.0 F3.1 BW3.1 F3.2 BW3.2 F3.3 BW3.3 F3.4 BW3.4 F3.5 BW3.5 F3.6 BW3.6 "
            "F3.7 BW3.7 OPT\n");
}

TEST(MpmdSchedule, SendsFollowTheirProducerAndReceivesPrecedeTheirConsumer) {
  Schedule s = gpipe(chain_graph(2), 2);
  EXPECT_EQ(s.str(),
            "r0: F c0 m0 | SEND act c0->c1 m0 to r1 | F c0 m1 | SEND act c0->c1 m1 to r1 | "
            "RECV grad c1->c0 m0 from r1 | BW c0 m0 | RECV grad c1->c0 m1 from r1 | BW c0 m1 | "
            "OPT\n"
            "r1: RECV act c0->c1 m0 from r0 | F c1 m0 | RECV act c0->c1 m1 from r0 | F c1 m1 | "
            "BW c1 m0 | SEND grad c1->c0 m0 to r0 | BW c1 m1 | SEND grad c1->c0 m1 to r0 | OPT\n");
}

TEST(MpmdSchedule, PlacementsAndNames) {
  EXPECT_EQ(v_graph(3).rank_of, (std::vector<int>{0, 1, 2, 2, 1, 0}));
  EXPECT_EQ(chain_graph(2, 2).rank_of, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(parse_schedule_kind("zb-h1"), ScheduleKind::kZbH1);
  EXPECT_THROW(parse_schedule_kind("zb-h2"), Error);
  EXPECT_THROW(placed_chain({0, 2}), Error);  // rank 1 holds nothing
}

}  // namespace
}  // namespace hp::mpmd
