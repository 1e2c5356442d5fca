// Communicator, mpi backend, run under mpirun -np 4: the shared collective cases (comm_cases.hpp)
// on the world and on sub-groups. With --kill DIR or --throw DIR it instead runs one failure
// scenario and writes DIR/rank<R>.txt on every surviving rank (checked by comm_mpi_failure.sh).
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>

#include "comm_cases.hpp"
#include "hp/comm/mpi.hpp"

namespace hp::comm {
namespace {

using namespace std::chrono_literals;
Communicator* g_comm = nullptr;

TEST(Mpi, AllReduce) {
  testing::check_all_reduce(*g_comm);
}
TEST(Mpi, AllGather) {
  testing::check_all_gather(*g_comm);
}
TEST(Mpi, ReduceScatter) {
  testing::check_reduce_scatter(*g_comm);
}
TEST(Mpi, AllToAll) {
  testing::check_all_to_all(*g_comm);
}
TEST(Mpi, Broadcast) {
  testing::check_broadcast(*g_comm);
}
TEST(Mpi, SendRecv) {
  testing::check_send_recv(*g_comm);
}
TEST(Mpi, Timeout) {
  testing::check_timeout(*g_comm);
}
TEST(Mpi, Split) {
  testing::check_split(*g_comm);
}
TEST(Mpi, HalfReductionsAccumulateInF32) {
  uint16_t v = f32_to_bf16(g_comm->rank() == 0 ? 1.0f : 1.0f / 512);
  g_comm->all_reduce(&v, &v, 1, DType::kBF16, ReduceOp::kSum).wait(testing::kWait);
  EXPECT_EQ(bf16_to_f32(v), bf16_to_f32(f32_to_bf16(1.0f + float(g_comm->size() - 1) / 512)));
}

// Failure scenarios. The victim is the last rank; survivors loop on all-reduces until one fails,
// then record what they saw. PASS requires an hp::RemoteError naming the victim: a Timeout means
// the failure went unnoticed until the wait gave up, and names no one.
int failure_main(const std::string& mode, const std::string& dir) {
  MpiOptions opts;
  opts.heartbeat_interval = 50ms;
  opts.failure_timeout = 1500ms;
  MpiWorld world(opts);
  int victim = world.size() - 1;
  std::string result;
  auto t0 = std::chrono::steady_clock::now();
  try {
    world.run([&](Communicator& c) {
      // Ranks 0 and victim also use a sub-communicator, which must fail the same way.
      std::unique_ptr<Communicator> sub;
      if (c.rank() == 0 || c.rank() == victim) sub = c.split({0, victim});
      std::vector<float> x(4096, 1.0f);
      for (int i = 0; i < 1000; ++i) {
        if (c.rank() == victim && i == 5) {
          if (mode == "kill") raise(SIGKILL);
          throw std::runtime_error("victim gives up");
        }
        if (sub)
          sub->all_reduce(x.data(), x.data(), x.size(), DType::kF32, ReduceOp::kSum).wait(10s);
        c.all_reduce(x.data(), x.data(), x.size(), DType::kF32, ReduceOp::kSum).wait(10s);
      }
      result = "FAIL: no error after 1000 all-reduces";
    });
  } catch (const RemoteError& e) {
    // The victim itself must be named, not a survivor that saw the failure first.
    bool names =
        std::string(e.what()).rfind("[comm] rank " + std::to_string(victim) + " failed", 0) == 0;
    bool reason =
        mode != "throw" || std::string(e.what()).find("victim gives up") != std::string::npos;
    result = std::string(names && reason ? "PASS" : "FAIL") + " RemoteError: " + e.what();
  } catch (const Timeout& e) {
    result = std::string("FAIL Timeout (no failed rank named): ") + e.what();
  } catch (const std::exception& e) {
    result = std::string(world.rank() == victim ? "VICTIM " : "FAIL other: ") + e.what();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ofstream(dir + "/rank" + std::to_string(world.rank()) + ".txt")
      << result << " (after " << secs << " s)\n";
  return world.rank() == victim ? 1 : 0;
}

}  // namespace
}  // namespace hp::comm

int main(int argc, char** argv) {
  if (argc == 3 && (std::strcmp(argv[1], "--kill") == 0 || std::strcmp(argv[1], "--throw") == 0))
    return hp::comm::failure_main(argv[1] + 2, argv[2]);
  ::testing::InitGoogleTest(&argc, argv);
  hp::comm::MpiWorld world;
  int rc = 0;
  {
    auto comm = world.communicator();
    hp::comm::g_comm = comm.get();
    if (world.rank() != 0) {
      // One rank prints the usual report; the others only their failures.
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
    }
    rc = RUN_ALL_TESTS();
    // Every rank must agree, or mpirun reports success while a rank failed.
    int all = rc;
    comm->all_reduce(&rc, &all, 1, hp::DType::kI32, hp::comm::ReduceOp::kMax)
        .wait(std::chrono::seconds(60));
    rc = all;
    hp::comm::g_comm = nullptr;
  }
  return rc;
}
