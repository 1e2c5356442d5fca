// Fuzz target: training data files. The first input byte picks the reader: bits 0-1 the form
// (u8, u16 or u32 token file, or a text file, which may be the corpus's EC02 block-compressed
// form), bits 2-3 the model's vocabulary; the rest is the file. Whatever loads is split and
// batched as `hp train` does.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "hp/core/error.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/file.hpp"

namespace fs = std::filesystem;

namespace {

struct TempFile {
  fs::path path = fs::temp_directory_path() / ("hp-fuzz-tokens-" + std::to_string(::getpid()));
  ~TempFile() { fs::remove(path); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hp::data;
  static TempFile file;
  if (size == 0) return 0;
  const int form = data[0] & 3;
  const int64_t vocabs[] = {256, 1000, 50257, int64_t(1) << 31};
  const int64_t vocab = vocabs[(data[0] >> 2) & 3];
  {
    hp::io::OutFile out(file.path);
    out.write(data + 1, size - 1);
  }
  try {
    const TokenWidth widths[] = {TokenWidth::kU8, TokenWidth::kU16, TokenWidth::kU32};
    TokenDataset ds = form == 3 ? TokenDataset::from_text_file(file.path)
                                : TokenDataset::from_token_file(file.path, widths[form], vocab);
    const TokenDataset::Split split = ds.split(0.05);
    BatchLoader loader(split.train, {2, 4, 1, Sampling::kShuffledWindows});
    loader.next();
  } catch (const hp::Error&) {
    // rejected, naming the file (and the token and its position)
  }
  return 0;
}
