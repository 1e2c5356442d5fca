// Checkpoints: DIR/step-<N>/, written atomically, with DIR/latest naming the newest complete one
// and only the last K kept. Two layouts of a step directory: sharded (index.json and the box files
// every rank writes, box_file.hpp), and the older single-file one ({model.safetensors,
// optimizer.safetensors, state.json}, one writer), which still loads.
// Not layouts or ranks: callers give boxes; the mapping from a strategy to boxes is train's.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "hp/io/box_file.hpp"
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

// ---- Sharded checkpoints: DIR/step-<N>/{index.json, <box files>} ----

inline constexpr const char* kIndexFile = "index.json";
inline constexpr const char* kShardedFormat = "hp-sharded-checkpoint-1";

// index.json: step, caller JSON (rng, data, extra) and every tensor with its stored boxes.
struct ShardIndex {
  int64_t step = 0;
  Json rng = Json::object();
  Json data = Json::object();
  Json extra = Json::object();
  std::map<std::string, TensorRecord> tensors;
  Json to_json() const;
  // Checks the format, the step and every tensor record (tensor_from_json); `where` names the file.
  static ShardIndex from_json(const Json& j, const std::string& where);
};

// True when `step_dir` holds an index.json (a sharded checkpoint).
bool is_sharded(const std::filesystem::path& step_dir);
// Reads and checks step_dir/index.json, and that every file it names exists and holds the byte
// ranges of its boxes (checksums are checked as boxes are read). Throws naming the file.
ShardIndex load_index(const std::filesystem::path& step_dir);

// Saving a sharded checkpoint. Every writer puts its files into staging_dir(DIR, N) (creating it);
// one process first calls clean_stale (what crashed saves left: .tmp-* dirs, latest.tmp.<pid>
// files and incomplete step-* dirs go, this step's staging dir stays); when every file is
// durable, that process calls commit_staged, which writes index.json atomically, removes files of
// the staging dir the index does not name, renames it to DIR/step-<N> (swapping out an older
// copy), fsyncs, moves `latest` and deletes checkpoints beyond keep_last. A crash before the rename
// leaves the previous checkpoint and `latest` as they were.
std::filesystem::path staging_dir(const std::filesystem::path& dir, int64_t step);
void clean_stale(const std::filesystem::path& dir, int64_t step);
std::filesystem::path commit_staged(const std::filesystem::path& dir, const ShardIndex& index,
                                    const CheckpointOptions& opt = {});

// The step directory to resume from: the one DIR/latest names, or (no `latest`) the highest
// complete one; nullopt when DIR holds none. Throws when `latest` names a missing or incomplete
// step directory, saying so and naming the previous complete checkpoint (never falls back).
std::optional<std::filesystem::path> resume_dir(const std::filesystem::path& dir);
// A whole step directory of either layout as global tensors in their HF shapes (sharded: each
// tensor assembled from its boxes, checksums verified); `optimizer` false leaves the moments out.
Checkpoint load_step(const std::filesystem::path& step_dir, bool optimizer = true);

// "the previous complete checkpoint is DIR/step-K" for the newest step below `step` whose
// directory is complete and whose index (and files) check out; "no earlier complete checkpoint"
// otherwise. For error messages.
std::string previous_complete(const std::filesystem::path& dir, int64_t step);
// N of a "step-<N>" directory name; nullopt for anything else.
std::optional<int64_t> step_of(const std::filesystem::path& step_dir);

}  // namespace hp::io
