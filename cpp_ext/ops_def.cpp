// Schemas of the editrt ops and the Python module editrt._C.
//
// The CPU and CUDA implementations register themselves in their own translation units
// (l21_cpu.cpp, lpips_cpu.cpp, *.cu); autograd formulas and fake (meta) kernels are registered
// from Python in editrt/ops/_kernels.py, which is the only supported entry point.
#include <torch/extension.h>
#include <torch/library.h>
#include <torch/version.h>

#include <string>

#ifdef EDITRT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

// FRAGMENT rather than TORCH_LIBRARY so that Python code may add more ops to the namespace.
TORCH_LIBRARY_FRAGMENT(editrt, m) {
  // l2,1 norm of z - z0: out [B] = sum_{h,w} ||z[b,:,h,w] - z0[b|0,:,h,w]||_2;
  // norms [B,H,W] are the per-position norms, saved for the backward pass.
  m.def("l21_norm_fwd(Tensor z, Tensor z0) -> (Tensor out, Tensor norms)",
        {at::Tag::pt2_compliant_tag});
  // grad_z = grad_out[b] * (z - z0) / norm, and 0 where norm == 0.
  m.def("l21_norm_bwd(Tensor grad_out, Tensor z, Tensor z0, Tensor norms) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // One LPIPS layer: out [B] = mean_{h,w} sum_c w_c (x/(||x||+eps) - ny)^2,
  // xnorm [B,H,W] = ||x|| over channels, saved for the backward pass.
  m.def("lpips_layer_fwd(Tensor x, Tensor ny, Tensor w) -> (Tensor out, Tensor xnorm)",
        {at::Tag::pt2_compliant_tag});
  m.def("lpips_layer_bwd(Tensor grad_out, Tensor x, Tensor ny, Tensor w, Tensor xnorm) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "editrt fused kernels (l2,1 latent norm, LPIPS distance); use them via editrt.ops";
#ifdef EDITRT_WITH_CUDA
  m.attr("cuda_compiled") = true;
  m.attr("cuda_version") = CUDART_VERSION;  // e.g. 13000 for CUDA 13.0
#else
  m.attr("cuda_compiled") = false;
  m.attr("cuda_version") = py::none();
#endif
#ifdef EDITRT_CUDA_ARCH_LIST
  m.attr("cuda_arch_list") = EDITRT_CUDA_ARCH_LIST;
#else
  m.attr("cuda_arch_list") = py::none();
#endif
  // The torch this module was compiled against; a different runtime torch breaks the ABI.
  m.attr("torch_version") = std::to_string(TORCH_VERSION_MAJOR) + "." +
                            std::to_string(TORCH_VERSION_MINOR) + "." +
                            std::to_string(TORCH_VERSION_PATCH);
  m.attr("openmp") =
#ifdef _OPENMP
      true;
#else
      false;
#endif
}
