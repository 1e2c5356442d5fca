// The synthetic image + caption set: each sample's colour, corner, square offset and noise are
// counter-based hashes of (seed, index), so any sample is drawn alone and reruns agree bitwise.
#include "hp/data/image_caption.hpp"

#include <cmath>

#include "hp/core/error.hpp"

namespace hp::data {

namespace {

struct Colour {
  const char* name;
  int rgb[3];
};
constexpr Colour kColours[] = {
    {"red", {1, 0, 0}}, {"green", {0, 1, 0}}, {"blue", {0, 0, 1}}, {"white", {1, 1, 1}}};
constexpr const char* kCorners[] = {"top left", "top right", "bottom left", "bottom right"};

// The sample's class: colour (0..3) and corner (0..3).
std::pair<int, int> class_of(uint64_t seed, uint64_t index) {
  const uint64_t h = hash_u64(seed, index, 0);
  return {int(h % 4), int((h / 4) % 4)};
}

}  // namespace

std::string caption_of(uint64_t seed, uint64_t index, int64_t length) {
  const auto [colour, corner] = class_of(seed, index);
  const std::string phrase =
      std::string("a ") + kColours[colour].name + " square, " + kCorners[corner] + ". ";
  std::string out;
  while (int64_t(out.size()) < length) out += phrase;
  out.resize(size_t(length));
  return out;
}

void image_of(const io::VisionConfig& v, uint64_t seed, uint64_t index, int64_t* out) {
  const auto [colour, corner] = class_of(seed, index);
  const int64_t S = v.image_size, half = S / 2, side = half * 3 / 4;
  // The square lies inside its corner's quadrant at a drawn offset.
  const uint64_t h = hash_u64(seed, index, 1);
  const int64_t slack = half - side + 1;
  const int64_t top = (corner / 2) * half + int64_t(h % uint64_t(slack));
  const int64_t left = (corner % 2) * half + int64_t((h >> 16) % uint64_t(slack));
  for (int64_t c = 0; c < v.channels; ++c)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x) {
        const int64_t i = (c * S + y) * S + x;
        const int64_t noise = int64_t(hash_u64(seed, index, uint64_t(2 + i)) % 48);
        const bool in = y >= top && y < top + side && x >= left && x < left + side;
        out[i] = in && kColours[colour].rgb[c] ? 255 - noise : noise;
      }
}

Batch image_caption_batch(const Tensor& levels, const Tensor& captions, int64_t image_tokens) {
  HP_CHECK(levels.rank() == 2 && captions.rank() == 2 && levels.dim(0) == captions.dim(0) &&
               captions.dim(1) >= 2 && image_tokens > 0,
           "[data] images [B, pixels] and captions [B, T+1] expected, got ",
           shape_str(levels.shape()), " and ", shape_str(captions.shape()));
  const Tensor lv = levels.to(DType::kI64), cap = captions.to(DType::kI64);
  const int64_t B = lv.dim(0), P = lv.dim(1), T = cap.dim(1) - 1, N = image_tokens;
  Batch out{Tensor({B, P + T}, DType::kI64), Tensor({B, N + T}, DType::kI64)};
  for (int64_t b = 0; b < B; ++b) {
    int64_t* in = out.input.i64() + b * (P + T);
    int64_t* tg = out.target.i64() + b * (N + T);
    const int64_t* c = cap.i64() + b * (T + 1);
    for (int64_t i = 0; i < P; ++i) in[i] = lv.i64()[b * P + i];
    for (int64_t t = 0; t < T; ++t) in[P + t] = c[t];
    for (int64_t i = 0; i + 1 < N; ++i) tg[i] = kIgnoreTarget;
    for (int64_t t = 0; t <= T; ++t) tg[N - 1 + t] = c[t];
  }
  return out;
}

Tensor pixel_levels(const Tensor& pixel_values) {
  HP_CHECK(pixel_values.rank() == 4, "[data] pixel_values must be [B, C, S, S], got ",
           shape_str(pixel_values.shape()));
  const std::vector<float> v = pixel_values.to_f32_vector();
  const int64_t B = pixel_values.dim(0);
  Tensor out({B, int64_t(v.size()) / B}, DType::kI64);
  for (size_t i = 0; i < v.size(); ++i) {
    const double k = std::nearbyint(double(v[i]) * 255.0);
    HP_CHECK(
        std::isfinite(v[i]) && k >= 0 && k <= 255 && std::fabs(double(v[i]) - k / 255.0) <= 1e-6,
        "[data] pixel_values element ", i, " is ", v[i], ", not a level k/255");
    out.i64()[i] = int64_t(k);
  }
  return out;
}

ImageCaptionSource::ImageCaptionSource(const io::VisionConfig& vision, LoaderOptions opt)
    : vision_(vision), opt_(opt) {
  HP_CHECK(vision_.channels == 3 && vision_.image_size >= 8,
           "[data] synthetic images need 3 channels and at least 8 x 8 pixels, the model has ",
           vision_.channels, " x ", vision_.image_size, " x ", vision_.image_size);
  HP_CHECK(opt_.batch > 0 && opt_.seq > 0,
           "[data] batch and seq must be positive, got B=", opt_.batch, " T=", opt_.seq);
}

Batch ImageCaptionSource::next() {
  const int64_t B = opt_.batch, T = opt_.seq, P = vision_.pixels();
  Tensor levels({B, P}, DType::kI64), captions({B, T + 1}, DType::kI64);
  for (int64_t b = 0; b < B; ++b) {
    const uint64_t sample = pos_.index++;
    image_of(vision_, opt_.seed, sample, levels.i64() + b * P);
    const std::string c = caption_of(opt_.seed, sample, T + 1);
    for (int64_t t = 0; t <= T; ++t) captions.i64()[b * (T + 1) + t] = (unsigned char)c[size_t(t)];
  }
  return image_caption_batch(levels, captions, vision_.tokens());
}

}  // namespace hp::data
