// Shared by the mpmd tests: where an action (by its printed form) sits in a rank's list.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hp/mpmd/schedule.hpp"

namespace hp::mpmd {

inline size_t find_action(const std::vector<Action>& list, const std::string& what) {
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i].str() == what) return i;
  ADD_FAILURE() << "no action " << what;
  return 0;
}

}  // namespace hp::mpmd
