// Transfer engine: a FIFO of jobs served by a small pool of joined worker threads.
#include "hp/memory/transfer.hpp"

#include <cstring>

#include "hp/error.hpp"

namespace hp::memory {

namespace detail {
struct TransferState {
  std::string what;
  size_t bytes = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;

  void finish(std::exception_ptr e) {
    std::lock_guard<std::mutex> lk(mu);
    done = true;
    error = std::move(e);
    cv.notify_all();
  }
};
}  // namespace detail

void Transfer::wait(std::chrono::milliseconds timeout) const {
  if (!s_) return;
  std::unique_lock<std::mutex> lk(s_->mu);
  if (!s_->cv.wait_for(lk, timeout, [&] { return s_->done; }))
    throw Timeout(hp::detail::cat("[transfer] '", s_->what, "' (", s_->bytes,
                                  " bytes) did not finish within ", timeout.count(), " ms"));
  if (s_->error) std::rethrow_exception(s_->error);
}

bool Transfer::done() const {
  if (!s_) return true;
  std::lock_guard<std::mutex> lk(s_->mu);
  return s_->done;
}

size_t Transfer::bytes() const {
  return s_ ? s_->bytes : 0;
}

const std::string& Transfer::what() const {
  static const std::string kNone = "none";
  return s_ ? s_->what : kNone;
}

TransferEngine::TransferEngine(int threads) {
  HP_CHECK(threads >= 1, "[transfer] threads must be >= 1, got ", threads);
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

TransferEngine::~TransferEngine() {
  decltype(queue_) cancelled;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    cancelled.swap(queue_);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  for (auto& [state, job] : cancelled)
    state->finish(std::make_exception_ptr(
        Error("[transfer] '" + state->what + "' cancelled: the engine shut down")));
}

Transfer TransferEngine::submit(std::string what, size_t bytes, std::function<void()> job) {
  auto s = std::make_shared<detail::TransferState>();
  s->what = std::move(what);
  s->bytes = bytes;
  {
    std::lock_guard<std::mutex> lk(mu_);
    HP_CHECK(!stop_, "[transfer] engine is shutting down");
    queue_.emplace_back(s, std::move(job));
    // Finished handles are dropped here so drain() only sees what may still be running.
    std::erase_if(recent_, [](const auto& r) {
      std::lock_guard<std::mutex> l(r->mu);
      return r->done && !r->error;
    });
    recent_.push_back(s);
  }
  cv_.notify_one();
  return Transfer(s);
}

Transfer TransferEngine::copy(void* dst, const void* src, size_t n, std::string what) {
  return submit(std::move(what), n, [dst, src, n] {
    // Large chunks keep the copy streaming without holding one huge memcpy.
    constexpr size_t kChunk = size_t(8) << 20;
    for (size_t off = 0; off < n; off += kChunk)
      std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                  std::min(kChunk, n - off));
  });
}

void TransferEngine::drain(std::chrono::milliseconds timeout) {
  std::vector<std::shared_ptr<detail::TransferState>> pending;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending.swap(recent_);
  }
  for (auto& s : pending) Transfer(s).wait(timeout);
}

size_t TransferEngine::bytes_moved() const {
  std::lock_guard<std::mutex> lk(mu_);
  return bytes_moved_;
}

double TransferEngine::busy_seconds() const {
  std::lock_guard<std::mutex> lk(mu_);
  return busy_s_;
}

void TransferEngine::work() {
  for (;;) {
    std::shared_ptr<detail::TransferState> s;
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping
      s = std::move(queue_.front().first);
      job = std::move(queue_.front().second);
      queue_.pop_front();
    }
    auto t0 = std::chrono::steady_clock::now();
    std::exception_ptr err;
    try {
      job();
    } catch (const std::exception& e) {
      err = std::make_exception_ptr(Error("[transfer] '" + s->what + "' failed: " + e.what()));
    } catch (...) {
      err = std::make_exception_ptr(Error("[transfer] '" + s->what + "' failed"));
    }
    job = nullptr;  // buffers the job held (an evicted device copy) are released before done
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard<std::mutex> lk(mu_);
      busy_s_ += dt;
      if (!err) bytes_moved_ += s->bytes;
    }
    s->finish(err);
  }
}

}  // namespace hp::memory
