// Fuzz target: a checkpoint's metadata. The input becomes step-1/state.json (next to a small valid
// model and optimizer) and is loaded as `hp train --resume` and `hp generate` read it (the data
// position, the model config in `extra`); then it becomes DIR/latest and the directory is loaded
// through it; then it becomes a sharded step-2/index.json (next to a small valid box file),
// loaded as `hp train --resume` (load_index, resume_dir) and `hp ckpt export` (every box read and
// its checksum verified) read it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "hp/core/error.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/io/model_config.hpp"

namespace fs = std::filesystem;

namespace {

// DIR with a complete step-1, removed at exit.
struct Fixture {
  fs::path dir = fs::temp_directory_path() / ("hp-fuzz-checkpoint-" + std::to_string(::getpid()));
  Fixture() {
    hp::io::Checkpoint c;
    c.step = 1;
    c.model["w"] = hp::Tensor({2, 3}, hp::DType::kF32);
    c.optimizer["m/w"] = hp::Tensor({2, 3}, hp::DType::kF32);
    hp::io::save_checkpoint(dir, c);
    fs::create_directories(dir / "step-2");
    const float w[6] = {1, 2, 3, 4, 5, 6};
    hp::io::write_box_file(dir / "step-2" / "rank-00000.safetensors",
                           {{"w", {0, 0}, {2, 3}, hp::DType::kF32, w}}, 12);
  }
  ~Fixture() { fs::remove_all(dir); }
};

void write(const fs::path& path, const uint8_t* data, size_t size) {
  hp::io::OutFile out(path);
  out.write(data, size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture fx;
  const fs::path step = fx.dir / "step-1";
  write(step / "state.json", data, size);
  try {
    hp::io::Checkpoint c = hp::io::load_checkpoint(step);
    hp::data::LoaderPosition::from_json(c.data);
    if (c.extra.contains("config"))
      hp::io::ModelConfig::from_json(c.extra["config"], "state.json (extra.config)");
  } catch (const hp::Error&) {
    // rejected, naming the file and the key
  }
  write(fx.dir / "latest", data, size);
  try {
    hp::io::load_latest(fx.dir);
  } catch (const hp::Error&) {
  }
  try {
    hp::io::resume_dir(fx.dir);
  } catch (const hp::Error&) {
  }
  write(fx.dir / "step-2" / hp::io::kIndexFile, data, size);
  try {
    hp::io::Checkpoint c = hp::io::load_step(fx.dir / "step-2");
    hp::data::LoaderPosition::from_json(c.data);
  } catch (const hp::Error&) {
  }
  return 0;
}
