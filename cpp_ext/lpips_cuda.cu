// One LPIPS layer on CUDA, given trunk features x and the normalised target ny:
//   out[b] = mean_{h,w} sum_c w_c (x[b,c,h,w] / (||x[b,:,h,w]|| + eps) - ny[b|0,c,h,w])^2
// and its gradient with respect to x.
//
// One block per (32 positions, sample): 8 thread rows split the channels and meet in shared
// memory after each channel sweep (norm, then distance; backward: dot product, then gradient).
// A block's 32 positions x C channels stay in L1/L2 between sweeps. Per-block partial sums are
// reduced per sample by a second kernel in a fixed order (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <tuple>

#include "common.h"
#include "cuda_common.cuh"

namespace editrt {
namespace cuda {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void lpips_fwd_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ ny,
                                 const acc_t* __restrict__ w, acc_t* __restrict__ xnorm,
                                 acc_t* __restrict__ partial, int64_t C, int64_t HW, bool bcast) {
  __shared__ acc_t red[kCh][kPos + 1];
  __shared__ acc_t inv[kPos];
  __shared__ acc_t pos_dist[kPos];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t b = blockIdx.y;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kPos + tx;
  const bool valid = p < HW;
  const int64_t xoff = b * C * HW + p;
  const int64_t yoff = (bcast ? 0 : b) * C * HW + p;

  acc_t s = 0;
  if (valid) {
    for (int64_t c = ty; c < C; c += kCh) {
      const acc_t v = static_cast<acc_t>(x[xoff + c * HW]);
      s += v * v;
    }
  }
  red[ty][tx] = s;
  __syncthreads();
  if (ty == 0) {
    acc_t t = 0;
    for (int j = 0; j < kCh; ++j) t += red[j][tx];
    const acc_t nrm = dev_sqrt(t);
    if (valid) xnorm[b * HW + p] = nrm;
    inv[tx] = acc_t(1) / (nrm + acc_t(kLpipsEps));
  }
  __syncthreads();

  const acc_t k = inv[tx];
  acc_t d = 0;
  if (valid) {
    for (int64_t c = ty; c < C; c += kCh) {
      const acc_t diff =
          static_cast<acc_t>(x[xoff + c * HW]) * k - static_cast<acc_t>(ny[yoff + c * HW]);
      d += w[c] * diff * diff;
    }
  }
  red[ty][tx] = d;
  __syncthreads();
  if (ty == 0) {
    acc_t t = 0;
    for (int j = 0; j < kCh; ++j) t += red[j][tx];
    pos_dist[tx] = t;  // 0 for positions past HW
  }
  __syncthreads();
  if (ty == 0 && tx == 0) {
    acc_t t = 0;
    for (int i = 0; i < kPos; ++i) t += pos_dist[i];
    partial[b * gridDim.x + blockIdx.x] = t;
  }
}

// With s = ||x||, k = 1/(s+eps), n = k x and G_c = dL/dn_c = 2 (g_b/HW) w_c (n_c - ny_c):
//   dL/dx_j = k G_j - x_j (sum_c G_c x_c) / (s (s+eps)^2), and 0 at s == 0 (see lpips_cpu.cpp).
template <typename scalar_t, typename acc_t>
__global__ void lpips_bwd_kernel(const acc_t* __restrict__ g, const scalar_t* __restrict__ x,
                                 const scalar_t* __restrict__ ny, const acc_t* __restrict__ w,
                                 const acc_t* __restrict__ xnorm, scalar_t* __restrict__ gx,
                                 int64_t C, int64_t HW, bool bcast) {
  __shared__ acc_t red[kCh][kPos + 1];
  __shared__ acc_t coef_s[kPos];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t b = blockIdx.y;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kPos + tx;
  const bool valid = p < HW;
  const int64_t xoff = b * C * HW + p;
  const int64_t yoff = (bcast ? 0 : b) * C * HW + p;
  const acc_t scale = acc_t(2) * g[b] / static_cast<acc_t>(HW);
  const acc_t s = valid ? xnorm[b * HW + p] : acc_t(0);
  const acc_t se = s + acc_t(kLpipsEps);
  const acc_t k = acc_t(1) / se;

  acc_t dot = 0;
  if (valid) {
    for (int64_t c = ty; c < C; c += kCh) {
      const acc_t xv = static_cast<acc_t>(x[xoff + c * HW]);
      dot += scale * w[c] * (xv * k - static_cast<acc_t>(ny[yoff + c * HW])) * xv;
    }
  }
  red[ty][tx] = dot;
  __syncthreads();
  if (ty == 0) {
    acc_t t = 0;
    for (int j = 0; j < kCh; ++j) t += red[j][tx];
    // Divide step by step: s^3 can underflow in fp32 where each quotient does not.
    coef_s[tx] = s > acc_t(0) ? (t / s) / se / se : acc_t(0);
  }
  __syncthreads();
  if (!valid || !(s > acc_t(0))) {
    if (valid) {
      for (int64_t c = ty; c < C; c += kCh) gx[xoff + c * HW] = static_cast<scalar_t>(0);
    }
    return;
  }
  const acc_t coef = coef_s[tx];
  for (int64_t c = ty; c < C; c += kCh) {
    const acc_t xv = static_cast<acc_t>(x[xoff + c * HW]);
    const acc_t G = scale * w[c] * (xv * k - static_cast<acc_t>(ny[yoff + c * HW]));
    gx[xoff + c * HW] = static_cast<scalar_t>(k * G - xv * coef);
  }
}

std::tuple<at::Tensor, at::Tensor> lpips_layer_fwd_cuda(const at::Tensor& x_in,
                                                        const at::Tensor& ny_in,
                                                        const at::Tensor& w_in) {
  check_lpips_inputs(x_in, ny_in, w_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), ny = ny_in.contiguous(), w = w_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const auto acc = acc_dtype(x.scalar_type());
  at::Tensor out = at::zeros({B}, x.options().dtype(acc));
  at::Tensor xnorm = at::empty({B, x.size(2), x.size(3)}, x.options().dtype(acc));
  if (B == 0) return {out, xnorm};
  const dim3 grid = position_grid(B, HW);
  at::Tensor partial = at::empty({B, static_cast<int64_t>(grid.x)}, x.options().dtype(acc));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "lpips_layer_fwd_cuda", [&] {
    using acc_t = typename AccType<scalar_t>::type;
    lpips_fwd_kernel<scalar_t, acc_t><<<grid, dim3(kPos, kCh), 0, stream>>>(
        x.data_ptr<scalar_t>(), ny.data_ptr<scalar_t>(), w.data_ptr<acc_t>(),
        xnorm.data_ptr<acc_t>(), partial.data_ptr<acc_t>(), C, HW, ny.size(0) == 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    launch_row_sum<acc_t>(partial, out, B, grid.x, static_cast<double>(HW), stream);
  });
  return {out, xnorm};
}

at::Tensor lpips_layer_bwd_cuda(const at::Tensor& g_in, const at::Tensor& x_in,
                                const at::Tensor& ny_in, const at::Tensor& w_in,
                                const at::Tensor& xnorm_in) {
  check_lpips_inputs(x_in, ny_in, w_in);
  check_grad_out(g_in, x_in, "lpips_layer_bwd");
  check_saved_norms(xnorm_in, x_in, "lpips_layer_bwd");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor g = g_in.contiguous(), x = x_in.contiguous(), ny = ny_in.contiguous();
  const at::Tensor w = w_in.contiguous(), xnorm = xnorm_in.contiguous();
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  if (B == 0) return gx;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "lpips_layer_bwd_cuda", [&] {
    using acc_t = typename AccType<scalar_t>::type;
    lpips_bwd_kernel<scalar_t, acc_t><<<position_grid(B, HW), dim3(kPos, kCh), 0, stream>>>(
        g.data_ptr<acc_t>(), x.data_ptr<scalar_t>(), ny.data_ptr<scalar_t>(), w.data_ptr<acc_t>(),
        xnorm.data_ptr<acc_t>(), gx.data_ptr<scalar_t>(), C, HW, ny.size(0) == 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(editrt, CUDA, m) {
  m.impl("lpips_layer_fwd", &cuda::lpips_layer_fwd_cuda);
  m.impl("lpips_layer_bwd", &cuda::lpips_layer_bwd_cuda);
}

}  // namespace editrt
