// Reading and writing .safetensors files (8-byte LE header length, JSON header, raw LE data).
// Not lazy device loading or resharding: tensors are copied out of an mmap into host Tensors.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "hp/core/tensor.hpp"
#include "hp/io/file.hpp"

namespace hp::io {

// Name -> tensor, sorted by name (the order safetensors are written in).
using TensorMap = std::map<std::string, Tensor>;
// The optional "__metadata__" object: string -> string.
using Metadata = std::map<std::string, std::string>;

// One header entry. `file_dtype` is the safetensors spelling ("F64"); `dtype` what it loads as.
struct TensorInfo {
  std::string name;
  std::string file_dtype;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;  // data_offsets, relative to the start of the data section
  uint64_t end = 0;
};

// An open, fully validated .safetensors file. Keeps the mmap; loads tensors one at a time.
// Validation: size >= 8, header length within the file, JSON object, known dtypes, offsets inside
// the data section, end - begin == numel * element size, no overlaps, no holes, no trailing bytes.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::filesystem::path& path);
  // The same over a file's bytes held in memory; `name` stands for the file in messages.
  SafetensorsReader(std::vector<uint8_t> bytes, const std::string& name);

  // Entries in file order (increasing data offset).
  const std::vector<TensorInfo>& tensors() const { return infos_; }
  const Metadata& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws naming the file and the tensor when absent.
  const TensorInfo& info(const std::string& name) const;
  // Copies one tensor out (F64 -> f32; U8/I8/U16/I16/BOOL -> i32; U32 -> i64).
  Tensor load(const std::string& name, std::shared_ptr<Allocator> alloc = nullptr) const;
  // Every tensor.
  TensorMap load_all(std::shared_ptr<Allocator> alloc = nullptr) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  // Validates the header and fills the members below from bytes().
  void parse_header();
  const uint8_t* bytes() const { return owned_.empty() ? file_.data() : owned_.data(); }
  size_t size() const { return owned_.empty() ? file_.size() : owned_.size(); }

  std::filesystem::path path_;
  MappedFile file_;             // the mapped file, or
  std::vector<uint8_t> owned_;  // the bytes given in memory
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> infos_;
  std::map<std::string, size_t> index_;
  Metadata metadata_;
};

// Loads every tensor of `path`; fills `metadata` when given.
TensorMap read_safetensors(const std::filesystem::path& path, Metadata* metadata = nullptr);

// Writes tensors in sorted name order, header padded with spaces to a multiple of 8 bytes.
// Atomic: written to `path.tmp.<pid>`, fsynced, renamed over `path`, directory fsynced.
void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const Metadata& metadata = {});
// Streams the same bytes into an open file (the caller syncs / renames).
void write_safetensors(OutFile& out, const TensorMap& tensors, const Metadata& metadata = {});

// One tensor of a header, its data laid out after the previous one's.
struct HeaderEntry {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
};
// The first bytes of a safetensors file holding `entries` contiguously in the given order: the
// 8-byte length and the JSON header padded with spaces to a multiple of 8 (as write_safetensors
// writes it), so that a writer can stream the data after it. `where` names the file in errors.
std::string safetensors_header(const std::vector<HeaderEntry>& entries,
                               const Metadata& metadata = {}, const std::string& where = "");

// The safetensors spelling of a dtype: "F32", "BF16", "F16", "I32", "I64".
const char* safetensors_dtype_name(DType t);

}  // namespace hp::io
