// RankComm: sub-communicators per set of mesh axes and the redistribution steps as collectives
// over byte buffers: slice and make-partial locally, all-gather, reduce-scatter and all-reduce
// along one axis; all-to-all and send/recv as a gather over the axes that split the input
// followed by a slice (correct for any pair of layouts with the same partial axes).
#include "hp/shard/comm.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <utility>

#include "hp/ir/op_def.hpp"

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

Box full_box(const Shape& s) {
  return Box{Shape(s.size(), 0), s};
}

// Whether `pieces`, in order, are consecutive ranges of `whole`'s row-major buffer covering it:
// each a run of whole rows past some dimension (extent 1 before it). A collective's buffer of
// the pieces in group order is then `whole`'s own buffer, with no staging copy.
bool tiles_in_order(const std::vector<Box>& pieces, const Box& whole) {
  const size_t nd = whole.extent.size();
  int64_t next = 0;
  for (const Box& p : pieces) {
    if (p.numel() == 0) continue;
    if (!whole.contains(p)) return false;
    size_t k = 0;  // the first dimension the piece does not span as a single index
    while (k < nd && p.extent[k] == 1) ++k;
    for (size_t d = k + 1; d < nd; ++d)
      if (p.extent[d] != whole.extent[d]) return false;
    int64_t at = 0, stride = 1;
    for (size_t d = nd; d-- > 0;) {
      at += (p.offset[d] - whole.offset[d]) * stride;
      stride *= whole.extent[d];
    }
    if (at != next) return false;
    next += p.numel();
  }
  return next == whole.numel();
}

// Whether `rank` keeps its piece when a value in layout `from` becomes a partial sum over
// `s.axis` (else it contributes zeros): where the axis splits a dim, for a reduction other than a
// sum (every member holds the value), and on the axis's first member.
bool keeps_piece(const Mesh& mesh, int rank, const Layout& from, const Step& s) {
  const bool split = from.dim_of(s.axis) >= 0, sum = s.after.reduce == ReduceOp::kSum;
  HP_CHECK(sum || !split, "[shard] make_partial of a split dim needs a sum");
  return split || !sum || mesh.coords(rank)[mesh.axis_index(s.axis)] == 0;
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

// A redistribution in progress: the bytes of this rank's piece in layout `lay` (box `box`), the
// steps still to run, and the collective in flight with what completes its step.
struct RankComm::Move {
  Shape global;
  Layout lay, to;
  Box box;
  DType t = DType::kF32;
  size_t w = 4;
  Bytes buf;
  std::vector<Step> steps;
  size_t next = 0;
  comm::Work work;
  std::function<void()> after;  // runs once `work` has finished
  std::vector<size_t> pieces;   // a bucket: element offsets of its inputs (plus the end)
  int readers = 1;              // wait nodes still to read it
};

// The kernels of one lowered graph's communication nodes, with that graph's plan table.
class RankComm::Runner final : public runtime::CommRunner {
 public:
  Runner(RankComm& rc, const std::vector<Plan>& plans) : rc_(rc), plans_(plans) {}
  void run(runtime::KernelArgs& k) override { rc_.run(k, plan(k)); }
  void start(runtime::KernelArgs& k) override {
    rc_.start(k, k.node.attrs.has("plan") ? &plan(k) : nullptr);
  }
  void finish(runtime::KernelArgs& k) override { rc_.finish(k); }

 private:
  const Plan& plan(const runtime::KernelArgs& k) const {
    const int64_t i = k.node.attrs.i("plan");
    HP_CHECK(i >= 0 && size_t(i) < plans_.size(), "[shard] ", k.node.def->name, " names plan ", i,
             " but the graph was lowered with ", plans_.size());
    return plans_[size_t(i)];
  }

  RankComm& rc_;
  const std::vector<Plan>& plans_;
};

RankComm::~RankComm() = default;

runtime::CommRunner& RankComm::runner(const std::vector<Plan>& plans) {
  runners_.push_back(std::make_unique<Runner>(*this, plans));
  return *runners_.back();
}

void RankComm::wait_work(comm::Work& w) {
  const auto t0 = std::chrono::steady_clock::now();
  w.wait(timeout_);
  blocked_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  w = comm::Work();
}

std::unique_ptr<RankComm::Move> RankComm::begin_move(const Tensor& local, const Shape& global,
                                                     const Layout& from, const Layout& to,
                                                     const std::vector<Step>& steps) {
  auto m = std::make_unique<Move>();
  m->global = global;
  m->lay = from;
  m->to = to;
  m->t = local.dtype();
  m->w = dtype_size(local.dtype());
  m->steps = steps;
  m->box = local_box(global, from, mesh_, rank_);
  HP_CHECK(m->box.extent == local.shape(), "[shard] redistribute: piece ", shape_str(local.shape()),
           " does not match ", from.str(), " of ", shape_str(global));
  m->buf.resize(local.nbytes());
  if (!m->buf.empty()) std::memcpy(m->buf.data(), local.raw(), m->buf.size());
  return m;
}

void RankComm::advance(Move& m, bool async) {
  const size_t w = m.w;
  const DType t = m.t;
  const Shape& global = m.global;
  auto boxes_of = [&](const Axes& axes, const Layout& l) {
    std::vector<Box> bs;
    for (int r : mesh_.group(rank_, axes)) bs.push_back(local_box(global, l, mesh_, r));
    return bs;
  };
  auto local_step = [&](const Layout& after) {  // no communication: cut this rank's new box
    Box nb = local_box(global, after, mesh_, rank_);
    Bytes out(size_t(nb.numel()) * w);
    copy_region(m.buf.data(), m.box, out.data(), nb, nb, w);
    m.buf.swap(out);
    m.box = nb;
    m.lay = after;
  };
  auto gather_into = [&](const Axes& axes, const Layout& after) {
    // Every member's piece (in `lay`) gathered, then this rank's box of `after` cut out.
    auto bs = std::make_shared<std::vector<Box>>(boxes_of(axes, m.lay));
    auto counts = std::make_shared<std::vector<size_t>>();
    size_t total = 0;
    for (const Box& b : *bs) counts->push_back(size_t(b.numel())), total += size_t(b.numel());
    auto all = std::make_shared<Bytes>(total * w);
    m.work = group(axes).all_gather(m.buf.data(), all->data(), *counts, t);
    m.after = [this, &m, bs, counts, all, after, w] {
      Box nb = local_box(m.global, after, mesh_, rank_);
      Bytes out(size_t(nb.numel()) * w);
      size_t off = 0;
      for (size_t j = 0; j < bs->size(); ++j) {
        Box r = intersect((*bs)[j], nb);
        copy_region(all->data() + off * w, (*bs)[j], out.data(), nb, r, w);
        off += (*counts)[j];
      }
      m.buf.swap(out);
      m.box = nb;
      m.lay = after;
    };
  };
  while (true) {
    if (m.work.valid()) {
      if (async) return;
      wait_work(m.work);
      if (m.after) std::exchange(m.after, nullptr)();
    }
    if (m.next == m.steps.size()) break;
    const Step& s = m.steps[m.next++];
    switch (s.kind) {
      case StepKind::kSlice:
        local_step(s.after);
        break;
      case StepKind::kMakePartial: {
        Box nb = local_box(global, s.after, mesh_, rank_);
        Bytes out(size_t(nb.numel()) * w, 0);
        if (keeps_piece(mesh_, rank_, m.lay, s))
          copy_region(m.buf.data(), m.box, out.data(), nb, m.box, w);
        m.buf.swap(out);
        m.box = nb;
        m.lay = s.after;
        break;
      }
      case StepKind::kAllGather:
        gather_into({s.axis}, s.after);
        break;
      case StepKind::kAllReduce:
        m.work = group({s.axis}).all_reduce(m.buf.data(), m.buf.data(), size_t(m.box.numel()), t,
                                            m.lay.reduce);
        m.after = [&m, after = s.after] { m.lay = after; };
        break;
      case StepKind::kReduceScatter: {
        std::vector<Box> bs = boxes_of({s.axis}, s.after);
        std::vector<size_t> counts;
        auto send = std::make_shared<Bytes>();
        for (const Box& b : bs) {
          counts.push_back(size_t(b.numel()));
          Bytes piece(size_t(b.numel()) * w);
          copy_region(m.buf.data(), m.box, piece.data(), b, b, w);
          send->insert(send->end(), piece.begin(), piece.end());
        }
        Box nb = local_box(global, s.after, mesh_, rank_);
        m.buf.assign(size_t(nb.numel()) * w, 0);
        m.work =
            group({s.axis}).reduce_scatter(send->data(), m.buf.data(), counts, t, m.lay.reduce);
        m.after = [&m, send, nb, after = s.after] {
          m.box = nb;
          m.lay = after;
        };
        break;
      }
      case StepKind::kAllToAll:
      case StepKind::kSendRecv: {
        Axes axes = split_axes(mesh_, m.lay);
        if (axes.empty())
          local_step(s.after);
        else
          gather_into(axes, s.after);
        break;
      }
    }
    if (m.work.valid()) ++issued_;
  }
  HP_CHECK(m.lay == m.to, "[shard] redistribute ended in ", m.lay.str(), ", not ", m.to.str());
}

Tensor RankComm::move(const Tensor& local, const Shape& global, const Layout& from,
                      const Layout& to, const std::vector<Step>& steps) {
  auto m = begin_move(local, global, from, to, steps);
  advance(*m, false);
  Tensor out(m->box.extent, m->t);
  if (!m->buf.empty()) std::memcpy(out.raw(), m->buf.data(), m->buf.size());
  return out;
}

void RankComm::run(runtime::KernelArgs& k, const Plan& plan) {
  const bool reduce_only =
      !plan.steps.empty() && std::all_of(plan.steps.begin(), plan.steps.end(), [](const Step& s) {
        return s.kind == StepKind::kAllReduce;
      });
  if (reduce_only) {  // the piece keeps its box: reduced in place in the output, no copies
    const Tensor& in = *k.in[0];
    Tensor& out = *k.out[0];
    HP_CHECK(in.shape() == out.shape() && in.dtype() == out.dtype(), "[shard] all-reduce of ",
             shape_str(in.shape()), " into ", shape_str(out.shape()));
    if (out.raw() != in.raw() && in.nbytes()) std::memcpy(out.raw(), in.raw(), in.nbytes());
    Layout lay = plan.from;
    for (const Step& s : plan.steps) {
      comm::Work w = group({s.axis}).all_reduce(out.raw(), out.raw(), size_t(out.numel()),
                                                out.dtype(), lay.reduce);
      ++issued_;
      wait_work(w);
      lay = s.after;
    }
    HP_CHECK(lay == plan.to, "[shard] redistribute ended in ", lay.str(), ", not ", plan.to.str());
    return;
  }
  if (plan.steps.size() == 1 && (plan.steps[0].kind == StepKind::kAllGather ||
                                 plan.steps[0].kind == StepKind::kReduceScatter))
    return run_one_collective(k, plan);
  if (plan.steps.size() == 1 && plan.steps[0].kind == StepKind::kMakePartial &&
      local_box(plan.shape, plan.from, mesh_, rank_) ==
          local_box(plan.shape, plan.to, mesh_, rank_))
    return make_partial(k, plan);
  Tensor r = move(*k.in[0], plan.shape, plan.from, plan.to, plan.steps);
  HP_CHECK(r.shape() == k.out[0]->shape(), "[shard] redistribute produced ", shape_str(r.shape()),
           ", the node needs ", shape_str(k.out[0]->shape()));
  if (r.nbytes()) std::memcpy(k.out[0]->raw(), r.raw(), r.nbytes());
}

void RankComm::make_partial(runtime::KernelArgs& k, const Plan& plan) {
  const Step& s = plan.steps[0];
  const Tensor& in = *k.in[0];
  Tensor& out = *k.out[0];
  HP_CHECK(in.shape() == out.shape() && in.dtype() == out.dtype() && s.after == plan.to,
           "[shard] make_partial of ", shape_str(in.shape()), " (", plan.from.str(), ") into ",
           shape_str(out.shape()), " (", plan.to.str(), ")");
  if (keeps_piece(mesh_, rank_, plan.from, s)) {
    if (out.raw() != in.raw() && in.nbytes()) std::memcpy(out.raw(), in.raw(), in.nbytes());
  } else if (out.nbytes()) {
    std::memset(out.raw(), 0, out.nbytes());
  }
}

void RankComm::run_one_collective(runtime::KernelArgs& k, const Plan& plan) {
  const Step& s = plan.steps[0];
  const Tensor& in = *k.in[0];
  Tensor& out = *k.out[0];
  const size_t w = dtype_size(in.dtype());
  const Box mine = local_box(plan.shape, plan.from, mesh_, rank_);
  const Box nb = local_box(plan.shape, s.after, mesh_, rank_);
  HP_CHECK(mine.extent == in.shape() && nb.extent == out.shape() && out.dtype() == in.dtype() &&
               s.after == plan.to,
           "[shard] redistribute of ", shape_str(in.shape()), " (", plan.from.str(), ") into ",
           shape_str(out.shape()), " (", plan.to.str(), ")");
  // The group's pieces: before the gather, or after the scatter.
  const bool gather = s.kind == StepKind::kAllGather;
  std::vector<Box> pieces;
  std::vector<size_t> counts;
  size_t total = 0;
  for (int r : mesh_.group(rank_, {s.axis})) {
    pieces.push_back(local_box(plan.shape, gather ? plan.from : s.after, mesh_, r));
    counts.push_back(size_t(pieces.back().numel()));
    total += counts.back();
  }
  comm::Communicator& c = group({s.axis});
  if (tiles_in_order(pieces, gather ? nb : mine)) {  // straight from the input into the output
    comm::Work work =
        gather ? c.all_gather(in.raw(), out.raw(), counts, in.dtype())
               : c.reduce_scatter(in.raw(), out.raw(), counts, in.dtype(), plan.from.reduce);
    ++issued_;
    wait_work(work);
    return;
  }
  if (staging_.size() < total * w) staging_.resize(total * w);
  size_t off = 0;
  if (gather) {
    comm::Work work = c.all_gather(in.raw(), staging_.data(), counts, in.dtype());
    ++issued_;
    wait_work(work);
    for (size_t j = 0; j < pieces.size(); off += counts[j], ++j)
      copy_region(staging_.data() + off * w, pieces[j], static_cast<char*>(out.raw()), nb,
                  intersect(pieces[j], nb), w);
    return;
  }
  for (size_t j = 0; j < pieces.size(); off += counts[j], ++j)
    copy_region(static_cast<const char*>(in.raw()), mine, staging_.data() + off * w, pieces[j],
                pieces[j], w);
  comm::Work work =
      c.reduce_scatter(staging_.data(), out.raw(), counts, in.dtype(), plan.from.reduce);
  ++issued_;
  wait_work(work);
}

void RankComm::start(runtime::KernelArgs& k, const Plan* plan) {
  const ir::Attrs& at = k.node.attrs;
  const int64_t key = at.i("key");
  HP_CHECK(!pending_.count(key), "[shard] redistribution ", key, " started twice");
  std::unique_ptr<Move> m;
  if (plan) {
    HP_CHECK(k.in.size() == 1, "[shard] redistribution ", key, " of ", k.in.size(), " inputs");
    m = begin_move(*k.in[0], plan->shape, plan->from, plan->to, plan->steps);
    advance(*m, true);
  } else {  // a bucket: every input all-reduced along one axis in one collective
    m = std::make_unique<Move>();
    m->t = k.in[0]->dtype();
    m->w = dtype_size(m->t);
    m->pieces.push_back(0);
    for (const Tensor* x : k.in) {
      HP_CHECK(x->dtype() == m->t, "[shard] a bucket mixes dtypes");
      m->pieces.push_back(m->pieces.back() + size_t(x->numel()));
    }
    if (auto sp = spare_.find(key); sp != spare_.end()) {  // last step's buffer: no page faults
      m->buf.swap(sp->second);
      spare_.erase(sp);
    }
    m->buf.resize(m->pieces.back() * m->w);
    for (size_t i = 0; i < k.in.size(); ++i)
      if (k.in[i]->nbytes())
        std::memcpy(m->buf.data() + m->pieces[i] * m->w, k.in[i]->raw(), k.in[i]->nbytes());
    const ReduceOp op = ReduceOp(at.i("reduce"));
    m->work =
        group({at.s("axis")}).all_reduce(m->buf.data(), m->buf.data(), m->pieces.back(), m->t, op);
    ++issued_;
    m->readers = int(k.in.size());
  }
  pending_[key] = std::move(m);
  std::memset(k.out[0]->raw(), 0, k.out[0]->nbytes());
}

void RankComm::finish(runtime::KernelArgs& k) {
  const ir::Attrs& at = k.node.attrs;
  auto it = pending_.find(at.i("key"));
  HP_CHECK(it != pending_.end(), "[shard] redistribution ", at.i("key"), " was never started");
  Move& m = *it->second;
  const char* src = nullptr;
  size_t bytes = 0;
  if (m.pieces.empty()) {
    advance(m, false);
    src = m.buf.data();
    bytes = m.buf.size();
    HP_CHECK(m.box.extent == k.out[0]->shape(), "[shard] redistribute produced ",
             shape_str(m.box.extent), ", the node needs ", shape_str(k.out[0]->shape()));
  } else {
    if (m.work.valid()) wait_work(m.work);
    const size_t i = size_t(at.i("index"));
    HP_CHECK(i + 1 < m.pieces.size(), "[shard] bucket piece ", i, " out of range");
    src = m.buf.data() + m.pieces[i] * m.w;
    bytes = (m.pieces[i + 1] - m.pieces[i]) * m.w;
  }
  HP_CHECK(bytes == k.out[0]->nbytes(), "[shard] redistribution ", at.i("key"), " gives ", bytes,
           " bytes, the node needs ", k.out[0]->nbytes());
  if (bytes) std::memcpy(k.out[0]->raw(), src, bytes);
  if (--m.readers == 0) {
    if (!m.pieces.empty()) spare_[it->first].swap(m.buf);
    pending_.erase(it);
  }
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
