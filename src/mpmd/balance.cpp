// Block balancing by dynamic programming over split points (see balance.hpp): best[j][i] is the
// smallest possible largest cost of placing blocks [0, i) on parts 0..j-1 within the caps.
// Not a heuristic: the result is optimal for the costs given; ties go to the most even split.
#include "hp/mpmd/balance.hpp"

#include <algorithm>
#include <limits>
#include <sstream>

#include "hp/core/error.hpp"

namespace hp::mpmd {

std::string BlockRange::str() const {
  return first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last);
}

std::string Balance::str() const {
  std::ostringstream os;
  for (size_t i = 0; i < ranges.size(); ++i) os << (i ? " | " : "") << ranges[i].str();
  os << " (cost";
  for (size_t i = 0; i < cost.size(); ++i) os << (i ? ", " : " ") << cost[i];
  os << "; max " << max_cost << ")";
  return os.str();
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_input(const BalanceInput& in) {
  size_t n = in.cost.size();
  HP_CHECK(in.parts >= 1, "[mpmd] balance: parts must be >= 1, got ", in.parts);
  HP_CHECK(n >= size_t(in.parts), "[mpmd] balance: ", n, " blocks cannot fill ", in.parts,
           " stages (each needs at least one block)");
  HP_CHECK(in.bytes.empty() || in.bytes.size() == n, "[mpmd] balance: ", in.bytes.size(),
           " block sizes for ", n, " blocks");
  HP_CHECK(in.speed.empty() || in.speed.size() == size_t(in.parts),
           "[mpmd] balance: ", in.speed.size(), " speeds for ", in.parts, " stages");
  HP_CHECK(in.memory_cap.empty() || in.memory_cap.size() == size_t(in.parts),
           "[mpmd] balance: ", in.memory_cap.size(), " memory caps for ", in.parts, " stages");
  for (double s : in.speed) HP_CHECK(s > 0, "[mpmd] balance: a stage speed must be > 0");
  for (size_t i = 0; i < n; ++i)
    HP_CHECK(in.cost[i] >= 0 && (in.bytes.empty() || in.bytes[i] >= 0), "[mpmd] balance: block ", i,
             " has a negative cost or size");
}

}  // namespace

Balance balance_blocks(const BalanceInput& in) {
  check_input(in);
  size_t n = in.cost.size(), k = size_t(in.parts);
  std::vector<double> cs(n + 1, 0), bs(n + 1, 0);  // prefix sums
  for (size_t i = 0; i < n; ++i) {
    cs[i + 1] = cs[i] + in.cost[i];
    bs[i + 1] = bs[i] + (in.bytes.empty() ? 0 : in.bytes[i]);
  }
  auto part_cost = [&](size_t j, size_t a, size_t b) {
    double c = cs[b] - cs[a] + (j == 0 ? in.first_cost : 0) + (j == k - 1 ? in.last_cost : 0);
    return c / (in.speed.empty() ? 1.0 : in.speed[j]);
  };
  auto part_bytes = [&](size_t j, size_t a, size_t b) {
    return bs[b] - bs[a] + (j == 0 ? in.first_bytes : 0) + (j == k - 1 ? in.last_bytes : 0);
  };
  auto fits = [&](size_t j, size_t a, size_t b) {
    return in.memory_cap.empty() || in.memory_cap[j] <= 0 ||
           part_bytes(j, a, b) <= in.memory_cap[j] * (1 + 1e-12);
  };
  // best[j][i]: (largest cost, sum of squared costs) of blocks [0, i) on parts 0..j-1.
  using Score = std::pair<double, double>;
  std::vector<std::vector<Score>> best(k + 1, std::vector<Score>(n + 1, {kInf, kInf}));
  std::vector<std::vector<size_t>> from(k + 1, std::vector<size_t>(n + 1, 0));
  best[0][0] = {0, 0};
  for (size_t j = 1; j <= k; ++j) {
    for (size_t i = j; i + (k - j) <= n; ++i) {
      if (j == k && i != n) continue;
      for (size_t a = j - 1; a < i; ++a) {
        if (best[j - 1][a].first == kInf || !fits(j - 1, a, i)) continue;
        double c = part_cost(j - 1, a, i);
        Score s{std::max(best[j - 1][a].first, c), best[j - 1][a].second + c * c};
        if (s < best[j][i]) best[j][i] = s, from[j][i] = a;
      }
    }
  }
  if (best[k][n].first == kInf) {
    double need = 0;
    for (size_t i = 0; i < n; ++i) need = std::max(need, in.bytes.empty() ? 0 : in.bytes[i]);
    throw Error("[mpmd] balance: no split of " + std::to_string(n) + " blocks into " +
                std::to_string(k) + " stages fits the memory caps (the largest block alone " +
                "needs " + std::to_string(need) + ", first extra " +
                std::to_string(in.first_bytes) + ", last extra " + std::to_string(in.last_bytes) +
                ")");
  }
  Balance out;
  out.ranges.resize(k), out.cost.resize(k), out.bytes.resize(k);
  for (size_t j = k, i = n; j > 0; i = from[j][i], --j) {
    size_t a = from[j][i];
    out.ranges[j - 1] = {int64_t(a), int64_t(i) - 1};
    out.cost[j - 1] = part_cost(j - 1, a, i);
    out.bytes[j - 1] = part_bytes(j - 1, a, i);
  }
  out.max_cost = best[k][n].first;
  return out;
}

}  // namespace hp::mpmd
