// How values from several ranks (or partial values of one layout) combine: the one ReduceOp of
// the project, used by the communicators and by shard's partial layouts.
#pragma once
#include <cstdint>

namespace hp::comm {

// kAvg is a collective's (sum / ranks); a layout's partial values are sum, max or min.
enum class ReduceOp : uint8_t { kSum, kAvg, kMax, kMin };
const char* reduce_op_name(ReduceOp op);  // "sum", "avg", "max", "min"

}  // namespace hp::comm
