#!/usr/bin/env python
"""Train the toy world's networks (tiny VQGAN, tiny CLIP, classifier) on the CPU, seeded.

    python scripts/train_toy.py                       # all three -> sdk/editrt/data/toy/
    python scripts/train_toy.py --only clip --clip-steps 800 -o /tmp/toy

The shipped weights were trained with the defaults, as two processes (``--only vqgan`` and
``--only clip classifier``, one thread each) whose files and manifest entries were then merged.

Each model is written as soon as it is trained (safetensors, atomically) and recorded in
manifest.json with its settings, held-out scores, wall time and sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "sdk" / "editrt" / "data" / "toy"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--only", nargs="+", choices=["vqgan", "clip", "classifier"],
                   default=["vqgan", "clip", "classifier"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared CPU; run --only vqgan and --only clip "
                        "classifier as two processes into two folders to use 2 cores)")
    p.add_argument("--vqgan-steps", type=int, default=1000)
    p.add_argument("--vqgan-batch", type=int, default=16)
    p.add_argument("--clip-steps", type=int, default=1200)
    p.add_argument("--clip-batch", type=int, default=64)
    p.add_argument("--classifier-steps", type=int, default=1600)
    p.add_argument("--classifier-batch", type=int, default=64)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from editrt.files import atomic_write_json
    from editrt.toy import models as M
    from editrt.toy import train as T

    torch.set_num_threads(args.threads)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / M.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update({"generator": "scripts/train_toy.py", "torch": torch.__version__})
    progress = not args.no_progress
    t_all = time.perf_counter()

    def record(name: str, file: str, report: dict) -> None:
        path = out / file
        report = {**report, "file": file, "sha256": _sha256(path), "bytes": path.stat().st_size}
        manifest.setdefault("models", {})[name] = report
        atomic_write_json(manifest_path, manifest)
        print(f"{name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in report.items() if k not in ("sha256",)), flush=True)

    if "vqgan" in args.only:
        model, rep = T.train_vqgan(args.vqgan_steps, args.vqgan_batch, seed=args.seed, progress=progress)
        T.save_safetensors(model.state_dict(), out / M.VQGAN_FILE, half=True)
        record("vqgan", M.VQGAN_FILE, rep)
    if "clip" in args.only:
        vqgan = None
        if (out / M.VQGAN_FILE).is_file():  # CLIP also learns the decoder's renderings (see train_clip)
            from editrt.models.vqgan import load_vqgan

            vqgan = load_vqgan("tiny", path=out / M.VQGAN_FILE)
        model, rep = T.train_clip(args.clip_steps, args.clip_batch, seed=args.seed, progress=progress,
                                  vqgan=vqgan)
        T.save_safetensors(model.state_dict(), out / M.CLIP_FILE, half=True)
        record("clip", M.CLIP_FILE, rep)
    if "classifier" in args.only:
        model, rep = T.train_classifier(args.classifier_steps, args.classifier_batch, seed=args.seed,
                                        progress=progress)
        T.save_safetensors(model.state_dict(), out / M.CLASSIFIER_FILE)
        record("classifier", M.CLASSIFIER_FILE, rep)
    print(f"done in {time.perf_counter() - t_all:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
