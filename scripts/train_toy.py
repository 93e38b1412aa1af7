#!/usr/bin/env python
"""Train the toy world's networks (tiny VQGAN, tiny CLIP, classifier, toy StyleGAN2) on the CPU, seeded.

    python scripts/train_toy.py                       # the first three -> sdk/editrt/data/toy/
    python scripts/train_toy.py --only clip --clip-steps 800 -o /tmp/toy
    python scripts/train_toy.py --only stylegan2      # generator + its encoder (needs the classifier)
    python scripts/train_toy.py --only style-files    # stats, relevance, FEU corpus, Delta Mapper

The toy StyleGAN2 is trained after the classifier, which scores its samples. ``style-files``
then makes the direction methods' files from it with editrt's own commands (``editrt relevance``,
``editrt corpus build``, ``editrt train deltaedit``); the manifest records each command line.

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
    p.add_argument("--only", nargs="+", choices=["vqgan", "clip", "classifier", "stylegan2", "style-files"],
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
    p.add_argument("--stylegan2-steps", type=int, default=3200)
    p.add_argument("--stylegan2-batch", type=int, default=32)
    p.add_argument("--stylegan2-kl-weight", type=float, default=1e-3)
    p.add_argument("--stylegan2-stop-at", type=int, default=1500,
                   help="end after this many steps of the --stylegan2-steps cosine schedule (the shipped "
                        "generator is the step-1500 point of the 3200-step schedule: the shared CPU's budget)")
    p.add_argument("--style-files", nargs="+", choices=["fs3", "corpus", "mapper"], default=["fs3", "corpus", "mapper"],
                   help="with --only style-files: which of them to (re)make (default all three)")
    p.add_argument("--relevance-images", type=int, default=100,
                   help="images per channel of the relevance matrix (the reference's 100; 10 leaves rows noisy)")
    p.add_argument("--stats-samples", type=int, default=10_000)
    p.add_argument("--corpus-samples", type=int, default=1000)
    p.add_argument("--mapper-steps", type=int, default=2000)
    p.add_argument("--mapper-samples", type=int, default=10_000)
    p.add_argument("--mapper-pairs", choices=["random", "local"], default="random",
                   help="`editrt train deltaedit --pairs` (random, the shipped mapper: the reference's independent pairs)")
    p.add_argument("--mapper-pair-sigma", type=float, default=0.5, help="`--pair-sigma` of local pairs")
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
    if "stylegan2" in args.only:
        from editrt.toy import stylegan as S

        G, E, rep = S.train_toy_stylegan2(args.stylegan2_steps, args.stylegan2_batch,
                                          kl_weight=args.stylegan2_kl_weight, seed=args.seed, progress=progress,
                                          checkpoint=out / (M.STYLEGAN2_FILE + ".checkpoint"),
                                          stop_at=args.stylegan2_stop_at)
        save_stylegan2(G, E, rep, out, record, seed=args.seed)
        (out / (M.STYLEGAN2_FILE + ".checkpoint")).unlink(missing_ok=True)
    if "style-files" in args.only:
        _style_files(args, out, record)
    print(f"done in {time.perf_counter() - t_all:.0f} s -> {out}")
    return 0


def save_stylegan2(G, E, rep: dict, out: Path, record, *, seed: int = 0) -> None:
    """Score the generator's samples with the toy classifier, write generator + encoder, record both."""
    from editrt.toy import models as M
    from editrt.toy import stylegan as S
    from editrt.toy import train as T

    classifier = M.load_classifier(out / M.CLASSIFIER_FILE if (out / M.CLASSIFIER_FILE).is_file() else None)
    rep["samples"] = {f"psi_{psi}": S.sample_recognition(G, classifier, psi=psi, seed=seed) for psi in (1.0, 0.7)}
    T.save_safetensors(G.state_dict(), out / M.STYLEGAN2_FILE)
    record("stylegan2", M.STYLEGAN2_FILE, rep)
    T.save_safetensors(E.state_dict(), out / M.ENCODER_FILE)
    record("stylegan2_encoder", M.ENCODER_FILE, {"trained_with": "stylegan2", "seed": seed})


def _style_files(args, out: Path, record) -> None:
    """Channel statistics + relevance matrix, FEU corpus and Delta Mapper of the toy generator,
    each made by the public ``editrt`` command (run in-process, one thread)."""
    import shutil
    import tempfile

    from editrt.cli import main as editrt_main
    from editrt.toy import models as M

    with tempfile.TemporaryDirectory() as tmp:
        store, home = Path(tmp) / "store", Path(tmp) / "home"
        for key, file in (("stylegan2/toy.safetensors", M.STYLEGAN2_FILE), ("clip/tiny.safetensors", M.CLIP_FILE)):
            (store / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / file, store / key)
        os.environ["EDITRT_HOME"] = str(home)  # the stats cache lands here; copied out below
        net = ["--generator", "toy", "--clip", "tiny", "--weights-dir", str(store)]
        quiet = ["--no-progress"] if args.no_progress else []
        commands = {
            "fs3": ["relevance", *net, "--images", str(args.relevance_images), "--stats-samples",
                    str(args.stats_samples), "-o", str(out / M.FS3_FILE), *quiet],
            "corpus": ["corpus", "build", "--samples", str(args.corpus_samples), "--seed", str(args.seed), *net,
                       "-o", str(out / M.CORPUS_FILE), *quiet],
            "mapper": ["train", "deltaedit", *net, "--steps", str(args.mapper_steps), "--samples",
                       str(args.mapper_samples), "--seed", str(args.seed),
                       *(["--pairs", "local", "--pair-sigma", str(args.mapper_pair_sigma)]
                         if args.mapper_pairs == "local" else []), "--report",
                       str(Path(tmp) / "mapper.json"), "-o", str(out / M.MAPPER_FILE), *quiet],
        }
        for name, argv in commands.items():
            if name not in args.style_files:
                continue
            t0 = time.perf_counter()
            rc = editrt_main(argv)
            if rc != 0:
                raise SystemExit(f"`editrt {' '.join(argv)}` failed with exit code {rc}")
            shown = " ".join(a if not a.startswith(tmp) and not a.startswith(str(out)) else Path(a).name for a in argv)
            rep = {"command": f"editrt {shown}", "seconds": time.perf_counter() - t0}
            if name == "fs3":
                (stats,) = (home / "styleclip" / "stats").glob("*.safetensors")
                shutil.copyfile(stats, out / M.STATS_FILE)
                record("stylegan2_stats", M.STATS_FILE, {"made_by": "editrt relevance (channel statistics)",
                                                         "samples": args.stats_samples})
            if name == "mapper":
                m = json.loads((Path(tmp) / "mapper.json").read_text())
                rep.update(validation=m["validation"], steps_per_second=m["steps_per_second"],
                           parameters=m["parameters"], mapper_config=m["settings"]["mapper_config"])
                (out / (M.MAPPER_FILE[: -len(".safetensors")] + ".codes.safetensors")).unlink(missing_ok=True)
            record({"fs3": "stylegan2_fs3", "corpus": "stylegan2_corpus", "mapper": "deltaedit_mapper"}[name],
                   {"fs3": M.FS3_FILE, "corpus": M.CORPUS_FILE, "mapper": M.MAPPER_FILE}[name], rep)


if __name__ == "__main__":
    sys.exit(main())
