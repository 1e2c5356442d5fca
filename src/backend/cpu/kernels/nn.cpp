// CPU kernels of the neural-network ops: softmax, layer / RMS norm, embedding, the cross-entropy
// family, rotary embedding and fused causal attention, each with its backward.
#include <cmath>

#include "backend/cpu/kernels/table.hpp"
#include "hp/backend/cpu/attention.hpp"
#include "hp/backend/cpu/kernels.hpp"

namespace hp::cpu {

namespace {

// The vocabulary shard a node works on (attrs vocab_offset, vocab_total; set by SPMD lowering).
VocabShard shard_of(const ir::Attrs& at) {
  return {at.i("vocab_offset", 0), at.i("vocab_total", 0)};
}

// The optional `count` input of the losses (the targets counted over every rank's rows); -1 when
// absent: the kernel counts the rows it has.
int64_t count_input(const KernelArgs& k, size_t index) {
  return k.in.size() > index ? int64_t(std::llround(k.in[index]->f32()[0])) : -1;
}

// attrs: scale; group and head_offset when a rank holds only some query heads of a group.
AttentionShape attention_shape(const Shape& q, const Shape& kv, const ir::Attrs& at) {
  AttentionShape s;
  s.batch = q[0];
  s.seq = q[1];
  s.heads = q[2];
  s.head_dim = q[3];
  s.kv_heads = kv[2];
  s.scale = float(at.f("scale"));
  s.group = at.i("group", 0);
  s.head_offset = at.i("head_offset", 0);
  return s;
}

void add_norms(KernelTable& t) {
  t.add(OpId::kSoftmax, kernel([](KernelArgs& k) {
          const Shape& s = k.in[0]->shape();
          softmax_fwd(context(k), k.in[0]->f32(), k.out[0]->f32(), rows_of(s), s.back());
        }));
  t.add(OpId::kSoftmaxBwd, kernel([](KernelArgs& k) {
          const Shape& s = k.in[0]->shape();
          softmax_bwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.out[0]->f32(), rows_of(s),
                      s.back());
        }));
  t.add(OpId::kLayerNorm, kernel([](KernelArgs& k) {  // attrs: eps
          const Shape& s = k.in[0]->shape();
          layer_norm_fwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(),
                         k.out[0]->f32(), k.out[1]->f32(), k.out[2]->f32(), rows_of(s), s.back(),
                         float(k.node.attrs.f("eps")));
        }));
  t.add(OpId::kAddLayerNorm, kernel([](KernelArgs& k) {  // attrs: eps
          const Shape& s = k.in[0]->shape();
          add_layer_norm_fwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.out[0]->f32(),
                             k.in[2]->f32(), k.in[3]->f32(), k.out[1]->f32(), k.out[2]->f32(),
                             k.out[3]->f32(), rows_of(s), s.back(), float(k.node.attrs.f("eps")));
        }));
  t.add(OpId::kLayerNormBwd,
        kernel(
            [](KernelArgs& k) {
              const Shape& s = k.in[1]->shape();
              layer_norm_bwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(),
                             k.in[3]->f32(), k.in[4]->f32(), k.out[0]->f32(), k.out[1]->f32(),
                             k.out[2]->f32(), rows_of(s), s.back());
            },
            [](const Types& in, const ir::Attrs&, int) {
              return column_sums_scratch_bytes(rows_of(in[1].shape), in[1].shape.back(), 2);
            }));
  t.add(OpId::kRmsNorm, kernel([](KernelArgs& k) {  // attrs: eps
          const Shape& s = k.in[0]->shape();
          rms_norm_fwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.out[0]->f32(), k.out[1]->f32(),
                       rows_of(s), s.back(), float(k.node.attrs.f("eps")));
        }));
  t.add(OpId::kRmsNormBwd,
        kernel(
            [](KernelArgs& k) {
              const Shape& s = k.in[1]->shape();
              rms_norm_bwd(context(k), k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(),
                           k.in[3]->f32(), k.out[0]->f32(), k.out[1]->f32(), rows_of(s), s.back());
            },
            [](const Types& in, const ir::Attrs&, int) {
              return column_sums_scratch_bytes(rows_of(in[1].shape), in[1].shape.back(), 1);
            }));
}

void add_embedding_and_loss(KernelTable& t) {
  t.add(OpId::kEmbedding, kernel([](KernelArgs& k) {  // attrs: vocab_offset, vocab_total
          const Shape& ts = k.in[0]->shape();
          embedding_fwd(context(k), k.in[0]->f32(), k.in[1]->i64(), k.out[0]->f32(),
                        k.in[1]->numel(), ts[0], ts[1], shard_of(k.node.attrs));
        }));
  t.add(OpId::kEmbeddingBwd, kernel([](KernelArgs& k) {  // attrs: vocab_offset, vocab_total
          const Shape& ts = k.out[0]->shape();
          embedding_bwd(context(k), k.in[0]->f32(), k.in[1]->i64(), k.out[0]->f32(),
                        k.in[1]->numel(), ts[0], ts[1], shard_of(k.node.attrs));
        }));
  t.add(OpId::kCrossEntropy, kernel([](KernelArgs& k) {  // attrs: ignore_index
          const Shape& s = k.in[0]->shape();
          k.out[0]->f32()[0] = cross_entropy_fwd(
              context(k), k.in[0]->f32(), k.in[1]->i64(), k.out[1]->f32(), rows_of(s), s.back(),
              k.node.attrs.i("ignore_index", -100), count_input(k, 2));
        }));
  // attrs: ignore_index, vocab_offset, vocab_total
  t.add(OpId::kCrossEntropyBwd, kernel([](KernelArgs& k) {
          const Shape& s = k.in[0]->shape();
          cross_entropy_bwd(context(k), k.in[0]->f32(), k.in[1]->i64(), k.in[2]->f32(),
                            k.in[3]->f32()[0], k.out[0]->f32(), rows_of(s), s.back(),
                            k.node.attrs.i("ignore_index", -100), shard_of(k.node.attrs),
                            count_input(k, 4));
        }));
  // attrs: ignore_index, vocab_offset, vocab_total
  t.add(OpId::kCrossEntropyParts, kernel([](KernelArgs& k) {
          const Shape& s = k.in[0]->shape();
          cross_entropy_parts(context(k), k.in[0]->f32(), k.in[1]->i64(), k.out[0]->f32(),
                              rows_of(s), s.back(), k.node.attrs.i("ignore_index", -100),
                              shard_of(k.node.attrs));
        }));
  t.add(OpId::kCrossEntropyCombine, kernel([](KernelArgs& k) {  // attrs: ignore_index
          const Shape& s = k.in[0]->shape();
          k.out[0]->f32()[0] = cross_entropy_combine(
              k.in[0]->f32(), k.in[1]->i64(), k.out[1]->f32(), rows_of(s), s.back() / 2,
              k.node.attrs.i("ignore_index", -100), count_input(k, 2));
        }));
  // attrs: ignore_index, vocab (the range targets must lie in)
  t.add(OpId::kCountTargets, kernel([](KernelArgs& k) {
          k.out[0]->f32()[0] =
              float(count_targets(k.in[0]->i64(), k.in[0]->numel(), k.node.attrs.i("vocab"),
                                  k.node.attrs.i("ignore_index", -100), "count_targets"));
        }));
}

void add_positional_and_attention(KernelTable& t) {
  t.add(OpId::kRope,
        kernel(
            [](KernelArgs& k) {  // attrs: theta, offset, inverse; input 1: positions
              const Shape& s = k.in[0]->shape();
              rope(context(k), k.in[0]->f32(), k.out[0]->f32(), s[0], s[1], s[2], s[3],
                   float(k.node.attrs.f("theta")), k.node.attrs.i("offset", 0),
                   k.node.attrs.i("inverse", 0) != 0, k.in.size() > 1 ? k.in[1]->i64() : nullptr);
            },
            [](const Types& in, const ir::Attrs&, int) {
              const Shape& s = in[0].shape;
              return rope_scratch_bytes(in.size() > 1 ? s[0] * s[1] : s[1], s[3]);
            }));
  t.add(OpId::kAttention,
        kernel(
            [](KernelArgs& k) {
              auto s = attention_shape(k.in[0]->shape(), k.in[1]->shape(), k.node.attrs);
              attention_fwd(context(k), s, k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(),
                            k.out[0]->f32(), k.out[1]->f32());
            },
            [](const Types& in, const ir::Attrs& at, int threads) {
              return attention_fwd_scratch_bytes(Context{threads},
                                                 attention_shape(in[0].shape, in[1].shape, at));
            }));
  t.add(OpId::kAttentionBwd,
        kernel(
            [](KernelArgs& k) {
              auto s = attention_shape(k.in[0]->shape(), k.in[1]->shape(), k.node.attrs);
              attention_bwd(context(k), s, k.in[0]->f32(), k.in[1]->f32(), k.in[2]->f32(),
                            k.in[3]->f32(), k.in[4]->f32(), k.in[5]->f32(), k.out[0]->f32(),
                            k.out[1]->f32(), k.out[2]->f32());
            },
            [](const Types& in, const ir::Attrs& at, int threads) {
              return attention_bwd_scratch_bytes(Context{threads},
                                                 attention_shape(in[0].shape, in[1].shape, at));
            }));
}

}  // namespace

void add_nn_kernels(KernelTable& t) {
  add_norms(t);
  add_embedding_and_loss(t);
  add_positional_and_attention(t);
}

}  // namespace hp::cpu
