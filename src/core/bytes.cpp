// The byte-size parser (hp/core/bytes.hpp).
#include "hp/core/bytes.hpp"

#include <cctype>
#include <cmath>
#include <stdexcept>

#include "hp/core/error.hpp"

namespace hp {

uint64_t parse_bytes(const std::string& text, const std::string& what) {
  const char* hint = " (e.g. 64MiB, 2GB, 1048576)";
  size_t a = text.find_first_not_of(" \t"), b = text.find_last_not_of(" \t");
  const std::string t = a == std::string::npos ? "" : text.substr(a, b - a + 1);
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  double v = -1;
  try {  // digits and dots only: no sign, hex, exponent, inf or nan
    size_t used = 0;
    if (i > 0) v = std::stod(t.substr(0, i), &used);
    if (used != i) v = -1;
  } catch (const std::exception&) {
    v = -1;
  }
  HP_CHECK(v >= 0 && std::isfinite(v), what, ": '", text, "' is not a size", hint);
  std::string unit;
  for (char c : t.substr(i))
    if (c != ' ' && c != '\t') unit += char(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kib")
    mult = 0x1p10;
  else if (unit == "m" || unit == "mib")
    mult = 0x1p20;
  else if (unit == "g" || unit == "gib")
    mult = 0x1p30;
  else if (unit == "t" || unit == "tib")
    mult = 0x1p40;
  else if (unit == "kb")
    mult = 1e3;
  else if (unit == "mb")
    mult = 1e6;
  else if (unit == "gb")
    mult = 1e9;
  else if (unit == "tb")
    mult = 1e12;
  HP_CHECK(mult > 0, what, ": '", text, "': unknown unit '", unit,
           "' (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
  const double bytes = std::round(v * mult);
  HP_CHECK(bytes > 0, what, ": '", text, "' must be > 0");
  HP_CHECK(bytes < 0x1p63, what, ": '", text, "' is out of range");
  return uint64_t(bytes);
}

}  // namespace hp
