// The `mpi` backend: one rank per process under mpirun (OpenMPI, MPI_THREAD_MULTIPLE).
// Collectives are non-blocking MPI calls driven by a progress thread; a monitor thread exchanges
// heartbeats so a dead or aborted process turns into hp::RemoteError on every other rank.
// Not a launcher: start processes with mpirun; only available when built with HP_HAVE_MPI.
#pragma once
#ifdef HP_HAVE_MPI
#include <chrono>
#include <functional>
#include <memory>

#include "hp/comm/communicator.hpp"

namespace hp::comm {

struct MpiOptions {
  // How often each rank tells every peer it is alive.
  std::chrono::milliseconds heartbeat_interval{100};
  // Silence after which a peer is declared failed (process died or hung outside MPI's reach).
  std::chrono::milliseconds failure_timeout{10000};
};

namespace detail {
struct MpiShared;
}

// Owns MPI for this process: MPI_Init_thread(MULTIPLE) (unless MPI is already initialised, then
// it only checks the thread level), the failure monitor, and MPI_Finalize. Create one per process
// before any communicator; destroy communicators first. After a failure MPI cannot be finalised
// safely, so the destructor then skips MPI_Finalize (mpirun reports a non-zero exit).
class MpiWorld {
 public:
  explicit MpiWorld(MpiOptions options = {});
  ~MpiWorld();
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

  int rank() const;
  int size() const;
  // A communicator over MPI_COMM_WORLD (its own duplicate). Collective over all processes.
  std::unique_ptr<Communicator> communicator();
  // Runs fn with a world communicator; if fn throws, aborts (peers get hp::RemoteError naming
  // this rank) and rethrows.
  void run(const std::function<void(Communicator&)>& fn);
  // True once any rank's failure has been seen here.
  bool failed() const;

 private:
  std::shared_ptr<detail::MpiShared> shared_;
};

}  // namespace hp::comm
#endif  // HP_HAVE_MPI
