// Communicator, threads backend: every collective x dtype x op x even/uneven counts x sub-groups
// on 1-4 ranks, plus failure semantics (a throwing rank, abort, mismatch, timeout) and, when a GPU
// is present, the nccl backend. The MPI backend runs the same cases in comm_mpi.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>

#include "comm_cases.hpp"
#include "hp/comm/threads.hpp"
#ifdef HP_HAVE_NCCL
#include "hp/comm/nccl.hpp"
#endif

namespace hp::comm {
namespace {

using namespace std::chrono_literals;
using testing::kWait;

class Threads : public ::testing::TestWithParam<int> {};

TEST_P(Threads, AllReduce) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_all_reduce(c); });
}
TEST_P(Threads, AllGather) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_all_gather(c); });
}
TEST_P(Threads, ReduceScatter) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_reduce_scatter(c); });
}
TEST_P(Threads, AllToAll) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_all_to_all(c); });
}
TEST_P(Threads, Broadcast) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_broadcast(c); });
}
TEST_P(Threads, SendRecv) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_send_recv(c); });
}
TEST_P(Threads, Timeout) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_timeout(c); });
}
TEST_P(Threads, Split) {
  run_threads(GetParam(), [](Communicator& c) { testing::check_split(c); });
}
INSTANTIATE_TEST_SUITE_P(Ranks, Threads, ::testing::Values(1, 2, 3, 4));

TEST(ThreadsComm, LargeAllReduceIsExact) {
  run_threads(4, [](Communicator& c) {
    size_t n = (size_t(1) << 22) + 5;  // 16 MiB of f32, not a multiple of the chunk alignment
    std::vector<float> buf(n);
    for (size_t i = 0; i < n; ++i) buf[i] = float(c.rank() + 1) * float(i % 1000);
    c.all_reduce(buf.data(), buf.data(), n, DType::kF32, ReduceOp::kSum).wait(kWait);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad += buf[i] != 10.0f * float(i % 1000);
    EXPECT_EQ(bad, 0u);
  });
}

TEST(ThreadsComm, HalfReductionsAccumulateInF32) {
  // 1 + 4 * 2^-9 in bf16: adding 2^-9 four times to 1 in bf16 would round back to 1 each time.
  run_threads(4, [](Communicator& c) {
    uint16_t v = f32_to_bf16(c.rank() == 0 ? 1.0f : 1.0f / 512);
    c.all_reduce(&v, &v, 1, DType::kBF16, ReduceOp::kSum).wait(kWait);
    EXPECT_EQ(bf16_to_f32(v), bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 512)));
  });
}

TEST(ThreadsComm, ThrowingRankFailsEveryPeerAndIsRethrown) {
  std::atomic<int> named{0};
  auto t0 = std::chrono::steady_clock::now();
  try {
    run_threads(4, [&](Communicator& c) {
      std::vector<float> x(1000, 1.0f);
      c.all_reduce(x.data(), x.data(), x.size(), DType::kF32, ReduceOp::kSum).wait(kWait);
      if (c.rank() == 2) throw std::runtime_error("boom on two");
      try {
        c.all_reduce(x.data(), x.data(), x.size(), DType::kF32, ReduceOp::kSum).wait(kWait);
      } catch (const RemoteError& e) {
        if (std::string(e.what()).find("rank 2 failed: boom on two") != std::string::npos) ++named;
        throw;
      }
    });
    FAIL() << "expected the failing rank's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom on two");  // the root cause, not a peer's RemoteError
  }
  EXPECT_EQ(named.load(), 3);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(ThreadsComm, AbortFailsPendingAndLaterOpsOnAllCommunicators) {
  ThreadWorld world(3);
  std::atomic<int> pending_failed{0}, later_failed{0}, p2p_failed{0};
  EXPECT_THROW(world.run([&](Communicator& c) {
    auto sub = c.split({0, 1, 2});
    if (c.rank() == 1) {
      std::this_thread::sleep_for(100ms);
      c.abort("disk full");
      return;
    }
    float x = 1;
    Work pending = c.all_reduce(&x, &x, 1, DType::kF32, ReduceOp::kSum);  // rank 1 never joins
    float y = 0;
    Work p2p = c.recv(&y, 1, DType::kF32, 1);
    try {
      pending.wait(kWait);
    } catch (const RemoteError& e) {
      if (std::string(e.what()).find("rank 1 failed: disk full") != std::string::npos)
        ++pending_failed;
    }
    try {
      p2p.wait(kWait);
    } catch (const RemoteError&) {
      ++p2p_failed;
    }
    try {
      sub->barrier().wait(kWait);
    } catch (const RemoteError& e) {
      if (std::string(e.what()).find("rank 1") != std::string::npos) ++later_failed;
    }
  }),
               RemoteError);
  EXPECT_EQ(pending_failed.load(), 2);
  EXPECT_EQ(p2p_failed.load(), 2);
  EXPECT_EQ(later_failed.load(), 2);
}

TEST(ThreadsComm, MismatchedCollectivesFailOnEveryRank) {
  std::atomic<int> errors{0};
  run_threads(2, [&](Communicator& c) {
    float x[4] = {};
    Work w = c.rank() == 0 ? c.all_reduce(x, x, 4, DType::kF32, ReduceOp::kSum) : c.barrier();
    try {
      w.wait(kWait);
    } catch (const Error& e) {
      if (std::string(e.what()).find("mismatch") != std::string::npos) ++errors;
    }
    c.all_reduce(x, x, 4, DType::kF32, ReduceOp::kSum).wait(kWait);  // still usable afterwards
  });
  EXPECT_EQ(errors.load(), 2);
}

TEST(ThreadsComm, InvalidArgumentsThrow) {
  run_threads(2, [](Communicator& c) {
    float x[2] = {};
    EXPECT_THROW(c.all_gather(x, x, std::vector<size_t>{1}, DType::kF32), Error);
    EXPECT_THROW(c.send(x, 1, DType::kF32, c.rank()), Error);
    EXPECT_THROW(c.split({0, 0}), Error);
    EXPECT_THROW(c.broadcast(x, 1, DType::kF32, 5), Error);
  });
}

TEST(ThreadsComm, WorkCompletedAndEmpty) {
  Work empty;
  EXPECT_THROW(empty.wait(1ms), Error);
  Work done = Work::completed("x");
  EXPECT_TRUE(done.done());
  done.wait(1ms);
}

#ifdef HP_HAVE_NCCL
TEST(Nccl, AllReduceAndUnevenAllGatherOnGpus) {
  int gpus = cuda_device_count();
  if (gpus == 0) GTEST_SKIP() << "no CUDA device";
  int n = std::min(gpus, 4);
  run_threads(n, [&](Communicator& boot) {
    auto c = make_nccl_communicator(boot, boot.rank());
    size_t count = 1 << 20;
    std::vector<float> host(count, float(c->rank() + 1));
    DeviceBuffer buf(boot.rank(), count * 4);
    buf.copy_from_host(host.data(), count * 4);
    c->all_reduce(buf.data(), buf.data(), count, DType::kF32, ReduceOp::kSum).wait(kWait);
    buf.copy_to_host(host.data(), count * 4);
    float want = float(n * (n + 1) / 2);
    size_t bad = 0;
    for (float v : host) bad += v != want;
    EXPECT_EQ(bad, 0u);
    std::vector<size_t> counts;
    for (int r = 0; r < n; ++r) counts.push_back(size_t(r + 1) * 1000);
    size_t total = std::accumulate(counts.begin(), counts.end(), size_t(0));
    std::vector<float> mine(counts[size_t(c->rank())], float(c->rank()));
    DeviceBuffer in(boot.rank(), mine.size() * 4), out(boot.rank(), total * 4);
    in.copy_from_host(mine.data(), mine.size() * 4);
    c->all_gather(in.data(), out.data(), counts, DType::kF32).wait(kWait);
    std::vector<float> got(total);
    out.copy_to_host(got.data(), total * 4);
    size_t pos = 0;
    bad = 0;
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < counts[size_t(r)]; ++i) bad += got[pos++] != float(r);
    EXPECT_EQ(bad, 0u);
    c->barrier().wait(kWait);
  });
}
#endif

}  // namespace
}  // namespace hp::comm
