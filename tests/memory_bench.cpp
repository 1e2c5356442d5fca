// Runs hp::memory::bench_main (the body of `hp bench offload`) as a standalone program.
// Not a test: it trains for minutes at the default GPT-2 size.
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "hp/memory/bench.hpp"

int main(int argc, char** argv) {
  try {
    return hp::memory::bench_main(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
