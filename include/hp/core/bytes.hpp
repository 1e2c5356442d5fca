// Byte sizes as people write them: "1048576", "64KiB", "64MiB", "1.5GiB", "2GB", "64K", "16M".
// The one parser of sizes (offload budgets, benchmark ranges); not "none" or percentages, which
// belong to the options that accept them.
#pragma once
#include <cstdint>
#include <string>

namespace hp {

// A count of bytes: a decimal number and an optional unit, binary (K/KiB, M/MiB, G/GiB, T/TiB, any
// case) or decimal (KB, MB, GB, TB), B or none for bytes. Throws hp::Error naming `what` and the
// text for anything else, a count that rounds to 0, or one beyond 2^63.
uint64_t parse_bytes(const std::string& text, const std::string& what);

}  // namespace hp
