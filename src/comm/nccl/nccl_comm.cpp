// NCCL communicator: each operation is enqueued on the communicator's CUDA stream followed by an
// event; waiting polls the event, NCCL's async error and the bootstrap world's failure record
// (a failed peer aborts the NCCL communicator so nothing hangs). Uneven collectives are NCCL
// groups of broadcasts / reduces / send-recv pairs.
// Not a stream scheduler: one stream per communicator, operations run in issue order.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>

#include "hp/comm/nccl.hpp"

namespace hp::comm {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(detail::cat("[comm] ", what, ": ", cudaGetErrorString(e)));
}
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(detail::cat("[comm] ", what, ": ", ncclGetErrorString(r)));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

// Shared between the communicator and the poll hooks of its Works.
struct NcclState {
  ncclComm_t comm = nullptr;
  std::atomic<bool> aborted{false};
  std::mutex mu;
  void abort() {
    std::lock_guard<std::mutex> lk(mu);
    if (!aborted.exchange(true) && comm) ncclCommAbort(comm);
  }
};

class NcclComm final : public Communicator {
 public:
  NcclComm(Communicator& boot, std::unique_ptr<Communicator> owned, int device)
      : boot_(boot), owned_(std::move(owned)), device_(device), st_(std::make_shared<NcclState>()) {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (boot_.rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    static_assert(sizeof(ncclUniqueId) % 4 == 0);
    boot_.broadcast(&id, sizeof(id) / 4, DType::kI32, 0).wait(std::chrono::seconds(60));
    nccl_check(ncclCommInitRank(&st_->comm, boot_.size(), id, boot_.rank()), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaMalloc(&scratch_, 64), "cudaMalloc");
  }
  ~NcclComm() override {
    cudaSetDevice(device_);
    if (!st_->aborted.load()) {
      cudaStreamSynchronize(stream_);
      ncclCommDestroy(st_->comm);
    }
    cudaFree(scratch_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }
  int world_rank() const override { return boot_.world_rank(); }
  const char* backend() const override { return "nccl"; }

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override {
    auto sub = boot_.split(ranks);
    Communicator& ref = *sub;
    return std::make_unique<NcclComm>(ref, std::move(sub), device_);
  }

  Work all_reduce(const void* send, void* recv, size_t count, DType t, ReduceOp op) override {
    return enqueue("all_reduce", [&] {
      nccl_check(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), st_->comm, stream_),
                 "ncclAllReduce");
    });
  }

  Work all_gather(const void* send, void* recv, const std::vector<size_t>& counts,
                  DType t) override {
    detail::check_counts(counts, size(), "all_gather");
    bool even = std::all_of(counts.begin(), counts.end(), [&](size_t c) { return c == counts[0]; });
    return enqueue("all_gather", [&] {
      if (even) {
        nccl_check(ncclAllGather(send, recv, counts[0], nccl_type(t), st_->comm, stream_),
                   "ncclAllGather");
        return;
      }
      size_t off = 0, es = dtype_size(t);
      nccl_check(ncclGroupStart(), "ncclGroupStart");
      for (int q = 0; q < size(); ++q) {
        char* dst = static_cast<char*>(recv) + off * es;
        nccl_check(ncclBroadcast(q == rank() ? send : dst, dst, counts[size_t(q)], nccl_type(t), q,
                                 st_->comm, stream_),
                   "ncclBroadcast");
        off += counts[size_t(q)];
      }
      nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    });
  }

  Work reduce_scatter(const void* send, void* recv, const std::vector<size_t>& counts, DType t,
                      ReduceOp op) override {
    detail::check_counts(counts, size(), "reduce_scatter");
    bool even = std::all_of(counts.begin(), counts.end(), [&](size_t c) { return c == counts[0]; });
    return enqueue("reduce_scatter", [&] {
      if (even) {
        nccl_check(
            ncclReduceScatter(send, recv, counts[0], nccl_type(t), nccl_op(op), st_->comm, stream_),
            "ncclReduceScatter");
        return;
      }
      size_t off = 0, es = dtype_size(t);
      nccl_check(ncclGroupStart(), "ncclGroupStart");
      for (int q = 0; q < size(); ++q) {
        nccl_check(ncclReduce(static_cast<const char*>(send) + off * es, recv, counts[size_t(q)],
                              nccl_type(t), nccl_op(op), q, st_->comm, stream_),
                   "ncclReduce");
        off += counts[size_t(q)];
      }
      nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    });
  }

  Work all_to_all(const void* send, const std::vector<size_t>& send_counts, void* recv,
                  const std::vector<size_t>& recv_counts, DType t) override {
    detail::check_counts(send_counts, size(), "all_to_all");
    detail::check_counts(recv_counts, size(), "all_to_all");
    return enqueue("all_to_all", [&] {
      size_t so = 0, ro = 0, es = dtype_size(t);
      nccl_check(ncclGroupStart(), "ncclGroupStart");
      for (int q = 0; q < size(); ++q) {
        nccl_check(ncclSend(static_cast<const char*>(send) + so * es, send_counts[size_t(q)],
                            nccl_type(t), q, st_->comm, stream_),
                   "ncclSend");
        nccl_check(ncclRecv(static_cast<char*>(recv) + ro * es, recv_counts[size_t(q)],
                            nccl_type(t), q, st_->comm, stream_),
                   "ncclRecv");
        so += send_counts[size_t(q)];
        ro += recv_counts[size_t(q)];
      }
      nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    });
  }

  Work broadcast(void* buf, size_t count, DType t, int root) override {
    return enqueue("broadcast", [&] {
      nccl_check(ncclBroadcast(buf, buf, count, nccl_type(t), root, st_->comm, stream_),
                 "ncclBroadcast");
    });
  }

  Work send(const void* buf, size_t count, DType t, int peer, int tag) override {
    HP_CHECK(tag == 0, "[comm] nccl send: tags are not supported (got ", tag, ")");
    return enqueue("send", [&] {
      nccl_check(ncclSend(buf, count, nccl_type(t), peer, st_->comm, stream_), "ncclSend");
    });
  }
  Work recv(void* buf, size_t count, DType t, int peer, int tag) override {
    HP_CHECK(tag == 0, "[comm] nccl recv: tags are not supported (got ", tag, ")");
    return enqueue("recv", [&] {
      nccl_check(ncclRecv(buf, count, nccl_type(t), peer, st_->comm, stream_), "ncclRecv");
    });
  }

  Work barrier() override {
    return enqueue("barrier", [&] {
      nccl_check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, st_->comm, stream_),
                 "ncclAllReduce");
    });
  }

  void abort(const std::string& reason) override {
    boot_.abort(reason);
    st_->abort();
  }
  void throw_if_failed() const override { boot_.throw_if_failed(); }

 private:
  // Enqueues on the stream, records an event; the Work polls event, NCCL and bootstrap failure.
  Work enqueue(const char* op, const std::function<void()>& launch) {
    std::string what = detail::cat(op, " on rank ", rank(), " of nccl:", size());
    boot_.throw_if_failed();
    HP_CHECK(!st_->aborted.load(), "[comm] ", what, ": communicator was aborted");
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    launch();
    cudaEvent_t ev;
    cuda_check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventRecord(ev, stream_), "cudaEventRecord");
    auto state = std::make_shared<detail::WorkState>(what);
    std::weak_ptr<detail::WorkState> weak = state;
    auto st = st_;
    Communicator* boot = &boot_;
    auto event = std::make_shared<cudaEvent_t>(ev);
    state->poll = [weak, st, boot, event] {
      auto s = weak.lock();
      if (!s || s->done()) return;
      try {
        boot->throw_if_failed();
        cudaError_t e = cudaEventQuery(*event);
        if (e == cudaSuccess) {
          cudaEventDestroy(*event);
          s->finish();
          return;
        }
        if (e != cudaErrorNotReady) cuda_check(e, "cudaEventQuery");
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(st->comm, &async);
        nccl_check(async, "NCCL async error");
      } catch (...) {
        st->abort();  // frees every rank stuck in a kernel waiting for the failed peer
        s->finish(std::current_exception());
      }
    };
    return Work(state);
  }

  Communicator& boot_;
  std::unique_ptr<Communicator> owned_;
  int device_;
  std::shared_ptr<NcclState> st_;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device) {
  HP_CHECK(device >= 0 && device < cuda_device_count(), "[comm] nccl: no CUDA device ", device,
           " (", cuda_device_count(), " visible)");
  return std::make_unique<NcclComm>(bootstrap, nullptr, device);
}

DeviceBuffer::DeviceBuffer(int device, size_t bytes) : device_(device), bytes_(bytes) {
  cuda_check(cudaSetDevice(device_), "cudaSetDevice");
  cuda_check(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)), "cudaMalloc");
}
DeviceBuffer::~DeviceBuffer() {
  cudaSetDevice(device_);
  cudaFree(ptr_);
}
void DeviceBuffer::copy_from_host(const void* src, size_t bytes) {
  cuda_check(cudaSetDevice(device_), "cudaSetDevice");
  cuda_check(cudaMemcpy(ptr_, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
}
void DeviceBuffer::copy_to_host(void* dst, size_t bytes) const {
  cuda_check(cudaSetDevice(device_), "cudaSetDevice");
  cuda_check(cudaMemcpy(dst, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
}

}  // namespace hp::comm
