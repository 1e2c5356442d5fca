// The default training corpus (the King James Bible from Debian's bible-kjv-text package) and
// the readers for the forms a text corpus comes in: plain bytes, or the package's block-LZW file.
// Not a downloader: a missing corpus is an error telling the user how to install it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace hp::data {

// Where bible-kjv-text installs its text (the first of these that exists wins).
std::vector<std::filesystem::path> default_corpus_candidates();
// The first existing path among `candidates`; throws hp::Error listing them and saying how to
// install the corpus (apt-get install bible-kjv-text, or the project's scripts/setup.sh).
std::filesystem::path find_corpus(const std::vector<std::filesystem::path>& candidates);
// find_corpus(default_corpus_candidates()).
std::filesystem::path default_corpus_path();

// True when `bytes` start like a bible-kjv "EC02" block-compressed data file.
bool is_block_compressed(std::span<const uint8_t> bytes);
// Decodes an EC02 file: a header with the block size, the block count and the file offset of
// each block, then one LZW (Unix compress, .Z) code stream per block. `where` names it in errors.
std::string decode_block_compressed(std::span<const uint8_t> bytes, const std::string& where);
// Decodes one Unix-compress LZW code stream (no 3-byte .Z header) with `max_bits` in [9, 16].
// Throws as soon as the text would grow beyond `max_out` bytes (a stream can expand a
// thousandfold, so a damaged one must not fill the memory first).
std::string lzw_decode(std::span<const uint8_t> codes, int max_bits, bool block_mode,
                       const std::string& where, size_t max_out = SIZE_MAX);

// Text of a corpus file: plain files as they are, EC02 files decoded.
std::string read_corpus_text(const std::filesystem::path& path);

}  // namespace hp::data
