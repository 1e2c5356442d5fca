// YamlNode implementation over yaml-cpp.
// Not a YAML emitter: writing strategies is the planner's job.
#include "hp/io/yaml.hpp"

#include <algorithm>

#include "hp/core/error.hpp"
#include "hp/io/file.hpp"

namespace hp::io {

namespace {
std::string mark_str(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return file;
  return file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// A map key as text (a null key reads "null", as yaml-cpp converts it). yaml-cpp also accepts
// keys that are sequences or maps ("[a]: 1"), which no file here uses: those are errors naming
// their place.
std::string key_text(const YAML::Node& key, const std::string& file) {
  if (key.IsSequence() || key.IsMap()) {
    throw Error("[yaml] " + mark_str(file, key.Mark()) + ": a key must be a plain name, got " +
                (key.IsSequence() ? "a sequence" : "a map"));
  }
  return key.as<std::string>();
}
}  // namespace

YamlNode::YamlNode(YAML::Node node, std::shared_ptr<const std::string> file, std::string key_path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(key_path)) {}

YamlNode YamlNode::parse(const std::string& text, const std::string& name) {
  auto file = std::make_shared<const std::string>(name);
  try {
    return YamlNode(YAML::Load(text), file, "");
  } catch (const YAML::Exception& e) {
    throw Error("[yaml] " + mark_str(name, e.mark) + ": " + e.msg);
  }
}

YamlNode YamlNode::load_file(const std::filesystem::path& path) {
  return parse(read_text_file(path), path.string());
}

std::string YamlNode::where() const {
  std::string s = mark_str(*file_, node_.IsDefined() ? node_.Mark() : YAML::Mark::null_mark());
  if (!path_.empty()) s += " (" + path_ + ")";
  return s;
}

void YamlNode::fail(const std::string& what) const {
  throw Error("[yaml] " + where() + ": " + what);
}

bool YamlNode::has(const std::string& key) const {
  if (!node_.IsMap()) return false;
  YAML::Node c = node_[key];
  return c.IsDefined() && !c.IsNull();
}

std::optional<YamlNode> YamlNode::get(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return YamlNode(node_[key], file_, path_.empty() ? key : path_ + "." + key);
}

YamlNode YamlNode::operator[](const std::string& key) const {
  if (!node_.IsMap()) fail("expected a map holding '" + key + "'");
  auto c = get(key);
  if (!c) fail("missing key '" + (path_.empty() ? key : path_ + "." + key) + "'");
  return *c;
}

std::vector<YamlNode> YamlNode::items() const {
  if (!node_.IsSequence()) fail("expected a sequence");
  std::vector<YamlNode> out;
  for (size_t i = 0; i < node_.size(); ++i) {
    out.emplace_back(node_[i], file_, path_ + "[" + std::to_string(i) + "]");
  }
  return out;
}

std::vector<std::pair<std::string, YamlNode>> YamlNode::entries() const {
  if (!node_.IsMap()) fail("expected a map");
  std::vector<std::pair<std::string, YamlNode>> out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    std::string k = key_text(it->first, *file_);
    out.emplace_back(k, YamlNode(it->second, file_, path_.empty() ? k : path_ + "." + k));
  }
  return out;
}

void YamlNode::check_keys(const std::vector<std::string>& allowed) const {
  if (!node_.IsMap()) fail("expected a map");
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    std::string k = key_text(it->first, *file_);
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Error("[yaml] " + mark_str(*file_, it->first.Mark()) + ": unknown key '" +
                  (path_.empty() ? k : path_ + "." + k) + "' (expected one of: " + list + ")");
    }
  }
}

int64_t YamlNode::as_int() const {
  if (!node_.IsScalar()) fail("expected an integer");
  try {
    return node_.as<int64_t>();
  } catch (const YAML::Exception&) {
    fail("expected an integer, got '" + node_.Scalar() + "'");
  }
}

double YamlNode::as_double() const {
  if (!node_.IsScalar()) fail("expected a number");
  try {
    return node_.as<double>();
  } catch (const YAML::Exception&) {
    fail("expected a number, got '" + node_.Scalar() + "'");
  }
}

bool YamlNode::as_bool() const {
  if (!node_.IsScalar()) fail("expected true or false");
  try {
    return node_.as<bool>();
  } catch (const YAML::Exception&) {
    fail("expected true or false, got '" + node_.Scalar() + "'");
  }
}

std::string YamlNode::as_string() const {
  if (!node_.IsScalar()) fail("expected a string");
  return node_.Scalar();
}

std::vector<int64_t> YamlNode::as_int_list() const {
  std::vector<int64_t> out;
  for (const auto& n : items()) out.push_back(n.as_int());
  return out;
}

int64_t YamlNode::get_int(const std::string& key, int64_t fallback) const {
  auto c = get(key);
  return c ? c->as_int() : fallback;
}
double YamlNode::get_double(const std::string& key, double fallback) const {
  auto c = get(key);
  return c ? c->as_double() : fallback;
}
bool YamlNode::get_bool(const std::string& key, bool fallback) const {
  auto c = get(key);
  return c ? c->as_bool() : fallback;
}
std::string YamlNode::get_string(const std::string& key, const std::string& fallback) const {
  auto c = get(key);
  return c ? c->as_string() : fallback;
}

}  // namespace hp::io
