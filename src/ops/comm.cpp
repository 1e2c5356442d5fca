// Communication ops of SPMD programs: "redistribute" moves one tensor from one layout to another
// (collectives along mesh axes). Its kernel runs through the rank's ir::CommRunner.
// Not in model graphs: only the SPMD lowering (hp/shard/lower.hpp) inserts these nodes.
#include "ops/common.hpp"

namespace hp::ops {

void register_comm(Table& t) {
  OpDef d;
  d.name = "redistribute";  // attrs: shape (local output), global, from, to, steps (the plan)
  d.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    return Types{{at.ints("shape"), in[0].dtype}};
  };
  d.sharding = "redistribute";
  d.cpu = [](KernelArgs& k) {
    HP_CHECK(k.comm, "a communication node needs a CommRunner (Executor::set_comm_runner)");
    k.comm->run(k);
  };
  t.push_back(std::move(d));
}

}  // namespace hp::ops
