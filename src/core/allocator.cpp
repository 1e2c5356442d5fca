// Budgeted, peak-tracking allocator and Storage.
#include "hp/allocator.hpp"

#include <cstdlib>
#include <new>

#include "hp/error.hpp"

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

Allocator::~Allocator() = default;

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

void* Allocator::allocate(size_t bytes) {
  charge(bytes);
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) {
    release(bytes);
    throw OutOfMemory(
        detail::cat("[allocator ", name_, "] system allocation of ", mib(bytes), " failed"));
  }
  return p;
}

void Allocator::deallocate(void* p, size_t bytes) {
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
