"""End-to-end drift of each method's final image at each backend and precision, against torch fp32.

For FlexIT, global directions, FEU and DeltaEdit on the same inputs and seeds: the edit is run
once with ``backend="torch", precision="fp32"`` (the reference) and once per (backend,
precision) case; the final images are compared in [0, 1] units (``result.images01``): max and
mean |Δ|. A case the runtime cannot execute (bf16 graphs on onnxruntime's CPU provider,
anything TensorRT without a GPU) is recorded with the error it raised, after the code path ran
up to that point (the bf16 graph is exported and checked before onnxruntime refuses it).

    python benchmarks/engine_drift.py --preset tiny --json benchmarks/results/engine-drift-tiny.json

Seeded random weights of the named architectures: drift measures the numerics of the engines,
not the quality of an edit. The table in engines/README.md comes from this script's JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

from editrt.errors import EditrtError

log = logging.getLogger(__name__)

CASES = (("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "bf16"),
         ("torch", "bf16"), ("torch", "fp16"), ("tensorrt", "fp16"))
METHODS = ("flexit", "global", "feu", "deltaedit")


def _editors(preset: str) -> dict[str, Callable[..., Any]]:
    """method -> run(backend, precision) returning the edit's result (same inputs every time)."""
    from editrt.config import DeltaEditConfig, FEUConfig, FlexITConfig, GlobalDirectionConfig
    from editrt.methods.flexit import FlexIT
    from editrt.methods.stylespace import FEU, DeltaEdit, GlobalDirection
    from editrt.models.clip import load_clip
    from editrt.models.stylegan2 import StyleGAN2

    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    g_cfg = GlobalDirectionConfig.preset(preset)
    G = StyleGAN2.load(g_cfg.generator, random_init=True, seed=0)
    clip = load_clip(g_cfg.clip_model, random_init=True, seed=0)
    fs3 = F.normalize(torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(3)),
                      dim=1)
    shared: dict[str, Any] = {}

    def style(cls, cfg, call):
        def run(backend, precision):
            ed = cls(config=cfg, random_init=True, fs3=fs3, backend=backend, precision=precision,
                     **({"stats": shared["stats"]} if "stats" in shared else {}))
            shared.setdefault("stats", ed.stats)
            code = ed.codes_from_seeds([1, 2])
            return call(ed, code)
        return run

    def flexit(backend, precision):
        ed = FlexIT(FlexITConfig.preset(preset), random_init=True, backend=backend, precision=precision)
        return ed.edit(image, "a cat", "a dog", steps=2, seed=0, snapshots=[])

    return {
        "flexit": flexit,
        "global": style(GlobalDirection, g_cfg, lambda ed, c: ed.edit(c, "a smiling face", alpha=[2.0], beta=0.05)),
        "feu": style(FEU, FEUConfig.preset(preset), lambda ed, c: ed.edit(c, "a smiling face", alpha=[2.0])),
        "deltaedit": style(DeltaEdit, DeltaEditConfig.preset(preset),
                           lambda ed, c: ed.edit(c, "smiling face", strength=[1.0])),
    }


def measure(preset: str = "tiny", methods=METHODS, cases=CASES) -> list[dict[str, Any]]:
    runs = _editors(preset)
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        ref = runs[method]("torch", "fp32").images01
        log.info("%s torch fp32: %.1f s", method, time.perf_counter() - t0)
        for backend, precision in cases:
            row: dict[str, Any] = {"method": method, "preset": preset, "backend": backend, "precision": precision}
            t0 = time.perf_counter()
            try:
                got = runs[method](backend, precision).images01
            except EditrtError as exc:
                row.update(status="unavailable", error=type(exc).__name__, reason=str(exc).splitlines()[0][:300])
            else:
                d = (got - ref).abs()
                row.update(status="ok", max_abs=float(d.max()), mean_abs=float(d.mean()))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            log.info("%s", row)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", help="config preset of every method (tiny: the random tiny networks)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--store", type=Path, help="artifact store (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="editrt-drift-") as tmp:
        os.environ["EDITRT_ENGINES"] = str(args.store or tmp)
        rows = measure(args.preset, args.methods)
    for r in rows:
        tail = (f"max {r['max_abs']:.2e}  mean {r['mean_abs']:.2e}" if r["status"] == "ok"
                else f"{r['status']}: {r['error']}")
        print(f"{r['method']:<10} {r['backend']:<12} {r['precision']:<5} {tail}")
    if args.json:
        from editrt.files import atomic_write_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, {"schema": "editrt-drift/1", "torch": torch.__version__,
                                      "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
