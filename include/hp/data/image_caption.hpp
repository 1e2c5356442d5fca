// Synthetic image + caption data for the vision-language model: seeded images of one coloured
// square on a noisy background, each captioned in bytes with the square's colour and corner, so
// the caption can only be predicted by looking at the image. Also the one function that lays a
// batch of images and captions out as the model's step inputs (hp train and hp check share it).
// Not an image pipeline: no files, no augmentation, no resizing.
#pragma once
#include <cstdint>
#include <string>

#include "hp/data/loader.hpp"
#include "hp/io/model_config.hpp"

namespace hp::data {

// Ignored target (the cross-entropy's ignore_index): image positions carry no loss.
inline constexpr int64_t kIgnoreTarget = -100;

// The step inputs of images and captions: `levels` i64 [B, pixels] (0..255, channel-major),
// `captions` i64 [B, T + 1] -> input i64 [B, pixels + T] (the levels, then caption tokens 0..T-1)
// and target i64 [B, image_tokens + T]: ignored except at the last image token, which predicts
// caption token 0, and at caption position t, which predicts token t + 1 (HF LLaVA's labels).
Batch image_caption_batch(const Tensor& levels, const Tensor& captions, int64_t image_tokens);

// Pixel values f32 [B, C, S, S], each k/255 for an integer level k (a reference case's
// batch.safetensors "pixel_values") -> the levels i64 [B, C*S*S]. Throws naming the first value
// that is not a level within float32 rounding.
Tensor pixel_levels(const Tensor& pixel_values);

// The caption of sample `index` (seed, index): its square's colour and corner, repeated to fill
// `length` bytes; the square image_of draws.
std::string caption_of(uint64_t seed, uint64_t index, int64_t length);
// The image of sample `index`: i64 levels [C * S * S] written to `out`.
void image_of(const io::VisionConfig& v, uint64_t seed, uint64_t index, int64_t* out);

// Batches of (image, caption) samples as image_caption_batch lays them out; sample `index` is a
// pure function of (seed, index), so a saved position resumes exactly. seq_len() is T, the
// caption tokens of the input. Position: epoch stays 0, index counts samples.
class ImageCaptionSource : public BatchSource {
 public:
  // Throws unless the vision config has 3 channels and images of at least 8 x 8 pixels.
  ImageCaptionSource(const io::VisionConfig& vision, LoaderOptions opt);
  Batch next() override;
  LoaderPosition position() const override { return pos_; }
  void set_position(const LoaderPosition& p) override { pos_ = p; }
  int64_t batch_size() const override { return opt_.batch; }
  int64_t seq_len() const override { return opt_.seq; }

 private:
  io::VisionConfig vision_;
  LoaderOptions opt_;
  LoaderPosition pos_;
};

}  // namespace hp::data
