// The registry of linked backends and the dtype query every backend shares.
#include "hp/runtime/backend.hpp"

#include <map>
#include <mutex>

namespace hp::runtime {

namespace {
struct Registry {
  std::mutex mu;
  std::map<std::string, const Backend*, std::less<>> by_name;
};
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

bool Backend::supports(ir::OpId op, const std::vector<DType>& dtypes) const {
  const Kernel* k = kernel(op);
  return k && (!k->accepts || k->accepts(dtypes));
}

void register_backend(const Backend& b) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  HP_CHECK(r.by_name.emplace(std::string(b.name()), &b).second, "[backend] '", b.name(),
           "' registered twice");
}

const Backend& backend(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.by_name.find(name);
  if (it != r.by_name.end()) return *it->second;
  std::string have;
  for (auto& [n, b] : r.by_name) have += (have.empty() ? "" : ", ") + n;
  throw Error(detail::cat("[backend] no backend '", name,
                          "' is linked in (linked: ", have.empty() ? "none" : have, ")"));
}

const Backend& default_backend() {
  return backend("cpu");
}

}  // namespace hp::runtime
