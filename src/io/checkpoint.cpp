// Atomic checkpoint directories: temporary dir, fsync, rename, fsync parent, update `latest`;
// sharded ones add index.json over the box files every writer left in the staging dir.
// Not a distributed checkpointer: no collective barrier here; the caller synchronises writers.
#include "hp/io/checkpoint.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "hp/core/error.hpp"
#include "hp/io/file.hpp"

namespace fs = std::filesystem;

namespace hp::io {

namespace {

constexpr const char* kModel = "model.safetensors";
constexpr const char* kOptimizer = "optimizer.safetensors";
constexpr const char* kState = "state.json";
constexpr const char* kLatest = "latest";

// Steps are counts of optimizer updates: 2^53 is far beyond any run, and every JSON reader
// (many hold numbers as doubles) reads it exactly.
constexpr int64_t kMaxStep = int64_t(1) << 53;

// "step-<N>" -> N; nullopt for anything else, including N > kMaxStep.
std::optional<int64_t> parse_step_name(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5 || name.size() > 24) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
    if (v > kMaxStep) return std::nullopt;  // before the next digit can overflow
  }
  return v;
}

// The step directory name DIR/latest holds; nullopt without a `latest` file. Throws when it holds
// anything but step-<N>.
std::optional<std::string> latest_name(const fs::path& dir) {
  const fs::path latest = dir / kLatest;
  std::error_code ec;
  if (!fs::is_regular_file(latest, ec)) return std::nullopt;
  std::string name = read_text_file(latest);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  HP_CHECK(parse_step_name(name).has_value(), "[checkpoint] ", latest.string(), " holds '", name,
           "', not step-<N>");
  return name;
}

bool complete(const fs::path& step_dir) {
  std::error_code ec;
  if (fs::is_regular_file(step_dir / kIndexFile, ec)) return true;
  return fs::is_regular_file(step_dir / kModel, ec) &&
         fs::is_regular_file(step_dir / kOptimizer, ec) &&
         fs::is_regular_file(step_dir / kState, ec);
}

void write_tensors(const fs::path& path, const TensorMap& tensors) {
  OutFile out(path);
  write_safetensors(out, tensors);
  out.sync();
  out.close();
}

void remove_all_quiet(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
}

// What a killed save leaves in a checkpoint directory: a staging dir `.tmp-...`, or a file that
// write_atomic had not yet renamed (`latest.tmp.<pid>`).
bool is_leftover(const std::string& name) {
  if (name.rfind(".tmp-", 0) == 0) return true;
  const size_t dot = name.rfind(".tmp.");
  return dot != std::string::npos && dot > 0 && dot + 5 < name.size() &&
         name.find_first_not_of("0123456789", dot + 5) == std::string::npos;
}

// The filled temporary dir `tmp` becomes DIR/step-<step>, durably; then `latest` moves and
// checkpoints beyond keep_last go. `tmp` is left for the caller to remove on failure.
void publish(const fs::path& dir, const fs::path& tmp, int64_t step, const CheckpointOptions& opt) {
  const std::string name = checkpoint_dir_name(step);
  const fs::path final_dir = dir / name;
  sync_dir(tmp);
  if (fs::exists(final_dir)) {
    // Re-saving a step: swap atomically so that a complete step-<N> always exists.
    HP_CHECK(::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0,
             "[checkpoint] cannot replace ", final_dir.string(), ": ", std::strerror(errno));
    sync_dir(dir);
    remove_all_quiet(tmp);  // now holds the old copy
  } else {
    std::error_code ec;
    fs::rename(tmp, final_dir, ec);
    HP_CHECK(!ec, "[checkpoint] cannot rename ", tmp.string(), " to ", final_dir.string(), ": ",
             ec.message());
  }
  sync_dir(dir);
  write_atomic(dir / kLatest, name + "\n");
  if (opt.keep_last > 0) {
    std::vector<int64_t> steps = list_checkpoints(dir);
    const size_t keep = size_t(opt.keep_last);
    for (size_t i = 0; i + keep < steps.size(); ++i) {
      if (steps[i] != step) remove_all_quiet(dir / checkpoint_dir_name(steps[i]));
    }
  }
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  return "step-" + std::to_string(step);
}

std::vector<int64_t> list_checkpoints(const fs::path& dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return steps;
  for (const auto& e : fs::directory_iterator(dir)) {
    auto s = parse_step_name(e.path().filename().string());
    if (s && e.is_directory() && complete(e.path())) steps.push_back(*s);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

fs::path save_checkpoint(const fs::path& dir, const Checkpoint& ckpt,
                         const CheckpointOptions& opt) {
  HP_CHECK(ckpt.step >= 0 && ckpt.step <= kMaxStep, "[checkpoint] step must be in [0, ", kMaxStep,
           "], got ", ckpt.step);
  fs::create_directories(dir);
  const std::string pid = std::to_string(::getpid());
  const std::string name = checkpoint_dir_name(ckpt.step);
  const fs::path tmp = dir / (".tmp-" + name + "-" + pid);
  const fs::path final_dir = dir / name;

  // Leftovers of crashed saves are garbage: nothing ever reads them.
  for (const auto& e : fs::directory_iterator(dir))
    if (is_leftover(e.path().filename().string())) remove_all_quiet(e.path());

  try {
    fs::create_directory(tmp);
    write_tensors(tmp / kModel, ckpt.model);
    write_tensors(tmp / kOptimizer, ckpt.optimizer);
    Json state = {{"format", "hp-checkpoint-1"},
                  {"step", ckpt.step},
                  {"rng", ckpt.rng},
                  {"data", ckpt.data},
                  {"extra", ckpt.extra}};
    {
      OutFile out(tmp / kState);
      out.write(state.dump(2) + "\n");
      out.sync();
      out.close();
    }
    publish(dir, tmp, ckpt.step, opt);
  } catch (...) {
    remove_all_quiet(tmp);
    throw;
  }
  return final_dir;
}

Checkpoint load_checkpoint(const fs::path& step_dir) {
  HP_CHECK(fs::is_directory(step_dir), "[checkpoint] ", step_dir.string(), " is not a directory");
  for (const char* f : {kModel, kOptimizer, kState}) {
    HP_CHECK(fs::is_regular_file(step_dir / f), "[checkpoint] ", step_dir.string(), ": missing ",
             f);
  }
  Checkpoint c;
  Json state = read_json(step_dir / kState);
  const std::string where = (step_dir / kState).string();
  c.step = json_int(state, "step", where);
  HP_CHECK(c.step >= 0 && c.step <= kMaxStep, "[checkpoint] ", where, ": 'step' = ", c.step,
           " is out of range [0, ", kMaxStep, "]");
  if (state.contains("rng")) c.rng = state["rng"];
  if (state.contains("data")) c.data = state["data"];
  if (state.contains("extra")) c.extra = state["extra"];
  c.model = read_safetensors(step_dir / kModel);
  c.optimizer = read_safetensors(step_dir / kOptimizer);
  return c;
}

std::optional<Checkpoint> load_latest(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  if (auto name = latest_name(dir); name && complete(dir / *name))
    return load_checkpoint(dir / *name);
  // No (usable) pointer: a crash after the rename but before `latest` was written.
  std::vector<int64_t> steps = list_checkpoints(dir);
  if (steps.empty()) return std::nullopt;
  return load_checkpoint(dir / checkpoint_dir_name(steps.back()));
}

// ---- Sharded checkpoints ----

std::optional<int64_t> step_of(const fs::path& step_dir) {
  return parse_step_name(step_dir.filename().string());
}

Json ShardIndex::to_json() const {
  Json t = Json::object();
  for (const auto& [name, rec] : tensors) t[name] = tensor_to_json(rec);
  return {{"format", kShardedFormat},
          {"checksum", "xxh64"},
          {"step", step},
          {"rng", rng},
          {"data", data},
          {"extra", extra},
          {"tensors", t}};
}

ShardIndex ShardIndex::from_json(const Json& j, const std::string& where) {
  HP_CHECK(j.is_object(), "[checkpoint] ", where, " must be a JSON object");
  const std::string format = json_string(j, "format", where);
  HP_CHECK(format == kShardedFormat, "[checkpoint] ", where, ": format '", format, "' is not ",
           kShardedFormat);
  const std::string sum = json_string(j, "checksum", where);
  HP_CHECK(sum == "xxh64", "[checkpoint] ", where, ": checksum '", sum,
           "' is not supported (xxh64)");
  ShardIndex x;
  x.step = json_int(j, "step", where);
  HP_CHECK(x.step >= 0 && x.step <= kMaxStep, "[checkpoint] ", where, ": 'step' = ", x.step,
           " is out of range [0, ", kMaxStep, "]");
  for (const char* k : {"rng", "data", "extra"})
    if (j.contains(k)) (k[0] == 'r' ? x.rng : k[0] == 'd' ? x.data : x.extra) = j[k];
  const Json& t = json_require(j, "tensors", where);
  HP_CHECK(t.is_object(), "[checkpoint] ", where, ": 'tensors' must be an object");
  for (const auto& [name, rec] : t.items())
    x.tensors.emplace(name, tensor_from_json(rec, where + ": tensor '" + name + "'"));
  return x;
}

bool is_sharded(const fs::path& step_dir) {
  std::error_code ec;
  return fs::is_regular_file(step_dir / kIndexFile, ec);
}

ShardIndex load_index(const fs::path& step_dir) {
  const fs::path path = step_dir / kIndexFile;
  HP_CHECK(is_sharded(step_dir), "[checkpoint] ", step_dir.string(), ": missing ", kIndexFile);
  ShardIndex x = ShardIndex::from_json(read_json(path), path.string());
  std::map<std::string, std::pair<uint64_t, std::string>> need;  // file -> last byte, a tensor
  for (const auto& [name, t] : x.tensors)
    for (const StoredBox& b : t.boxes)
      if (b.end >= need[b.file].first) need[b.file] = {b.end, name};
  for (const auto& [file, n] : need) {
    std::error_code ec;
    const fs::path f = step_dir / file;
    HP_CHECK(fs::is_regular_file(f, ec), "[checkpoint] ", f.string(), " (tensor '", n.second,
             "') is missing");
    const uint64_t size = fs::file_size(f, ec);
    HP_CHECK(!ec && size >= n.first, "[checkpoint] ", f.string(), " is truncated: ", size,
             " bytes, tensor '", n.second, "' ends at byte ", n.first);
  }
  return x;
}

fs::path staging_dir(const fs::path& dir, int64_t step) {
  return dir / (".tmp-" + checkpoint_dir_name(step));
}

void clean_stale(const fs::path& dir, int64_t step) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  const fs::path keep = staging_dir(dir, step).filename();
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (is_leftover(name) && e.path().filename() != keep) remove_all_quiet(e.path());
    if (parse_step_name(name) && e.is_directory(ec) && !complete(e.path()))
      remove_all_quiet(e.path());
  }
}

fs::path commit_staged(const fs::path& dir, const ShardIndex& index, const CheckpointOptions& opt) {
  HP_CHECK(index.step >= 0 && index.step <= kMaxStep, "[checkpoint] step must be in [0, ", kMaxStep,
           "], got ", index.step);
  const fs::path tmp = staging_dir(dir, index.step);
  std::set<std::string> named = {kIndexFile};
  for (const auto& [name, t] : index.tensors)
    for (const StoredBox& b : t.boxes) named.insert(b.file);
  for (const auto& e : fs::directory_iterator(tmp))
    if (!named.count(e.path().filename().string())) remove_all_quiet(e.path());
  write_json(tmp / kIndexFile, index.to_json(), 1);
  publish(dir, tmp, index.step, opt);
  return dir / checkpoint_dir_name(index.step);
}

Checkpoint load_step(const fs::path& step_dir, bool optimizer) {
  if (!is_sharded(step_dir)) return load_checkpoint(step_dir);
  const ShardIndex x = load_index(step_dir);
  Checkpoint c;
  c.step = x.step, c.rng = x.rng, c.data = x.data, c.extra = x.extra;
  BoxReader reader(step_dir);
  for (const auto& [name, t] : x.tensors) {
    const bool moment = name.rfind("m/", 0) == 0 || name.rfind("v/", 0) == 0;
    if (moment && !optimizer) continue;
    Tensor out(t.hf_shape, t.dtype);
    reader.read(name, t, std::vector<int64_t>(t.shape.size(), 0), t.shape, out.raw());
    (moment ? c.optimizer : c.model).emplace(name, std::move(out));
  }
  return c;
}

std::string previous_complete(const fs::path& dir, int64_t step) {
  std::vector<int64_t> steps = list_checkpoints(dir);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (*it >= step) continue;
    const fs::path p = dir / checkpoint_dir_name(*it);
    try {
      if (is_sharded(p)) load_index(p);
      return "the previous complete checkpoint is " + p.string() + " (write '" +
             checkpoint_dir_name(*it) + "' into " + (dir / kLatest).string() +
             " to resume from it)";
    } catch (const Error&) {
    }
  }
  return "no earlier complete checkpoint in " + dir.string();
}

std::optional<fs::path> resume_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  if (auto name = latest_name(dir)) {
    HP_CHECK(complete(dir / *name), "[checkpoint] ", (dir / kLatest).string(), " names ", *name,
             ", which is ",
             fs::is_directory(dir / *name, ec) ? "incomplete (no index.json)" : "missing", "; ",
             previous_complete(dir, *parse_step_name(*name)));
    return dir / *name;
  }
  // No pointer: a crash after the rename but before `latest` was written.
  std::vector<int64_t> steps = list_checkpoints(dir);
  if (steps.empty()) return std::nullopt;
  return dir / checkpoint_dir_name(steps.back());
}

}  // namespace hp::io
