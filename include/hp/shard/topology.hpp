// Topology: the levels of a machine (e.g. core / node / pod), each with the bandwidth and latency
// of a link at that level, and which level each mesh axis's groups cross.
// Not a measurement tool: calibrated_local_topology takes numbers the caller has measured.
#pragma once
#include <string>
#include <vector>

#include "hp/shard/mesh.hpp"

namespace hp::shard {

// One level of the hierarchy. Ranks r and s share a domain at this level when
// r / domain_size == s / domain_size; domain_size 0 means every rank (the outermost level).
struct LinkLevel {
  std::string name;
  int64_t domain_size = 0;  // consecutive ranks per domain; 0: all ranks
  double bandwidth = 0;     // bytes/s that one rank can receive over this level
  double latency = 0;       // seconds per message
};

class Topology {
 public:
  // Levels fastest (innermost) first; domain sizes strictly increasing, each dividing the next.
  // The last level must have domain_size 0 so that every pair of ranks has a level. Throws on a
  // non-positive bandwidth, a negative latency or an ill-nested hierarchy.
  explicit Topology(std::vector<LinkLevel> levels);
  // One level that connects everyone.
  static Topology uniform(double bandwidth, double latency, const std::string& name = "link");

  const std::vector<LinkLevel>& levels() const { return levels_; }
  // Index of the innermost level whose domain holds all of `ranks` (0 for one rank).
  size_t level_of(const std::vector<int>& ranks) const;
  // The slowest level any group along `axis` of `mesh` spans.
  const LinkLevel& axis_level(const Mesh& mesh, const std::string& axis) const;
  // "core (8 ranks): 1.5e+11 B/s, 1e-06 s | pod (all): ..."
  std::string str() const;

 private:
  std::vector<LinkLevel> levels_;
};

// A single-level topology from a measured bandwidth (bytes/s) and latency (s), e.g. of the
// threads backend on this machine.
Topology calibrated_local_topology(double bandwidth, double latency);

}  // namespace hp::shard
