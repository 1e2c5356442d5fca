// RankComm: sub-communicators per set of mesh axes and the redistribution steps as collectives
// over byte buffers: slice and make-partial locally, all-gather, reduce-scatter and all-reduce
// along one axis; all-to-all and send/recv as a gather over the axes that split the input
// followed by a slice (correct for any pair of layouts with the same partial axes).
#include "hp/shard/comm.hpp"

#include <cstring>

#include "hp/shard/lower.hpp"

namespace hp::shard {

namespace {

using Axes = std::vector<std::string>;
using Bytes = std::vector<char>;

// Copies the region `r` (global coordinates) from a buffer holding box `sb` to one holding `db`.
void copy_region(const char* src, const Box& sb, char* dst, const Box& db, const Box& r, size_t w) {
  const size_t nd = r.extent.size();
  if (r.numel() == 0) return;
  if (nd == 0) {
    std::memcpy(dst, src, w);
    return;
  }
  std::vector<int64_t> ss(nd), ds(nd);
  int64_t a = 1, b = 1;
  for (size_t d = nd; d-- > 0;) {
    ss[d] = a;
    ds[d] = b;
    a *= sb.extent[d];
    b *= db.extent[d];
  }
  std::vector<int64_t> idx(nd, 0);
  const size_t run = size_t(r.extent[nd - 1]) * w;
  while (true) {
    int64_t so = 0, dof = 0;
    for (size_t d = 0; d < nd; ++d) {
      so += (r.offset[d] + idx[d] - sb.offset[d]) * ss[d];
      dof += (r.offset[d] + idx[d] - db.offset[d]) * ds[d];
    }
    std::memcpy(dst + size_t(dof) * w, src + size_t(so) * w, run);
    size_t d = nd - 1;
    while (d-- > 0) {
      if (++idx[d] < r.extent[d]) break;
      idx[d] = 0;
    }
    if (d == size_t(-1)) break;
  }
}

Axes split_axes(const Mesh& m, const Layout& l) {  // axes splitting some dim, in mesh order
  Axes out;
  for (const auto& a : m.axis_names())
    if (l.dim_of(a) >= 0) out.push_back(a);
  return out;
}

comm::ReduceOp comm_op(ReduceOp r) {
  return r == ReduceOp::kMax   ? comm::ReduceOp::kMax
         : r == ReduceOp::kMin ? comm::ReduceOp::kMin
                               : comm::ReduceOp::kSum;
}

Box full_box(const Shape& s) {
  return Box{Shape(s.size(), 0), s};
}

}  // namespace

RankComm::RankComm(const Mesh& mesh, comm::Communicator& world, std::chrono::milliseconds timeout)
    : mesh_(mesh), world_(world), rank_(world.rank()), timeout_(timeout) {
  HP_CHECK(mesh_.size() == world_.size(), "[shard] the mesh ", mesh_.str(), " has ", mesh_.size(),
           " devices but the world has ", world_.size());
  const size_t k = mesh_.ndim();
  for (size_t bits = 1; bits < (size_t(1) << k); ++bits) {
    Axes axes;
    for (size_t a = 0; a < k; ++a)
      if (bits & (size_t(1) << a)) axes.push_back(mesh_.axis_names()[a]);
    groups_[axes] = world_.split(mesh_.group(rank_, axes));
  }
}

comm::Communicator& RankComm::group(const Axes& axes) {
  auto it = groups_.find(axes);
  HP_CHECK(it != groups_.end(), "[shard] no communicator over these axes of ", mesh_.str());
  return *it->second;
}

Tensor RankComm::move(const Tensor& local, const Shape& global, const Layout& from,
                      const Layout& to, const std::vector<Step>& steps) {
  const size_t w = dtype_size(local.dtype());
  const DType t = local.dtype();
  Layout lay = from;
  Box box = local_box(global, lay, mesh_, rank_);
  HP_CHECK(box.extent == local.shape(), "[shard] redistribute: piece ", shape_str(local.shape()),
           " does not match ", from.str(), " of ", shape_str(global));
  Bytes buf(local.nbytes());
  if (!buf.empty()) std::memcpy(buf.data(), local.raw(), buf.size());
  auto boxes_of = [&](const Axes& axes, const Layout& l) {
    std::vector<Box> bs;
    for (int r : mesh_.group(rank_, axes)) bs.push_back(local_box(global, l, mesh_, r));
    return bs;
  };
  auto gather_into = [&](const Axes& axes, const Layout& after) {
    // Every member's piece (in `lay`) gathered, then this rank's box of `after` cut out.
    std::vector<Box> bs = boxes_of(axes, lay);
    std::vector<size_t> counts;
    size_t total = 0;
    for (const Box& b : bs) counts.push_back(size_t(b.numel())), total += size_t(b.numel());
    Bytes all(total * w);
    group(axes).all_gather(buf.data(), all.data(), counts, t).wait(timeout_);
    Box nb = local_box(global, after, mesh_, rank_);
    Bytes out(size_t(nb.numel()) * w);
    size_t off = 0;
    for (size_t j = 0; j < bs.size(); ++j) {
      Box r = intersect(bs[j], nb);
      copy_region(all.data() + off * w, bs[j], out.data(), nb, r, w);
      off += counts[j];
    }
    buf.swap(out);
    box = nb;
    lay = after;
  };
  for (const Step& s : steps) {
    switch (s.kind) {
      case StepKind::kSlice: {
        Box nb = local_box(global, s.after, mesh_, rank_);
        Bytes out(size_t(nb.numel()) * w);
        copy_region(buf.data(), box, out.data(), nb, nb, w);
        buf.swap(out);
        box = nb;
        lay = s.after;
        break;
      }
      case StepKind::kMakePartial: {
        Box nb = local_box(global, s.after, mesh_, rank_);
        Bytes out(size_t(nb.numel()) * w, 0);
        const bool keep_all = s.after.reduce != ReduceOp::kSum;
        HP_CHECK(!keep_all || lay.dim_of(s.axis) < 0,
                 "[shard] make_partial of a split dim needs a sum");
        const bool first = mesh_.coords(rank_)[mesh_.axis_index(s.axis)] == 0;
        if (lay.dim_of(s.axis) >= 0 || first || keep_all)
          copy_region(buf.data(), box, out.data(), nb, box, w);
        buf.swap(out);
        box = nb;
        lay = s.after;
        break;
      }
      case StepKind::kAllGather:
        gather_into({s.axis}, s.after);
        break;
      case StepKind::kAllReduce:
        group({s.axis})
            .all_reduce(buf.data(), buf.data(), size_t(box.numel()), t, comm_op(lay.reduce))
            .wait(timeout_);
        lay = s.after;
        break;
      case StepKind::kReduceScatter: {
        std::vector<Box> bs = boxes_of({s.axis}, s.after);
        std::vector<size_t> counts;
        Bytes send;
        for (const Box& b : bs) {
          counts.push_back(size_t(b.numel()));
          Bytes piece(size_t(b.numel()) * w);
          copy_region(buf.data(), box, piece.data(), b, b, w);
          send.insert(send.end(), piece.begin(), piece.end());
        }
        Box nb = local_box(global, s.after, mesh_, rank_);
        Bytes out(size_t(nb.numel()) * w);
        group({s.axis})
            .reduce_scatter(send.data(), out.data(), counts, t, comm_op(lay.reduce))
            .wait(timeout_);
        buf.swap(out);
        box = nb;
        lay = s.after;
        break;
      }
      case StepKind::kAllToAll:
      case StepKind::kSendRecv: {
        Axes axes = split_axes(mesh_, lay);
        if (axes.empty()) {
          Box nb = local_box(global, s.after, mesh_, rank_);
          Bytes out(size_t(nb.numel()) * w);
          copy_region(buf.data(), box, out.data(), nb, nb, w);
          buf.swap(out);
          box = nb;
          lay = s.after;
        } else {
          gather_into(axes, s.after);
        }
        break;
      }
    }
  }
  HP_CHECK(lay == to, "[shard] redistribute ended in ", lay.str(), ", not ", to.str());
  Tensor out(box.extent, t);
  if (!buf.empty()) std::memcpy(out.raw(), buf.data(), buf.size());
  return out;
}

void RankComm::run(ir::KernelArgs& k) {
  const ir::Attrs& at = k.node.attrs;
  Tensor r = move(*k.in[0], at.ints("global"), Layout::parse(at.s("from")),
                  Layout::parse(at.s("to")), decode_steps(at.s("steps")));
  HP_CHECK(r.shape() == k.out[0]->shape(), "[shard] redistribute produced ", shape_str(r.shape()),
           ", the node needs ", shape_str(k.out[0]->shape()));
  if (r.nbytes()) std::memcpy(k.out[0]->raw(), r.raw(), r.nbytes());
}

Tensor RankComm::gather(const Tensor& local, const Shape& global, const Layout& layout) {
  HP_CHECK(layout.partial.empty(), "[shard] gather of a partial layout ", layout.str());
  Step s;
  s.kind = StepKind::kSendRecv;
  s.before = layout;
  s.after = Layout::replicated(global.size());
  return move(local, global, layout, s.after, {s});
}

Tensor local_piece(const Tensor& global, const Layout& layout, const Mesh& mesh, int rank) {
  Box b = local_box(global.shape(), layout, mesh, rank);
  Tensor c = global.is_contiguous() ? global : global.clone();
  Tensor out(b.extent, c.dtype());
  copy_region(static_cast<const char*>(c.raw()), full_box(c.shape()), static_cast<char*>(out.raw()),
              b, b, dtype_size(c.dtype()));
  return out;
}

}  // namespace hp::shard
