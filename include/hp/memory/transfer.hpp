// Transfer engine: copies between tiers run on a few threads of their own, overlapped with the
// compute thread (or inline on the compute cores, see CopyMode); each submission returns a handle
// whose wait(timeout) rethrows the failure.
// Not a scheduler: jobs run in submission order (FIFO), batching is the caller's choice.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hp::memory {

namespace detail {
struct TransferState;
}

// A handle to one submitted transfer; cheap to copy. A default handle is already done.
class Transfer {
 public:
  Transfer() = default;
  explicit Transfer(std::shared_ptr<detail::TransferState> s) : s_(std::move(s)) {}
  // Blocks until the transfer finished; throws hp::Timeout after `timeout`, or rethrows the
  // transfer's own failure (every waiter sees it).
  void wait(std::chrono::milliseconds timeout) const;
  bool done() const;
  size_t bytes() const;
  const std::string& what() const;

 private:
  std::shared_ptr<detail::TransferState> s_;
};

// Where jobs run. kThreads: on the engine's own worker threads, overlapped with compute (copy
// engines, disk I/O). kInline: on the submitting thread, at once, with copy_bytes spread over
// `threads` cores: where "device" memory is host DRAM and a copy needs the same cores as the
// kernels, a short parallel copy at the point of issue costs less than one competing with them.
enum class CopyMode { kThreads, kInline };
CopyMode parse_copy_mode(const std::string& s);  // "threads" / "inline"; throws otherwise
const char* copy_mode_name(CopyMode m);

class TransferEngine {
 public:
  // kThreads: `threads` >= 1 worker threads, joined by the destructor (queued jobs are cancelled
  // with an error, running ones finish). kInline: no workers; `threads` copy together.
  explicit TransferEngine(int threads = 2, CopyMode mode = CopyMode::kThreads);
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // Runs `job` on a transfer thread (inline: now, on this thread; a failure still surfaces from
  // the handle's wait); `what` names it in errors, `bytes` feeds the statistics.
  Transfer submit(std::string what, size_t bytes, std::function<void()> job);
  // memcpy for jobs: chunked on a worker, or over the inline team.
  void copy_bytes(void* dst, const void* src, size_t n) const;
  // Many copies of `bytes` each (a gather or scatter of equal pieces), for jobs: one after the
  // other on a worker, or the pieces split over the inline team.
  struct Piece {
    void* dst;
    const void* src;
  };
  void copy_pieces(const std::vector<Piece>& pieces, size_t bytes) const;
  // memcpy of `n` bytes in large chunks on a transfer thread. Both buffers must outlive it.
  Transfer copy(void* dst, const void* src, size_t n, std::string what = "copy");
  // Waits for every transfer submitted so far; throws hp::Timeout or the first failure.
  void drain(std::chrono::milliseconds timeout);

  size_t bytes_moved() const;
  double busy_seconds() const;  // summed over threads
  int threads() const { return threads_; }
  CopyMode mode() const { return mode_; }

 private:
  void work();
  std::exception_ptr run_job(detail::TransferState& s, std::function<void()>& job);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<detail::TransferState>, std::function<void()>>> queue_;
  std::vector<std::shared_ptr<detail::TransferState>> recent_;  // for drain()
  bool stop_ = false;
  size_t bytes_moved_ = 0;
  double busy_s_ = 0;
  int threads_;
  CopyMode mode_;
  std::vector<std::thread> workers_;
};

}  // namespace hp::memory
