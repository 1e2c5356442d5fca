// Work completion, argument checks and messages shared by every backend.
// Not a backend: nothing here moves data.
#include "hp/comm/communicator.hpp"

#include <algorithm>

namespace hp::comm {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

namespace detail {

void WorkState::finish(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (done_) return;
    done_ = true;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

bool WorkState::done() {
  std::lock_guard<std::mutex> lk(mu_);
  return done_;
}

std::exception_ptr WorkState::error() {
  std::lock_guard<std::mutex> lk(mu_);
  return error_;
}

bool WorkState::wait_for(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (!poll) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_until(lk, deadline, [&] { return done_; });
  }
  // Backends that finish work only when polled (failure checks) get polled every millisecond.
  while (true) {
    poll();
    std::unique_lock<std::mutex> lk(mu_);
    if (done_) return true;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    cv_.wait_until(lk, std::min(deadline, now + std::chrono::milliseconds(1)));
    if (done_) return true;
  }
}

void check_split_ranks(const std::vector<int>& ranks, int n, int me, const char* backend) {
  HP_CHECK(!ranks.empty(), "[comm] ", backend, " split: empty rank list");
  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  HP_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "[comm] ", backend,
           " split: duplicate rank in list");
  HP_CHECK(sorted.front() >= 0 && sorted.back() < n, "[comm] ", backend, " split: rank ",
           sorted.front() < 0 ? sorted.front() : sorted.back(), " outside group of size ", n);
  HP_CHECK(std::find(ranks.begin(), ranks.end(), me) != ranks.end(), "[comm] ", backend,
           " split: rank ", me, " is not in the list and must not call split");
}

void check_counts(const std::vector<size_t>& counts, int n, const char* op) {
  HP_CHECK(counts.size() == size_t(n), "[comm] ", op, ": ", counts.size(),
           " per-rank counts for a group of ", n);
}

std::string failure_message(int world_rank, const std::string& reason) {
  return cat("[comm] rank ", world_rank, " failed: ", reason);
}

}  // namespace detail

Work Work::completed(std::string what, std::exception_ptr error) {
  auto s = std::make_shared<detail::WorkState>(std::move(what));
  s->finish(std::move(error));
  return Work(std::move(s));
}

void Work::wait(std::chrono::milliseconds timeout) {
  HP_CHECK(state_ != nullptr, "[comm] wait on an empty Work");
  if (!state_->wait_for(timeout)) {
    throw Timeout(
        detail::cat("[comm] ", state_->what(), " did not finish within ", timeout.count(), " ms"));
  }
  if (auto e = state_->error()) std::rethrow_exception(e);
}

bool Work::done() const {
  return state_ && state_->done();
}

void wait_all(std::vector<Work>& works, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (Work& w : works) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    w.wait(std::max(left, std::chrono::milliseconds(0)));
  }
}

}  // namespace hp::comm
