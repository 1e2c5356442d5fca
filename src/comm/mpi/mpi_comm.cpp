// MPI communicator: every operation becomes non-blocking MPI calls (MPI_Iallreduce, MPI_Isend,
// ...) started in issue order by a progress thread that polls them with MPI_Test, so waits have
// timeouts and a world failure (heartbeat loss, abort) fails pending operations.
// Not a reimplementation of MPI's algorithms: bf16/f16 reductions go through f32 scratch.
#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>

#include "../reduce.hpp"
#include "mpi_shared.hpp"

namespace hp::comm::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxUserTag = 30000;
constexpr int kSplitTag = 32000;

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kBF16:
    case DType::kF16:
      return MPI_UINT16_T;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

bool is_half(DType t) {
  return t == DType::kBF16 || t == DType::kF16;
}

int to_int(size_t n, const char* what) {
  HP_CHECK(n <= size_t(INT_MAX), "[comm] mpi ", what, ": count ", n, " exceeds INT_MAX");
  return int(n);
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  return std::string(buf, size_t(len));
}

void mpi_check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw Error(cat("[comm] ", what, ": ", mpi_error_string(rc)));
}

// One operation in flight: start() posts requests; when they all complete, step() either
// finishes (returns true) or posts the next stage's requests (returns false).
struct Op {
  std::shared_ptr<WorkState> state;
  std::function<void(std::vector<MPI_Request>&)> start;
  std::function<bool(std::vector<MPI_Request>&)> step;
  std::vector<MPI_Request> reqs;
  std::string mpi_error;  // set when MPI reported an error; waits for the monitor to name a rank
  Clock::time_point error_since;
};

class MpiComm final : public Communicator {
 public:
  MpiComm(std::shared_ptr<MpiShared> w, MPI_Comm comm, std::vector<int> world_ranks)
      : w_(std::move(w)), comm_(comm), world_ranks_(std::move(world_ranks)) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    thread_ = std::thread([this] { loop(); });
  }
  ~MpiComm() override {
    if (!idle()) abort("communicator destroyed with operations pending");
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (!w_->failed()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank() const override { return world_ranks_[size_t(rank_)]; }
  const char* backend() const override { return "mpi"; }

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override {
    w_->raise_if_failed();
    check_split_ranks(ranks, size_, rank_, "mpi");
    // Members meet first through polled messages (so a dead member is detected, not waited for);
    // MPI_Comm_create_group then runs among members known to be alive.
    auto ctx = std::make_shared<SplitCtx>();
    ctx->ranks = ranks;
    int root = ranks[0];
    Work work = submit(
        cat("split(", ranks.size(), " ranks)"),
        [this, ctx, root](std::vector<MPI_Request>& reqs) {
          if (rank_ == root) {
            for (int r : ctx->ranks)
              if (r != root) post_recv(reqs, &ctx->token, 1, MPI_INT, r, kSplitTag);
          } else {
            post_send(reqs, &ctx->token, 1, MPI_INT, root, kSplitTag);
          }
        },
        [this, ctx, root](std::vector<MPI_Request>& reqs) {
          if (ctx->stage++ == 0) {
            if (rank_ == root) {
              for (int r : ctx->ranks)
                if (r != root) post_send(reqs, &ctx->token, 1, MPI_INT, r, kSplitTag + 1);
            } else {
              post_recv(reqs, &ctx->token, 1, MPI_INT, root, kSplitTag + 1);
            }
            return false;
          }
          MPI_Group parent, sub;
          MPI_Comm_group(comm_, &parent);
          MPI_Group_incl(parent, int(ctx->ranks.size()), ctx->ranks.data(), &sub);
          int rc = MPI_Comm_create_group(comm_, sub, kSplitTag + 2, &ctx->comm);
          MPI_Group_free(&sub);
          MPI_Group_free(&parent);
          mpi_check(rc, "MPI_Comm_create_group");
          return true;
        });
    work.wait(w_->opts.failure_timeout * 3);
    std::vector<int> world_ranks;
    for (int r : ranks) world_ranks.push_back(world_ranks_[size_t(r)]);
    return std::make_unique<MpiComm>(w_, ctx->comm, std::move(world_ranks));
  }

  Work all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) override {
    int n = to_int(count, "all_reduce");
    std::string what = describe("all_reduce", t, count);
    if (is_half(t)) {
      auto scratch = std::make_shared<std::vector<float>>(count);
      return submit(
          what,
          [=, this](std::vector<MPI_Request>& reqs) {
            to_f32(send, scratch->data(), count, t);
            reqs.emplace_back();
            mpi_check(MPI_Iallreduce(MPI_IN_PLACE, scratch->data(), n, MPI_FLOAT, mpi_op(op), comm_,
                                     &reqs.back()),
                      "MPI_Iallreduce");
          },
          [=, this](std::vector<MPI_Request>&) {
            if (op == ReduceOp::kAvg) divide_by(scratch->data(), count, DType::kF32, size_);
            from_f32(scratch->data(), recv, count, t);
            return true;
          });
    }
    return submit(
        what,
        [=, this](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          mpi_check(MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, n, mpi_type(t),
                                   mpi_op(op), comm_, &reqs.back()),
                    "MPI_Iallreduce");
        },
        [=, this](std::vector<MPI_Request>&) {
          if (op == ReduceOp::kAvg) divide_by(recv, count, t, size_);
          return true;
        });
  }

  Work all_gather(const void* send, void* recv, const std::vector<size_t>& counts,
                  DType t) override {
    check_counts(counts, size_, "all_gather");
    auto c = std::make_shared<std::vector<int>>();
    auto d = std::make_shared<std::vector<int>>();
    size_t off = 0, mine_off = 0;
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) mine_off = off;
      c->push_back(to_int(counts[size_t(q)], "all_gather"));
      d->push_back(to_int(off, "all_gather"));
      off += counts[size_t(q)];
    }
    bool even = std::all_of(c->begin(), c->end(), [&](int x) { return x == (*c)[0]; });
    const void* in_place = static_cast<char*>(recv) + mine_off * dtype_size(t);
    const void* sbuf = send == in_place ? MPI_IN_PLACE : send;
    return submit(
        describe("all_gather", t, off),
        [=, this](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          int me = (*c)[size_t(rank_)];
          if (even) {
            mpi_check(
                MPI_Iallgather(sbuf, me, mpi_type(t), recv, me, mpi_type(t), comm_, &reqs.back()),
                "MPI_Iallgather");
          } else {
            mpi_check(MPI_Iallgatherv(sbuf, me, mpi_type(t), recv, c->data(), d->data(),
                                      mpi_type(t), comm_, &reqs.back()),
                      "MPI_Iallgatherv");
          }
        },
        nullptr);
  }

  Work reduce_scatter(const void* send, void* recv, const std::vector<size_t>& counts, DType t,
                      ReduceOp op) override {
    check_counts(counts, size_, "reduce_scatter");
    auto c = std::make_shared<std::vector<int>>();
    size_t total = 0;
    for (size_t x : counts) {
      c->push_back(to_int(x, "reduce_scatter"));
      total += x;
    }
    size_t mine = counts[size_t(rank_)];
    std::string what = describe("reduce_scatter", t, total);
    bool half = is_half(t);
    auto in = std::make_shared<std::vector<float>>(half ? total : 0);
    auto out = std::make_shared<std::vector<float>>(half ? mine : 0);
    return submit(
        what,
        [=, this](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          if (half) {
            to_f32(send, in->data(), total, t);
            mpi_check(MPI_Ireduce_scatter(in->data(), out->data(), c->data(), MPI_FLOAT, mpi_op(op),
                                          comm_, &reqs.back()),
                      "MPI_Ireduce_scatter");
          } else {
            mpi_check(MPI_Ireduce_scatter(send, recv, c->data(), mpi_type(t), mpi_op(op), comm_,
                                          &reqs.back()),
                      "MPI_Ireduce_scatter");
          }
        },
        [=, this](std::vector<MPI_Request>&) {
          if (half) {
            if (op == ReduceOp::kAvg) divide_by(out->data(), mine, DType::kF32, size_);
            from_f32(out->data(), recv, mine, t);
          } else if (op == ReduceOp::kAvg) {
            divide_by(recv, mine, t, size_);
          }
          return true;
        });
  }

  Work all_to_all(const void* send, const std::vector<size_t>& send_counts, void* recv,
                  const std::vector<size_t>& recv_counts, DType t) override {
    check_counts(send_counts, size_, "all_to_all");
    check_counts(recv_counts, size_, "all_to_all");
    auto v = std::make_shared<std::vector<int>>();  // scounts, sdispls, rcounts, rdispls
    v->resize(size_t(4 * size_));
    size_t so = 0, ro = 0;
    for (int q = 0; q < size_; ++q) {
      (*v)[size_t(q)] = to_int(send_counts[size_t(q)], "all_to_all");
      (*v)[size_t(size_ + q)] = to_int(so, "all_to_all");
      (*v)[size_t(2 * size_ + q)] = to_int(recv_counts[size_t(q)], "all_to_all");
      (*v)[size_t(3 * size_ + q)] = to_int(ro, "all_to_all");
      so += send_counts[size_t(q)];
      ro += recv_counts[size_t(q)];
    }
    int s = size_;
    return submit(
        describe("all_to_all", t, so),
        [=, this](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          int* p = v->data();
          mpi_check(MPI_Ialltoallv(send, p, p + s, mpi_type(t), recv, p + 2 * s, p + 3 * s,
                                   mpi_type(t), comm_, &reqs.back()),
                    "MPI_Ialltoallv");
        },
        nullptr);
  }

  Work broadcast(void* buf, size_t count, DType t, int root) override {
    HP_CHECK(root >= 0 && root < size_, "[comm] broadcast: root ", root, " outside group of ",
             size_);
    int n = to_int(count, "broadcast");
    return submit(
        describe("broadcast", t, count),
        [=, this](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          mpi_check(MPI_Ibcast(buf, n, mpi_type(t), root, comm_, &reqs.back()), "MPI_Ibcast");
        },
        nullptr);
  }

  Work send(const void* buf, size_t count, DType t, int peer, int tag) override {
    check_p2p(peer, tag, "send");
    int n = to_int(count, "send");
    return submit(
        cat("send to ", peer, " (tag ", tag, ") ", describe("", t, count)),
        [=, this](std::vector<MPI_Request>& reqs) {
          post_send(reqs, buf, n, mpi_type(t), peer, tag);
        },
        nullptr);
  }

  Work recv(void* buf, size_t count, DType t, int peer, int tag) override {
    check_p2p(peer, tag, "recv");
    int n = to_int(count, "recv");
    return submit(
        cat("recv from ", peer, " (tag ", tag, ") ", describe("", t, count)),
        [=, this](std::vector<MPI_Request>& reqs) {
          post_recv(reqs, buf, n, mpi_type(t), peer, tag);
        },
        nullptr);
  }

  Work barrier() override {
    return submit(
        describe("barrier", DType::kF32, 0),
        [this](std::vector<MPI_Request>& reqs) {
          reqs.emplace_back();
          mpi_check(MPI_Ibarrier(comm_, &reqs.back()), "MPI_Ibarrier");
        },
        nullptr);
  }

  void abort(const std::string& reason) override { w_->abort(reason); }
  void throw_if_failed() const override { w_->raise_if_failed(); }

 private:
  struct SplitCtx {
    std::vector<int> ranks;
    int token = 0;
    int stage = 0;
    MPI_Comm comm = MPI_COMM_NULL;
  };

  std::string describe(const char* op, DType t, size_t count) const {
    return cat(op, "(", dtype_name(t), ", ", count, ") on rank ", rank_, " (world rank ",
               world_ranks_[size_t(rank_)], ") of mpi:", size_);
  }

  void check_p2p(int peer, int tag, const char* op) const {
    HP_CHECK(peer >= 0 && peer < size_ && peer != rank_, "[comm] ", op, ": invalid peer ", peer,
             " for rank ", rank_, " of ", size_);
    HP_CHECK(tag >= 0 && tag < kMaxUserTag, "[comm] ", op, ": tag ", tag, " outside [0, ",
             kMaxUserTag, ")");
  }

  void post_send(std::vector<MPI_Request>& reqs, const void* buf, int n, MPI_Datatype t, int peer,
                 int tag) {
    reqs.emplace_back();
    mpi_check(MPI_Isend(buf, n, t, peer, tag, comm_, &reqs.back()), "MPI_Isend");
  }
  void post_recv(std::vector<MPI_Request>& reqs, void* buf, int n, MPI_Datatype t, int peer,
                 int tag) {
    reqs.emplace_back();
    mpi_check(MPI_Irecv(buf, n, t, peer, tag, comm_, &reqs.back()), "MPI_Irecv");
  }

  Work submit(std::string what, std::function<void(std::vector<MPI_Request>&)> start,
              std::function<bool(std::vector<MPI_Request>&)> step) {
    auto state = std::make_shared<WorkState>(std::move(what));
    if (w_->failed()) {
      try {
        w_->raise();
      } catch (...) {
        state->finish(std::current_exception());
      }
      return Work(state);
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back({state, std::move(start), std::move(step), {}, {}, {}});
      ++unfinished_;
    }
    cv_.notify_one();
    return Work(state);
  }

  bool idle() { return unfinished_.load() == 0; }

  // Counted down before the Work finishes, so a caller that saw it finish also sees idle().
  void complete(Op& op, std::exception_ptr e = nullptr) {
    --unfinished_;
    op.state->finish(std::move(e));
  }

  // Progress thread: starts queued operations in order and polls the active ones.
  void loop() {
    std::list<Op> active;
    while (true) {
      std::deque<Op> fresh;
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (active.empty()) cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty() && active.empty()) return;
        fresh.swap(queue_);
      }
      for (Op& op : fresh) {
        try {
          w_->raise_if_failed();
          op.start(op.reqs);
          active.push_back(std::move(op));
        } catch (...) {
          complete(op, std::current_exception());
        }
      }
      bool progressed = false;
      for (auto it = active.begin(); it != active.end();) {
        if (poll(*it)) {
          it = active.erase(it);
          progressed = true;
        } else {
          ++it;
        }
      }
      // While a collective is in flight, Open MPI only advances its rounds inside MPI calls:
      // poll without sleeping (a sleep of even 50 us per round cost 10-25% against MPI_Wait),
      // but yield, since ranks may outnumber cores.
      if (!active.empty() && !progressed) std::this_thread::yield();
    }
  }

  // Returns true when op is finished (successfully or not).
  bool poll(Op& op) {
    try {
      w_->raise_if_failed();
      if (!op.mpi_error.empty()) {
        // MPI saw an error (e.g. a broken connection); give the monitor time to name the rank.
        if (Clock::now() - op.error_since < w_->opts.failure_timeout) return false;
        throw RemoteError(
            cat("[comm] ", op.state->what(), ": ", op.mpi_error, " (no failed rank identified)"));
      }
      int flag = 0;
      int rc = op.reqs.empty()
                   ? MPI_SUCCESS
                   : MPI_Testall(int(op.reqs.size()), op.reqs.data(), &flag, MPI_STATUSES_IGNORE);
      if (op.reqs.empty()) flag = 1;
      if (rc != MPI_SUCCESS) {
        op.mpi_error = mpi_error_string(rc);
        op.error_since = Clock::now();
        return false;
      }
      if (!flag) return false;
      op.reqs.clear();
      if (op.step && !op.step(op.reqs)) return false;
      complete(op);
    } catch (...) {
      complete(op, std::current_exception());
    }
    return true;
  }

  std::shared_ptr<MpiShared> w_;
  MPI_Comm comm_;
  std::vector<int> world_ranks_;
  int rank_ = 0, size_ = 1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  std::atomic<size_t> unfinished_{0};  // submitted and not yet finished
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world_comm(std::shared_ptr<MpiShared> shared) {
  MPI_Comm dup;
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &dup), "MPI_Comm_dup");
  std::vector<int> ranks(size_t(shared->size));
  for (int i = 0; i < shared->size; ++i) ranks[size_t(i)] = i;
  return std::make_unique<MpiComm>(std::move(shared), dup, std::move(ranks));
}

}  // namespace hp::comm::detail
