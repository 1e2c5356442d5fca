// The tiered pool: a device tier (the device Allocator and its hard budget), a host tier (an
// Allocator with its own budget) and a disk tier (one file per key in an offload directory, large
// aligned I/O through bounded staging buffers, O_DIRECT when the filesystem allows it).
// Not a cache and not asynchronous by itself: what lives where is the planner's decision, and
// disk I/O runs on TransferEngine threads (DiskTier calls block the calling thread).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/tensor.hpp"
#include "hp/memory/transfer.hpp"

namespace hp::memory {

struct DiskOptions {
  size_t staging_bytes = size_t(8) << 20;    // one staging buffer (a multiple of 4096)
  int staging_buffers = 4;                   // at most this many in flight; more I/O waits
  bool allow_direct = true;                  // try O_DIRECT, fall back to buffered + fadvise
  std::chrono::milliseconds timeout{60000};  // waiting for a staging buffer
};

// Files under `dir` (created when absent), one per key; removed by the destructor. Thread-safe.
class DiskTier {
 public:
  explicit DiskTier(std::filesystem::path dir, DiskOptions opt = {});
  ~DiskTier();
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // Stores `n` bytes as `key` (replacing it). Blocking: call from a transfer thread.
  void write(const std::string& key, const void* src, size_t n);
  // Reads `n` bytes of `key` (throws when the key holds fewer). Blocking.
  void read(const std::string& key, void* dst, size_t n);
  bool contains(const std::string& key) const;
  size_t bytes() const;                    // stored, over all keys
  bool direct() const { return direct_; }  // O_DIRECT in use
  const std::filesystem::path& dir() const { return dir_; }

 private:
  struct File {
    int fd = -1;
    size_t bytes = 0;
    bool direct = false;
  };
  File& open_file(const std::string& key, bool create);
  char* acquire_staging();
  void release_staging(char* buf);

  std::filesystem::path dir_;
  std::vector<std::filesystem::path> created_;  // by the constructor, innermost first
  DiskOptions opt_;
  bool direct_ = false;
  mutable std::mutex mu_;
  std::condition_variable staging_cv_;
  std::map<std::string, File> files_;
  std::vector<char*> staging_free_;
  std::vector<std::unique_ptr<char, void (*)(void*)>> staging_all_;
};

// The three tiers of one device. Device and host are Allocators (budget 0: unlimited); the disk
// tier is created on first use and needs an offload directory.
class TieredPool {
 public:
  TieredPool(std::shared_ptr<Allocator> device, size_t host_budget,
             std::filesystem::path offload_dir = {}, DiskOptions disk = {});

  const std::shared_ptr<Allocator>& device() const { return device_; }
  const std::shared_ptr<Allocator>& host() const { return host_; }
  const std::shared_ptr<Allocator>& allocator(Tier t) const;
  DiskTier& disk();  // throws when no offload directory was given
  bool has_disk() const { return !dir_.empty(); }

  // Uninitialised tensor on the device or host tier (throws hp::OutOfMemory over budget).
  Tensor alloc(Tier t, Shape shape, DType dtype = DType::kF32) const;
  // Asynchronous disk I/O through the engine; `src`/`dst` must outlive the transfer.
  Transfer write_async(TransferEngine& e, const std::string& key, const void* src, size_t n);
  Transfer read_async(TransferEngine& e, const std::string& key, void* dst, size_t n);

 private:
  std::shared_ptr<Allocator> device_, host_;
  std::filesystem::path dir_;
  DiskOptions disk_opt_;
  std::mutex mu_;
  std::unique_ptr<DiskTier> disk_;
};

}  // namespace hp::memory
