// `hp bench offload`: GPT-2 training throughput and peak device memory with no budget, with the
// device budget at 50% and 25% of the unconstrained peak, and with optimizer state on disk.
// Not a Google Benchmark target: it trains real steps and prints ratios to the unconstrained run.
#pragma once
#include <string>
#include <vector>

namespace hp::memory {

// Options: --layers N --d-model D --heads H --seq T --batch B --vocab V --steps S --threads N
// --offload-dir DIR --explain. Prints a table; returns a process exit code.
int bench_main(const std::vector<std::string>& args);

}  // namespace hp::memory
