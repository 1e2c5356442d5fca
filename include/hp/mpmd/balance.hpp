// Automatic placement of transformer blocks on pipeline stages: contiguous ranges chosen by dynamic
// programming to minimise the largest stage cost, subject to a memory cap per stage, with the
// embeddings' extra on the first stage and the final norm and head on the last.
// Not a cost model: per-block costs and bytes come from the caller (op costs or a profile).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hp::mpmd {

struct BlockRange {
  int64_t first = 0, last = 0;  // inclusive
  int64_t size() const { return last - first + 1; }
  std::string str() const;  // "3" or "0-3"
  bool operator==(const BlockRange& o) const = default;
};

struct BalanceInput {
  std::vector<double> cost;   // per block (e.g. seconds or FLOPs per micro-batch)
  std::vector<double> bytes;  // per block memory (parameters, state, activations); may be empty
  double first_cost = 0, first_bytes = 0;  // embeddings, on the first part
  double last_cost = 0, last_bytes = 0;    // final norm and head, on the last part
  int parts = 1;
  std::vector<double> speed;       // per part: relative throughput (e.g. its devices); empty: 1
  std::vector<double> memory_cap;  // per part; empty or <= 0: unlimited
};

struct Balance {
  std::vector<BlockRange> ranges;  // one per part, in order, covering every block
  std::vector<double> cost;        // per part, divided by its speed, extras included
  std::vector<double> bytes;       // per part, extras included
  double max_cost = 0;
  std::string str() const;  // "0-2 | 3-4 (cost 3, 2.5; max 3)"
};

// Throws when there are fewer blocks than parts, a size or number is invalid, or no split fits
// the memory caps (naming the smallest cap that cannot be met).
Balance balance_blocks(const BalanceInput& in);

}  // namespace hp::mpmd
