// Checkpoints: DIR/step-<N>/{model.safetensors, optimizer.safetensors, state.json}, written
// atomically, with DIR/latest naming the newest complete one and only the last K kept.
// Not sharded yet: one writer (rank 0) saves global tensors; resharding happens on load elsewhere.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "hp/io/json.hpp"
#include "hp/io/safetensors.hpp"

namespace hp::io {

// One training state. `model` uses HF names; `optimizer` names like "m/<param>", "v/<param>".
// `rng`, `data` and `extra` are caller-defined JSON stored verbatim in state.json.
struct Checkpoint {
  int64_t step = 0;
  TensorMap model;
  TensorMap optimizer;
  Json rng = Json::object();
  Json data = Json::object();
  Json extra = Json::object();
};

struct CheckpointOptions {
  int keep_last = 3;  // checkpoints kept after a save; <= 0 keeps all
};

// Writes `ckpt` as DIR/step-<step>: everything goes into DIR/.tmp-step-<N>-<pid>/, files and dir
// are fsynced, the dir is renamed into place (replacing an older copy of the same step), DIR is
// fsynced, then DIR/latest is replaced atomically, then checkpoints beyond keep_last are deleted.
// A crash at any point leaves the previous checkpoint loadable. Returns the step directory.
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const Checkpoint& ckpt,
                                      const CheckpointOptions& opt = {});

// Loads one step directory; throws naming the missing or malformed file.
Checkpoint load_checkpoint(const std::filesystem::path& step_dir);

// The checkpoint DIR/latest names; when `latest` is absent or dangling, the highest complete
// step-<N>. nullopt when DIR holds none. Leftover .tmp-* directories are ignored.
std::optional<Checkpoint> load_latest(const std::filesystem::path& dir);

// Steps with a complete step-<N> directory, ascending.
std::vector<int64_t> list_checkpoints(const std::filesystem::path& dir);

// Directory name "step-<N>".
std::string checkpoint_dir_name(int64_t step);

}  // namespace hp::io
