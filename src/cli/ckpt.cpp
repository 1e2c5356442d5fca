// `hp ckpt info|export|import`: inspect and verify a sharded checkpoint, stream its model out as
// one Hugging Face safetensors file, and turn a Hugging Face model into a step-0 checkpoint.
#include <cmath>
#include <cstdio>

#include "cli/args.hpp"
#include "cli/common.hpp"
#include "cli/options.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/checkpoint.hpp"
#include "hp/nn/model.hpp"

namespace fs = std::filesystem;

namespace hp::cli {

namespace {

// PATH as a step directory: itself when it holds one, else the checkpoint its `latest` names.
fs::path step_dir_of(const fs::path& path) {
  if (io::is_sharded(path) || fs::exists(path / "state.json")) return path;
  std::optional<fs::path> d = io::resume_dir(path);
  HP_CHECK(d.has_value(), "no checkpoint in ", path.string());
  return *d;
}

bool is_moment(const std::string& name) {
  return name.rfind("m/", 0) == 0 || name.rfind("v/", 0) == 0;
}

std::string box_str(const io::StoredBox& b) {
  std::string s = "[";
  for (size_t d = 0; d < b.offset.size(); ++d)
    s += (d ? ", " : "") + std::to_string(b.offset[d]) + ":" +
         std::to_string(b.offset[d] + b.extent[d]);
  return s + "]";
}

// Prints the index, then reads every stored box and checks its checksum; 1 at the first bad box.
int ckpt_info(const fs::path& path) {
  const fs::path dir = step_dir_of(path);
  HP_CHECK(io::is_sharded(dir), dir.string(),
           " is a single-file checkpoint (model.safetensors, optimizer.safetensors, state.json): "
           "no boxes or checksums to show");
  const io::ShardIndex x = io::load_index(dir);
  const io::Json& e = x.extra;
  std::printf("checkpoint %s: step %lld, strategy %s, written by %lld rank(s), data %s\n",
              dir.string().c_str(), (long long)x.step,
              e.contains("strategy") ? e["strategy"].get<std::string>().c_str() : "one device",
              (long long)(e.contains("world") ? e["world"].get<int64_t>() : 1),
              x.data.dump().c_str());
  uint64_t total = 0;
  size_t nboxes = 0;
  for (const auto& [name, t] : x.tensors) {
    uint64_t bytes = 0;
    for (const io::StoredBox& b : t.boxes) bytes += b.end - b.begin;
    std::printf("%-40s %s %s%s, %zu box(es), %s\n", name.c_str(),
                io::safetensors_dtype_name(t.dtype), shape_str(t.shape).c_str(),
                t.hf_shape != t.shape ? (" (HF " + shape_str(t.hf_shape) + ")").c_str() : "",
                t.boxes.size(), human_bytes(double(bytes)).c_str());
    for (const io::StoredBox& b : t.boxes)
      std::printf("    %-28s %s bytes [%llu, %llu) xxh64 %016llx\n", box_str(b).c_str(),
                  b.file.c_str(), (unsigned long long)b.begin, (unsigned long long)b.end,
                  (unsigned long long)b.xxh64);
    total += bytes, nboxes += t.boxes.size();
  }
  io::BoxReader reader(dir);
  for (const auto& [name, t] : x.tensors) {
    for (size_t b = 0; b < t.boxes.size(); ++b) {
      try {
        reader.verify(name, t, b);
      } catch (const Error& err) {
        std::printf("integrity: FAILED: %s\n", err.what());
        std::fflush(stdout);
        throw Error(std::string("integrity check failed: ") + err.what());
      }
    }
  }
  std::printf("integrity: %zu tensors, %zu boxes, %s, every xxh64 checksum matches\n",
              x.tensors.size(), nboxes, human_bytes(double(total)).c_str());
  return 0;
}

// The model's tensors (moments left out) in HF names and shapes: the header first, then each
// tensor assembled from its boxes, one at a time.
int ckpt_export(const fs::path& path, const fs::path& to) {
  const fs::path dir = step_dir_of(path);
  HP_CHECK(io::is_sharded(dir), dir.string(),
           " is a single-file checkpoint: its model.safetensors is already one file");
  const io::ShardIndex x = io::load_index(dir);
  std::vector<io::HeaderEntry> entries;
  for (const auto& [name, t] : x.tensors)
    if (!is_moment(name)) entries.push_back({name, t.dtype, t.hf_shape});
  const std::string header = io::safetensors_header(entries, {}, to.string());
  io::BoxReader reader(dir);
  io::write_atomic(to, [&](io::OutFile& out) {
    out.write(header);
    for (const io::HeaderEntry& en : entries) {
      const io::TensorRecord& t = x.tensors.at(en.name);
      Tensor buf(t.hf_shape, t.dtype);
      reader.read(en.name, t, std::vector<int64_t>(t.shape.size(), 0), t.shape, buf.raw());
      out.write(buf.raw(), buf.nbytes());
    }
  });
  std::printf("exported %zu tensors of %s (step %lld) to %s\n", entries.size(),
              dir.string().c_str(), (long long)x.step, to.string().c_str());
  return 0;
}

// HF_DIR's tensors: model.safetensors, or the files model.safetensors.index.json maps names to.
io::TensorMap read_hf_tensors(const fs::path& hf) {
  if (fs::exists(hf / "model.safetensors")) return io::read_safetensors(hf / "model.safetensors");
  const fs::path idx = hf / "model.safetensors.index.json";
  HP_CHECK(fs::exists(idx), hf.string(),
           " holds neither model.safetensors nor model.safetensors.index.json");
  const io::Json j = io::read_json(idx);
  const io::Json& map = io::json_require(j, "weight_map", idx.string());
  HP_CHECK(map.is_object(), idx.string(), ": 'weight_map' must be an object");
  std::map<std::string, io::TensorMap> files;
  io::TensorMap out;
  for (const auto& [name, f] : map.items()) {
    HP_CHECK(f.is_string(), idx.string(), ": weight_map['", name, "'] must be a file name");
    const std::string file = f.get<std::string>();
    HP_CHECK(file.find('/') == std::string::npos, idx.string(), ": '", file, "' is not a file of ",
             hf.string());
    if (!files.count(file)) files[file] = io::read_safetensors(hf / file);
    auto it = files[file].find(name);
    HP_CHECK(it != files[file].end(), (hf / file).string(), " lacks '", name,
             "', which the index maps to it");
    out.emplace(name, it->second);
  }
  return out;
}

int ckpt_import(const fs::path& hf, const fs::path& dir) {
  const io::ModelConfig cfg = io::ModelConfig::load(hf);
  const io::TensorMap params = nn::adopt_params(cfg, read_hf_tensors(hf), hf.string());
  std::vector<io::BoxData> boxes;
  io::ShardIndex x;
  x.rng = {{"seed", 0}};
  x.data = data::LoaderPosition{}.to_json();
  x.extra = {{"config", cfg.to_json()}, {"seed", 0}, {"world", 1}, {"imported_from", hf.string()}};
  int64_t largest = 0;
  for (const nn::ParamInfo& pi : nn::param_infos(cfg)) largest = std::max(largest, numel(pi.shape));
  const Tensor zeros = Tensor::zeros({largest}, DType::kF32);
  std::vector<Tensor> keep;
  for (const nn::ParamInfo& pi : nn::param_infos(cfg)) {
    const Shape shape = pi.logical.empty() ? pi.shape : pi.logical;
    keep.push_back(params.at(pi.name).to(DType::kF32).clone());
    const float* v = keep.back().f32();
    for (int64_t i = 0; i < keep.back().numel(); ++i)
      HP_CHECK(std::isfinite(v[i]), hf.string(), ": tensor '", pi.name,
               "' holds a non-finite value (", v[i], ") at element ", i);
    for (const char* k : {"", "m/", "v/"}) {
      x.tensors[k + pi.name] = io::TensorRecord{DType::kF32, shape, pi.shape, {}};
      boxes.push_back({k + pi.name, Shape(shape.size(), 0), shape, DType::kF32,
                       *k ? zeros.raw() : keep.back().raw()});
    }
  }
  io::clean_stale(dir, 0);
  fs::create_directories(io::staging_dir(dir, 0));
  for (auto& [name, b] :
       io::write_box_file(io::staging_dir(dir, 0) / "rank-00000.safetensors", boxes, 16 << 20))
    x.tensors.at(name).boxes.push_back(b);
  const fs::path step = io::commit_staged(dir, x, {});
  std::printf("imported %zu parameters of %s into %s (step 0, zero AdamW moments)\n", keep.size(),
              hf.string().c_str(), step.string().c_str());
  return 0;
}

}  // namespace

int cmd_ckpt(const std::vector<std::string>& argv) {
  Args a(argv, ckpt_command());
  if (printed_help(a)) return 0;
  const std::vector<std::string>& pos = a.positional();
  HP_CHECK(pos.size() == 2 && (pos[0] == "info" || pos[0] == "export" || pos[0] == "import"),
           "usage: ", ckpt_command().usage);
  if (pos[0] == "info") return ckpt_info(pos[1]);
  HP_CHECK(a.has("to"), "hp ckpt ", pos[0], " needs --to");
  if (pos[0] == "export") return ckpt_export(pos[1], a.str("to"));
  return ckpt_import(pos[1], a.str("to"));
}

}  // namespace hp::cli
