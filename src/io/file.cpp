// POSIX implementation of memory maps, durable writes and atomic replacement.
// Not portable beyond POSIX; Windows is out of scope.
#include "hp/io/file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::io {

namespace {
std::string errno_str() {
  return std::strerror(errno);
}

const char* file_kind(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
                       : "not a plain file";
}
}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  // O_NONBLOCK: a FIFO (or a device) named by mistake must not block the open; the fstat below
  // refuses it. Reads of regular files ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  HP_CHECK(fd >= 0, "[io] cannot open ", path.string(), ": ", errno_str());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string err = errno_str();
    ::close(fd);
    throw Error("[io] cannot stat " + path.string() + ": " + err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("[io] " + path.string() + " is not a regular file (" + file_kind(st.st_mode) + ")");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string err = errno_str();
      ::close(fd);
      throw Error("[io] cannot mmap " + path.string() + ": " + err);
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
  reset();
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void MappedFile::reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

OutFile::OutFile(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  HP_CHECK(fd_ >= 0, "[io] cannot create ", path.string(), ": ", errno_str());
}

OutFile::~OutFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OutFile::write(const void* data, size_t n) {
  HP_CHECK(fd_ >= 0, "[io] write to closed file ", path_.string());
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    HP_CHECK(w > 0, "[io] write to ", path_.string(), " failed: ", errno_str());
    p += w;
    n -= size_t(w);
    written_ += size_t(w);
  }
}

void OutFile::sync() {
  HP_CHECK(fd_ >= 0, "[io] sync of closed file ", path_.string());
  HP_CHECK(::fsync(fd_) == 0, "[io] fsync of ", path_.string(), " failed: ", errno_str());
}

void OutFile::close() {
  if (fd_ < 0) return;
  int rc = ::close(fd_);
  fd_ = -1;
  HP_CHECK(rc == 0, "[io] close of ", path_.string(), " failed: ", errno_str());
}

void sync_dir(const std::filesystem::path& dir) {
  const std::filesystem::path d = dir.empty() ? std::filesystem::path(".") : dir;
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  HP_CHECK(fd >= 0, "[io] cannot open directory ", d.string(), ": ", errno_str());
  int rc = ::fsync(fd);
  std::string err = rc == 0 ? "" : errno_str();
  ::close(fd);
  HP_CHECK(rc == 0, "[io] fsync of directory ", d.string(), " failed: ", err);
}

void write_atomic(const std::filesystem::path& path, const std::function<void(OutFile&)>& fill) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  try {
    OutFile out(tmp);
    fill(out);
    out.sync();
    out.close();
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    HP_CHECK(!ec, "[io] cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
  sync_dir(path.parent_path());
}

void write_atomic(const std::filesystem::path& path, std::string_view contents) {
  write_atomic(path, [&](OutFile& out) { out.write(contents); });
}

std::string read_text_file(const std::filesystem::path& path) {
  // Opening a FIFO would block until a writer comes: look before opening.
  struct stat st {};
  HP_CHECK(::stat(path.c_str(), &st) == 0, "[io] cannot open ", path.string(), ": ", errno_str());
  HP_CHECK(S_ISREG(st.st_mode), "[io] ", path.string(), " is not a regular file (",
           file_kind(st.st_mode), ")");
  std::ifstream in(path, std::ios::binary);
  HP_CHECK(in.good(), "[io] cannot open ", path.string(), ": ", errno_str());
  std::ostringstream ss;
  ss << in.rdbuf();
  HP_CHECK(!in.bad(), "[io] cannot read ", path.string());
  return ss.str();
}

}  // namespace hp::io
