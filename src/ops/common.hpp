// Helpers shared by the op definitions: type checks, broadcasting, costs.
// Not public API.
#pragma once
#include <string>
#include <vector>

#include "hp/ir/op_def.hpp"
#include "hp/ops/registry.hpp"

namespace hp::ops {

using ir::Attrs;
using ir::Cost;
using ir::Linearity;
using ir::LocalizeCtx;
using ir::OpDef;
using ir::OpId;
using ir::PlaceCtx;
using ir::TensorType;
using ir::Var;
using ir::VjpArgs;
using Types = std::vector<TensorType>;

void expect_arity(const Types& in, size_t n);
void expect_float(const TensorType& t, const char* what);
void expect_rank_at_least(const TensorType& t, size_t r, const char* what);
// numpy broadcast of two shapes; throws "shapes [..] and [..] do not broadcast".
Shape broadcast_shapes(const Shape& a, const Shape& b);
// `s` left-padded with 1s to rank r.
Shape align_rank(const Shape& s, size_t r);
double bytes_of(const Types& ts);
// Cost helper: `flops_per_out` flops per output element plus all bytes moved.
Cost elementwise_cost(const Types& in, const Types& out, double flops_per_out);

// Each family registers its ops into the table.
using Table = std::vector<OpDef>;
void register_elementwise(Table& t);
void register_matmul(Table& t);
void register_layout(Table& t);
void register_nn(Table& t);
void register_kv_cache(Table& t);
void register_comm(Table& t);

}  // namespace hp::ops
