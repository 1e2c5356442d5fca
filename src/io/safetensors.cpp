// safetensors reader (mmap + strict header validation) and atomic writer.
// Not a streaming parser for files larger than the address space; big-endian hosts are rejected.
#include "hp/io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "hp/io/json.hpp"

namespace hp::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // same bound as the reference implementation

// How a file dtype maps onto a Tensor dtype.
struct FileDType {
  const char* name;
  size_t size;  // bytes per element in the file
  DType loads;  // dtype of the loaded tensor
};

constexpr FileDType kFileDTypes[] = {
    {"F32", 4, DType::kF32}, {"BF16", 2, DType::kBF16}, {"F16", 2, DType::kF16},
    {"I32", 4, DType::kI32}, {"I64", 8, DType::kI64},   {"F64", 8, DType::kF32},
    {"U8", 1, DType::kI32},  {"I8", 1, DType::kI32},    {"U16", 2, DType::kI32},
    {"I16", 2, DType::kI32}, {"BOOL", 1, DType::kI32},  {"U32", 4, DType::kI64},
};

const FileDType* find_file_dtype(const std::string& name) {
  for (const auto& d : kFileDTypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

std::string supported_list() {
  std::string s;
  for (const auto& d : kFileDTypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

template <typename T>
T read_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Converts `n` elements of a widening file dtype into the loaded tensor's memory.
void widen(const std::string& fdt, const uint8_t* src, int64_t n, Tensor& t) {
  if (fdt == "F64") {
    float* dst = t.f32();
    for (int64_t i = 0; i < n; ++i) dst[i] = float(read_le<double>(src + 8 * i));
  } else if (fdt == "U32") {
    int64_t* dst = t.i64();
    for (int64_t i = 0; i < n; ++i) dst[i] = read_le<uint32_t>(src + 4 * i);
  } else if (fdt == "U8" || fdt == "BOOL") {
    int32_t* dst = t.i32();
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  } else if (fdt == "I8") {
    int32_t* dst = t.i32();
    for (int64_t i = 0; i < n; ++i) dst[i] = int8_t(src[i]);
  } else if (fdt == "U16") {
    int32_t* dst = t.i32();
    for (int64_t i = 0; i < n; ++i) dst[i] = read_le<uint16_t>(src + 2 * i);
  } else {
    HP_CHECK(fdt == "I16", "[safetensors] no conversion from ", fdt);
    int32_t* dst = t.i32();
    for (int64_t i = 0; i < n; ++i) dst[i] = read_le<int16_t>(src + 2 * i);
  }
}

uint64_t json_u64(const nlohmann::json& v, const std::string& where) {
  HP_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), where,
           " must be a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
  }
  return "?";
}

SafetensorsReader::SafetensorsReader(const std::filesystem::path& path) : path_(path), file_(path) {
  parse_header();
}

SafetensorsReader::SafetensorsReader(std::vector<uint8_t> bytes, const std::string& name)
    : path_(name), owned_(std::move(bytes)) {
  parse_header();
}

void SafetensorsReader::parse_header() {
  const std::string f = "[safetensors] " + path_.string();
  const uint64_t size = this->size();
  HP_CHECK(size >= 8, f, ": truncated file (", size,
           " bytes; the 8-byte header length is missing)");
  const uint64_t n = read_le<uint64_t>(bytes());
  HP_CHECK(n <= size - 8, f, ": header length ", n, " is beyond the file size ", size,
           " (truncated or not a safetensors file)");
  HP_CHECK(n <= kMaxHeader, f, ": header length ", n, " exceeds the ", kMaxHeader, "-byte limit");
  data_start_ = 8 + n;
  const uint64_t data_size = size - data_start_;

  // Reject duplicate top-level keys: nlohmann would silently keep the last one. Deep nesting is
  // refused as in parse_json.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    HP_CHECK(depth < kMaxJsonDepth || (ev != nlohmann::json::parse_event_t::object_start &&
                                       ev != nlohmann::json::parse_event_t::array_start),
             f, ": the header is nested deeper than ", kMaxJsonDepth, " levels");
    if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  nlohmann::json header;
  try {
    const char* begin = reinterpret_cast<const char*>(bytes()) + 8;
    header = nlohmann::json::parse(begin, begin + n, on_event);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(f + ": bad JSON header at byte " + std::to_string(8 + e.byte) + ": " + e.what());
  } catch (const nlohmann::json::exception& e) {  // a number beyond double's range: 1e999
    throw Error(f + ": bad JSON header: " + e.what());
  }
  HP_CHECK(duplicate.empty(), f, ": tensor '", duplicate, "' appears twice in the header");
  HP_CHECK(header.is_object(), f, ": the header must be a JSON object, got ", header.type_name());

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      HP_CHECK(e.is_object(), f, ": __metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        HP_CHECK(m.value().is_string(), f, ": __metadata__['", m.key(), "'] must be a string, got ",
                 m.value().dump());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string t = f + ": tensor '" + name + "'";
    HP_CHECK(e.is_object(), t, ": entry must be an object");
    HP_CHECK(e.contains("dtype") && e["dtype"].is_string(), t, ": missing string 'dtype'");
    HP_CHECK(e.contains("shape") && e["shape"].is_array(), t, ": missing array 'shape'");
    HP_CHECK(
        e.contains("data_offsets") && e["data_offsets"].is_array() && e["data_offsets"].size() == 2,
        t, ": 'data_offsets' must be [begin, end]");
    TensorInfo info;
    info.name = name;
    info.file_dtype = e["dtype"].get<std::string>();
    const FileDType* fd = find_file_dtype(info.file_dtype);
    HP_CHECK(fd != nullptr, t, ": unsupported dtype '", info.file_dtype,
             "' (supported: ", supported_list(), ")");
    info.dtype = fd->loads;
    uint64_t count = 1;
    for (const auto& d : e["shape"]) {
      uint64_t v = json_u64(d, t + ": shape entry");
      HP_CHECK(v <= uint64_t(std::numeric_limits<int64_t>::max()), t, ": dim ", v, " too large");
      HP_CHECK(v == 0 || count <= std::numeric_limits<uint64_t>::max() / v / fd->size, t,
               ": shape overflows");
      count *= v;
      info.shape.push_back(int64_t(v));
    }
    info.begin = json_u64(e["data_offsets"][0], t + ": data_offsets[0]");
    info.end = json_u64(e["data_offsets"][1], t + ": data_offsets[1]");
    HP_CHECK(info.begin <= info.end, t, ": data_offsets [", info.begin, ", ", info.end,
             "] are reversed");
    HP_CHECK(info.end <= data_size, t, ": data_offsets [", info.begin, ", ", info.end,
             "] run past the data section (", data_size, " bytes; file truncated?)");
    HP_CHECK(info.end - info.begin == count * fd->size, t, ": ", info.end - info.begin,
             " bytes at data_offsets but shape ", shape_str(info.shape), " of ", info.file_dtype,
             " needs ", count * fd->size);
    infos_.push_back(std::move(info));
  }

  std::stable_sort(infos_.begin(), infos_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& info : infos_) {
    HP_CHECK(info.begin >= pos, f, ": tensor '", info.name, "' bytes [", info.begin, ", ", info.end,
             ") overlap tensor '", prev ? prev->name : "", "' bytes [", prev ? prev->begin : 0,
             ", ", pos, ")");
    HP_CHECK(info.begin == pos, f, ": data bytes [", pos, ", ", info.begin,
             ") belong to no tensor (hole before '", info.name, "')");
    pos = info.end;
    prev = &info;
  }
  HP_CHECK(pos == data_size, f, ": ", data_size - pos,
           " trailing data bytes after the last tensor");
  for (size_t i = 0; i < infos_.size(); ++i) index_[infos_[i].name] = i;
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = index_.find(name);
  HP_CHECK(it != index_.end(), "[safetensors] ", path().string(), ": no tensor '", name, "'");
  return infos_[it->second];
}

Tensor SafetensorsReader::load(const std::string& name, std::shared_ptr<Allocator> alloc) const {
  const TensorInfo& i = info(name);
  Tensor t(i.shape, i.dtype, std::move(alloc));
  const uint8_t* src = bytes() + data_start_ + i.begin;
  if (find_file_dtype(i.file_dtype)->size == dtype_size(i.dtype) &&
      i.file_dtype == safetensors_dtype_name(i.dtype)) {
    if (i.end > i.begin) std::memcpy(t.raw(), src, i.end - i.begin);
  } else {
    widen(i.file_dtype, src, t.numel(), t);
  }
  return t;
}

TensorMap SafetensorsReader::load_all(std::shared_ptr<Allocator> alloc) const {
  TensorMap out;
  for (const auto& i : infos_) out.emplace(i.name, load(i.name, alloc));
  return out;
}

TensorMap read_safetensors(const std::filesystem::path& path, Metadata* metadata) {
  SafetensorsReader r(path);
  if (metadata != nullptr) *metadata = r.metadata();
  return r.load_all();
}

std::string safetensors_header(const std::vector<HeaderEntry>& entries, const Metadata& metadata,
                               const std::string& where) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t pos = 0;
  for (const HeaderEntry& e : entries) {
    HP_CHECK(e.name != "__metadata__", "[safetensors] ", where, ": '__metadata__' is reserved");
    HP_CHECK(!header.contains(e.name), "[safetensors] ", where, ": duplicate tensor '", e.name,
             "'");
    const uint64_t n = uint64_t(byte_count(e.shape, dtype_size(e.dtype)));
    header[e.name] = {{"dtype", safetensors_dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {pos, pos + n}}};
    pos += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as HF pads
  const uint64_t n = h.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + h;
}

void write_safetensors(OutFile& out, const TensorMap& tensors, const Metadata& metadata) {
  std::vector<HeaderEntry> entries;
  for (const auto& [name, t] : tensors) {
    HP_CHECK(t.defined(), "[safetensors] ", out.path().string(), ": tensor '", name,
             "' is undefined");
    entries.push_back({name, t.dtype(), t.shape()});
  }
  out.write(safetensors_header(entries, metadata, out.path().string()));
  for (const auto& [name, t] : tensors) {
    if (t.is_contiguous()) {
      out.write(t.raw(), t.nbytes());
    } else {
      Tensor c = t.clone();
      out.write(c.raw(), c.nbytes());
    }
  }
}

void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const Metadata& metadata) {
  write_atomic(path, [&](OutFile& out) { write_safetensors(out, tensors, metadata); });
}

}  // namespace hp::io
