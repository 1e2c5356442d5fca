// Sharded tensor storage: "boxes" (an offset and an extent per dimension of a tensor's global
// shape) written as safetensors files, an index that lists every stored box with its file, byte
// range and xxHash64, and a reader that fills any requested box from the stored boxes that
// intersect it, verifying each checksum. Not layouts or meshes: callers give offsets and extents
// as plain vectors (the mapping from layouts to boxes lives in train).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hp/core/dtype.hpp"
#include "hp/io/json.hpp"

namespace hp::io {

// xxHash64 (seed 0) of `n` bytes: the checksum of every stored box ("xxh64" in the index).
uint64_t xxh64(const void* data, size_t n);

// One box to store: row-major bytes of `extent` elements of `dtype` at `offset` of `tensor`.
struct BoxData {
  std::string tensor;
  std::vector<int64_t> offset, extent;
  DType dtype = DType::kF32;
  const void* data = nullptr;
};

// A stored box: where its bytes are ([begin, end) of `file`, a name inside the step directory)
// and their xxHash64.
struct StoredBox {
  std::vector<int64_t> offset, extent;
  std::string file;
  uint64_t begin = 0, end = 0;
  uint64_t xxh64 = 0;
};

// One tensor of an index: global shape (the shape its boxes are expressed in), the Hugging Face
// shape with the same row-major bytes (empty: the same), dtype and boxes.
struct TensorRecord {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape, hf_shape;
  std::vector<StoredBox> boxes;
  int64_t numel() const;
};

// Writes `boxes` as one safetensors file (entries "<tensor>@<offset,...>" in the given order),
// fsynced and closed. A box above `max_box_bytes` is stored as several boxes split along its
// first dimension, so that a reader never reads much more than it needs. Returns, per tensor,
// the stored boxes (file: `path`'s file name).
std::vector<std::pair<std::string, StoredBox>> write_box_file(const std::filesystem::path& path,
                                                              const std::vector<BoxData>& boxes,
                                                              uint64_t max_box_bytes);

// JSON of stored boxes (the per-rank manifests and the index use it) and back; `where` names the
// document in errors.
Json boxes_to_json(const std::vector<std::pair<std::string, StoredBox>>& boxes);
std::vector<std::pair<std::string, StoredBox>> boxes_from_json(const Json& j,
                                                               const std::string& where);
Json tensor_to_json(const TensorRecord& t);
// Checks the record: known dtype, boxes inside the shape with positive extents, byte ranges the
// size of their boxes, plain file names, no two boxes overlapping and together the whole tensor.
TensorRecord tensor_from_json(const Json& j, const std::string& where);

// Reads boxes of the tensors of one step directory. Each stored box that intersects a request is
// read whole (pread of its byte range, never more), its checksum verified, and the intersection
// copied into the caller's buffer; stored boxes that do not intersect are never touched.
class BoxReader {
 public:
  explicit BoxReader(std::filesystem::path dir);
  ~BoxReader();
  BoxReader(const BoxReader&) = delete;
  BoxReader& operator=(const BoxReader&) = delete;

  // Fills `dst` (row-major, `extent` elements of t.dtype) with the box at `offset` of tensor
  // `name`. Throws naming the file and tensor on a checksum mismatch, a short or missing file.
  void read(const std::string& name, const TensorRecord& t, const std::vector<int64_t>& offset,
            const std::vector<int64_t>& extent, void* dst);
  // Reads stored box `b` of `name` and verifies its checksum.
  void verify(const std::string& name, const TensorRecord& t, size_t b);

  struct Range {
    std::string file;
    uint64_t begin, end;
  };
  // Every byte range read so far, in order.
  const std::vector<Range>& reads() const { return reads_; }
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  // The stored box's bytes, checksum verified.
  const std::vector<uint8_t>& load(const std::string& name, const StoredBox& b);
  int fd(const std::string& file, const std::string& name);

  std::filesystem::path dir_;
  std::map<std::string, int> fds_;
  std::vector<uint8_t> buf_;
  std::vector<Range> reads_;
  uint64_t bytes_read_ = 0;
};

// Copies the intersection box (`at`, `extent`, in global coordinates) from a row-major source
// box to a row-major destination box, both given by their offsets and extents; `esize` bytes per
// element.
void copy_box(const uint8_t* src, const std::vector<int64_t>& src_off,
              const std::vector<int64_t>& src_ext, uint8_t* dst,
              const std::vector<int64_t>& dst_off, const std::vector<int64_t>& dst_ext,
              const std::vector<int64_t>& at, const std::vector<int64_t>& extent, size_t esize);

// The intersection of two boxes; nullopt-like empty extent vector when they do not overlap.
bool intersect_boxes(const std::vector<int64_t>& a_off, const std::vector<int64_t>& a_ext,
                     const std::vector<int64_t>& b_off, const std::vector<int64_t>& b_ext,
                     std::vector<int64_t>& off, std::vector<int64_t>& ext);

}  // namespace hp::io
