// StageRunner: one rank's part of a pipeline step. It runs the verified schedule's actions for the
// chunks this rank holds. A chunk's training step (the forward, then the gradients of
// sum(x_out * g_out), or of the head's loss, with respect to its parameters and x_in) is cut in
// parts (ir::split_graph): F runs the forward and keeps the values the backward reads; B computes
// x_in's gradient and W the parameter gradients (schedules with B and W apart, zero-bubble), or BW
// both; the weighted parameter gradients go into the accumulators and x_in's gradient goes back.
// On a stage of several devices the step cut is the chunk's step propagated over the stage's
// strategy and lowered for this rank (SPMD on the stage's own sub-mesh, its collectives over the
// stage's communicator, in the parts that need them: every rank of the stage runs the same parts
// in the same order). Programs are compiled per micro-batch row count (at most two when the rows
// do not divide evenly). Activations and their gradients cross the boundary between two stages
// as the parts each receiving rank's piece needs, sent point-to-point by the one copy of each
// part on the sending stage (boundary_parts). A schedule with OFFLOAD and RELOAD actions
// (mpmd::plan_activation_offload, adopted by offload_activations) moves what a micro-batch's
// forward kept to the host tier and back, by the transfer engine. Used by train::Trainer; not a
// trainer itself: clipping and AdamW stay there.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "hp/comm/communicator.hpp"
#include "hp/memory/transfer.hpp"
#include "hp/mpmd/simulate.hpp"
#include "hp/runtime/executor.hpp"
#include "hp/shard/comm.hpp"
#include "hp/train/plan.hpp"

namespace hp::train {

// Point-to-point tags: a boundary message's is below kSharedGradTag; the tied parameters' gradient
// exchange uses kSharedGradTag + parameter index (backends take tags below 30000).
inline constexpr int kSharedGradTag = 20000;

// One part of a tensor moving from one stage's layout to another's: the box (global coordinates)
// that world rank `from` sends and world rank `to` receives.
struct BoundaryPart {
  int from = 0, to = 0;
  shard::Box box;
};
// Every part of a `shape` tensor laid out as `lf` on stage `from` that stage `to` needs in `lt`:
// each receiving rank's piece intersected with the pieces of the sending ranks that hold the one
// copy sent (coordinate 0 on the mesh axes `lf` leaves unused). Non-empty parts only.
std::vector<BoundaryPart> boundary_parts(const Shape& shape, const StagePlan& from,
                                         const shard::Layout& lf, const StagePlan& to,
                                         const shard::Layout& lt);
// The sub-box `box` of `piece` (which holds `piece_box`), as a tensor of its own; and its inverse,
// writing `part` into `piece` at `box`.
Tensor extract_box(const Tensor& piece, const shard::Box& piece_box, const shard::Box& box);
void insert_box(Tensor& piece, const shard::Box& piece_box, const shard::Box& box,
                const Tensor& part);

class StageRunner {
 public:
  // `plan` (with a pipeline) must outlive the runner; kernels run on `threads` threads; every
  // receive waits at most `timeout`.
  StageRunner(const StepPlan& plan, comm::Communicator& world, int threads,
              std::shared_ptr<Allocator> device, std::chrono::milliseconds timeout);
  ~StageRunner();

  // The parameters this rank's chunks read, as indices into plan.infos, ascending.
  const std::vector<size_t>& param_ids() const { return ids_; }
  // This rank's parameter tensors (params[k] is plan.infos[param_ids()[k]]), held by handle: the
  // programs read and the optimizer updates the same storage. Before the first run.
  void bind_params(const std::vector<Tensor>& params);

  // One global batch through the schedule: accum[k] += weight * d(batch loss)/d(params[k]) (the
  // batch loss being the mean over the batch's counted targets, as on one device). Returns the
  // batch loss, the same on every rank.
  double run(const Tensor& tokens, const Tensor& targets, double weight,
             std::vector<Tensor>& accum);
  // After the step's run() calls: sums the parameter gradients that the programs left partial
  // over the stage's data axes (StagePlan::grad_layout), one all-reduce per group of axes.
  // Collective over the stage; nothing on a one-device stage.
  void reduce_grads(std::vector<Tensor>& accum);
  // The loss of one global batch, forward only, as one micro-batch through the chunks in order.
  double eval(const Tensor& tokens, const Tensor& targets);
  // What this rank holds on its device besides its parameters, gradients and optimizer state,
  // for a budget checked before the first step: compiles every program its chunks run (each
  // training micro-batch row count, and the forward over the whole batch for eval), whose arenas
  // and outputs are then allocated, and gives per chunk of the schedule (0 for other ranks'
  // chunks) the bytes one micro-batch keeps on the device from its F to the end of its B or BW
  // (`act`) and from its B to its W (`w`), at the largest row count; and the kernels' largest
  // workspace. Kept values live on the device allocator from then on.
  struct DeviceNeeds {
    std::vector<double> act, w;
    size_t scratch = 0;
  };
  DeviceNeeds prepare_device();
  // FLOPs of one global batch's forwards and backwards on this rank.
  double flops_per_batch();

  // Each chunk's forward (F), input-gradient (B or BW) and weight-gradient (W; 0 when fused)
  // seconds in the last run(), mean over its micro-batches, for every
  // chunk (collective): the costs of a profiling step.
  std::vector<mpmd::ChunkCost> measured_costs();
  // Runs the schedule's policy ordered at `costs` from the next run() on (mpmd::schedule_at_costs,
  // verified; every rank must pass the same costs, as measured_costs gives them) when the
  // simulator says it is faster at those costs. Keeps the current order, returning false, when it
  // is not, or when it splits the backward differently from what this rank's programs were built
  // for.
  bool reorder(const mpmd::CostModel& costs);
  // Runs `s` (this schedule with OFFLOAD / RELOAD actions, verified by the caller) from the next
  // run() on: an OFFLOAD copies the micro-batch's kept values into `host` and frees their device
  // buffers, a RELOAD copies them back; both by `copies`, waited for at once. `host` and
  // `copies` must outlive the runner. reorder() keeps such a schedule as it is.
  void offload_activations(mpmd::Schedule s, std::shared_ptr<Allocator> host,
                           memory::TransferEngine& copies);
  const mpmd::Schedule& schedule() const { return schedule_; }
  // Every action of the last run() (compute, SEND, RECV) with its start and end, seconds from the
  // run's start.
  const std::vector<mpmd::Interval>& timeline() const { return timeline_; }

  // The stage holding chunk `c` (the schedule's rank of it).
  int rank_of_chunk(int c) const;
  // For each parameter of plan.infos, the lowest stage holding it (its owner in gathers and in
  // the gradient norm), and every stage holding it, ascending (two for a tied embedding on
  // different stages).
  const std::vector<int>& owners() const { return owner_; }
  const std::vector<int>& holders(size_t i) const { return holders_[i]; }
  // This rank's stage, its plan and this rank's position in it; the stage's communicator (null
  // for a one-device stage).
  int stage() const { return stage_; }
  const StagePlan& stage_plan() const { return pp_.stages[size_t(stage_)]; }
  int local_rank() const { return local_; }
  shard::RankComm* stage_comm() { return rc_.get(); }

 private:
  struct Programs;  // one chunk's compiled programs for one row count
  struct Flight;    // one micro-batch of one chunk between its forward and its backward
  Programs& programs(int chunk, int64_t rows, bool train);
  void forward(int chunk, int mb);
  void backward(int chunk, int mb, std::vector<Tensor>& accum);      // B or BW
  void weight_grads(int chunk, int mb, std::vector<Tensor>& accum);  // W
  // OFFLOAD (to `host_`) or RELOAD (to the device) of a micro-batch's kept values.
  void move_kept(int chunk, int mb, bool to_host);
  // Runs part `k` of the chunk's cut step for a micro-batch in flight: binds its inputs from the
  // flight, keeps in it what later parts read, adds the parameter gradients it computes into
  // `accum`; returns its outputs by value of the chunk's step (valid until its next run).
  std::map<ir::ValueId, Tensor> run_part(int chunk, size_t k, Flight& f, int mb,
                                         std::vector<Tensor>& accum);
  // accum[position of chunk parameter j] += scale * weight * g.
  void accumulate(const Programs& P, size_t j, const Tensor& g, float scale,
                  std::vector<Tensor>& accum);
  // Sends this rank's parts of `piece` (its piece of a boundary_shape tensor) to stage
  // `peer`; receives this rank's piece from stage `peer`.
  void send(const Tensor& piece, int64_t rows, int peer, int tag);
  Tensor recv(int64_t rows, int peer, int tag);
  Shape boundary_shape(int64_t rows) const {
    return {rows, nn::boundary_seq(plan_.cfg, plan_.seq), plan_.cfg.d_model};
  }
  // This rank's piece of rows [first, first + n) of a [batch, ...] i64 input in `layout`.
  Tensor input_piece(const Tensor& t, int64_t first, int64_t n, const shard::Layout& layout) const;
  int tag(int consumer_chunk, int mb, bool grad) const;
  double broadcast_loss(double loss);  // from the rank of the last chunk to every rank

  const StepPlan& plan_;
  const PipelinePlan& pp_;
  mpmd::Schedule schedule_;  // pp_.schedule, or its policy reordered at measured costs
  comm::Communicator& world_;
  runtime::Context ctx_;
  std::shared_ptr<Allocator> device_, host_;  // host_: the tier OFFLOAD moves to
  memory::TransferEngine* copies_ = nullptr;
  std::chrono::milliseconds timeout_;
  int stage_ = 0, local_ = 0;
  bool split_ = false;                               // B apart from W (a schedule with W)
  std::unique_ptr<comm::Communicator> stage_world_;  // the stage's ranks (several devices)
  std::unique_ptr<shard::RankComm> rc_;              // its mesh over them
  std::vector<size_t> ids_;
  std::vector<int> owner_;
  std::vector<std::vector<int>> holders_;
  std::vector<Tensor> params_;
  std::map<std::tuple<int, int64_t, bool>, std::unique_ptr<Programs>> programs_;
  // The batch in flight: its micro-batches' rows, tokens and targets, weights.
  std::vector<std::pair<int64_t, int64_t>> rows_;  // (first row, rows) per micro-batch
  Tensor tokens_, targets_;
  std::vector<double> weights_;  // each micro-batch's share of the batch's counted targets
  float weight_ = 1;             // the batch's own weight in the step
  std::map<std::pair<int, int>, Flight> flights_;  // by (chunk, micro-batch)
  // Computed, not yet sent: by (producing chunk, micro-batch, gradient).
  std::map<std::tuple<int, int, bool>, Tensor> outgoing_;
  std::vector<std::pair<comm::Work, Tensor>> sends_;  // posted sends and their buffers
  double loss_ = 0;
  std::vector<mpmd::Interval> timeline_;
};

}  // namespace hp::train
