// Op ids: the one list of op identities, shared by the op records (src/ops/), the graph's nodes
// and the kernel tables of the backends (src/backend/). An id, not the record: a backend includes
// this header and never hp/ir/op_def.hpp. Names are for printing and parsing only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hp::ir {

// X(id, "name") for every op, in one place.
#define HP_OP_IDS(X)                               \
  X(kNeg, "neg")                                   \
  X(kExp, "exp")                                   \
  X(kLog, "log")                                   \
  X(kSqrt, "sqrt")                                 \
  X(kRsqrt, "rsqrt")                               \
  X(kTanh, "tanh")                                 \
  X(kGelu, "gelu")                                 \
  X(kSilu, "silu")                                 \
  X(kRelu, "relu")                                 \
  X(kSquare, "square")                             \
  X(kUnaryBwd, "unary_bwd")                        \
  X(kAdd, "add")                                   \
  X(kSub, "sub")                                   \
  X(kMul, "mul")                                   \
  X(kDiv, "div")                                   \
  X(kScale, "scale")                               \
  X(kBiasGelu, "bias_gelu")                        \
  X(kBiasGeluBwd, "bias_gelu_bwd")                 \
  X(kCast, "cast")                                 \
  X(kMatmul, "matmul")                             \
  X(kReduce, "reduce")                             \
  X(kMaxBwd, "max_bwd")                            \
  X(kSumTo, "sum_to")                              \
  X(kBroadcastTo, "broadcast_to")                  \
  X(kFull, "full")                                 \
  X(kReshape, "reshape")                           \
  X(kPermute, "permute")                           \
  X(kSlice, "slice")                               \
  X(kSliceBwd, "slice_bwd")                        \
  X(kSplit, "split")                               \
  X(kConcat, "concat")                             \
  X(kSoftmax, "softmax")                           \
  X(kSoftmaxBwd, "softmax_bwd")                    \
  X(kLayerNorm, "layer_norm")                      \
  X(kAddLayerNorm, "add_layer_norm")               \
  X(kLayerNormBwd, "layer_norm_bwd")               \
  X(kRmsNorm, "rms_norm")                          \
  X(kRmsNormBwd, "rms_norm_bwd")                   \
  X(kEmbedding, "embedding")                       \
  X(kEmbeddingBwd, "embedding_bwd")                \
  X(kCrossEntropy, "cross_entropy")                \
  X(kCrossEntropyBwd, "cross_entropy_bwd")         \
  X(kCrossEntropyParts, "cross_entropy_parts")     \
  X(kCrossEntropyCombine, "cross_entropy_combine") \
  X(kCountTargets, "count_targets")                \
  X(kRope, "rope")                                 \
  X(kAttention, "attention")                       \
  X(kAttentionBwd, "attention_bwd")                \
  X(kKvWrite, "kv_write")                          \
  X(kPagedAttention, "paged_attention")            \
  X(kRedistribute, "redistribute")                 \
  X(kRedistributeStart, "redistribute_start")      \
  X(kRedistributeWait, "redistribute_wait")

enum class OpId : uint16_t {
#define HP_OP_ENUM(id, name) id,
  HP_OP_IDS(HP_OP_ENUM)
#undef HP_OP_ENUM
};

#define HP_OP_COUNT(id, name) +1
inline constexpr size_t kOpCount = 0 HP_OP_IDS(HP_OP_COUNT);
#undef HP_OP_COUNT

// "matmul" for OpId::kMatmul.
const std::string& op_name(OpId id);
// The id named `name`; throws hp::Error "[ops] unknown op 'name'".
OpId op_id(std::string_view name);

}  // namespace hp::ir
