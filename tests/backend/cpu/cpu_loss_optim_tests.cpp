// CPU loss, embedding, rotary and optimizer kernels (hp/backend/cpu/kernels.hpp) against naive
// double-precision references and finite differences, with one and two threads.
// Not a performance test: bench/elementwise_bench.cpp measures speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu_test_util.hpp"
#include "hp/backend/cpu/kernels.hpp"
#include "hp/core/error.hpp"

namespace hp::cpu {
namespace {

using namespace testing_util;

// ---- losses, embeddings, rope ---------------------------------------------------------

TEST(CrossEntropy, LossAndGradientAgainstFiniteDifferences) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {1, 7}, {13, 37}, {17, 1009}};
  const int64_t kIgnore = -100;
  for (auto [rows, vocab] : shapes) {
    const VecF x = random_vec(rows * vocab, -8, 8, 27);
    std::vector<int64_t> t(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) t[r] = (r % 4 == 3) ? kIgnore : (r * 7919) % vocab;
    int64_t count = 0;
    for (int64_t v : t) count += v != kIgnore;
    VecD xd = to_d(x);
    auto row_nll = [&](int64_t r) {
      const double* xr = xd.data() + r * vocab;
      const double m = *std::max_element(xr, xr + vocab);
      double s = 0;
      for (int64_t c = 0; c < vocab; ++c) s += std::exp(xr[c] - m);
      return m + std::log(s) - xr[t[r]];
    };
    double loss_ref = 0;
    for (int64_t r = 0; r < rows; ++r)
      if (t[r] != kIgnore) loss_ref += row_nll(r) / count;
    VecD grad_ref(x.size(), 0.0);
    const double h = 1e-6, dloss = 1.7;
    for (int64_t r = 0; r < rows; ++r) {
      if (t[r] == kIgnore) continue;
      for (int64_t c = 0; c < vocab; ++c) {
        double& v = xd[r * vocab + c];
        const double v0 = v;
        v = v0 + h;
        const double lp = row_nll(r);
        v = v0 - h;
        const double lm = row_nll(r);
        v = v0;
        grad_ref[r * vocab + c] = dloss * (lp - lm) / (2 * h) / count;
      }
    }
    for (int th : kThreads) {
      const Context ctx{th};
      VecF lse(rows), dl(x.size(), 9.0f);
      const float loss =
          cross_entropy_fwd(ctx, x.data(), t.data(), lse.data(), rows, vocab, kIgnore);
      EXPECT_NEAR(loss, loss_ref, 1e-5 * std::max(1.0, std::fabs(loss_ref)));
      cross_entropy_bwd(ctx, x.data(), t.data(), lse.data(), 1.7f, dl.data(), rows, vocab, kIgnore);
      EXPECT_TRUE(close(dl, grad_ref, 1e-4, 1e-7)) << rows << "x" << vocab;
    }
  }
}

TEST(CrossEntropy, AllIgnoredAndBadTargets) {
  const VecF x = random_vec(2 * 5, -1, 1, 28);
  VecF lse(2), dl(10, 3.0f);
  const std::vector<int64_t> ignored = {-1, -1}, bad = {2, 5};
  EXPECT_EQ(cross_entropy_fwd(Context{1}, x.data(), ignored.data(), lse.data(), 2, 5, -1), 0.0f);
  cross_entropy_bwd(Context{1}, x.data(), ignored.data(), lse.data(), 1.0f, dl.data(), 2, 5, -1);
  EXPECT_EQ(dl, VecF(10, 0.0f));
  EXPECT_THROW(cross_entropy_fwd(Context{1}, x.data(), bad.data(), lse.data(), 2, 5, -1), Error);
}

// Vocabulary-parallel: two shards' parts combined give the whole loss and lse; each shard's
// gradient (with the whole lse) is its slice of the whole gradient; a count summed over ranks
// divides instead of this batch's own.
TEST(CrossEntropy, VocabularyShardsMatchTheWholeVocabulary) {
  const int64_t rows = 9, vocab = 37, cut = 16, kIgnore = -100;
  const VecF x = random_vec(rows * vocab, -6, 6, 31);
  std::vector<int64_t> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) t[r] = r == 4 ? kIgnore : (r * 11) % vocab;
  const Context ctx{1};
  VecF lse(rows), dl(x.size());
  const float loss = cross_entropy_fwd(ctx, x.data(), t.data(), lse.data(), rows, vocab, kIgnore);
  cross_entropy_bwd(ctx, x.data(), t.data(), lse.data(), 1.3f, dl.data(), rows, vocab, kIgnore);
  const VocabShard shards[] = {{0, vocab}, {cut, vocab}};
  const int64_t widths[] = {cut, vocab - cut};
  VecF parts(rows * 4), lse2(rows);
  for (int s = 0; s < 2; ++s) {
    VecF piece(rows * widths[s]), part(rows * 2), dpiece(piece.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < widths[s]; ++c)
        piece[r * widths[s] + c] = x[r * vocab + shards[s].offset + c];
    cross_entropy_parts(ctx, piece.data(), t.data(), part.data(), rows, widths[s], kIgnore,
                        shards[s]);
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < 2; ++k) parts[r * 4 + s * 2 + k] = part[r * 2 + k];
    cross_entropy_bwd(ctx, piece.data(), t.data(), lse.data(), 1.3f, dpiece.data(), rows, widths[s],
                      kIgnore, shards[s]);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < widths[s]; ++c)
        EXPECT_NEAR(dpiece[r * widths[s] + c], dl[r * vocab + shards[s].offset + c], 1e-7)
            << "shard " << s << " row " << r << " col " << c;
  }
  const float combined =
      cross_entropy_combine(parts.data(), t.data(), lse2.data(), rows, 2, kIgnore, -1);
  EXPECT_NEAR(combined, loss, 1e-6 * std::fabs(loss));
  EXPECT_TRUE(close(lse2, to_d(lse), 1e-6, 1e-6));
  const int64_t count = count_targets(t.data(), rows, vocab, kIgnore, "test");
  EXPECT_EQ(count, rows - 1);
  EXPECT_NEAR(
      cross_entropy_combine(parts.data(), t.data(), lse2.data(), rows, 2, kIgnore, 4 * count),
      loss / 4, 1e-6 * std::fabs(loss));
}

TEST(Embedding, LookupScatterAndBadIds) {
  for (auto [n, vocab, dim] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {13, 7, 37}, {300, 50, 130}}) {
    const VecF table = random_vec(vocab * dim, -1, 1, 29), dout = random_vec(n * dim, -1, 1, 30);
    std::vector<int64_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[i] = (i * i + 3) % vocab;  // repeats
    VecD fwd_ref(static_cast<size_t>(n * dim)), bwd_ref(static_cast<size_t>(vocab * dim), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c = 0; c < dim; ++c) {
        fwd_ref[i * dim + c] = table[ids[i] * dim + c];
        bwd_ref[ids[i] * dim + c] += dout[i * dim + c];
      }
    }
    for (int th : kThreads) {
      VecF out(fwd_ref.size()), dtable(bwd_ref.size(), 5.0f);
      embedding_fwd(Context{th}, table.data(), ids.data(), out.data(), n, vocab, dim);
      EXPECT_TRUE(close(out, fwd_ref, 0, 0));
      embedding_bwd(Context{th}, dout.data(), ids.data(), dtable.data(), n, vocab, dim);
      EXPECT_TRUE(close(dtable, bwd_ref, 1e-6, 1e-6));
    }
  }
  const VecF table(4 * 3);
  VecF out(3);
  const int64_t bad = 4;
  try {
    embedding_fwd(Context{1}, table.data(), &bad, out.data(), 1, 4, 3);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("4"), std::string::npos);
    EXPECT_NE(msg.find("vocabulary of 4"), std::string::npos) << msg;
  }
}

TEST(Rope, HuggingFaceConventionAndInverse) {
  const int64_t B = 2, T = 37, H = 3, D = 18, off = 5;
  const float theta = 10000.0f;
  const VecF x = random_vec(B * T * H * D, -1, 1, 31);
  VecD want(x.size());
  for (int64_t v = 0; v < B * T * H; ++v) {
    const int64_t t = (v / H) % T;
    for (int64_t i = 0; i < D / 2; ++i) {
      // Frequencies and angles rounded to f32 as HF does; the rotation itself in double.
      const float inv = 1.0f / std::pow(theta, float(2 * i) / float(D));
      const double a = static_cast<float>(float(t + off) * inv);
      const double x1 = x[v * D + i], x2 = x[v * D + i + D / 2];
      want[v * D + i] = x1 * std::cos(a) - x2 * std::sin(a);
      want[v * D + i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  }
  const VecF w = random_vec(x.size(), -1, 1, 32);
  for (int th : kThreads) {
    const Context ctx{th};
    VecF y(x.size()), back(x.size()), wt(x.size());
    rope(ctx, x.data(), y.data(), B, T, H, D, theta, off, false);
    EXPECT_TRUE(close(y, want, 1e-5, 1e-6));
    rope(ctx, y.data(), back.data(), B, T, H, D, theta, off, true);
    EXPECT_TRUE(close(back, to_d(x), 1e-5, 1e-6));
    // The inverse is the adjoint: <rope(x), w> = <x, rope_inv(w)>.
    rope(ctx, w.data(), wt.data(), B, T, H, D, theta, off, true);
    EXPECT_NEAR(dot(to_d(y), to_d(w)), dot(to_d(x), to_d(wt)), 1e-4);
    VecF inplace = x;
    rope(ctx, inplace.data(), inplace.data(), B, T, H, D, theta, off, false);
    EXPECT_EQ(inplace, y);
  }
}

// ---- optimizer ---------------------------------------------------------------------------

TEST(AdamW, FollowsPyTorchOverSeveralSteps) {
  for (int64_t n : kSizes) {
    VecF p = random_vec(n, -1, 1, 33), m(n, 0.0f), v(n, 0.0f);
    VecD pd = to_d(p), md(n, 0.0), vd(n, 0.0);
    VecF p2 = p, m2 = m, v2 = v;
    const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    for (int64_t step = 1; step <= 5; ++step) {
      const VecF g = random_vec(n, -1, 1, 34 + unsigned(step));
      for (int64_t i = 0; i < n; ++i) {
        pd[i] *= 1 - lr * wd;
        md[i] = b1 * md[i] + (1 - b1) * g[i];
        vd[i] = b2 * vd[i] + (1 - b2) * double(g[i]) * g[i];
        const double mh = md[i] / (1 - std::pow(b1, step));
        const double vh = vd[i] / (1 - std::pow(b2, step));
        pd[i] -= lr * mh / (std::sqrt(vh) + eps);
      }
      adamw(Context{1}, p.data(), g.data(), m.data(), v.data(), n, float(lr), float(b1), float(b2),
            float(eps), float(wd), step);
      adamw(Context{2}, p2.data(), g.data(), m2.data(), v2.data(), n, float(lr), float(b1),
            float(b2), float(eps), float(wd), step);
    }
    EXPECT_TRUE(close(p, pd, 1e-6, 1e-7)) << n;
    EXPECT_TRUE(close(m, md, 1e-5, 1e-7)) << n;
    EXPECT_TRUE(close(v, vd, 1e-4, 1e-9)) << n;
    EXPECT_EQ(p, p2);
  }
  // First step moves each parameter by about lr against the gradient's sign.
  VecF p = {1.0f, 1.0f}, m(2, 0.0f), v(2, 0.0f);
  const VecF g = {0.5f, -2.0f};
  adamw(Context{1}, p.data(), g.data(), m.data(), v.data(), 2, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
  EXPECT_NEAR(p[0], 0.99f, 1e-6);
  EXPECT_NEAR(p[1], 1.01f, 1e-6);
}

TEST(SumSquaresAndScale, MatchReferenceForAnyThreadCount) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{13}, int64_t{1000}, int64_t{200003}}) {
    VecF x = random_vec(n, -3, 3, 40);
    double want = 0;
    for (float v : x) want += double(v) * v;
    const double s1 = sum_squares(Context{1}, x.data(), n);
    EXPECT_NEAR(s1, want, 1e-12 * std::max(1.0, want));
    EXPECT_EQ(sum_squares(Context{2}, x.data(), n), s1);
    VecD scaled(x.size());
    for (size_t i = 0; i < x.size(); ++i) scaled[i] = double(x[i]) * 0.25;
    scale(Context{2}, x.data(), n, 0.25f);
    EXPECT_TRUE(close(x, scaled, 0, 0));
  }
}

}  // namespace
}  // namespace hp::cpu
