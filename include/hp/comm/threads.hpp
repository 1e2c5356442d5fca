// The `threads` backend: one process, one thread per rank, collectives through shared memory
// (ranks read each other's buffers directly after a rendezvous). The single-machine reference.
// Not a device model: buffers are host memory; pinning threads to cores is the caller's choice.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "hp/comm/communicator.hpp"

namespace hp::comm {

namespace detail {
struct ThreadShared;
}

// A world of n ranks in this process. Each rank's communicator must be used by that rank only.
class ThreadWorld {
 public:
  explicit ThreadWorld(int n);
  ~ThreadWorld();
  ThreadWorld(const ThreadWorld&) = delete;
  ThreadWorld& operator=(const ThreadWorld&) = delete;

  int size() const { return n_; }
  // The communicator of rank r over the whole world; take each rank once.
  std::unique_ptr<Communicator> communicator(int rank);
  // Runs fn on n threads, each with its rank's communicator. A rank that throws aborts the
  // world (every other rank's operations fail with hp::RemoteError naming it); after all threads
  // are joined the failed rank's own exception is rethrown here.
  void run(const std::function<void(Communicator&)>& fn);

 private:
  int n_;
  std::shared_ptr<detail::ThreadShared> shared_;
};

// ThreadWorld(n).run(fn).
void run_threads(int n, const std::function<void(Communicator&)>& fn);

}  // namespace hp::comm
