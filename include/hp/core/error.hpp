// Error types and the one check macro used across the library.
// Not a logging facility: errors are exceptions carrying their context, never aborts.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace hp {

// Base of every error the library throws. Messages read "[where] what".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// A memory budget was exceeded.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// A blocking wait ran past its timeout.
class Timeout : public Error {
 public:
  using Error::Error;
};

// Another rank (or this one) failed; the message names the failed rank.
class RemoteError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace hp

// HP_CHECK(cond, "[op] ", a, " vs ", b): throws hp::Error with the concatenated message.
#define HP_CHECK(cond, ...)                                         \
  do {                                                              \
    if (!(cond)) throw ::hp::Error(::hp::detail::cat(__VA_ARGS__)); \
  } while (0)
