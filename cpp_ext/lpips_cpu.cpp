// One LPIPS layer on the CPU, given trunk features x and the normalised target ny:
//   out[b] = mean_{h,w} sum_c w_c (x[b,c,h,w] / (||x[b,:,h,w]|| + eps) - ny[b|0,c,h,w])^2
// and its gradient with respect to x.
//
// Each task takes one tile of positions and sweeps its channels twice (forward: norm, then
// distance; backward: dot product, then gradient); the tile (C x kTile values) stays in cache, so
// x and ny come from memory once.
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

// 128 positions x 512 channels x 4 bytes = 256 KiB per tile and tensor: within L2.
constexpr int64_t kTile = 128;

template <typename scalar_t>
void lpips_fwd_cpu_impl(const at::Tensor& x, const at::Tensor& ny, const at::Tensor& w,
                        at::Tensor& out, at::Tensor& xnorm) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const bool bcast = ny.size(0) == 1;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* yp = ny.data_ptr<scalar_t>();
  const acc_t* wp = w.data_ptr<acc_t>();
  acc_t* xnp = xnorm.data_ptr<acc_t>();
  const int64_t tiles = (HW + kTile - 1) / kTile;
  std::vector<double> partial(B * tiles);  // per-task sums, reduced in a fixed order below

  at::parallel_for(0, B * tiles, grain_tasks(C * kTile), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sq(kTile), k(kTile), dist(kTile);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, p0 = (task % tiles) * kTile;
      const int64_t n = std::min(kTile, HW - p0);
      const scalar_t* xb = xp + b * C * HW + p0;
      const scalar_t* yb = yp + (bcast ? 0 : b) * C * HW + p0;
      std::fill(sq.begin(), sq.begin() + n, acc_t(0));
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xr = xb + c * HW;
        for (int64_t i = 0; i < n; ++i) {
          const acc_t v = static_cast<acc_t>(xr[i]);
          sq[i] += v * v;
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        const acc_t s = std::sqrt(sq[i]);
        xnp[b * HW + p0 + i] = s;
        k[i] = acc_t(1) / (s + acc_t(kLpipsEps));
      }
      std::fill(dist.begin(), dist.begin() + n, acc_t(0));
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xr = xb + c * HW;
        const scalar_t* yr = yb + c * HW;
        const acc_t wc = wp[c];
        for (int64_t i = 0; i < n; ++i) {
          const acc_t diff = static_cast<acc_t>(xr[i]) * k[i] - static_cast<acc_t>(yr[i]);
          dist[i] += wc * diff * diff;
        }
      }
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += dist[i];
      partial[task] = s;
    }
  });

  acc_t* op = out.data_ptr<acc_t>();
  for (int64_t b = 0; b < B; ++b) {
    double s = 0.0;
    for (int64_t t = 0; t < tiles; ++t) s += partial[b * tiles + t];
    op[b] = static_cast<acc_t>(HW > 0 ? s / static_cast<double>(HW) : 0.0);
  }
}

// With s = ||x||, k = 1/(s+eps), n = k x and G_c = dL/dn_c = 2 (g_b/HW) w_c (n_c - ny_c):
//   dL/dx_j = k G_j - x_j (sum_c G_c x_c) / (s (s+eps)^2),
// and the whole gradient is 0 at s == 0 (an all-zero feature vector, e.g. a dead ReLU position):
// the exact slope there is 1/eps = 1e10, which would overflow fp16 and swamp FlexIT's
// normalised gradient; lpips' own autograd gives NaN there. The reference matches this.
template <typename scalar_t>
void lpips_bwd_cpu_impl(const at::Tensor& g, const at::Tensor& x, const at::Tensor& ny,
                        const at::Tensor& w, const at::Tensor& xnorm, at::Tensor& gx) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const bool bcast = ny.size(0) == 1;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* yp = ny.data_ptr<scalar_t>();
  const acc_t* wp = w.data_ptr<acc_t>();
  const acc_t* xnp = xnorm.data_ptr<acc_t>();
  const acc_t* gp = g.data_ptr<acc_t>();
  scalar_t* gxp = gx.data_ptr<scalar_t>();
  const int64_t tiles = (HW + kTile - 1) / kTile;

  at::parallel_for(0, B * tiles, grain_tasks(C * kTile), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> k(kTile), kg(kTile), dot(kTile), coef(kTile);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, p0 = (task % tiles) * kTile;
      const int64_t n = std::min(kTile, HW - p0);
      const acc_t scale = acc_t(2) * gp[b] / static_cast<acc_t>(HW);
      const scalar_t* xb = xp + b * C * HW + p0;
      const scalar_t* yb = yp + (bcast ? 0 : b) * C * HW + p0;
      scalar_t* gb = gxp + b * C * HW + p0;
      const acc_t* sr = xnp + b * HW + p0;
      for (int64_t i = 0; i < n; ++i) {
        k[i] = acc_t(1) / (sr[i] + acc_t(kLpipsEps));
        kg[i] = sr[i] > acc_t(0) ? k[i] : acc_t(0);
      }
      std::fill(dot.begin(), dot.begin() + n, acc_t(0));
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xr = xb + c * HW;
        const scalar_t* yr = yb + c * HW;
        const acc_t wc = scale * wp[c];
        for (int64_t i = 0; i < n; ++i) {
          const acc_t xv = static_cast<acc_t>(xr[i]);
          dot[i] += wc * (xv * k[i] - static_cast<acc_t>(yr[i])) * xv;
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        const acc_t s = sr[i], se = s + acc_t(kLpipsEps);
        // Divide step by step: s^3 can underflow in fp32 where each quotient does not.
        coef[i] = s > acc_t(0) ? (dot[i] / s) / se / se : acc_t(0);
      }
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* xr = xb + c * HW;
        const scalar_t* yr = yb + c * HW;
        scalar_t* gr = gb + c * HW;
        const acc_t wc = scale * wp[c];
        for (int64_t i = 0; i < n; ++i) {
          const acc_t xv = static_cast<acc_t>(xr[i]);
          const acc_t G = wc * (xv * k[i] - static_cast<acc_t>(yr[i]));
          gr[i] = static_cast<scalar_t>(kg[i] * G - xv * coef[i]);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> lpips_layer_fwd_cpu(const at::Tensor& x_in,
                                                       const at::Tensor& ny_in,
                                                       const at::Tensor& w_in) {
  check_lpips_inputs(x_in, ny_in, w_in);
  const at::Tensor x = x_in.contiguous(), ny = ny_in.contiguous(), w = w_in.contiguous();
  const auto acc = acc_dtype(x.scalar_type());
  at::Tensor out = at::empty({x.size(0)}, x.options().dtype(acc));
  at::Tensor xnorm = at::empty({x.size(0), x.size(2), x.size(3)}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lpips_layer_fwd_cpu",
                                  [&] { lpips_fwd_cpu_impl<scalar_t>(x, ny, w, out, xnorm); });
  return {out, xnorm};
}

at::Tensor lpips_layer_bwd_cpu(const at::Tensor& g_in, const at::Tensor& x_in,
                               const at::Tensor& ny_in, const at::Tensor& w_in,
                               const at::Tensor& xnorm_in) {
  check_lpips_inputs(x_in, ny_in, w_in);
  check_grad_out(g_in, x_in, "lpips_layer_bwd");
  check_saved_norms(xnorm_in, x_in, "lpips_layer_bwd");
  const at::Tensor g = g_in.contiguous(), x = x_in.contiguous(), ny = ny_in.contiguous();
  const at::Tensor w = w_in.contiguous(), xnorm = xnorm_in.contiguous();
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lpips_layer_bwd_cpu",
                                  [&] { lpips_bwd_cpu_impl<scalar_t>(g, x, ny, w, xnorm, gx); });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(editrt, CPU, m) {
  m.impl("lpips_layer_fwd", &lpips_layer_fwd_cpu);
  m.impl("lpips_layer_bwd", &lpips_layer_bwd_cpu);
}

}  // namespace editrt
