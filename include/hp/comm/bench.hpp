// `hp bench comm`: collective bandwidth per message size, nccl-tests style, next to this machine's
// memcpy bandwidth (threads) or the same MPI collective called directly (mpi).
// Not a general benchmark harness: a fixed set of collectives on f32 buffers.
#pragma once
#include <string>
#include <vector>

namespace hp::comm {

// args: [--devices threads:N|mpi] [--min-bytes B] [--max-bytes B] [--iters K] [--warmup W]
// (sizes as hp::parse_bytes reads them). Prints a table to stdout; returns an exit code.
int bench_main(const std::vector<std::string>& args);

}  // namespace hp::comm
