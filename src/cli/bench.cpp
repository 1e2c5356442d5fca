// `hp bench`: dispatches to `hp bench comm|spmd|pipeline|offload|context|steps` (bench_comm.cpp,
// bench_spmd.cpp, bench_pipeline.cpp, bench_offload.cpp, bench_context.cpp, bench_steps.cpp).
#include <cstdio>

#include "cli/args.hpp"
#include "hp/core/error.hpp"

namespace hp::cli {

int bench_spmd(const std::vector<std::string>& argv);      // bench_spmd.cpp
int bench_offload(const std::vector<std::string>& argv);   // bench_offload.cpp
int bench_comm(const std::vector<std::string>& argv);      // bench_comm.cpp
int bench_pipeline(const std::vector<std::string>& argv);  // bench_pipeline.cpp
int bench_context(const std::vector<std::string>& argv);   // bench_context.cpp
int bench_steps(const std::vector<std::string>& argv);     // bench_steps.cpp

int cmd_bench(const std::vector<std::string>& argv) {
  const char* usage =
      "usage: hp bench comm|spmd|pipeline|offload|context|steps [options] (hp bench <name> --help)";
  if (!argv.empty() && argv[0] == "--help") {
    std::puts(usage);
    return 0;
  }
  HP_CHECK(!argv.empty(), usage);
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (argv[0] == "spmd") return bench_spmd(rest);
  if (argv[0] == "offload") return bench_offload(rest);
  if (argv[0] == "comm") return bench_comm(rest);
  if (argv[0] == "pipeline") return bench_pipeline(rest);
  if (argv[0] == "context") return bench_context(rest);
  if (argv[0] == "steps") return bench_steps(rest);
  throw Error("unknown benchmark '" + argv[0] + "'");
}

}  // namespace hp::cli
