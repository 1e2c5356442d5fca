// Blocking replay of a schedule, shared by the verifier (deadlock search) and the simulator
// (timing): every rank runs its list in order; a SEND posts its message and goes on, a RECV waits
// for the matching SEND (the k-th receive from a peer takes that peer's k-th send to this rank).
// Not a check of matching or dependencies: verify.cpp does those before replaying.
#pragma once
#include <functional>
#include <vector>

#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd::detail {

struct Timed {
  double start = 0, end = 0;
};

struct Transfer {
  int from = 0, to = 0;
  size_t send_index = 0, recv_index = 0;  // positions in the two ranks' lists
  double start = 0, end = 0;              // on the link (the from->to direction)
};

struct Replay {
  bool complete = false;
  std::vector<size_t> stopped_at;         // per rank: index it blocks at (== size: finished)
  std::vector<std::vector<Timed>> times;  // per rank, per action executed
  std::vector<Transfer> transfers;
};

// duration(rank, action): compute time; transfer(from, to, send): link time of a message. Each
// direction of each pair carries one message at a time, in send order.
Replay replay(const Schedule& s, const std::function<double(int, const Action&)>& duration,
              const std::function<double(int, int, const Action&)>& transfer);

}  // namespace hp::mpmd::detail
