// Helpers shared by the CUDA kernels of editrt._C.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace editrt {
namespace cuda {

// Position-tiled kernels: a block of kPos x kCh threads covers kPos consecutive positions
// (threadIdx.x, coalesced loads along W) and splits the channels among kCh rows (threadIdx.y).
constexpr int kPos = 32;
constexpr int kCh = 8;
constexpr int kReduceThreads = 256;

__device__ __forceinline__ float dev_sqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double dev_sqrt(double v) { return sqrt(v); }

// out[r] = sum_i in[r, i] / divisor, one block per row; fixed order, so deterministic.
template <typename acc_t>
__global__ void row_sum_kernel(const acc_t* __restrict__ in, acc_t* __restrict__ out, int64_t n,
                               acc_t divisor) {
  __shared__ acc_t buf[kReduceThreads];
  const acc_t* row = in + static_cast<int64_t>(blockIdx.x) * n;
  acc_t s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += row[i];
  buf[threadIdx.x] = s;
  __syncthreads();
  for (int off = kReduceThreads / 2; off > 0; off >>= 1) {
    if (threadIdx.x < off) buf[threadIdx.x] += buf[threadIdx.x + off];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = buf[0] / divisor;
}

template <typename acc_t>
void launch_row_sum(const at::Tensor& in, at::Tensor& out, int64_t rows, int64_t n,
                    double divisor, cudaStream_t stream) {
  if (rows == 0) return;
  row_sum_kernel<acc_t><<<static_cast<unsigned int>(rows), kReduceThreads, 0, stream>>>(
      in.data_ptr<acc_t>(), out.data_ptr<acc_t>(), n, static_cast<acc_t>(divisor));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

inline dim3 position_grid(int64_t B, int64_t HW) {
  TORCH_CHECK(B <= 65535, "editrt CUDA kernels support a batch of at most 65535, got ", B);
  return dim3(static_cast<unsigned int>((HW + kPos - 1) / kPos), static_cast<unsigned int>(B));
}

}  // namespace cuda
}  // namespace editrt
