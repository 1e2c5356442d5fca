// Tests that read an input from outside the tree (the PyTorch reference cases in ../shared, an
// installed data package): when it is missing a newcomer gets a skip that names it, and a CI run
// (CI=true, as GitHub and GitLab set it) a failure, since a CI must not pass by running less.
// Read at test run time, like tests/missing_input.sh for the tests CMake could not register.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace hp::test_inputs {

inline bool under_ci() {
  const char* ci = std::getenv("CI");
  const std::string v = ci ? ci : "";
  return v == "true" || v == "TRUE" || v == "True" || v == "1";
}

}  // namespace hp::test_inputs

// In a test body: ends the test when `present` is false, as a failure under CI, else a skip.
#define HP_REQUIRE_INPUT(present, what)                                                     \
  do {                                                                                      \
    if (!(present)) {                                                                       \
      if (::hp::test_inputs::under_ci()) FAIL() << (what) << " is missing (CI=true)";      \
      GTEST_SKIP() << (what) << " is missing";                                              \
    }                                                                                       \
  } while (0)
