"""Loads the compiled kernels (editrt._C), registers their autograd and fake implementations,
and decides per call whether the kernel or the torch reference runs.

The C++ side defines four ops in the `editrt` namespace (cpp_ext/ops_def.cpp):
    l21_norm_fwd(z, z0) -> (out [B], norms [B,H,W])
    l21_norm_bwd(grad_out, z, z0, norms) -> grad_z
    lpips_layer_fwd(x, ny, w) -> (out [B], xnorm [B,H,W])
    lpips_layer_bwd(grad_out, x, ny, w, xnorm) -> grad_x
with CPU and (when built with CUDA) CUDA implementations. Here they get an autograd formula
(gradient to the first input only: targets and weights are constants) and fake kernels, so
eager, autograd and torch.compile all work.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .reference import acc_dtype

log = logging.getLogger(__name__)

_BUILD_INFO = Path(__file__).resolve().parent.parent / "_C_build.json"


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return default


def _load_extension() -> tuple[Any, str | None]:
    if _env_flag("EDITRT_NO_EXT", False):
        return None, "disabled by EDITRT_NO_EXT=1"
    try:
        from editrt import _C  # noqa: PLC0415 -- optional compiled module
    except (ImportError, OSError) as err:  # OSError: missing or ABI-incompatible libraries
        return None, f"{type(err).__name__}: {err}"
    return _C, None


_C, _IMPORT_ERROR = _load_extension()
if _C is None and _env_flag("EDITRT_REQUIRE_EXT", False) and not _env_flag("EDITRT_NO_EXT", False):
    # CI sets this: a broken kernel build must fail loudly, not skip the kernel tests
    raise ImportError(f"EDITRT_REQUIRE_EXT=1 but editrt._C cannot be loaded ({_IMPORT_ERROR}); "
                      "rebuild with `pip install --no-build-isolation -e .`")
# The on/off switch is per thread and per asyncio task (a ContextVar), so two threads that switch
# it never see each other's state; each new thread starts from EDITRT_USE_KERNELS (default on;
# 0 starts with the torch reference, e.g. for benchmarks).
_DEFAULT_ENABLED = _env_flag("EDITRT_USE_KERNELS", True)
_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("editrt_use_kernels", default=_DEFAULT_ENABLED)
_warned: set[str] = set()


def _register_fake_and_autograd() -> None:
    @torch.library.register_fake("editrt::l21_norm_fwd")
    def _l21_fwd_fake(z, z0):
        acc = acc_dtype(z.dtype)
        return (z.new_empty((z.shape[0],), dtype=acc),
                z.new_empty((z.shape[0], z.shape[2], z.shape[3]), dtype=acc))

    @torch.library.register_fake("editrt::l21_norm_bwd")
    def _l21_bwd_fake(grad_out, z, z0, norms):
        return torch.empty_like(z, memory_format=torch.contiguous_format)

    @torch.library.register_fake("editrt::lpips_layer_fwd")
    def _lpips_fwd_fake(x, ny, w):
        acc = acc_dtype(x.dtype)
        return (x.new_empty((x.shape[0],), dtype=acc),
                x.new_empty((x.shape[0], x.shape[2], x.shape[3]), dtype=acc))

    @torch.library.register_fake("editrt::lpips_layer_bwd")
    def _lpips_bwd_fake(grad_out, x, ny, w, xnorm):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _l21_setup(ctx, inputs, output):
        z, z0 = inputs
        ctx.save_for_backward(z, z0, output[1])

    def _l21_backward(ctx, grad_out, _grad_norms):
        # The per-position norms are an implementation detail that callers never see, so only
        # the gradient of `out` matters.
        if grad_out is None:
            return None, None
        z, z0, norms = ctx.saved_tensors
        return torch.ops.editrt.l21_norm_bwd(grad_out, z, z0, norms), None

    def _lpips_setup(ctx, inputs, output):
        x, ny, w = inputs
        ctx.save_for_backward(x, ny, w, output[1])

    def _lpips_backward(ctx, grad_out, _grad_xnorm):
        if grad_out is None:
            return None, None, None
        x, ny, w, xnorm = ctx.saved_tensors
        return torch.ops.editrt.lpips_layer_bwd(grad_out, x, ny, w, xnorm), None, None

    torch.library.register_autograd("editrt::l21_norm_fwd", _l21_backward,
                                    setup_context=_l21_setup)
    torch.library.register_autograd("editrt::lpips_layer_fwd", _lpips_backward,
                                    setup_context=_lpips_setup)


if _C is not None:
    _register_fake_and_autograd()
    log.debug("editrt._C loaded from %s (CUDA kernels: %s)", _C.__file__, _C.cuda_compiled)


class use_kernels:  # noqa: N801 -- reads like torch.set_grad_enabled, which it mirrors
    """Turns the compiled kernels on or off for every editrt op, in the calling thread (and
    asyncio task) only: other threads keep their own setting.

    Called plainly it switches for the rest of the thread; used as a context manager it restores
    the previous state on exit:

        editrt.ops.use_kernels(False)            # torch reference from now on (this thread)
        with editrt.ops.use_kernels(False): ...  # only inside the block

    Under torch.compile the setting at trace time is baked into the compiled graph.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._token = _ENABLED.set(bool(enabled))

    def __enter__(self) -> use_kernels:
        return self

    def __exit__(self, *exc_info: object) -> None:
        _ENABLED.reset(self._token)


@torch.compiler.assume_constant_result
def kernels_enabled() -> bool:
    """Whether the ops try their compiled kernels in this thread (see `use_kernels`)."""
    return _ENABLED.get()


def kernel_available(device_type: str) -> bool:
    """Whether editrt._C has kernels for tensors on this device type ("cpu", "cuda", ...)."""
    if _C is None:
        return False
    return device_type == "cpu" or (device_type == "cuda" and bool(_C.cuda_compiled))


def _warn_once(key: str, message: str) -> None:
    if key in _warned or torch.compiler.is_compiling():
        return
    _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def use_kernel_for(device: torch.device) -> bool:
    """True when the op should run the compiled kernel for tensors on `device`.

    Falls back to the torch reference, with one warning per cause, when the extension or its
    kernels for this device are missing; silently when the kernels were switched off.
    """
    if not kernels_enabled():
        return False
    if _C is None:
        if _IMPORT_ERROR != "disabled by EDITRT_NO_EXT=1":
            _warn_once("no-extension",
                       f"editrt._C is not available ({_IMPORT_ERROR}); editrt.ops runs the torch "
                       "reference. Rebuild with `pip install --no-build-isolation -e .` and see "
                       "`editrt.ops.kernel_status()`.")
        return False
    if not kernel_available(device.type):
        _warn_once(f"device-{device.type}",
                   f"editrt._C has no {device.type} kernels (built with CUDA: "
                   f"{bool(_C.cuda_compiled)}); editrt.ops runs the torch reference on "
                   f"{device.type}. Rebuild with a CUDA toolkit (EDITRT_BUILD_CUDA=1) to get them.")
        return False
    return True


def _build_record() -> dict[str, Any] | None:
    try:
        return json.loads(_BUILD_INFO.read_text())
    except (OSError, ValueError):
        return None


def kernel_status() -> dict[str, Any]:
    """Which kernels are active and why: for `editrt doctor` and bug reports.

    Keys: kernels_enabled, extension {loaded, path, error, cuda_compiled, cuda_version,
    cuda_arch_list, openmp, built_against_torch}, build (the install-time record, or None),
    ops {name: {"cpu": bool, "cuda": bool}} (True = the kernel runs for that device),
    torch, torch_cuda, cuda_available, gpu.
    """
    cuda_available = torch.cuda.is_available()
    ext: dict[str, Any] = {"loaded": _C is not None, "path": None, "error": _IMPORT_ERROR,
                           "cuda_compiled": False, "cuda_version": None, "cuda_arch_list": None,
                           "openmp": None, "built_against_torch": None}
    if _C is not None:
        cuda_version = _C.cuda_version
        ext.update(path=_C.__file__, cuda_compiled=bool(_C.cuda_compiled),
                   cuda_version=(f"{cuda_version // 1000}.{cuda_version % 1000 // 10}"
                                 if cuda_version else None),
                   cuda_arch_list=_C.cuda_arch_list, openmp=bool(_C.openmp),
                   built_against_torch=_C.torch_version)
    enabled = kernels_enabled()
    per_device = {"cpu": enabled and kernel_available("cpu"),
                  "cuda": enabled and cuda_available and kernel_available("cuda")}
    return {
        "kernels_enabled": enabled,
        "extension": ext,
        "build": _build_record(),
        "ops": {"l21_norm": dict(per_device), "lpips_distance": dict(per_device)},
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda_available,
        "gpu": torch.cuda.get_device_name() if cuda_available else None,
    }
