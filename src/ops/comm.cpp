// Communication ops of SPMD programs: "redistribute" moves one tensor from one layout to another
// (collectives along mesh axes); "redistribute_start" issues a move and returns at once (a scalar
// placeholder out), "redistribute_wait" blocks for it and yields the moved tensor, so compute
// placed between the two overlaps the communication. Kernels run through the rank's CommRunner.
// Not in model graphs: only the SPMD lowering (hp/shard/lower.hpp) inserts these nodes.
#include "ops/common.hpp"

namespace hp::ops {

void register_comm(Table& t) {
  OpDef d;
  d.id = OpId::kRedistribute;  // attrs: shape (local output), plan (index in Lowered::plans)
  d.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    return Types{{at.ints("shape"), in[0].dtype}};
  };
  d.sharding = "redistribute";
  t.push_back(std::move(d));

  OpDef st;
  st.id = OpId::kRedistributeStart;  // attrs: key; one input: plan (index in Lowered::plans);
                                     // more: axis, reduce (a bucket of all-reduces)
  st.infer = [](const Types& in, const Attrs&) {
    HP_CHECK(!in.empty(), "[redistribute_start] needs at least one input");
    return Types{{Shape{}, in[0].dtype}};
  };
  t.push_back(std::move(st));

  OpDef wt;
  wt.id = OpId::kRedistributeWait;  // attrs: key, index (piece of a bucket), shape (local output)
  wt.infer = [](const Types& in, const Attrs& at) {
    expect_arity(in, 1);
    return Types{{at.ints("shape"), in[0].dtype}};
  };
  t.push_back(std::move(wt));
}

}  // namespace hp::ops
