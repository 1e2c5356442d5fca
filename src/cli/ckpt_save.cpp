// ShardedSaver: snapshot -> this rank's box file and manifest in the staging dir (writer thread
// when async) -> collective commit (errors of any rank's writer reach every rank) -> rank 0's
// index, rename and `latest`.
#include "cli/ckpt_save.hpp"

#include <thread>

#include "cli/common.hpp"
#include "hp/train/checkpoint.hpp"

namespace fs = std::filesystem;

namespace hp::cli {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t sum_over_ranks(comm::Communicator& c, int64_t v, std::chrono::milliseconds timeout) {
  if (c.size() == 1) return v;
  c.all_reduce(&v, &v, 1, DType::kI64, comm::ReduceOp::kSum).wait(timeout);
  return v;
}

}  // namespace

ShardedSaver::ShardedSaver(SaveOptions opt, comm::Communicator& c,
                           std::chrono::milliseconds comm_timeout, FILE* log)
    : opt_(std::move(opt)), c_(c), comm_timeout_(comm_timeout), log_(log) {}

ShardedSaver::~ShardedSaver() {
  // An error here has already been, or can no longer be, told.
  if (writer_.valid()) writer_.wait_for(opt_.timeout);
}

fs::path ShardedSaver::rank_file(int rank, const char* ext) const {
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.%s", rank, ext);
  return io::staging_dir(opt_.dir, meta_.step) / name;
}

void ShardedSaver::save(train::Trainer& tr, const io::ShardIndex& meta) {
  finish();
  started_ = std::chrono::steady_clock::now();
  const std::vector<train::Trainer::PieceBox> boxes = tr.piece_boxes();
  auto snap = std::make_shared<const train::Trainer::Snapshot>(tr.snapshot());
  meta_ = meta;
  meta_.tensors = train::tensor_records(tr.global_boxes());  // every rank's tensors, not just ours
  if (c_.rank() == 0) io::clean_stale(opt_.dir, meta_.step);
  fs::create_directories(io::staging_dir(opt_.dir, meta_.step));
  const fs::path data = rank_file(c_.rank(), "safetensors");
  const fs::path manifest = rank_file(c_.rank(), "boxes.json");
  const uint64_t max_box = opt_.max_box_bytes;
  auto work = [boxes, snap, data, manifest, max_box] {
    const train::StoredBoxes stored = train::write_pieces(data, boxes, *snap, max_box);
    io::write_json(manifest, io::boxes_to_json(stored), 0);
  };
  pending_ = true;
  std::promise<void> done;
  writer_ = done.get_future();
  if (opt_.async) {
    // Detached: the thread owns everything it touches, so no wait on it is ever unbounded (a
    // future from std::async would block in its destructor).
    std::thread([work, p = std::move(done)]() mutable {
      try {
        work();
        p.set_value();
      } catch (...) {
        p.set_exception(std::current_exception());
      }
    }).detach();
    if (log_)
      std::fprintf(log_, "checkpoint step-%lld: snapshot in %.3f s, writing in the background\n",
                   (long long)meta_.step, seconds_since(started_));
    return;
  }
  try {
    work();
    done.set_value();
  } catch (...) {
    done.set_exception(std::current_exception());
  }
  commit();
}

void ShardedSaver::poll() {
  if (!pending_) return;
  const bool mine = writer_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  if (sum_over_ranks(c_, mine ? 0 : 1, comm_timeout_) == 0) commit();
}

void ShardedSaver::finish() {
  commit();
}

void ShardedSaver::commit() {
  if (!pending_) return;
  pending_ = false;
  const std::string what = "[checkpoint] " + opt_.dir + "/" + io::checkpoint_dir_name(meta_.step);
  std::string err;
  if (writer_.wait_for(opt_.timeout) != std::future_status::ready) {
    err = what + ": this rank's writer did not finish within " +
          std::to_string(opt_.timeout.count()) + " ms";
  } else {
    try {
      writer_.get();
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  // The barrier: every rank's files are durable, or every rank learns which writer failed.
  const int64_t failed =
      sum_over_ranks(c_, err.empty() ? 0 : int64_t(1) << std::min(c_.rank(), 62), comm_timeout_);
  if (failed != 0) {
    if (!err.empty()) throw Error(err + " (the previous checkpoint is intact)");
    const int r = __builtin_ctzll(uint64_t(failed));
    throw Error(what + ": the writer of rank " + std::to_string(r) + " failed (writing " +
                rank_file(r, "safetensors").string() +
                "; its error is reported there); the previous checkpoint is intact");
  }
  int64_t ok = 1;
  uint64_t bytes = 0;
  if (c_.rank() == 0) {
    try {
      for (int r = 0; r < c_.size(); ++r) {
        const fs::path m = rank_file(r, "boxes.json");
        const train::StoredBoxes b = io::boxes_from_json(io::read_json(m), m.string());
        for (const auto& [n, box] : b) bytes += box.end - box.begin;
        train::add_boxes(meta_.tensors, b, m.string());
      }
      io::commit_staged(opt_.dir, meta_, {opt_.keep});
    } catch (const std::exception& e) {
      ok = 0, err = e.what();
    }
  }
  if (c_.size() > 1) c_.broadcast(&ok, 1, DType::kI64, 0).wait(comm_timeout_);
  if (!ok)
    throw Error(err.empty() ? what + ": rank 0 could not commit it (its error is reported there)"
                            : err);
  if (log_)
    std::fprintf(log_, "checkpoint step-%lld: %s committed, %.3f s after the save point\n",
                 (long long)meta_.step, human_bytes(double(bytes)).c_str(),
                 seconds_since(started_));
}

}  // namespace hp::cli
