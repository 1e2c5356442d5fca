// The op table: one OpDef record per op id (hp/ir/op_id.hpp), built once from every src/ops file
// and immutable after. The tracing API (hp/ops/ops.hpp) and graph transforms append nodes with
// these records (ir::Graph::apply).
// Not kernels: those are the backends' (hp/runtime/backend.hpp).
#pragma once
#include "hp/ir/op_def.hpp"
#include "hp/ir/op_id.hpp"

namespace hp::ops {

const ir::OpDef& op_def(ir::OpId id);

}  // namespace hp::ops
