// CPU kernels of the communication ops: each hands its node to the rank's CommRunner.
#include "backend/cpu/kernels/table.hpp"

namespace hp::cpu {

namespace {

runtime::CommRunner& runner(KernelArgs& k) {
  HP_CHECK(k.comm, "a communication node needs a CommRunner (Executor::set_comm_runner)");
  return *k.comm;
}

runtime::Kernel any_dtype(std::function<void(KernelArgs&)> run) {
  runtime::Kernel k;
  k.run = std::move(run);
  return k;
}

}  // namespace

void add_comm_kernels(KernelTable& t) {
  t.add(OpId::kRedistribute, any_dtype([](KernelArgs& k) { runner(k).run(k); }));
  t.add(OpId::kRedistributeStart, any_dtype([](KernelArgs& k) { runner(k).start(k); }));
  t.add(OpId::kRedistributeWait, any_dtype([](KernelArgs& k) { runner(k).finish(k); }));
}

}  // namespace hp::cpu
