// Budgeted, peak-tracking allocator and Storage.
#include "hp/core/allocator.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "hp/core/error.hpp"

namespace hp {

const char* tier_name(Tier t) {
  switch (t) {
    case Tier::kDevice:
      return "device";
    case Tier::kHost:
      return "host";
    case Tier::kDisk:
      return "disk";
  }
  return "?";
}

Allocator::Allocator(std::string name, size_t budget_bytes, Tier tier)
    : name_(std::move(name)), budget_(budget_bytes), tier_(tier) {}

Allocator::~Allocator() {
  for (auto& [size, p] : cache_) std::free(p);
}

void Allocator::set_caching(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  HP_CHECK(!on || file_dir_.empty(), "[allocator ", name_, "] a file-backed tier does not cache");
  caching_ = on;
  if (on) return;
  for (auto& [size, p] : cache_) std::free(p);
  cache_.clear();
  cached_ = 0;
}

size_t Allocator::cached_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cached_;
}

void Allocator::note_reserved() {
  const size_t held = live_.load() + cached_;
  size_t p = reserved_peak_.load();
  while (held > p && !reserved_peak_.compare_exchange_weak(p, held)) {
  }
}

static std::string mib(size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / (1024.0 * 1024.0));
  return buf;
}

void Allocator::charge(size_t bytes) {
  size_t live = live_.fetch_add(bytes) + bytes;
  if (budget_ != 0 && live > budget_) {
    live_.fetch_sub(bytes);
    throw OutOfMemory(detail::cat("[allocator ", name_, "] out of memory: requested ", mib(bytes),
                                  " with ", mib(live - bytes), " live exceeds the budget of ",
                                  mib(budget_), " (", budget_, " bytes)"));
  }
  size_t p = peak_.load();
  while (live > p && !peak_.compare_exchange_weak(p, live)) {
  }
}

void Allocator::release(size_t bytes) {
  live_.fetch_sub(bytes);
}

// Blocks of 2 MiB and more are aligned to 2 MiB and backed by transparent huge pages where the
// kernel offers them: 512 times fewer page faults when a buffer is first touched, and fewer TLB
// misses for the kernels that stream through it.
constexpr size_t kHugePage = size_t(2) << 20;

static void* system_alloc(size_t rounded) {
  if (rounded < kHugePage) return std::aligned_alloc(64, rounded);
  // posix_memalign, not aligned_alloc: C11 requires aligned_alloc's size to be a multiple of the
  // alignment (ASan enforces it), and these sizes are multiples of 64 only.
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, rounded) != 0) return nullptr;
  madvise(p, rounded / kHugePage * kHugePage, MADV_HUGEPAGE);  // advice only
  return p;
}

static size_t rounded_size(size_t bytes) {
  return bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
}

// A file of `bytes` in `dir` with no name (O_TMPFILE, else created and unlinked at once), mapped
// shared; null when the system refuses (errno says why).
static void* file_alloc(const std::string& dir, size_t bytes) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string path = dir + "/hp-tier-XXXXXX";
    fd = mkostemp(path.data(), O_CLOEXEC);
    if (fd < 0) return nullptr;
    unlink(path.c_str());
  }
  void* p = nullptr;
  if (ftruncate(fd, off_t(bytes)) == 0)
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);  // the mapping keeps the file
  errno = err;
  return p == MAP_FAILED ? nullptr : p;
}

void Allocator::set_file_backing(const std::string& dir) {
  HP_CHECK(live_.load() == 0, "[allocator ", name_,
           "] file backing must be set before the first allocation");
  void* probe = file_alloc(dir, 64);
  HP_CHECK(probe, "[allocator ", name_, "] cannot back allocations with files in '", dir,
           "': ", std::strerror(errno));
  munmap(probe, 64);
  set_caching(false);
  std::lock_guard<std::mutex> lk(mu_);
  file_dir_ = dir;
}

void* Allocator::allocate(size_t bytes) {
  const size_t rounded = rounded_size(bytes);
  std::unique_lock<std::mutex> lk(mu_, std::defer_lock);
  if (caching_) {
    lk.lock();
    if (auto it = cache_.find(rounded); it != cache_.end()) {
      void* p = it->second;
      charge(bytes);  // cannot exceed the budget: the block was already counted
      cache_.erase(it);
      cached_ -= rounded;
      return p;
    }
    // Over the budget with the cache: give back as few bytes as possible (each one given back
    // is faulted in again when its size is next asked for): the smallest block that covers the
    // excess, else the largest, and again.
    while (!cache_.empty() && budget_ != 0 && live_.load() + cached_ + bytes > budget_) {
      auto it = cache_.lower_bound(live_.load() + cached_ + bytes - budget_);
      if (it == cache_.end()) it = std::prev(cache_.end());
      std::free(it->second);
      cached_ -= it->first;
      cache_.erase(it);
    }
  }
  charge(bytes);
  void* p = file_dir_.empty() ? system_alloc(rounded) : file_alloc(file_dir_, rounded);
  if (!p) {
    const int err = errno;
    release(bytes);
    throw OutOfMemory(detail::cat("[allocator ", name_, "] ",
                                  file_dir_.empty() ? "system allocation" : "file in " + file_dir_,
                                  " of ", mib(bytes), " failed: ", std::strerror(err)));
  }
  if (caching_) note_reserved();
  return p;
}

void Allocator::deallocate(void* p, size_t bytes) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (caching_) {
      cache_.emplace(rounded_size(bytes), p);
      cached_ += rounded_size(bytes);
      live_.fetch_sub(bytes);
      return;
    }
  }
  if (!file_dir_.empty())
    munmap(p, rounded_size(bytes));
  else
    std::free(p);
  release(bytes);
}

std::shared_ptr<Allocator> default_allocator() {
  static auto a = std::make_shared<Allocator>("default", 0, Tier::kHost);
  return a;
}

Storage::Storage(std::shared_ptr<Allocator> alloc, size_t bytes)
    : alloc_(std::move(alloc)), data_(alloc_->allocate(bytes)), bytes_(bytes) {}

Storage::~Storage() {
  alloc_->deallocate(data_, bytes_);
}

}  // namespace hp
