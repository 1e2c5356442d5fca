// The CPU execution context handed to every kernel: how many threads it may use.
// Not a thread pool: kernels use OpenMP teams of exactly `threads` (oneDNN shares that runtime).
#pragma once

namespace hp::cpu {

struct Context {
  int threads = 1;  // >= 1; explicit, never read from the environment
};

}  // namespace hp::cpu
