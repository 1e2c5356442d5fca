// CostModel helpers: uniform costs, action durations, checks, and links over a level hierarchy.
// Not a profiler: numbers come from the caller.
#include "hp/mpmd/cost.hpp"

#include "hp/core/error.hpp"

namespace hp::mpmd {

CostModel CostModel::uniform(const ChunkGraph& g, double f, double b, double w) {
  CostModel m;
  ChunkCost c;
  c.f = f, c.b = b, c.w = w;
  m.chunks.assign(size_t(g.chunks()), c);
  return m;
}

double CostModel::duration(const Action& a) const {
  if (a.kind == ActionKind::kOpt) return 0;  // per rank: the simulator adds opt[rank]
  if (!is_compute(a.kind)) return 0;
  const ChunkCost& c = chunks.at(size_t(a.chunk));
  const double k = scale(a.chunk, a.microbatch);
  if (is_move(a.kind)) return host_link.time(c.act_bytes);
  switch (a.kind) {
    case ActionKind::kF:
      return k * c.f;
    case ActionKind::kB:
      return k * c.b;
    case ActionKind::kW:
      return k * c.w;
    case ActionKind::kBW:
      return k * (c.b + c.w);
    default:
      return 0;
  }
}

void CostModel::check(const ChunkGraph& g) const {
  HP_CHECK(chunks.size() == size_t(g.chunks()), "[mpmd] cost model has ", chunks.size(),
           " chunk costs for a graph of ", g.chunks(), " chunks");
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& c = chunks[i];
    HP_CHECK(c.f >= 0 && c.b >= 0 && c.w >= 0 && c.act_bytes >= 0 && c.w_bytes >= 0 &&
                 c.out_bytes >= 0 && c.w_bytes <= c.act_bytes,
             "[mpmd] chunk c", i, ": costs must be >= 0 and w_bytes <= act_bytes");
  }
  HP_CHECK(microbatch_scale.empty() || microbatch_scale.size() == chunks.size(),
           "[mpmd] cost model: micro-batch scales for ", microbatch_scale.size(), " chunks of ",
           chunks.size());
  for (const auto& row : microbatch_scale)
    for (double k : row) HP_CHECK(k >= 0, "[mpmd] cost model: a micro-batch scale is negative");
  HP_CHECK(opt.empty() || opt.size() == size_t(g.ranks), "[mpmd] cost model: ", opt.size(),
           " optimizer times for ", g.ranks, " ranks");
  HP_CHECK(memory_budget.empty() || memory_budget.size() == size_t(g.ranks),
           "[mpmd] cost model: ", memory_budget.size(), " memory budgets for ", g.ranks, " ranks");
}

std::function<Link(int, int)> hierarchical_links(std::vector<LinkLevel> levels,
                                                 std::vector<int> first_device) {
  HP_CHECK(!levels.empty() && levels.back().domain == 0,
           "[mpmd] link levels: the last (outermost) level must span everyone (domain 0)");
  for (size_t i = 0; i + 1 < levels.size(); ++i)
    HP_CHECK(levels[i].domain > 0, "[mpmd] link level '", levels[i].name,
             "': only the last level may have domain 0");
  return [levels = std::move(levels), first = std::move(first_device)](int a, int b) {
    HP_CHECK(a >= 0 && b >= 0 && size_t(a) < first.size() && size_t(b) < first.size(),
             "[mpmd] link between ranks ", a, " and ", b, ": only ", first.size(), " ranks");
    int da = first[size_t(a)], db = first[size_t(b)];
    for (const auto& l : levels)
      if (l.domain == 0 || da / l.domain == db / l.domain) return l.link;
    return levels.back().link;
  };
}

}  // namespace hp::mpmd
