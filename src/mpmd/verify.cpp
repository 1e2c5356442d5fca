// The schedule verifier (see verify.hpp). Checks run from the cheapest to the most global, and each
// failure names ranks, list positions (#i) and actions.
// Not a repair tool: it reports the first failure and stops.
#include "hp/mpmd/verify.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "hp/core/error.hpp"
#include "mpmd/replay.hpp"

namespace hp::mpmd {

namespace {

using Key = std::tuple<int, int, int, int, bool>;  // kind, chunk, micro-batch, peer chunk, grad
using Pos = std::pair<int, size_t>;                // rank, index

Key key_of(const Action& a) {
  if (is_compute(a.kind)) return {int(a.kind), a.chunk, a.microbatch, -1, false};
  return {int(a.kind), a.chunk, a.microbatch, a.peer_chunk, a.grad};
}
Key compute_key(ActionKind k, int chunk, int mb) {
  return {int(k), chunk, mb, -1, false};
}
Key recv_key(int from_chunk, int to_chunk, int mb, bool grad) {
  return {int(ActionKind::kRecv), to_chunk, mb, from_chunk, grad};
}
Key send_key(int from_chunk, int to_chunk, int mb, bool grad) {
  return {int(ActionKind::kSend), from_chunk, mb, to_chunk, grad};
}

std::string at(const Schedule& s, Pos p) {
  std::ostringstream os;
  os << "r" << p.first << " #" << p.second << " " << s.actions[size_t(p.first)][p.second].str();
  return os.str();
}

[[noreturn]] void fail(const Schedule& s, const std::string& what) {
  throw Error("[mpmd] schedule '" + s.name + "': " + what);
}

bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

void check_action(const Schedule& s, const std::vector<std::vector<int>>& succs, Pos p) {
  const ChunkGraph& g = s.graph;
  const Action& a = s.actions[size_t(p.first)][p.second];
  if (a.kind == ActionKind::kOpt) return;
  if (a.chunk < 0 || a.chunk >= g.chunks() || a.microbatch < 0 || a.microbatch >= s.microbatches)
    fail(s, at(s, p) + ": chunk or micro-batch out of range (" + std::to_string(g.chunks()) +
                " chunks, " + std::to_string(s.microbatches) + " micro-batches)");
  if (g.rank_of[size_t(a.chunk)] != p.first)
    fail(s, at(s, p) + ": chunk c" + std::to_string(a.chunk) + " runs on rank " +
                std::to_string(g.rank_of[size_t(a.chunk)]));
  bool split_kind = a.kind == ActionKind::kB || a.kind == ActionKind::kW;
  if ((a.kind == ActionKind::kBW && s.split_backward) || (split_kind && !s.split_backward))
    fail(s, at(s, p) + (s.split_backward ? ": a fused backward in a schedule with B and W split"
                                         : ": a split backward in a schedule with fused BW"));
  if (is_compute(a.kind)) return;
  bool ok = a.peer_chunk >= 0 && a.peer_chunk < g.chunks() &&
            a.peer == g.rank_of[size_t(a.peer_chunk)] && a.peer != p.first;
  // Activations flow to successors, gradients to predecessors.
  bool to_succ = (a.kind == ActionKind::kSend) != a.grad;
  if (ok) ok = contains(to_succ ? succs[size_t(a.chunk)] : g.preds[size_t(a.chunk)], a.peer_chunk);
  if (!ok) fail(s, at(s, p) + ": no such edge between ranks in the chunk graph");
}

// Every action of the step once, messages included; returns where each one is.
std::map<Key, Pos> check_once(const Schedule& s) {
  const ChunkGraph& g = s.graph;
  auto succs = g.succs();
  std::map<Key, Pos> where;
  for (int r = 0; r < g.ranks; ++r) {
    int opts = 0;
    for (size_t i = 0; i < s.actions[size_t(r)].size(); ++i) {
      check_action(s, succs, {r, i});
      const Action& a = s.actions[size_t(r)][i];
      if (a.kind == ActionKind::kOpt && ++opts > 1) fail(s, at(s, {r, i}) + ": a second OPT");
      if (a.kind == ActionKind::kOpt) continue;
      auto [it, fresh] = where.emplace(key_of(a), Pos{r, i});
      if (!fresh)
        fail(s, a.str() + " appears twice: " + at(s, it->second) + " and #" + std::to_string(i));
    }
  }
  auto need = [&](const Key& k, const std::string& what, int rank) {
    if (!where.count(k))
      fail(s, what + " is missing: rank " + std::to_string(rank) + " never runs it");
  };
  // An offloaded micro-batch comes back: each OFFLOAD has its RELOAD and each RELOAD its OFFLOAD.
  for (const auto& [k, p] : where) {
    const ActionKind kind = ActionKind(std::get<0>(k));
    if (!is_move(kind)) continue;
    Action other = s.actions[size_t(p.first)][p.second];
    other.kind = kind == ActionKind::kOffload ? ActionKind::kReload : ActionKind::kOffload;
    if (!where.count(key_of(other)))
      fail(s, other.str() + " is missing: " + at(s, p) + " has no counterpart");
  }
  for (int c = 0; c < g.chunks(); ++c) {
    int r = g.rank_of[size_t(c)];
    for (int mb = 0; mb < s.microbatches; ++mb) {
      Action a;
      a.chunk = c, a.microbatch = mb;
      std::vector<ActionKind> kinds = {ActionKind::kF};
      if (s.split_backward)
        kinds.insert(kinds.end(), {ActionKind::kB, ActionKind::kW});
      else
        kinds.push_back(ActionKind::kBW);
      for (auto k : kinds) a.kind = k, need(key_of(a), a.str(), r);
      for (int t : succs[size_t(c)]) {
        int rt = g.rank_of[size_t(t)];
        if (rt == r) continue;
        std::string msg =
            " c" + std::to_string(c) + "->c" + std::to_string(t) + " m" + std::to_string(mb);
        need(send_key(c, t, mb, false), "SEND act" + msg, r);
        need(recv_key(c, t, mb, false), "RECV act" + msg, rt);
        std::string back =
            " c" + std::to_string(t) + "->c" + std::to_string(c) + " m" + std::to_string(mb);
        need(send_key(t, c, mb, true), "SEND grad" + back, rt);
        need(recv_key(t, c, mb, true), "RECV grad" + back, r);
      }
    }
  }
  return where;
}

// The k-th send from a to b and the k-th receive on b from a carry the same message.
void check_pair_order(const Schedule& s) {
  std::map<std::pair<int, int>, std::vector<Pos>> sends, recvs;
  for (int r = 0; r < s.graph.ranks; ++r) {
    for (size_t i = 0; i < s.actions[size_t(r)].size(); ++i) {
      const Action& a = s.actions[size_t(r)][i];
      if (a.kind == ActionKind::kSend) sends[{r, a.peer}].push_back({r, i});
      if (a.kind == ActionKind::kRecv) recvs[{a.peer, r}].push_back({r, i});
    }
  }
  for (const auto& [pair, sp] : sends) {
    const auto& rp = recvs[pair];
    for (size_t k = 0; k < std::min(sp.size(), rp.size()); ++k) {
      const Action& a = s.actions[size_t(sp[k].first)][sp[k].second];
      const Action& b = s.actions[size_t(rp[k].first)][rp[k].second];
      if (a.chunk == b.peer_chunk && a.peer_chunk == b.chunk && a.microbatch == b.microbatch &&
          a.grad == b.grad)
        continue;
      fail(s, "sends and receives of r" + std::to_string(pair.first) + "->r" +
                  std::to_string(pair.second) + " are in different orders: message " +
                  std::to_string(k) + " is sent as " + at(s, sp[k]) + " but received as " +
                  at(s, rp[k]));
    }
  }
}

// Where the prerequisite of an action lies, for messages: "at r1 #6" or "nowhere".
std::string where_is(const Schedule& s, const std::map<Key, Pos>& where, const Key& k) {
  auto it = where.find(k);
  return it == where.end() ? "on no rank" : "at " + at(s, it->second);
}

// Each action's inputs come earlier on its own rank: the producing compute or its RECV.
void check_dependencies(const Schedule& s, const std::map<Key, Pos>& where) {
  const ChunkGraph& g = s.graph;
  auto succs = g.succs();
  for (int r = 0; r < g.ranks; ++r) {
    std::set<Key> done;
    size_t backwards = 0,
           needed = g.chunks_on(r).size() * size_t(s.microbatches) * (s.split_backward ? 2 : 1);
    auto require = [&](size_t i, const Key& k, const std::string& what) {
      if (done.count(k)) return;
      fail(s, at(s, {r, i}) + " runs before " + what + ", which is " + where_is(s, where, k));
    };
    const ActionKind bk = s.split_backward ? ActionKind::kB : ActionKind::kBW;
    std::set<std::pair<int, int>> on_host;  // offloaded, not yet reloaded
    for (size_t i = 0; i < s.actions[size_t(r)].size(); ++i) {
      const Action& a = s.actions[size_t(r)][i];
      int c = a.chunk, mb = a.microbatch;
      auto local_or_recv = [&](int other, bool grad) {
        ActionKind k = grad ? bk : ActionKind::kF;
        Key need = g.rank_of[size_t(other)] == r ? compute_key(k, other, mb)
                                                 : recv_key(other, c, mb, grad);
        require(i, need, "its input from c" + std::to_string(other));
      };
      switch (a.kind) {
        case ActionKind::kF:
          for (int d : g.preds[size_t(c)]) local_or_recv(d, false);
          break;
        case ActionKind::kB:
        case ActionKind::kBW:
          require(i, compute_key(ActionKind::kF, c, mb), "its forward");
          if (on_host.count({c, mb}))
            fail(s, at(s, {r, i}) + " runs while its forward's values are on the host: " +
                        "RELOAD c" + std::to_string(c) + " m" + std::to_string(mb) + " is " +
                        where_is(s, where, compute_key(ActionKind::kReload, c, mb)));
          for (int t : succs[size_t(c)]) local_or_recv(t, true);
          ++backwards;
          break;
        case ActionKind::kW:
          require(i, compute_key(ActionKind::kB, c, mb), "its input gradient");
          ++backwards;
          break;
        case ActionKind::kSend:
          require(i, compute_key(a.grad ? bk : ActionKind::kF, c, mb), "the action producing it");
          break;
        case ActionKind::kOpt:
          if (backwards < needed)
            fail(s, at(s, {r, i}) + " runs before all of rank " + std::to_string(r) +
                        "'s gradients: " + std::to_string(needed - backwards) + " still to come");
          break;
        case ActionKind::kOffload:
          require(i, compute_key(ActionKind::kF, c, mb), "its forward");
          if (done.count(compute_key(bk, c, mb)))
            fail(s, at(s, {r, i}) + " runs after its backward, which is " +
                        where_is(s, where, compute_key(bk, c, mb)));
          on_host.insert({c, mb});
          break;
        case ActionKind::kReload:
          require(i, compute_key(ActionKind::kOffload, c, mb), "its OFFLOAD");
          on_host.erase({c, mb});
          break;
        case ActionKind::kRecv:
          break;
      }
      done.insert(key_of(a));
    }
  }
}

// Replays with every rank blocking on its receives; a stuck replay has a cycle of waits.
void check_deadlock(const Schedule& s) {
  auto zero = [](int, const Action&) { return 0.0; };
  auto none = [](int, int, const Action&) { return 0.0; };
  detail::Replay rp = detail::replay(s, zero, none);
  if (rp.complete) return;
  int r = 0;
  while (rp.stopped_at[size_t(r)] >= s.actions[size_t(r)].size()) ++r;
  // Follow "waits for" from a stuck rank until a rank repeats: that loop is the cycle.
  std::vector<int> seen(size_t(s.graph.ranks), -1), path;
  while (seen[size_t(r)] < 0) {
    seen[size_t(r)] = int(path.size());
    path.push_back(r);
    r = s.actions[size_t(r)][rp.stopped_at[size_t(r)]].peer;
  }
  std::ostringstream os;
  os << "deadlock: ranks wait on each other in a cycle:";
  for (size_t k = size_t(seen[size_t(r)]); k < path.size(); ++k) {
    int q = path[k];
    const Action& a = s.actions[size_t(q)][rp.stopped_at[size_t(q)]];
    os << "\n  r" << q << " blocks at #" << rp.stopped_at[size_t(q)] << " " << a.str() << "; r"
       << a.peer << " sends it only after its own #" << rp.stopped_at[size_t(a.peer)] << " "
       << s.actions[size_t(a.peer)][rp.stopped_at[size_t(a.peer)]].str();
  }
  fail(s, os.str());
}

// Activation memory per rank in list order; a rank over its budget fails naming what it holds.
std::vector<double> check_memory(const Schedule& s, const CostModel& costs) {
  std::vector<double> peaks(size_t(s.graph.ranks), 0.0);
  for (int r = 0; r < s.graph.ranks; ++r) {
    double held = 0, budget = costs.memory_budget.empty() ? 0 : costs.memory_budget[size_t(r)];
    std::map<std::pair<int, int>, size_t> live;  // (chunk, mb) -> index of its F
    for (size_t i = 0; i < s.actions[size_t(r)].size(); ++i) {
      const Action& a = s.actions[size_t(r)][i];
      if (!is_compute(a.kind) || a.kind == ActionKind::kOpt) continue;
      const ChunkCost& c = costs.chunks[size_t(a.chunk)];
      if (a.kind == ActionKind::kF) held += c.act_bytes, live[{a.chunk, a.microbatch}] = i;
      if (a.kind == ActionKind::kOffload) held -= c.act_bytes, live.erase({a.chunk, a.microbatch});
      if (a.kind == ActionKind::kReload) held += c.act_bytes, live[{a.chunk, a.microbatch}] = i;
      if (a.kind == ActionKind::kB) held -= c.act_bytes - c.w_bytes;
      if (a.kind == ActionKind::kW || a.kind == ActionKind::kBW) {
        held -= a.kind == ActionKind::kW ? c.w_bytes : c.act_bytes;
        live.erase({a.chunk, a.microbatch});
      }
      peaks[size_t(r)] = std::max(peaks[size_t(r)], held);
      if (budget <= 0 || held <= budget * (1 + 1e-12)) continue;
      std::ostringstream os;  // every digit: the units may be bytes
      os << std::setprecision(15) << "rank " << r << " holds " << held << " of activations after #"
         << i << " " << a.str() << ", over its budget of " << budget << "; live forwards:";
      for (const auto& [cm, fi] : live) os << " #" << fi << " F c" << cm.first << " m" << cm.second;
      fail(s, os.str());
    }
  }
  return peaks;
}

}  // namespace

VerifyReport verify(const Schedule& s, const CostModel& costs) {
  s.graph.check();
  HP_CHECK(s.microbatches >= 1, "[mpmd] schedule '", s.name, "': micro-batches must be >= 1");
  HP_CHECK(s.actions.size() == size_t(s.graph.ranks), "[mpmd] schedule '", s.name, "' has ",
           s.actions.size(), " rank lists for ", s.graph.ranks, " ranks");
  costs.check(s.graph);
  auto where = check_once(s);
  check_pair_order(s);
  check_dependencies(s, where);
  check_deadlock(s);
  VerifyReport rep;
  rep.peak_memory = check_memory(s, costs);
  for (const auto& l : s.actions) rep.actions += l.size();
  return rep;
}

VerifyReport verify(const Schedule& s) {
  s.graph.check();
  return verify(s, CostModel::uniform(s.graph));
}

}  // namespace hp::mpmd
