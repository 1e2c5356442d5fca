// The static KV offload plan: the programs the engine will compile are traced and compiled here
// to learn their device memory exactly (arenas, outputs, inputs, kernel scratch), then the largest
// number of resident blocks per sequence that fits the budget is searched for.
#include "hp/infer/kv_plan.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "hp/memory/planner.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/program.hpp"

namespace hp::infer {

namespace {

// "12.50 MiB".
std::string bytes_str(size_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / double(1 << 20));
  return buf;
}

// Device bytes of every program the engine may compile (prefill chunks of batch 1, decode of 1 to
// max_batch sequences) with `slots` staged host blocks per sequence, and their largest scratch.
// With fetched blocks (`slots` > 0) or `streamed` weights, the offload planner prefetches each
// layer's staging and those weights for every run and drops them after: a program's arena,
// outputs and what it streams are held only while it runs, so they count as the largest
// smallest budget the planner finds for one of them (`planned`), not as a sum.
struct ProgramBytes {
  size_t held = 0, scratch = 0;
  size_t planned = 0;  // of held: what one run of the streamed programs needs at most
};

ProgramBytes program_bytes(const io::ModelConfig& cfg, const EngineOptions& o, int64_t context,
                           int64_t slots, bool host, const std::set<std::string>& streamed) {
  std::vector<std::pair<int64_t, int64_t>> shapes;  // [B, T]
  const int64_t chunk = std::min(o.prefill_chunk, cfg.max_seq);
  if (chunk <= context) shapes.push_back({1, chunk});
  for (int64_t T = 1; T < chunk && T <= context; T *= 2) shapes.push_back({1, T});  // the rest
  for (int64_t b = 1; b <= o.max_batch; ++b) shapes.push_back({b, 1});
  std::sort(shapes.begin(), shapes.end());
  shapes.erase(std::unique(shapes.begin(), shapes.end()), shapes.end());
  const int64_t max_blocks = nn::kv_max_blocks(cfg, o.block_tokens);
  ProgramBytes out;
  for (auto [B, T] : shapes) {
    nn::InferTraced tr = nn::trace_infer(cfg, B, T, 1, o.block_tokens, host || slots > 0 ? 1 : 0,
                                         slots, slots * o.max_batch);
    runtime::Program p = runtime::compile(*tr.graph, {tr.logits.id});
    out.held += size_t(B * (2 * T + max_blocks)) * 8;  // tokens, positions and block table
    out.scratch = std::max(out.scratch, runtime::scratch_bytes(p, o.threads));
    if (streamed.empty() && slots == 0) {
      out.held += p.arena_bytes + p.output_bytes;
      continue;
    }
    memory::PlanRequest req = streamed_request(tr, cfg, streamed);
    out.planned = std::max(out.planned, memory::plan_offload(p, req).min_budget);
  }
  out.held += out.planned;
  return out;
}

}  // namespace

int64_t block_tokens_for(const io::ModelConfig& cfg) {
  const int64_t row = cfg.n_kv_head * cfg.head_dim * int64_t(sizeof(float));  // a position's keys
  int64_t bt = 16;
  while (bt * row < 4096 && bt < 256) bt += 8;
  return std::min(bt, std::max<int64_t>(8, (cfg.max_seq + 7) / 8 * 8));
}

double KvPlan::overlapped_s(double bw, double rho) const {
  return std::max(decode_device_bytes / bw, (decode_host_bytes + decode_fetch_bytes) * rho / bw);
}

EngineOptions KvPlan::engine(EngineOptions base) const {
  base.pool_blocks = std::max<int64_t>(1, batch * resident);
  base.kv = {};
  if (mode == "resident") return base;
  base.kv.host_blocks = batch * (blocks_per_seq - resident);
  base.kv.resident = resident;
  base.kv.fetch_slots = fetch_slots;
  base.kv.staging_blocks = batch * fetch_slots;
  base.streaming.budget = stream_budget;
  base.streaming.names = std::set<std::string>(streamed_weights.begin(), streamed_weights.end());
  return base;
}

std::string KvPlan::explain(double bw) const {
  auto mib = [](double b) { return bytes_str(size_t(b)); };
  char line[512];
  std::string s;
  std::snprintf(line, sizeof line,
                "kv plan: %s, %lld sequence(s) of %lld positions in blocks of %lld (%s each)\n",
                mode.c_str(), (long long)batch, (long long)context, (long long)block_tokens,
                mib(double(block_bytes)).c_str());
  s += line;
  std::snprintf(
      line, sizeof line,
      "  device: %s of %s budget (weights %s, resident KV %s, programs %s%s, scratch %s); "
      "smallest budget for this mode %s\n",
      mib(double(device_bytes())).c_str(), budget ? mib(double(budget)).c_str() : "an unlimited",
      mib(double(weight_bytes - weight_host_bytes)).c_str(), mib(double(kv_device_bytes)).c_str(),
      mib(double(program_bytes)).c_str(),
      staging_bytes ? (" with a layer's staging of " + mib(double(staging_bytes))).c_str() : "",
      mib(double(scratch_bytes)).c_str(), mib(double(min_budget)).c_str());
  s += line;
  std::snprintf(line, sizeof line,
                "  per layer: blocks [0, %lld) of each sequence resident (%s), [%lld, %lld) %s "
                "(%s)%s\n",
                (long long)resident, mib(double(kv_device_bytes) / double(layers)).c_str(),
                (long long)resident, (long long)blocks_per_seq,
                tier == "disk" ? "on disk (a memory-mapped file)" : "on the host",
                mib(double(kv_host_bytes) / double(layers)).c_str(),
                mode == "fetch"    ? ", fetched into device staging before the layer's attention"
                : mode == "direct" ? ", attended where they live"
                                   : "");
  s += line;
  if (!host_weights.empty()) {
    std::snprintf(line, sizeof line, "  weights on the host: %s in %zu tensors (first: %s)",
                  mib(double(weight_host_bytes)).c_str(), host_weights.size(),
                  host_weights[0].c_str());
    s += line;
    if (streamed_weights.size() < host_weights.size())
      s += detail::cat(", ", host_weights.size() - streamed_weights.size(), " read there");
    if (!streamed_weights.empty())
      s += detail::cat(", ", streamed_weights.size(),
                       " prefetched before their use and dropped after by the offload planner "
                       "within ",
                       mib(double(stream_budget)), " for a program's values and those weights");
    s += "\n";
  }
  std::snprintf(line, sizeof line,
                "  per decode token: device reads %s, host reads %s, fetched %s\n",
                mib(decode_device_bytes).c_str(), mib(decode_host_bytes).c_str(),
                mib(decode_fetch_bytes).c_str());
  s += line;
  std::snprintf(line, sizeof line,
                "  int8 KV (q8_0, %.4f B/element; costed, not built): %lld of the %lld positions "
                "resident%s, decode reads %s per token\n",
                kKvInt8BytesPerElement, (long long)int8_resident_context, (long long)context,
                int8_resident_context >= context && resident < blocks_per_seq
                    ? " (the whole context: no offload needed)"
                    : "",
                mib(int8_decode_device_bytes).c_str());
  s += line;
  if (bw > 0) {
    std::snprintf(
        line, sizeof line,
        "  predicted decode: %.2f ms/token reading %.1f GB/s of shared memory; overlapped over a "
        "link rho=4: %.2f ms, rho=10: %.2f ms\n",
        shared_memory_s(bw) * 1e3, bw / 1e9, overlapped_s(bw, 4) * 1e3, overlapped_s(bw, 10) * 1e3);
    s += line;
  }
  return s;
}

namespace {

// A weight the plan may leave in the host tier: its bytes and what a decode token reads of it.
struct HostWeight {
  std::string name;
  size_t bytes = 0;
  double read_per_token = 0;  // per sequence
};

// The weights in the order the plan leaves them on the host: gathered tables first (a token reads
// one row), then the others, largest first.
std::vector<HostWeight> weight_order(const io::ModelConfig& cfg) {
  std::vector<HostWeight> rows, rest;
  auto ends = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (const nn::ParamInfo& i : nn::param_infos(cfg)) {
    const size_t bytes = size_t(numel(i.shape)) * 4;
    const bool gathered =
        i.name == "wpe.weight" ||
        (!cfg.tied_embeddings && (i.name == "wte.weight" || ends(i.name, "embed_tokens.weight")));
    if (gathered)
      rows.push_back({i.name, bytes, double(i.shape.back()) * 4});
    else
      rest.push_back({i.name, bytes, double(bytes)});
  }
  auto larger = [](const HostWeight& a, const HostWeight& b) { return a.bytes > b.bytes; };
  std::stable_sort(rows.begin(), rows.end(), larger);
  std::stable_sort(rest.begin(), rest.end(), larger);
  rows.insert(rows.end(), rest.begin(), rest.end());
  return rows;
}

// The plan with the weights `host` left in the host tier (the rest on the device).
KvPlan plan_with(const io::ModelConfig& cfg, const EngineOptions& o, int64_t context, size_t budget,
                 const std::string& mode, const std::vector<HostWeight>& host) {
  HP_CHECK(mode == "none" || mode == "auto" || mode == "host" || mode == "direct" || mode == "disk",
           "--kv-offload must be auto, host, direct, disk or none, got '", mode, "'");
  HP_CHECK(context > 0 && context <= cfg.max_seq, "[kv plan] a context of ", context,
           " positions: needs 1 to the model's ", cfg.max_seq);
  KvPlan p;
  p.batch = o.max_batch;
  p.context = context;
  p.block_tokens = o.block_tokens;
  p.blocks_per_seq = (context + o.block_tokens - 1) / o.block_tokens;
  p.budget = budget;
  p.layers = cfg.n_layer;
  p.block_bytes = size_t(cfg.n_layer * 2 * o.block_tokens * cfg.n_kv_head * cfg.head_dim) * 4;
  p.weight_bytes = size_t(cfg.parameter_count()) * 4;
  // Host weights are read where they live, except when KV blocks are fetched: then those a token
  // reads whole are fetched too, streamed by the offload planner (the gathered tables, of which
  // a token reads a row, are still read in place).
  double host_weight_reads = 0, streamed_reads = 0;  // per decode token
  std::set<std::string> streamed;
  for (const HostWeight& w : host) {
    p.host_weights.push_back(w.name);
    p.weight_host_bytes += w.bytes;
    host_weight_reads += double(p.batch) * w.read_per_token;
    if (w.read_per_token >= double(w.bytes)) {
      streamed.insert(w.name);
      streamed_reads += double(p.batch) * w.read_per_token;
    }
  }
  const size_t device_weights = p.weight_bytes - p.weight_host_bytes;
  const int64_t N = p.blocks_per_seq;
  // Device bytes with `r` resident blocks per sequence, fetching (or not) the others.
  std::map<std::pair<int64_t, bool>, ProgramBytes> memo;
  auto device = [&](int64_t r, bool fetch, bool host) {
    const int64_t slots = fetch && r < N ? N - r : 0;
    const bool offloaded = host && r < N;
    auto it = memo.find({slots, offloaded});
    if (it == memo.end()) {
      const std::set<std::string> moving = slots > 0 ? streamed : std::set<std::string>{};
      it = memo.emplace(std::pair{slots, offloaded},
                        program_bytes(cfg, o, context, slots, offloaded, moving))
               .first;
    }
    // A layer's staging is among the planned programs' values.
    return device_weights + size_t(std::max<int64_t>(1, p.batch * r)) * p.block_bytes +
           it->second.held + it->second.scratch;
  };
  auto fits = [&](size_t bytes) { return budget == 0 || bytes <= budget; };
  const size_t whole = device(N, false, false);
  std::string m = mode;
  if (m == "auto") m = fits(whole) ? "resident" : "direct";  // the CPU kernels read host memory
  if (m == "none") m = "resident";
  if (m == "resident") {
    p.min_budget = whole;
    if (!fits(whole))
      throw OutOfMemory("[kv plan] --kv-offload none: " + std::to_string(context) +
                        " positions need " + bytes_str(whole) + " on the device (" +
                        bytes_str(size_t(p.batch * N) * p.block_bytes) +
                        " of KV), over the budget of " + bytes_str(budget) +
                        "; the smallest budget that holds it is " + std::to_string(whole) +
                        " bytes" + " (or allow offload: --kv-offload auto)");
    p.resident = N;
  } else {
    const bool fetch = m == "host" || m == "disk";
    p.min_budget = device(0, fetch, true);
    if (!fits(p.min_budget))
      throw OutOfMemory("[kv plan] --kv-offload " + mode + ": " + std::to_string(context) +
                        " positions need at least " + bytes_str(p.min_budget) +
                        " on the device (weights, programs and scratch" +
                        (fetch ? std::string(", one layer's staging") : std::string()) +
                        ") with every KV block offloaded, over the budget of " + bytes_str(budget) +
                        "; the smallest feasible budget is " + std::to_string(p.min_budget) +
                        " bytes (" + bytes_str(p.min_budget) + ")");
    int64_t lo = 0, hi = N;  // the most resident blocks that fit: device() grows with r
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (fits(device(mid, fetch, true)))
        lo = mid;
      else
        hi = mid - 1;
    }
    p.resident = lo;
    m = lo == N ? "resident" : fetch ? "fetch" : "direct";
    p.fetch_slots = m == "fetch" ? N - lo : 0;
  }
  p.mode = m;
  if (mode == "disk" && m != "resident") p.tier = "disk";
  const ProgramBytes& pb = memo.at({p.fetch_slots, m != "resident"});
  p.program_bytes = pb.held;
  p.scratch_bytes = pb.scratch;
  if (m == "fetch") {  // the stagings and these weights through the offload planner
    p.streamed_weights.assign(streamed.begin(), streamed.end());
    p.stream_budget = pb.planned;
    host_weight_reads -= streamed_reads;
  }
  p.kv_device_bytes = size_t(std::max<int64_t>(1, p.batch * p.resident)) * p.block_bytes;
  p.staging_bytes = size_t(p.batch * p.fetch_slots) * p.block_bytes / size_t(cfg.n_layer);
  p.kv_host_bytes = size_t(p.batch * (N - p.resident)) * p.block_bytes;
  const double per_pos = double(p.block_bytes) / double(o.block_tokens);
  const double dev_pos = double(std::min(context, p.resident * o.block_tokens));
  const double host_kv = double(p.batch) * double(context - int64_t(dev_pos)) * per_pos;
  p.decode_device_bytes = double(device_weights) + double(p.batch) * dev_pos * per_pos;
  p.decode_host_bytes = host_weight_reads;
  if (m == "direct") p.decode_host_bytes += host_kv;
  if (m == "fetch") {  // the staging and the streamed weights are read on the device
    p.decode_fetch_bytes = host_kv + streamed_reads;
    p.decode_device_bytes += host_kv + streamed_reads;
  }
  // int8 KV, every block resident: what the device has left for blocks of int8 size.
  const double int8_block = double(p.block_bytes) / 4 * kKvInt8BytesPerElement;
  const size_t fixed =
      device(N, false, false) - size_t(std::max<int64_t>(1, p.batch * N)) * p.block_bytes;
  const int64_t int8_blocks =
      budget == 0 ? N * p.batch
                  : (budget > fixed ? int64_t(double(budget - fixed) / int8_block) : 0);
  p.int8_resident_context = std::min(context, int8_blocks / p.batch * o.block_tokens);
  p.int8_decode_device_bytes = double(device_weights) + double(p.batch) *
                                                            double(p.int8_resident_context) *
                                                            int8_block / double(o.block_tokens);
  return p;
}

}  // namespace

KvPlan plan_kv(const io::ModelConfig& cfg, const EngineOptions& o, int64_t context, size_t budget,
               const std::string& mode, bool weights) {
  if (!weights) return plan_with(cfg, o, context, budget, mode, {});
  const std::vector<HostWeight> order = weight_order(cfg);
  size_t lo = 0;  // the gathered tables always go
  while (lo < order.size() && order[lo].read_per_token < double(order[lo].bytes)) ++lo;
  auto plan = [&](size_t k) {
    return plan_with(cfg, o, context, budget, mode, {order.begin(), order.begin() + long(k)});
  };
  // The fewest weights on the host that fit (each one more only frees device bytes): a binary
  // search, each probe a plan of its own.
  size_t hi = order.size();
  KvPlan best;
  try {
    best = plan(hi);
  } catch (const OutOfMemory& e) {
    throw OutOfMemory(std::string(e.what()) + ", every weight in the host tier");
  }
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    try {
      best = plan(mid);
      hi = mid;
    } catch (const OutOfMemory&) {
      lo = mid + 1;
    }
  }
  return best;  // the plan of the last hi, the fewest that fit
}

}  // namespace hp::infer
