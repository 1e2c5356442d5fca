// Per-device memory accounting: every byte of a device's tensors is charged against a budget.
// Buffer reuse within a step is the memory planner's job; with caching on, freed blocks are kept
// for the next request of the same size (an offload plan frees and allocates the same buffers
// every step), and count against the budget until given back.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace hp {

enum class Tier : uint8_t { kDevice, kHost, kDisk };
const char* tier_name(Tier t);

// Thread-safe. Budget 0 means unlimited. Allocations are 64-byte aligned.
class Allocator : public std::enable_shared_from_this<Allocator> {
 public:
  Allocator(std::string name, size_t budget_bytes, Tier tier = Tier::kDevice);
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  // Throws hp::OutOfMemory naming the allocator, the request, the live bytes and the budget.
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  // Charges bytes without memory (for simulated tensors and plans); throws like allocate.
  void charge(size_t bytes);
  void release(size_t bytes);

  // Keep freed blocks for reuse by size. Cached bytes count against the budget (an allocation
  // that would not fit gives back as few cached bytes as cover the excess); they are not live.
  void set_caching(bool on);
  size_t cached_bytes() const;
  // The most bytes ever held from the system: live plus cached (<= the budget).
  size_t reserved_peak_bytes() const {
    const size_t r = reserved_peak_.load(), p = peak_.load();
    return r > p ? r : p;
  }

  // Backs every later allocation with a file of its own in `dir`, memory-mapped and unlinked at
  // once (nothing is left in `dir`, even after a crash): a disk tier that kernels address like
  // memory, whose pages the operating system keeps in its page cache while the machine's memory
  // holds them and writes to the file when it needs the memory. Caching stays off for it. Set
  // before the first allocation; throws hp::Error when `dir` is not a writable directory.
  void set_file_backing(const std::string& dir);
  const std::string& file_backing() const { return file_dir_; }

  size_t live_bytes() const { return live_.load(); }
  size_t peak_bytes() const { return peak_.load(); }
  size_t budget() const { return budget_; }
  void set_budget(size_t b) { budget_ = b; }
  void reset_peak() {
    peak_.store(live_.load());
    reserved_peak_.store(live_.load() + cached_bytes());
  }
  const std::string& name() const { return name_; }
  Tier tier() const { return tier_; }

 private:
  std::string name_;
  size_t budget_;
  Tier tier_;
  std::atomic<size_t> live_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<size_t> reserved_peak_{0};
  mutable std::mutex mu_;
  bool caching_ = false;
  std::string file_dir_;                // set: allocations are files mapped from here
  std::multimap<size_t, void*> cache_;  // rounded size -> free block
  size_t cached_ = 0;
  void note_reserved();
};

// Allocator with no budget used for tensors created outside any device context (tests, I/O).
std::shared_ptr<Allocator> default_allocator();

// A block of bytes owned by an allocator; freed (and uncharged) when the last handle goes.
class Storage {
 public:
  Storage(std::shared_ptr<Allocator> alloc, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Allocator& allocator() { return *alloc_; }

 private:
  std::shared_ptr<Allocator> alloc_;
  void* data_;
  size_t bytes_;
};

}  // namespace hp
