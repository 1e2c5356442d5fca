#include "cli/args.hpp"
#include "hp/error.hpp"
namespace hp::cli {
int cmd_train(const std::vector<std::string>&) { throw Error("todo"); }
int cmd_generate(const std::vector<std::string>&) { throw Error("todo"); }
int cmd_bench(const std::vector<std::string>&) { throw Error("todo"); }
}
