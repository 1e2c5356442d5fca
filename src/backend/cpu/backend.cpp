// The CPU backend: its kernel table, built once, and its registration as "cpu".
#include "hp/backend/cpu/backend.hpp"

#include "backend/cpu/kernels/table.hpp"
#include "hp/backend/cpu/kernels.hpp"

namespace hp::cpu {

bool f32_or_i64(const std::vector<DType>& dtypes) {
  for (DType d : dtypes)
    if (d != DType::kF32 && d != DType::kI64) return false;
  return true;
}

void KernelTable::add(OpId op, runtime::Kernel k) {
  HP_CHECK(!has_[size_t(op)], "[cpu] a second kernel for op '", ir::op_name(op), "'");
  kernels_[size_t(op)] = std::move(k);
  has_[size_t(op)] = true;
}

runtime::Kernel kernel(std::function<void(KernelArgs&)> run,
                       std::function<size_t(const Types&, const ir::Attrs&, int)> scratch) {
  return runtime::Kernel{std::move(run), std::move(scratch), f32_or_i64};
}

Shape align_rank(const Shape& s, size_t r) {
  Shape out(r - s.size(), 1);
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

namespace {

class CpuBackend final : public runtime::Backend {
 public:
  CpuBackend() {
    add_elementwise_kernels(table_);
    add_matmul_kernels(table_);
    add_layout_kernels(table_);
    add_nn_kernels(table_);
    add_kv_cache_kernels(table_);
    add_comm_kernels(table_);
  }
  std::string_view name() const override { return "cpu"; }
  const runtime::Kernel* kernel(OpId op) const override { return table_.find(op); }

  void adamw(const runtime::Context& ctx, float* p, const float* g, float* m, float* v, int64_t n,
             const runtime::AdamWStep& s) const override {
    cpu::adamw(Context{ctx.threads}, p, g, m, v, n, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay,
               s.step);
  }
  double sum_squares(const runtime::Context& ctx, const float* x, int64_t n) const override {
    return cpu::sum_squares(Context{ctx.threads}, x, n);
  }
  void scale(const runtime::Context& ctx, float* x, int64_t n, float s) const override {
    cpu::scale(Context{ctx.threads}, x, n, s);
  }
  void axpby(const runtime::Context& ctx, int64_t n, float alpha, const float* a, float beta,
             const float* b, float* out) const override {
    cpu::axpby(Context{ctx.threads}, n, alpha, a, beta, b, out);
  }

 private:
  KernelTable table_;
};

// Registered when the program starts: hp_backend_cpu is an object library, linked whole.
[[maybe_unused]] const bool registered = [] {
  runtime::register_backend(backend());
  return true;
}();

}  // namespace

const runtime::Backend& backend() {
  static const CpuBackend b;
  return b;
}

}  // namespace hp::cpu
