// A rank's progress thread: runs queued operations in issue order and finishes their Work.
// Not a thread pool: one thread, FIFO, owned (and joined) by its communicator.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "hp/comm/communicator.hpp"

namespace hp::comm::detail {

class Worker {
 public:
  Worker();
  // Finishes every queued task (they fail fast once the world has failed), then joins.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Queues fn; the returned Work finishes when fn returns, or fails with what it throws.
  Work submit(std::string what, std::function<void()> fn);
  // True when nothing is queued or running.
  bool idle();

 private:
  void loop();
  struct Task {
    std::shared_ptr<WorkState> state;
    std::function<void()> fn;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hp::comm::detail
