// Tensor construction, typed access and dtype conversion.
#include "hp/core/tensor.hpp"

#include <cstring>

namespace hp {

Tensor::Tensor(Shape shape, DType dtype, std::shared_ptr<Allocator> alloc)
    : dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_) HP_CHECK(d >= 0, "[tensor] negative dim in ", shape_str(shape_));
  strides_ = contiguous_strides(shape_);
  if (!alloc) alloc = default_allocator();
  storage_ = std::make_shared<Storage>(std::move(alloc), nbytes());
}

Tensor::Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape, DType dtype)
    : dtype_(dtype), shape_(std::move(shape)), storage_(std::move(storage)) {
  strides_ = contiguous_strides(shape_);
  HP_CHECK(byte_offset % dtype_size(dtype_) == 0, "[tensor] misaligned view offset ", byte_offset);
  HP_CHECK(byte_offset + nbytes() <= storage_->bytes(), "[tensor] view of ", nbytes(),
           " bytes at offset ", byte_offset, " exceeds storage of ", storage_->bytes());
  offset_ = int64_t(byte_offset / dtype_size(dtype_));
}

Tensor Tensor::zeros(Shape shape, DType dtype, std::shared_ptr<Allocator> alloc) {
  Tensor t(std::move(shape), dtype, std::move(alloc));
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_f32(Shape shape, const std::vector<float>& values) {
  Tensor t(std::move(shape), DType::kF32);
  HP_CHECK(int64_t(values.size()) == t.numel(), "[tensor] from_f32: ", values.size(),
           " values for shape ", shape_str(t.shape()));
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_i64(Shape shape, const std::vector<int64_t>& values) {
  Tensor t(std::move(shape), DType::kI64);
  HP_CHECK(int64_t(values.size()) == t.numel(), "[tensor] from_i64: ", values.size(),
           " values for shape ", shape_str(t.shape()));
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

bool Tensor::is_contiguous() const {
  return strides_ == contiguous_strides(shape_);
}

#define HP_TYPED(NAME, T, DT)                                                              \
  T* Tensor::NAME() {                                                                      \
    HP_CHECK(dtype_ == DT, "[tensor] ", #NAME, "() on a ", dtype_name(dtype_), " tensor"); \
    return static_cast<T*>(raw());                                                         \
  }                                                                                        \
  const T* Tensor::NAME() const {                                                          \
    HP_CHECK(dtype_ == DT, "[tensor] ", #NAME, "() on a ", dtype_name(dtype_), " tensor"); \
    return static_cast<const T*>(raw());                                                   \
  }
HP_TYPED(f32, float, DType::kF32)
HP_TYPED(i64, int64_t, DType::kI64)
HP_TYPED(i32, int32_t, DType::kI32)
#undef HP_TYPED

Tensor Tensor::reshape(Shape s) const {
  HP_CHECK(is_contiguous(), "[tensor] reshape of a non-contiguous tensor");
  HP_CHECK(hp::numel(s) == numel(), "[tensor] reshape ", shape_str(shape_), " -> ", shape_str(s),
           " changes the element count");
  Tensor t = *this;
  t.shape_ = std::move(s);
  t.strides_ = contiguous_strides(t.shape_);
  return t;
}

namespace {
double load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kI32:
      return static_cast<const int32_t*>(p)[i];
    case DType::kI64:
      return double(static_cast<const int64_t*>(p)[i]);
  }
  return 0;
}
void store(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(p)[i] = float(v);
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v));
      break;
    case DType::kF16:
      static_cast<uint16_t*>(p)[i] = f32_to_f16(float(v));
      break;
    case DType::kI32:
      static_cast<int32_t*>(p)[i] = int32_t(v);
      break;
    case DType::kI64:
      static_cast<int64_t*>(p)[i] = int64_t(v);
      break;
  }
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  HP_CHECK(src.shape_ == shape_, "[tensor] copy_from ", shape_str(src.shape_), " into ",
           shape_str(shape_));
  HP_CHECK(is_contiguous() && src.is_contiguous(), "[tensor] copy_from needs contiguous tensors");
  if (src.dtype_ == dtype_) {
    std::memcpy(raw(), src.raw(), nbytes());
    return;
  }
  const int64_t n = numel();
  if (src.dtype_ == DType::kI64 && dtype_ == DType::kI32) {
    for (int64_t i = 0; i < n; ++i) static_cast<int32_t*>(raw())[i] = int32_t(src.i64()[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) store(raw(), dtype_, i, load(src.raw(), src.dtype_, i));
}

Tensor Tensor::to(DType to, std::shared_ptr<Allocator> alloc) const {
  Tensor t(shape_, to, std::move(alloc));
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_f32_vector() const {
  HP_CHECK(is_contiguous(), "[tensor] to_f32_vector needs a contiguous tensor");
  std::vector<float> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = float(load(raw(), dtype_, i));
  return v;
}

std::vector<int64_t> Tensor::to_i64_vector() const {
  HP_CHECK(is_contiguous(), "[tensor] to_i64_vector needs a contiguous tensor");
  std::vector<int64_t> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) {
    v[size_t(i)] = dtype_ == DType::kI64 ? i64()[i] : int64_t(load(raw(), dtype_, i));
  }
  return v;
}

}  // namespace hp
