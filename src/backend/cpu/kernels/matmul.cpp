// CPU kernel of matmul: one big sgemm over all rows when b is shared and a not transposed, else
// a batched sgemm.
#include "backend/cpu/kernels/table.hpp"
#include "hp/backend/cpu/gemm.hpp"

namespace hp::cpu {

namespace {

struct MatmulDims {
  int64_t batch, m, n, k;
  bool shared_b;  // b is 2-D and shared by every batch entry
};

// The op's inference has checked the shapes.
MatmulDims dims_of(const Shape& a, const Shape& b, bool ta, bool tb) {
  MatmulDims d;
  const size_t r = a.size();
  d.m = ta ? a[r - 1] : a[r - 2];
  d.k = ta ? a[r - 2] : a[r - 1];
  d.n = tb ? b[b.size() - 2] : b[b.size() - 1];
  d.batch = numel(Shape(a.begin(), a.end() - 2));
  d.shared_b = b.size() == 2;
  return d;
}

}  // namespace

void add_matmul_kernels(KernelTable& t) {
  auto run = [](KernelArgs& k) {
    bool ta = k.node.attrs.i("ta", 0), tb = k.node.attrs.i("tb", 0);
    const Shape& as = k.in[0]->shape();
    const Shape& bs = k.in[1]->shape();
    MatmulDims md = dims_of(as, bs, ta, tb);
    int64_t lda = as.back(), ldb = bs.back();
    const float* A = k.in[0]->f32();
    const float* B = k.in[1]->f32();
    float* C = k.out[0]->f32();
    if (md.shared_b && !ta) {  // one big GEMM over all rows
      gemm(context(k), false, tb, md.batch * md.m, md.n, md.k, 1.0f, A, lda, B, ldb, 0.0f, C, md.n);
      return;
    }
    gemm_batched(context(k), md.batch, ta, tb, md.m, md.n, md.k, 1.0f, A, lda, md.m * md.k, B, ldb,
                 md.shared_b ? 0 : md.k * md.n, 0.0f, C, md.n, md.m * md.n);
  };
  auto scratch = [](const Types& in, const ir::Attrs& at, int) {
    const bool ta = at.i("ta", 0), tb = at.i("tb", 0);
    MatmulDims md = dims_of(in[0].shape, in[1].shape, ta, tb);
    if (md.shared_b && !ta) return gemm_scratch_bytes(false, tb, md.batch * md.m, md.n, md.k, 0);
    return size_t{0};  // gemm_batched uses none
  };
  t.add(OpId::kMatmul, kernel(run, scratch));
}

}  // namespace hp::cpu
