// Compiling a Graph into a Program: dead-code elimination, view aliasing, liveness, and a
// greedy best-fit offset assignment (largest first) of intermediates into one arena.
#include "hp/runtime/program.hpp"

#include <algorithm>
#include <sstream>

#include "hp/ir/op_def.hpp"

namespace hp::runtime {

using ir::NodeId;
using ir::ValueId;

namespace {
size_t align64(size_t b) {
  return (b + 63) / 64 * 64;
}
size_t value_bytes(const ir::Graph& g, ValueId v) {
  const auto& t = g.value(v).type;
  return byte_count(t.shape, dtype_size(t.dtype));
}
}  // namespace

size_t scratch_bytes(const Program& p, int threads, const Backend& backend) {
  size_t most = 0;
  std::vector<ir::TensorType> in;
  for (const Instr& ins : p.instrs) {
    if (ins.kind != InstrKind::kCompute) continue;
    const ir::Node& n = p.graph->node(ins.node);
    const Kernel* k = n.def->view ? nullptr : backend.kernel(n.def->id);
    if (!k || !k->scratch) continue;
    in.clear();
    for (ValueId v : n.inputs) in.push_back(p.graph->value(v).type);
    most = std::max(most, k->scratch(in, n.attrs, threads));
  }
  return most;
}

size_t pack_lifetimes(const std::vector<Lifetime>& lives, std::vector<size_t>& offsets) {
  std::vector<size_t> idx(lives.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t x, size_t y) { return lives[x].bytes > lives[y].bytes; });
  offsets.assign(lives.size(), 0);
  size_t top = 0;
  std::vector<size_t> placed;
  for (size_t i : idx) {
    const Lifetime& s = lives[i];
    std::vector<std::pair<size_t, size_t>> busy;  // [offset, end) of overlapping placed buffers
    for (size_t j : placed)
      if (lives[j].begin <= s.end && s.begin <= lives[j].end)
        busy.push_back({offsets[j], offsets[j] + lives[j].bytes});
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (auto& [lo, hi] : busy) {
      if (off + s.bytes <= lo) break;
      off = std::max(off, hi);
    }
    offsets[i] = off;
    top = std::max(top, off + s.bytes);
    placed.push_back(i);
  }
  return top;
}

Program compile(const ir::Graph& g, const std::vector<ValueId>& outputs) {
  Program p;
  p.graph = &g;
  p.outputs = outputs;
  const size_t nv = g.values().size();

  // Needed nodes, by reverse reachability from the outputs.
  std::vector<bool> need_v(nv, false);
  for (ValueId o : outputs) {
    HP_CHECK(o >= 0 && size_t(o) < nv, "[compile] output %", o, " out of range");
    need_v[size_t(o)] = true;
  }
  std::vector<NodeId> order;
  for (size_t ni = g.nodes().size(); ni-- > 0;) {
    const auto& n = g.node(NodeId(ni));
    bool need = false;
    for (ValueId o : n.outputs) need = need || need_v[size_t(o)];
    if (!need) continue;
    order.push_back(NodeId(ni));
    for (ValueId v : n.inputs) need_v[size_t(v)] = true;
  }
  std::reverse(order.begin(), order.end());
  for (ValueId v : g.sources())
    if (need_v[size_t(v)]) p.sources.push_back(v);

  // Views alias their input's root buffer.
  p.root.resize(nv);
  for (size_t v = 0; v < nv; ++v) p.root[v] = ValueId(v);
  for (NodeId ni : order) {
    const auto& n = g.node(ni);
    if (n.def->view) p.root[size_t(n.outputs[0])] = p.root[size_t(n.inputs[0])];
  }

  // Liveness per root: defined at its producer's position, dead after its last reader.
  const int kNever = -1;
  std::vector<int> def(nv, kNever), last(nv, kNever);
  std::vector<bool> persistent(nv, false);
  for (ValueId o : outputs) persistent[size_t(p.root[size_t(o)])] = true;
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const auto& n = g.node(order[pos]);
    for (ValueId v : n.inputs) last[size_t(p.root[size_t(v)])] = int(pos);
    for (ValueId o : n.outputs) {
      ValueId r = p.root[size_t(o)];
      if (r == o) def[size_t(o)] = int(pos);
      last[size_t(r)] = std::max(last[size_t(r)], int(pos));
    }
  }

  std::vector<ValueId> pooled;  // intermediates sharing the arena, with their lifetimes
  std::vector<Lifetime> lives;
  for (size_t v = 0; v < nv; ++v) {
    if (def[v] == kNever || p.root[v] != ValueId(v)) continue;
    if (persistent[v]) {
      p.output_bytes += align64(value_bytes(g, ValueId(v)));
      continue;
    }
    pooled.push_back(ValueId(v));
    lives.push_back({align64(value_bytes(g, ValueId(v))), def[v], last[v]});
    p.naive_bytes += lives.back().bytes;
  }
  std::vector<size_t> offsets;
  p.arena_bytes = pack_lifetimes(lives, offsets);
  p.offset.assign(nv, -1);
  for (size_t i = 0; i < pooled.size(); ++i) p.offset[size_t(pooled[i])] = int64_t(offsets[i]);

  // Instructions: allocs before the compute that defines them, frees after the last reader.
  std::vector<std::vector<ValueId>> frees(order.size());
  for (size_t i = 0; i < pooled.size(); ++i) frees[size_t(lives[i].end)].push_back(pooled[i]);
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const auto& n = g.node(order[pos]);
    for (ValueId o : n.outputs)
      if (p.offset[size_t(o)] >= 0) p.instrs.push_back({InstrKind::kAlloc, -1, o});
    p.instrs.push_back({InstrKind::kCompute, order[pos], -1});
    p.flops += ir::node_cost(g, n).flops;
    for (ValueId v : frees[pos]) p.instrs.push_back({InstrKind::kFree, -1, v});
  }
  return p;
}

std::string Program::str() const {
  std::ostringstream os;
  for (const Instr& in : instrs) {
    switch (in.kind) {
      case InstrKind::kAlloc:
        os << "  alloc %" << in.value << " @" << offset[size_t(in.value)] << " "
           << ir::type_str(graph->value(in.value).type) << "\n";
        break;
      case InstrKind::kFree:
        os << "  free  %" << in.value << "\n";
        break;
      case InstrKind::kPrefetch:
        os << "  prefetch %" << in.value << "\n";
        break;
      case InstrKind::kEvict:
        os << "  evict %" << in.value << "\n";
        break;
      case InstrKind::kWait:
        os << "  wait  %" << in.value << "\n";
        break;
      case InstrKind::kCompute: {
        const auto& n = graph->node(in.node);
        os << "  " << n.def->name << "(";
        for (size_t k = 0; k < n.inputs.size(); ++k) os << (k ? ", %" : "%") << n.inputs[k];
        os << ") ->";
        for (ValueId o : n.outputs) os << " %" << o;
        if (!n.scope.empty()) os << "  # " << n.scope;
        os << "\n";
      }
    }
  }
  os << "arena " << arena_bytes << " bytes (without reuse " << naive_bytes << "), outputs "
     << output_bytes << " bytes, " << flops << " flops\n";
  return os.str();
}

}  // namespace hp::runtime
