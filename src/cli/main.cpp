// The `hp` tool: one binary, subcommands train, check, generate, serve, bench, plan,
// calibrate, ckpt.
// Not a library entry point: options are parsed here into typed structs, once.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "hp/core/error.hpp"

namespace {
const char* kUsage =
    "usage: hp <command> [options]\n"
    "  train     train a GPT-2 or Llama model (hp train --help)\n"
    "  check     replay a reference case and compare against expected values\n"
    "  generate  sample text from a checkpoint\n"
    "  serve     an OpenAI-compatible HTTP server for a model\n"
    "  ckpt      inspect, verify, export or import a sharded checkpoint\n"
    "  plan      show layouts, collectives and per-device memory of a strategy\n"
    "  calibrate measure this machine for the planner (--cluster local)\n"
    "  bench     micro-benchmarks: comm, spmd, offload, context\n";
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  std::string cmd = args[0];
  args.erase(args.begin());
  try {
    if (cmd == "train") return hp::cli::cmd_train(args);
    if (cmd == "check") return hp::cli::cmd_check(args);
    if (cmd == "generate") return hp::cli::cmd_generate(args);
    if (cmd == "serve") return hp::cli::cmd_serve(args);
    if (cmd == "bench") return hp::cli::cmd_bench(args);
    if (cmd == "plan") return hp::cli::cmd_plan(args);
    if (cmd == "calibrate") return hp::cli::cmd_calibrate(args);
    if (cmd == "ckpt") return hp::cli::cmd_ckpt(args);
    std::fprintf(stderr, "hp: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const hp::Error& e) {
    std::fprintf(stderr, "hp %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hp %s: unexpected error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
