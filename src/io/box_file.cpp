// Box files: safetensors files of tensor boxes, the JSON that records where each box lies, and
// the reader that assembles requested boxes from stored ones (pread, checksum, copy).
#include "hp/io/box_file.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>

#include "hp/core/error.hpp"
#include "hp/core/shape.hpp"
#include "hp/io/file.hpp"
#include "hp/io/safetensors.hpp"

namespace fs = std::filesystem;

namespace hp::io {

namespace {

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t parse_hex64(const std::string& s, const std::string& where) {
  HP_CHECK(s.size() == 16 && s.find_first_not_of("0123456789abcdef") == std::string::npos,
           "[checkpoint] ", where, ": 'xxh64' must be 16 lowercase hex digits, got '", s, "'");
  return std::stoull(s, nullptr, 16);
}

DType dtype_from_name(const std::string& s, const std::string& where) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64})
    if (s == safetensors_dtype_name(t)) return t;
  throw Error("[checkpoint] " + where + ": unsupported dtype '" + s + "'");
}

std::vector<int64_t> int_list(const Json& j, const std::string& key, const std::string& where) {
  const Json& v = json_require(j, key, where);
  HP_CHECK(v.is_array(), "[checkpoint] ", where, ": '", key, "' must be an array");
  std::vector<int64_t> out;
  for (const Json& x : v) {
    HP_CHECK(x.is_number_integer(), "[checkpoint] ", where, ": '", key,
             "' must hold integers, got ", x.dump());
    out.push_back(x.get<int64_t>());
  }
  return out;
}

std::string entry_name(const BoxData& b, int64_t row0) {
  std::string s = b.tensor + "@";
  for (size_t d = 0; d < b.offset.size(); ++d) {
    if (d) s += ',';
    s += std::to_string(b.offset[d] + (d == 0 ? row0 : 0));
  }
  return s;
}

}  // namespace

uint64_t xxh64(const void* data, size_t n) {
  return XXH64(data, n, 0);
}

int64_t TensorRecord::numel() const {
  return hp::numel(shape);
}

std::vector<std::pair<std::string, StoredBox>> write_box_file(const fs::path& path,
                                                              const std::vector<BoxData>& boxes,
                                                              uint64_t max_box_bytes) {
  struct Piece {
    const BoxData* box;
    int64_t row0, rows;  // along dim 0 (the whole box for a scalar)
    uint64_t bytes;
  };
  std::vector<Piece> pieces;
  std::vector<HeaderEntry> entries;
  for (const BoxData& b : boxes) {
    HP_CHECK(b.offset.size() == b.extent.size(), "[checkpoint] box of '", b.tensor,
             "': offset and extent differ in rank");
    const uint64_t bytes = byte_count(b.extent, dtype_size(b.dtype));
    const int64_t rows = b.extent.empty() ? 1 : b.extent[0];
    const uint64_t row_bytes = rows > 0 ? bytes / uint64_t(rows) : 0;
    const int64_t per =
        row_bytes == 0
            ? std::max<int64_t>(rows, 1)
            : std::max<int64_t>(1, int64_t(std::max<uint64_t>(max_box_bytes, 1) / row_bytes));
    for (int64_t r = 0; r < std::max<int64_t>(rows, 1); r += per) {
      const int64_t n = std::min(per, std::max<int64_t>(rows, 1) - r);
      Shape ext = b.extent;
      if (!ext.empty()) ext[0] = n;
      pieces.push_back({&b, r, n, b.extent.empty() ? bytes : row_bytes * uint64_t(n)});
      entries.push_back({entry_name(b, r), b.dtype, ext});
    }
  }
  const std::string header = safetensors_header(entries, {}, path.string());
  OutFile out(path);
  out.write(header);
  std::vector<std::pair<std::string, StoredBox>> stored;
  uint64_t pos = header.size();
  for (const Piece& p : pieces) {
    const auto* src = static_cast<const uint8_t*>(p.box->data) +
                      (p.box->extent.empty() ? 0 : uint64_t(p.row0) * (p.bytes / uint64_t(p.rows)));
    out.write(src, p.bytes);
    StoredBox s{p.box->offset, p.box->extent, path.filename().string(),
                pos,           pos + p.bytes, xxh64(src, p.bytes)};
    if (!s.offset.empty()) s.offset[0] += p.row0, s.extent[0] = p.rows;
    stored.emplace_back(p.box->tensor, std::move(s));
    pos += p.bytes;
  }
  out.sync();
  out.close();
  return stored;
}

Json boxes_to_json(const std::vector<std::pair<std::string, StoredBox>>& boxes) {
  Json arr = Json::array();
  for (const auto& [name, b] : boxes) {
    arr.push_back({{"tensor", name},
                   {"offset", b.offset},
                   {"extent", b.extent},
                   {"file", b.file},
                   {"byte_range", {b.begin, b.end}},
                   {"xxh64", hex64(b.xxh64)}});
  }
  return arr;
}

namespace {

StoredBox box_from_json(const Json& j, const std::string& where) {
  HP_CHECK(j.is_object(), "[checkpoint] ", where, ": a box must be an object");
  StoredBox b;
  b.offset = int_list(j, "offset", where);
  b.extent = int_list(j, "extent", where);
  b.file = json_string(j, "file", where);
  const std::vector<int64_t> r = int_list(j, "byte_range", where);
  HP_CHECK(r.size() == 2 && r[0] >= 0 && r[0] <= r[1], "[checkpoint] ", where,
           ": 'byte_range' must be [begin, end] with 0 <= begin <= end");
  b.begin = uint64_t(r[0]), b.end = uint64_t(r[1]);
  b.xxh64 = parse_hex64(json_string(j, "xxh64", where), where);
  HP_CHECK(
      !b.file.empty() && b.file.find('/') == std::string::npos && b.file != "." && b.file != "..",
      "[checkpoint] ", where, ": 'file' must be a file name in the step directory, got '", b.file,
      "'");
  return b;
}

}  // namespace

std::vector<std::pair<std::string, StoredBox>> boxes_from_json(const Json& j,
                                                               const std::string& where) {
  HP_CHECK(j.is_array(), "[checkpoint] ", where, ": boxes must be an array");
  std::vector<std::pair<std::string, StoredBox>> out;
  for (const Json& b : j) {
    HP_CHECK(b.is_object(), "[checkpoint] ", where, ": a box must be an object");
    out.emplace_back(json_string(b, "tensor", where), box_from_json(b, where));
  }
  return out;
}

Json tensor_to_json(const TensorRecord& t) {
  Json boxes = Json::array();
  for (const StoredBox& b : t.boxes)
    boxes.push_back({{"offset", b.offset},
                     {"extent", b.extent},
                     {"file", b.file},
                     {"byte_range", {b.begin, b.end}},
                     {"xxh64", hex64(b.xxh64)}});
  return {{"dtype", safetensors_dtype_name(t.dtype)},
          {"shape", t.shape},
          {"hf_shape", t.hf_shape.empty() ? t.shape : t.hf_shape},
          {"boxes", boxes}};
}

TensorRecord tensor_from_json(const Json& j, const std::string& where) {
  HP_CHECK(j.is_object(), "[checkpoint] ", where, " must be an object");
  TensorRecord t;
  t.dtype = dtype_from_name(json_string(j, "dtype", where), where);
  t.shape = int_list(j, "shape", where);
  for (int64_t d : t.shape) HP_CHECK(d >= 0, "[checkpoint] ", where, ": negative dimension");
  t.hf_shape = json_has(j, "hf_shape") ? int_list(j, "hf_shape", where) : t.shape;
  HP_CHECK(hp::numel(t.hf_shape) == hp::numel(t.shape), "[checkpoint] ", where, ": 'hf_shape' ",
           shape_str(t.hf_shape), " does not hold the elements of 'shape' ", shape_str(t.shape));
  const Json& boxes = json_require(j, "boxes", where);
  HP_CHECK(boxes.is_array(), "[checkpoint] ", where, ": 'boxes' must be an array");
  int64_t covered = 0;
  for (const Json& bj : boxes) {
    StoredBox b = box_from_json(bj, where);
    HP_CHECK(b.offset.size() == t.shape.size() && b.extent.size() == t.shape.size(),
             "[checkpoint] ", where, ": a box's rank differs from the shape's");
    for (size_t d = 0; d < t.shape.size(); ++d)
      HP_CHECK(b.offset[d] >= 0 && b.extent[d] > 0 && b.offset[d] + b.extent[d] <= t.shape[d],
               "[checkpoint] ", where, ": box at ", shape_str(b.offset), " extent ",
               shape_str(b.extent), " lies outside ", shape_str(t.shape));
    HP_CHECK(b.end - b.begin == byte_count(b.extent, dtype_size(t.dtype)), "[checkpoint] ", where,
             ": byte range of box at ", shape_str(b.offset), " is not its size");
    for (const StoredBox& o : t.boxes) {
      std::vector<int64_t> io, ie;
      HP_CHECK(!intersect_boxes(b.offset, b.extent, o.offset, o.extent, io, ie), "[checkpoint] ",
               where, ": boxes at ", shape_str(b.offset), " and ", shape_str(o.offset), " overlap");
    }
    covered += hp::numel(b.extent);
    t.boxes.push_back(std::move(b));
  }
  HP_CHECK(covered == t.numel(), "[checkpoint] ", where, ": boxes cover ", covered, " of ",
           t.numel(), " elements");
  return t;
}

bool intersect_boxes(const std::vector<int64_t>& a_off, const std::vector<int64_t>& a_ext,
                     const std::vector<int64_t>& b_off, const std::vector<int64_t>& b_ext,
                     std::vector<int64_t>& off, std::vector<int64_t>& ext) {
  off.assign(a_off.size(), 0);
  ext.assign(a_off.size(), 0);
  for (size_t d = 0; d < a_off.size(); ++d) {
    off[d] = std::max(a_off[d], b_off[d]);
    const int64_t end = std::min(a_off[d] + a_ext[d], b_off[d] + b_ext[d]);
    if (end <= off[d]) return false;
    ext[d] = end - off[d];
  }
  return true;
}

void copy_box(const uint8_t* src, const std::vector<int64_t>& src_off,
              const std::vector<int64_t>& src_ext, uint8_t* dst,
              const std::vector<int64_t>& dst_off, const std::vector<int64_t>& dst_ext,
              const std::vector<int64_t>& at, const std::vector<int64_t>& extent, size_t esize) {
  const size_t n = at.size();
  if (n == 0) return (void)std::memcpy(dst, src, esize);
  const std::vector<int64_t> ss = contiguous_strides(src_ext), ds = contiguous_strides(dst_ext);
  const size_t run = size_t(extent[n - 1]) * esize;
  std::vector<int64_t> idx(n, 0);  // odometer over all dims but the last
  while (true) {
    int64_t so = 0, d_o = 0;
    for (size_t d = 0; d < n; ++d) {
      so += (at[d] - src_off[d] + idx[d]) * ss[d];
      d_o += (at[d] - dst_off[d] + idx[d]) * ds[d];
    }
    std::memcpy(dst + size_t(d_o) * esize, src + size_t(so) * esize, run);
    int64_t d = int64_t(n) - 2;
    while (d >= 0 && ++idx[size_t(d)] == extent[size_t(d)]) idx[size_t(d--)] = 0;
    if (d < 0) return;
  }
}

BoxReader::BoxReader(fs::path dir) : dir_(std::move(dir)) {}

BoxReader::~BoxReader() {
  for (auto& [f, fd] : fds_) ::close(fd);
}

int BoxReader::fd(const std::string& file, const std::string& name) {
  auto it = fds_.find(file);
  if (it != fds_.end()) return it->second;
  const fs::path p = dir_ / file;
  const int f = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  HP_CHECK(f >= 0, "[checkpoint] ", p.string(), " (tensor '", name,
           "'): cannot open: ", std::strerror(errno));
  fds_.emplace(file, f);
  return f;
}

const std::vector<uint8_t>& BoxReader::load(const std::string& name, const StoredBox& b) {
  const int f = fd(b.file, name);
  const uint64_t n = b.end - b.begin;
  buf_.resize(n);
  uint64_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(f, buf_.data() + got, n - got, off_t(b.begin + got));
    if (r < 0 && errno == EINTR) continue;
    HP_CHECK(r > 0, "[checkpoint] ", (dir_ / b.file).string(), " (tensor '", name,
             "'): cannot read bytes [", b.begin, ", ", b.end,
             "): ", r < 0 ? std::strerror(errno) : "the file is truncated");
    got += uint64_t(r);
  }
  reads_.push_back({b.file, b.begin, b.end});
  bytes_read_ += n;
  HP_CHECK(xxh64(buf_.data(), n) == b.xxh64, "[checkpoint] ", (dir_ / b.file).string(),
           ": checksum mismatch in tensor '", name, "', box at ", shape_str(b.offset), " extent ",
           shape_str(b.extent), " (bytes [", b.begin, ", ", b.end, "))");
  return buf_;
}

void BoxReader::verify(const std::string& name, const TensorRecord& t, size_t b) {
  load(name, t.boxes.at(b));
}

void BoxReader::read(const std::string& name, const TensorRecord& t,
                     const std::vector<int64_t>& offset, const std::vector<int64_t>& extent,
                     void* dst) {
  HP_CHECK(offset.size() == t.shape.size() && extent.size() == t.shape.size(), "[checkpoint] '",
           name, "' is ", shape_str(t.shape), "; asked for a box of rank ", offset.size());
  for (size_t d = 0; d < offset.size(); ++d)
    HP_CHECK(offset[d] >= 0 && offset[d] + extent[d] <= t.shape[d], "[checkpoint] '", name, "' is ",
             shape_str(t.shape), "; asked for a box at ", shape_str(offset), " extent ",
             shape_str(extent));
  if (hp::numel(extent) == 0) return;
  const size_t esize = dtype_size(t.dtype);
  std::vector<int64_t> at, ext;
  for (const StoredBox& b : t.boxes) {
    if (!intersect_boxes(b.offset, b.extent, offset, extent, at, ext)) continue;
    const std::vector<uint8_t>& bytes = load(name, b);
    copy_box(bytes.data(), b.offset, b.extent, static_cast<uint8_t*>(dst), offset, extent, at, ext,
             esize);
  }
}

}  // namespace hp::io
