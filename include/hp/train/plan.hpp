// The compiled training step as plain values: the traced global step with gradients and its
// layouts (StepPlan, shared by every rank), then one rank's program with its memory plan
// (RankProgram). What train::Trainer runs and what `hp plan` prints, without allocating tensors.
// One device is a mesh of one rank whose step is not lowered: its program is the global step's.
// Not an executor: nothing here runs a kernel or moves data.
#pragma once
#include <memory>
#include <optional>

#include "hp/io/model_config.hpp"
#include "hp/memory/options.hpp"
#include "hp/memory/planner.hpp"
#include "hp/mpmd/cost.hpp"
#include "hp/mpmd/pipeline.hpp"
#include "hp/nn/model.hpp"
#include "hp/runtime/program.hpp"
#include "hp/shard/lower.hpp"

namespace hp::train {

// One pipeline stage on its own devices: world ranks [first_rank, first_rank + size()). A stage of
// several devices runs its chunks SPMD: each chunk's step is propagated over `strategy` (its mesh
// has the stage's ranks, numbered from 0 within the stage) and lowered per rank, as a
// non-pipeline step is. A one-device stage runs its chunks' programs as traced.
struct StagePlan {
  shard::Strategy strategy;  // one device: a mesh of one rank
  bool sharded = false;      // several devices: lowered over `strategy`
  int first_rank = 0;
  // Per parameter of StepPlan::infos (logical shapes), its layout on this stage's mesh (only the
  // parameters of the stage's chunks are held; replicated when not sharded).
  std::vector<shard::Layout> param_layouts;
  // The layout of the activations crossing the stage's boundaries ([rows, seq, d_model]: x_in,
  // x_out and their gradients): the tokens' batch split (over the data axes), replicated otherwise.
  shard::Layout boundary;
  std::vector<std::string> data_axes;  // the axes splitting the batch, in mesh order

  // Where parameter i's gradient is delivered by each micro-batch's program: its parameter's
  // layout, partial over the data axes that layout leaves unused (dp; fsdp splits the parameter,
  // so its gradient is reduce-scattered in the program). StageRunner::reduce_grads sums those
  // partial gradients over the stage once per step.
  shard::Layout grad_layout(size_t i) const;

  int size() const { return int(strategy.mesh.size()); }
  // The shape the stage holds a parameter in: logical when sharded (its chunks are traced with
  // logical q, k, v), as stored otherwise.
  const Shape& param_shape(const nn::ParamInfo& pi) const {
    return sharded && !pi.logical.empty() ? pi.logical : pi.shape;
  }
  bool holds(int world_rank) const {
    return world_rank >= first_rank && world_rank < first_rank + size();
  }
};

// A pipeline: the model cut into chunks (model order) placed on stages, and the schedule every
// stage runs (each device of a stage the stage's row), verified when planned.
struct PipelinePlan {
  mpmd::PipelineSpec spec;
  mpmd::Schedule schedule;
  std::vector<nn::Chunk> chunks;  // by chunk id (the schedule's), in model order
  std::vector<StagePlan> stages;  // by the schedule's rank (stage index)
  // What the stages' propagation costs moves with.
  shard::Topology topo = shard::Topology::uniform(20e9, 5e-6, "threads");

  // The stage a world rank belongs to.
  int stage_of(int world_rank) const;
};

// A chunk's step on its stage's mesh: the chunk traced in logical shapes, propagated over the
// stage's strategy with its parameters in their layouts, x_in and g_out in the boundary layout,
// and `outputs` delivered in `output_layouts` (the same propagation a non-pipeline step gets).
shard::Propagation propagate_chunk(const StagePlan& stage, const nn::Traced& traced,
                                   const std::vector<ir::ValueId>& outputs,
                                   const std::vector<shard::Layout>& output_layouts,
                                   const shard::Topology& topo);

// What every rank shares: the traced global step with gradients and its layouts.
struct StepPlan {
  io::ModelConfig cfg;
  shard::Strategy strategy;  // one device: a mesh of one rank
  // Propagated over the strategy and lowered per rank. False for one device: the step runs as
  // traced (no logical shapes, no redistributions), its parameters replicated.
  bool sharded = false;
  int64_t batch = 0, seq = 0;
  nn::Traced traced;  // logical shapes (TraceOptions::logical_qkv) when sharded
  std::vector<nn::ParamInfo> infos;
  std::vector<ir::Var> grads;                // one per parameter
  std::vector<shard::Layout> param_layouts;  // logical, per parameter
  shard::Propagation prop;                   // sharded only
  shard::Propagation eval_prop;              // the forward alone, to the loss (validation)
  // Lowering: communication split into start/wait and overlapped with compute (LowerOptions).
  shard::LowerOptions lower;
  // A pipeline step (plan_pipeline): the stages run their chunks' programs as the schedule says;
  // `traced`, `grads` and the propagations are then empty.
  std::optional<PipelinePlan> pipeline;

  int world() const { return int(strategy.mesh.size()); }
};

// One device: traces and differentiates a [batch, seq] step.
std::unique_ptr<StepPlan> plan_step(const io::ModelConfig& cfg, int64_t batch, int64_t seq);
// A mesh: the same, traced in logical shapes and propagated over `strategy`. Throws on strategy
// errors (strict mode: implicit communication, naming the op).
std::unique_ptr<StepPlan> plan_step(const io::ModelConfig& cfg, const shard::Strategy& strategy,
                                    int64_t batch, int64_t seq, const shard::Topology& topo);

// A pipeline over `spec.world_size()` ranks: the chunks of `spec`, each stage's strategy over its
// own devices (a preset or rules; required for a stage of several devices), and its schedule over
// `spec.microbatches` micro-batches of a [batch, seq] step, verified. Throws on a stage strategy
// error (naming the stage) or when the micro-batches outnumber the rows.
std::unique_ptr<StepPlan> plan_pipeline(
    const io::ModelConfig& cfg, const mpmd::PipelineSpec& spec, int64_t batch, int64_t seq,
    const shard::Topology& topo = shard::Topology::uniform(20e9, 5e-6, "threads"));

// The forward's cost of each transformer block, the embeddings (first_cost) and the final norm,
// head and loss (last_cost), in units of one decoder block's forward: the FLOPs the op records
// give for the traced chunks at `seq` tokens a row. What balances a pipeline's blocks
// (mpmd::balance_blocks) and prices its chunks (modelled_costs). A vision model's encoder goes
// whole with the embeddings: each of its blocks counts 1, the embeddings and the head 1 each.
mpmd::BalanceInput block_costs(const io::ModelConfig& cfg, int64_t seq);

// Costs for the schedule simulator and `auto` without measurements: a chunk's forward costs its
// blocks, embeddings and head (`costs`, block_costs); its input gradient and its weight gradients
// one forward each (the forward's values are kept), the first chunk's whole backward in W (its
// input has no gradient). The same on a stage of several devices: its devices share the work.
mpmd::CostModel modelled_costs(const mpmd::ChunkGraph& g, const std::vector<nn::Chunk>& chunks,
                               const mpmd::BalanceInput& costs);

using shard::logical_layout;  // the step's parameters are traced in logical shapes

// Bytes one rank holds for parameters, gradients and AdamW state, from the layouts.
size_t planned_state_bytes(const StepPlan& plan, int rank);

// One rank's program (the training step, or the forward alone) and its memory plan.
struct RankProgram {
  int rank = 0;
  shard::Lowered lowered;  // no graph when the plan is not sharded: the global graph is the rank's
  std::vector<ir::ValueId> outputs;  // loss, then (training) one gradient per parameter
  runtime::Program program;
  size_t peak = 0;              // device bytes with no offload (optimizer state included)
  size_t budget = 0;            // resolved device budget (0: unlimited)
  memory::PlanRequest request;  // what the offload plan is asked for (also the cost model)
  std::optional<memory::OffloadPlan> offload;  // absent when nothing is offloaded

  // This rank's id of a value of the global graph.
  ir::ValueId local(ir::ValueId global) const {
    return lowered.graph ? lowered.map[size_t(global)] : global;
  }
};

// Rank `rank`'s training program under `o`, each rank's kernels on `threads` threads: lowered
// (sharded plans), compiled, and planned for offload when a budget or off-device optimizer state
// asks for one. Throws hp::OutOfMemory naming the smallest feasible budget. Not movable (the
// program refers to its graph: the lowered one, or on one device the plan's, which must outlive
// it), hence the pointer.
std::unique_ptr<RankProgram> plan_rank(const StepPlan& plan, int rank,
                                       const memory::OffloadOptions& o, int threads);
// The forward-only program of the same rank, planned under the training program's request.
std::unique_ptr<RankProgram> plan_eval(const StepPlan& plan, const RankProgram& train);

// What a training step's plan is asked for under `o`: the budget resolved against the
// unconstrained peak of `program` with `state_bytes` of AdamW moments (resident on the device when
// they live there), what may move, and the cost model. The kernels' workspace on a team of
// `threads` is kept free of the budget. `peak`, when given, receives the unconstrained peak.
memory::PlanRequest plan_request(const runtime::Program& program, size_t state_bytes,
                                 const memory::OffloadOptions& o, int threads,
                                 size_t* peak = nullptr);

// Whether a step with `budget` (resolved) and unconstrained `peak` is planned at all under `o`:
// with a budget or off-device optimizer state; with `auto`, only when the budget is the smaller.
bool wants_plan(const memory::OffloadOptions& o, size_t budget, size_t peak);

}  // namespace hp::train
