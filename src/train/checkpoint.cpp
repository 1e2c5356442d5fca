// Trainer pieces <-> checkpoint boxes.
#include "hp/train/checkpoint.hpp"

#include <cmath>

#include "hp/core/error.hpp"

namespace hp::train {

StoredBoxes write_pieces(const std::filesystem::path& path,
                         const std::vector<Trainer::PieceBox>& boxes, const Trainer::Snapshot& snap,
                         uint64_t max_box_bytes) {
  std::vector<io::BoxData> data;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const Trainer::PieceBox& b = boxes[i];
    if (!b.stores) continue;
    const Tensor* t[3] = {&snap.param[i], &snap.m[i], &snap.v[i]};
    const char* prefix[3] = {"", "m/", "v/"};
    for (int k = 0; k < 3; ++k) {
      HP_CHECK(t[k]->defined() && t[k]->is_contiguous() && t[k]->dtype() == DType::kF32 &&
                   t[k]->numel() == numel(b.extent),
               "[checkpoint] snapshot of '", prefix[k], b.name, "' does not match its box");
      data.push_back({prefix[k] + b.name, b.offset, b.extent, DType::kF32, t[k]->raw()});
    }
  }
  if (data.empty()) return {};
  return io::write_box_file(path, data, max_box_bytes);
}

std::map<std::string, io::TensorRecord> tensor_records(
    const std::vector<Trainer::PieceBox>& boxes) {
  std::map<std::string, io::TensorRecord> out;
  for (const Trainer::PieceBox& b : boxes)
    for (const char* k : {"", "m/", "v/"})
      out[k + b.name] = io::TensorRecord{DType::kF32, b.shape, b.hf_shape, {}};
  return out;
}

void add_boxes(std::map<std::string, io::TensorRecord>& records, const StoredBoxes& boxes,
               const std::string& where) {
  for (const auto& [name, b] : boxes) {
    auto it = records.find(name);
    HP_CHECK(it != records.end(), "[checkpoint] ", where, ": box of unknown tensor '", name, "'");
    it->second.boxes.push_back(b);
  }
}

void restore(Trainer& tr, const std::filesystem::path& step_dir, const io::ShardIndex& index,
             io::BoxReader& reader) {
  tr.restore(
      [&](const std::string& name, const Trainer::PieceBox& b, Tensor& dst) {
        auto it = index.tensors.find(name);
        HP_CHECK(it != index.tensors.end(), "[checkpoint] ", (step_dir / io::kIndexFile).string(),
                 " lacks tensor '", name, "'");
        const io::TensorRecord& rec = it->second;
        HP_CHECK(rec.shape == b.shape && rec.dtype == DType::kF32, "[checkpoint] ",
                 (step_dir / io::kIndexFile).string(), ": tensor '", name, "' is ",
                 shape_str(rec.shape), ", the model's is ", shape_str(b.shape));
        reader.read(name, rec, b.offset, b.extent, dst.raw());
        const float* v = dst.f32();
        for (int64_t i = 0; i < dst.numel(); ++i)
          HP_CHECK(std::isfinite(v[i]), "[checkpoint] ", step_dir.string(), ": tensor '", name,
                   "' holds a non-finite value (", v[i], ") in the box at ", shape_str(b.offset));
      },
      index.step);
}

}  // namespace hp::train
