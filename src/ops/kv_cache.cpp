// The KV-cache ops of the inference programs (docs/inference.md): kv_write stores one layer's new
// keys and values in the paged pool, paged_attention attends over a sequence's cached positions
// through its block table, reading offloaded (host) blocks in the host pool or in a staging of
// one layer gathered beforehand. Both run only forward (no VJP). Sharded (tensor-parallel)
// inference splits the pool's kv heads with the query heads, or keeps every kv head on every rank
// when there are fewer kv heads than ranks, as attention does with k and v; the host pool and the
// staging have no sharding rule (offload is for one device).
// Not an allocator: which blocks a sequence holds is the caller's (hp/infer/kv_pool.hpp).
#include "hp/ops/ops.hpp"
#include "ops/common.hpp"

namespace hp::ops {

namespace {

// pool f32 [blocks, layers, 2, block_tokens, Hkv, Dh]; returns nothing, throws naming the input.
void expect_pool(const TensorType& pool, int64_t layer) {
  HP_CHECK(pool.dtype == DType::kF32 && pool.shape.size() == 6 && pool.shape[2] == 2,
           "pool must be f32 [blocks, layers, 2, block_tokens, Hkv, Dh], got ", type_str(pool));
  HP_CHECK(layer >= 0 && layer < pool.shape[1], "layer ", layer, " outside the pool's ",
           pool.shape[1], " layers");
}

void expect_i64(const TensorType& t, const Shape& s, const char* what) {
  HP_CHECK(t.dtype == DType::kI64 && t.shape == s, what, " must be i64", shape_str(s), ", got ",
           type_str(t));
}

// The host pool of an offloaded cache: the device pool's shape but for the block count.
void expect_host(const TensorType& host, const TensorType& pool) {
  HP_CHECK(host.dtype == DType::kF32 && host.shape.size() == 6 &&
               Shape(host.shape.begin() + 1, host.shape.end()) ==
                   Shape(pool.shape.begin() + 1, pool.shape.end()),
           "host pool ", type_str(host), " does not match the pool ", type_str(pool));
}

// A layer's staging: [rows, 2, block_tokens, Hkv, Dh], rows for fetch_slots blocks of each of
// `batch` sequences.
void expect_staging(const TensorType& st, const TensorType& pool, int64_t batch, const Attrs& at) {
  const Shape& s = st.shape;
  HP_CHECK(st.dtype == DType::kF32 && s.size() == 5 &&
               Shape(s.begin() + 1, s.end()) == Shape(pool.shape.begin() + 2, pool.shape.end()) &&
               s[0] >= batch * at.i("fetch_slots"),
           "staging ", type_str(st), " does not hold ", at.i("fetch_slots"), " blocks of ", batch,
           " sequences of the pool ", type_str(pool));
}

// The ids of the sequences' blocks: [B, max_blocks].
void expect_table(const TensorType& t, int64_t batch) {
  HP_CHECK(t.dtype == DType::kI64 && t.shape.size() == 2 && t.shape[0] == batch,
           "block_table must be i64 [", batch, ", max_blocks], got ", type_str(t));
}

// Keys over which a query may attend at most: the block table's capacity.
int64_t capacity(const Types& in, size_t pool, size_t table) {
  return in[table].shape[1] * in[pool].shape[3];
}

void add_kv_write(Table& t) {
  OpDef w;
  // (pool, k [B, T, Hkv, Dh], v, block_table [B, max_blocks], positions [B, T] [, host pool])
  // -> lengths [B]; attrs: layer. Writes into the pool (or the host pool) input in place.
  w.id = OpId::kKvWrite;
  w.infer = [](const Types& in, const Attrs& at) {
    HP_CHECK(in.size() == 5 || in.size() == 6, "expects 5 or 6 inputs, got ", in.size());
    expect_pool(in[0], at.i("layer"));
    if (in.size() == 6) expect_host(in[5], in[0]);
    const Shape& k = in[1].shape;
    HP_CHECK(in[1].dtype == DType::kF32 && k.size() == 4, "k must be f32 [B, T, Hkv, Dh], got ",
             type_str(in[1]));
    HP_CHECK(in[2] == in[1], "v ", type_str(in[2]), " differs from k ", type_str(in[1]));
    HP_CHECK(k[2] == in[0].shape[4] && k[3] == in[0].shape[5], "k ", shape_str(k),
             " does not match the pool's heads and head dim ", shape_str(in[0].shape));
    expect_table(in[3], k[0]);
    expect_i64(in[4], {k[0], k[1]}, "positions");
    return Types{{{k[0]}, DType::kI64}};
  };
  // Each rank writes the kv heads it holds of the pool; the pool is bound in place, so it keeps
  // its own layout and k, v come in it. The lengths are whole whatever splits the heads.
  w.sharding = "NLSRkD,bTkD,bTkD,bM,bT->b";
  w.place = [](PlaceCtx& x) { x.reduced_inside(x.factor(1, 2)); };
  w.cost = [](const Types& in, const Types& out, const Attrs&) {
    return Cost{0, 2 * bytes_of({in[1], in[2]}) + bytes_of({in[3], in[4]}) + bytes_of(out)};
  };
  t.push_back(std::move(w));
}

void add_paged_attention(Table& t) {
  OpDef a;
  // (q [B, T, H, Dh], pool, block_table [B, max_blocks], lengths [B] [, host]) -> out [B, T, H,
  // Dh]; attrs: layer, scale, fetch_slots (> 0: host is a layer's staging, else the host pool);
  // group and head_offset when this rank holds only some query heads of a group with their whole
  // kv head (SPMD lowering sets them).
  a.id = OpId::kPagedAttention;
  a.infer = [](const Types& in, const Attrs& at) {
    HP_CHECK(in.size() == 4 || in.size() == 5, "expects 4 or 5 inputs, got ", in.size());
    const Shape& q = in[0].shape;
    HP_CHECK(in[0].dtype == DType::kF32 && q.size() == 4, "q must be f32 [B, T, H, Dh], got ",
             type_str(in[0]));
    expect_pool(in[1], at.i("layer"));
    HP_CHECK(q[3] == in[1].shape[5], "q's head dim ", q[3], " differs from the pool's ",
             in[1].shape[5]);
    if (const int64_t group = at.i("group", 0); group > 0) {
      const int64_t off = at.i("head_offset", 0);
      HP_CHECK(off >= 0 && (off + q[2] - 1) / group < in[1].shape[4], "query heads [", off, ", ",
               off + q[2], ") in groups of ", group, " need more than the pool's ", in[1].shape[4],
               " kv heads");
    } else {
      HP_CHECK(q[2] % in[1].shape[4] == 0, "query heads ", q[2], " not a multiple of kv heads ",
               in[1].shape[4]);
    }
    expect_table(in[2], q[0]);
    expect_i64(in[3], {q[0]}, "lengths");
    if (in.size() == 5 && at.i("fetch_slots") == 0) expect_host(in[4], in[1]);
    if (in.size() == 5 && at.i("fetch_slots") > 0) expect_staging(in[4], in[1], q[0], at);
    return Types{in[0]};
  };
  a.cost = [](const Types& in, const Types& out, const Attrs&) {
    // Every query against at most the table's capacity of keys: QK^T and PV.
    const Shape& q = in[0].shape;
    const double keys = double(capacity(in, 1, 2));
    const double kv_bytes = 2.0 * keys * double(in[1].shape[4] * q[3] * q[0]) * 4.0;
    return Cost{4.0 * double(numel(q)) * keys, bytes_of({in[0]}) + kv_bytes + bytes_of(out)};
  };
  // Query heads split evenly; the pool's kv heads with them when they divide as evenly, else
  // every rank reads the kv heads of its own query heads from a whole pool (attention's rule).
  a.sharding = "bThD,NLSRkD,bM,b->bThD";
  // The pool is placed first (the largest input), so its axes may have left none for the query
  // heads: those axes then split the query heads too.
  a.place = [](PlaceCtx& x) {
    std::vector<std::string>&h = x.axes(x.factor(0, 2)), &k = x.axes(x.factor(1, 4));
    const std::vector<std::string> axes = h.empty() ? k : h;
    const int64_t n = x.ways(axes);
    if (axes.empty() || x.extent(x.factor(0, 2)) % n != 0) {
      h.clear();
      k.clear();
    } else {
      h = axes;
      k = x.extent(x.factor(1, 4)) % n == 0 ? axes : std::vector<std::string>{};
    }
  };
  // On a rank holding only some query heads: their group size and where they start in it.
  a.localize = [](LocalizeCtx& x) {
    const Shape &q = x.global_in(0), &pool = x.global_in(1);
    if (x.in[0].shape()[2] == q[2]) return;
    const int64_t group = q[2] / pool[4];
    x.attrs.set("group", group);
    x.attrs.set("head_offset", x.in_offset(0, 2) - x.in_offset(1, 4) * group);
  };
  t.push_back(std::move(a));
}

}  // namespace

void register_kv_cache(Table& t) {
  add_kv_write(t);
  add_paged_attention(t);
}

}  // namespace hp::ops

namespace hp {

Var kv_write(Var pool, Var k, Var v, Var block_table, Var positions, int64_t layer, Var host) {
  std::vector<Var> in = {pool, k, v, block_table, positions};
  if (host.defined()) in.push_back(host);
  return pool.g->apply1(ops::op_def(ir::OpId::kKvWrite), in, {{"layer", layer}});
}
Var paged_attention(Var q, Var pool, Var block_table, Var lengths, int64_t layer, double scale,
                    Var host, int64_t fetch_slots) {
  std::vector<Var> in = {q, pool, block_table, lengths};
  if (host.defined()) in.push_back(host);
  return q.g->apply1(ops::op_def(ir::OpId::kPagedAttention), in,
                     {{"layer", layer}, {"scale", scale}, {"fetch_slots", fetch_slots}});
}
}  // namespace hp
