// CPU kernels of the elementwise ops: unary maps and their backward, broadcasting binary
// arithmetic, scale, fused bias + gelu, cast.
#include "backend/cpu/kernels/table.hpp"
#include "hp/backend/cpu/kernels.hpp"

namespace hp::cpu {

namespace {

Unary unary_of(OpId op) {
  switch (op) {
    case OpId::kNeg:
      return Unary::kNeg;
    case OpId::kExp:
      return Unary::kExp;
    case OpId::kLog:
      return Unary::kLog;
    case OpId::kSqrt:
      return Unary::kSqrt;
    case OpId::kRsqrt:
      return Unary::kRsqrt;
    case OpId::kTanh:
      return Unary::kTanh;
    case OpId::kGelu:
      return Unary::kGelu;
    case OpId::kSilu:
      return Unary::kSilu;
    case OpId::kRelu:
      return Unary::kRelu;
    case OpId::kSquare:
      return Unary::kSquare;
    default:
      break;
  }
  throw Error("[unary] unknown function '" + ir::op_name(op) + "'");
}

const OpId kUnaryOps[] = {OpId::kNeg,  OpId::kExp,  OpId::kLog,  OpId::kSqrt, OpId::kRsqrt,
                          OpId::kTanh, OpId::kGelu, OpId::kSilu, OpId::kRelu, OpId::kSquare};

const std::pair<OpId, Binary> kBinaryOps[] = {{OpId::kAdd, Binary::kAdd},
                                              {OpId::kSub, Binary::kSub},
                                              {OpId::kMul, Binary::kMul},
                                              {OpId::kDiv, Binary::kDiv}};

}  // namespace

void add_elementwise_kernels(KernelTable& t) {
  for (OpId id : kUnaryOps) {
    const Unary op = unary_of(id);
    t.add(id, kernel([op](KernelArgs& k) {
            unary(context(k), op, k.in[0]->f32(), k.out[0]->f32(), k.out[0]->numel());
          }));
  }
  t.add(OpId::kUnaryBwd, kernel([](KernelArgs& k) {  // attrs: fn (the unary op's name)
          unary_bwd(context(k), unary_of(ir::op_id(k.node.attrs.s("fn"))), k.in[0]->f32(),
                    k.in[1]->f32(), k.in[2]->f32(), k.out[0]->f32(), k.out[0]->numel());
        }));
  for (const auto& [id, op] : kBinaryOps) {
    t.add(id, kernel([op](KernelArgs& k) {
            const Shape& os = k.out[0]->shape();
            binary(context(k), op, k.in[0]->f32(), align_rank(k.in[0]->shape(), os.size()),
                   k.in[1]->f32(), align_rank(k.in[1]->shape(), os.size()), k.out[0]->f32(), os);
          }));
  }
  t.add(OpId::kScale, kernel([](KernelArgs& k) {
          axpby(context(k), k.out[0]->numel(), float(k.node.attrs.f("s")), k.in[0]->f32(), 0.0f,
                k.in[0]->f32(), k.out[0]->f32());
        }));
  t.add(OpId::kBiasGelu, kernel([](KernelArgs& k) {
          int64_t cols = k.in[1]->numel();
          bias_gelu_fwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.out[0]->f32(),
                        k.in[0]->numel() / cols, cols);
        }));
  t.add(OpId::kBiasGeluBwd,
        kernel(
            [](KernelArgs& k) {
              int64_t cols = k.in[1]->numel();
              bias_gelu_bwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(),
                            k.out[0]->f32(), k.out[1]->f32(), k.in[0]->numel() / cols, cols);
            },
            [](const Types& in, const ir::Attrs&, int) {
              const int64_t cols = numel(in[1].shape);
              return column_sums_scratch_bytes(numel(in[0].shape) / cols, cols, 1);
            }));
  runtime::Kernel cast;  // any dtype to any
  cast.run = [](KernelArgs& k) { k.out[0]->copy_from(*k.in[0]); };
  t.add(OpId::kCast, std::move(cast));
}

}  // namespace hp::cpu
