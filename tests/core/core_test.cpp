// Core: dtypes, shapes, tensors and the budgeted allocator.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "hp/core/bytes.hpp"
#include "hp/core/tensor.hpp"

namespace hp {
namespace {

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_from_name("BF16"), DType::kBF16);
  EXPECT_EQ(dtype_from_name("float32"), DType::kF32);
  EXPECT_THROW(dtype_from_name("f8"), Error);
}

TEST(DType, HalfConversionsRoundTrip) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 3.0517578e-05f, 0.333251953f}) {
    EXPECT_EQ(f16_to_f32(f32_to_f16(f)), f) << f;
  }
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);  // ties round to even
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-3.0f)), -3.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(Shape, StridesAndAxes) {
  EXPECT_EQ(contiguous_strides({2, 3, 4}), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(numel({}), 1);
  EXPECT_EQ(norm_axis(-1, 3, "t"), 2);
  EXPECT_THROW(norm_axis(3, 3, "t"), Error);
}

// Element and byte counts come from configs and command lines: an overflow is an error, not a
// wrapped count that allocates too little (n_inner 2^62+1 used to write past a small buffer).
TEST(Shape, CountsThatOverflowAreErrors) {
  const int64_t big = int64_t(1) << 62;
  EXPECT_EQ(checked_mul(int64_t(1) << 31, int64_t(1) << 31), big);
  EXPECT_EQ(checked_add(big, big - 1), INT64_MAX);
  EXPECT_THROW(checked_mul(big, 4), Error);
  EXPECT_THROW(checked_mul(-big, 4), Error);
  EXPECT_THROW(checked_add(INT64_MAX, 1), Error);
  const Shape huge{64, big + 1};
  std::string msg;
  try {
    numel(huge);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("[shape] [64, 4611686018427387905] has more elements than int64 holds"),
            std::string::npos)
      << msg;
  EXPECT_THROW(contiguous_strides(huge), Error);
  EXPECT_EQ(byte_count({big / 8}, 8), size_t(big));
  EXPECT_THROW(byte_count({big}, 4), Error);
  // Refused before anything is allocated.
  EXPECT_THROW(Tensor({int64_t(1) << 40, int64_t(1) << 40}, DType::kF32), Error);
  EXPECT_THROW(Tensor({big}, DType::kF32), Error);
}

TEST(Tensor, ConvertAndReshape) {
  Tensor t = Tensor::from_f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = t.to(DType::kBF16);
  EXPECT_EQ(b.to_f32_vector(), t.to_f32_vector());
  EXPECT_EQ(t.reshape({3, 2}).dim(0), 3);
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.i64(), Error);
}

TEST(Allocator, BudgetPeakAndClearError) {
  auto a = std::make_shared<Allocator>("dev0", 1000);
  {
    Tensor x({100}, DType::kF32, a);  // 400 bytes
    EXPECT_EQ(a->live_bytes(), 400u);
    Tensor y({100}, DType::kF32, a);
    EXPECT_EQ(a->peak_bytes(), 800u);
    try {
      Tensor z({100}, DType::kF32, a);
      FAIL() << "expected OutOfMemory";
    } catch (const OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("dev0"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("1000 bytes"), std::string::npos);
    }
  }
  EXPECT_EQ(a->live_bytes(), 0u);
  EXPECT_EQ(a->peak_bytes(), 800u);
}

// Caching: a freed block is handed back for the next request of its size; cached bytes count
// against the budget and the largest are given back when a request would not fit otherwise.
// A file-backed tier: memory that reads back what was written, in a file with no name (nothing
// listed in the directory while it lives or after), its bytes counted as any tier's; refused in
// a directory that does not exist, after a first allocation, and with caching.
TEST(Allocator, FileBackedTierLeavesNothingInItsDirectory) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("hp-filetier-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  {
    auto a = std::make_shared<Allocator>("disk", 0, Tier::kDisk);
    a->set_file_backing(dir.string());
    EXPECT_EQ(a->file_backing(), dir.string());
    {
      Storage s(a, size_t(3) << 20);
      auto* f = static_cast<float*>(s.data());
      for (size_t i = 0; i < (size_t(3) << 20) / 4; ++i) f[i] = float(i);
      EXPECT_EQ(f[12345], 12345.0f);
      EXPECT_EQ(a->live_bytes(), size_t(3) << 20);
      EXPECT_TRUE(std::filesystem::is_empty(dir));
      // The mapping is a file: /proc/self/maps names it in the directory, deleted.
      std::ifstream maps("/proc/self/maps");
      std::string line, found;
      while (std::getline(maps, line))
        if (line.find(dir.string()) != std::string::npos) found = line;
      EXPECT_NE(found.find("(deleted)"), std::string::npos) << found;
      EXPECT_THROW(a->set_caching(true), Error);
    }
    EXPECT_EQ(a->live_bytes(), 0u);
    auto b = std::make_shared<Allocator>("late", 0, Tier::kDisk);
    Storage s(b, 64);
    EXPECT_THROW(b->set_file_backing(dir.string()), Error);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  auto c = std::make_shared<Allocator>("nowhere", 0, Tier::kDisk);
  EXPECT_THROW(c->set_file_backing((dir / "missing").string()), Error);
  std::filesystem::remove_all(dir);
}

TEST(Allocator, CachingReusesBlocksWithinTheBudget) {
  auto a = std::make_shared<Allocator>("dev0", 4096);
  a->set_caching(true);
  void* p = a->allocate(1000);  // 1024 held (64-byte rounding)
  a->deallocate(p, 1000);
  EXPECT_EQ(a->live_bytes(), 0u);
  EXPECT_EQ(a->cached_bytes(), 1024u);
  void* q = a->allocate(1000);
  EXPECT_EQ(q, p) << "the cached block of that size is reused";
  EXPECT_EQ(a->cached_bytes(), 0u);
  void* r = a->allocate(2000);  // 2048: live 3000 of 4096
  a->deallocate(r, 2000);
  EXPECT_EQ(a->cached_bytes(), 2048u);
  // 1000 live + 2048 cached + 2064 > 4096: the cached 2048 go back to the system first.
  void* s = a->allocate(2000 + 64);
  EXPECT_EQ(a->cached_bytes(), 0u);
  EXPECT_EQ(a->live_bytes(), 3064u);
  EXPECT_LE(a->reserved_peak_bytes(), 4096u);
  EXPECT_THROW(a->allocate(2000), OutOfMemory);  // live bytes alone exceed the budget
  a->deallocate(s, 2000 + 64);
  a->deallocate(q, 1000);
  EXPECT_GT(a->cached_bytes(), 0u);
  a->set_caching(false);  // gives every cached block back
  EXPECT_EQ(a->cached_bytes(), 0u);
  EXPECT_EQ(a->live_bytes(), 0u);
}

}  // namespace
}  // namespace hp

// The one byte-size parser: binary and decimal units, any case; nothing else.
TEST(Bytes, ParsesSizesAndRejectsTheRest) {
  EXPECT_EQ(hp::parse_bytes("1048576", "x"), 1048576u);
  EXPECT_EQ(hp::parse_bytes("64K", "x"), 65536u);
  EXPECT_EQ(hp::parse_bytes("16m", "x"), 16u << 20);
  EXPECT_EQ(hp::parse_bytes("1.5GiB", "x"), 3u << 29);
  EXPECT_EQ(hp::parse_bytes("2GB", "x"), 2000000000u);
  EXPECT_EQ(hp::parse_bytes(" 8 B ", "x"), 8u);
  for (const char* bad : {"", "-1", "0x10", "1e3", "inf", "nan", "lots", "64 parsecs", "0", "0MiB",
                          "99999999999TiB"}) {
    try {
      hp::parse_bytes(bad, "--size");
      ADD_FAILURE() << "'" << bad << "' accepted";
    } catch (const hp::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--size: '", 0), 0u) << e.what();
    }
  }
}
