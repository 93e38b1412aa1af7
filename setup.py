"""Builds the optional extension module editrt._C (cpp_ext/) next to the pure-Python package.

Project metadata lives in pyproject.toml; this file only adds the C++/CUDA kernels.

    pip install --no-build-isolation -e .     # build against the torch already installed

Switches (environment variables):
    EDITRT_NO_EXT=1           skip the extension; editrt.ops then runs its torch reference
    EDITRT_BUILD_CUDA=0|1     force the CUDA kernels off / on (default: on when a CUDA-enabled
                              torch and a CUDA toolkit with nvcc are found; "1" makes a failed
                              CUDA build an install error instead of a CPU-only fallback)
    CUDA_HOME                 the CUDA toolkit folder (default: found from nvcc on PATH, also
                              through wrapper scripts, then /usr/local/cuda)
    TORCH_CUDA_ARCH_LIST      GPU architectures (default: the visible GPUs', else "8.0;9.0+PTX")

A failed build never fails the install (unless EDITRT_BUILD_CUDA=1): the error is recorded in
editrt/_C_build.json, reported by editrt.ops.kernel_status(), and the ops use the torch reference.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import traceback
from pathlib import Path

from setuptools import setup

# setuptools wants source paths relative to this file (the sdist manifest rejects absolute ones).
SRC = "cpp_ext"
CPU_SOURCES = ["ops_def.cpp", "l21_cpu.cpp", "lpips_cpu.cpp"]
CUDA_SOURCES = ["l21_cuda.cu", "lpips_cuda.cu"]
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"  # A100 and H100/H200 natively, PTX for newer GPUs
BUILD_INFO = "_C_build.json"


def _log(msg: str) -> None:
    print(f"editrt setup: {msg}", file=sys.stderr)


def _flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _toolkit_of(nvcc: Path) -> Path | None:
    """The toolkit folder of an nvcc binary, following symlinks and `exec …/nvcc` wrapper scripts."""
    nvcc = nvcc.resolve()
    try:
        head = nvcc.read_bytes()[:4096]
    except OSError:
        return None
    if head.startswith(b"#!"):  # a wrapper script: find the nvcc it runs
        match = re.search(rb"(/[^\s\"']+/bin/nvcc)\b", head)
        return _toolkit_of(Path(match.group(1).decode())) if match else None
    home = nvcc.parent.parent
    return home if (home / "include" / "cuda_runtime.h").is_file() else None


def find_cuda_home() -> Path | None:
    """CUDA_HOME/CUDA_PATH if valid, else the toolkit behind nvcc on PATH, else /usr/local/cuda."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            home = Path(os.environ[var])
            if (home / "bin" / "nvcc").is_file():
                return home
            _log(f"ignoring {var}={home}: no bin/nvcc there")
    nvcc = shutil.which("nvcc")
    if nvcc and (home := _toolkit_of(Path(nvcc))):
        return home
    default = Path("/usr/local/cuda")
    return default if (default / "bin" / "nvcc").is_file() else None


def _plan_cuda(torch) -> tuple[bool, str]:
    """Whether to build the CUDA kernels, and why (for the build record)."""
    forced = _flag("EDITRT_BUILD_CUDA")
    if forced is False:
        return False, "EDITRT_BUILD_CUDA=0"
    reasons = []
    if torch.version.cuda is None:
        reasons.append(f"torch {torch.__version__} is a CPU-only build")
    home = find_cuda_home()
    if home is None:
        reasons.append("no CUDA toolkit (nvcc) found; set CUDA_HOME")
    if reasons:
        if forced:
            raise RuntimeError("EDITRT_BUILD_CUDA=1 but " + "; ".join(reasons))
        return False, "; ".join(reasons)
    # torch.utils.cpp_extension reads CUDA_HOME once, at import: set it before importing it.
    os.environ["CUDA_HOME"] = str(home)
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # Without a GPU torch cannot infer the architectures (it raises IndexError).
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    return True, f"CUDA_HOME={home}"


def _require_ext(reason: str) -> None:
    """EDITRT_REQUIRE_EXT=1 (CI): a missing editrt._C fails the install instead of falling back."""
    if _flag("EDITRT_REQUIRE_EXT"):
        raise RuntimeError(f"EDITRT_REQUIRE_EXT=1 but editrt._C is not built: {reason}")


def _extensions_and_commands():
    if _flag("EDITRT_NO_EXT"):
        _require_ext("EDITRT_NO_EXT=1 skips it")
        _log("EDITRT_NO_EXT=1: skipping editrt._C")
        return [], {}
    try:
        import torch
    except ImportError:
        _require_ext("torch is not importable in the build environment")
        _log("torch is not importable in the build environment: skipping editrt._C "
             "(install torch first and use `pip install --no-build-isolation`)")
        return [], {}

    use_cuda, cuda_reason = _plan_cuda(torch)
    from torch.utils import cpp_extension as cx

    cxx_flags = ["-O3"]
    if sys.platform.startswith("linux"):
        cxx_flags.append("-fopenmp")  # at::parallel_for is header-inline OpenMP
    link_flags = ["-fopenmp"] if sys.platform.startswith("linux") else []

    def cpu_extension():
        return cx.CppExtension(
            "editrt._C", [f"{SRC}/{s}" for s in CPU_SOURCES], include_dirs=[SRC],
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags, optional=True)

    def cuda_extension():
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "auto")
        defines = ["-DEDITRT_WITH_CUDA", f'-DEDITRT_CUDA_ARCH_LIST="{arch_list}"']
        return cx.CUDAExtension(
            "editrt._C", [f"{SRC}/{s}" for s in CPU_SOURCES + CUDA_SOURCES],
            include_dirs=[SRC],
            extra_compile_args={"cxx": cxx_flags + defines, "nvcc": ["-O3", *defines]},
            extra_link_args=link_flags, optional=True)

    class BuildKernels(cx.BuildExtension):
        """Builds editrt._C; falls back to CPU-only, then to no extension, and records the outcome."""

        def run(self):
            # setuptools clears `inplace` while building and copies the module afterwards.
            self._copy_to_source = bool(self.inplace or self.editable_mode)
            super().run()

        def build_extensions(self):
            (ext,) = self.extensions
            info = {"requested_cuda": use_cuda, "cuda_plan": cuda_reason,
                    "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                    "cuda_home": os.environ.get("CUDA_HOME") if use_cuda else None,
                    "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if use_cuda else None,
                    "built": False, "cuda": False, "error": None}
            compiler_hooks = (self.compiler.compile, self.compiler._compile)
            if self._try_build(info):
                info.update(built=True, cuda=use_cuda)
            elif use_cuda:
                if _flag("EDITRT_BUILD_CUDA"):
                    raise RuntimeError("EDITRT_BUILD_CUDA=1 but the CUDA build failed: "
                                       + info["error"])
                _log("retrying editrt._C without CUDA")
                self.compiler.compile, self.compiler._compile = compiler_hooks
                fallback = cpu_extension()
                # setuptools' finalize_options stored private bookkeeping on the original.
                for key, value in vars(ext).items():
                    if key.startswith("_"):
                        setattr(fallback, key, value)
                self.extensions = [fallback]
                if self._try_build(info):
                    info.update(built=True, cuda=False)
            if not info["built"]:
                _require_ext(info["error"] or "the build produced no module")
                _log("editrt._C is not built; editrt.ops will use its torch reference")
                self._remove_inplace_copy(ext)
            self._write_build_info(ext, info)

        def _try_build(self, info) -> bool:
            """Builds self.extensions[0]; True when its module file was produced."""
            target = Path(self.get_ext_fullpath(self.extensions[0].name))
            target.unlink(missing_ok=True)  # so that a failed build cannot look like a success
            try:
                super().build_extensions()
            except Exception as err:  # noqa: BLE001 -- any compiler failure ends up here
                _log("building editrt._C failed:\n" + traceback.format_exc())
                message = f"{type(err).__name__}: {err}"
                info["error"] = message if not info["error"] else f"{info['error']}; then {message}"
                return False
            if not target.is_file():  # distutils swallows CompileError for optional extensions
                message = "compilation failed (see the compiler output above)"
                info["error"] = message if not info["error"] else f"{info['error']}; then {message}"
                return False
            return True

        def _remove_inplace_copy(self, ext):
            # An old _C next to the sources would otherwise shadow the failed build.
            if self._copy_to_source:
                build_py = self.get_finalized_command("build_py")
                inplace_file, _ = self._get_inplace_equivalent(build_py, ext)
                Path(inplace_file).unlink(missing_ok=True)

        def _write_build_info(self, ext, info):
            targets = [Path(self.get_ext_fullpath(ext.name)).parent / BUILD_INFO]
            if self._copy_to_source:
                build_py = self.get_finalized_command("build_py")
                targets.append(Path(build_py.get_package_dir("editrt")) / BUILD_INFO)
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".tmp")
                tmp.write_text(json.dumps(info, indent=2) + "\n")
                os.replace(tmp, target)

    ext = cuda_extension() if use_cuda else cpu_extension()
    _log(f"building editrt._C ({'CPU + CUDA' if use_cuda else 'CPU only'}: {cuda_reason})")
    return [ext], {"build_ext": BuildKernels.with_options(use_ninja=bool(shutil.which("ninja")))}


ext_modules, cmdclass = _extensions_and_commands()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
