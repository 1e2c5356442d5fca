// Pipeline schedules as data: per-rank lists of actions (forward, input-gradient, weight-gradient,
// fused backward, send, receive, optimizer step) over a graph of model chunks placed on ranks, and
// the generators gpipe, 1f1b, interleaved, zb-h1 and zbv.
// Not a runtime: a rank of a schedule is a stage group (one row that the runtime replicates across
// the group's devices); nothing here knows tensors or communicators.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hp::mpmd {

// F: forward of a chunk; B: input gradient; W: weight gradient; BW: B and W fused; SEND / RECV:
// an activation (forward) or gradient (backward) crossing ranks; OPT: the optimizer step;
// OFFLOAD / RELOAD: what a micro-batch's forward keeps for its backward moves to the host tier
// and back (plan_activation_offload), local to the rank like a compute action.
enum class ActionKind { kF, kB, kW, kBW, kSend, kRecv, kOpt, kOffload, kReload };
std::string kind_name(ActionKind k);

struct Action {
  ActionKind kind = ActionKind::kF;
  int chunk = -1;       // the local chunk this action computes for (SEND: producer, RECV: consumer)
  int microbatch = -1;  // -1 for OPT
  int peer = -1;        // SEND / RECV: the other rank
  int peer_chunk = -1;  // SEND: consuming chunk on peer; RECV: producing chunk on peer
  bool grad = false;    // SEND / RECV: a gradient (backward) rather than an activation
  // "F c1 m0", "B c1 m0", "SEND act c0->c1 m0 to r1", "RECV grad c2->c1 m3 from r2", "OPT".
  std::string str() const;
  bool operator==(const Action& o) const = default;
};

// Local to the rank (no message): compute, OPT and the offload moves.
inline bool is_compute(ActionKind k) {
  return k != ActionKind::kSend && k != ActionKind::kRecv;
}
inline bool is_move(ActionKind k) {
  return k == ActionKind::kOffload || k == ActionKind::kReload;
}

// The sub-programs of one step and where they run: chunk c runs on rank rank_of[c] and needs the
// forward outputs of preds[c] (a chain: preds[c] = {c - 1}). Chunk ids are a topological order.
struct ChunkGraph {
  int ranks = 1;
  std::vector<int> rank_of;
  std::vector<std::vector<int>> preds;

  int chunks() const { return int(rank_of.size()); }
  std::vector<std::vector<int>> succs() const;
  // Chunks on `rank` in id order.
  std::vector<int> chunks_on(int rank) const;
  // Throws unless every rank holds a chunk, ranks are in range and preds point backwards.
  void check() const;
  std::string str() const;
};

// A chain of `ranks * v` chunks; chunk c on rank c % ranks (v = 1: one chunk per rank, in order).
ChunkGraph chain_graph(int ranks, int v = 1);
// A chain of `2 * ranks` chunks in a V: rank r holds chunks r and 2 * ranks - 1 - r.
ChunkGraph v_graph(int ranks);
// A chain whose chunk c runs on rank placement[c] (e.g. chunks placed by hand).
ChunkGraph placed_chain(std::vector<int> placement);

enum class ScheduleKind { kGpipe, k1F1B, kInterleaved, kZbH1, kZbV, kAuto };
std::string schedule_name(ScheduleKind k);
// Parses "gpipe", "1f1b", "interleaved", "zb-h1", "zbv", "auto"; throws listing them.
ScheduleKind parse_schedule_kind(const std::string& s);

struct Schedule {
  std::string name;
  ChunkGraph graph;
  int microbatches = 1;
  bool split_backward = false;               // B and W separate (else BW)
  std::vector<std::vector<Action>> actions;  // per rank, in execution order

  // One line per rank: "r0: F c0 m0 | SEND act c0->c1 m0 to r1 | ...".
  std::string str() const;
  // Compute actions only, compactly: "r0: F0.0 F0.1 B0.0 ..." (chunk.microbatch).
  std::string compact() const;
};

// GPipe: every forward, then every backward (fused B+W); activations of all m micro-batches held.
Schedule gpipe(const ChunkGraph& g, int microbatches);
// 1F1B: rank r starts at most (ranks - r) micro-batches before its first backward, then alternates.
Schedule one_f_one_b(const ChunkGraph& g, int microbatches);
// Interleaved 1F1B over v chunks per rank (Megatron's virtual pipeline), any micro-batch count.
Schedule interleaved(int ranks, int v, int microbatches);
// ZB-H1: 1F1B's memory, backward split in B and W, W filling what would be bubbles.
Schedule zb_h1(const ChunkGraph& g, int microbatches);
// ZB-V: two chunks per rank in a V (rank r holds r and 2p-1-r), B and W split.
Schedule zbv(int ranks, int microbatches);
// The named schedule's policy on any placement g (e.g. chunks placed by hand), under unit costs.
Schedule schedule_on(ScheduleKind kind, const ChunkGraph& g, int microbatches);
// The named generator on its canonical placement: p ranks, v chunks per rank where it applies.
Schedule make_schedule(ScheduleKind kind, int ranks, int microbatches, int v = 2);

// Inserts SEND and RECV actions into per-rank compute orders: each send right after the action
// that produces its data, receives ordered per pair as the sends are, each before its consumer.
// Appends one OPT per rank. `compute` holds F/B/W/BW actions only.
Schedule with_communication(std::string name, const ChunkGraph& g, int microbatches,
                            bool split_backward, std::vector<std::vector<Action>> compute);

}  // namespace hp::mpmd
