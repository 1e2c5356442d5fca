// Data: byte tokenizer, text / token-file datasets, deterministic loaders, the default corpus.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "hp/core/error.hpp"
#include "hp/data/corpus.hpp"
#include "hp/data/dataset.hpp"
#include "hp/data/loader.hpp"
#include "hp/data/tokenizer.hpp"
#include "hp/io/file.hpp"
#include "test_util.hpp"
#include "test_inputs.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace hp::data {
namespace {

using test::error_of;
using test::TempDir;

void write_bytes(const fs::path& p, const void* data, size_t n) {
  std::ofstream f(p, std::ios::binary);
  f.write(static_cast<const char*>(data), std::streamsize(n));
}

std::vector<int64_t> values(const Tensor& t) {
  return t.to_i64_vector();
}

// ---- tokenizer ----

TEST(ByteTokenizer, RoundTripsEveryByte) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab(), 256);
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(char(i));
  const std::string text = "héllo \xff\xfe broken \xc3 utf-8" + all;
  std::vector<int32_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0xc3);  // 'é' is two bytes
  EXPECT_EQ(ids[2], 0xa9);
  for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < 256);
  EXPECT_EQ(tok.decode(ids), text);
  std::vector<int64_t> ids64 = tok.encode_i64(text);
  EXPECT_EQ(tok.decode(ids64), text);
  EXPECT_TRUE(tok.encode("").empty());
  const std::vector<int32_t> bad{65, 256};
  EXPECT_NE(error_of([&] { tok.decode(bad); }).find("token 256 at position 1"), std::string::npos);
  const std::vector<int64_t> neg{-1};
  EXPECT_THROW(tok.decode(neg), Error);
}

// ---- datasets ----

class Datasets : public TempDir {};

TEST_F(Datasets, TextFileIsBytes) {
  const std::string text = "In the beginning\n\xff";
  write_bytes(dir_ / "t.txt", text.data(), text.size());
  TokenDataset d = TokenDataset::from_text_file(dir_ / "t.txt");
  EXPECT_EQ(d.size(), int64_t(text.size()));
  EXPECT_EQ(d.vocab(), 256);
  EXPECT_EQ(d.at(0), 'I');
  EXPECT_EQ(d.at(d.size() - 1), 255);
  std::vector<int64_t> got(3);
  d.read(3, 3, got.data());
  EXPECT_EQ(got, (std::vector<int64_t>{'t', 'h', 'e'}));
  EXPECT_THROW(d.at(d.size()), Error);
  EXPECT_THROW(d.read(d.size() - 1, 2, got.data()), Error);
  TokenDataset s = d.slice(3, 6);
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.at(2), 'e');
  EXPECT_THROW(TokenDataset::from_text_file(dir_ / "missing.txt"), Error);
}

TEST_F(Datasets, TokenFileWidths) {
  const std::vector<uint16_t> u16{0, 1, 500, 65535, 7};
  write_bytes(dir_ / "a.u16", u16.data(), u16.size() * 2);
  TokenDataset d16 = TokenDataset::from_token_file(dir_ / "a.u16", TokenWidth::kU16, 65536);
  ASSERT_EQ(d16.size(), 5);
  EXPECT_EQ(d16.at(3), 65535);
  EXPECT_EQ(d16.at(2), 500);

  const std::vector<uint32_t> u32{100000, 3, 99999};
  write_bytes(dir_ / "a.u32", u32.data(), u32.size() * 4);
  TokenDataset d32 = TokenDataset::from_token_file(dir_ / "a.u32", TokenWidth::kU32, 100001);
  ASSERT_EQ(d32.size(), 3);
  EXPECT_EQ(d32.at(0), 100000);

  // The same bytes read as u16 are different tokens, and 12 bytes are 6 of them.
  TokenDataset wrong = TokenDataset::from_token_file(dir_ / "a.u32", TokenWidth::kU16, 65536);
  EXPECT_EQ(wrong.size(), 6);

  // Size not a multiple of the width.
  write_bytes(dir_ / "odd.u16", u16.data(), 9);
  std::string msg =
      error_of([&] { TokenDataset::from_token_file(dir_ / "odd.u16", TokenWidth::kU16, 65536); });
  EXPECT_NE(msg.find("odd.u16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a multiple of the token width"), std::string::npos) << msg;
  write_bytes(dir_ / "odd.u32", u32.data(), 10);
  EXPECT_THROW(TokenDataset::from_token_file(dir_ / "odd.u32", TokenWidth::kU32, 1 << 20), Error);

  // A token outside the vocabulary names its value and position.
  msg = error_of([&] { TokenDataset::from_token_file(dir_ / "a.u16", TokenWidth::kU16, 50257); });
  EXPECT_NE(msg.find("token 65535 at position 3"), std::string::npos) << msg;
  EXPECT_THROW(TokenDataset::from_token_file(dir_ / "a.u32", TokenWidth::kU32, 100000), Error);
  EXPECT_THROW(TokenDataset::from_token_file(dir_ / "a.u16", TokenWidth::kU16, 0), Error);

  EXPECT_EQ(parse_token_width("uint16"), TokenWidth::kU16);
  EXPECT_EQ(parse_token_width("u32"), TokenWidth::kU32);
  EXPECT_THROW(parse_token_width("u24"), Error);
}

TEST(Dataset, ValidationSplit) {
  std::vector<int32_t> toks(1000);
  for (int i = 0; i < 1000; ++i) toks[size_t(i)] = i % 50;
  TokenDataset d = TokenDataset::from_tokens(toks, 50);
  auto s = d.split(0.05);
  EXPECT_EQ(s.train.size(), 950);
  EXPECT_EQ(s.val.size(), 50);
  EXPECT_EQ(s.val.at(0), 950 % 50);
  EXPECT_EQ(s.train.at(949), 949 % 50);
  auto none = d.split(0.0);
  EXPECT_EQ(none.val.size(), 0);
  EXPECT_EQ(d.split(0.25).train.size(), 750);
  EXPECT_THROW(d.split(1.0), Error);
  EXPECT_THROW(d.split(-0.1), Error);
  EXPECT_THROW(TokenDataset::from_tokens({1, 50}, 50), Error);
}

// ---- permutation and loaders ----

TEST(Permutation, IsABijection) {
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 17ull, 1000ull, 4096ull, 4097ull}) {
    Permutation p(n, 42);
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t v = p(i);
      EXPECT_LT(v, n);
      seen.insert(v);
    }
    EXPECT_EQ(seen.size(), n) << n;
  }
  Permutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20);  // different keys, different orders
  EXPECT_THROW(a(1000), Error);
}

TokenDataset counting_dataset(int64_t n, int64_t vocab = 1 << 20) {
  std::vector<int32_t> toks(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) toks[size_t(i)] = int32_t(i % vocab);
  return TokenDataset::from_tokens(toks, vocab);
}

TEST(BatchLoader, ShapesShiftAndEpochCoverage) {
  const int64_t T = 8, B = 3;
  TokenDataset d = counting_dataset(8 * 25 + 5);  // 25 windows (the last needs one extra token)
  BatchLoader loader(d, {.batch = B, .seq = T, .seed = 7});
  EXPECT_EQ(loader.samples_per_epoch(), 25);
  std::vector<int64_t> starts;
  for (int step = 0; step < 9; ++step) {  // 27 samples: the whole first epoch, then 2 more
    Batch b = loader.next();
    ASSERT_EQ(b.input.shape(), (Shape{B, T}));
    ASSERT_EQ(b.target.shape(), (Shape{B, T}));
    EXPECT_EQ(b.input.dtype(), DType::kI64);
    for (int64_t r = 0; r < B; ++r) {
      const int64_t s = b.input.i64()[r * T];  // token value == its position
      for (int64_t t = 0; t < T; ++t) {
        EXPECT_EQ(b.input.i64()[r * T + t], s + t);
        EXPECT_EQ(b.target.i64()[r * T + t], s + t + 1);
      }
      starts.push_back(s);
    }
  }
  std::vector<int64_t> epoch0(starts.begin(), starts.begin() + 25);
  EXPECT_FALSE(std::is_sorted(epoch0.begin(), epoch0.end()));  // shuffled
  std::sort(epoch0.begin(), epoch0.end());
  for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(epoch0[size_t(i)], i * T);
  EXPECT_EQ(loader.position(), (LoaderPosition{1, 2}));
  // Epoch 1 is a different order.
  EXPECT_NE(loader.sample_offset(0, 0) == loader.sample_offset(1, 0) &&
                loader.sample_offset(0, 1) == loader.sample_offset(1, 1) &&
                loader.sample_offset(0, 2) == loader.sample_offset(1, 2),
            true);
}

TEST(BatchLoader, DeterministicAndResumable) {
  TokenDataset d = counting_dataset(5000, 256);
  for (Sampling mode : {Sampling::kShuffledWindows, Sampling::kRandomOffsets}) {
    const LoaderOptions opt{.batch = 4, .seq = 16, .seed = 123, .sampling = mode};
    BatchLoader a(d, opt), b(d, opt);
    std::vector<Batch> run;
    LoaderPosition saved;
    for (int i = 0; i < 200; ++i) {  // crosses several epochs (78 windows each)
      if (i == 120) saved = a.position();
      run.push_back(a.next());
      Batch other = b.next();
      EXPECT_EQ(values(run.back().input), values(other.input));
      EXPECT_EQ(values(run.back().target), values(other.target));
    }
    // Resume from a position that went through JSON, as a checkpoint would store it.
    BatchLoader resumed(d, opt);
    resumed.set_position(LoaderPosition::from_json(saved.to_json()));
    for (int i = 120; i < 200; ++i) {
      Batch r = resumed.next();
      ASSERT_EQ(values(r.input), values(run[size_t(i)].input)) << i;
      ASSERT_EQ(values(r.target), values(run[size_t(i)].target)) << i;
    }
    EXPECT_EQ(resumed.position(), a.position());
    // Another seed gives other batches.
    LoaderOptions o2 = opt;
    o2.seed = 124;
    BatchLoader c(d, o2);
    EXPECT_NE(values(c.next().input), values(run[0].input));
  }
}

TEST(BatchLoader, RandomOffsetsStayInRange) {
  TokenDataset d = counting_dataset(40);
  BatchLoader l(d, {.batch = 64, .seq = 8, .seed = 1, .sampling = Sampling::kRandomOffsets});
  std::set<int64_t> starts;
  for (int i = 0; i < 4; ++i) {
    Batch b = l.next();
    for (int64_t r = 0; r < 64; ++r) {
      starts.insert(b.input.i64()[r * 8]);
      EXPECT_LE(b.target.i64()[r * 8 + 7], 39);
    }
  }
  EXPECT_EQ(*starts.begin(), 0);
  EXPECT_EQ(*starts.rbegin(), 31);  // every start in [0, N - T - 1] appears
  EXPECT_EQ(starts.size(), 32u);
}

TEST(BatchLoader, Errors) {
  TokenDataset d = counting_dataset(8);
  EXPECT_NE(error_of([&] { BatchLoader(d, {.batch = 1, .seq = 8}); }).find("at least 9"),
            std::string::npos);
  EXPECT_THROW(BatchLoader(d, {.batch = 0, .seq = 4}), Error);
  BatchLoader ok(d, {.batch = 1, .seq = 7});
  EXPECT_EQ(ok.samples_per_epoch(), 1);
  EXPECT_THROW(ok.set_position({0, 5}), Error);
  EXPECT_THROW(LoaderPosition::from_json(io::Json::object()), Error);
  // A negative epoch in a checkpoint's state.json wrapped to 2^64 - 1 and was accepted.
  const std::string msg = error_of([] {
    LoaderPosition::from_json(io::Json{{"epoch", -1}, {"index", 0}});
  });
  EXPECT_NE(msg.find("'epoch' must be non-negative, got -1"), std::string::npos) << msg;
}

TEST(RandomTokenSource, DeterministicUniformAndResumable) {
  const LoaderOptions opt{.batch = 8, .seq = 64, .seed = 9};
  RandomTokenSource a(1000, opt), b(1000, opt);
  Batch x = a.next(), y = b.next();
  EXPECT_EQ(values(x.input), values(y.input));
  std::vector<int64_t> in = values(x.input), tg = values(x.target);
  int64_t max_tok = 0;
  for (int64_t r = 0; r < 8; ++r) {
    for (int64_t t = 0; t + 1 < 64; ++t)
      EXPECT_EQ(tg[size_t(r * 64 + t)], in[size_t(r * 64 + t + 1)]);
  }
  for (int64_t v : in) {
    EXPECT_TRUE(v >= 0 && v < 1000);
    max_tok = std::max(max_tok, v);
  }
  EXPECT_GT(max_tok, 900);
  LoaderPosition p = a.position();
  Batch next = a.next();
  RandomTokenSource c(1000, opt);
  c.set_position(p);
  EXPECT_EQ(values(c.next().target), values(next.target));
  EXPECT_NE(values(next.input), values(x.input));
  EXPECT_THROW(RandomTokenSource(0, opt), Error);
}

// ---- corpus ----

std::vector<uint8_t> pack9(const std::vector<uint32_t>& codes);

// compress(1)-style 9-bit LZW encoder, enough to exercise the decoder without the corpus.
std::vector<uint8_t> lzw9(const std::string& s) {
  std::map<std::string, uint32_t> dict;
  for (int i = 0; i < 256; ++i) dict[std::string(1, char(i))] = uint32_t(i);
  uint32_t next = 257;
  std::vector<uint32_t> codes;
  std::string w;
  for (char c : s) {
    if (dict.count(w + c)) {
      w += c;
      continue;
    }
    codes.push_back(dict[w]);
    dict[w + c] = next++;
    w = std::string(1, c);
  }
  if (!w.empty()) codes.push_back(dict[w]);
  return pack9(codes);
}

std::vector<uint8_t> pack9(const std::vector<uint32_t>& codes) {
  std::vector<uint8_t> out((codes.size() * 9 + 7) / 8, 0);
  for (size_t i = 0; i < codes.size(); ++i) {
    for (int b = 0; b < 9; ++b) {
      if (codes[i] >> b & 1)
        out[(i * 9 + size_t(b)) / 8] |= uint8_t(1u << ((i * 9 + size_t(b)) % 8));
    }
  }
  return out;
}

TEST(Corpus, LzwDecoder) {
  for (const std::string s : {"TOBEORNOTTOBEORTOBEORNOT", "aaaaaaaaaaaaaaaaaaaaaaab", "x", ""}) {
    EXPECT_EQ(lzw_decode(lzw9(s), 16, true, "test"), s);
  }
  EXPECT_EQ(lzw_decode(pack9({97, 98, 257}), 16, true, "test"), "abab");
  // A code beyond the table (free entry is 258 there) is corruption, not garbage output.
  EXPECT_THROW(lzw_decode(pack9({97, 98, 300}), 16, true, "test"), Error);
  EXPECT_THROW(lzw_decode(pack9({300}), 16, true, "test"), Error);
  // A clear code (256) as the last code ends the stream cleanly.
  EXPECT_EQ(lzw_decode(pack9({97, 98, 256}), 16, true, "test"), "ab");
}

// An EC02 file over `blocks`, each block its own 9-bit code stream (tests/fuzz/make_seeds.py
// writes the same form).
std::vector<uint8_t> ec02(uint32_t block_size, const std::vector<std::string>& blocks) {
  std::vector<uint8_t> out(0x54, 0);
  std::copy_n("EC02", 4, out.begin());
  auto be32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
  };
  be32(block_size);
  be32(uint32_t(blocks.size()));
  std::vector<std::vector<uint8_t>> streams;
  for (const auto& b : blocks) streams.push_back(lzw9(b));
  uint32_t at = uint32_t(0x5c + 4 * (blocks.size() + 1) + 3);
  be32(at);
  for (const auto& z : streams) be32(at += uint32_t(z.size()));
  out.push_back(0x1f);
  out.push_back(0x9d);
  out.push_back(0x80 | 16);
  for (const auto& z : streams) {
    for (uint8_t c : z) out.push_back(c);
  }
  return out;
}

TEST(Corpus, BlockCompressedHeaderIsCheckedBeforeAllocating) {
  EXPECT_EQ(decode_block_compressed(ec02(4, {"abcd", "ef"}), "t"), "abcdef");
  // Found by fuzz_tokens (tests/fuzz/corpus/tokens/regress_ec02_huge_block_size): a block size
  // of 4 GB in the header made the decoder reserve block size x count bytes up front.
  std::string msg = error_of([] { decode_block_compressed(ec02(0xff000020u, {"ab", "cd"}), "t"); });
  EXPECT_NE(msg.find("block 0 decodes to 2 bytes"), std::string::npos) << msg;
  // A block that decodes to more than the block size stops there, naming the block.
  msg = error_of([] { decode_block_compressed(ec02(4, {"abcdefgh"}), "t"); });
  EXPECT_NE(msg.find("t block 0: the LZW stream decodes to more than 4 bytes"), std::string::npos)
      << msg;
  EXPECT_THROW(lzw_decode(lzw9("TOBEORNOTTOBEORTOBEORNOT"), 16, true, "test", 23), Error);
  EXPECT_EQ(lzw_decode(lzw9("TOBEORNOTTOBEORTOBEORNOT"), 16, true, "test", 24).size(), 24u);
}

TEST(Corpus, MissingCorpusSaysHowToInstall) {
  std::string msg = error_of([] { find_corpus({"/nonexistent/bible.data"}); });
  EXPECT_NE(msg.find("/nonexistent/bible.data"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bible-kjv-text"), std::string::npos) << msg;
  EXPECT_NE(msg.find("setup"), std::string::npos) << msg;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

class CorpusFile : public TempDir {};

TEST_F(CorpusFile, DefaultCorpusDecodes) {
  fs::path p;
  try {
    p = default_corpus_path();
  } catch (const Error&) {
  }
  HP_REQUIRE_INPUT(!p.empty(), "the bible-kjv-text package (scripts/setup.sh installs it)");
  const std::string text = read_corpus_text(p);
  ASSERT_EQ(text.size(), 4404475u);
  EXPECT_EQ(text.rfind("Holy Bible, Authorized (King James) Version.", 0), 0u);
  EXPECT_NE(text.find("Ge1:1 In the beginning God created the heaven and the earth.\n"),
            std::string::npos);
  // This verse straddles the first 64 KiB block boundary.
  EXPECT_NE(text.find("Ge20:6 And God said unto him in a dream, Yea, I know"), std::string::npos);
  EXPECT_TRUE(text.ends_with("The grace of our Lord Jesus Christ be with you all. Amen.\n"));
  EXPECT_EQ(fnv1a(text), 0x8d9b385cae8f145cull);

  TokenDataset d = TokenDataset::from_text_file(p);
  EXPECT_EQ(d.size(), int64_t(text.size()));
  EXPECT_EQ(d.at(0), 'H');
  auto split = d.split(0.05);
  EXPECT_EQ(split.val.size(), int64_t(double(text.size()) * 0.05));

  // A truncated copy fails loudly instead of yielding partial text.
  io::MappedFile f(p);
  write_bytes(dir_ / "cut.data", f.data(), f.size() / 2);
  std::string msg = error_of([&] { read_corpus_text(dir_ / "cut.data"); });
  EXPECT_NE(msg.find("cut.data"), std::string::npos) << msg;
}

}  // namespace
}  // namespace hp::data
