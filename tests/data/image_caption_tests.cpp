// The synthetic image + caption set (a second source of data_test): samples are pure functions of
// (seed, index), each caption names what its image shows, and batches are laid out as the
// vision-language model's inputs and targets.
#include <gtest/gtest.h>

#include <set>

#include "hp/core/error.hpp"
#include "hp/data/image_caption.hpp"
#include "test_util.hpp"

namespace hp::data {
namespace {

using test::error_of;

io::VisionConfig vision() {
  io::VisionConfig v;
  v.n_layer = 1, v.d_model = 8, v.n_head = 2, v.d_ff = 16;
  v.image_size = 16, v.patch_size = 4, v.channels = 3;
  return v;
}

TEST(ImageCaption, DeterministicAndResumable) {
  ImageCaptionSource a(vision(), {3, 10, 7}), b(vision(), {3, 10, 7}), c(vision(), {3, 10, 8});
  const Batch a0 = a.next();
  const LoaderPosition after0 = a.position();
  const Batch a1 = a.next();
  EXPECT_EQ(after0.index, 3u);
  EXPECT_EQ(a0.input.to_i64_vector(), b.next().input.to_i64_vector());  // the same seed
  EXPECT_NE(a0.input.to_i64_vector(), c.next().input.to_i64_vector());  // another seed
  EXPECT_NE(a0.input.to_i64_vector(), a1.input.to_i64_vector());
  ImageCaptionSource r(vision(), {3, 10, 7});
  r.set_position(after0);
  const Batch r1 = r.next();
  EXPECT_EQ(r1.input.to_i64_vector(), a1.input.to_i64_vector());
  EXPECT_EQ(r1.target.to_i64_vector(), a1.target.to_i64_vector());
}

// Inputs: each image's 768 levels then the caption's first T tokens; targets: -100 over the first
// 15 of the 16 image tokens, then the caption's T + 1 tokens.
TEST(ImageCaption, LayoutOfInputsAndTargets) {
  const io::VisionConfig v = vision();
  const int64_t B = 2, T = 10, P = v.pixels(), N = v.tokens();
  ImageCaptionSource src(v, {B, T, 5});
  const Batch b = src.next();
  ASSERT_EQ(b.input.shape(), Shape({B, P + T}));
  ASSERT_EQ(b.target.shape(), Shape({B, N + T}));
  const auto in = b.input.to_i64_vector(), tg = b.target.to_i64_vector();
  for (int64_t r = 0; r < B; ++r) {
    std::vector<int64_t> image(static_cast<size_t>(P));
    image_of(v, 5, uint64_t(r), image.data());
    const std::string cap = caption_of(5, uint64_t(r), T + 1);
    for (int64_t i = 0; i < P; ++i) ASSERT_EQ(in[size_t(r * (P + T) + i)], image[size_t(i)]);
    for (int64_t t = 0; t < T; ++t)
      EXPECT_EQ(in[size_t(r * (P + T) + P + t)], (unsigned char)cap[size_t(t)]);
    for (int64_t i = 0; i + 1 < N; ++i) EXPECT_EQ(tg[size_t(r * (N + T) + i)], kIgnoreTarget);
    for (int64_t t = 0; t <= T; ++t)
      EXPECT_EQ(tg[size_t(r * (N + T) + N - 1 + t)], (unsigned char)cap[size_t(t)]);
  }
}

// The caption's colour and corner are what the image shows: the named corner's quadrant is
// brightest in the named colour's channels.
TEST(ImageCaption, CaptionNamesTheImage) {
  const io::VisionConfig v = vision();
  const int64_t S = v.image_size, h = S / 2;
  const char* corners[] = {"top left", "top right", "bottom left", "bottom right"};
  const char* colours[] = {"red", "green", "blue", "white"};
  const int rgb[4][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 1}};
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 200; ++i) {
    std::vector<int64_t> img(size_t(v.pixels()));
    image_of(v, 11, i, img.data());
    const std::string cap = caption_of(11, i, 64);
    seen.insert(cap.substr(0, cap.find(',')));
    auto mean = [&](int64_t c, int q) {  // channel c over quadrant q
      double s = 0;
      for (int64_t y = (q / 2) * h; y < (q / 2 + 1) * h; ++y)
        for (int64_t x = (q % 2) * h; x < (q % 2 + 1) * h; ++x)
          s += double(img[size_t((c * S + y) * S + x)]);
      return s / double(h * h);
    };
    int corner = 0, colour = -1;
    for (int q = 1; q < 4; ++q)
      if (mean(0, q) + mean(1, q) + mean(2, q) >
          mean(0, corner) + mean(1, corner) + mean(2, corner))
        corner = q;
    for (int k = 0; k < 4; ++k) {
      bool match = true;
      for (int c = 0; c < 3; ++c) match &= (mean(c, corner) > 100) == bool(rgb[k][c]);
      if (match) colour = k;
    }
    ASSERT_GE(colour, 0) << "sample " << i;
    EXPECT_EQ(cap.substr(0, cap.find('.')),
              std::string("a ") + colours[colour] + " square, " + corners[corner])
        << "sample " << i;
  }
  EXPECT_EQ(seen.size(), 4u);  // every colour drawn
}

TEST(ImageCaption, PixelLevelsAndErrors) {
  Tensor pv({1, 3, 2, 2}, DType::kF32);
  for (int64_t i = 0; i < 12; ++i) pv.f32()[i] = float(double(i * 20) / 255.0);
  const auto lv = pixel_levels(pv).to_i64_vector();
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(lv[size_t(i)], i * 20);
  pv.f32()[5] = 0.5f;
  EXPECT_NE(error_of([&] { pixel_levels(pv); }).find("element 5 is 0.5, not a level"),
            std::string::npos);
  io::VisionConfig one = vision();
  one.channels = 1;
  EXPECT_NE(error_of([&] {
              ImageCaptionSource(one, {1, 4, 0});
            }).find("3 channels"),
            std::string::npos);
}

}  // namespace
}  // namespace hp::data
