// Transfer engine: a FIFO of jobs served by a small pool of joined worker threads.
#include "hp/memory/transfer.hpp"

#include <algorithm>
#include <cstring>

#include "hp/core/error.hpp"

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

CopyMode parse_copy_mode(const std::string& s) {
  if (s == "threads") return CopyMode::kThreads;
  if (s == "inline") return CopyMode::kInline;
  throw Error("[transfer] copies must be threads or inline, got '" + s + "'");
}

const char* copy_mode_name(CopyMode m) {
  return m == CopyMode::kInline ? "inline" : "threads";
}

TransferEngine::TransferEngine(int threads, CopyMode mode) : threads_(threads), mode_(mode) {
  HP_CHECK(threads >= 1, "[transfer] threads must be >= 1, got ", threads);
  if (mode == CopyMode::kThreads)
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

void TransferEngine::copy_bytes(void* dst, const void* src, size_t n) const {
  // A worker streams large chunks rather than one huge memcpy; the inline team splits the copy
  // into one piece per thread (pieces of at least 256 KiB, smaller copies are not worth a team).
  const int team = mode_ == CopyMode::kInline
                       ? int(std::clamp<size_t>(n / (size_t(256) << 10), 1, size_t(threads_)))
                       : 1;
  const size_t chunk = team > 1 ? (n / size_t(team) + 63) / 64 * 64 : size_t(8) << 20;
  const int64_t chunks = int64_t((n + chunk - 1) / chunk);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t off = size_t(c) * chunk;
    std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                std::min(chunk, n - off));
  }
}

void TransferEngine::copy_pieces(const std::vector<Piece>& pieces, size_t bytes) const {
  const int64_t n = int64_t(pieces.size());
  [[maybe_unused]] const int team =  // unused where OpenMP is off (the fuzz build)
      mode_ == CopyMode::kInline ? int(std::clamp<int64_t>(n, 1, int64_t(threads_))) : 1;
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t i = 0; i < n; ++i) std::memcpy(pieces[size_t(i)].dst, pieces[size_t(i)].src, bytes);
}

std::exception_ptr TransferEngine::run_job(detail::TransferState& s, std::function<void()>& job) {
  auto t0 = std::chrono::steady_clock::now();
  std::exception_ptr err;
  try {
    job();
  } catch (const std::exception& e) {
    err = std::make_exception_ptr(Error("[transfer] '" + s.what + "' failed: " + e.what()));
  } catch (...) {
    err = std::make_exception_ptr(Error("[transfer] '" + s.what + "' failed"));
  }
  job = nullptr;  // buffers the job held (an evicted device copy) are released before done
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lk(mu_);
    busy_s_ += dt;
    if (!err) bytes_moved_ += s.bytes;
  }
  return err;
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
  if (mode_ == CopyMode::kInline) {
    s->finish(run_job(*s, job));
    return Transfer(s);
  }
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
  return submit(std::move(what), n, [this, dst, src, n] { copy_bytes(dst, src, n); });
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
    s->finish(run_job(*s, job));
  }
}

}  // namespace hp::memory
