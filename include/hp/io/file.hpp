// Files as RAII resources: read-only memory maps, durable writers, atomic replace, fsync of dirs.
// Not a virtual file system: POSIX local files only; every failure throws hp::Error naming the
// path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace hp::io {

// A whole file mapped read-only. Move-only; unmapped on destruction. An empty file maps to size 0.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void reset();
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A file opened for writing (created or truncated). Closed on destruction; sync() makes it durable.
class OutFile {
 public:
  explicit OutFile(const std::filesystem::path& path);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  // Writes all `n` bytes (retrying short writes); throws naming the path on failure.
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // fsync: data and metadata reach the disk before this returns.
  void sync();
  // Closes now, reporting close errors (the destructor swallows them).
  void close();
  size_t bytes_written() const { return written_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  size_t written_ = 0;
};

// fsync of a directory, so that renames and creations inside it are durable.
void sync_dir(const std::filesystem::path& dir);

// Replaces `path` atomically: `fill` writes into `path.tmp.<pid>`, which is fsynced, renamed over
// `path`, and the parent directory fsynced. On any error the temporary is removed and `path` is
// left as it was.
void write_atomic(const std::filesystem::path& path, const std::function<void(OutFile&)>& fill);
// Same, for a string.
void write_atomic(const std::filesystem::path& path, std::string_view contents);

// Whole file as a string; throws naming the path when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace hp::io
