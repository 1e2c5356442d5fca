// Op names, for printing and parsing.
#include "hp/ir/op_id.hpp"

#include <array>

#include "hp/core/error.hpp"

namespace hp::ir {

namespace {
const std::array<std::string, kOpCount>& names() {
  static const std::array<std::string, kOpCount> n = {
#define HP_OP_NAME(id, name) name,
      HP_OP_IDS(HP_OP_NAME)
#undef HP_OP_NAME
  };
  return n;
}
}  // namespace

const std::string& op_name(OpId id) {
  HP_CHECK(size_t(id) < kOpCount, "[ops] no op has id ", size_t(id));
  return names()[size_t(id)];
}

OpId op_id(std::string_view name) {
  const auto& n = names();
  for (size_t i = 0; i < n.size(); ++i)
    if (n[i] == name) return OpId(i);
  throw Error("[ops] unknown op '" + std::string(name) + "'");
}

}  // namespace hp::ir
