"""``editrt doctor``: which kernels are active, which devices exist, which library versions.

:func:`collect` gathers a JSON-serialisable report (``editrt doctor --json`` prints it);
:func:`format_report` turns it into the readable text ``editrt doctor`` prints.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from typing import Any

LIBRARIES = ("torch", "torchvision", "open_clip_torch", "lpips", "taming-transformers", "onnx",
             "onnxruntime", "onnxruntime-gpu", "tensorrt", "polygraphy", "safetensors", "numpy", "pillow")


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def collect() -> dict[str, Any]:
    """{"editrt": {...}, "kernels": ops.kernel_status(), "devices": {name: description},
    "libraries": {package: version}}."""
    import torch

    from . import __version__, ops

    devices = {"cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices[f"cuda:{i}"] = f"{p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB"
    else:
        devices["cuda"] = "not available"
    libs = {name: _version(name) for name in LIBRARIES}
    libs["python"] = platform.python_version()
    libs["torch.cuda"] = str(torch.version.cuda)
    return {"editrt": {"version": __version__}, "kernels": ops.kernel_status(), "devices": devices,
            "libraries": libs}


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def format_report(info: dict[str, Any]) -> str:
    """The readable form of :func:`collect`'s report: one aligned line per fact."""
    k = info["kernels"]
    ext = k["extension"]
    lines = [f"editrt {info['editrt']['version']}", "", "kernels (editrt._C)"]
    if ext["loaded"]:
        lines.append(f"  extension      loaded from {ext['path']}")
        lines.append(f"  built for      torch {ext['built_against_torch']}, CUDA kernels "
                     f"{_yes(ext['cuda_compiled'])}" + (f" (CUDA {ext['cuda_version']}, arch {ext['cuda_arch_list']})"
                                                         if ext["cuda_compiled"] else "")
                     + f", OpenMP {_yes(ext['openmp'])}")
    else:
        lines.append(f"  extension      not loaded: {ext['error']}")
    lines.append(f"  enabled        {_yes(k['kernels_enabled'])}")
    for op, per_device in k["ops"].items():
        active = ", ".join(d for d, on in per_device.items() if on) or "none (torch reference)"
        lines.append(f"  {op:<14} kernel on: {active}")
    lines += ["", "devices"]
    lines += [f"  {name:<14} {desc}" for name, desc in info["devices"].items()]
    lines += ["", "libraries"]
    lines += [f"  {name:<20} {version}" for name, version in info["libraries"].items()]
    return "\n".join(lines)


__all__ = ["collect", "format_report"]
