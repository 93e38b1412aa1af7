#!/usr/bin/env bash
# Fresh-machine set-up: a virtual environment in .venv with torch, the package, its kernels and
# the test tools. Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
V=.venv/bin/python
"$V" -m pip install -q --upgrade pip setuptools wheel pybind11 ninja
# torch 2.14.1 / torchvision 0.29.1: installed from local disk where the machine provides them.
"$V" -c "import torch, torchvision" 2>/dev/null || "$V" -m pip install -q torch==2.14.1 torchvision==0.29.1
# The package (editable) with its C++/CUDA kernels; no build isolation so the build sees torch.
# `serve`: Triton serving (nvidia-pytriton, tritonclient); `ray`: the Ray jobs; `test`: the
# TensorRT 11 bindings whose API surface the tests read. The tests exercise all three.
"$V" -m pip install -q --no-build-isolation -e ".[dev,serve,ray,test]"
"$V" -c "import editrt, editrt.ops as o; print('editrt', editrt.__version__, 'kernels:', o.kernel_status().get('summary', o.kernel_status()))"
