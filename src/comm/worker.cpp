// Progress thread of one rank's communicator.
// Not shared between communicators, not detached: the destructor joins.
#include "worker.hpp"

namespace hp::comm::detail {

Worker::Worker() : thread_([this] { loop(); }) {}

Worker::~Worker() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Work Worker::submit(std::string what, std::function<void()> fn) {
  auto state = std::make_shared<WorkState>(std::move(what));
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back({state, std::move(fn)});
  }
  cv_.notify_one();
  return Work(state);
}

bool Worker::idle() {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.empty() && !busy_;
}

void Worker::loop() {
  while (true) {
    Task task;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    std::exception_ptr error;
    try {
      task.fn();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      busy_ = false;
    }
    task.state->finish(error);
  }
}

}  // namespace hp::comm::detail
