// Topology: nested link levels and the level each mesh axis crosses.
// Not a cost model of collectives: redistribute.cpp turns levels into step times.
#include "hp/shard/topology.hpp"

#include <algorithm>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::shard {

Topology::Topology(std::vector<LinkLevel> levels) : levels_(std::move(levels)) {
  HP_CHECK(!levels_.empty(), "[topology] needs at least one level");
  for (size_t i = 0; i < levels_.size(); ++i) {
    const LinkLevel& l = levels_[i];
    HP_CHECK(l.bandwidth > 0, "[topology] level '", l.name, "' has bandwidth ", l.bandwidth);
    HP_CHECK(l.latency >= 0, "[topology] level '", l.name, "' has latency ", l.latency);
    const bool last = i + 1 == levels_.size();
    HP_CHECK(last == (l.domain_size == 0), "[topology] level '", l.name, "': ",
             last ? "the outermost level must span all ranks (domain_size 0)"
                  : "only the outermost level may span all ranks");
    HP_CHECK(l.domain_size >= 0, "[topology] level '", l.name, "' has domain size ", l.domain_size);
    if (i > 0 && !last) {
      const int64_t prev = levels_[i - 1].domain_size;
      HP_CHECK(l.domain_size > prev && l.domain_size % prev == 0, "[topology] level '", l.name,
               "' (", l.domain_size, " ranks) must be a multiple of level '", levels_[i - 1].name,
               "' (", prev, " ranks)");
    }
  }
}

Topology Topology::uniform(double bandwidth, double latency, const std::string& name) {
  return Topology({{name, 0, bandwidth, latency}});
}

size_t Topology::level_of(const std::vector<int>& ranks) const {
  if (ranks.size() <= 1) return 0;
  for (size_t i = 0; i + 1 < levels_.size(); ++i) {
    const int64_t d = levels_[i].domain_size;
    const int64_t dom = ranks[0] / d;
    if (std::all_of(ranks.begin(), ranks.end(), [&](int r) { return r / d == dom; })) return i;
  }
  return levels_.size() - 1;
}

const LinkLevel& Topology::axis_level(const Mesh& mesh, const std::string& axis) const {
  size_t worst = 0;
  // One group per coordinate of the other axes; visiting every position covers all of them.
  for (int r : mesh.ranks()) worst = std::max(worst, level_of(mesh.group(r, axis)));
  return levels_[worst];
}

std::string Topology::str() const {
  std::ostringstream os;
  for (size_t i = 0; i < levels_.size(); ++i) {
    const LinkLevel& l = levels_[i];
    os << (i ? " | " : "") << l.name << " (";
    if (l.domain_size) {
      os << l.domain_size << " ranks";
    } else {
      os << "all";
    }
    os << "): " << l.bandwidth << " B/s, " << l.latency << " s";
  }
  return os.str();
}

Topology calibrated_local_topology(double bandwidth, double latency) {
  HP_CHECK(bandwidth > 0 && latency >= 0, "[topology] calibration gave bandwidth ", bandwidth,
           " B/s and latency ", latency, " s");
  return Topology({{"local", 0, bandwidth, latency}});
}

}  // namespace hp::shard
