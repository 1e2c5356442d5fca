// `hp bench`: dispatches to the micro-benchmarks of each module.
#include <cstdio>

#include "cli/args.hpp"
#include "hp/error.hpp"
#ifdef HP_HAVE_COMM
#include "hp/comm/bench.hpp"
#endif

namespace hp::cli {

int cmd_bench(const std::vector<std::string>& argv) {
  HP_CHECK(!argv.empty(), "usage: hp bench comm [options]");
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
#ifdef HP_HAVE_COMM
  if (argv[0] == "comm") return comm::bench_main(rest);
#endif
  throw Error("unknown benchmark '" + argv[0] + "'");
}

}  // namespace hp::cli
