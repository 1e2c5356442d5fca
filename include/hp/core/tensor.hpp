// Tensor: dtype, shape, strides and a shared handle to Storage. Cheap to copy (shares storage).
// Not an autograd tensor: gradients are values in the traced Graph, not fields here.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "hp/core/allocator.hpp"
#include "hp/core/dtype.hpp"
#include "hp/core/error.hpp"
#include "hp/core/shape.hpp"

namespace hp {

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised contiguous tensor charged to `alloc` (default_allocator() when null).
  Tensor(Shape shape, DType dtype, std::shared_ptr<Allocator> alloc = nullptr);
  // A view of `bytes_offset` into existing storage (offset must be a multiple of the element size).
  Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape, DType dtype);
  static Tensor zeros(Shape shape, DType dtype = DType::kF32,
                      std::shared_ptr<Allocator> alloc = nullptr);
  // Contiguous f32 tensor holding `values` (size must equal numel(shape)).
  static Tensor from_f32(Shape shape, const std::vector<float>& values);
  static Tensor from_i64(Shape shape, const std::vector<int64_t>& values);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  int64_t dim(int64_t i) const { return shape_[norm_axis(i, shape_.size(), "Tensor::dim")]; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return hp::numel(shape_); }
  size_t nbytes() const { return byte_count(shape_, dtype_size(dtype_)); }
  bool is_contiguous() const;

  void* raw() { return static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_); }
  const void* raw() const {
    return static_cast<const char*>(storage_->data()) + offset_ * dtype_size(dtype_);
  }
  // Typed pointers; throw if the dtype differs.
  float* f32();
  const float* f32() const;
  int64_t* i64();
  const int64_t* i64() const;
  int32_t* i32();
  const int32_t* i32() const;

  // Same storage, new shape (must be contiguous and same numel).
  Tensor reshape(Shape s) const;
  // Deep contiguous copy, optionally converted to `to` (float types convert, ints widen/narrow).
  Tensor to(DType to, std::shared_ptr<Allocator> alloc = nullptr) const;
  Tensor clone(std::shared_ptr<Allocator> alloc = nullptr) const { return to(dtype_, alloc); }
  // Copies `src` (same shape; converting dtype) into this tensor's memory.
  void copy_from(const Tensor& src);
  // Elements converted to f32 / i64 (any dtype).
  std::vector<float> to_f32_vector() const;
  std::vector<int64_t> to_i64_vector() const;

  std::shared_ptr<Storage> storage() const { return storage_; }

 private:
  DType dtype_ = DType::kF32;
  Shape shape_;
  std::vector<int64_t> strides_;
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;
};

}  // namespace hp
