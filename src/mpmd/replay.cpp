// Blocking replay of a schedule (see replay.hpp): ranks advance in turn until all finish or none
// can move.
// Not a priority simulation: each rank's order is fixed by the schedule.
#include "mpmd/replay.hpp"

#include <algorithm>
#include <map>

namespace hp::mpmd::detail {

namespace {

struct Pair {
  std::vector<size_t> transfer;  // indices into Replay::transfers, in send order
  std::vector<double> arrival;   // when each message has crossed the link
  double link_free = 0;
  size_t received = 0;
};

}  // namespace

Replay replay(const Schedule& s, const std::function<double(int, const Action&)>& duration,
              const std::function<double(int, int, const Action&)>& transfer) {
  size_t n = s.actions.size();
  Replay out;
  out.stopped_at.assign(n, 0);
  out.times.resize(n);
  std::vector<double> clock(n, 0.0);
  std::map<std::pair<int, int>, Pair> pairs;
  bool moved = true;
  while (moved) {
    moved = false;
    for (size_t r = 0; r < n; ++r) {
      auto& pc = out.stopped_at[r];
      while (pc < s.actions[r].size()) {
        const Action& a = s.actions[r][pc];
        Timed t{clock[r], clock[r]};
        if (a.kind == ActionKind::kRecv) {
          Pair& p = pairs[{a.peer, int(r)}];
          if (p.received >= p.arrival.size()) break;  // its send has not happened yet
          t.end = std::max(clock[r], p.arrival[p.received]);
          out.transfers[p.transfer[p.received]].recv_index = pc;
          ++p.received;
        } else if (a.kind == ActionKind::kSend) {
          Pair& p = pairs[{int(r), a.peer}];
          double start = std::max(clock[r], p.link_free);
          p.link_free = start + transfer(int(r), a.peer, a);
          p.arrival.push_back(p.link_free);
          p.transfer.push_back(out.transfers.size());
          out.transfers.push_back({int(r), a.peer, pc, 0, start, p.link_free});
        } else {
          t.end = clock[r] + duration(int(r), a);
        }
        out.times[r].push_back(t);
        clock[r] = t.end;
        ++pc;
        moved = true;
      }
    }
  }
  out.complete = true;
  for (size_t r = 0; r < n; ++r)
    if (out.stopped_at[r] < s.actions[r].size()) out.complete = false;
  return out;
}

}  // namespace hp::mpmd::detail
