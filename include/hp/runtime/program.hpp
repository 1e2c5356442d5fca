// Program: one rank's explicit instruction list (compute, alloc, free) made from a Graph, with a
// static memory plan (an offset in one arena for every intermediate value).
// Not an executor (executor.hpp runs it) and not a scheduler: instruction order is graph order.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "hp/ir/graph.hpp"
#include "hp/runtime/backend.hpp"

namespace hp::runtime {

enum class InstrKind : uint8_t {
  kCompute,  // run node `node`
  kAlloc,    // `value` becomes live (its arena slot is reserved from here)
  kFree,     // `value` is dead after this point
  // Offload plans (hp/memory/planner.hpp) only; a MoveHandler carries them out:
  kPrefetch,  // start copying `value` from its home tier into a new device buffer
  kEvict,     // start writing `value` back to its home tier (dropped at once when clean)
  kWait,      // block, with a timeout, until the transfer of `value` has finished
};

struct Instr {
  InstrKind kind;
  ir::NodeId node = -1;
  ir::ValueId value = -1;
};

struct Program {
  const ir::Graph* graph = nullptr;
  std::vector<Instr> instrs;
  std::vector<ir::ValueId> outputs;  // kept after the step in buffers of their own
  std::vector<ir::ValueId> sources;  // read from outside: bind before running
  // Per value id: byte offset in the arena, -1 when it has no slot (source, output, view).
  std::vector<int64_t> offset;
  // Per value id: the value whose buffer it aliases (views), else itself.
  std::vector<ir::ValueId> root;
  size_t arena_bytes = 0;   // the planned peak of intermediate values
  size_t output_bytes = 0;  // bytes of the outputs' own buffers
  size_t naive_bytes = 0;   // what the intermediates would take without reuse
  double flops = 0;         // total of the computed nodes' costs
  // Offload plans: no arena and no output buffers; the Executor's MoveHandler places every
  // buffer at run time (kAlloc, kPrefetch) and a node may be computed twice (recomputation).
  bool placed_at_run_time = false;

  // One line per instruction plus the memory summary.
  std::string str() const;
};

// The largest workspace any computed node's kernel on `backend` allocates for itself on a team of
// `threads` (Kernel::scratch): one kernel runs at a time, so this is what a device budget must
// keep free besides the program's tensors.
size_t scratch_bytes(const Program& p, int threads, const Backend& backend = default_backend());

// A buffer's size and the instructions it is live over (both ends included).
struct Lifetime {
  size_t bytes = 0;
  int64_t begin = 0, end = 0;
};
// Offsets in one arena for buffers whose lifetimes may overlap: largest first, each at the lowest
// offset clear of every placed buffer it overlaps in time. Returns the arena's size; `offsets`
// gets one offset per lifetime.
size_t pack_lifetimes(const std::vector<Lifetime>& lives, std::vector<size_t>& offsets);

// Compiles the nodes that `outputs` depend on (dead code is dropped) into a Program with
// liveness-based buffer reuse (pack_lifetimes). Values are 64-byte aligned in the arena.
Program compile(const ir::Graph& g, const std::vector<ir::ValueId>& outputs);

}  // namespace hp::runtime
