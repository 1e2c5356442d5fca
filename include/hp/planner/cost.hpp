// The planner's cost model: the step time and per-device memory of one configuration (degrees,
// mesh order, micro-batch, schedule, recomputation, optimizer sharding and offload) of a
// transformer on a Cluster, in closed form. One transformer block is costed once and multiplied
// by the blocks a stage holds, so evaluating a configuration costs the same for any depth.
// Not a simulator of a schedule's events (mpmd::simulate does that) and not calibrated here:
// Efficiency (cluster.hpp) holds the table of achieved fractions every prediction uses: the
// planner's one table, or the cluster's measured one.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "hp/io/model_config.hpp"
#include "hp/planner/cluster.hpp"

namespace hp::planner {

enum class Schedule { kNone, kGpipe, k1F1B, kInterleaved, kZbH1, kZbV };
enum class Recompute { kNone, kSelective, kFull };
// Optimizer state and parameter sharding over the data-parallel axis: none (every replica holds
// all), optimizer (ZeRO-1, Megatron's distributed optimizer: Adam state and fp32 master weights
// split), full (ZeRO-3 / FSDP: parameters and gradients split too, gathered per block).
enum class Zero { kNone, kOptimizer, kFull };

const char* schedule_name(Schedule s);  // "none", "gpipe", "1f1b", "interleaved", "zb-h1", "zbv"
const char* recompute_name(Recompute r);
const char* zero_name(Zero z);                  // "none", "optimizer", "full"
Schedule parse_schedule(const std::string& s);  // throws naming the choices
Recompute parse_recompute(const std::string& s);

struct Workload {
  io::ModelConfig model;
  int64_t global_batch = 0;  // sequences per optimizer step
  int64_t seq = 0;
};

// One point of the search space. Axes in `order`, outermost first: "dpt" is dp, pp, tp with tp
// innermost (consecutive devices); an axis of size 1 still has a place.
struct Config {
  int64_t dp = 1, tp = 1, pp = 1;
  std::string order = "dpt";  // a permutation of d, p, t
  bool sp = false;            // sequence parallelism with tp
  Zero zero = Zero::kNone;
  int64_t micro_batch = 1;  // sequences per micro-batch
  Schedule schedule = Schedule::kNone;
  int64_t virtual_stages = 1;  // chunks per stage (interleaved: v, zbv: 2)
  Recompute recompute = Recompute::kNone;
  // With kFull: how many of each stage's blocks are fully recomputed (Megatron's
  // --recompute-method block --recompute-num-layers); the others recompute selectively. 0: all.
  int64_t recompute_blocks = 0;
  bool offload = false;  // optimizer state (and its step) on the host
  // Stored activations on the host: each block's activations of a micro-batch go down after its
  // forward and come back before its backward, overlapped with the micro-batch's compute; the
  // device keeps two blocks' worth per micro-batch in flight (one leaving, one arriving).
  bool offload_activations = false;
  int64_t devices() const { return dp * tp * pp; }
  // The preset-style expression in mesh order: "dp6xpp64xtp8+sp", "fsdp64xtp2" (fsdp: Zero::kFull).
  std::string strategy() const;
  // The mesh stride of an axis ('d', 'p', 't'): the product of the sizes inside it.
  int64_t stride(char axis) const;
};

// One transformer block per token (forward), and the model's totals.
struct BlockCost {
  // The block's weight matrices as (inner k, outer n) of the GEMM each is (QKV, output
  // projection, MLP in, MLP out; Llama's gate and up as one): what a GEMM's efficiency is looked
  // up by. tp splits QKV's and MLP in's n (column-parallel), the others' k (row-parallel).
  std::array<std::pair<double, double>, 4> matrices{};
  double gemm_flops = 0;  // per token: 2 x the block's matrix parameters
  double attn_flops = 0;  // per token at sequence length seq: 4 x seq x heads x head_dim
  double params = 0;      // elements of one block (weights, norms, biases)
  double tensors = 0;     // parameter tensors of one block (GPT-2 12, Llama 9)
  double act_split = 0;   // bytes per token kept for backward that tp splits (no sp)
  double act_whole = 0;   // bytes per token kept for backward that tp replicates without sp
  // Bytes per token that element-wise work reads and writes (forward): norms, residual adds and
  // dropout on the model width (replicated across tp without sp), and the activation function
  // and rotary embedding on the tp-split width.
  double elementwise_whole = 0, elementwise_split = 0;
  // Bytes each score (one head, query and key) moves in the forward and in the backward when the
  // attention core keeps its scores in memory (Efficiency::attention_in_memory): the forward
  // writes the scores, the softmax reads them and writes probabilities, GPT's dropout reads those
  // and writes them with a 1-byte mask, AV reads them; the backward writes the probabilities'
  // gradient, the dropout's backward reads it with the mask and writes it, the softmax's reads it
  // and the probabilities and writes the scores' gradient, which the QK^T backward reads twice (Q
  // and K), and AV's backward reads the probabilities.
  double score_bytes_f = 0, score_bytes_b = 0;
};
// Activation bytes at `element_bytes` per element (2: bf16, 4: f32, the cluster's precision).
BlockCost block_cost(const io::ModelConfig& m, int64_t seq, double element_bytes = 2);
// Parameters outside the blocks: token (and position) embeddings, an untied head, final norm.
double embedding_params(const io::ModelConfig& m);
// Model FLOPs of one step: 6 x parameters x tokens plus attention (12 x layers x seq^2 x
// heads x head_dim per sequence), no recomputation. The MFU numerator.
double model_flops(const Workload& w);

// Per device, in bytes.
struct Memory {
  double params = 0, grads = 0, optimizer = 0, activations = 0, buffers = 0;
  double total() const { return params + grads + optimizer + activations + buffers; }
};

// The step of one configuration: seconds per part on the busiest (first) stage, the step, rates.
struct Estimate {
  double compute_s = 0;    // forward + backward of the stage's blocks, head, element-wise work
  double recompute_s = 0;  // the extra forward work of recomputation
  double tp_s = 0, pp_s = 0, dp_s = 0;  // exposed communication per dimension
  double bubble_s = 0;                  // pipeline idle time of the schedule
  double offload_s = 0;                 // optimizer state traffic over the host link
  double act_offload_s = 0;             // activation traffic over the host link, exposed
  double optimizer_s = 0;               // the optimizer step on the device
  double step_s = 0;
  double hardware_flops = 0;     // per device per step, recomputation included
  double tflops_per_device = 0;  // hardware_flops / step_s / 1e12
  double mfu = 0;                // model_flops / (devices x peak x step_s)
  int64_t microbatches = 0;      // per pipeline per step
  Memory memory;
  double host_bytes = 0;  // per device on the host: offloaded optimizer state and activations
  bool fits = false;      // memory.total() <= usable memory, host_bytes <= host memory
};

// Blocks of the busiest stage: ceil(layers / pp).
int64_t stage_blocks(const io::ModelConfig& m, int64_t pp);
// Parameters one device of the busiest stage holds before any data-parallel sharding.
double device_params(const io::ModelConfig& m, int64_t tp, int64_t pp);
// Blocks of a stage of `blocks` that `c` recomputes fully.
int64_t full_blocks(const Config& c, int64_t blocks);

// Ring collectives over a group of `n` devices placed `stride` apart, hierarchically over the
// cluster's tiers: at each tier the members it newly joins run a ring over the data left by
// the tiers inside (alpha-beta: 2(k-1) latencies per ring step count for all-reduce, k-1 for
// all-gather and reduce-scatter). Bytes are the whole buffer each member holds.
double all_reduce_s(const Cluster& c, int64_t n, int64_t stride, double bytes, double net_eff = 1);
double all_gather_s(const Cluster& c, int64_t n, int64_t stride, double bytes, double net_eff = 1);
// The tier the point-to-point messages of a pipeline of `n` stages placed `stride` apart cross:
// the slowest hop (the tier holding the whole group) sets the pace.
const Tier& p2p_tier(const Cluster& c, int64_t n, int64_t stride);

// The pipeline's idle share per stage as a multiple of one micro-batch's stage time, closed
// forms: (p-1) for gpipe and 1f1b, (p-1)/v interleaved, (p-1)/3 zb-h1, (p-1)/6 zbv, 0 without pp.
double bubble_microbatches(Schedule s, int64_t p, int64_t v);
// The same for `m` micro-batches from the HyperMPMD event simulator: the schedule the runtime
// generates (mpmd::make_schedule), every chunk's F, B and W one unit each except the first
// chunk's, whose input needs no gradient (B 0, W 2, as a one-device stage runs it), cached per
// (schedule, p, v, m). Where the closed forms assume m >= p and equal chunks, this sees fewer
// micro-batches than stages and the first chunk's late weight gradients. Schedules of more than
// kSimulatedChunkSteps chunk-micro-batches (p v m) take the closed form, and no result is below
// it: the search prunes with the closed forms as the bubbles' floors.
inline constexpr int64_t kSimulatedChunkSteps = 8192;
double simulated_bubble_microbatches(Schedule s, int64_t p, int64_t v, int64_t m);
// The micro-batches' activations a stage holds at its peak, in units of one micro-batch of the
// whole stage: m for gpipe, min(p, m) for 1f1b, zb-h1 and zbv, p(1 + (p-1)/(pv)) interleaved.
double inflight_microbatches(Schedule s, int64_t p, int64_t m, int64_t v);

// Whether `c` is a configuration this model and batch admit (degrees divide, tp divides the
// heads, pp at most the layers, chunk counts divide); `why` says what fails.
bool admissible(const Workload& w, const Config& c, std::string* why = nullptr);
// The memory of `c` with a single micro-batch in flight: no schedule holds less (parameters and
// activations at `element_bytes` each, the cluster's precision).
// `scores_in_memory`: the cluster's Efficiency::attention_in_memory.
Memory memory_floor(const Workload& w, const Config& c, double element_bytes = 2,
                    bool scores_in_memory = false);
// Seconds of the GEMMs of `tokens` rows through the block's matrices (forward: one GEMM each,
// split over tp), at the share of the peak `eff` gives each shape.
double block_gemm_s(const BlockCost& bc, double tokens, double tp, double peak,
                    const Efficiency& eff);
// A block's forward and backward as a runtime ran it: its seconds, and the shares of that time
// its GEMMs, its attention (forward and backward) and its other ops that write the model's width
// (norms, residual adds) took; the rest is the other ops on other widths.
struct BlockTiming {
  double s = 0, gemm = 0, attention = 0, whole = 0;
};
// Fits `cl`'s efficiency to a measured block of `m` (`tokens` rows of sequence `seq`, forward and
// backward, no recomputation) so that the per-block terms estimate() adds up take the time the
// block's parts took, each to the ops it names: the GEMM shares scaled by one factor (returned),
// the attention's share, the memory share of the element-wise bytes on the model's width and
// that of those on the tp-split width, which thereby carry every other op of the block (each at
// most kMaxMemoryShare). Needs the peak, the memory bandwidth and the GEMM table already set.
double fit_block_efficiency(Cluster& cl, const io::ModelConfig& m, double tokens, int64_t seq,
                            const BlockTiming& t);
// A block of `m`'s time per row at `rows` rows of sequence `seq` over that at `ref_rows`, as
// estimate() charges it: its GEMMs, a share `gemm` of the block's time at `ref_rows`, rated by the
// GEMM table shape by shape; the rest of the block per row alike. hp calibrate divides the
// pipeline's measured actions (2-row micro-batches) by the 4-row block times this, so that the
// pipeline's factor does not charge again what the table charges the smaller GEMMs.
double block_row_ratio(const Cluster& cl, const io::ModelConfig& m, int64_t seq, double gemm,
                       int64_t rows, int64_t ref_rows);
// Costs one admissible configuration.
Estimate estimate(const Workload& w, const Cluster& cl, const Config& c,
                  const Efficiency& eff = {});

}  // namespace hp::planner
