// Default corpus location and decoding of bible-kjv's block-compressed text.
// Not a general archive library: only the one container the corpus package ships, and .Z LZW.
#include "hp/data/corpus.hpp"

#include <algorithm>
#include <cstring>

#include "hp/core/error.hpp"
#include "hp/io/file.hpp"

namespace hp::data {

namespace {

// EC02 layout (bible-kjv 4.x): magic at 0, big-endian u32 block size at 0x54, block count at 0x58,
// then count+1 file offsets at 0x5c. Each block's code stream starts at its offset; the 3-byte
// .Z header (1f 9d flags) sits once, just before the first block.
constexpr char kMagic[] = "EC02";
constexpr size_t kBlockSizeAt = 0x54;
constexpr size_t kCountAt = 0x58;
constexpr size_t kOffsetsAt = 0x5c;

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

}  // namespace

std::vector<std::filesystem::path> default_corpus_candidates() {
  return {"/usr/lib/bible.data", "/usr/share/bible-kjv/bible.data", "/usr/local/lib/bible.data"};
}

std::filesystem::path find_corpus(const std::vector<std::filesystem::path>& candidates) {
  std::string tried;
  for (const auto& c : candidates) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(c, ec)) return c;
    tried += (tried.empty() ? "" : ", ") + c.string();
  }
  throw Error(
      "[corpus] the default corpus (King James Bible) is not installed; looked for: " + tried +
      ". Run scripts/setup.sh, or install Debian's bible-kjv-text package "
      "(apt-get install bible-kjv-text), or pass a text file explicitly.");
}

std::filesystem::path default_corpus_path() {
  return find_corpus(default_corpus_candidates());
}

bool is_block_compressed(std::span<const uint8_t> bytes) {
  return bytes.size() >= kOffsetsAt && std::memcmp(bytes.data(), kMagic, 4) == 0;
}

std::string lzw_decode(std::span<const uint8_t> in, int max_bits, bool block_mode,
                       const std::string& where, size_t max_out) {
  HP_CHECK(max_bits >= 9 && max_bits <= 16, "[corpus] ", where, ": LZW max bits ", max_bits,
           " outside [9, 16]");
  constexpr uint32_t kClear = 256;
  const uint32_t max_max_code = 1u << max_bits;
  std::vector<uint32_t> prefix(max_max_code, 0);
  std::vector<uint8_t> suffix(max_max_code, 0);
  for (uint32_t c = 0; c < 256; ++c) suffix[c] = uint8_t(c);

  int n_bits = 9;
  uint32_t max_code = (1u << n_bits) - 1;
  uint32_t free_ent = block_mode ? 257 : 256;
  bool clear = false;
  size_t pos = 0;
  // Codes come in groups of n_bits bytes (8 codes); a width change or a clear skips the rest of
  // the group, exactly as compress(1) pads it.
  uint8_t group[16 + 4] = {};
  int64_t offset = 0, size = 0;
  auto next_code = [&]() -> int64_t {
    if (clear || offset >= size || free_ent > max_code) {
      if (free_ent > max_code) {
        ++n_bits;
        max_code = n_bits == max_bits ? max_max_code : (1u << n_bits) - 1;
      }
      if (clear) {
        n_bits = 9;
        max_code = (1u << n_bits) - 1;
        clear = false;
      }
      const size_t take = std::min(size_t(n_bits), in.size() - pos);
      std::memset(group, 0, sizeof(group));
      if (take > 0) std::memcpy(group, in.data() + pos, take);  // an empty span may be null
      pos += take;
      offset = 0;
      size = int64_t(take) * 8 - (n_bits - 1);
      if (size <= 0) return -1;
    }
    const size_t byte = size_t(offset >> 3);
    const uint32_t w =
        uint32_t(group[byte]) | uint32_t(group[byte + 1]) << 8 | uint32_t(group[byte + 2]) << 16;
    offset += n_bits;
    return (w >> ((offset - n_bits) & 7)) & ((1u << n_bits) - 1);
  };

  std::string out;
  int64_t code = next_code();
  if (code < 0) return out;
  HP_CHECK(code < 256, "[corpus] ", where, ": corrupt LZW stream (first code ", code, ")");
  uint32_t old_code = uint32_t(code);
  uint8_t fin_char = uint8_t(code);
  out.push_back(char(fin_char));
  std::vector<uint8_t> stack;
  while ((code = next_code()) >= 0) {
    if (code == kClear && block_mode) {
      free_ent = 256;  // the next code is a literal; the entry it adds at 256 is never used
      clear = true;
      if ((code = next_code()) < 0) break;
    }
    const uint32_t in_code = uint32_t(code);
    uint32_t c = in_code;
    stack.clear();
    if (c >= free_ent) {
      HP_CHECK(c == free_ent, "[corpus] ", where, ": corrupt LZW stream (code ", c,
               " beyond the table of ", free_ent, " at output byte ", out.size(), ")");
      stack.push_back(fin_char);  // the KwKwK case
      c = old_code;
    }
    while (c >= 256) {  // prefix[c] < c for every entry, so this terminates
      stack.push_back(suffix[c]);
      c = prefix[c];
    }
    fin_char = suffix[c];
    stack.push_back(fin_char);
    HP_CHECK(stack.size() <= max_out - out.size(), "[corpus] ", where,
             ": the LZW stream decodes to more than ", max_out, " bytes");
    out.append(stack.rbegin(), stack.rend());
    if (free_ent < max_max_code) {
      prefix[free_ent] = old_code;
      suffix[free_ent] = fin_char;
      ++free_ent;
    }
    old_code = in_code;
  }
  return out;
}

std::string decode_block_compressed(std::span<const uint8_t> b, const std::string& where) {
  const std::string w = "[corpus] " + where;
  HP_CHECK(is_block_compressed(b), w, ": not an EC02 block-compressed file");
  const uint32_t block_size = be32(b.data() + kBlockSizeAt);
  const uint32_t count = be32(b.data() + kCountAt);
  HP_CHECK(block_size > 0 && count > 0 && count < (1u << 20), w, ": bad header (block size ",
           block_size, ", ", count, " blocks)");
  HP_CHECK(kOffsetsAt + 4 * (size_t(count) + 1) <= b.size(), w, ": truncated block index");
  std::vector<uint32_t> offs(count + 1);
  for (uint32_t i = 0; i <= count; ++i) offs[i] = be32(b.data() + kOffsetsAt + 4 * i);
  HP_CHECK(offs[0] >= kOffsetsAt + 4 * (count + 1) + 3, w, ": first block at ", offs[0],
           " overlaps the header");
  for (uint32_t i = 0; i < count; ++i) {
    HP_CHECK(offs[i] <= offs[i + 1], w, ": block ", i, " offsets decrease");
  }
  HP_CHECK(offs[count] <= b.size(), w, ": block ", count - 1, " ends at ", offs[count],
           " beyond the file size ", b.size(), " (truncated?)");
  const uint8_t* z = b.data() + offs[0] - 3;
  HP_CHECK(z[0] == 0x1f && z[1] == 0x9d, w, ": missing the LZW (.Z) stream header");
  const int max_bits = z[2] & 0x1f;
  const bool block_mode = (z[2] & 0x80) != 0;
  // No reserve from the header's sizes: a damaged header could ask for terabytes. Each block
  // stops decoding at the block size.
  std::string text;
  for (uint32_t i = 0; i < count; ++i) {
    std::string part = lzw_decode(b.subspan(offs[i], offs[i + 1] - offs[i]), max_bits, block_mode,
                                  where + " block " + std::to_string(i), block_size);
    HP_CHECK(part.size() == block_size || (i + 1 == count && part.size() <= block_size), w,
             ": block ", i, " decodes to ", part.size(), " bytes, expected ", block_size);
    text += part;
  }
  return text;
}

std::string read_corpus_text(const std::filesystem::path& path) {
  io::MappedFile f(path);
  std::span<const uint8_t> bytes(f.data(), f.size());
  if (is_block_compressed(bytes)) return decode_block_compressed(bytes, path.string());
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

}  // namespace hp::data
