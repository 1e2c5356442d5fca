// `hp train --devices threads:N|mpi --strategy S`: one rank per device, each running its lowered
// step on its shards. Rank 0 reads the data and broadcasts every batch (and the Ctrl-C decision),
// prints the progress line and JSON records, and writes checkpoints of gathered global tensors
// that one device can resume from, and the other way round.
#include "cli/train_spmd.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <thread>

#include "cli/common.hpp"
#include "cli/devices.hpp"
#include "cli/generate.hpp"
#include "hp/io/checkpoint.hpp"

namespace hp::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_sigint(int) {
  g_stop = 1;
}

// Rank 0's tensor (i64 [shape]) on every rank; `t` is read on rank 0 only.
Tensor broadcast_i64(comm::Communicator& c, const Tensor& t, const Shape& shape,
                     std::chrono::milliseconds timeout) {
  Tensor out = c.rank() == 0 ? t.to(DType::kI64).clone() : Tensor(shape, DType::kI64);
  HP_CHECK(out.shape() == shape, "[train] batch ", shape_str(out.shape()), ", expected ",
           shape_str(shape));
  c.broadcast(out.raw(), size_t(out.numel()), DType::kI64, 0).wait(timeout);
  return out;
}

// Rank 0's flag on every rank.
bool broadcast_flag(comm::Communicator& c, bool v, std::chrono::milliseconds timeout) {
  int64_t x = v ? 1 : 0;
  c.broadcast(&x, 1, DType::kI64, 0).wait(timeout);
  return x != 0;
}

}  // namespace

int train_spmd(const Args& a, const io::ModelConfig& cfg, train::TrainOptions opt, int64_t steps,
               uint64_t seed, data::BatchSource& src, data::BatchSource* val,
               const io::TensorMap& params, const memory::OffloadOptions& off) {
  const int64_t accum = a.i64("grad-accum", 1);
  HP_CHECK(accum >= 1, "--grad-accum must be positive");
  Devices dev = parse_devices(a.str("devices", "threads:1"));
  if (!a.has("threads"))  // the machine's cores shared among the ranks of this process
    opt.threads = int(std::max<int64_t>(
        1, int64_t(std::thread::hardware_concurrency()) / (dev.kind == "mpi" ? 1 : dev.count)));
  const std::string strategy = a.str("strategy", "dp" + std::to_string(dev.count));
  auto plan = plan_for(cfg, strategy, dev, opt.batch, opt.seq, opt.threads);
  const bool lead_process = dev.rank == 0;
  const bool json = a.flag("json");
  FILE* human = json ? stderr : stdout;

  const std::string ckpt_dir = a.str("ckpt-dir", "");
  const std::string resume_mode = a.flag("no-resume") ? "false"
                                  : a.flag("resume")  ? "true"
                                                      : a.str("resume-mode", "false");
  std::optional<io::Checkpoint> ck;  // every process reads it (one machine or a shared disk)
  if (!ckpt_dir.empty() && resume_mode != "false") {
    ck = io::load_latest(ckpt_dir);
    HP_CHECK(ck || resume_mode == "auto", "--resume: no checkpoint in ", ckpt_dir);
    if (ck) {
      // Names and shapes checked against the model, naming the file (the trainer only reshapes).
      ck->model = nn::adopt_params(
          cfg, std::move(ck->model),
          ckpt_dir + "/" + io::checkpoint_dir_name(ck->step) + "/model.safetensors");
      src.set_position(data::LoaderPosition::from_json(ck->data));
      if (lead_process)
        std::fprintf(human, "resumed from %s/step-%lld\n", ckpt_dir.c_str(), (long long)ck->step);
    }
  }
  const int64_t start = ck ? ck->step : 0;

  const int64_t D = cfg.d_model;
  const double peak =
      lead_process ? sgemm_peak_gflops(opt.threads, opt.batch * opt.seq, 4 * D, D) * dev.count : 1;
  const double tokens_per_step = double(opt.batch * opt.seq * accum);
  if (lead_process) {
    std::fprintf(human,
                 "model %s: %lld layers, d=%lld, %lld heads, vocab %lld | batch %lld x %lld | "
                 "%d devices (%s, strategy %s), %d threads each | sgemm peak %.1f GFLOP/s\n",
                 io::architecture_name(cfg.arch), (long long)cfg.n_layer, (long long)D,
                 (long long)cfg.n_head, (long long)cfg.vocab, (long long)opt.batch,
                 (long long)opt.seq, dev.count, dev.kind.c_str(), strategy.c_str(), opt.threads,
                 peak);
    std::fflush(human);
  }

  const int64_t log_every = std::max<int64_t>(1, a.i64("log-every", 10));
  const int64_t val_every = a.i64("val-every", 0), ckpt_every = a.i64("ckpt-every", 0);
  const int64_t val_batches = std::max<int64_t>(1, a.i64("val-batches", 4));
  const int64_t sample_tokens = a.i64("sample-tokens", 0);
  const bool tty = !json && isatty(fileno(stdout));
  const Shape bshape{opt.batch, opt.seq};
  std::atomic<int> rc{0};

  g_stop = 0;
  auto old = std::signal(SIGINT, on_sigint);
  try {
    run_ranks(dev, [&](comm::Communicator& c) {
      const bool lead = c.rank() == 0;
      train::SpmdTrainer tr(*plan, c, ck ? ck->model : params, opt, off);
      const auto timeout = tr.rank_comm().timeout();
      if (ck) {
        try {
          tr.load_optimizer_state(ck->optimizer, ck->step);
        } catch (const Error& e) {
          throw Error(ckpt_dir + "/" + io::checkpoint_dir_name(ck->step) +
                      "/optimizer.safetensors: " + e.what());
        }
      }
      if (lead && tr.offload_plan()) {
        const memory::OffloadPlan& p = *tr.offload_plan();
        std::fprintf(human,
                     "offload per rank: device budget %s, optimizer state on %s; rank 0: %zu "
                     "transfers (%s) and %d recomputations per micro-batch, planned peak %s\n",
                     memory::format_bytes(tr.device_budget()).c_str(),
                     tier_name(off.optimizer_state), p.transfers.size(),
                     human_bytes(double(p.bytes_to_device + p.bytes_to_host)).c_str(), p.recomputed,
                     memory::format_bytes(p.peak_device).c_str());
      }
      // Work of one step summed over ranks (replicated compute counted on every rank).
      double flops = tr.program().flops;
      {
        int64_t f = int64_t(flops);
        c.all_reduce(&f, &f, 1, DType::kI64, comm::ReduceOp::kSum).wait(timeout);
        flops = double(f);
      }
      auto save = [&](int64_t done) {
        if (ckpt_dir.empty()) return;
        io::Checkpoint out;
        out.step = done;
        out.model = tr.params();  // collective: every rank gathers, rank 0 writes
        out.optimizer = tr.optimizer_state();
        if (!lead) return;
        out.data = src.position().to_json();
        out.extra = {{"config", cfg.to_json()}, {"seed", seed}, {"strategy", strategy}};
        io::save_checkpoint(ckpt_dir, out, {int(a.i64("keep", 3))});
      };
      double spent = 0;
      int64_t done = start, timed = 0;
      bool stopped = false;
      for (int64_t s = start; s < steps; ++s) {
        if ((stopped = broadcast_flag(c, lead && g_stop, timeout))) break;
        std::vector<std::pair<Tensor, Tensor>> micro;
        for (int64_t m = 0; m < accum; ++m) {
          data::Batch b;
          if (lead) b = src.next();
          Tensor x = broadcast_i64(c, b.input, bshape, timeout);
          Tensor y = broadcast_i64(c, b.target, bshape, timeout);
          micro.push_back({x, y});
        }
        auto t0 = std::chrono::steady_clock::now();
        train::StepResult r = tr.step(micro);
        double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        done = s + 1;
        if (s > start) spent += dt, ++timed;  // the first step warms caches up
        if (lead) {
          report_step({.step = s,
                       .steps = steps,
                       .result = r,
                       .tokens = tokens_per_step,
                       .flops = flops * double(accum),
                       .step_s = dt,
                       .mean_step_s = timed ? spent / double(timed) : dt,
                       .peak_gflops = peak,
                       .peak_bytes = tr.device().peak_bytes()},
                      json, tty, log_every, start, human, "/device");
        }
        if (val && val_every > 0 && (done % val_every == 0 || done == steps)) {
          if (lead) val->set_position({});
          double vl = 0;
          for (int64_t k = 0; k < val_batches; ++k) {
            data::Batch vb;
            if (lead) vb = val->next();
            vl += tr.eval(broadcast_i64(c, vb.input, bshape, timeout),
                          broadcast_i64(c, vb.target, bshape, timeout)) /
                  double(val_batches);
          }
          if (lead) {
            if (json) std::printf("{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)s, vl);
            std::fprintf(human, "%sstep %lld: validation loss %.4f\n", tty ? "\n" : "",
                         (long long)done, vl);
            std::fflush(stdout);
          }
        }
        if (ckpt_every > 0 && done % ckpt_every == 0) save(done);
      }
      if (done > start) save(done);
      if (stopped) {
        if (lead)
          std::fprintf(
              human, "\ninterrupted after step %lld%s\n", (long long)done,
              ckpt_dir.empty()
                  ? ""
                  : ("; checkpoint saved in " + ckpt_dir + ", run again to resume").c_str());
        rc = 130;
        return;
      }
      if (lead && timed > 0)
        std::fprintf(human, "done: %lld steps, %.0f tok/s average, peak memory %s/device\n",
                     (long long)done, tokens_per_step * double(timed) / spent,
                     human_bytes(double(tr.device().peak_bytes())).c_str());
      if (sample_tokens > 0) {
        io::TensorMap p = tr.params();
        if (lead) {
          SampleOptions so;
          so.tokens = sample_tokens;
          so.threads = opt.threads;
          so.seed = seed;
          std::fprintf(human, "sample:\nAnd God said%s\n",
                       sample_text(cfg, p, "And God said", so).c_str());
        }
      }
    });
  } catch (...) {
    std::signal(SIGINT, old);
    throw;
  }
  std::signal(SIGINT, old);
  return rc;
}

}  // namespace hp::cli
