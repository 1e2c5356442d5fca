// MPI lifetime (init/finalize) and the failure monitor: every rank sends a heartbeat to every
// peer each interval; a peer silent for failure_timeout, or one that sent an abort message, is
// recorded as the world failure that all pending and later operations rethrow.
// Not a fault-tolerant MPI: after a failure communicators are unusable and MPI is not finalised.
#include <cstring>

#include "mpi_shared.hpp"

namespace hp::comm {
namespace detail {

namespace {
constexpr int kCtrlTag = 7;
std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  return std::string(buf, size_t(len));
}
}  // namespace

MpiShared::MpiShared(MpiOptions options) : opts(options) {
  int inited = 0;
  MPI_Initialized(&inited);
  int provided = 0;
  if (!inited) {
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    HP_CHECK(rc == MPI_SUCCESS, "[comm] MPI_Init_thread failed: ", mpi_error_string(rc));
    owns_init = true;
  } else {
    MPI_Query_thread(&provided);
  }
  HP_CHECK(provided == MPI_THREAD_MULTIPLE,
           "[comm] MPI does not provide MPI_THREAD_MULTIPLE (level ", provided, ")");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_dup(MPI_COMM_WORLD, &ctrl);
  MPI_Comm_set_errhandler(ctrl, MPI_ERRORS_RETURN);
  last_seen_.assign(size_t(size), Clock::now());
  departed_.assign(size_t(size), 0);
  hb_req_.assign(size_t(size), MPI_REQUEST_NULL);
  hb_msg_->kind = kHeartbeat;
  hb_msg_->rank = rank;
  MPI_Irecv(in_msg_.get(), sizeof(CtrlMsg), MPI_BYTE, MPI_ANY_SOURCE, kCtrlTag, ctrl, &in_req_);
  monitor_ = std::thread([this] { monitor_loop(); });
}

MpiShared::~MpiShared() {
  bool clean = !failed();
  if (clean) {
    // Tell peers this rank leaves on purpose, so its silence is not taken for a failure.
    for (int p = 0; p < size; ++p)
      if (p != rank) send_ctrl(p, kGoodbye, rank, "");
    reap_sends(std::chrono::milliseconds(1000));
  }
  stop_.store(true);
  monitor_.join();
  if (!clean || failed()) {
    // Requests to a dead peer may never complete and MPI cannot be finalised: leave MPI be and
    // leak every buffer a pending request still points to.
    (void)hb_msg_.release();
    (void)in_msg_.release();
    std::lock_guard<std::mutex> lk(send_mu_);
    for (auto& s : sends_) (void)s.second.release();
    return;
  }
  MPI_Cancel(&in_req_);
  MPI_Wait(&in_req_, MPI_STATUS_IGNORE);
  for (MPI_Request& r : hb_req_)
    if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
  {
    std::lock_guard<std::mutex> lk(send_mu_);
    for (auto& s : sends_)
      if (s.first != MPI_REQUEST_NULL) MPI_Request_free(&s.first);
    sends_.clear();
  }
  MPI_Comm_free(&ctrl);
  if (owns_init) MPI_Finalize();
}

void MpiShared::set_failure(int world_rank, const std::string& reason) {
  std::lock_guard<std::mutex> lk(mu_);
  if (failed_rank.load() >= 0) return;
  reason_ = reason;
  failed_rank.store(world_rank, std::memory_order_release);
}

void MpiShared::raise() const {
  std::lock_guard<std::mutex> lk(mu_);
  throw RemoteError(failure_message(failed_rank.load(), reason_));
}

void MpiShared::send_ctrl(int peer, int32_t kind, int failed, const std::string& reason) {
  auto msg = std::make_unique<CtrlMsg>();
  msg->kind = kind;
  msg->rank = failed;
  std::strncpy(msg->reason, reason.c_str(), sizeof(msg->reason) - 1);
  MPI_Request req = MPI_REQUEST_NULL;
  if (MPI_Isend(msg.get(), sizeof(CtrlMsg), MPI_BYTE, peer, kCtrlTag, ctrl, &req) != MPI_SUCCESS)
    return;  // the peer is gone; nothing to tell
  std::lock_guard<std::mutex> lk(send_mu_);
  sends_.emplace_back(req, std::move(msg));
}

void MpiShared::reap_sends(std::chrono::milliseconds wait) {
  auto deadline = Clock::now() + wait;
  while (true) {
    {
      std::lock_guard<std::mutex> lk(send_mu_);
      for (auto it = sends_.begin(); it != sends_.end();) {
        int flag = 0;
        if (MPI_Test(&it->first, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || flag) {
          it = sends_.erase(it);
        } else {
          ++it;
        }
      }
      if (sends_.empty() || Clock::now() >= deadline) return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void MpiShared::abort(const std::string& reason) {
  set_failure(rank, reason);
  // Forward the world's first failure (which may be another rank's, seen here first), so a
  // rank failing because of a peer never takes the blame for it.
  int failed;
  std::string why;
  {
    std::lock_guard<std::mutex> lk(mu_);
    failed = failed_rank.load();
    why = reason_;
  }
  for (int p = 0; p < size; ++p)
    if (p != rank) send_ctrl(p, kAbort, failed, why);
  reap_sends(std::chrono::milliseconds(1000));
}

void MpiShared::monitor_loop() {
  auto interval = opts.heartbeat_interval;
  auto tick =
      std::max(std::chrono::milliseconds(1), std::min(interval / 5, decltype(interval)(10)));
  auto next_hb = Clock::now();
  while (!stop_.load()) {
    // Drain control messages.
    while (true) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Test(&in_req_, &flag, &st) != MPI_SUCCESS || !flag) break;
      int src = st.MPI_SOURCE;
      if (src >= 0 && src < size) {
        last_seen_[size_t(src)] = Clock::now();
        if (in_msg_->kind == kAbort) {
          in_msg_->reason[sizeof(in_msg_->reason) - 1] = 0;
          int failed = in_msg_->rank >= 0 && in_msg_->rank < size ? in_msg_->rank : src;
          set_failure(failed, in_msg_->reason);
        } else if (in_msg_->kind == kGoodbye) {
          departed_[size_t(src)] = 1;
        }
      }
      MPI_Irecv(in_msg_.get(), sizeof(CtrlMsg), MPI_BYTE, MPI_ANY_SOURCE, kCtrlTag, ctrl, &in_req_);
    }
    auto now = Clock::now();
    if (now >= next_hb) {
      for (int p = 0; p < size; ++p) {
        if (p == rank || departed_[size_t(p)]) continue;
        int flag = 1;
        if (hb_req_[size_t(p)] != MPI_REQUEST_NULL)
          MPI_Test(&hb_req_[size_t(p)], &flag, MPI_STATUS_IGNORE);
        // A peer that stopped receiving keeps one heartbeat pending, never a growing queue.
        if (flag)
          MPI_Isend(hb_msg_.get(), sizeof(CtrlMsg), MPI_BYTE, p, kCtrlTag, ctrl,
                    &hb_req_[size_t(p)]);
      }
      next_hb = now + interval;
    }
    for (int p = 0; p < size; ++p) {
      if (p == rank || departed_[size_t(p)]) continue;
      auto silent =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - last_seen_[size_t(p)]);
      if (silent > opts.failure_timeout)
        set_failure(p, cat("no heartbeat for ", silent.count(), " ms (process died or hung)"));
    }
    reap_sends(std::chrono::milliseconds(0));
    std::this_thread::sleep_for(tick);
  }
}

}  // namespace detail

MpiWorld::MpiWorld(MpiOptions options) : shared_(std::make_shared<detail::MpiShared>(options)) {}

MpiWorld::~MpiWorld() = default;

int MpiWorld::rank() const {
  return shared_->rank;
}
int MpiWorld::size() const {
  return shared_->size;
}
bool MpiWorld::failed() const {
  return shared_->failed();
}

std::unique_ptr<Communicator> MpiWorld::communicator() {
  return detail::make_mpi_world_comm(shared_);
}

void MpiWorld::run(const std::function<void(Communicator&)>& fn) {
  auto comm = communicator();
  try {
    fn(*comm);
  } catch (const std::exception& e) {
    comm->abort(e.what());
    throw;
  }
}

}  // namespace hp::comm
