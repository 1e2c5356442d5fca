// Elementwise CPU kernels: unary maps and their backward, broadcasting binary ops, axpby,
// broadcast_to, and the fused bias + gelu pair.
// Not shape-checked beyond rank agreement: the ops' type inference validates shapes first.
#include <cstring>
#include <utility>

#include "backend/cpu/vec_math.hpp"
#include "hp/backend/cpu/kernels.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {
namespace {

using detail::kMinParallel;
using detail::kMinParallelHeavy;
using detail::map1;
using detail::map2;
using detail::parallel_range;

bool is_heavy(Unary op) {
  return op == Unary::kExp || op == Unary::kLog || op == Unary::kTanh || op == Unary::kGelu ||
         op == Unary::kSilu;
}

void unary_rows(Unary op, const float* x, float* y, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 one = _mm256_set1_ps(1.0f);
  switch (op) {
    case Unary::kNeg:
      map1(x, y, n, [&](__m256 v) { return _mm256_sub_ps(zero, v); });
      break;
    case Unary::kExp:
      map1(x, y, n, detail::vexp);
      break;
    case Unary::kLog:
      map1(x, y, n, detail::vlog);
      break;
    case Unary::kSqrt:
      map1(x, y, n, [](__m256 v) { return _mm256_sqrt_ps(v); });
      break;
    case Unary::kRsqrt:
      // A true division, not RSQRTPS: the 12-bit estimate is far from f32 accuracy.
      map1(x, y, n, [&](__m256 v) { return _mm256_div_ps(one, _mm256_sqrt_ps(v)); });
      break;
    case Unary::kTanh:
      map1(x, y, n, detail::vtanh);
      break;
    case Unary::kGelu:
      map1(x, y, n, detail::vgelu);
      break;
    case Unary::kSilu:
      map1(x, y, n, detail::vsilu);
      break;
    case Unary::kRelu:
      // MAXPS returns its second operand for NaN, so NaN inputs stay NaN.
      map1(x, y, n, [&](__m256 v) { return _mm256_max_ps(zero, v); });
      break;
    case Unary::kSquare:
      map1(x, y, n, [](__m256 v) { return _mm256_mul_ps(v, v); });
      break;
  }
}

void unary_bwd_rows(Unary op, const float* x, const float* y, const float* dy, float* dx,
                    int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  switch (op) {
    case Unary::kNeg:
      map1(dy, dx, n, [&](__m256 g) { return _mm256_sub_ps(zero, g); });
      break;
    case Unary::kExp:
      map2(y, dy, dx, n, [](__m256 v, __m256 g) { return _mm256_mul_ps(v, g); });
      break;
    case Unary::kLog:
      map2(x, dy, dx, n, [](__m256 v, __m256 g) { return _mm256_div_ps(g, v); });
      break;
    case Unary::kSqrt: {
      const __m256 half = _mm256_set1_ps(0.5f);
      map2(y, dy, dx, n,
           [&](__m256 v, __m256 g) { return _mm256_div_ps(_mm256_mul_ps(g, half), v); });
      break;
    }
    case Unary::kRsqrt: {
      // d x^-1/2 = -x^-3/2 / 2 = -y^3 / 2.
      const __m256 mhalf = _mm256_set1_ps(-0.5f);
      map2(y, dy, dx, n, [&](__m256 v, __m256 g) {
        return _mm256_mul_ps(_mm256_mul_ps(g, mhalf), _mm256_mul_ps(v, _mm256_mul_ps(v, v)));
      });
      break;
    }
    case Unary::kTanh: {
      const __m256 one = _mm256_set1_ps(1.0f);
      map2(y, dy, dx, n,
           [&](__m256 v, __m256 g) { return _mm256_mul_ps(g, _mm256_fnmadd_ps(v, v, one)); });
      break;
    }
    case Unary::kGelu:
      map2(x, dy, dx, n,
           [](__m256 v, __m256 g) { return _mm256_mul_ps(g, detail::vgelu_grad(v)); });
      break;
    case Unary::kSilu:
      map2(x, dy, dx, n,
           [](__m256 v, __m256 g) { return _mm256_mul_ps(g, detail::vsilu_grad(v)); });
      break;
    case Unary::kRelu:
      map2(x, dy, dx, n, [&](__m256 v, __m256 g) {
        return _mm256_and_ps(g, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
      });
      break;
    case Unary::kSquare: {
      const __m256 two = _mm256_set1_ps(2.0f);
      map2(x, dy, dx, n,
           [&](__m256 v, __m256 g) { return _mm256_mul_ps(_mm256_mul_ps(v, two), g); });
      break;
    }
  }
}

// ---- broadcasting ----------------------------------------------------------------------------

// Output dims with size-1 dims dropped and neighbours merged where both inputs stay linear;
// per-input element strides, 0 where the input broadcasts. Never empty: a scalar is {1}.
struct Plan {
  Dims dims, sa, sb;
};

Plan make_plan(const Dims& out, const Dims& a, const Dims& b, const char* who) {
  HP_CHECK(a.size() == out.size() && b.size() == out.size(), "[", who,
           "] operand ranks differ from the output rank ", out.size());
  const size_t rank = out.size();
  Dims ast(rank), bst(rank);
  int64_t sa = 1, sb = 1;
  for (size_t k = rank; k-- > 0;) {
    HP_CHECK((a[k] == out[k] || a[k] == 1) && (b[k] == out[k] || b[k] == 1), "[", who, "] dim ", k,
             " does not broadcast: ", a[k], ", ", b[k], " -> ", out[k]);
    ast[k] = a[k] == 1 ? 0 : sa;
    bst[k] = b[k] == 1 ? 0 : sb;
    sa *= a[k];
    sb *= b[k];
  }
  Plan p;
  for (size_t k = 0; k < rank; ++k) {
    if (out[k] == 1) continue;
    if (!p.dims.empty() && p.sa.back() == ast[k] * out[k] && p.sb.back() == bst[k] * out[k]) {
      p.dims.back() *= out[k];
      p.sa.back() = ast[k];
      p.sb.back() = bst[k];
    } else {
      p.dims.push_back(out[k]);
      p.sa.push_back(ast[k]);
      p.sb.push_back(bst[k]);
    }
  }
  if (p.dims.empty()) p = Plan{{1}, {0}, {0}};
  return p;
}

// Calls fn(a_off, b_off, out_off, len) for pieces of the plan's innermost rows, split across
// the team; long rows are cut into chunks so a few rows still use every thread.
template <typename Fn>
void for_plan_rows(const Context& ctx, const Plan& p, const Fn& fn) {
  const size_t k = p.dims.size() - 1;
  const int64_t inner = p.dims[k];
  int64_t outer = 1;
  for (size_t d = 0; d < k; ++d) outer *= p.dims[d];
  const int64_t team = detail::team_size(ctx, outer * inner);
  constexpr int64_t kChunk = 8192;
  const int64_t chunks = (outer >= 4 * team) ? 1 : (inner + kChunk - 1) / kChunk;
  const int64_t per = (inner + chunks - 1) / chunks;
  const int64_t tasks = outer * chunks;
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t row = t / chunks, ao = 0, bo = 0;
      const int64_t c0 = (t % chunks) * per;
      const int64_t len = std::min(inner, c0 + per) - c0;
      for (size_t d = k; d-- > 0;) {
        const int64_t i = row % p.dims[d];
        row /= p.dims[d];
        ao += i * p.sa[d];
        bo += i * p.sb[d];
      }
      const int64_t oo = (t / chunks) * inner + c0;
      fn(ao + c0 * p.sa[k], bo + c0 * p.sb[k], oo, len);
    }
  };
  if (team == 1) {
    run(0, tasks);
    return;
  }
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t t = 0; t < tasks; ++t) run(t, t + 1);
}

// One row of out = a OP b where each operand either advances (stride 1) or repeats (stride 0).
template <typename F>
void binary_row(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n,
                const F& f) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sb) {
    const float av = a[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const float v = f(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  }
}

void binary_dispatch(Binary op, const float* a, int64_t sa, const float* b, int64_t sb, float* o,
                     int64_t n) {
  switch (op) {
    case Binary::kAdd:
      binary_row(a, sa, b, sb, o, n, [](float x, float y) { return x + y; });
      break;
    case Binary::kSub:
      binary_row(a, sa, b, sb, o, n, [](float x, float y) { return x - y; });
      break;
    case Binary::kMul:
      binary_row(a, sa, b, sb, o, n, [](float x, float y) { return x * y; });
      break;
    case Binary::kDiv:
      binary_row(a, sa, b, sb, o, n, [](float x, float y) { return x / y; });
      break;
    // NaN in either operand propagates, as in torch.maximum / torch.minimum.
    case Binary::kMax:
      binary_row(a, sa, b, sb, o, n, [](float x, float y) { return (x > y || x != x) ? x : y; });
      break;
    case Binary::kMin:
      binary_row(a, sa, b, sb, o, n, [](float x, float y) { return (x < y || x != x) ? x : y; });
      break;
  }
}

int64_t count(const Dims& d) {
  int64_t n = 1;
  for (int64_t v : d) n *= v;
  return n;
}

}  // namespace

void unary(const Context& ctx, Unary op, const float* x, float* y, int64_t n) {
  parallel_range(ctx, n, is_heavy(op) ? kMinParallelHeavy : kMinParallel,
                 [&](int64_t b, int64_t e) { unary_rows(op, x + b, y + b, e - b); });
}

void unary_bwd(const Context& ctx, Unary op, const float* x, const float* y, const float* dy,
               float* dx, int64_t n) {
  const bool heavy = op == Unary::kGelu || op == Unary::kSilu;
  parallel_range(ctx, n, heavy ? kMinParallelHeavy : kMinParallel, [&](int64_t b, int64_t e) {
    unary_bwd_rows(op, x ? x + b : nullptr, y ? y + b : nullptr, dy + b, dx + b, e - b);
  });
}

void binary(const Context& ctx, Binary op, const float* a, const Dims& a_shape, const float* b,
            const Dims& b_shape, float* out, const Dims& out_shape) {
  if (count(out_shape) == 0) return;
  const Plan p = make_plan(out_shape, a_shape, b_shape, "binary");
  const int64_t sa = p.sa.back(), sb = p.sb.back();
  for_plan_rows(ctx, p, [&](int64_t ao, int64_t bo, int64_t oo, int64_t len) {
    binary_dispatch(op, a + ao, sa, b + bo, sb, out + oo, len);
  });
}

void axpby(const Context& ctx, int64_t n, float alpha, const float* a, float beta, const float* b,
           float* out) {
  parallel_range(ctx, n, kMinParallel, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) out[i] = a[i] * alpha + b[i] * beta;
  });
}

void broadcast_to(const Context& ctx, const float* x, const Dims& x_shape, float* out,
                  const Dims& out_shape, float scale) {
  if (count(out_shape) == 0) return;
  const Plan p = make_plan(out_shape, x_shape, x_shape, "broadcast_to");
  const int64_t sx = p.sa.back();
  for_plan_rows(ctx, p, [&](int64_t xo, int64_t, int64_t oo, int64_t len) {
    float* o = out + oo;
    const float* xs = x + xo;
    if (sx) {
      for (int64_t i = 0; i < len; ++i) o[i] = xs[i] * scale;
    } else {
      const float v = xs[0] * scale;
      for (int64_t i = 0; i < len; ++i) o[i] = v;
    }
  });
}

void bias_gelu_fwd(const Context& ctx, const float* x, const float* bias, float* y, int64_t rows,
                   int64_t cols) {
  // Split the flat range so one long row still uses the whole team.
  parallel_range(ctx, rows * cols, kMinParallelHeavy, [&](int64_t b, int64_t e) {
    while (b < e) {
      const int64_t c0 = b % cols;
      const int64_t len = std::min(e - b, cols - c0);
      map2(x + b, bias + c0, y + b, len,
           [](__m256 v, __m256 w) { return detail::vgelu(_mm256_add_ps(v, w)); });
      b += len;
    }
  });
}

size_t column_sums_scratch_bytes(int64_t rows, int64_t cols, int k) {
  if (rows <= 0 || cols <= 0) return 0;
  const int64_t rb = detail::row_block(rows);
  return sizeof(float) * size_t((rows + rb - 1) / rb * cols * k);
}

void bias_gelu_bwd(const Context& ctx, const float* x, const float* bias, const float* dy,
                   float* dx, float* dbias, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  if (rows <= 0) {
    std::memset(dbias, 0, sizeof(float) * cols);
    return;
  }
  // dbias is summed per fixed block of rows, then over blocks in order: thread-count invariant.
  const int64_t rb = detail::row_block(rows);
  const int64_t blocks = (rows + rb - 1) / rb;
  std::vector<float> part(static_cast<size_t>(blocks * cols));
  const int team = detail::team_size(ctx, rows * cols, kMinParallelHeavy);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    float* acc = part.data() + blk * cols;
    const int64_t r1 = std::min(rows, (blk + 1) * rb);
    for (int64_t r = blk * rb; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* gr = dy + r * cols;
      float* dr = dx + r * cols;
      const bool first = r == blk * rb;
      auto step = [&](__m256 v, __m256 g, __m256 prev) {
        const __m256 d = _mm256_mul_ps(g, detail::vgelu_grad(v));
        return std::pair{d, first ? d : _mm256_add_ps(prev, d)};
      };
      int64_t c = 0;
      for (; c + 8 <= cols; c += 8) {
        const __m256 v = _mm256_add_ps(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(bias + c));
        const auto [d, a] = step(v, _mm256_loadu_ps(gr + c), _mm256_loadu_ps(acc + c));
        _mm256_storeu_ps(dr + c, d);
        _mm256_storeu_ps(acc + c, a);
      }
      if (c < cols) {
        const int64_t k = cols - c;
        const __m256 v =
            _mm256_add_ps(detail::load_part(xr + c, k), detail::load_part(bias + c, k));
        const auto [d, a] = step(v, detail::load_part(gr + c, k), detail::load_part(acc + c, k));
        detail::store_part(dr + c, k, d);
        detail::store_part(acc + c, k, a);
      }
    }
  }
  detail::sum_partials(ctx, part.data(), blocks, cols, dbias);
}

}  // namespace hp::cpu
