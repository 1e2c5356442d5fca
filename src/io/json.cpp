// JSON file reading and typed field access with located error messages.
// Not a wrapper hiding nlohmann::json: callers use Json directly for anything beyond this.
#include "hp/io/json.hpp"

#include <cmath>
#include <cstdint>

#include "hp/core/error.hpp"
#include "hp/io/file.hpp"

namespace hp::io {

namespace {
// Line and column (1-based) of byte offset `byte` (nlohmann reports one past the bad char).
std::string position(std::string_view text, size_t byte) {
  size_t end = std::min(byte == 0 ? 0 : byte - 1, text.size());
  size_t line = 1, col = 1;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}
}  // namespace

Json parse_json(std::string_view text, const std::string& where) {
  auto limit_depth = [&](int depth, Json::parse_event_t ev, Json&) {
    HP_CHECK(depth < kMaxJsonDepth || (ev != Json::parse_event_t::object_start &&
                                       ev != Json::parse_event_t::array_start),
             "[json] ", where, ": nested deeper than ", kMaxJsonDepth, " levels");
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), limit_depth);
  } catch (const Json::parse_error& e) {
    throw Error("[json] " + where + ": parse error at " + position(text, e.byte) + " (byte " +
                std::to_string(e.byte) + "): " + e.what());
  } catch (const Json::exception& e) {  // a number beyond double's range: 1e999
    throw Error("[json] " + where + ": " + e.what());
  }
}

Json read_json(const std::filesystem::path& path) {
  return parse_json(read_text_file(path), path.string());
}

void write_json(const std::filesystem::path& path, const Json& j, int indent) {
  write_atomic(path, j.dump(indent) + "\n");
}

const Json& json_require(const Json& obj, const std::string& key, const std::string& where) {
  HP_CHECK(obj.is_object(), "[json] ", where, ": expected an object, got ", obj.type_name());
  auto it = obj.find(key);
  HP_CHECK(it != obj.end() && !it->is_null(), "[json] ", where, ": missing key '", key, "'");
  return *it;
}

bool json_has(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return false;
  auto it = obj.find(key);
  return it != obj.end() && !it->is_null();
}

namespace {
int64_t as_int(const Json& v, const std::string& key, const std::string& where) {
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
    throw Error("[json] " + where + ": '" + key + "' = " + v.dump() + " is out of range (max " +
                std::to_string(INT64_MAX) + ")");
  if (v.is_number_integer()) return v.get<int64_t>();
  // 64.0 is accepted (some writers emit floats); 64.5 is not.
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
  }
  throw Error("[json] " + where + ": '" + key + "' must be an integer, got " + v.dump());
}
double as_double(const Json& v, const std::string& key, const std::string& where) {
  HP_CHECK(v.is_number(), "[json] ", where, ": '", key, "' must be a number, got ", v.dump());
  return v.get<double>();
}
}  // namespace

int64_t json_int(const Json& obj, const std::string& key, const std::string& where) {
  return as_int(json_require(obj, key, where), key, where);
}
int64_t json_int(const Json& obj, const std::string& key, int64_t fallback,
                 const std::string& where) {
  return json_has(obj, key) ? as_int(obj[key], key, where) : fallback;
}
double json_double(const Json& obj, const std::string& key, const std::string& where) {
  return as_double(json_require(obj, key, where), key, where);
}
double json_double(const Json& obj, const std::string& key, double fallback,
                   const std::string& where) {
  return json_has(obj, key) ? as_double(obj[key], key, where) : fallback;
}
bool json_bool(const Json& obj, const std::string& key, bool fallback, const std::string& where) {
  if (!json_has(obj, key)) return fallback;
  const Json& v = obj[key];
  HP_CHECK(v.is_boolean(), "[json] ", where, ": '", key, "' must be true or false, got ", v.dump());
  return v.get<bool>();
}
std::string json_string(const Json& obj, const std::string& key, const std::string& where) {
  const Json& v = json_require(obj, key, where);
  HP_CHECK(v.is_string(), "[json] ", where, ": '", key, "' must be a string, got ", v.dump());
  return v.get<std::string>();
}
std::string json_string(const Json& obj, const std::string& key, const std::string& fallback,
                        const std::string& where) {
  return json_has(obj, key) ? json_string(obj, key, where) : fallback;
}

}  // namespace hp::io
