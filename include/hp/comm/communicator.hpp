// The one collective interface: rank, size, split, all-reduce, all-gather, reduce-scatter,
// all-to-all, broadcast, send/recv and barrier over raw buffers, every call asynchronous.
// Not a tensor API and not a scheduler: callers pass pointers, counts and a DType; backends
// (threads, mpi, nccl) only move and reduce bytes.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hp/comm/reduce_op.hpp"
#include "hp/core/dtype.hpp"
#include "hp/core/error.hpp"

namespace hp::comm {

// Default for Work::wait and blocking helpers; callers should pass their own.
inline constexpr std::chrono::milliseconds kDefaultTimeout{300000};

namespace detail {
using ::hp::detail::cat;

// Completion record shared between a Work handle and the backend that finishes it.
class WorkState {
 public:
  explicit WorkState(std::string what) : what_(std::move(what)) {}
  void finish(std::exception_ptr error = nullptr);
  // True once finished (successfully or not).
  bool done();
  // Blocks up to timeout; returns false on timeout.
  bool wait_for(std::chrono::milliseconds timeout);
  std::exception_ptr error();
  const std::string& what() const { return what_; }
  // Optional hook that drives progress from the waiting thread (backends without a worker).
  std::function<void()> poll;

 private:
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};
}  // namespace detail

// Handle to one asynchronous operation. Cheap to copy; all copies see the same completion.
class Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<detail::WorkState> s) : state_(std::move(s)) {}
  // An already finished operation (optionally failed).
  static Work completed(std::string what, std::exception_ptr error = nullptr);
  // Blocks until the operation finishes; rethrows its failure (hp::RemoteError naming the failed
  // rank when a peer failed); throws hp::Timeout when it has not finished within timeout.
  void wait(std::chrono::milliseconds timeout = kDefaultTimeout);
  // Non-blocking: true once finished (a failure is rethrown by wait, not here).
  bool done() const;
  bool valid() const { return state_ != nullptr; }

 private:
  std::shared_ptr<detail::WorkState> state_;
};

// Waits for every work in order, with one overall timeout.
void wait_all(std::vector<Work>& works, std::chrono::milliseconds timeout = kDefaultTimeout);

// A group of ranks that run collectives together. All members must issue the same collectives
// in the same order (send/recv are exempt); buffers must stay valid until the Work finishes.
// Counts are in elements of dtype. Reductions on bf16/f16 accumulate in f32; kAvg on integers
// truncates towards zero. Buffers belong to the backend's device (host memory for threads/mpi).
class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // This rank in the top-level world (used in failure messages).
  virtual int world_rank() const = 0;
  // "threads", "mpi", "nccl".
  virtual const char* backend() const = 0;

  // New communicator over `ranks` (ranks of this communicator, ascending order not required;
  // the new rank is the position in the list). Collective over the listed members only; others
  // do not call it. Throws hp::Error when this rank is not listed or the list is invalid.
  virtual std::unique_ptr<Communicator> split(const std::vector<int>& ranks) = 0;

  // recv[i] = op over ranks of send[i], count elements; send == recv is allowed (in place).
  virtual Work all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) = 0;
  // recv = concatenation over ranks of each rank's send; counts[r] elements from rank r
  // (counts.size() == size()). send may alias recv at this rank's offset.
  virtual Work all_gather(const void* send, void* recv, const std::vector<size_t>& counts,
                          DType t) = 0;
  // send holds sum(counts) elements; rank r receives op over ranks of its slice
  // [sum(counts[0..r)), +counts[r]) into recv.
  virtual Work reduce_scatter(const void* send, void* recv, const std::vector<size_t>& counts,
                              DType t, ReduceOp op) = 0;
  // send_counts[p] elements go to peer p (packed in peer order in send); recv_counts[p] come
  // from peer p (packed in peer order in recv). Each pair must agree; send must not alias recv.
  virtual Work all_to_all(const void* send, const std::vector<size_t>& send_counts, void* recv,
                          const std::vector<size_t>& recv_counts, DType t) = 0;
  // buf (count elements) is copied from root to every rank.
  virtual Work broadcast(void* buf, size_t count, DType t, int root) = 0;
  // Point-to-point; matched in order per (source, destination, tag). Not ordered with collectives.
  virtual Work send(const void* buf, size_t count, DType t, int peer, int tag = 0) = 0;
  virtual Work recv(void* buf, size_t count, DType t, int peer, int tag = 0) = 0;
  virtual Work barrier() = 0;

  // Declares this rank failed: every rank's pending and later operations (on every communicator
  // of the world) fail with hp::RemoteError naming this rank and reason. Never blocks for long.
  virtual void abort(const std::string& reason) = 0;
  // Throws the hp::RemoteError a failed world would throw; returns when nothing failed.
  virtual void throw_if_failed() const = 0;

  // Convenience: even counts (count elements per rank).
  Work all_gather(const void* send, void* recv, size_t count_per_rank, DType t) {
    return all_gather(send, recv, std::vector<size_t>(size_t(size()), count_per_rank), t);
  }
  Work reduce_scatter(const void* send, void* recv, size_t count_per_rank, DType t, ReduceOp op) {
    return reduce_scatter(send, recv, std::vector<size_t>(size_t(size()), count_per_rank), t, op);
  }

 protected:
  Communicator() = default;
};

namespace detail {
// Throws hp::Error naming op unless ranks is a valid member list of a size-n group containing me.
void check_split_ranks(const std::vector<int>& ranks, int n, int me, const char* backend);
// Throws hp::Error unless counts.size() == n.
void check_counts(const std::vector<size_t>& counts, int n, const char* op);
// The message every backend uses for a failed rank: "[comm] rank R failed: reason".
std::string failure_message(int world_rank, const std::string& reason);
}  // namespace detail

}  // namespace hp::comm
