// CPU kernels of the layout and reduction ops: reduce, max_bwd, sum_to / broadcast_to, full,
// permute, slice and its backward, split, concat. reshape is a view and has none.
#include <cstring>

#include "backend/cpu/kernels/table.hpp"
#include "hp/backend/cpu/kernels.hpp"
#include "hp/core/tensor.hpp"

namespace hp::cpu {

namespace {

// The dims `axes` names (empty: all).
std::vector<bool> reduce_mask(const Shape& s, const std::vector<int64_t>& axes) {
  std::vector<bool> m(s.size(), axes.empty());
  for (int64_t a : axes) m[size_t(norm_axis(a, s.size(), "reduce"))] = true;
  return m;
}

// The box of `shape` that starts at `at` along `axis` (attribute "axis") and at 0 elsewhere.
Shape start_on_axis(const ir::Attrs& attrs, size_t rank, int64_t at, const char* who) {
  Shape start(rank, 0);
  start[size_t(norm_axis(attrs.i("axis"), rank, who))] = at;
  return start;
}

void add_reductions(KernelTable& t) {
  t.add(OpId::kReduce, kernel([](KernelArgs& k) {  // attrs: op, axes
          const std::string& kind = k.node.attrs.s("op");
          auto m = reduce_mask(k.in[0]->shape(), k.node.attrs.ints("axes"));
          Reduce r = kind == "sum" ? Reduce::kSum : kind == "mean" ? Reduce::kMean : Reduce::kMax;
          reduce(context(k), r, k.in[0]->f32(), k.in[0]->shape(), m, k.out[0]->f32());
        }));
  t.add(OpId::kMaxBwd, kernel([](KernelArgs& k) {
          const float *x = k.in[0]->f32(), *y = k.in[1]->f32(), *dy = k.in[2]->f32();
          float* dx = k.out[0]->f32();
          for (int64_t i = 0, n = k.out[0]->numel(); i < n; ++i)
            dx[i] = x[i] == y[i] ? dy[i] : 0.0f;
        }));
  t.add(OpId::kSumTo, kernel([](KernelArgs& k) {
          const Shape& xs = k.in[0]->shape();
          Shape to = align_rank(k.out[0]->shape(), xs.size());
          std::vector<bool> m(xs.size());
          for (size_t i = 0; i < xs.size(); ++i) m[i] = to[i] == 1 && xs[i] != 1;
          reduce(context(k), Reduce::kSum, k.in[0]->f32(), xs, m, k.out[0]->f32());
        }));
  t.add(OpId::kBroadcastTo, kernel([](KernelArgs& k) {  // attrs: scale
          const Shape& os = k.out[0]->shape();
          broadcast_to(context(k), k.in[0]->f32(), align_rank(k.in[0]->shape(), os.size()),
                       k.out[0]->f32(), os, float(k.node.attrs.f("scale", 1.0)));
        }));
}

void add_copies(KernelTable& t) {
  runtime::Kernel full;  // any dtype
  full.run = [](KernelArgs& k) {
    Tensor one = Tensor::from_f32({1}, {float(k.node.attrs.f("value"))}).to(k.out[0]->dtype());
    const size_t w = dtype_size(one.dtype());
    char* p = static_cast<char*>(k.out[0]->raw());
    for (int64_t i = 0, n = k.out[0]->numel(); i < n; ++i)
      std::memcpy(p + size_t(i) * w, one.raw(), w);
  };
  t.add(OpId::kFull, std::move(full));
  t.add(OpId::kPermute, kernel([](KernelArgs& k) {
          permute(context(k), k.in[0]->f32(), k.in[0]->shape(), k.node.attrs.ints("perm"),
                  k.out[0]->f32());
        }));
  t.add(OpId::kSlice, kernel([](KernelArgs& k) {  // attrs: axis, start
          const Shape& xs = k.in[0]->shape();
          Shape start = start_on_axis(k.node.attrs, xs.size(), k.node.attrs.i("start"), "slice");
          slice(context(k), k.in[0]->f32(), xs, start, k.out[0]->f32(), k.out[0]->shape());
        }));
  t.add(OpId::kSliceBwd, kernel([](KernelArgs& k) {  // attrs: axis, start
          const Shape& os = k.out[0]->shape();
          std::memset(k.out[0]->raw(), 0, k.out[0]->nbytes());
          Shape start = start_on_axis(k.node.attrs, os.size(), k.node.attrs.i("start"), "slice");
          slice_bwd_acc(context(k), k.in[0]->f32(), k.in[0]->shape(), start, k.out[0]->f32(), os);
        }));
  t.add(OpId::kSplit, kernel([](KernelArgs& k) {  // attrs: axis
          const Shape& xs = k.in[0]->shape();
          const size_t ax = size_t(norm_axis(k.node.attrs.i("axis"), xs.size(), "split"));
          Shape start(xs.size(), 0);
          for (Tensor* o : k.out) {
            slice(context(k), k.in[0]->f32(), xs, start, o->f32(), o->shape());
            start[ax] += o->shape()[ax];
          }
        }));
  t.add(OpId::kConcat, kernel([](KernelArgs& k) {  // attrs: axis
          const Shape& os = k.out[0]->shape();
          int64_t ax = norm_axis(k.node.attrs.i("axis"), os.size(), "concat"), off = 0;
          std::memset(k.out[0]->raw(), 0, k.out[0]->nbytes());
          for (const Tensor* x : k.in) {
            Shape start(os.size(), 0);
            start[size_t(ax)] = off;
            slice_bwd_acc(context(k), x->f32(), x->shape(), start, k.out[0]->f32(), os);
            off += x->shape()[size_t(ax)];
          }
        }));
}

}  // namespace

void add_layout_kernels(KernelTable& t) {
  add_reductions(t);
  add_copies(t);
}

}  // namespace hp::cpu
