// Sharded checkpoint saves of one rank of hp train: a snapshot of the rank's pieces at the save
// point, written by this rank into the staging directory (on a writer thread when asynchronous),
// then, once every rank's writer is done, a collective commit: a barrier that also carries
// writer errors to every rank, and rank 0's index, rename and `latest`.
// Not the layouts (train/checkpoint.hpp) nor the directory protocol (io/checkpoint.hpp).
#pragma once
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <string>

#include "hp/comm/communicator.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

struct SaveOptions {
  std::string dir;
  int keep = 3;
  bool async = true;
  uint64_t max_box_bytes = uint64_t(16) << 20;
  std::chrono::milliseconds timeout{600000};  // a writer must finish within this
};

class ShardedSaver {
 public:
  // `log`: rank 0 prints one line per save and commit there (null: silent).
  ShardedSaver(SaveOptions opt, comm::Communicator& c, std::chrono::milliseconds comm_timeout,
               FILE* log);
  ~ShardedSaver();  // waits (at most the timeout) for a writer still running, ignoring its error

  // Collective. Finishes the previous save, snapshots `tr` and writes this rank's file (on a
  // thread when async; committed by poll() or finish()). `meta`: step, rng, data and extra.
  void save(train::Trainer& tr, const io::ShardIndex& meta);
  // Collective, once per step: commits the pending save when every rank's writer is done.
  void poll();
  // Collective: waits for the pending save and commits it; a writer's error throws on every rank.
  void finish();
  bool pending() const { return pending_; }

 private:
  void commit();
  std::filesystem::path rank_file(int rank, const char* ext) const;

  SaveOptions opt_;
  comm::Communicator& c_;
  std::chrono::milliseconds comm_timeout_;
  FILE* log_;
  bool pending_ = false;
  std::future<void> writer_;
  io::ShardIndex meta_;  // of the pending save: its records filled on rank 0 at commit
  std::chrono::steady_clock::time_point started_;
};

}  // namespace hp::cli
