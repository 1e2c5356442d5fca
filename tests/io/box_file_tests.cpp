// Box files and sharded checkpoint directories: stored boxes read back into any other boxes
// (uneven extents), reads limited to the stored boxes that intersect the request, checksums,
// index validation, and the commit / resume protocol of step directories.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "hp/core/error.hpp"
#include "hp/io/box_file.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/io/file.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace hp::io {
namespace {

class BoxFiles : public test::TempDir {};

using test::error_of;

constexpr int64_t kRows = 7, kCols = 5;

// The global tensor [7, 5]: element (r, c) = 10 r + c.
float value(int64_t r, int64_t c) {
  return float(10 * r + c);
}

// Row-major data of the box at (r0, c0) with extent (nr, nc).
std::vector<float> box_values(int64_t r0, int64_t c0, int64_t nr, int64_t nc) {
  std::vector<float> v;
  for (int64_t r = r0; r < r0 + nr; ++r)
    for (int64_t c = c0; c < c0 + nc; ++c) v.push_back(value(r, c));
  return v;
}

// "w" stored as three uneven row blocks (3, 2, 2 rows) over two files, each block split into
// stored boxes of at most 2 rows (40 bytes).
struct Stored {
  TensorRecord rec;
  std::vector<std::vector<float>> data;
};

Stored store(const fs::path& dir) {
  Stored s;
  s.rec.dtype = DType::kF32;
  s.rec.shape = {kRows, kCols};
  const int64_t starts[3] = {0, 3, 5}, rows[3] = {3, 2, 2};
  std::vector<BoxData> file_a, file_b;
  for (int k = 0; k < 3; ++k) {
    s.data.push_back(box_values(starts[k], 0, rows[k], kCols));
    (k == 1 ? file_b : file_a)
        .push_back({"w", {starts[k], 0}, {rows[k], kCols}, DType::kF32, s.data.back().data()});
  }
  for (const auto& [path, boxes] :
       {std::pair{dir / "a.safetensors", file_a}, std::pair{dir / "b.safetensors", file_b}})
    for (auto& [name, b] : write_box_file(path, boxes, 40)) {
      EXPECT_EQ(name, "w");
      s.rec.boxes.push_back(b);
    }
  return s;
}

TEST_F(BoxFiles, ReadsAnyBoxFromUnevenStoredBoxes) {
  Stored s = store(dir_);
  ASSERT_EQ(s.rec.boxes.size(), 4u);  // 3 rows became 2 + 1
  // The record survives its JSON, whose checks pass (coverage, no overlap, byte ranges).
  TensorRecord rec = tensor_from_json(tensor_to_json(s.rec), "test");
  ASSERT_EQ(rec.boxes.size(), 4u);
  struct Want {
    std::vector<int64_t> off, ext;
  };
  for (const Want& w : {Want{{0, 0}, {7, 3}}, Want{{0, 3}, {7, 2}}, Want{{2, 1}, {4, 3}},
                        Want{{6, 4}, {1, 1}}, Want{{0, 0}, {7, 5}}}) {
    BoxReader reader(dir_);
    std::vector<float> got(size_t(w.ext[0] * w.ext[1]), -1.0f);
    reader.read("w", rec, w.off, w.ext, got.data());
    EXPECT_EQ(got, box_values(w.off[0], w.off[1], w.ext[0], w.ext[1]));
    // Exactly the stored boxes that intersect the request are read, each once and whole.
    std::vector<BoxReader::Range> want;
    uint64_t bytes = 0;
    for (const StoredBox& b : rec.boxes) {
      std::vector<int64_t> o, e;
      if (!intersect_boxes(b.offset, b.extent, w.off, w.ext, o, e)) continue;
      want.push_back({b.file, b.begin, b.end});
      bytes += b.end - b.begin;
    }
    ASSERT_EQ(reader.reads().size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(reader.reads()[i].file, want[i].file);
      EXPECT_EQ(reader.reads()[i].begin, want[i].begin);
      EXPECT_EQ(reader.reads()[i].end, want[i].end);
    }
    EXPECT_EQ(reader.bytes_read(), bytes);
  }
}

TEST_F(BoxFiles, ChecksumMismatchNamesFileAndTensor) {
  Stored s = store(dir_);
  const StoredBox& b = s.rec.boxes[1];
  {
    std::fstream f(dir_ / b.file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(b.begin + 3));
    f.put('\x7f');
  }
  BoxReader reader(dir_);
  std::vector<float> got(kRows * kCols);
  const std::string msg = error_of([&] { reader.read("w", s.rec, {0, 0}, {7, 5}, got.data()); });
  EXPECT_NE(msg.find("checksum mismatch in tensor 'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(b.file), std::string::npos) << msg;
  // A box that does not touch the damaged one still reads.
  BoxReader other(dir_);
  const StoredBox& far = s.rec.boxes[3];
  std::vector<float> row(size_t(far.extent[0] * kCols));
  other.read("w", s.rec, far.offset, far.extent, row.data());
  EXPECT_EQ(row, box_values(far.offset[0], 0, far.extent[0], kCols));
}

TEST_F(BoxFiles, BadRecordsAreRefused) {
  Stored s = store(dir_);
  Json good = tensor_to_json(s.rec);
  auto expect_refused = [&](Json j, const std::string& want) {
    const std::string msg = error_of([&] { tensor_from_json(j, "t"); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  };
  Json j = good;
  j["boxes"].erase(j["boxes"].begin());
  expect_refused(j, "boxes cover");
  j = good;
  j["boxes"][1]["offset"] = {1, 0};
  expect_refused(j, "overlap");
  j = good;
  j["boxes"][0]["extent"] = {9, 5};
  expect_refused(j, "lies outside");
  j = good;
  j["boxes"][0]["file"] = "../x";
  expect_refused(j, "file name in the step directory");
  j = good;
  j["boxes"][0]["xxh64"] = "nan";
  expect_refused(j, "16 lowercase hex digits");
  j = good;
  j["boxes"][0].erase("byte_range");
  expect_refused(j, "missing key 'byte_range'");
  j = good;
  j["dtype"] = "F8";
  expect_refused(j, "unsupported dtype");
  j = good;
  j["shape"] = {7, 5.5};
  expect_refused(j, "must hold integers");
}

ShardIndex index_of(int64_t step, const Stored& s) {
  ShardIndex x;
  x.step = step;
  x.data = {{"epoch", 0}, {"index", step}};
  x.tensors["w"] = s.rec;
  return x;
}

// A staged step becomes step-<N> with `latest`; a damaged latest is refused, naming the
// previous complete step; stale staging dirs and incomplete step dirs go at the next save.
TEST_F(BoxFiles, CommitAndResumeDir) {
  EXPECT_FALSE(resume_dir(dir_).has_value());
  for (int64_t step : {1, 2}) {
    clean_stale(dir_, step);
    fs::create_directories(staging_dir(dir_, step));
    Stored s = store(staging_dir(dir_, step));
    write_atomic(staging_dir(dir_, step) / "stale-file", std::string("x"));
    EXPECT_EQ(commit_staged(dir_, index_of(step, s), {.keep_last = 3}),
              dir_ / ("step-" + std::to_string(step)));
    EXPECT_FALSE(fs::exists(dir_ / ("step-" + std::to_string(step)) / "stale-file"));
  }
  EXPECT_EQ(read_text_file(dir_ / "latest"), "step-2\n");
  EXPECT_EQ(*resume_dir(dir_), dir_ / "step-2");
  const ShardIndex x = load_index(dir_ / "step-2");
  EXPECT_EQ(x.step, 2);
  EXPECT_EQ(x.tensors.at("w").boxes.size(), 4u);
  const Checkpoint c = load_step(dir_ / "step-2");
  EXPECT_EQ(std::vector<float>(c.model.at("w").f32(), c.model.at("w").f32() + kRows * kCols),
            box_values(0, 0, kRows, kCols));

  // A truncated file: the index check names it and the tensor.
  fs::resize_file(dir_ / "step-2" / "b.safetensors", 20);
  std::string msg = error_of([&] { load_index(dir_ / "step-2"); });
  EXPECT_NE(msg.find("b.safetensors is truncated"), std::string::npos) << msg;
  EXPECT_NE(previous_complete(dir_, 2).find("step-1"), std::string::npos);
  // latest naming an incomplete step: an error naming step-1, never a silent fallback.
  fs::remove(dir_ / "step-2" / kIndexFile);
  msg = error_of([&] { resume_dir(dir_); });
  EXPECT_NE(msg.find("names step-2, which is incomplete"), std::string::npos) << msg;
  EXPECT_NE(msg.find("previous complete checkpoint is " + (dir_ / "step-1").string()),
            std::string::npos)
      << msg;
  // The next save removes the incomplete step-2, a stale staging dir and a `latest` a kill left
  // unrenamed; this step's staging dir, `latest` and files that merely look alike stay.
  fs::create_directories(dir_ / ".tmp-step-9");
  fs::create_directories(dir_ / ".tmp-step-3");
  for (const char* f : {"latest.tmp.4242", "notes.tmp.txt", "latest.tmp."})
    std::ofstream(dir_ / f) << "x";
  clean_stale(dir_, 3);
  EXPECT_FALSE(fs::exists(dir_ / "step-2"));
  EXPECT_FALSE(fs::exists(dir_ / ".tmp-step-9"));
  EXPECT_FALSE(fs::exists(dir_ / "latest.tmp.4242"));
  EXPECT_TRUE(fs::exists(dir_ / ".tmp-step-3"));
  EXPECT_TRUE(fs::exists(dir_ / "notes.tmp.txt"));
  EXPECT_TRUE(fs::exists(dir_ / "latest.tmp."));
  EXPECT_TRUE(fs::exists(dir_ / "latest"));
  EXPECT_TRUE(fs::exists(dir_ / "step-1"));
}

}  // namespace
}  // namespace hp::io
