// `hp calibrate`: measures this machine as the planner sees a cluster and writes it as a cluster
// YAML named `local` (docs/planner.md#the-local-cluster): every rank of --devices measures at
// once, one thread each, as `hp train --devices` runs them: the runtime's matmul (forward and both
// gradients) at shapes typical of the models (the efficiency table by shape, and the peak), the
// memory bandwidth every rank gets while all copy, the trainer's AdamW step over 4M parameters (the
// optimizer's share of that bandwidth), one GPT-2 block run forward and backward by the executor
// (its GEMMs' time scales the table, its fused attention's gives the attention's share, the rest
// the element-wise share), the same blocks as one-device pipeline stages run them (the pipeline's
// efficiencies), the communicator's all-reduce (latency and bandwidth), the offload transfer
// engine's host link. Each probe's best of three rounds (one with --quick). Not a model of anything
// else: the planner's cost model reads the file.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <vector>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/options.hpp"
#include "cli/probes.hpp"
#include "hp/autodiff/grad.hpp"
#include "hp/core/error.hpp"
#include "hp/data/loader.hpp"
#include "hp/mpmd/pipeline.hpp"
#include "hp/nn/model.hpp"
#include "hp/ops/ops.hpp"
#include "hp/optim/adamw.hpp"
#include "hp/planner/cost.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kWait = std::chrono::minutes(5);

// GEMM shapes (rows m, inner k, columns n) of the models hp trains: a block's matrices at the
// widths of gpt2-tiny (64), the benchmark models (256) and GPT-2 124M (768), split over tp, at
// the rows of one micro-batch per rank; the benchmark models' four at 256, 512 and 1024 rows and
// split over tp2 at 1024 (one size m*k*n runs at different rates in different shapes, which the
// planner looks up by shape). Sorted by m*k*n.
const std::vector<planner::GemmShape> kGemmShapes = {
    {128, 64, 64, 0},    {256, 64, 192, 0},    {256, 256, 256, 0},   {512, 256, 128, 0},
    {512, 256, 256, 0},  {1024, 128, 256, 0},  {256, 256, 768, 0},   {512, 256, 384, 0},
    {256, 256, 1024, 0}, {256, 1024, 256, 0},  {1024, 256, 256, 0},  {512, 256, 768, 0},
    {1024, 256, 384, 0}, {512, 256, 1024, 0},  {512, 1024, 256, 0},  {1024, 256, 512, 0},
    {1024, 512, 256, 0}, {1024, 256, 768, 0},  {1024, 256, 1024, 0}, {1024, 1024, 256, 0},
    {2048, 768, 768, 0}, {2048, 768, 2304, 0},
};

// This thread's CPU seconds: the time it ran, not the time other processes of a shared machine
// held its core.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// The best of `reps` calls of fn on this rank after one warm-up, in this thread's CPU seconds,
// while every other rank times its own at once (barriers around: the ranks share the cores and
// the memory system). The kernels run on the calling thread (one thread per rank).
double timed(comm::Communicator& c, int reps, const std::function<void()>& fn) {
  c.barrier().wait(kWait);
  fn();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const double t0 = thread_seconds();
    fn();
    best = std::min(best, thread_seconds() - t0);
  }
  c.barrier().wait(kWait);
  return best;
}

// A tensor of `shape` filled with `v` (the values do not change the kernels' time).
Tensor filled(const Shape& shape, float v) {
  return Tensor::from_f32(shape, std::vector<float>(size_t(numel(shape)), v));
}

// The calibration block: GPT-2 width 256, 4 heads, batch 4 x 128 (the benchmark models' rows per
// rank under dp2).
io::ModelConfig calibration_block() {
  io::ModelConfig m;
  m.arch = io::Architecture::kGpt2;
  m.n_layer = 1, m.d_model = 256, m.n_head = 4, m.n_kv_head = 4, m.head_dim = 64, m.d_ff = 1024;
  m.max_seq = 128, m.vocab = 256;
  return m;
}
constexpr int64_t kBlockBatch = 4, kBlockSeq = 128;

// A traced loss's forward and backward as the trainer runs them: differentiated with respect to
// `wrt`, compiled and run by the executor on the CPU backend (one thread) with `feeds` bound; its
// seconds (the best of the runs) and each op's share of the executor's profiled time over them.
struct Profiled {
  double s = 0;
  std::map<std::string, double> share;  // op name: its share of the profiled time
  double of(ir::OpId id) const {
    const auto it = share.find(ir::op_name(id));
    return it == share.end() ? 0.0 : it->second;
  }
};
Profiled profiled_backward(comm::Communicator& c, int reps, const ir::Var& loss,
                           const std::vector<ir::Var>& wrt,
                           const std::vector<std::pair<ir::ValueId, Tensor>>& feeds) {
  std::vector<ir::ValueId> outs{loss.id};
  for (const ir::Var& gv : autodiff::grad(loss, wrt)) outs.push_back(gv.id);
  const runtime::Program prog = runtime::compile(*loss.g, outs);
  runtime::Executor ex(prog, default_allocator(), runtime::Context{1});
  for (const auto& [v, t] : feeds) ex.bind(v, t);
  ex.run();  // buffers touched once before the profile starts
  ex.set_profile(true);
  Profiled p;
  p.s = timed(c, reps, [&] { ex.run(); });
  double all = 0;
  for (const auto& [op, sec] : ex.profile()) all += sec;
  HP_CHECK(all > 0, "[calibrate] the executor profiled no op");
  for (const auto& [op, sec] : ex.profile()) p.share[op] = sec / all;
  return p;
}

// FLOP/s of one GEMM shape on one thread as the trainer runs a linear layer: X [m, k] (as [m / 128,
// 128, k], the model's rows) times W [k, n], forward, and the input's and the weight's gradients
// (profiled_backward); the profiled matmul time only (the loss's element-wise ops left out). A loop
// over the GEMM kernel with buffers of its own (until 2026-12-03) rated the model's shapes apart
// from how its steps ran them: on the 2-core AMD EPYC without AVX-512, tp2's matmuls took 0.84-0.85
// of dp2's per step where that table said 0.93.
double gemm_flops(comm::Communicator& c, const planner::GemmShape& s, int reps) {
  const int64_t m = int64_t(s.m), k = int64_t(s.k), n = int64_t(s.n);
  const Shape xs = m % kBlockSeq == 0 ? Shape{m / kBlockSeq, kBlockSeq, k} : Shape{m, k};
  Shape ys = xs;
  ys.back() = n;
  ir::Graph g;
  const ir::Var x = g.param("x", xs), w = g.param("w", {k, n});
  const ir::Var r = g.input("r", {ys, DType::kF32});
  const ir::Var loss = sum(matmul(x, w) * r);
  const Profiled p = profiled_backward(
      c, reps, loss, {x, w},
      {{x.id, filled(xs, 0.5f)}, {w.id, filled({k, n}, 0.25f)}, {r.id, filled(ys, 0.1f)}});
  const double matmul_share = p.of(ir::OpId::kMatmul);
  HP_CHECK(matmul_share > 0, "[calibrate] the GEMM probe ran no matmul");
  return 3 * 2 * s.m * s.k * s.n / (p.s * matmul_share);
}

// One GPT-2 block's forward and backward as the trainer runs it (traced by nn::block,
// profiled_backward), every op of the block included, not only those the cost model names: its
// seconds (the best of the runs) and the shares of the executor's profiled op time (over the runs)
// its matmuls, its fused attention and its other ops on the model's width took.
planner::BlockTiming block_timing(comm::Communicator& c, int reps) {
  const io::ModelConfig cfg = calibration_block();
  const int64_t B = kBlockBatch, T = kBlockSeq, D = cfg.d_model;
  ir::Graph g;
  nn::ParamVars P;
  std::vector<ir::Var> wrt;
  std::vector<std::pair<ir::ValueId, Tensor>> feeds;
  for (const auto& pi : nn::param_infos(cfg)) {
    if (pi.name.rfind("h.0.", 0) != 0) continue;
    P[pi.name] = g.param(pi.name, pi.shape);
    wrt.push_back(P[pi.name]);
    feeds.push_back({P[pi.name].id, filled(pi.shape, 0.02f)});
  }
  const ir::Var x = g.param("x", {B, T, D});
  const ir::Var r = g.input("r", {{B, T, D}, DType::kF32});
  feeds.push_back({x.id, filled({B, T, D}, 0.5f)});
  feeds.push_back({r.id, filled({B, T, D}, 0.1f)});
  wrt.push_back(x);
  const ir::Var loss = sum(nn::block(cfg, P, 0, x) * r);
  const Profiled p = profiled_backward(c, reps, loss, wrt, feeds);
  planner::BlockTiming b;
  b.s = p.s;
  b.gemm = p.of(ir::OpId::kMatmul);
  b.attention = p.of(ir::OpId::kAttention) + p.of(ir::OpId::kAttentionBwd);
  // The other ops' time on the model's width: each op's time in proportion to the bytes its
  // nodes that write that width move (norms, residual adds, their backward; not the activation
  // function, the heads' splits and concatenations).
  std::map<std::string, std::pair<double, double>> bytes;  // op: (on the model's width, all)
  for (const ir::Node& n : g.nodes()) {
    const ir::OpId op = n.def->id;
    if (op == ir::OpId::kMatmul || op == ir::OpId::kAttention || op == ir::OpId::kAttentionBwd)
      continue;  // their own terms
    const double moved = ir::node_cost(g, n).bytes;
    const Shape& out = g.value(n.outputs[0]).type.shape;
    auto& [width, all_bytes] = bytes[n.def->name];
    all_bytes += moved;
    if (!out.empty() && out.back() == D) width += moved;
  }
  for (const auto& [op, share] : p.share) {
    const auto it = bytes.find(op);
    if (it != bytes.end() && it->second.second > 0)
      b.whole += share * it->second.first / it->second.second;
  }
  return b;
}

// Seconds per block and row that one-device pipeline stages spend in their actions, as
// `hp train` runs them: the calibration block's width, two blocks a rank, a stage per rank,
// kPipelineMicrobatches micro-batches of two rows, under 1F1B (F and a fused BW) or ZB-H1 (F, B
// and W; `split`). The best of `reps` profiled steps, after a warm-up; the embeddings and the
// head (a 256-token vocabulary) ride along. Every rank calls it (the trainer is collective).
constexpr int64_t kPipelineMicrobatches = 4, kPipelineRows = 2;
double pipeline_block_row_s(comm::Communicator& c, bool split, int reps) {
  io::ModelConfig cfg = calibration_block();
  const int64_t p = c.size();
  cfg.n_layer = 2 * p;
  const mpmd::PipelineSpec spec = mpmd::pipeline_from_preset(
      "pp" + std::to_string(p), p, cfg.n_layer,
      split ? mpmd::ScheduleKind::kZbH1 : mpmd::ScheduleKind::k1F1B, kPipelineMicrobatches);
  train::TrainOptions opt;
  opt.batch = kPipelineRows * kPipelineMicrobatches;
  opt.seq = kBlockSeq;
  const auto plan = train::plan_pipeline(cfg, spec, opt.batch, opt.seq);
  data::RandomTokenSource src(cfg.vocab, {opt.batch, opt.seq, 7});
  const data::Batch b = src.next();
  train::Trainer tr(*plan, c, nn::init_params(cfg, 1), opt);
  tr.step(b.input, b.target);  // programs compiled, buffers placed
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    tr.step(b.input, b.target);
    double s = 0;  // every chunk's actions per micro-batch (the costs are all-reduced)
    for (const mpmd::ChunkCost& k : tr.measured_pipeline_costs().chunks) s += k.f + k.b + k.w;
    best = std::min(best, s / double(cfg.n_layer * kPipelineRows));
  }
  return best;
}

// Seconds of one all-reduce of `bytes` on the world (every rank calls it): the best of `trials`
// means over `iters` calls (other processes on the machine only add time).
double all_reduce_s(comm::Communicator& c, size_t bytes, int iters, int trials) {
  std::vector<float> in(bytes / 4, 1.0f), out(bytes / 4);
  double best = 1e30;
  for (int t = 0; t < trials; ++t)
    best = std::min(
        best, time_collective(c, iters, 2, [&] {
          issue_collective(c, Coll::kAllReduce, in.data(), out.data(), bytes / 4).wait(kWait);
        }));
  return best;
}

// Bytes per second of the trainer's AdamW step (optim::AdamW, one thread) over 4M parameters on
// every rank at once, counted as the cost model counts them: 28 bytes a parameter (the parameter,
// m and v read and written, the gradient read); 64 MiB of state a rank, as a model's.
double optimizer_bytes_per_s(comm::Communicator& c, int reps) {
  const int64_t n = int64_t(4) << 20;
  Tensor param = filled({n}, 0.02f), grad = filled({n}, 0.001f);
  optim::AdamW adam({}, {{"w", param, true}}, default_allocator());
  const std::vector<const Tensor*> grads{&grad};
  const runtime::Context one{1};
  return 28.0 * double(n) / timed(c, reps, [&] { adam.step(one, grads, 1e-4); });
}

// Bytes per second one rank copies (64 MiB) while every rank copies at once, in CPU time.
double copy_bytes_per_s(comm::Communicator& c, int reps) {
  const size_t n = size_t(64) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  return double(n) / timed(c, reps, [&] { std::memcpy(b.data(), a.data(), n); });
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      std::string s = line.substr(line.find(':') + 1);
      s.erase(0, s.find_first_not_of(' '));
      s.erase(std::remove(s.begin(), s.end(), '"'), s.end());
      return s;
    }
  return "CPU";
}

struct Measured {
  std::vector<planner::GemmShape> gemm;  // shares filled in
  planner::BlockTiming block;
  double block_slowest = 0;  // of the rounds' best block times: how far apart they were
  double peak = 0, copy_gbps = 0, optimizer_gbps = 0;
  double fused_row_s = 0, split_row_s = 0;  // pipeline_block_row_s; infinite: one rank
  double ar_small_s = 0, ar_big_s = 0;
  Link link;
};

}  // namespace

int cmd_calibrate(const std::vector<std::string>& argv) {
  Args a(argv, calibrate_command());
  if (printed_help(a)) return 0;
  const Devices dev = parse_devices(a.str("devices"));
  const bool quick = a.flag("quick");
  const std::filesystem::path out =
      a.has("out") ? std::filesystem::path(a.str("out")) : planner::local_cluster_path();
  const int reps = quick ? 2 : 5, rounds = quick ? 1 : 3;
  const size_t small = 4096, big = size_t(quick ? 4 : 16) << 20;
  const auto t0 = Clock::now();
  Measured m;
  run_ranks(dev, [&](comm::Communicator& c) {
    // Each probe's best over the rounds: another process busy during one round (the machine
    // may be shared) only makes that round's figures worse.
    std::vector<double> flops(kGemmShapes.size(), 0.0);
    planner::BlockTiming block{INFINITY};
    double block_slowest = 0;
    double copy = 0, adam = 0, fused = INFINITY, split = INFINITY;
    for (int r = 0; r < rounds; ++r) {
      for (size_t i = 0; i < flops.size(); ++i)
        flops[i] = std::max(flops[i], gemm_flops(c, kGemmShapes[i], reps));
      const planner::BlockTiming b = block_timing(c, reps);
      if (b.s < block.s) block = b;
      block_slowest = std::max(block_slowest, b.s);
      copy = std::max(copy, copy_bytes_per_s(c, reps) / 1e9);  // every rank at once
      adam = std::max(adam, optimizer_bytes_per_s(c, reps) / 1e9);
      if (c.size() == 1) continue;  // no pipeline of one rank
      fused = std::min(fused, pipeline_block_row_s(c, false, reps));
      split = std::min(split, pipeline_block_row_s(c, true, reps));
    }
    const int trials = quick ? 2 : 5;
    const double ar_small = c.size() > 1 ? all_reduce_s(c, small, quick ? 10 : 50, trials) : 0;
    const double ar_big = c.size() > 1 ? all_reduce_s(c, big, quick ? 2 : 4, trials) : 0;
    if (c.rank() != 0) return;
    m.gemm = kGemmShapes;
    for (size_t i = 0; i < flops.size(); ++i) m.peak = std::max(m.peak, flops[i]);
    for (size_t i = 0; i < flops.size(); ++i) m.gemm[i].share = flops[i] / m.peak;
    m.block = block, m.block_slowest = block_slowest, m.copy_gbps = copy, m.optimizer_gbps = adam;
    m.fused_row_s = fused, m.split_row_s = split;
    m.ar_small_s = ar_small, m.ar_big_s = ar_big;
  });
  if (dev.rank != 0) return 0;  // mpi: rank 0 writes what every rank measured
  {
    memory::TransferEngine engine;  // the offload tiers' default: copies on their own threads
    m.link = calibrate_link(engine);
  }
  planner::Cluster cl;
  cl.name = "local";
  cl.devices = dev.count;
  cl.device_name = cpu_name() + ", one thread per rank";
  cl.peak_flops = m.peak;
  cl.element_bytes = 4;  // the CPU backend trains in f32
  const double per_rank = double(machine_memory_bytes()) / double(dev.count);
  cl.memory_bytes = cl.host_memory_bytes = per_rank;
  cl.memory_bandwidth = 2 * m.copy_gbps * 1e9;  // read + written per rank while all copy
  cl.host_bandwidth = m.link.gbps * 1e9;
  // all-reduce = 2 (n-1)/n bytes / bw + 2 (n-1) latency, from a small and a large message.
  const double n = dev.count, ring = 2 * (n - 1) / n;
  double bw = 1e12, lat = 0;
  if (dev.count > 1) {
    bw = std::max(1e6, ring * double(big - small) / std::max(1e-9, m.ar_big_s - m.ar_small_s));
    lat = std::max(0.0, (m.ar_small_s - ring * double(small) / bw) / (2 * (n - 1)));
  }
  cl.tiers = {{dev.kind, 0, bw, lat}};
  planner::Efficiency eff;
  eff.gemm_shapes = m.gemm;
  eff.gemm = 1;
  eff.network = 1;  // the tier's bandwidth is what the communicator reached
  eff.overlap = overlap_pays(dev, 1);
  eff.per_tensor_collectives = true;  // the trainer this file plans for issues them so
  eff.optimizer = std::min(planner::kMaxMemoryShare, m.optimizer_gbps * 1e9 / cl.memory_bandwidth);
  cl.efficiency = eff;
  // The calibration block's GEMMs, attention and the rest, each to the cost model's term for it:
  // the block's GEMMs run 2-9% below the probes' rates on the 2-core AMD EPYC (the probes reuse
  // one set of buffers, the block reads many); charging that shortfall to the element-wise bytes
  // instead overstated them 2-fold, and so every strategy that splits the GEMMs but not the norms
  // (tp without sp).
  const double scale = planner::fit_block_efficiency(
      cl, calibration_block(), double(kBlockBatch * kBlockSeq), kBlockSeq, m.block);
  // The pipeline's actions over what the model charges the block per row at the pipeline's
  // micro-batch (the block's time per row at its 4 rows, its GEMMs re-rated at 2 rows by the
  // table: dividing by the 4-row block alone charged the smaller GEMMs twice, pp2 +6 to +14% over
  // its best step on the 2-core AMD EPYC without AVX-512); never below 1, which the measurement
  // only reaches by noise (the same kernels run, plus copies and accumulation).
  const double row_s = m.block.s / double(kBlockBatch) *
                       planner::block_row_ratio(cl, calibration_block(), kBlockSeq, m.block.gemm,
                                                kPipelineRows, kBlockBatch);
  if (std::isfinite(m.fused_row_s))
    cl.efficiency->pipeline_fused = std::max(1.0, m.fused_row_s / row_s);
  if (std::isfinite(m.split_row_s))
    cl.efficiency->pipeline_split = std::max(1.0, m.split_row_s / row_s);
  const double spent = std::chrono::duration<double>(Clock::now() - t0).count();
  char comment[640];
  std::snprintf(comment, sizeof comment,
                "Written by hp calibrate%s in %.1f s: %d ranks (%s), one thread each, measured at "
                "once, each probe's best of %d rounds.\nPeak: the best matmul rate of one thread; "
                "the gemm shares are each shape's rate over it, times %.3f\n(what the "
                "calibration block's GEMMs reached of the table). Memory: machine memory shared "
                "by the ranks;\nhost link: the offload transfer engine's copy (latency %.1f us). "
                "The calibration block\n(GPT-2 width 256, 4 x 128 tokens, forward and backward): "
                "%.1f ms\n(its rounds' best %.1f-%.1f ms), %.0f%% GEMMs, %.0f%% attention, %.0f%% "
                "other ops on the model's width.",
                quick ? " --quick" : "", spent, dev.count, dev.kind.c_str(), rounds, scale,
                m.link.latency_us, m.block.s * 1e3, m.block.s * 1e3, m.block_slowest * 1e3,
                100 * m.block.gemm, 100 * m.block.attention, 100 * m.block.whole);
  // The rounds apart: another process was busy during some (each round's figure is already its
  // best of several runs), and predictions made from this file carry that spread.
  if (m.block_slowest > 1.1 * m.block.s)
    std::fprintf(stderr,
                 "hp calibrate: warning: the calibration block's rounds took %.1f-%.1f ms, %.0f%% "
                 "apart: another process was busy; calibrate again on a quiet machine for "
                 "predictions within 10%%\n",
                 m.block.s * 1e3, m.block_slowest * 1e3, 100 * (m.block_slowest / m.block.s - 1));
  const std::string yaml = planner::cluster_yaml(cl, comment);
  planner::parse_cluster_text(yaml, out.string());  // what --cluster will read back
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  std::ofstream f(out);
  f << yaml;
  f.close();
  HP_CHECK(f.good(), "[calibrate] cannot write ", out.string());
  std::printf("%s", yaml.c_str());
  std::printf("# written to %s\n", out.string().c_str());
  return 0;
}

}  // namespace hp::cli
