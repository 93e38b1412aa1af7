// l2,1 latent norm on CUDA: out[b] = sum_{h,w} ||z[b,:,h,w] - z0[b|0,:,h,w]||_2.
//
// Forward: one block per (32 positions, sample); 8 thread rows split the channels, a shared-memory
// sum gives each position's norm, a second small kernel sums the norms per sample in a fixed order.
// Backward: one elementwise pass, grad = g[b] * (z - z0) / norm (0 where norm == 0).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"
#include "cuda_common.cuh"

namespace editrt {
namespace cuda {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void l21_fwd_kernel(const scalar_t* __restrict__ z, const scalar_t* __restrict__ z0,
                               acc_t* __restrict__ norms, int64_t C, int64_t HW, bool bcast) {
  __shared__ acc_t red[kCh][kPos + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t b = blockIdx.y;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kPos + tx;
  acc_t s = 0;
  if (p < HW) {
    const scalar_t* zr = z + b * C * HW + p;
    const scalar_t* z0r = z0 + (bcast ? 0 : b) * C * HW + p;
    for (int64_t c = ty; c < C; c += kCh) {
      const acc_t d = static_cast<acc_t>(zr[c * HW]) - static_cast<acc_t>(z0r[c * HW]);
      s += d * d;
    }
  }
  red[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && p < HW) {
    acc_t t = 0;
    for (int j = 0; j < kCh; ++j) t += red[j][tx];
    norms[b * HW + p] = dev_sqrt(t);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void l21_bwd_kernel(const acc_t* __restrict__ g, const scalar_t* __restrict__ z,
                               const scalar_t* __restrict__ z0, const acc_t* __restrict__ norms,
                               scalar_t* __restrict__ gz, int64_t C, int64_t HW, int64_t total,
                               bool bcast) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t p = idx % HW;
    const int64_t bc = idx / HW;
    const int64_t b = bc / C;
    const int64_t z0_idx = bcast ? (bc % C) * HW + p : idx;
    const acc_t nv = norms[b * HW + p];
    const acc_t d = static_cast<acc_t>(z[idx]) - static_cast<acc_t>(z0[z0_idx]);
    gz[idx] = static_cast<scalar_t>(nv > acc_t(0) ? g[b] * d / nv : acc_t(0));
  }
}

std::tuple<at::Tensor, at::Tensor> l21_norm_fwd_cuda(const at::Tensor& z_in,
                                                     const at::Tensor& z0_in) {
  check_l21_inputs(z_in, z0_in);
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous(), z0 = z0_in.contiguous();
  const int64_t B = z.size(0), C = z.size(1), HW = z.size(2) * z.size(3);
  const auto acc = acc_dtype(z.scalar_type());
  at::Tensor norms = at::empty({B, z.size(2), z.size(3)}, z.options().dtype(acc));
  at::Tensor out = at::zeros({B}, z.options().dtype(acc));
  if (B == 0 || HW == 0) return {out, norms};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "l21_norm_fwd_cuda",
                                  [&] {
    using acc_t = typename AccType<scalar_t>::type;
    l21_fwd_kernel<scalar_t, acc_t><<<position_grid(B, HW), dim3(kPos, kCh), 0, stream>>>(
        z.data_ptr<scalar_t>(), z0.data_ptr<scalar_t>(), norms.data_ptr<acc_t>(), C, HW,
        z0.size(0) == 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    launch_row_sum<acc_t>(norms, out, B, HW, 1.0, stream);
  });
  return {out, norms};
}

at::Tensor l21_norm_bwd_cuda(const at::Tensor& g_in, const at::Tensor& z_in,
                             const at::Tensor& z0_in, const at::Tensor& norms_in) {
  check_l21_inputs(z_in, z0_in);
  check_grad_out(g_in, z_in, "l21_norm_bwd");
  check_saved_norms(norms_in, z_in, "l21_norm_bwd");
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor g = g_in.contiguous(), z = z_in.contiguous(), z0 = z0_in.contiguous();
  const at::Tensor norms = norms_in.contiguous();
  at::Tensor gz = at::empty_like(z, at::MemoryFormat::Contiguous);
  const int64_t total = z.numel();
  if (total == 0) return gz;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t(1) << 20);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "l21_norm_bwd_cuda",
                                  [&] {
    using acc_t = typename AccType<scalar_t>::type;
    l21_bwd_kernel<scalar_t, acc_t><<<static_cast<unsigned int>(blocks), threads, 0, stream>>>(
        g.data_ptr<acc_t>(), z.data_ptr<scalar_t>(), z0.data_ptr<scalar_t>(),
        norms.data_ptr<acc_t>(), gz.data_ptr<scalar_t>(), z.size(1), z.size(2) * z.size(3), total,
        z0.size(0) == 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gz;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(editrt, CUDA, m) {
  m.impl("l21_norm_fwd", &cuda::l21_norm_fwd_cuda);
  m.impl("l21_norm_bwd", &cuda::l21_norm_bwd_cuda);
}

}  // namespace editrt
