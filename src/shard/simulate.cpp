// Reference simulator: executes plan steps on in-memory per-rank buffers by copying or reducing
// box intersections within each step's group, checking coverage and containment as it goes.
// Not an implementation of the collectives' algorithms (rings, trees): only their results.
#include "hp/shard/simulate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "hp/core/error.hpp"

namespace hp::shard {

namespace {

float identity(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return 0.0f;
    case ReduceOp::kMax:
      return -std::numeric_limits<float>::infinity();
    case ReduceOp::kMin:
      return std::numeric_limits<float>::infinity();
    case ReduceOp::kAvg:
      break;
  }
  throw Error("[simulate] a layout is partial by sum, max or min, not avg");
}

float combine(ReduceOp op, float a, float b) {
  switch (op) {
    case ReduceOp::kSum:
      return a + b;
    case ReduceOp::kMax:
      return std::max(a, b);
    case ReduceOp::kMin:
      return std::min(a, b);
    case ReduceOp::kAvg:
      break;
  }
  throw Error("[simulate] a layout is partial by sum, max or min, not avg");
}

// Row-major offset of global index `idx` inside box `b`.
int64_t offset_in(const Box& b, const Shape& idx) {
  int64_t o = 0;
  for (size_t d = 0; d < idx.size(); ++d) o = o * b.extent[d] + (idx[d] - b.offset[d]);
  return o;
}

// Calls f(src_offset_in_a, dst_offset_in_b) for every element of `region` (inside both boxes).
template <typename F>
void for_each(const Box& region, const Box& a, const Box& b, F f) {
  if (region.numel() == 0) return;
  Shape idx = region.offset;
  const size_t rank = idx.size();
  while (true) {
    f(offset_in(a, idx), offset_in(b, idx));
    size_t d = rank;
    while (d > 0) {
      --d;
      if (++idx[d] < region.offset[d] + region.extent[d]) break;
      idx[d] = region.offset[d];
      if (d == 0) return;
    }
    if (rank == 0) return;
  }
}

std::vector<Box> all_boxes(const Shape& shape, const Layout& l, const Mesh& mesh) {
  std::vector<Box> out;
  for (int64_t p = 0; p < mesh.size(); ++p) out.push_back(local_box_at(shape, l, mesh, p));
  return out;
}

void check_pieces(const Pieces& pieces, const std::vector<Box>& boxes, const char* who) {
  HP_CHECK(pieces.size() == boxes.size(), "[simulate] ", who, ": ", pieces.size(),
           " pieces for a mesh of ", boxes.size(), " devices");
  for (size_t p = 0; p < boxes.size(); ++p) {
    HP_CHECK(int64_t(pieces[p].size()) == boxes[p].numel(), "[simulate] ", who, ": piece ", p,
             " holds ", pieces[p].size(), " elements, its box ", boxes[p].str(), " has ",
             boxes[p].numel());
  }
}

// Positions that differ from `p` only along the listed axes.
std::vector<int64_t> group_over(const Mesh& mesh, int64_t p, const std::vector<std::string>& axes) {
  std::vector<int64_t> out{p};
  for (const auto& a : axes) {
    std::vector<int64_t> next;
    for (int64_t q : out) {
      for (int64_t r : mesh.group_positions(q, a)) next.push_back(r);
    }
    out = std::move(next);
  }
  return out;
}

}  // namespace

Pieces scatter(const std::vector<float>& global, const Shape& shape, const Layout& layout,
               const Mesh& mesh) {
  HP_CHECK(int64_t(global.size()) == numel(shape), "[simulate] global array has ", global.size(),
           " elements, shape ", shape_str(shape), " needs ", numel(shape));
  layout.check(mesh);
  const Box whole{Shape(shape.size(), 0), shape};
  Pieces out;
  for (int64_t p = 0; p < mesh.size(); ++p) {
    const Box b = local_box_at(shape, layout, mesh, p);
    const std::vector<int64_t> c = mesh.coords_at(p);
    bool first = true;  // the addend at coordinate 0 of every partial axis holds the value
    for (const auto& a : layout.partial) first = first && c[mesh.axis_index(a)] == 0;
    std::vector<float> piece(size_t(b.numel()));
    if (!first && layout.reduce == ReduceOp::kSum) {
      std::fill(piece.begin(), piece.end(), 0.0f);
    } else {
      for_each(b, whole, b, [&](int64_t s, int64_t d) { piece[size_t(d)] = global[size_t(s)]; });
    }
    out.push_back(std::move(piece));
  }
  return out;
}

std::vector<float> assemble(const Pieces& pieces, const Shape& shape, const Layout& layout,
                            const Mesh& mesh, float tolerance) {
  layout.check(mesh);
  const std::vector<Box> boxes = all_boxes(shape, layout, mesh);
  check_pieces(pieces, boxes, "assemble");
  const Box whole{Shape(shape.size(), 0), shape};
  std::vector<float> out(size_t(numel(shape)), 0.0f);
  std::vector<char> seen(out.size(), 0);
  for (int64_t p = 0; p < mesh.size(); ++p) {
    const Box& b = boxes[size_t(p)];
    std::vector<float> value(size_t(b.numel()), identity(layout.reduce));
    for (int64_t q : group_over(mesh, p, layout.partial)) {
      const auto& src = pieces[size_t(q)];
      for (size_t i = 0; i < value.size(); ++i) value[i] = combine(layout.reduce, value[i], src[i]);
    }
    for_each(b, b, whole, [&](int64_t s, int64_t d) {
      const float v = value[size_t(s)];
      if (seen[size_t(d)]) {
        HP_CHECK(std::fabs(out[size_t(d)] - v) <= tolerance, "[simulate] replicas disagree at ",
                 "element ", d, ": ", out[size_t(d)], " vs ", v, " (device ", p, ", ", layout.str(),
                 ")");
      }
      out[size_t(d)] = v;
      seen[size_t(d)] = 1;
    });
  }
  const auto missing = std::find(seen.begin(), seen.end(), 0);
  HP_CHECK(missing == seen.end(), "[simulate] element ", missing - seen.begin(),
           " is held by no device under ", layout.str());
  return out;
}

Pieces simulate_step(const Step& step, const Pieces& in, const Shape& shape, const Mesh& mesh) {
  const std::vector<Box> before = all_boxes(shape, step.before, mesh);
  const std::vector<Box> after = all_boxes(shape, step.after, mesh);
  check_pieces(in, before, step_kind_name(step.kind).c_str());
  Pieces out(in.size());
  for (int64_t p = 0; p < mesh.size(); ++p) {
    const Box& nb = after[size_t(p)];
    std::vector<float>& dst = out[size_t(p)];
    dst.assign(size_t(nb.numel()), identity(step.after.reduce));
    switch (step.kind) {
      case StepKind::kAllReduce:
      case StepKind::kReduceScatter: {
        // The result may no longer be partial (its reduce reset to sum): start from the identity
        // of the reduction being applied.
        std::fill(dst.begin(), dst.end(), identity(step.before.reduce));
        // Every member holds an addend of a box that covers the new box.
        for (int64_t q : mesh.group_positions(p, step.axis)) {
          const Box& ob = before[size_t(q)];
          HP_CHECK(ob.contains(nb), "[simulate] ", step.str(), ": device ", q, " holds ", ob.str(),
                   ", which does not cover ", nb.str());
          const auto& src = in[size_t(q)];
          for_each(nb, ob, nb, [&](int64_t s, int64_t d) {
            dst[size_t(d)] = combine(step.before.reduce, dst[size_t(d)], src[size_t(s)]);
          });
        }
        break;
      }
      case StepKind::kMakePartial: {
        const Box& ob = before[size_t(p)];
        HP_CHECK(nb.contains(ob), "[simulate] ", step.str(), ": new box ", nb.str(),
                 " does not hold the old ", ob.str());
        // From a replica, a sum keeps the value once (coordinate 0); max and min keep it
        // everywhere.
        const bool was_replicated = step.before.is_unused(step.axis);
        const int64_t c = mesh.coords_at(p)[mesh.axis_index(step.axis)];
        if (was_replicated && step.after.reduce == ReduceOp::kSum && c != 0) break;
        const auto& src = in[size_t(p)];
        for_each(ob, ob, nb, [&](int64_t s, int64_t d) { dst[size_t(d)] = src[size_t(s)]; });
        break;
      }
      default: {
        // Copies: a slice reads itself, a collective its group, send/recv any device with the
        // same partial coordinates (the same addend).
        std::vector<int64_t> sources;
        if (step.kind == StepKind::kSlice) {
          sources = {p};
        } else if (step.kind == StepKind::kSendRecv) {
          HP_CHECK(step.before.partial == step.after.partial, "[simulate] ", step.str(),
                   ": send/recv cannot change partial axes");
          const std::vector<int64_t> c = mesh.coords_at(p);
          for (int64_t q = 0; q < mesh.size(); ++q) {
            const std::vector<int64_t> cq = mesh.coords_at(q);
            bool same = true;
            for (const auto& a : step.after.partial) {
              same = same && cq[mesh.axis_index(a)] == c[mesh.axis_index(a)];
            }
            if (same) sources.push_back(q);
          }
        } else {
          sources = mesh.group_positions(p, step.axis);
        }
        std::vector<char> have(dst.size(), 0);
        for (int64_t q : sources) {
          const Box& ob = before[size_t(q)];
          const auto& src = in[size_t(q)];
          for_each(intersect(ob, nb), ob, nb, [&](int64_t s, int64_t d) {
            dst[size_t(d)] = src[size_t(s)];
            have[size_t(d)] = 1;
          });
        }
        const auto gap = std::find(have.begin(), have.end(), 0);
        HP_CHECK(gap == have.end(), "[simulate] ", step.str(), ": device ", p, " cannot fill ",
                 "element ", gap - have.begin(), " of ", nb.str(), " from its group");
      }
    }
  }
  return out;
}

Pieces simulate(const Plan& plan, const Pieces& in, const Mesh& mesh) {
  Pieces cur = in;
  for (const Step& s : plan.steps) cur = simulate_step(s, cur, plan.shape, mesh);
  return cur;
}

}  // namespace hp::shard
