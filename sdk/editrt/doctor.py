"""``editrt doctor``: which kernels are active, which devices exist, which library versions."""

from __future__ import annotations

import importlib.metadata as md
import platform


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def collect() -> dict:
    import torch

    from . import __version__, ops

    devices = {"cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices[f"cuda:{i}"] = f"{p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB"
    else:
        devices["cuda"] = "not available"
    libs = {name: _version(name) for name in (
        "torch", "torchvision", "open_clip_torch", "lpips", "taming-transformers", "onnx",
        "onnxruntime", "onnxruntime-gpu", "tensorrt", "polygraphy", "safetensors", "numpy")}
    libs["python"] = platform.python_version()
    libs["torch.cuda"] = str(torch.version.cuda)
    return {"editrt": {"version": __version__}, "kernels": ops.kernel_status(), "devices": devices,
            "libraries": libs}
