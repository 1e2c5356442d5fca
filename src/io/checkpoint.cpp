// Atomic checkpoint directories: temporary dir, fsync, rename, fsync parent, update `latest`.
// Not a distributed checkpointer: no collective barrier here; the caller picks the writing rank.
#include "hp/io/checkpoint.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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

bool complete(const fs::path& step_dir) {
  std::error_code ec;
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

  // Leftovers of crashed saves are garbage: nothing ever reads a .tmp-* directory.
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) remove_all_quiet(e.path());
  }

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
    sync_dir(tmp);
    if (fs::exists(final_dir)) {
      // Re-saving a step: swap atomically so that a complete step-<N> always exists.
      HP_CHECK(
          ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0,
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
  } catch (...) {
    remove_all_quiet(tmp);
    throw;
  }

  write_atomic(dir / kLatest, name + "\n");

  if (opt.keep_last > 0) {
    std::vector<int64_t> steps = list_checkpoints(dir);
    const size_t keep = size_t(opt.keep_last);
    for (size_t i = 0; i + keep < steps.size(); ++i) {
      if (steps[i] != ckpt.step) remove_all_quiet(dir / checkpoint_dir_name(steps[i]));
    }
    // Incomplete step-* dirs (not produced by this code, or damaged) are left for a person.
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
  const fs::path latest = dir / kLatest;
  if (fs::is_regular_file(latest, ec)) {
    std::string name = read_text_file(latest);
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    HP_CHECK(parse_step_name(name).has_value(), "[checkpoint] ", latest.string(), " holds '", name,
             "', not step-<N>");
    if (complete(dir / name)) return load_checkpoint(dir / name);
  }
  // No (usable) pointer: a crash after the rename but before `latest` was written.
  std::vector<int64_t> steps = list_checkpoints(dir);
  if (steps.empty()) return std::nullopt;
  return load_checkpoint(dir / checkpoint_dir_name(steps.back()));
}

}  // namespace hp::io
