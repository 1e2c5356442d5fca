// `hp bench`: dispatches to the benchmarks of each module (comm, offload) and `hp bench spmd`.
#include <cstdio>

#include "cli/args.hpp"
#include "hp/comm/bench.hpp"
#include "hp/core/error.hpp"

namespace hp::cli {

int bench_spmd(const std::vector<std::string>& argv);     // bench_spmd.cpp
int bench_offload(const std::vector<std::string>& argv);  // bench_offload.cpp

int cmd_bench(const std::vector<std::string>& argv) {
  const char* usage = "usage: hp bench comm|spmd|offload [options] (hp bench <name> --help)";
  if (!argv.empty() && argv[0] == "--help") {
    std::puts(usage);
    return 0;
  }
  HP_CHECK(!argv.empty(), usage);
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (argv[0] == "spmd") return bench_spmd(rest);
  if (argv[0] == "offload") return bench_offload(rest);
  if (argv[0] == "comm") return comm::bench_main(rest);
  throw Error("unknown benchmark '" + argv[0] + "'");
}

}  // namespace hp::cli
