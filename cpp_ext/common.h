// Shared input checks and type helpers of the editrt._C kernels (CPU and CUDA).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

namespace editrt {

// LPIPS adds this to the channel norm before dividing (lpips.normalize_tensor).
constexpr double kLpipsEps = 1e-10;

// Accumulation and output type: fp32 for fp16/bf16/fp32 inputs, fp64 for fp64.
template <typename scalar_t>
struct AccType { using type = float; };
template <>
struct AccType<double> { using type = double; };

// Tasks per thread chunk so that each chunk touches about at::internal::GRAIN_SIZE elements, as
// ATen's own CPU kernels do: small inputs then run inline instead of waking the thread pool.
inline int64_t grain_tasks(int64_t elements_per_task) {
  const int64_t per_task = elements_per_task > 0 ? elements_per_task : 1;
  return (at::internal::GRAIN_SIZE + per_task - 1) / per_task;
}

inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
              name, " must be float16, bfloat16, float32 or float64, got ", s);
}

// z [B,C,H,W]; z0 [B or 1,C,H,W], same dtype and device.
inline void check_l21_inputs(const at::Tensor& z, const at::Tensor& z0) {
  TORCH_CHECK(z.dim() == 4, "l21_norm: z must be [B,C,H,W], got shape ", z.sizes());
  TORCH_CHECK(z0.dim() == 4, "l21_norm: z0 must be [B or 1,C,H,W], got shape ", z0.sizes());
  TORCH_CHECK(z0.size(0) == z.size(0) || z0.size(0) == 1,
              "l21_norm: z0 batch must be 1 or match z (", z.size(0), "), got ", z0.size(0));
  TORCH_CHECK(z0.size(1) == z.size(1) && z0.size(2) == z.size(2) && z0.size(3) == z.size(3),
              "l21_norm: z0 ", z0.sizes(), " does not match z ", z.sizes(), " in C,H,W");
  check_float_dtype(z, "l21_norm: z");
  TORCH_CHECK(z0.scalar_type() == z.scalar_type(), "l21_norm: z0 dtype ", z0.scalar_type(),
              " differs from z dtype ", z.scalar_type());
  TORCH_CHECK(z0.device() == z.device(), "l21_norm: z0 is on ", z0.device(), ", z on ", z.device());
}

// x [B,C,H,W]; ny [B or 1,C,H,W] (x's dtype); w [C] in the accumulation dtype.
inline void check_lpips_inputs(const at::Tensor& x, const at::Tensor& ny, const at::Tensor& w) {
  TORCH_CHECK(x.dim() == 4, "lpips_layer: features must be [B,C,H,W], got shape ", x.sizes());
  TORCH_CHECK(ny.dim() == 4, "lpips_layer: target must be [B or 1,C,H,W], got shape ", ny.sizes());
  TORCH_CHECK(ny.size(0) == x.size(0) || ny.size(0) == 1,
              "lpips_layer: target batch must be 1 or match features (", x.size(0), "), got ",
              ny.size(0));
  TORCH_CHECK(ny.size(1) == x.size(1) && ny.size(2) == x.size(2) && ny.size(3) == x.size(3),
              "lpips_layer: target ", ny.sizes(), " does not match features ", x.sizes(),
              " in C,H,W");
  TORCH_CHECK(x.size(2) * x.size(3) > 0, "lpips_layer: features have no spatial positions: ",
              x.sizes());
  check_float_dtype(x, "lpips_layer: features");
  TORCH_CHECK(ny.scalar_type() == x.scalar_type(), "lpips_layer: target dtype ",
              ny.scalar_type(), " differs from features dtype ", x.scalar_type());
  TORCH_CHECK(w.dim() == 1 && w.size(0) == x.size(1), "lpips_layer: weight must be [C=",
              x.size(1), "], got shape ", w.sizes());
  TORCH_CHECK(w.scalar_type() == acc_dtype(x.scalar_type()), "lpips_layer: weight dtype must be ",
              acc_dtype(x.scalar_type()), ", got ", w.scalar_type());
  TORCH_CHECK(ny.device() == x.device() && w.device() == x.device(),
              "lpips_layer: features, target and weight must be on one device");
}

inline void check_grad_out(const at::Tensor& g, const at::Tensor& x, const char* name) {
  TORCH_CHECK(g.dim() == 1 && g.size(0) == x.size(0), name, ": grad_out must be [B=", x.size(0),
              "], got ", g.sizes());
  TORCH_CHECK(g.scalar_type() == acc_dtype(x.scalar_type()), name, ": grad_out dtype must be ",
              acc_dtype(x.scalar_type()), ", got ", g.scalar_type());
}

inline void check_saved_norms(const at::Tensor& n, const at::Tensor& x, const char* name) {
  TORCH_CHECK(n.dim() == 3 && n.size(0) == x.size(0) && n.size(1) == x.size(2) &&
                  n.size(2) == x.size(3),
              name, ": saved norms must be [B,H,W], got ", n.sizes());
  TORCH_CHECK(n.scalar_type() == acc_dtype(x.scalar_type()), name, ": saved norms dtype must be ",
              acc_dtype(x.scalar_type()), ", got ", n.scalar_type());
}

}  // namespace editrt
