// The multi-device branch of `hp train` (--devices threads:N | mpi, --strategy FILE|PRESET): the
// same loop, records, validation, checkpoints and Ctrl-C as one device, every rank running its
// shards. Not a second option parser: train.cpp parses the job and hands it over here.
#pragma once
#include <cstdint>

#include "cli/args.hpp"
#include "hp/data/loader.hpp"
#include "hp/io/model_config.hpp"
#include "hp/memory/options.hpp"
#include "hp/train/trainer.hpp"

namespace hp::cli {

// Trains `cfg` from `params` for `steps` optimizer steps of global batch opt.batch x opt.seq on
// the devices and strategy `a` names; batches come from `src` (and `val`) on rank 0 and are
// broadcast; `off` is each rank's offload configuration. Returns the exit code (130 after
// Ctrl-C).
int train_spmd(const Args& a, const io::ModelConfig& cfg, train::TrainOptions opt, int64_t steps,
               uint64_t seed, data::BatchSource& src, data::BatchSource* val,
               const io::TensorMap& params, const memory::OffloadOptions& off);

}  // namespace hp::cli
