// Thin helpers over nlohmann::json: files with errors naming the file and the parse position,
// typed field access with errors naming the key.
// Not a schema language: callers check what they need, one key at a time.
#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace hp::io {

using Json = nlohmann::json;

// Arrays and objects nested deeper than this are refused while parsing. No file here nests more
// than a few levels, and nlohmann::json's dump() and comparisons recurse once per level: a file
// of a million '[' would overflow the stack in an error message.
inline constexpr int kMaxJsonDepth = 1000;

// Parses `text`; errors read "[json] <where>: parse error at line L, column C: ...".
Json parse_json(std::string_view text, const std::string& where);
// Reads and parses a file; errors name the file and the position.
Json read_json(const std::filesystem::path& path);
// Writes `j` (indented by `indent`, newline-terminated) atomically.
void write_json(const std::filesystem::path& path, const Json& j, int indent = 2);

// Field access on an object; `where` names the document ("config.json") in errors.
// Required fields throw "[json] <where>: missing key 'k'" / "'k' must be an integer, got ...".
const Json& json_require(const Json& obj, const std::string& key, const std::string& where);
// True when `key` is present and not null.
bool json_has(const Json& obj, const std::string& key);
int64_t json_int(const Json& obj, const std::string& key, const std::string& where);
int64_t json_int(const Json& obj, const std::string& key, int64_t fallback,
                 const std::string& where);
double json_double(const Json& obj, const std::string& key, const std::string& where);
double json_double(const Json& obj, const std::string& key, double fallback,
                   const std::string& where);
bool json_bool(const Json& obj, const std::string& key, bool fallback, const std::string& where);
std::string json_string(const Json& obj, const std::string& key, const std::string& where);
std::string json_string(const Json& obj, const std::string& key, const std::string& fallback,
                        const std::string& where);

}  // namespace hp::io
