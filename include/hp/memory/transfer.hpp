// Transfer engine: copies between tiers run on a few threads of their own, overlapped with the
// compute thread; each submission returns a handle whose wait(timeout) rethrows the failure.
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

class TransferEngine {
 public:
  // `threads` >= 1 worker threads, joined by the destructor (queued jobs are cancelled with an
  // error, running ones finish).
  explicit TransferEngine(int threads = 2);
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // Runs `job` on a transfer thread; `what` names it in errors, `bytes` feeds the statistics.
  Transfer submit(std::string what, size_t bytes, std::function<void()> job);
  // memcpy of `n` bytes in large chunks on a transfer thread. Both buffers must outlive it.
  Transfer copy(void* dst, const void* src, size_t n, std::string what = "copy");
  // Waits for every transfer submitted so far; throws hp::Timeout or the first failure.
  void drain(std::chrono::milliseconds timeout);

  size_t bytes_moved() const;
  double busy_seconds() const;  // summed over threads
  int threads() const { return int(workers_.size()); }

 private:
  void work();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<detail::TransferState>, std::function<void()>>> queue_;
  std::vector<std::shared_ptr<detail::TransferState>> recent_;  // for drain()
  bool stop_ = false;
  size_t bytes_moved_ = 0;
  double busy_s_ = 0;
  std::vector<std::thread> workers_;
};

}  // namespace hp::memory
