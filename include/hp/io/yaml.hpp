// YamlNode: typed, located access to YAML documents (training configs, strategy files); every
// error names the file, line and column (from YAML::Mark) and the key path.
// Not a schema: callers read the keys they know and call check_keys to reject typos.
#pragma once
#include <yaml-cpp/yaml.h>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hp::io {

class YamlNode {
 public:
  // Parses a file; syntax errors name the file, line and column.
  static YamlNode load_file(const std::filesystem::path& path);
  // Parses text; `name` stands for the file in messages.
  static YamlNode parse(const std::string& text, const std::string& name = "<yaml>");
  YamlNode(YAML::Node node, std::shared_ptr<const std::string> file, std::string key_path);

  // "file:line:col (key.path)"; lines and columns are 1-based.
  std::string where() const;
  const std::string& key_path() const { return path_; }
  const YAML::Node& raw() const { return node_; }

  bool is_map() const { return node_.IsMap(); }
  bool is_sequence() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }
  bool is_null() const { return !node_.IsDefined() || node_.IsNull(); }

  // True when this is a map holding `key` with a non-null value.
  bool has(const std::string& key) const;
  // Required child: throws "[yaml] file:line:col: missing key 'a.b'" when absent.
  YamlNode operator[](const std::string& key) const;
  // Optional child.
  std::optional<YamlNode> get(const std::string& key) const;
  // Sequence elements (throws unless a sequence).
  std::vector<YamlNode> items() const;
  // Map entries in document order (throws unless a map).
  std::vector<std::pair<std::string, YamlNode>> entries() const;
  // Throws naming the first key not in `allowed` (catches typos such as "micro_bathces").
  void check_keys(const std::vector<std::string>& allowed) const;

  // Scalar conversions; throw naming the location and the expected type.
  int64_t as_int() const;
  double as_double() const;
  bool as_bool() const;
  std::string as_string() const;
  std::vector<int64_t> as_int_list() const;

  // Child with a default when absent.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

 private:
  [[noreturn]] void fail(const std::string& what) const;
  YAML::Node node_;
  std::shared_ptr<const std::string> file_;
  std::string path_;
};

}  // namespace hp::io
