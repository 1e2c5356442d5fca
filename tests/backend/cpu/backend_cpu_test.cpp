// CPU kernels (hp/backend/cpu/kernels.hpp) against naive double-precision references over awkward
// shapes, with one and two threads; backward kernels also against central finite differences.
// Not a performance test: bench/elementwise_bench.cpp measures speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "hp/backend/cpu/kernels.hpp"
#include "hp/core/error.hpp"

#include "cpu_test_util.hpp"

namespace hp::cpu {
namespace {

using namespace testing_util;

// ---- elementwise ------------------------------------------------------------------------------

// 0.5 x (1 + tanh(u)) written as x / (1 + exp(-2u)): the same function, but without the
// cancellation in 1 + tanh(u) that loses even double precision for x below about -5.
double gelu_ref(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return x / (1.0 + std::exp(-2.0 * u));
}
double silu_ref(double x) {
  return x / (1.0 + std::exp(-x));
}

double unary_ref(Unary op, double x) {
  switch (op) {
    case Unary::kNeg:
      return -x;
    case Unary::kExp:
      return std::exp(x);
    case Unary::kLog:
      return std::log(x);
    case Unary::kSqrt:
      return std::sqrt(x);
    case Unary::kRsqrt:
      return 1.0 / std::sqrt(x);
    case Unary::kTanh:
      return std::tanh(x);
    case Unary::kGelu:
      return gelu_ref(x);
    case Unary::kSilu:
      return silu_ref(x);
    case Unary::kRelu:
      return x > 0 ? x : 0.0;
    case Unary::kSquare:
      return x * x;
  }
  return 0;
}

bool positive_domain(Unary op) {
  return op == Unary::kLog || op == Unary::kSqrt || op == Unary::kRsqrt;
}

const Unary kAllUnary[] = {Unary::kNeg,  Unary::kExp,  Unary::kLog,  Unary::kSqrt, Unary::kRsqrt,
                           Unary::kTanh, Unary::kGelu, Unary::kSilu, Unary::kRelu, Unary::kSquare};

TEST(Unary, MatchesDoubleReference) {
  for (Unary op : kAllUnary) {
    for (int64_t n : kSizes) {
      const VecF x =
          positive_domain(op) ? random_vec(n, 1e-3f, 50.0f, 1) : random_vec(n, -12.0f, 12.0f, 2);
      VecD want(x.size()), arg_err(x.size(), 0.0);
      for (size_t i = 0; i < x.size(); ++i) {
        want[i] = unary_ref(op, x[i]);
        // gelu's exponent -2u is computed in f32 (a few roundings) before exp amplifies it:
        // allow about 3 ulp of |2u| on top.
        const double u2 = 1.6 * std::fabs(x[i] * (1 + 0.045 * x[i] * x[i]));
        if (op == Unary::kGelu) arg_err[i] = 2e-7 * u2;
      }
      for (int th : kThreads) {
        VecF y(x.size(), -7.0f);
        unary(Context{th}, op, x.data(), y.data(), n);
        EXPECT_TRUE(close(y, want, 4e-7, 1e-30, &arg_err))
            << "op " << int(op) << " n " << n << " t " << th;
      }
    }
  }
}

TEST(Unary, TranscendentalsOverTheirRange) {
  // A dense sweep: exp across its whole finite range (denormal results included), log over
  // normal and denormal inputs, tanh near 0 where 1 - 2/(e^2x + 1) would cancel.
  VecF xe, xl, xt;
  for (float v = -103.0f; v < 88.7f; v += 0.0137f) xe.push_back(v);
  for (float v = 1e-44f; v < 1e38f; v *= 1.37f) xl.push_back(v);
  for (float v = -20.0f; v < 20.0f; v += 0.00731f) xt.push_back(v);
  for (float v = 1e-30f; v < 1.0f; v *= 1.9f) xt.push_back(v), xt.push_back(-v);
  auto run = [](Unary op, const VecF& x) {
    VecF y(x.size());
    unary(Context{1}, op, x.data(), y.data(), static_cast<int64_t>(x.size()));
    return y;
  };
  VecD we(xe.size()), wl(xl.size()), wt(xt.size());
  for (size_t i = 0; i < xe.size(); ++i) we[i] = std::exp(double(xe[i]));
  for (size_t i = 0; i < xl.size(); ++i) wl[i] = std::log(double(xl[i]));
  for (size_t i = 0; i < xt.size(); ++i) wt[i] = std::tanh(double(xt[i]));
  // Normal results within ~3 ulp; denormal exp results within their coarser absolute grid.
  EXPECT_TRUE(close(run(Unary::kExp, xe), we, 3.6e-7, 2e-45));
  EXPECT_TRUE(close(run(Unary::kLog, xl), wl, 3.6e-7, 0));
  EXPECT_TRUE(close(run(Unary::kTanh, xt), wt, 3.6e-7, 0));
}

TEST(Unary, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const VecF x = {-inf, inf, nan, 0.0f, -1.0f, 100.0f, -200.0f};
  auto run = [&](Unary op) {
    VecF y(x.size());
    unary(Context{1}, op, x.data(), y.data(), static_cast<int64_t>(x.size()));
    return y;
  };
  const VecF e = run(Unary::kExp);
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_EQ(e[1], inf);
  EXPECT_TRUE(std::isnan(e[2]));
  EXPECT_EQ(e[3], 1.0f);
  EXPECT_EQ(e[5], inf);
  EXPECT_EQ(e[6], 0.0f);
  const VecF l = run(Unary::kLog);
  EXPECT_TRUE(std::isnan(l[0]));
  EXPECT_EQ(l[1], inf);
  EXPECT_TRUE(std::isnan(l[2]));
  EXPECT_EQ(l[3], -inf);
  EXPECT_TRUE(std::isnan(l[4]));
  const VecF t = run(Unary::kTanh);
  EXPECT_EQ(t[0], -1.0f);
  EXPECT_EQ(t[1], 1.0f);
  EXPECT_TRUE(std::isnan(t[2]));
  EXPECT_EQ(t[3], 0.0f);
  const VecF g = run(Unary::kGelu);
  EXPECT_EQ(g[1], inf);
  EXPECT_EQ(g[5], 100.0f);
  EXPECT_EQ(g[6], 0.0f);
  EXPECT_TRUE(std::isnan(run(Unary::kRelu)[2]));
}

double unary_grad_ref(Unary op, double x) {
  const double h = 1e-6;
  return (unary_ref(op, x + h) - unary_ref(op, x - h)) / (2 * h);
}

TEST(Unary, BackwardMatchesFiniteDifferences) {
  for (Unary op : kAllUnary) {
    for (int64_t n : kSizes) {
      VecF x = positive_domain(op) ? random_vec(n, 0.05f, 20.0f, 3) : random_vec(n, -6.0f, 6.0f, 4);
      if (op == Unary::kRelu)
        for (float& v : x) v = std::fabs(v) < 1e-3f ? 0.5f : v;  // away from the kink
      const VecF dy = random_vec(n, -2.0f, 2.0f, 5);
      VecF y(x.size());
      unary(Context{1}, op, x.data(), y.data(), n);
      VecD want(x.size());
      for (size_t i = 0; i < x.size(); ++i) want[i] = dy[i] * unary_grad_ref(op, x[i]);
      for (int th : kThreads) {
        VecF dx(x.size(), 99.0f);
        unary_bwd(Context{th}, op, x.data(), y.data(), dy.data(), dx.data(), n);
        EXPECT_TRUE(close(dx, want, 2e-5, 2e-6)) << "op " << int(op) << " n " << n << " t " << th;
      }
    }
  }
}

// a OP b in double with numpy broadcasting over rank-aligned shapes.
VecD binary_ref(Binary op, const VecF& a, const Dims& as, const VecF& b, const Dims& bs,
                const Dims& os) {
  const Dims ast = strides_of(as), bst = strides_of(bs);
  VecD out(static_cast<size_t>(numel_of(os)));
  for (int64_t i = 0; i < numel_of(os); ++i) {
    const Dims idx = unravel(i, os);
    int64_t ai = 0, bi = 0;
    for (size_t k = 0; k < os.size(); ++k) {
      ai += (as[k] == 1 ? 0 : idx[k]) * ast[k];
      bi += (bs[k] == 1 ? 0 : idx[k]) * bst[k];
    }
    const double x = a[ai], y = b[bi];
    switch (op) {
      case Binary::kAdd:
        out[i] = x + y;
        break;
      case Binary::kSub:
        out[i] = x - y;
        break;
      case Binary::kMul:
        out[i] = x * y;
        break;
      case Binary::kDiv:
        out[i] = x / y;
        break;
      case Binary::kMax:
        out[i] = std::max(x, y);
        break;
      case Binary::kMin:
        out[i] = std::min(x, y);
        break;
    }
  }
  return out;
}

TEST(Binary, BroadcastingMatchesReference) {
  struct Case {
    Dims a, b, out;
  };
  const Case cases[] = {
      {{1}, {1}, {1}},                             // scalar
      {{37}, {37}, {37}},                          // same shape
      {{20011}, {20011}, {20011}},                 // same shape, threaded
      {{13, 7}, {1, 1}, {13, 7}},                  // b scalar
      {{1, 1}, {13, 7}, {13, 7}},                  // a scalar
      {{37, 613}, {1, 613}, {37, 613}},            // row vector, threaded
      {{1, 613}, {37, 613}, {37, 613}},            // row vector on the left
      {{37, 613}, {37, 1}, {37, 613}},             // column vector
      {{2, 1, 5, 1}, {1, 3, 1, 4}, {2, 3, 5, 4}},  // both broadcast, interleaved
      {{3, 1, 7}, {3, 13, 7}, {3, 13, 7}},         // middle broadcast
      {{2, 40000}, {2, 40000}, {2, 40000}},        // few long rows
      {{7, 1}, {1, 9}, {7, 9}},                    // outer product
      {{0, 5}, {1, 5}, {0, 5}},                    // empty
  };
  const Binary ops[] = {Binary::kAdd, Binary::kSub, Binary::kMul,
                        Binary::kDiv, Binary::kMax, Binary::kMin};
  for (const Case& c : cases) {
    const VecF a = random_vec(numel_of(c.a), -3.0f, 3.0f, 6);
    VecF b = random_vec(numel_of(c.b), -3.0f, 3.0f, 7);
    for (float& v : b) v = std::fabs(v) < 0.1f ? 0.5f : v;  // keep division tame
    for (Binary op : ops) {
      const VecD want = binary_ref(op, a, c.a, b, c.b, c.out);
      for (int th : kThreads) {
        VecF out(want.size(), -5.0f);
        binary(Context{th}, op, a.data(), c.a, b.data(), c.b, out.data(), c.out);
        EXPECT_TRUE(close(out, want, 1e-6, 0)) << "op " << int(op) << " out rank " << c.out.size();
      }
    }
  }
}

TEST(Binary, RejectsShapesThatDoNotBroadcast) {
  const VecF a(6), b(6);
  VecF out(6);
  EXPECT_THROW(
      binary(Context{1}, Binary::kAdd, a.data(), {2, 3}, b.data(), {3, 2}, out.data(), {2, 3}),
      Error);
}

TEST(Binary, MaxMinPropagateNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const VecF a = {nan, 1.0f, 2.0f}, b = {1.0f, nan, 3.0f};
  VecF out(3);
  for (Binary op : {Binary::kMax, Binary::kMin}) {
    binary(Context{1}, op, a.data(), {3}, b.data(), {3}, out.data(), {3});
    EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1]));
    EXPECT_EQ(out[2], op == Binary::kMax ? 3.0f : 2.0f);
  }
}

TEST(Axpby, MatchesReference) {
  for (int64_t n : kSizes) {
    const VecF a = random_vec(n, -1, 1, 8), b = random_vec(n, -1, 1, 9);
    VecD want(a.size());
    for (size_t i = 0; i < a.size(); ++i) want[i] = 0.7 * double(a[i]) - 1.3 * double(b[i]);
    for (int th : kThreads) {
      VecF out(a.size());
      axpby(Context{th}, n, 0.7f, a.data(), -1.3f, b.data(), out.data());
      EXPECT_TRUE(close(out, want, 1e-6, 1e-7));
    }
  }
}

TEST(BroadcastTo, MatchesReference) {
  struct Case {
    Dims x, out;
  };
  const Case cases[] = {{{1}, {1}},           {{1, 1}, {37, 613}},     {{1, 613}, {37, 613}},
                        {{37, 1}, {37, 613}}, {{2, 1, 5}, {2, 13, 5}}, {{3, 7}, {3, 7}}};
  for (const Case& c : cases) {
    const VecF x = random_vec(numel_of(c.x), -2, 2, 10);
    const VecF one(1, 0.0f);
    VecD want = binary_ref(Binary::kAdd, x, c.x, one, Dims(c.x.size(), 1), c.out);
    for (double& w : want) w *= 0.5;
    for (int th : kThreads) {
      VecF out(want.size());
      broadcast_to(Context{th}, x.data(), c.x, out.data(), c.out, 0.5f);
      EXPECT_TRUE(close(out, want, 1e-7, 0));
    }
  }
}

TEST(BiasGelu, ForwardAndBackwardMatchReference) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {7, 13}, {37, 5}, {130, 37}, {300, 129}};
  for (auto [rows, cols] : shapes) {
    const VecF x = random_vec(rows * cols, -5, 5, 11), bias = random_vec(cols, -1, 1, 12);
    const VecF dy = random_vec(rows * cols, -1, 1, 13);
    VecD y_ref(x.size()), dx_ref(x.size()), db_ref(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const double v = double(x[r * cols + c]) + bias[c];
        y_ref[r * cols + c] = gelu_ref(v);
        dx_ref[r * cols + c] = dy[r * cols + c] * unary_grad_ref(Unary::kGelu, v);
        db_ref[c] += dx_ref[r * cols + c];
      }
    }
    for (int th : kThreads) {
      VecF y(x.size()), dx(x.size()), db(static_cast<size_t>(cols), 42.0f);
      bias_gelu_fwd(Context{th}, x.data(), bias.data(), y.data(), rows, cols);
      bias_gelu_bwd(Context{th}, x.data(), bias.data(), dy.data(), dx.data(), db.data(), rows,
                    cols);
      EXPECT_TRUE(close(y, y_ref, 1e-6, 1e-7)) << rows << "x" << cols;
      EXPECT_TRUE(close(dx, dx_ref, 2e-5, 2e-6)) << rows << "x" << cols;
      EXPECT_TRUE(close(db, db_ref, 2e-5, 1e-5)) << rows << "x" << cols;
    }
  }
}

// ---- reductions and layout ----------------------------------------------------------------

VecD reduce_ref(Reduce op, const VecF& x, const Dims& shape, const std::vector<bool>& mask) {
  Dims os = shape;
  int64_t nred = 1;
  for (size_t k = 0; k < shape.size(); ++k)
    if (mask[k]) os[k] = 1, nred *= shape[k];
  const Dims ost = strides_of(os);
  VecD out(static_cast<size_t>(numel_of(os)),
           op == Reduce::kMax ? -std::numeric_limits<double>::infinity() : 0.0);
  for (int64_t i = 0; i < numel_of(shape); ++i) {
    const Dims idx = unravel(i, shape);
    int64_t o = 0;
    for (size_t k = 0; k < shape.size(); ++k) o += (mask[k] ? 0 : idx[k]) * ost[k];
    out[o] = op == Reduce::kMax ? std::max(out[o], double(x[i])) : out[o] + x[i];
  }
  if (op == Reduce::kMean)
    for (double& v : out) v /= nred;
  return out;
}

void check_reduce(const Dims& shape, const std::vector<bool>& mask) {
  const VecF x = random_vec(numel_of(shape), -1, 1, 14);
  for (Reduce op : {Reduce::kSum, Reduce::kMean, Reduce::kMax}) {
    const VecD want = reduce_ref(op, x, shape, mask);
    VecF first;
    for (int th : kThreads) {
      VecF out(want.size(), 123.0f);
      reduce(Context{th}, op, x.data(), shape, mask, out.data());
      EXPECT_TRUE(close(out, want, 1e-6, 1e-6)) << "op " << int(op) << " rank " << shape.size();
      if (first.empty()) first = out;
      EXPECT_EQ(out, first) << "thread count changed the result";
    }
  }
}

TEST(Reduce, EveryAxisMaskOfARank4Shape) {
  const Dims shape = {3, 5, 7, 2};
  for (int m = 0; m < 16; ++m) {
    check_reduce(shape, {bool(m & 8), bool(m & 4), bool(m & 2), bool(m & 1)});
  }
  check_reduce({4, 1, 6}, {false, true, false});  // reducing only a size-1 dim
  check_reduce({1, 1}, {true, true});
}

TEST(Reduce, LargeShapesTakeTheFastPaths) {
  check_reduce({40000, 3}, {true, false});           // bias gradient: leading dims
  check_reduce({700, 37}, {true, false});            // column sums, several row blocks
  check_reduce({8, 100, 37}, {true, true, false});   // merged leading dims
  check_reduce({3, 70001}, {false, true});           // long rows, chunked
  check_reduce({1000, 37}, {false, true});           // many short rows
  check_reduce({5, 37, 130}, {false, true, false});  // middle axis
  check_reduce({100003}, {true});                    // everything
  check_reduce({50, 20, 30}, {true, false, true});   // two groups: general path
}

VecD permute_ref(const VecF& x, const Dims& shape, const Dims& perm) {
  Dims os(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) os[i] = shape[perm[i]];
  const Dims xst = strides_of(shape);
  VecD out(x.size());
  for (int64_t i = 0; i < numel_of(os); ++i) {
    const Dims idx = unravel(i, os);
    int64_t xi = 0;
    for (size_t k = 0; k < perm.size(); ++k) xi += idx[k] * xst[perm[k]];
    out[i] = x[xi];
  }
  return out;
}

void check_permutations(const Dims& shape) {
  const VecF x = random_vec(numel_of(shape), -1, 1, 15);
  Dims perm(shape.size());
  std::iota(perm.begin(), perm.end(), 0);
  do {
    const VecD want = permute_ref(x, shape, perm);
    for (int th : kThreads) {
      VecF out(x.size(), 0.0f);
      permute(Context{th}, x.data(), shape, perm, out.data());
      EXPECT_TRUE(close(out, want, 0, 0)) << "rank " << shape.size();
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST(Permute, AllPermutations) {
  check_permutations({7});
  check_permutations({3, 5, 7});
  check_permutations({2, 3, 1, 5});
  check_permutations({4, 37, 130});  // threaded, tiles with ragged edges
  check_permutations({67, 301});     // plain transpose past the threshold
  check_permutations({2, 3, 4, 5});
}

TEST(Slice, CopyAndAccumulatingBackward) {
  struct Case {
    Dims shape, start, box;
  };
  const Case cases[] = {
      {{7}, {2}, {3}},
      {{13, 7}, {0, 0}, {13, 7}},
      {{13, 7}, {3, 0}, {5, 7}},  // full rows merge into one run
      {{13, 7}, {3, 2}, {5, 4}},
      {{5, 6, 7}, {1, 0, 3}, {3, 6, 1}},
      {{4, 37, 300}, {1, 5, 17}, {3, 30, 250}},  // threaded
      {{2, 3, 4}, {1, 1, 1}, {1, 1, 1}},
  };
  for (const Case& c : cases) {
    const VecF x = random_vec(numel_of(c.shape), -1, 1, 16);
    const Dims xst = strides_of(c.shape);
    VecD want(static_cast<size_t>(numel_of(c.box)));
    VecD acc_want = to_d(x);  // slice_bwd_acc of `small` into a copy of x
    const VecF small = random_vec(numel_of(c.box), -1, 1, 17);
    for (int64_t i = 0; i < numel_of(c.box); ++i) {
      const Dims idx = unravel(i, c.box);
      int64_t xi = 0;
      for (size_t k = 0; k < idx.size(); ++k) xi += (idx[k] + c.start[k]) * xst[k];
      want[i] = x[xi];
      acc_want[xi] += small[i];
    }
    for (int th : kThreads) {
      VecF out(want.size(), 0.0f);
      slice(Context{th}, x.data(), c.shape, c.start, out.data(), c.box);
      EXPECT_TRUE(close(out, want, 0, 0));
      VecF big = x;
      slice_bwd_acc(Context{th}, small.data(), c.box, c.start, big.data(), c.shape);
      EXPECT_TRUE(close(big, acc_want, 1e-7, 0));
    }
  }
  VecF x(10), out(10);
  EXPECT_THROW(slice(Context{1}, x.data(), {10}, {8}, out.data(), {3}), Error);
}

// ---- normalisation, softmax ------------------------------------------------------------

// One row of a reference forward in double; g and b may be null when the op has no parameter.
using RowFn =
    std::function<void(const double* x, const double* g, const double* b, double* y, int64_t cols)>;

struct Grads {
  VecD y, dx, dg, db;
};

// Reference output and the central-difference gradients of L = sum(w * y) with respect to x
// (row by row, since rows are independent) and to the per-column parameters g and b.
Grads row_op_reference(const RowFn& f, const VecF& xf, const VecF& gf, const VecF& bf,
                       const VecF& wf, int64_t rows, int64_t cols) {
  VecD x = to_d(xf), g = to_d(gf), b = to_d(bf), w = to_d(wf);
  const double* gp = g.empty() ? nullptr : g.data();
  const double* bp = b.empty() ? nullptr : b.data();
  Grads out;
  out.y.resize(x.size());
  VecD yr(static_cast<size_t>(cols));
  auto row_loss = [&](int64_t r) {
    f(x.data() + r * cols, gp, bp, yr.data(), cols);
    double l = 0;
    for (int64_t c = 0; c < cols; ++c) l += w[r * cols + c] * yr[c];
    return l;
  };
  auto loss = [&] {
    double l = 0;
    for (int64_t r = 0; r < rows; ++r) l += row_loss(r);
    return l;
  };
  const double h = 1e-6;
  auto fd = [&](double& v, const std::function<double()>& l) {
    const double v0 = v;
    v = v0 + h;
    const double lp = l();
    v = v0 - h;
    const double lm = l();
    v = v0;
    return (lp - lm) / (2 * h);
  };
  out.dx.resize(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    f(x.data() + r * cols, gp, bp, out.y.data() + r * cols, cols);
    for (int64_t c = 0; c < cols; ++c)
      out.dx[r * cols + c] = fd(x[r * cols + c], [&] { return row_loss(r); });
  }
  for (double& v : g) out.dg.push_back(fd(v, loss));
  for (double& v : b) out.db.push_back(fd(v, loss));
  return out;
}

void layer_norm_ref(const double* x, const double* g, const double* b, double* y, int64_t n) {
  double mu = 0, var = 0;
  for (int64_t c = 0; c < n; ++c) mu += x[c] / n;
  for (int64_t c = 0; c < n; ++c) var += (x[c] - mu) * (x[c] - mu) / n;
  for (int64_t c = 0; c < n; ++c) y[c] = (x[c] - mu) / std::sqrt(var + 1e-5) * g[c] + b[c];
}

void rms_norm_ref(const double* x, const double* g, const double*, double* y, int64_t n) {
  double ms = 0;
  for (int64_t c = 0; c < n; ++c) ms += x[c] * x[c] / n;
  for (int64_t c = 0; c < n; ++c) y[c] = x[c] / std::sqrt(ms + 1e-6) * g[c];
}

void softmax_ref(const double* x, const double*, const double*, double* y, int64_t n) {
  const double m = *std::max_element(x, x + n);
  double s = 0;
  for (int64_t c = 0; c < n; ++c) s += (y[c] = std::exp(x[c] - m));
  for (int64_t c = 0; c < n; ++c) y[c] /= s;
}

const std::pair<int64_t, int64_t> kRowShapes[] = {{1, 1},    {1, 7},   {13, 37},
                                                  {3, 1000}, {130, 5}, {160, 129}};

TEST(LayerNorm, ForwardAndBackwardAgainstFiniteDifferences) {
  for (auto [rows, cols] : kRowShapes) {
    // An offset mean checks the two-pass variance.
    const VecF x = random_vec(rows * cols, 99.0f, 101.0f, 18);
    const VecF g = random_vec(cols, 0.5f, 1.5f, 19), b = random_vec(cols, -1, 1, 20);
    const VecF w = random_vec(rows * cols, -1, 1, 21);
    const Grads ref = row_op_reference(layer_norm_ref, x, g, b, w, rows, cols);
    for (int th : kThreads) {
      const Context ctx{th};
      VecF y(x.size()), mean(rows), rstd(rows), dx(x.size()), dg(cols, 7.0f), db(cols, 7.0f);
      layer_norm_fwd(ctx, x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), rows,
                     cols, 1e-5f);
      EXPECT_TRUE(close(y, ref.y, 1e-4, 1e-4)) << rows << "x" << cols;
      layer_norm_bwd(ctx, w.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(),
                     dg.data(), db.data(), rows, cols);
      // x is ~100 +- 1, so FD in x is relative to a ~1/std scale.
      EXPECT_TRUE(close(dx, ref.dx, 2e-3, 2e-3)) << rows << "x" << cols;
      EXPECT_TRUE(close(dg, ref.dg, 1e-4, 1e-4)) << rows << "x" << cols;
      EXPECT_TRUE(close(db, ref.db, 1e-5, 1e-5)) << rows << "x" << cols;
    }
  }
}

TEST(RmsNorm, ForwardAndBackwardAgainstFiniteDifferences) {
  for (auto [rows, cols] : kRowShapes) {
    const VecF x = random_vec(rows * cols, -2, 2, 22), g = random_vec(cols, 0.5f, 1.5f, 23);
    const VecF w = random_vec(rows * cols, -1, 1, 24);
    const Grads ref = row_op_reference(rms_norm_ref, x, g, {}, w, rows, cols);
    for (int th : kThreads) {
      const Context ctx{th};
      VecF y(x.size()), rstd(rows), dx(x.size()), dg(cols, 7.0f);
      rms_norm_fwd(ctx, x.data(), g.data(), y.data(), rstd.data(), rows, cols, 1e-6f);
      EXPECT_TRUE(close(y, ref.y, 1e-5, 1e-5)) << rows << "x" << cols;
      rms_norm_bwd(ctx, w.data(), x.data(), g.data(), rstd.data(), dx.data(), dg.data(), rows,
                   cols);
      EXPECT_TRUE(close(dx, ref.dx, 1e-4, 1e-4)) << rows << "x" << cols;
      EXPECT_TRUE(close(dg, ref.dg, 1e-4, 1e-4)) << rows << "x" << cols;
    }
  }
}

TEST(Softmax, ForwardAndBackwardAgainstFiniteDifferences) {
  for (auto [rows, cols] : kRowShapes) {
    VecF x = random_vec(rows * cols, -30, 30, 25);
    if (rows * cols > 40) x[3] = 500.0f;  // would overflow exp without the max shift
    const VecF w = random_vec(rows * cols, -1, 1, 26);
    const Grads ref = row_op_reference(softmax_ref, x, {}, {}, w, rows, cols);
    for (int th : kThreads) {
      const Context ctx{th};
      VecF y(x.size()), dx(x.size());
      softmax_fwd(ctx, x.data(), y.data(), rows, cols);
      EXPECT_TRUE(close(y, ref.y, 1e-5, 1e-9)) << rows << "x" << cols;
      softmax_bwd(ctx, y.data(), w.data(), dx.data(), rows, cols);
      EXPECT_TRUE(close(dx, ref.dx, 1e-4, 1e-6)) << rows << "x" << cols;
    }
  }
}

}  // namespace
}  // namespace hp::cpu
