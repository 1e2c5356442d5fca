// The CPU backend's kernel table and what its kernel files share: each op family's file adds the
// kernels of its ops (by op id) to the table. Not public API.
#pragma once
#include <array>
#include <vector>

#include "hp/backend/cpu/context.hpp"
#include "hp/core/shape.hpp"
#include "hp/ir/op_id.hpp"
#include "hp/runtime/backend.hpp"

namespace hp::cpu {

using ir::OpId;
using runtime::KernelArgs;
using Types = std::vector<ir::TensorType>;

// Floats are f32, integers (ids, targets) i64: what every kernel but cast, full and the
// communication ops runs on.
bool f32_or_i64(const std::vector<DType>& dtypes);

class KernelTable {
 public:
  // Registers op's kernel; throws when op has one already.
  void add(OpId op, runtime::Kernel k);
  const runtime::Kernel* find(OpId op) const {
    return has_[size_t(op)] ? &kernels_[size_t(op)] : nullptr;
  }

 private:
  std::array<runtime::Kernel, ir::kOpCount> kernels_;
  std::array<bool, ir::kOpCount> has_{};
};

// A kernel of the usual kind: runs on f32 (and i64 indices), no workspace unless given.
runtime::Kernel kernel(std::function<void(KernelArgs&)> run,
                       std::function<size_t(const Types&, const ir::Attrs&, int)> scratch = {});

inline Context context(const KernelArgs& k) {
  return Context{k.ctx.threads};
}
// `s` left-padded with 1s to rank r.
Shape align_rank(const Shape& s, size_t r);
// Rows of a [..., cols] tensor.
inline int64_t rows_of(const Shape& s) {
  return s.empty() ? 1 : numel(s) / s.back();
}

void add_elementwise_kernels(KernelTable& t);
void add_matmul_kernels(KernelTable& t);
void add_layout_kernels(KernelTable& t);
void add_nn_kernels(KernelTable& t);
void add_kv_cache_kernels(KernelTable& t);
void add_comm_kernels(KernelTable& t);

}  // namespace hp::cpu
