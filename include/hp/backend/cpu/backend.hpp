// The CPU backend: a kernel for every op that computes (hp/ir/op_id.hpp) over the kernels of
// hp/backend/cpu/*.hpp, and the optimizer's fused vector math. Linked into a program, it registers
// itself as runtime::backend("cpu"), the default backend.
// Not where the kernels' maths lives (kernels.hpp, gemm.hpp, attention.hpp).
#pragma once
#include "hp/runtime/backend.hpp"

namespace hp::cpu {

const runtime::Backend& backend();

}  // namespace hp::cpu
