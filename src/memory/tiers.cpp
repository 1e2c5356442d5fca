// Disk tier (pread/pwrite of aligned extents, O_DIRECT or buffered) and the tiered pool.
#include "hp/memory/tiers.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "hp/core/error.hpp"

namespace hp::memory {

namespace {
constexpr size_t kAlign = 4096;
size_t round_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

void write_all(int fd, const char* p, size_t n, size_t off, const std::string& key) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    HP_CHECK(w > 0, "[disk] writing '", key, "' at offset ", off, ": ", std::strerror(errno));
    p += w;
    n -= size_t(w);
    off += size_t(w);
  }
}

void read_all(int fd, char* p, size_t n, size_t off, const std::string& key) {
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    HP_CHECK(r > 0, "[disk] reading '", key, "' at offset ", off, ": ",
             r == 0 ? "unexpected end of file" : std::strerror(errno));
    p += r;
    n -= size_t(r);
    off += size_t(r);
  }
}
}  // namespace

DiskTier::DiskTier(std::filesystem::path dir, DiskOptions opt) : dir_(std::move(dir)), opt_(opt) {
  HP_CHECK(opt_.staging_bytes >= kAlign && opt_.staging_bytes % kAlign == 0,
           "[disk] staging_bytes must be a positive multiple of 4096, got ", opt_.staging_bytes);
  HP_CHECK(opt_.staging_buffers >= 1, "[disk] staging_buffers must be >= 1");
  std::error_code ec;
  // The directories this tier makes (dir_ and missing parents) go again with it, when empty.
  for (auto d = dir_; !d.empty() && !std::filesystem::exists(d, ec); d = d.parent_path()) {
    created_.push_back(d);
    if (d == d.parent_path()) break;
  }
  std::filesystem::create_directories(dir_, ec);
  HP_CHECK(!ec && std::filesystem::is_directory(dir_), "[disk] cannot create offload dir '",
           dir_.string(), "': ", ec ? ec.message() : "not a directory");
  // A directory we cannot write into fails here, with its real reason (EACCES, EROFS, ...),
  // not later as the ENOENT of a subdirectory that could not be made.
  {
    auto probe = dir_ / ".write_probe";
    int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    HP_CHECK(fd >= 0, "[disk] cannot write in offload dir '", dir_.string(),
             "': ", std::strerror(errno));
    ::close(fd);
    std::filesystem::remove(probe, ec);
  }
  // Probe O_DIRECT once: tmpfs and some overlay filesystems refuse it.
  if (opt_.allow_direct) {
    auto probe = dir_ / ".direct_probe";
    int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      direct_ = true;
      ::close(fd);
    }
    std::filesystem::remove(probe, ec);
  }
  for (int i = 0; i < opt_.staging_buffers; ++i) {
    void* p = std::aligned_alloc(kAlign, opt_.staging_bytes);
    if (!p) throw OutOfMemory("[disk] cannot allocate staging buffers");
    staging_all_.emplace_back(static_cast<char*>(p), &std::free);
    staging_free_.push_back(static_cast<char*>(p));
  }
}

DiskTier::~DiskTier() {
  std::error_code ec;
  for (auto& [key, f] : files_) {
    ::close(f.fd);
    std::filesystem::remove(dir_ / key, ec);  // best effort: a destructor must not throw
    // The subdirectories of a key ("adamw/3" made "adamw"), when nothing else is in them.
    for (auto d = (dir_ / key).parent_path(); d != dir_ && d.has_relative_path();
         d = d.parent_path())
      if (!std::filesystem::remove(d, ec)) break;
  }
  for (const auto& d : created_)  // what the constructor made, when empty
    if (!std::filesystem::remove(d, ec)) break;
}

DiskTier::File& DiskTier::open_file(const std::string& key, bool create) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = files_.find(key);
  if (it != files_.end()) return it->second;
  HP_CHECK(create, "[disk] no extent '", key, "' in ", dir_.string());
  HP_CHECK(!key.empty() && key.find("..") == std::string::npos, "[disk] invalid key '", key, "'");
  auto path = dir_ / key;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  HP_CHECK(!ec, "[disk] cannot create '", path.parent_path().string(), "': ", ec.message());
  File f;
  f.fd =
      ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | (direct_ ? O_DIRECT : 0), 0600);
  f.direct = direct_ && f.fd >= 0;
  if (f.fd < 0 && direct_)
    f.fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  HP_CHECK(f.fd >= 0, "[disk] cannot open '", path.string(), "': ", std::strerror(errno));
  if (!f.direct) ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return files_.emplace(key, f).first->second;
}

char* DiskTier::acquire_staging() {
  std::unique_lock<std::mutex> lk(mu_);
  if (!staging_cv_.wait_for(lk, opt_.timeout, [&] { return !staging_free_.empty(); }))
    throw Timeout(
        hp::detail::cat("[disk] no staging buffer free within ", opt_.timeout.count(), " ms"));
  char* b = staging_free_.back();
  staging_free_.pop_back();
  return b;
}

void DiskTier::release_staging(char* buf) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    staging_free_.push_back(buf);
  }
  staging_cv_.notify_one();
}

void DiskTier::write(const std::string& key, const void* src, size_t n) {
  File& f = open_file(key, true);
  const char* s = static_cast<const char*>(src);
  if (!f.direct) {
    write_all(f.fd, s, n, 0, key);
    // Written extents are read back much later: do not let them crowd out the page cache.
    ::fdatasync(f.fd);
    ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED);
  } else {
    // O_DIRECT wants aligned buffers, offsets and lengths: stage through aligned buffers.
    char* buf = acquire_staging();
    try {
      for (size_t off = 0; off < n; off += opt_.staging_bytes) {
        size_t len = std::min(opt_.staging_bytes, n - off);
        std::memcpy(buf, s + off, len);
        size_t padded = round_up(len, kAlign);
        if (padded > len) std::memset(buf + len, 0, padded - len);
        write_all(f.fd, buf, padded, off, key);
      }
    } catch (...) {
      release_staging(buf);
      throw;
    }
    release_staging(buf);
  }
  std::lock_guard<std::mutex> lk(mu_);
  f.bytes = n;
}

void DiskTier::read(const std::string& key, void* dst, size_t n) {
  File& f = open_file(key, false);
  {
    std::lock_guard<std::mutex> lk(mu_);
    HP_CHECK(f.bytes >= n, "[disk] extent '", key, "' holds ", f.bytes, " bytes, ", n,
             " requested");
  }
  char* d = static_cast<char*>(dst);
  if (!f.direct) {
    read_all(f.fd, d, n, 0, key);
    return;
  }
  char* buf = acquire_staging();
  try {
    for (size_t off = 0; off < n; off += opt_.staging_bytes) {
      size_t len = std::min(opt_.staging_bytes, n - off);
      read_all(f.fd, buf, round_up(len, kAlign), off, key);
      std::memcpy(d + off, buf, len);
    }
  } catch (...) {
    release_staging(buf);
    throw;
  }
  release_staging(buf);
}

bool DiskTier::contains(const std::string& key) const {
  std::lock_guard<std::mutex> lk(mu_);
  return files_.count(key) != 0;
}

size_t DiskTier::bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  size_t b = 0;
  for (auto& [k, f] : files_) b += f.bytes;
  return b;
}

TieredPool::TieredPool(std::shared_ptr<Allocator> device, size_t host_budget,
                       std::filesystem::path offload_dir, DiskOptions disk)
    : device_(std::move(device)),
      host_(std::make_shared<Allocator>("host", host_budget, Tier::kHost)),
      dir_(std::move(offload_dir)),
      disk_opt_(disk) {
  HP_CHECK(device_ != nullptr, "[pool] a device allocator is required");
  // A plan frees and allocates the same buffers every step: reuse them instead of returning
  // them to the system and faulting fresh pages in again.
  device_->set_caching(true);
  host_->set_caching(true);
}

const std::shared_ptr<Allocator>& TieredPool::allocator(Tier t) const {
  HP_CHECK(t != Tier::kDisk, "[pool] the disk tier is not an allocator");
  return t == Tier::kDevice ? device_ : host_;
}

DiskTier& TieredPool::disk() {
  std::lock_guard<std::mutex> lk(mu_);
  HP_CHECK(!dir_.empty(), "[pool] the disk tier needs an offload directory (offload_dir)");
  if (!disk_) disk_ = std::make_unique<DiskTier>(dir_, disk_opt_);
  return *disk_;
}

Tensor TieredPool::alloc(Tier t, Shape shape, DType dtype) const {
  return Tensor(std::move(shape), dtype, allocator(t));
}

Transfer TieredPool::write_async(TransferEngine& e, const std::string& key, const void* src,
                                 size_t n) {
  DiskTier& d = disk();
  return e.submit("write " + key, n, [&d, key, src, n] { d.write(key, src, n); });
}

Transfer TieredPool::read_async(TransferEngine& e, const std::string& key, void* dst, size_t n) {
  DiskTier& d = disk();
  return e.submit("read " + key, n, [&d, key, src = dst, n] { d.read(key, src, n); });
}

}  // namespace hp::memory
