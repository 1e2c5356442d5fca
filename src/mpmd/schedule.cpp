// Actions, chunk graphs and schedules: names, printing, placements, and the pass that turns
// per-rank compute orders into full schedules with matched sends and receives.
// Not the generators' ordering logic (generators.cpp) nor the checks (verify.cpp).
#include <algorithm>
#include <map>
#include <sstream>

#include "hp/core/error.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

std::string kind_name(ActionKind k) {
  switch (k) {
    case ActionKind::kF:
      return "F";
    case ActionKind::kB:
      return "B";
    case ActionKind::kW:
      return "W";
    case ActionKind::kBW:
      return "BW";
    case ActionKind::kSend:
      return "SEND";
    case ActionKind::kRecv:
      return "RECV";
    case ActionKind::kOpt:
      return "OPT";
    case ActionKind::kOffload:
      return "OFFLOAD";
    case ActionKind::kReload:
      return "RELOAD";
  }
  return "?";
}

std::string Action::str() const {
  std::ostringstream os;
  if (kind == ActionKind::kOpt) return "OPT";
  if (is_compute(kind)) {
    os << kind_name(kind) << " c" << chunk << " m" << microbatch;
    return os.str();
  }
  bool send = kind == ActionKind::kSend;
  int from = send ? chunk : peer_chunk, to = send ? peer_chunk : chunk;
  os << kind_name(kind) << (grad ? " grad c" : " act c") << from << "->c" << to << " m"
     << microbatch << (send ? " to r" : " from r") << peer;
  return os.str();
}

std::vector<std::vector<int>> ChunkGraph::succs() const {
  std::vector<std::vector<int>> out(rank_of.size());
  for (int c = 0; c < chunks(); ++c)
    for (int d : preds[size_t(c)]) out[size_t(d)].push_back(c);
  return out;
}

std::vector<int> ChunkGraph::chunks_on(int rank) const {
  std::vector<int> out;
  for (int c = 0; c < chunks(); ++c)
    if (rank_of[size_t(c)] == rank) out.push_back(c);
  return out;
}

void ChunkGraph::check() const {
  HP_CHECK(ranks >= 1, "[mpmd] a chunk graph needs at least one rank, got ", ranks);
  HP_CHECK(!rank_of.empty() && preds.size() == rank_of.size(),
           "[mpmd] chunk graph: ", rank_of.size(), " placements for ", preds.size(), " chunks");
  std::vector<int> count(size_t(ranks), 0);
  for (int c = 0; c < chunks(); ++c) {
    int r = rank_of[size_t(c)];
    HP_CHECK(r >= 0 && r < ranks, "[mpmd] chunk c", c, " on rank ", r, ", outside 0..", ranks - 1);
    ++count[size_t(r)];
    for (int d : preds[size_t(c)])
      HP_CHECK(d >= 0 && d < c, "[mpmd] chunk c", c, " depends on c", d,
               ": chunk ids must be a topological order");
  }
  for (int r = 0; r < ranks; ++r)
    HP_CHECK(count[size_t(r)] > 0, "[mpmd] rank ", r, " holds no chunk");
}

std::string ChunkGraph::str() const {
  std::ostringstream os;
  for (int c = 0; c < chunks(); ++c) {
    os << (c ? ", " : "") << "c" << c << "@r" << rank_of[size_t(c)];
    bool chain = preds[size_t(c)].size() == 1 && preds[size_t(c)][0] == c - 1;
    if (!chain && !(c == 0 && preds[0].empty())) {
      os << "<-{";
      for (size_t i = 0; i < preds[size_t(c)].size(); ++i)
        os << (i ? "," : "") << "c" << preds[size_t(c)][i];
      os << "}";
    }
  }
  return os.str();
}

ChunkGraph placed_chain(std::vector<int> placement) {
  ChunkGraph g;
  g.ranks = placement.empty() ? 1 : *std::max_element(placement.begin(), placement.end()) + 1;
  g.rank_of = std::move(placement);
  g.preds.resize(g.rank_of.size());
  for (size_t c = 1; c < g.rank_of.size(); ++c) g.preds[c] = {int(c) - 1};
  g.check();
  return g;
}

ChunkGraph chain_graph(int ranks, int v) {
  HP_CHECK(ranks >= 1 && v >= 1, "[mpmd] chain of ", ranks, " ranks x ", v, " chunks");
  std::vector<int> p(size_t(ranks * v));
  for (int c = 0; c < ranks * v; ++c) p[size_t(c)] = c % ranks;
  return placed_chain(std::move(p));
}

ChunkGraph v_graph(int ranks) {
  HP_CHECK(ranks >= 1, "[mpmd] V placement of ", ranks, " ranks");
  std::vector<int> p(size_t(2 * ranks));
  for (int c = 0; c < 2 * ranks; ++c) p[size_t(c)] = c < ranks ? c : 2 * ranks - 1 - c;
  return placed_chain(std::move(p));
}

std::string schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::kGpipe:
      return "gpipe";
    case ScheduleKind::k1F1B:
      return "1f1b";
    case ScheduleKind::kInterleaved:
      return "interleaved";
    case ScheduleKind::kZbH1:
      return "zb-h1";
    case ScheduleKind::kZbV:
      return "zbv";
    case ScheduleKind::kAuto:
      return "auto";
  }
  return "?";
}

ScheduleKind parse_schedule_kind(const std::string& s) {
  for (auto k : {ScheduleKind::kGpipe, ScheduleKind::k1F1B, ScheduleKind::kInterleaved,
                 ScheduleKind::kZbH1, ScheduleKind::kZbV, ScheduleKind::kAuto})
    if (s == schedule_name(k)) return k;
  throw Error("[mpmd] unknown schedule '" + s +
              "' (expected one of: gpipe, 1f1b, interleaved, zb-h1, zbv, auto)");
}

std::string Schedule::str() const {
  std::ostringstream os;
  for (size_t r = 0; r < actions.size(); ++r) {
    os << "r" << r << ":";
    for (size_t i = 0; i < actions[r].size(); ++i) os << (i ? " | " : " ") << actions[r][i].str();
    os << "\n";
  }
  return os.str();
}

std::string Schedule::compact() const {
  std::ostringstream os;
  for (size_t r = 0; r < actions.size(); ++r) {
    os << "r" << r << ":";
    for (const auto& a : actions[r]) {
      if (!is_compute(a.kind)) continue;
      os << " " << kind_name(a.kind);
      if (a.kind != ActionKind::kOpt) os << a.chunk << "." << a.microbatch;
    }
    os << "\n";
  }
  return os.str();
}

namespace {

// A message's identity: (producer chunk, consumer chunk, micro-batch, gradient?).
using MsgKey = std::tuple<int, int, int, bool>;

// The messages a compute action receives (before it) or sends (after it), as RECV / SEND actions.
std::vector<Action> messages(const ChunkGraph& g, const std::vector<std::vector<int>>& succs,
                             const Action& a, bool incoming) {
  std::vector<Action> out;
  int r = g.rank_of[size_t(a.chunk)];
  bool fwd = a.kind == ActionKind::kF;
  bool bwd = a.kind == ActionKind::kB || a.kind == ActionKind::kBW;
  if (!fwd && !bwd) return out;
  // Forward: receives from preds, sends to succs; backward: receives from succs, sends to preds.
  const auto& others = (fwd == incoming) ? g.preds[size_t(a.chunk)] : succs[size_t(a.chunk)];
  for (int o : others) {
    int peer = g.rank_of[size_t(o)];
    if (peer == r) continue;
    Action m;
    m.kind = incoming ? ActionKind::kRecv : ActionKind::kSend;
    m.chunk = a.chunk;
    m.microbatch = a.microbatch;
    m.peer = peer;
    m.peer_chunk = o;
    m.grad = bwd;
    out.push_back(m);
  }
  return out;
}

MsgKey send_key(const Action& s) {
  return {s.chunk, s.peer_chunk, s.microbatch, s.grad};
}
MsgKey recv_key(const Action& r) {
  return {r.peer_chunk, r.chunk, r.microbatch, r.grad};
}

}  // namespace

Schedule with_communication(std::string name, const ChunkGraph& g, int microbatches,
                            bool split_backward, std::vector<std::vector<Action>> compute) {
  g.check();
  HP_CHECK(int(compute.size()) == g.ranks, "[mpmd] ", compute.size(), " compute orders for ",
           g.ranks, " ranks");
  auto succs = g.succs();
  // Sends right after their producer; the order of sends per (from, to) pair fixes the receives'.
  std::vector<std::vector<Action>> out(size_t(g.ranks));
  std::map<std::pair<int, int>, std::vector<MsgKey>> sent;  // (from, to) -> messages in order
  for (int r = 0; r < g.ranks; ++r) {
    for (const auto& a : compute[size_t(r)]) {
      out[size_t(r)].push_back(a);
      for (const auto& s : messages(g, succs, a, false)) {
        out[size_t(r)].push_back(s);
        sent[{r, s.peer}].push_back(send_key(s));
      }
    }
  }
  // Where each message is consumed on its receiving rank (index in the compute order).
  std::map<MsgKey, std::pair<size_t, Action>> consumer;
  for (int r = 0; r < g.ranks; ++r)
    for (size_t i = 0; i < compute[size_t(r)].size(); ++i)
      for (const auto& m : messages(g, succs, compute[size_t(r)][i], true))
        consumer[recv_key(m)] = {i, m};
  // Receive k of a pair goes before the earliest consumer of any message k' >= k of that pair.
  std::vector<std::vector<std::vector<Action>>> before(size_t(g.ranks));
  for (int r = 0; r < g.ranks; ++r) before[size_t(r)].resize(compute[size_t(r)].size());
  for (const auto& [pair, keys] : sent) {
    size_t at = SIZE_MAX;
    std::vector<std::pair<size_t, Action>> placed(keys.size());
    for (size_t k = keys.size(); k-- > 0;) {
      auto it = consumer.find(keys[k]);
      HP_CHECK(it != consumer.end(), "[mpmd] ", name, ": rank ", pair.first, " sends ",
               std::get<3>(keys[k]) ? "grad" : "act", " c", std::get<0>(keys[k]), "->c",
               std::get<1>(keys[k]), " m", std::get<2>(keys[k]), " that rank ", pair.second,
               " never consumes");
      at = std::min(at, it->second.first);
      placed[k] = {at, it->second.second};
    }
    for (const auto& [i, recv] : placed) before[size_t(pair.second)][i].push_back(recv);
  }
  Schedule s;
  s.name = std::move(name);
  s.graph = g;
  s.microbatches = microbatches;
  s.split_backward = split_backward;
  s.actions.resize(size_t(g.ranks));
  for (int r = 0; r < g.ranks; ++r) {
    size_t ci = 0;
    for (const auto& a : out[size_t(r)]) {
      if (is_compute(a.kind) && ci < before[size_t(r)].size()) {
        for (const auto& recv : before[size_t(r)][ci]) s.actions[size_t(r)].push_back(recv);
        ++ci;
      }
      s.actions[size_t(r)].push_back(a);
    }
    Action opt;
    opt.kind = ActionKind::kOpt;
    s.actions[size_t(r)].push_back(opt);
  }
  return s;
}

}  // namespace hp::mpmd
