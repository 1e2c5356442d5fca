// Sampling: penalties, filters, the counter-based draw and stop strings.
#include "hp/infer/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "hp/core/error.hpp"
#include "hp/core/rng.hpp"

namespace hp::infer {

void check(const SamplingParams& p) {
  HP_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "temperature must be >= 0, got ",
           p.temperature);
  HP_CHECK(p.top_k >= 0, "top_k must be >= 0, got ", p.top_k);
  HP_CHECK(p.top_p > 0 && p.top_p <= 1, "top_p must be in (0, 1], got ", p.top_p);
  HP_CHECK(p.min_p >= 0 && p.min_p <= 1, "min_p must be in [0, 1], got ", p.min_p);
  HP_CHECK(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0,
           "repetition_penalty must be > 0, got ", p.repetition_penalty);
  HP_CHECK(std::isfinite(p.presence_penalty) && std::isfinite(p.frequency_penalty),
           "presence and frequency penalties must be finite");
}

void apply_penalties(std::span<float> logits, std::span<const int64_t> prompt,
                     std::span<const int64_t> generated, const SamplingParams& p) {
  const auto in_range = [&](int64_t t) { return t >= 0 && size_t(t) < logits.size(); };
  if (p.repetition_penalty != 1.0) {
    std::vector<bool> seen(logits.size(), false);
    for (auto part : {prompt, generated})
      for (int64_t t : part)
        if (in_range(t)) seen[size_t(t)] = true;
    const float r = float(p.repetition_penalty);
    for (size_t t = 0; t < logits.size(); ++t)
      if (seen[t]) logits[t] = logits[t] > 0 ? logits[t] / r : logits[t] * r;
  }
  if (p.presence_penalty == 0 && p.frequency_penalty == 0) return;
  std::map<int64_t, int64_t> count;
  for (int64_t t : generated)
    if (in_range(t)) ++count[t];
  for (auto [t, n] : count)
    logits[size_t(t)] -= float(p.presence_penalty + p.frequency_penalty * double(n));
}

std::vector<std::pair<int64_t, double>> candidates(std::span<const float> logits,
                                                   const SamplingParams& p) {
  HP_CHECK(!logits.empty(), "[sampling] no logits");
  const int64_t V = int64_t(logits.size());
  if (p.temperature == 0) {  // greedy: the first maximum
    return {{int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin()), 1.0}};
  }
  std::vector<std::pair<int64_t, double>> c;
  c.reserve(size_t(V));
  for (int64_t v = 0; v < V; ++v) c.push_back({v, double(logits[size_t(v)])});
  const auto by_logit = [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  const int64_t k = p.top_k > 0 ? std::min(p.top_k, V) : V;
  std::partial_sort(c.begin(), c.begin() + k, c.end(), by_logit);
  c.resize(size_t(k));
  const double mx = c[0].second;
  double z = 0;
  for (auto& e : c) z += (e.second = std::exp((e.second - mx) / p.temperature));
  for (auto& e : c) e.second /= z;
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  double acc = 0;
  size_t keep = 0;
  while (keep < c.size() && (keep == 0 || acc < p.top_p)) acc += c[keep++].second;
  c.resize(keep);
  // min-p: drop tokens below min_p x the most likely one's probability.
  const double floor = p.min_p * c[0].second;
  while (c.size() > 1 && c.back().second < floor) c.pop_back();
  z = 0;
  for (auto& e : c) z += e.second;
  for (auto& e : c) e.second /= z;
  return c;
}

int64_t draw(const std::vector<std::pair<int64_t, double>>& cand, uint64_t seed, uint64_t seq,
             uint64_t index) {
  HP_CHECK(!cand.empty(), "[sampling] no candidates");
  if (cand.size() == 1) return cand[0].first;
  const uint64_t stream = rng::mix(0x73616d706c650000ull ^ seq);  // "sample", per sequence
  const double u = rng::uniform(seed, stream, index);
  double acc = 0;
  for (const auto& [t, q] : cand)
    if (u < (acc += q)) return t;
  return cand.back().first;  // rounding left u above the sum
}

int64_t sample(std::span<const float> logits, std::span<const int64_t> prompt,
               std::span<const int64_t> generated, const SamplingParams& p, uint64_t seq,
               uint64_t index) {
  std::vector<float> l(logits.begin(), logits.end());
  apply_penalties(l, prompt, generated, p);
  return draw(candidates(l, p), p.seed, seq, index);
}

size_t find_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t first = std::string::npos;
  for (const auto& s : stops)
    if (!s.empty()) first = std::min(first, text.find(s));
  return first;
}

}  // namespace hp::infer
