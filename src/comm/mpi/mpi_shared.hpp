// State shared by every MPI communicator of one process: the world failure record and the
// heartbeat monitor that fills it. Not public: communicators reach it through MpiWorld.
#pragma once
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hp/comm/mpi.hpp"

namespace hp::comm::detail {

// Control message on the monitor's private communicator.
struct CtrlMsg {
  int32_t kind = 0;  // kHeartbeat, kAbort, kGoodbye
  int32_t rank = 0;  // the sender, or for kAbort the failed rank
  char reason[248] = {};
};

struct MpiShared {
  using Clock = std::chrono::steady_clock;
  static constexpr int32_t kHeartbeat = 1, kAbort = 2, kGoodbye = 3;

  MpiShared(MpiOptions options);
  ~MpiShared();

  bool failed() const { return failed_rank.load(std::memory_order_acquire) >= 0; }
  void set_failure(int world_rank, const std::string& reason);
  [[noreturn]] void raise() const;
  void raise_if_failed() const {
    if (failed()) raise();
  }
  // Records this rank's failure and tells every peer (waits at most ~1 s for delivery).
  void abort(const std::string& reason);

  MpiOptions opts;
  bool owns_init = false;
  int rank = 0, size = 1;
  MPI_Comm ctrl = MPI_COMM_NULL;

 private:
  void monitor_loop();
  void send_ctrl(int peer, int32_t kind, int failed, const std::string& reason);
  void reap_sends(std::chrono::milliseconds wait);

  mutable std::mutex mu_;
  std::atomic<int> failed_rank{-1};
  std::string reason_;
  std::atomic<bool> stop_{false};
  std::vector<Clock::time_point> last_seen_;  // monitor thread only
  std::vector<char> departed_;                // monitor thread only
  std::vector<MPI_Request> hb_req_;           // monitor thread only
  // Heap-held so that a failed world can leak them to requests MPI may still complete.
  std::unique_ptr<CtrlMsg> hb_msg_ = std::make_unique<CtrlMsg>();
  std::unique_ptr<CtrlMsg> in_msg_ = std::make_unique<CtrlMsg>();
  MPI_Request in_req_ = MPI_REQUEST_NULL;
  std::mutex send_mu_;
  std::deque<std::pair<MPI_Request, std::unique_ptr<CtrlMsg>>> sends_;
  std::thread monitor_;
};

// Builds the world communicator (a duplicate of MPI_COMM_WORLD). Defined in mpi_comm.cpp.
std::unique_ptr<Communicator> make_mpi_world_comm(std::shared_ptr<MpiShared> shared);

}  // namespace hp::comm::detail
