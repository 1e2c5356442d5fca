// A trainer's pieces as checkpoint boxes: this rank's box file written from a snapshot, the index
// records of every parameter and moment, and restoring a rank's pieces from any sharded
// checkpoint (a different world or strategy included) through io::BoxReader.
// Not the directory protocol (staging, barrier, commit: io/checkpoint.hpp and the CLI's saver).
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "hp/io/checkpoint.hpp"
#include "hp/train/trainer.hpp"

namespace hp::train {

// Stored boxes of one rank's file.
using StoredBoxes = std::vector<std::pair<std::string, io::StoredBox>>;

// Writes the stored pieces of `snap` (parameters "<name>", moments "m/<name>", "v/<name>") as
// one box file at `path`; nothing when this rank stores no piece. Returns its stored boxes.
StoredBoxes write_pieces(const std::filesystem::path& path,
                         const std::vector<Trainer::PieceBox>& boxes, const Trainer::Snapshot& snap,
                         uint64_t max_box_bytes);

// Index records (f32, global and HF shapes, no boxes yet) of every parameter and moment.
std::map<std::string, io::TensorRecord> tensor_records(const std::vector<Trainer::PieceBox>& boxes);

// Adds stored boxes to their records; throws on a box of an unknown tensor.
void add_boxes(std::map<std::string, io::TensorRecord>& records, const StoredBoxes& boxes,
               const std::string& where);

// Restores `tr` from the sharded checkpoint in `step_dir` (its index `index`): each rank reads the
// stored boxes that intersect its pieces, checksums verified. Throws naming a missing tensor or a
// shape that differs from the model's.
void restore(Trainer& tr, const std::filesystem::path& step_dir, const io::ShardIndex& index,
             io::BoxReader& reader);

}  // namespace hp::train
