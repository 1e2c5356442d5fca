// bench_comm: the same as `hp bench comm` (src/comm/bench.cpp) without the CLI.
// Not an argument parser: everything after the program name goes to bench_main.
#include <exception>
#include <iostream>

#include "hp/comm/bench.hpp"

int main(int argc, char** argv) {
  try {
    return hp::comm::bench_main(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "bench_comm: " << e.what() << "\n";
    return 1;
  }
}
