// pretokenize_tool: splits each text read from stdin (texts separated by \x01) with
// gpt2_pretokenize and writes the pieces (separated by \x02, texts ended by \x01), for
// pretokenize_vs_regex.py to compare with the regex GPT-2 was trained with.
#include <iostream>
#include <iterator>
#include <string>

#include "hp/data/bpe.hpp"

int main() {
  const std::string all{std::istreambuf_iterator<char>(std::cin), {}};
  for (size_t pos = 0; pos < all.size();) {
    size_t end = all.find('\x01', pos);
    if (end == std::string::npos) end = all.size();
    const char* sep = "";
    for (std::string_view p : hp::data::gpt2_pretokenize({all.data() + pos, end - pos}))
      std::cout << sep << p, sep = "\x02";
    std::cout << '\x01';
    pos = end + 1;
  }
}
