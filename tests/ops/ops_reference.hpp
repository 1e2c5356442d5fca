// Naive double-precision references for the op table test (ops_test.cpp): each op written
// directly, one element at a time, on row-major std::vector<double>.
// Not fast and not shared with the library: agreement with an independent spelling is the point.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "hp/ops/ops.hpp"

namespace hp::opref {

using Vec = std::vector<double>;
using Idx = std::vector<int64_t>;

struct NT {  // a naive tensor: shape and row-major values (int inputs hold their ids)
  Shape shape;
  Vec v;
};
using Ns = std::vector<NT>;

inline NT make(const Shape& s, double fill = 0.0) {
  return {s, Vec(size_t(numel(s)), fill)};
}

inline Idx unravel(int64_t i, const Shape& s) {
  Idx idx(s.size());
  for (size_t k = s.size(); k-- > 0;) idx[k] = i % s[k], i /= s[k];
  return idx;
}

// Flat position in `s` of the multi-index `idx` (right-aligned; size-1 dims of s broadcast).
inline int64_t ravel_bcast(const Idx& idx, const Shape& s) {
  int64_t off = 0;
  size_t lead = idx.size() - s.size();
  for (size_t k = 0; k < s.size(); ++k) off = off * s[k] + (s[k] == 1 ? 0 : idx[lead + k]);
  return off;
}

inline Shape bshape(const Shape& a, const Shape& b) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t x = i + a.size() >= r ? a[i + a.size() - r] : 1;
    int64_t y = i + b.size() >= r ? b[i + b.size() - r] : 1;
    out[i] = std::max(x, y);
  }
  return out;
}

inline NT map1(const NT& a, const std::function<double(double)>& f) {
  NT o = a;
  for (double& x : o.v) x = f(x);
  return o;
}

inline NT map2(const NT& a, const NT& b, const std::function<double(double, double)>& f) {
  NT o = make(bshape(a.shape, b.shape));
  for (int64_t i = 0; i < numel(o.shape); ++i) {
    Idx idx = unravel(i, o.shape);
    o.v[size_t(i)] =
        f(a.v[size_t(ravel_bcast(idx, a.shape))], b.v[size_t(ravel_bcast(idx, b.shape))]);
  }
  return o;
}

inline NT bcast_ref(const NT& a, const Shape& s) {
  return map2(a, make(s), [](double x, double) { return x; });
}

inline NT sum_to_ref(const NT& a, const Shape& s) {
  NT o = make(s);
  for (int64_t i = 0; i < numel(a.shape); ++i)
    o.v[size_t(ravel_bcast(unravel(i, a.shape), s))] += a.v[size_t(i)];
  return o;
}

enum class Red { kSum, kMean, kMax };
inline NT reduce_ref(const NT& a, Red op, Idx axes, bool keepdim) {
  Shape keep = a.shape, out;
  for (int64_t& ax : axes) ax = norm_axis(ax, a.shape.size(), "ref");
  for (size_t k = 0; k < a.shape.size(); ++k) {
    bool red = axes.empty() || std::count(axes.begin(), axes.end(), int64_t(k));
    if (red) keep[k] = 1;
    if (!red || keepdim) out.push_back(keep[k]);
  }
  NT o = make(keep, op == Red::kMax ? -std::numeric_limits<double>::infinity() : 0.0);
  for (int64_t i = 0; i < numel(a.shape); ++i) {
    double& r = o.v[size_t(ravel_bcast(unravel(i, a.shape), keep))];
    r = op == Red::kMax ? std::max(r, a.v[size_t(i)]) : r + a.v[size_t(i)];
  }
  if (op == Red::kMean)
    for (double& x : o.v) x /= double(numel(a.shape) / numel(keep));
  o.shape = out;
  return o;
}

inline NT permute_ref(const NT& a, const Idx& perm) {
  Shape s;
  for (int64_t p : perm) s.push_back(a.shape[size_t(p)]);
  NT o = make(s);
  for (int64_t i = 0; i < numel(s); ++i) {
    Idx oi = unravel(i, s), ii(s.size());
    for (size_t k = 0; k < s.size(); ++k) ii[size_t(perm[k])] = oi[k];
    o.v[size_t(i)] = a.v[size_t(ravel_bcast(ii, a.shape))];
  }
  return o;
}

inline NT slice_ref(const NT& a, int64_t axis, int64_t start, int64_t end) {
  size_t ax = size_t(norm_axis(axis, a.shape.size(), "ref"));
  Shape s = a.shape;
  s[ax] = end - start;
  NT o = make(s);
  for (int64_t i = 0; i < numel(s); ++i) {
    Idx idx = unravel(i, s);
    idx[ax] += start;
    o.v[size_t(i)] = a.v[size_t(ravel_bcast(idx, a.shape))];
  }
  return o;
}

inline NT concat_ref(const Ns& xs, int64_t axis) {
  size_t ax = size_t(norm_axis(axis, xs[0].shape.size(), "ref"));
  Shape s = xs[0].shape;
  s[ax] = 0;
  for (auto& x : xs) s[ax] += x.shape[ax];
  NT o = make(s);
  int64_t off = 0;
  for (auto& x : xs) {
    for (int64_t i = 0; i < numel(x.shape); ++i) {
      Idx idx = unravel(i, x.shape);
      idx[ax] += off;
      o.v[size_t(ravel_bcast(idx, s))] = x.v[size_t(i)];
    }
    off += x.shape[ax];
  }
  return o;
}

inline NT matmul_ref(const NT& a, const NT& b, bool ta, bool tb) {
  size_t r = a.shape.size(), rb = b.shape.size();
  int64_t m = ta ? a.shape[r - 1] : a.shape[r - 2], k = ta ? a.shape[r - 2] : a.shape[r - 1];
  int64_t n = tb ? b.shape[rb - 2] : b.shape[rb - 1], batch = numel(a.shape) / (m * k);
  Shape s(a.shape.begin(), a.shape.end() - 2);
  s.push_back(m);
  s.push_back(n);
  NT o = make(s);
  for (int64_t bi = 0; bi < batch; ++bi) {
    int64_t ab = bi * m * k, bb = rb == 2 ? 0 : bi * k * n;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t q = 0; q < k; ++q)
          acc += a.v[size_t(ab + (ta ? q * m + i : i * k + q))] *
                 b.v[size_t(bb + (tb ? j * k + q : q * n + j))];
        o.v[size_t((bi * m + i) * n + j)] = acc;
      }
  }
  return o;
}

// Applies f to each row (last dim) of x: f(in, out, cols).
inline NT rows_ref(const NT& x, const std::function<void(const double*, double*, int64_t)>& f) {
  NT o = make(x.shape);
  int64_t cols = x.shape.back();
  for (int64_t r = 0; r < numel(x.shape) / cols; ++r)
    f(&x.v[size_t(r * cols)], &o.v[size_t(r * cols)], cols);
  return o;
}

inline NT softmax_ref(const NT& x) {
  return rows_ref(x, [](const double* in, double* out, int64_t n) {
    double m = *std::max_element(in, in + n), z = 0;
    for (int64_t i = 0; i < n; ++i) z += out[i] = std::exp(in[i] - m);
    for (int64_t i = 0; i < n; ++i) out[i] /= z;
  });
}

inline NT layer_norm_ref(const NT& x, const NT& g, const NT& b, double eps) {
  return rows_ref(x, [&](const double* in, double* out, int64_t n) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mu += in[i] / double(n);
    for (int64_t i = 0; i < n; ++i) var += (in[i] - mu) * (in[i] - mu) / double(n);
    for (int64_t i = 0; i < n; ++i)
      out[i] = (in[i] - mu) / std::sqrt(var + eps) * g.v[size_t(i)] + b.v[size_t(i)];
  });
}

inline NT rms_norm_ref(const NT& x, const NT& g, double eps) {
  return rows_ref(x, [&](const double* in, double* out, int64_t n) {
    double ms = 0;
    for (int64_t i = 0; i < n; ++i) ms += in[i] * in[i] / double(n);
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] / std::sqrt(ms + eps) * g.v[size_t(i)];
  });
}

inline NT embedding_ref(const NT& table, const NT& ids) {
  int64_t d = table.shape[1];
  Shape s = ids.shape;
  s.push_back(d);
  NT o = make(s);
  for (size_t i = 0; i < ids.v.size(); ++i)
    for (int64_t j = 0; j < d; ++j)
      o.v[i * size_t(d) + size_t(j)] = table.v[size_t(ids.v[i]) * size_t(d) + size_t(j)];
  return o;
}

inline NT cross_entropy_ref(const NT& logits, const NT& targets, int64_t ignore) {
  int64_t v = logits.shape.back();
  double total = 0, count = 0;
  for (size_t r = 0; r < targets.v.size(); ++r) {
    if (int64_t(targets.v[r]) == ignore) continue;
    const double* x = &logits.v[r * size_t(v)];
    double m = *std::max_element(x, x + v), z = 0;
    for (int64_t i = 0; i < v; ++i) z += std::exp(x[i] - m);
    total += m + std::log(z) - x[size_t(targets.v[r])];
    count += 1;
  }
  return {{}, {total / count}};
}

// Token t of sequence b at offset + t, or at positions[b, t] when given.
inline NT rope_ref(const NT& x, double theta, int64_t offset, const NT* positions = nullptr) {
  NT o = make(x.shape);
  int64_t bt = x.shape[0] * x.shape[1], t_len = x.shape[1], heads = x.shape[2], d = x.shape[3];
  for (int64_t r = 0; r < bt * heads; ++r) {
    double pos = positions ? positions->v[size_t(r / heads)] : double(offset + (r / heads) % t_len);
    const double* in = &x.v[size_t(r * d)];
    double* out = &o.v[size_t(r * d)];
    for (int64_t i = 0; i < d / 2; ++i) {
      double a = pos * std::pow(theta, -2.0 * double(i) / double(d)), c = std::cos(a),
             s = std::sin(a);
      out[i] = in[i] * c - in[i + d / 2] * s;
      out[i + d / 2] = in[i + d / 2] * c + in[i] * s;
    }
  }
  return o;
}

inline NT attention_ref(const NT& q, const NT& k, const NT& v, double scale) {
  int64_t nb = q.shape[0], nt = q.shape[1], nh = q.shape[2], d = q.shape[3], nkv = k.shape[2];
  NT o = make(q.shape);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t t = 0; t < nt; ++t) {
        int64_t kh = h / (nh / nkv);
        auto qi = [&](int64_t j) { return size_t(((b * nt + j) * nh + h) * d); };
        auto ki = [&](int64_t j) { return size_t(((b * nt + j) * nkv + kh) * d); };
        Vec s(size_t(t + 1));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t c = 0; c < d; ++c)
            s[size_t(j)] += scale * q.v[qi(t) + size_t(c)] * k.v[ki(j) + size_t(c)];
        double m = *std::max_element(s.begin(), s.end()), z = 0;
        for (double& x : s) z += x = std::exp(x - m);
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t c = 0; c < d; ++c)
            o.v[qi(t) + size_t(c)] += s[size_t(j)] / z * v.v[ki(j) + size_t(c)];
      }
  return o;
}

inline double gelu_ref(double x) {
  return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

}  // namespace hp::opref
