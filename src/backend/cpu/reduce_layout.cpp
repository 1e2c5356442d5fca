// Reductions over any set of axes (sum, mean, max) and the layout kernels: permute, slice and
// its accumulating backward.
// Not a view system: every kernel copies into a contiguous output; sums are deterministic for
// any thread count (fixed blocking, double accumulation) rather than as fast as possible.
#include <cstring>
#include <limits>

#include "backend/cpu/vec_math.hpp"
#include "hp/backend/cpu/kernels.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {

void detail::sum_partials(const Context& ctx, const float* partials, int64_t blocks, int64_t cols,
                          float* out) {
  constexpr int64_t kCols = 512;
  const int64_t chunks = (cols + kCols - 1) / kCols;
  const int team = team_size(ctx, blocks * cols);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t c0 = ch * kCols, n = std::min(kCols, cols - c0);
    double acc[kCols];
    for (int64_t c = 0; c < n; ++c) acc[c] = 0.0;
    for (int64_t b = 0; b < blocks; ++b) {
      const float* p = partials + b * cols + c0;
      for (int64_t c = 0; c < n; ++c) acc[c] += p[c];
    }
    for (int64_t c = 0; c < n; ++c) out[c0 + c] = static_cast<float>(acc[c]);
  }
}

namespace {

int64_t count(const Dims& d) {
  int64_t n = 1;
  for (int64_t v : d) n *= v;
  return n;
}

float max_of(float acc, float v) {
  return (v > acc || v != v) ? v : acc;
}

// Sum of x[0, n) in double, four lanes at a time.
double sum_f64(const float* x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v0)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1)));
    a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm256_castps256_ps128(v1)));
    a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
  double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) s += x[i];
  return s;
}

// Reduces x viewed as [outer, red, inner] over the middle dim into out [outer, inner].
// Row reductions (inner == 1) are cut into fixed chunks, column reductions into fixed row blocks,
// each partial reduced in double (or max), then combined in a fixed order.
void reduce_middle(const Context& ctx, Reduce op, const float* x, int64_t outer, int64_t red,
                   int64_t inner, float* out) {
  const bool is_max = op == Reduce::kMax;
  const double post = op == Reduce::kMean ? 1.0 / static_cast<double>(red) : 1.0;
  const int team = detail::team_size(ctx, outer * red * inner);
  if (inner == 1) {
    constexpr int64_t kChunk = 32768;
    const int64_t chunks = (red + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(outer * chunks));
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t t = 0; t < outer * chunks; ++t) {
      const int64_t o = t / chunks, c0 = (t % chunks) * kChunk;
      const float* p = x + o * red + c0;
      const int64_t n = std::min(kChunk, red - c0);
      part[t] = is_max ? static_cast<double>(detail::row_max(p, n)) : sum_f64(p, n);
    }
    for (int64_t o = 0; o < outer; ++o) {
      double acc = part[o * chunks];
      for (int64_t c = 1; c < chunks; ++c) {
        const double v = part[o * chunks + c];
        acc = is_max ? ((v > acc || v != v) ? v : acc) : acc + v;
      }
      out[o] = static_cast<float>(acc * post);
    }
    return;
  }
  // Column reductions: tiles of (row block, column chunk) per outer index.
  constexpr int64_t kRows = 64, kCols = 512;
  const int64_t rblocks = (red + kRows - 1) / kRows;
  const int64_t cchunks = (inner + kCols - 1) / kCols;
  std::vector<double> part(static_cast<size_t>(outer * rblocks * inner));
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t t = 0; t < outer * rblocks * cchunks; ++t) {
    const int64_t o = t / (rblocks * cchunks);
    const int64_t rb = (t / cchunks) % rblocks, c0 = (t % cchunks) * kCols;
    const int64_t n = std::min(kCols, inner - c0);
    const int64_t r0 = rb * kRows, r1 = std::min(red, r0 + kRows);
    double* acc = part.data() + (o * rblocks + rb) * inner + c0;
    const float* base = x + o * red * inner + c0;
    if (is_max) {
      float m[kCols];
      for (int64_t c = 0; c < n; ++c) m[c] = -std::numeric_limits<float>::infinity();
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < n; ++c) m[c] = max_of(m[c], base[r * inner + c]);
      for (int64_t c = 0; c < n; ++c) acc[c] = m[c];
    } else {
      for (int64_t c = 0; c < n; ++c) acc[c] = 0.0;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < n; ++c) acc[c] += base[r * inner + c];
    }
  }
  const int team2 = detail::team_size(ctx, outer * rblocks * inner);
#pragma omp parallel for num_threads(team2) schedule(static)
  for (int64_t t = 0; t < outer * inner; ++t) {
    const int64_t o = t / inner, c = t % inner;
    const double* p = part.data() + o * rblocks * inner + c;
    double acc = p[0];
    for (int64_t b = 1; b < rblocks; ++b) {
      const double v = p[b * inner];
      acc = is_max ? ((v > acc || v != v) ? v : acc) : acc + v;
    }
    out[t] = static_cast<float>(acc * post);
  }
}

// Any pattern of reduced axes: each output element walks its reduced index space.
void reduce_general(const Context& ctx, Reduce op, const float* x, const Dims& dims,
                    const std::vector<bool>& red, float* out) {
  const Dims st = [&] {
    Dims s(dims.size());
    int64_t v = 1;
    for (size_t k = dims.size(); k-- > 0;) s[k] = v, v *= dims[k];
    return s;
  }();
  Dims kd, ks, rd, rs;
  for (size_t k = 0; k < dims.size(); ++k) {
    (red[k] ? rd : kd).push_back(dims[k]);
    (red[k] ? rs : ks).push_back(st[k]);
  }
  const int64_t nout = count(kd), nred = count(rd);
  const bool is_max = op == Reduce::kMax;
  const double post = op == Reduce::kMean ? 1.0 / static_cast<double>(nred) : 1.0;
  const int team = detail::team_size(ctx, nout * nred);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t o = 0; o < nout; ++o) {
    int64_t base = 0, rem = o;
    for (size_t k = kd.size(); k-- > 0;) base += (rem % kd[k]) * ks[k], rem /= kd[k];
    double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
    Dims idx(rd.size(), 0);
    int64_t off = base;
    for (int64_t i = 0; i < nred; ++i) {
      const double v = x[off];
      acc = is_max ? ((v > acc || v != v) ? v : acc) : acc + v;
      // Odometer step over the reduced dims.
      for (size_t k = rd.size(); k-- > 0;) {
        off += rs[k];
        if (++idx[k] < rd[k]) break;
        off -= rs[k] * rd[k];
        idx[k] = 0;
      }
    }
    out[o] = static_cast<float>(acc * post);
  }
}

// Row-major strides of `shape`.
Dims strides_of(const Dims& shape) {
  Dims s(shape.size());
  int64_t v = 1;
  for (size_t k = shape.size(); k-- > 0;) s[k] = v, v *= shape[k];
  return s;
}

// A box inside a larger tensor as rows: outer dims with the big tensor's strides, and the
// innermost run length after merging trailing dims the box covers fully.
struct BoxPlan {
  Dims dims;        // box dims, outer first; the last is the contiguous run
  Dims big_stride;  // big tensor strides for dims
  int64_t big_base = 0;
};

BoxPlan make_box(const Dims& big, const Dims& start, const Dims& box, const char* who) {
  HP_CHECK(big.size() == box.size() && start.size() == box.size(), "[", who,
           "] rank mismatch: ", big.size(), ", ", start.size(), ", ", box.size());
  const Dims bst = strides_of(big);
  BoxPlan p;
  for (size_t k = 0; k < big.size(); ++k) {
    HP_CHECK(start[k] >= 0 && start[k] + box[k] <= big[k], "[", who, "] box dim ", k, " [",
             start[k], ", ", start[k] + box[k], ") outside ", big[k]);
    p.big_base += start[k] * bst[k];
  }
  for (size_t k = 0; k < box.size(); ++k) {
    if (box[k] == 1) continue;
    // Merge into the previous dim when that one is contiguous over this one in the big tensor.
    if (!p.dims.empty() && p.big_stride.back() == bst[k] * box[k] && box[k] == big[k]) {
      p.dims.back() *= box[k];
      p.big_stride.back() = bst[k];
    } else {
      p.dims.push_back(box[k]);
      p.big_stride.push_back(bst[k]);
    }
  }
  if (p.dims.empty() || p.big_stride.back() != 1) {
    p.dims.push_back(1);
    p.big_stride.push_back(1);
  }
  return p;
}

// fn(big_off, small_off, len) over the rows of the box, split across the team.
template <typename Fn>
void for_box_rows(const Context& ctx, const BoxPlan& p, const Fn& fn) {
  const size_t k = p.dims.size() - 1;
  const int64_t len = p.dims[k];
  int64_t rows = 1;
  for (size_t d = 0; d < k; ++d) rows *= p.dims[d];
  const int team = detail::team_size(ctx, rows * len);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, off = p.big_base;
    for (size_t d = k; d-- > 0;) off += (rem % p.dims[d]) * p.big_stride[d], rem /= p.dims[d];
    fn(off, r * len, len);
  }
}

}  // namespace

void reduce(const Context& ctx, Reduce op, const float* x, const Dims& shape,
            const std::vector<bool>& reduce_mask, float* out) {
  HP_CHECK(reduce_mask.size() == shape.size(), "[reduce] mask has ", reduce_mask.size(),
           " entries for rank ", shape.size());
  // Drop size-1 dims and merge neighbours with the same mask value.
  Dims dims;
  std::vector<bool> red;
  int64_t n = 1, nred = 1, nout = 1;
  for (size_t k = 0; k < shape.size(); ++k) {
    n *= shape[k];
    (reduce_mask[k] ? nred : nout) *= shape[k];
    if (shape[k] == 1) continue;
    if (!red.empty() && red.back() == reduce_mask[k]) {
      dims.back() *= shape[k];
    } else {
      dims.push_back(shape[k]);
      red.push_back(reduce_mask[k]);
    }
  }
  if (nout == 0) return;
  if (nred == 0) {
    // An empty reduction: sum and mean give 0 (mean NaN as in PyTorch), max has no identity.
    HP_CHECK(op != Reduce::kMax, "[reduce] max over an empty axis");
    const float v = op == Reduce::kSum ? 0.0f : std::numeric_limits<float>::quiet_NaN();
    for (int64_t i = 0; i < nout; ++i) out[i] = v;
    return;
  }
  int groups = 0;
  for (bool r : red) groups += r;
  if (groups == 0) {
    std::memcpy(out, x, sizeof(float) * n);  // nothing of size > 1 is reduced
    return;
  }
  if (groups == 1) {
    int64_t outer = 1, mid = 1, inner = 1;
    bool seen = false;
    for (size_t k = 0; k < dims.size(); ++k) {
      if (red[k])
        mid = dims[k], seen = true;
      else
        (seen ? inner : outer) *= dims[k];
    }
    reduce_middle(ctx, op, x, outer, mid, inner, out);
    return;
  }
  reduce_general(ctx, op, x, dims, red, out);
}

void permute(const Context& ctx, const float* x, const Dims& shape, const Dims& perm, float* out) {
  HP_CHECK(perm.size() == shape.size(), "[permute] perm has ", perm.size(), " entries for rank ",
           shape.size());
  const int64_t n = count(shape);
  if (n == 0) return;
  const Dims xs = strides_of(shape);
  // Out dims (size-1 dropped), each with its stride in x; merge out neighbours that are also
  // neighbours in x.
  Dims d, s;
  std::vector<bool> used(shape.size(), false);
  for (size_t i = 0; i < perm.size(); ++i) {
    const int64_t p = perm[i];
    HP_CHECK(p >= 0 && p < static_cast<int64_t>(shape.size()) && !used[p],
             "[permute] perm is not a permutation at position ", i);
    used[p] = true;
    if (shape[p] == 1) continue;
    if (!d.empty() && s.back() == xs[p] * shape[p]) {
      d.back() *= shape[p];
      s.back() = xs[p];
    } else {
      d.push_back(shape[p]);
      s.push_back(xs[p]);
    }
  }
  if (d.empty() || s.back() == 1) {
    // The innermost out dim is contiguous in x: copy runs.
    if (d.empty()) d = {1}, s = {1};
    const size_t k = d.size() - 1;
    const int64_t len = d[k], rows = n / len;
    const int team = detail::team_size(ctx, n);
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t rem = r, off = 0;
      for (size_t q = k; q-- > 0;) off += (rem % d[q]) * s[q], rem /= d[q];
      std::memcpy(out + r * len, x + off, sizeof(float) * len);
    }
    return;
  }
  // Transpose-like: tile the out dim j that is contiguous in x against the innermost out dim,
  // so both reads and writes stay within a few cache lines per tile.
  const size_t k = d.size() - 1;
  size_t j = 0;
  while (s[j] != 1) ++j;
  const Dims os = strides_of(d);
  Dims od, ods, oxs;  // the remaining (outer) dims
  for (size_t q = 0; q < k; ++q) {
    if (q == j) continue;
    od.push_back(d[q]);
    ods.push_back(os[q]);
    oxs.push_back(s[q]);
  }
  constexpr int64_t kTile = 32;
  const int64_t tj = (d[j] + kTile - 1) / kTile, tk = (d[k] + kTile - 1) / kTile;
  const int64_t outer = count(od);
  const int64_t sjo = os[j], skx = s[k];
  const int team = detail::team_size(ctx, n);
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t t = 0; t < outer * tj; ++t) {
    int64_t rem = t / tj, xo = 0, oo = 0;
    for (size_t q = od.size(); q-- > 0;) {
      const int64_t i = rem % od[q];
      rem /= od[q];
      xo += i * oxs[q];
      oo += i * ods[q];
    }
    const int64_t a0 = (t % tj) * kTile, a1 = std::min(d[j], a0 + kTile);
    for (int64_t b0 = 0; b0 < tk * kTile; b0 += kTile) {
      const int64_t b1 = std::min(d[k], b0 + kTile);
      for (int64_t a = a0; a < a1; ++a) {
        float* o = out + oo + a * sjo;
        const float* xa = x + xo + a;
        for (int64_t b = b0; b < b1; ++b) o[b] = xa[b * skx];
      }
    }
  }
}

void slice(const Context& ctx, const float* x, const Dims& shape, const Dims& start, float* out,
           const Dims& out_shape) {
  if (count(out_shape) == 0) return;
  const BoxPlan p = make_box(shape, start, out_shape, "slice");
  for_box_rows(ctx, p, [&](int64_t big, int64_t small, int64_t len) {
    std::memcpy(out + small, x + big, sizeof(float) * len);
  });
}

void slice_bwd_acc(const Context& ctx, const float* x, const Dims& x_shape, const Dims& start,
                   float* out, const Dims& out_shape) {
  if (count(x_shape) == 0) return;
  const BoxPlan p = make_box(out_shape, start, x_shape, "slice_bwd_acc");
  for_box_rows(ctx, p, [&](int64_t big, int64_t small, int64_t len) {
    float* o = out + big;
    const float* xs = x + small;
    for (int64_t i = 0; i < len; ++i) o[i] += xs[i];
  });
}

}  // namespace hp::cpu
