// l2,1 latent norm on the CPU: out[b] = sum_{h,w} ||z[b,:,h,w] - z0[b|0,:,h,w]||_2.
//
// NCHW puts channels HW elements apart, so each task walks one tile of positions and runs over the
// channels with the positions innermost (contiguous, vectorisable), accumulating squared
// differences per position. Forward and backward read z and z0 once each.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "common.h"

namespace editrt {
namespace {

constexpr int64_t kTile = 256;  // positions per task

template <typename scalar_t>
void l21_fwd_cpu_impl(const at::Tensor& z, const at::Tensor& z0, at::Tensor& out,
                      at::Tensor& norms) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t B = z.size(0), C = z.size(1), HW = z.size(2) * z.size(3);
  const bool bcast = z0.size(0) == 1;
  const scalar_t* zp = z.data_ptr<scalar_t>();
  const scalar_t* z0p = z0.data_ptr<scalar_t>();
  acc_t* np = norms.data_ptr<acc_t>();
  const int64_t tiles = (HW + kTile - 1) / kTile;

  at::parallel_for(0, B * tiles, grain_tasks(C * kTile), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sq(kTile);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, p0 = (task % tiles) * kTile;
      const int64_t n = std::min(kTile, HW - p0);
      std::fill(sq.begin(), sq.begin() + n, acc_t(0));
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* zr = zp + (b * C + c) * HW + p0;
        const scalar_t* z0r = z0p + ((bcast ? 0 : b) * C + c) * HW + p0;
        for (int64_t i = 0; i < n; ++i) {
          const acc_t d = static_cast<acc_t>(zr[i]) - static_cast<acc_t>(z0r[i]);
          sq[i] += d * d;
        }
      }
      acc_t* nr = np + b * HW + p0;
      for (int64_t i = 0; i < n; ++i) nr[i] = std::sqrt(sq[i]);
    }
  });

  // Per-sample sums in a fixed order (deterministic), in double.
  acc_t* op = out.data_ptr<acc_t>();
  for (int64_t b = 0; b < B; ++b) {
    double s = 0.0;
    for (int64_t p = 0; p < HW; ++p) s += np[b * HW + p];
    op[b] = static_cast<acc_t>(s);
  }
}

template <typename scalar_t>
void l21_bwd_cpu_impl(const at::Tensor& g, const at::Tensor& z, const at::Tensor& z0,
                      const at::Tensor& norms, at::Tensor& gz) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t B = z.size(0), C = z.size(1), HW = z.size(2) * z.size(3);
  const bool bcast = z0.size(0) == 1;
  const scalar_t* zp = z.data_ptr<scalar_t>();
  const scalar_t* z0p = z0.data_ptr<scalar_t>();
  const acc_t* np = norms.data_ptr<acc_t>();
  const acc_t* gp = g.data_ptr<acc_t>();
  scalar_t* gzp = gz.data_ptr<scalar_t>();

  // scale[b,p] = g[b] / norm, 0 at norm == 0: the subgradient 0 keeps z == z0 NaN-free.
  std::vector<acc_t> scale(B * HW);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t p = 0; p < HW; ++p) {
      const acc_t nv = np[b * HW + p];
      scale[b * HW + p] = nv > acc_t(0) ? gp[b] / nv : acc_t(0);
    }

  at::parallel_for(0, B * C, grain_tasks(HW), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / C, c = row % C;
      const scalar_t* zr = zp + row * HW;
      const scalar_t* z0r = z0p + ((bcast ? 0 : b) * C + c) * HW;
      const acc_t* sr = scale.data() + b * HW;
      scalar_t* gr = gzp + row * HW;
      for (int64_t p = 0; p < HW; ++p) {
        const acc_t d = static_cast<acc_t>(zr[p]) - static_cast<acc_t>(z0r[p]);
        gr[p] = static_cast<scalar_t>(sr[p] * d);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> l21_norm_fwd_cpu(const at::Tensor& z_in,
                                                    const at::Tensor& z0_in) {
  check_l21_inputs(z_in, z0_in);
  const at::Tensor z = z_in.contiguous(), z0 = z0_in.contiguous();
  const auto acc = acc_dtype(z.scalar_type());
  at::Tensor out = at::empty({z.size(0)}, z.options().dtype(acc));
  at::Tensor norms = at::empty({z.size(0), z.size(2), z.size(3)}, z.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "l21_norm_fwd_cpu",
                                  [&] { l21_fwd_cpu_impl<scalar_t>(z, z0, out, norms); });
  return {out, norms};
}

at::Tensor l21_norm_bwd_cpu(const at::Tensor& g_in, const at::Tensor& z_in,
                            const at::Tensor& z0_in, const at::Tensor& norms_in) {
  check_l21_inputs(z_in, z0_in);
  check_grad_out(g_in, z_in, "l21_norm_bwd");
  check_saved_norms(norms_in, z_in, "l21_norm_bwd");
  const at::Tensor g = g_in.contiguous(), z = z_in.contiguous(), z0 = z0_in.contiguous();
  const at::Tensor norms = norms_in.contiguous();
  at::Tensor gz = at::empty_like(z, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "l21_norm_bwd_cpu",
                                  [&] { l21_bwd_cpu_impl<scalar_t>(g, z, z0, norms, gz); });
  return gz;
}

}  // namespace

TORCH_LIBRARY_IMPL(editrt, CPU, m) {
  m.impl("l21_norm_fwd", &l21_norm_fwd_cpu);
  m.impl("l21_norm_bwd", &l21_norm_bwd_cpu);
}

}  // namespace editrt
