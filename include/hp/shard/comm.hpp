// RankComm: one rank's view of the mesh for running SPMD programs — a sub-communicator for every
// set of mesh axes, the runner of a lowered graph's communication nodes ("redistribute": each step
// of the plan the node names as a collective; the split form "redistribute_start" /
// "redistribute_wait": the move in flight in between, keyed by the nodes' "key"), and helpers to
// cut a global tensor into this rank's piece and gather back.
// Not a planner: it executes the plans lower.hpp put in Lowered::plans; it chooses nothing.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hp/comm/communicator.hpp"
#include "hp/runtime/backend.hpp"
#include "hp/shard/redistribute.hpp"

namespace hp::shard {

class RankComm {
 public:
  // `world` spans exactly the mesh's ranks (rank r of world is mesh rank r). Creates the
  // sub-communicators (collective over every rank of the mesh).
  RankComm(const Mesh& mesh, comm::Communicator& world,
           std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));
  ~RankComm();
  RankComm(const RankComm&) = delete;
  RankComm& operator=(const RankComm&) = delete;

  // The CommRunner (Executor::set_comm_runner) of a graph lowered with `plans` (its
  // Lowered::plans, held by reference): valid while both live. Its kernels:
  // "redistribute": out[0] = in[0] moved as plans[attr "plan"] says;
  // "redistribute_start": copies its inputs and issues the first collective of their move (one
  // input: plans[attr "plan"]; several: one all-reduce along attr "axis" over the packed inputs,
  // a bucket);
  // "redistribute_wait": waits for the move started under attr "key" and writes piece "index".
  runtime::CommRunner& runner(const std::vector<Plan>& plans);
  // Seconds this rank spent blocked waiting for collectives of redistributions, and how many it
  // issued, since construction or reset_stats().
  double blocked_seconds() const { return blocked_s_; }
  int64_t collectives_issued() const { return issued_; }
  void reset_stats() { blocked_s_ = 0, issued_ = 0; }

  int rank() const { return rank_; }
  const Mesh& mesh() const { return mesh_; }
  comm::Communicator& world() { return world_; }
  // The communicator over the ranks that differ from this one only along `axes` (mesh order).
  comm::Communicator& group(const std::vector<std::string>& axes);
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Moves `local` (this rank's piece of a `global`-shaped tensor in layout `from`) to `to`.
  Tensor move(const Tensor& local, const Shape& global, const Layout& from, const Layout& to,
              const std::vector<Step>& steps);
  // The whole tensor from every rank's piece in a non-partial layout (collective).
  Tensor gather(const Tensor& local, const Shape& global, const Layout& layout);

  struct Move;  // one redistribution, resumable at its collective steps

 private:
  class Runner;
  void run(runtime::KernelArgs& k, const Plan& plan);
  // A plan of one all-gather or reduce-scatter (sequence parallelism's moves, fsdp's gathers):
  // from the input and into the output directly, through staging_, where the general path
  // copies into fresh, zeroed buffers at each step.
  void run_one_collective(runtime::KernelArgs& k, const Plan& plan);
  // A plan of one make-partial step that keeps the piece's box (a replicated value added to a
  // partial sum: tp's residual stream): the input, or zeros, straight into the output, where the
  // general path copies through fresh buffers.
  void make_partial(runtime::KernelArgs& k, const Plan& plan);
  void start(runtime::KernelArgs& k, const Plan* plan);  // plan: null for a bucket
  void finish(runtime::KernelArgs& k);
  std::unique_ptr<Move> begin_move(const Tensor& local, const Shape& global, const Layout& from,
                                   const Layout& to, const std::vector<Step>& steps);
  // Runs steps until one collective is in flight (async) or all are done (blocking).
  void advance(Move& m, bool async);
  void wait_work(comm::Work& w);

  Mesh mesh_;
  comm::Communicator& world_;
  int rank_;
  std::chrono::milliseconds timeout_;
  std::map<std::vector<std::string>, std::unique_ptr<comm::Communicator>> groups_;
  std::map<int64_t, std::unique_ptr<Move>> pending_;  // started, not yet finished, by key
  std::map<int64_t, std::vector<char>> spare_;        // finished buckets' buffers, reused by key
  std::vector<char> staging_;  // run_one_collective's gathered or to-be-scattered pieces
  std::vector<std::unique_ptr<Runner>> runners_;
  double blocked_s_ = 0;
  int64_t issued_ = 0;
};

// This rank's piece of `global` in a non-partial `layout` (a copy; no communication).
Tensor local_piece(const Tensor& global, const Layout& layout, const Mesh& mesh, int rank);

}  // namespace hp::shard
