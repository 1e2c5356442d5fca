// Trainer pieces through sharded checkpoint files: saved under one strategy and world, restored
// under another, every rank's parameters and moments are bitwise those saved, and every rank
// read exactly the stored boxes that intersect its own pieces (never one it does not need).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <tuple>

#include "hp/comm/threads.hpp"
#include "hp/nn/model.hpp"
#include "hp/shard/strategy.hpp"
#include "hp/train/checkpoint.hpp"
#include "train/tiny_cases.hpp"

namespace fs = std::filesystem;

namespace hp::train {
namespace {

// The [4, 8] step of tiny_cases.hpp's batch.
TrainOptions options() {
  TrainOptions opt;
  opt.batch = 4;
  opt.seq = 8;
  return opt;
}

std::unique_ptr<StepPlan> plan_for(const io::ModelConfig& cfg, const std::string& preset,
                                   int ranks) {
  return plan_step(cfg, shard::preset_strategy(preset, ranks), 4, 8,
                   shard::Topology::uniform(20e9, 5e-6));
}

bool same(const io::TensorMap& a, const io::TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end() || it->second.nbytes() != t.nbytes() ||
        std::memcmp(it->second.raw(), t.raw(), t.nbytes()) != 0) {
      ADD_FAILURE() << "tensor " << k << " differs";
      return false;
    }
  }
  return true;
}

using Range = std::tuple<std::string, uint64_t, uint64_t>;

void round_trip(const std::string& save, int save_ranks, const std::string& load, int load_ranks) {
  SCOPED_TRACE(save + " -> " + load);
  const io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  const io::TensorMap init = nn::init_params(cfg, 7);
  const TrainOptions opt = options();
  const auto [tokens, targets] = batch(cfg.vocab);
  const fs::path dir = fs::temp_directory_path() /
                       ("hp_ckpt_units_" + save + "_" + load + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);

  // Save: two steps, then each rank writes its stored pieces (boxes of at most 512 bytes).
  auto sp = plan_for(cfg, save, save_ranks);
  io::ShardIndex index;
  index.step = 2;
  io::TensorMap want_params, want_state;
  std::mutex mu;
  comm::ThreadWorld(save_ranks).run([&](comm::Communicator& c) {
    Trainer tr(*sp, c, init, opt);
    for (int s = 0; s < 2; ++s) tr.step(tokens, targets);
    const auto boxes = tr.piece_boxes();
    const StoredBoxes stored = write_pieces(
        dir / ("rank-" + std::to_string(c.rank()) + ".safetensors"), boxes, tr.snapshot(), 512);
    io::TensorMap p = tr.params(), st = tr.optimizer_state();  // collective
    std::lock_guard<std::mutex> lock(mu);
    if (index.tensors.empty()) index.tensors = tensor_records(boxes);
    add_boxes(index.tensors, stored, "rank " + std::to_string(c.rank()));
    if (c.rank() == 0)
      for (auto& [k, t] : p) want_params.emplace(k, t.clone());
    if (c.rank() == 0)
      for (auto& [k, t] : st) want_state.emplace(k, t.clone());
  });
  // The records check out (coverage, no overlap) as the index is read back.
  for (auto& [name, rec] : index.tensors) rec = io::tensor_from_json(io::tensor_to_json(rec), name);
  uint64_t total = 0;
  for (const auto& [name, rec] : index.tensors)
    for (const auto& b : rec.boxes) total += b.end - b.begin;

  // Restore under the other strategy.
  auto lp = plan_for(cfg, load, load_ranks);
  comm::ThreadWorld(load_ranks).run([&](comm::Communicator& c) {
    Trainer tr(*lp, c, nn::init_params(cfg, 99), opt);
    io::BoxReader reader(dir);
    restore(tr, dir, index, reader);
    EXPECT_EQ(tr.steps_done(), 2);
    // Exactly the stored boxes intersecting this rank's pieces were read, each once.
    std::vector<Range> want;
    for (const Trainer::PieceBox& p : tr.piece_boxes())
      for (const char* k : {"", "m/", "v/"})
        for (const io::StoredBox& b : index.tensors.at(k + p.name).boxes) {
          std::vector<int64_t> o, e;
          if (io::intersect_boxes(b.offset, b.extent, p.offset, p.extent, o, e))
            want.emplace_back(b.file, b.begin, b.end);
        }
    std::vector<Range> got;
    for (const auto& r : reader.reads()) got.emplace_back(r.file, r.begin, r.end);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << "rank " << c.rank();
    if (load_ranks > 1) {
      EXPECT_LT(reader.bytes_read(), total) << "rank " << c.rank();
    }
    io::TensorMap p = tr.params(), st = tr.optimizer_state();  // collective
    if (c.rank() != 0) return;
    EXPECT_TRUE(same(p, want_params));
    EXPECT_TRUE(same(st, want_state));
  });
  fs::remove_all(dir);
}

TEST(ShardedCheckpoint, RestoresUnderOtherStrategiesReadingOnlyIntersectingBoxes) {
  round_trip("fsdp4", 4, "tp2", 2);
  round_trip("fsdp4", 4, "dp2xtp2", 4);
  round_trip("tp2", 2, "fsdp4", 4);
  round_trip("dp2", 2, "tp2", 2);
}

// A non-finite value in a stored box (its checksum intact) is refused at restore, naming it.
TEST(ShardedCheckpoint, NonFiniteValuesAreRefused) {
  const io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  const TrainOptions opt = options();
  Trainer tr(cfg, nn::init_params(cfg, 7), opt);
  const fs::path dir =
      fs::temp_directory_path() / ("hp_ckpt_units_nan_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto boxes = tr.piece_boxes();
  Trainer::Snapshot snap = tr.snapshot();
  snap.v[1].f32()[2] = std::nanf("");
  io::ShardIndex index;
  index.tensors = tensor_records(boxes);
  add_boxes(index.tensors, write_pieces(dir / "rank-0.safetensors", boxes, snap, 1 << 20), "r0");
  io::BoxReader reader(dir);
  std::string msg;
  try {
    restore(tr, dir, index, reader);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("tensor 'v/" + boxes[1].name + "' holds a non-finite value (nan)"),
            std::string::npos)
      << msg;
  fs::remove_all(dir);
}

// One device stores whole tensors in their logical shapes (GPT-2's c_attn as [D, 3, D]), which a
// mesh reads back.
TEST(ShardedCheckpoint, OneDeviceBoxesAreWholeLogicalTensors) {
  const io::ModelConfig cfg = tiny(io::Architecture::kGpt2);
  const TrainOptions opt = options();
  Trainer one(cfg, nn::init_params(cfg, 7), opt);
  for (const Trainer::PieceBox& b : one.piece_boxes()) {
    EXPECT_TRUE(b.stores);
    EXPECT_EQ(b.extent, b.shape);
    EXPECT_EQ(numel(b.shape), numel(b.hf_shape));
    if (b.name == "h.0.attn.c_attn.weight") {
      EXPECT_EQ(b.shape, (Shape{32, 3, 32}));
      EXPECT_EQ(b.hf_shape, (Shape{32, 96}));
    }
  }
}

}  // namespace
}  // namespace hp::train
