// Activation offload of a pipeline schedule: where a rank's budget cannot hold every micro-batch
// its forwards keep for their backwards, OFFLOAD actions move some of them to the host tier and
// RELOAD actions bring each back right before its backward, chosen per rank in list order (the
// micro-batch whose backward is furthest goes first, as Belady's rule evicts). The result is a
// schedule like any other: the verifier checks the pairs and the memory, the simulator charges
// each move its act_bytes over CostModel::host_link on the rank's own time.
// Not the runtime (StageRunner carries the moves out) and not for the values a split backward
// keeps from B to W: those stay on the device.
#pragma once
#include <vector>

#include "hp/mpmd/cost.hpp"
#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

// Per rank, the smallest activation budget (act_bytes units) any offload of `s` meets: at each
// action, what B kept for W so far, plus the act_bytes of the micro-batch the action works on.
std::vector<double> least_offload_budget(const Schedule& s, const CostModel& costs);

// `s` with OFFLOAD / RELOAD actions on every rank whose costs.memory_budget (> 0) its activations
// exceed; ranks within budget, or without one, keep their lists. The moves go as late as they
// can: an OFFLOAD right before the action that needs the room, a RELOAD right before the
// backward. Throws hp::Error naming the rank, the action and least_offload_budget when a budget
// is below it.
Schedule plan_activation_offload(const Schedule& s, const CostModel& costs);

}  // namespace hp::mpmd
