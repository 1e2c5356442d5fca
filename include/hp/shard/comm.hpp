// RankComm: one rank's view of the mesh for running SPMD programs — a sub-communicator for every
// set of mesh axes, the kernel of "redistribute" nodes (each plan step as a collective), and
// helpers to cut a global tensor into this rank's piece and to gather pieces back.
// Not a planner: it executes the steps lower.hpp encoded; it chooses nothing.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hp/comm/communicator.hpp"
#include "hp/ir/op_def.hpp"
#include "hp/shard/redistribute.hpp"

namespace hp::shard {

class RankComm : public ir::CommRunner {
 public:
  // `world` spans exactly the mesh's ranks (rank r of world is mesh rank r). Creates the
  // sub-communicators (collective over every rank of the mesh).
  RankComm(const Mesh& mesh, comm::Communicator& world,
           std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));

  // Kernel of "redistribute": out[0] = in[0] moved from attr "from" to attr "to" via "steps".
  void run(ir::KernelArgs& k) override;

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

 private:
  Mesh mesh_;
  comm::Communicator& world_;
  int rank_;
  std::chrono::milliseconds timeout_;
  std::map<std::vector<std::string>, std::unique_ptr<comm::Communicator>> groups_;
};

// This rank's piece of `global` in a non-partial `layout` (a copy; no communication).
Tensor local_piece(const Tensor& global, const Layout& layout, const Mesh& mesh, int rank);

}  // namespace hp::shard
