// The `threads` backend: ranks are threads of one process. Each collective posts its buffers in
// a per-group slot table, meets the other ranks at a rendezvous, then every rank reads its peers'
// buffers directly (zero copy); all-reduce is reduce-scatter + all-gather, split across ranks.
// Not a message-passing emulation: there are no intermediate copies or queues for collectives.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <tuple>

#include "../reduce.hpp"
#include "../worker.hpp"
#include "hp/comm/threads.hpp"

namespace hp::comm {
namespace detail {
namespace {

using std::chrono::milliseconds;

// World-wide failure record: the first failure wins and every later operation rethrows it.
class Failure {
 public:
  bool failed() const { return rank_.load(std::memory_order_acquire) >= 0; }
  void set(int rank, const std::string& reason) {
    std::lock_guard<std::mutex> lk(mu_);
    if (rank_.load() >= 0) return;
    reason_ = reason;
    rank_.store(rank, std::memory_order_release);
  }
  int rank() const { return rank_.load(std::memory_order_acquire); }
  [[noreturn]] void raise() const {
    std::lock_guard<std::mutex> lk(mu_);
    throw RemoteError(failure_message(rank_.load(), reason_));
  }
  void raise_if_failed() const {
    if (failed()) raise();
  }

 private:
  mutable std::mutex mu_;
  std::atomic<int> rank_{-1};
  std::string reason_;
};

enum class Kind : uint8_t {
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kAllToAll,
  kBroadcast,
  kBarrier
};
const char* kind_name(Kind k) {
  static const char* names[] = {"all_reduce", "all_gather", "reduce_scatter",
                                "all_to_all", "broadcast",  "barrier"};
  return names[int(k)];
}

// What one rank posted for the current collective.
struct Slot {
  Kind kind = Kind::kBarrier;
  DType dtype = DType::kF32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  size_t count = 0;
  const void* send = nullptr;
  void* recv = nullptr;
  const std::vector<size_t>* counts = nullptr;   // per-rank counts (gather/scatter/a2a send)
  const std::vector<size_t>* counts2 = nullptr;  // a2a recv counts
};

// One point-to-point request waiting for its match.
struct P2p {
  const void* send = nullptr;
  void* recv = nullptr;
  size_t bytes = 0;
  std::shared_ptr<WorkState> state;
};

}  // namespace

struct Group {
  Group(std::vector<int> ranks, uint64_t id_)
      : world_ranks(std::move(ranks)), id(id_), n(int(world_ranks.size())) {
    slots[0].resize(size_t(n));
    slots[1].resize(size_t(n));
  }
  std::vector<int> world_ranks;
  uint64_t id;
  int n;
  // Double-buffered by operation parity: a rank can be at most one collective ahead of the
  // slowest, so it never overwrites a slot another rank still reads.
  std::vector<Slot> slots[2];
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t gen = 0;
  std::atomic<uint64_t> gen_pub{0};
  std::mutex p2p_mu;
  std::map<std::tuple<int, int, int>, std::deque<P2p>> sends, recvs;  // (src, dst, tag)

  // Rendezvous of all n ranks; throws the world failure instead of waiting for a dead rank.
  void arrive(const Failure& f) {
    uint64_t my;
    {
      std::lock_guard<std::mutex> lk(mu);
      f.raise_if_failed();
      my = gen;
      if (++arrived == n) {
        arrived = 0;
        gen_pub.store(++gen, std::memory_order_release);
        cv.notify_all();
        return;
      }
    }
    // Short yielding spin (cheap when ranks arrive together), then block; never a pure busy loop
    // because ranks may outnumber cores.
    for (int i = 0; i < 64; ++i) {
      if (gen_pub.load(std::memory_order_acquire) != my) return;
      f.raise_if_failed();
      std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lk(mu);
    while (gen == my) {
      f.raise_if_failed();
      cv.wait_for(lk, milliseconds(1));
    }
  }
};

struct ThreadShared {
  explicit ThreadShared(int n) {
    std::vector<int> all(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) all[size_t(i)] = i;
    root = std::make_shared<Group>(all, 0);
  }
  Failure failure;
  std::shared_ptr<Group> root;
  std::mutex mu;
  uint64_t next_id = 1;
  // Sub-groups being created: key -> (group, members still to pick it up).
  std::map<std::string, std::pair<std::shared_ptr<Group>, int>> pending;
};

namespace {

class ThreadComm final : public Communicator {
 public:
  ThreadComm(std::shared_ptr<ThreadShared> world, std::shared_ptr<Group> g, int rank)
      : world_(std::move(world)), g_(std::move(g)), rank_(rank) {}
  ~ThreadComm() override {
    // Peers would wait forever for operations this rank will never run: fail them instead.
    if (!worker_.idle()) abort("communicator destroyed with operations pending");
  }

  int rank() const override { return rank_; }
  int size() const override { return g_->n; }
  int world_rank() const override { return g_->world_ranks[size_t(rank_)]; }
  const char* backend() const override { return "threads"; }

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override {
    world_->failure.raise_if_failed();
    check_split_ranks(ranks, g_->n, rank_, "threads");
    int nth = split_count_[ranks]++;
    std::string key = cat(g_->id, "/", nth, ":");
    std::vector<int> world_ranks;
    for (int r : ranks) {
      key += cat(r, ",");
      world_ranks.push_back(g_->world_ranks[size_t(r)]);
    }
    std::shared_ptr<Group> sub;
    {
      std::lock_guard<std::mutex> lk(world_->mu);
      auto it = world_->pending.find(key);
      if (it == world_->pending.end()) {
        auto g = std::make_shared<Group>(world_ranks, world_->next_id++);
        it = world_->pending.emplace(key, std::make_pair(g, int(ranks.size()))).first;
      }
      sub = it->second.first;
      if (--it->second.second == 0) world_->pending.erase(it);
    }
    int new_rank = int(std::find(ranks.begin(), ranks.end(), rank_) - ranks.begin());
    return std::make_unique<ThreadComm>(world_, sub, new_rank);
  }

  Work all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) override {
    Slot s{Kind::kAllReduce, t, op, 0, count, send, recv, nullptr, nullptr};
    return submit(s, [this, count, t, op](std::vector<Slot>& sl) {
      size_t es = dtype_size(t);
      std::vector<size_t> lo(size_t(g_->n)), hi(size_t(g_->n));
      for (int q = 0; q < g_->n; ++q)
        chunk_range(count, es, g_->n, q, &lo[size_t(q)], &hi[size_t(q)]);
      // Phase 1 (reduce-scatter): this rank reduces its chunk over every rank's send buffer.
      size_t me_lo = lo[size_t(rank_)], me_n = hi[size_t(rank_)] - me_lo;
      std::vector<const void*> srcs(size_t(g_->n));
      for (int q = 0; q < g_->n; ++q)
        srcs[size_t(q)] = static_cast<const char*>(sl[size_t(q)].send) + me_lo * es;
      auto* my_recv = static_cast<char*>(sl[size_t(rank_)].recv);
      if (me_n > 0) reduce_buffers(my_recv + me_lo * es, srcs.data(), g_->n, me_n, t, op);
      g_->arrive(world_->failure);
      // Phase 2 (all-gather): copy every other chunk from its owner's result.
      for (int q = 0; q < g_->n; ++q) {
        if (q == rank_ || hi[size_t(q)] == lo[size_t(q)]) continue;
        std::memcpy(my_recv + lo[size_t(q)] * es,
                    static_cast<const char*>(sl[size_t(q)].recv) + lo[size_t(q)] * es,
                    (hi[size_t(q)] - lo[size_t(q)]) * es);
      }
    });
  }

  Work all_gather(const void* send, void* recv, const std::vector<size_t>& counts,
                  DType t) override {
    check_counts(counts, g_->n, "all_gather");
    auto c = std::make_shared<std::vector<size_t>>(counts);
    Slot s{Kind::kAllGather, t, ReduceOp::kSum, 0, 0, send, recv, c.get(), nullptr};
    return submit(s, [this, c, t](std::vector<Slot>& sl) {
      size_t es = dtype_size(t), off = 0;
      auto* out = static_cast<char*>(sl[size_t(rank_)].recv);
      for (int q = 0; q < g_->n; ++q) {
        size_t bytes = (*c)[size_t(q)] * es;
        const void* src = sl[size_t(q)].send;
        if (bytes > 0 && src != out + off) std::memcpy(out + off, src, bytes);
        off += bytes;
      }
    });
  }

  Work reduce_scatter(const void* send, void* recv, const std::vector<size_t>& counts, DType t,
                      ReduceOp op) override {
    check_counts(counts, g_->n, "reduce_scatter");
    auto c = std::make_shared<std::vector<size_t>>(counts);
    Slot s{Kind::kReduceScatter, t, op, 0, 0, send, recv, c.get(), nullptr};
    return submit(s, [this, c, t, op](std::vector<Slot>& sl) {
      size_t es = dtype_size(t), off = 0;
      for (int q = 0; q < rank_; ++q) off += (*c)[size_t(q)];
      std::vector<const void*> srcs(size_t(g_->n));
      for (int q = 0; q < g_->n; ++q)
        srcs[size_t(q)] = static_cast<const char*>(sl[size_t(q)].send) + off * es;
      size_t n = (*c)[size_t(rank_)];
      if (n > 0) reduce_buffers(sl[size_t(rank_)].recv, srcs.data(), g_->n, n, t, op);
    });
  }

  Work all_to_all(const void* send, const std::vector<size_t>& send_counts, void* recv,
                  const std::vector<size_t>& recv_counts, DType t) override {
    check_counts(send_counts, g_->n, "all_to_all");
    check_counts(recv_counts, g_->n, "all_to_all");
    auto sc = std::make_shared<std::vector<size_t>>(send_counts);
    auto rc = std::make_shared<std::vector<size_t>>(recv_counts);
    Slot s{Kind::kAllToAll, t, ReduceOp::kSum, 0, 0, send, recv, sc.get(), rc.get()};
    return submit(s, [this, sc, rc, t](std::vector<Slot>& sl) {
      size_t es = dtype_size(t), roff = 0;
      auto* out = static_cast<char*>(sl[size_t(rank_)].recv);
      for (int p = 0; p < g_->n; ++p) {
        const auto& pc = *sl[size_t(p)].counts;
        size_t soff = 0;
        for (int q = 0; q < rank_; ++q) soff += pc[size_t(q)];
        size_t n = (*rc)[size_t(p)];
        if (n > 0)
          std::memcpy(out + roff * es, static_cast<const char*>(sl[size_t(p)].send) + soff * es,
                      n * es);
        roff += n;
      }
    });
  }

  Work broadcast(void* buf, size_t count, DType t, int root) override {
    HP_CHECK(root >= 0 && root < g_->n, "[comm] broadcast: root ", root, " outside group of ",
             g_->n);
    Slot s{Kind::kBroadcast, t, ReduceOp::kSum, root, count, buf, buf, nullptr, nullptr};
    return submit(s, [this, count, t, root](std::vector<Slot>& sl) {
      if (rank_ != root && count > 0)
        std::memcpy(sl[size_t(rank_)].recv, sl[size_t(root)].send, count * dtype_size(t));
    });
  }

  Work barrier() override {
    Slot s;
    return submit(s, nullptr);
  }

  Work send(const void* buf, size_t count, DType t, int peer, int tag) override {
    return p2p(true, const_cast<void*>(buf), count * dtype_size(t), peer, tag);
  }
  Work recv(void* buf, size_t count, DType t, int peer, int tag) override {
    return p2p(false, buf, count * dtype_size(t), peer, tag);
  }

  void abort(const std::string& reason) override { world_->failure.set(world_rank(), reason); }
  void throw_if_failed() const override { world_->failure.raise_if_failed(); }

 private:
  std::string describe(const Slot& s) const {
    return cat(kind_name(s.kind), "(", dtype_name(s.dtype), ", ", s.count, ") on rank ", rank_,
               " of threads:", g_->n);
  }

  // Runs a collective on the worker: post slot, rendezvous, check that every rank called the
  // same collective, run body (which reads peers' buffers), rendezvous before buffers are reused.
  Work submit(Slot s, std::function<void(std::vector<Slot>&)> body) {
    return worker_.submit(describe(s), [this, s, body = std::move(body)] {
      world_->failure.raise_if_failed();
      std::vector<Slot>& sl = g_->slots[seq_++ & 1];
      sl[size_t(rank_)] = s;
      g_->arrive(world_->failure);
      std::string mismatch = check_match(sl);
      if (!mismatch.empty()) {
        g_->arrive(world_->failure);  // nobody reuses the slots while others still compare
        throw Error(mismatch);
      }
      if (!body) return;
      body(sl);
      g_->arrive(world_->failure);
    });
  }

  // Every rank checks every slot, so all ranks agree on whether to throw.
  std::string check_match(const std::vector<Slot>& sl) const {
    const Slot& a = sl[0];
    for (int q = 1; q < g_->n; ++q) {
      const Slot& b = sl[size_t(q)];
      bool same = a.kind == b.kind && a.dtype == b.dtype && a.op == b.op && a.root == b.root &&
                  a.count == b.count && (a.counts == nullptr) == (b.counts == nullptr);
      if (same && a.counts && a.kind != Kind::kAllToAll) same = *a.counts == *b.counts;
      if (!same)
        return cat("[comm] collective mismatch in threads group: rank 0 called ", describe(a),
                   ", rank ", q, " called ", describe(b));
    }
    if (a.kind == Kind::kAllToAll) {
      for (int p = 0; p < g_->n; ++p)
        for (int q = 0; q < g_->n; ++q)
          if ((*sl[size_t(p)].counts)[size_t(q)] != (*sl[size_t(q)].counts2)[size_t(p)])
            return cat("[comm] all_to_all: rank ", p, " sends ", (*sl[size_t(p)].counts)[size_t(q)],
                       " elements to rank ", q, " which expects ",
                       (*sl[size_t(q)].counts2)[size_t(p)]);
    }
    return {};
  }

  // Point-to-point: whichever side arrives second copies (zero intermediate copies). Not run on
  // the worker, so send/recv never wait behind collectives and cannot deadlock each other.
  Work p2p(bool is_send, void* buf, size_t bytes, int peer, int tag) {
    HP_CHECK(peer >= 0 && peer < g_->n && peer != rank_, "[comm] ", is_send ? "send" : "recv",
             ": invalid peer ", peer, " for rank ", rank_, " of ", g_->n);
    auto state = std::make_shared<WorkState>(cat(is_send ? "send to " : "recv from ", peer,
                                                 " (tag ", tag, ", ", bytes, " bytes) on rank ",
                                                 rank_, " of threads:", g_->n));
    auto world = world_;
    std::weak_ptr<WorkState> weak = state;
    state->poll = [world, weak] {
      if (!world->failure.failed()) return;
      auto s = weak.lock();
      try {
        world->failure.raise();
      } catch (...) {
        if (s) s->finish(std::current_exception());
      }
    };
    if (world_->failure.failed()) {
      state->poll();
      return Work(state);
    }
    auto key = is_send ? std::make_tuple(rank_, peer, tag) : std::make_tuple(peer, rank_, tag);
    P2p mine{is_send ? buf : nullptr, is_send ? nullptr : buf, bytes, state};
    P2p match;
    {
      std::lock_guard<std::mutex> lk(g_->p2p_mu);
      auto& other = is_send ? g_->recvs[key] : g_->sends[key];
      if (other.empty()) {
        (is_send ? g_->sends[key] : g_->recvs[key]).push_back(std::move(mine));
        return Work(state);
      }
      match = std::move(other.front());
      other.pop_front();
    }
    const P2p& s = is_send ? mine : match;
    const P2p& r = is_send ? match : mine;
    std::exception_ptr error;
    if (s.bytes != r.bytes) {
      error =
          std::make_exception_ptr(Error(cat("[comm] send of ", s.bytes, " bytes matched a recv of ",
                                            r.bytes, " bytes (tag ", tag, ")")));
    } else if (s.bytes > 0) {
      std::memcpy(r.recv, s.send, s.bytes);
    }
    match.state->finish(error);
    state->finish(error);
    return Work(state);
  }

  std::shared_ptr<ThreadShared> world_;
  std::shared_ptr<Group> g_;
  int rank_;
  uint64_t seq_ = 0;  // touched by the worker only
  std::map<std::vector<int>, int> split_count_;
  Worker worker_;  // last member: joined first, while everything it uses is alive
};

}  // namespace
}  // namespace detail

ThreadWorld::ThreadWorld(int n) : n_(n) {
  HP_CHECK(n >= 1, "[comm] ThreadWorld of ", n, " ranks");
  shared_ = std::make_shared<detail::ThreadShared>(n);
}

ThreadWorld::~ThreadWorld() = default;

std::unique_ptr<Communicator> ThreadWorld::communicator(int rank) {
  HP_CHECK(rank >= 0 && rank < n_, "[comm] rank ", rank, " outside ThreadWorld of ", n_);
  return std::make_unique<detail::ThreadComm>(shared_, shared_->root, rank);
}

void ThreadWorld::run(const std::function<void(Communicator&)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n_));
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < n_; ++r) comms.push_back(communicator(r));
  {
    std::vector<std::jthread> threads;
    for (int r = 0; r < n_; ++r) {
      threads.emplace_back([&, r] {
        try {
          fn(*comms[size_t(r)]);
        } catch (const std::exception& e) {
          errors[size_t(r)] = std::current_exception();
          comms[size_t(r)]->abort(e.what());
        } catch (...) {
          errors[size_t(r)] = std::current_exception();
          comms[size_t(r)]->abort("unknown exception");
        }
      });
    }
  }  // jthreads join here
  comms.clear();
  int failed = shared_->failure.rank();
  if (failed >= 0 && errors[size_t(failed)]) std::rethrow_exception(errors[size_t(failed)]);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  if (failed >= 0) shared_->failure.raise();
}

void run_threads(int n, const std::function<void(Communicator&)>& fn) {
  ThreadWorld(n).run(fn);
}

}  // namespace hp::comm
