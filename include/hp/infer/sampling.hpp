// Choosing the next token from a sequence's logits (docs/inference.md, "Sampling"): penalties,
// then temperature, top-k, top-p and min-p filters, then one counter-based draw, so that the draw
// for token i of sequence s depends only on (seed, s, i), never on batching or timing.
// Temperature 0 is greedy: the largest logit, the lowest id among equals, no draw.
// Not a tokenizer: stop strings are matched against text the caller decodes.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace hp::infer {

struct SamplingParams {
  double temperature = 0.8;         // 0: greedy
  int64_t top_k = 40;               // 0: every token
  double top_p = 1.0;               // (0, 1]: the smallest set of tokens holding this much
  double min_p = 0.0;               // [0, 1]: tokens below min_p x the top probability are dropped
  double repetition_penalty = 1.0;  // > 0; 1: none (prompt and generated tokens)
  double presence_penalty = 0.0;    // subtracted once from every generated token's logit
  double frequency_penalty = 0.0;   // subtracted per occurrence among the generated tokens
  uint64_t seed = 1;
};

// Throws hp::Error naming the first value out of range ("top_p must be in (0, 1], got 0").
void check(const SamplingParams& p);

// Penalties on `logits` in place: the repetition penalty (Hugging Face's: a positive logit is
// divided by it, a negative one multiplied) on every token of `prompt` and `generated`; the
// presence and frequency penalties (OpenAI's) on the tokens of `generated`.
void apply_penalties(std::span<float> logits, std::span<const int64_t> prompt,
                     std::span<const int64_t> generated, const SamplingParams& p);

// The tokens that may be drawn and their probabilities (summing to 1, most likely first): after
// temperature, top-k, top-p and min-p. Temperature 0: the greedy token alone.
std::vector<std::pair<int64_t, double>> candidates(std::span<const float> logits,
                                                   const SamplingParams& p);

// One draw from `cand` with u = uniform(seed, stream of sequence `seq`, `index`).
int64_t draw(const std::vector<std::pair<int64_t, double>>& cand, uint64_t seed, uint64_t seq,
             uint64_t index);

// Token `index` of sequence `seq`: penalties (on a copy), filters and the draw.
int64_t sample(std::span<const float> logits, std::span<const int64_t> prompt,
               std::span<const int64_t> generated, const SamplingParams& p, uint64_t seq,
               uint64_t index);

// Where the first of `stops` begins in `text`, or std::string::npos.
size_t find_stop(const std::string& text, const std::vector<std::string>& stops);

}  // namespace hp::infer
