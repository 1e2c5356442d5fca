// The `nccl` backend: collectives on GPU buffers through NCCL, one rank per device, bootstrapped
// (unique id exchange, failure propagation) over another communicator (threads or mpi).
// Not built without CUDA + NCCL (HP_HAVE_NCCL); not a GPU memory manager beyond a test buffer.
#pragma once
#ifdef HP_HAVE_NCCL
#include <cstddef>
#include <memory>

#include "hp/comm/communicator.hpp"

namespace hp::comm {

// Visible CUDA devices; 0 when there is no GPU or no driver (never throws).
int cuda_device_count();

// A communicator over the same ranks as `bootstrap`, with this rank on CUDA device `device`.
// Collective over bootstrap's ranks; bootstrap must outlive the result. Buffers are device
// pointers; send/recv support tag 0 only. bf16/f16 reductions accumulate in NCCL's own way
// (in the element type), unlike the host backends.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device);

// Device memory for tests and benchmarks: RAII cudaMalloc/cudaFree plus host copies.
class DeviceBuffer {
 public:
  DeviceBuffer(int device, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() { return ptr_; }
  size_t bytes() const { return bytes_; }
  void copy_from_host(const void* src, size_t bytes);
  void copy_to_host(void* dst, size_t bytes) const;

 private:
  int device_;
  void* ptr_ = nullptr;
  size_t bytes_;
};

}  // namespace hp::comm
#endif  // HP_HAVE_NCCL
