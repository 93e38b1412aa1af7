"""CPU speed at the sizes users run: FlexIT at the paper configuration, 1024 px direction edits.

    python benchmarks/cpu_paper.py flexit --out /tmp/flexit.json     # ~15 min on 2 shared cores
    python benchmarks/cpu_paper.py edits  --out /tmp/edits.json      # ~20 min (exports ONNX once)
    python benchmarks/cpu_paper.py text   --out /tmp/text.json       # new-prompt text encoding
    python benchmarks/cpu_paper.py batch  --out /tmp/batch.json      # per-image time at batch 1/2/4/8
    python benchmarks/cpu_paper.py synthesis --synthesis-generators toy ffhq-256 ffhq-512 ffhq-1024 \
        --out /tmp/synthesis.json                                    # torch vs onnxruntime by size
    python benchmarks/cpu_paper.py flexit --rounds 0 --warmup 0 --drift-steps 160 \\
        --variants "editrt fp32" --save-trajectories /tmp/fp32.pt --out /tmp/t1.json  # one per core,
    python benchmarks/cpu_paper.py drift /tmp/fp32.pt /tmp/bf16.pt --out /tmp/drift.json  # then compare
    python benchmarks/cpu_paper.py merge /tmp/flexit.json /tmp/edits.json /tmp/batch.json \\
        --out benchmarks/results/cpu-paper.json
    python scripts/update_perf_table.py                               # README table from the JSON

Every comparison is interleaved: each round runs every variant once (one FlexIT step, or one
whole edit), so load from other processes on a shared machine falls on all variants alike;
rows report the median over rounds and the ratio against the reference loop of the same round
set. Networks have seeded random weights of the real architectures (no pretrained weights
offline); speed does not depend on the weight values.

Sections:
  flexit  FlexIT paper preset (RN50x4 + ViT-B/32 + RN50 at 288 px, 8 views; and 1 view): the
          reference loop (benchmarks/flexit_loop.py rung 0) vs editrt fp32 with one joint
          backward (before) and per-network backward (after), the ResNet towers' BatchNorms
          unfolded (before) and folded (after), bf16 autocast, channels_last;
          peak RSS per variant; per network forward and backward at fp32 / bf16 / bf16 +
          channels_last; the drift of a bf16 edit against fp32 (same seed, same views).
  edits   text -> edited 1024 px image for global directions, FEU and DeltaEdit, batch 1 and 4,
          torch and onnxruntime (with --ort; its CPU arena on and off), a new prompt (text cache
          cleared) and a cached one, by stage, against the reference loops of benchmarks/style_edits.py.
  text    the 2 x 79 templated prompts of a new prompt pair: reference vs editrt, interleaved;
          with --ort also onnxruntime: a fixed 77-token graph (rows padded) vs the dynamic
          token-axis graph (padded, and trimmed as template_embeddings runs it).
  batch   per-image time at batch 1, 2, 4, 8: StyleGAN2 synthesis (256 and 1024 px) raw and
          chunked at the default batch, FlexIT steps (tiny preset, and paper batch 2), and
          direction edits.
  synthesis  StyleGAN2 synthesis at batch 1, torch vs onnxruntime (arena on and off), per generator
          size, the first onnxruntime use (export + check into an empty store) and each variant's
          memory in a fresh process: what backend="auto" picks.
  drift   the drift between FlexIT trajectories saved by separate flexit runs (a full 160-step
          edit per variant, each process on its own core).
  compile FlexIT with torch.compile (inductor) on CPU: the first step (compile included) with a
          cold and then a warm compiled-artifact cache (TORCHINDUCTOR_CACHE_DIR), each in a fresh
          process, and the steady-state step against eager, interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import harness  # noqa: E402

log = logging.getLogger("benchmarks.cpu_paper")


def _progress(msg: str) -> None:
    print(f"... [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """(wall ms, peak RSS bytes during the call, result); CUDA work is waited for."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    with harness.RSSSampler() as rss:
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        ms = (time.perf_counter() - t0) * 1e3
    return ms, rss.peak, out


def interleaved(variants: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
                progress: Callable[[str], None] = _progress) -> dict[str, harness.Timing]:
    """Run every variant once per round (after ``warmup`` untimed rounds); per-variant Timing."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    peaks: dict[str, int] = {k: 0 for k in variants}
    for r in range(warmup + rounds):
        for name, fn in variants.items():
            progress(f"round {r + 1}/{warmup + rounds}: {name}")
            ms, peak, _ = timed(fn)
            gc.collect()
            peaks[name] = max(peaks[name], peak or 0)
            if r >= warmup:
                times[name].append(ms)
    return {k: harness.Timing(wall_ms=v, device_ms=None, warmup_calls=warmup, peak_cuda_bytes=None,
                              peak_rss_bytes=peaks[k] or None) for k, v in times.items()}


# -- FlexIT ---------------------------------------------------------------------------------------

def _set_layout(models: dict[str, Any], channels_last: bool) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in models.values():
        m.to(memory_format=fmt)


def _flexit_variant(models, cfg, image, *, autocast: str, channels_last: bool, per_network: bool,
                    vit_bf16: bool = False, seed: int = 0):
    """(step, record): ``step()`` runs one FlexIT step with these switches (state carried over);
    ``record`` collects each step's decoded image and metrics, and ``decode()`` the output.
    ``vit_bf16``: the ViT towers follow autocast too (FlexIT keeps them fp32 on CPU)."""
    import flexit_loop
    from editrt.methods.flexit import FlexIT

    ed = FlexIT(cfg.replace(autocast=autocast, channels_last="off", compile="off"), models=models)
    ed.per_network_backward = per_network
    if vit_bf16:
        ed._fp32_towers = set()
    state = {"s": None}
    record: dict[str, Any] = {"images": [], "metrics": [], "seconds": []}

    def step():
        _set_layout(models, channels_last)
        if state["s"] is None:
            state["s"] = ed.prepare(image, flexit_loop.SOURCE, flexit_loop.TARGET, seed=seed)
        t0 = time.perf_counter()
        state["s"] = ed.step(state["s"])
        record["seconds"].append(time.perf_counter() - t0)
        record["images"].append(state["s"].image)
        record["metrics"].append({m: float(v[0]) for m, v in state["s"].metrics.items()})
        return state["s"]

    def decode():
        _set_layout(models, channels_last)
        return ed.decode(state["s"].z)
    record["decode"] = decode
    return step, record


def _reference_variant(models, cfg, image):
    import flexit_loop

    loop = flexit_loop.ReferenceLoop(models["clip"], models["vqgan"], models["lpips"], cfg, torch.device("cpu"))
    prepared = {"done": False}

    def step():
        from editrt import ops

        _set_layout(models, False)
        with ops.use_kernels(False), flexit_loop.unfrozen(models["clip"], models["vqgan"], models["lpips"]):
            if not prepared["done"]:
                loop.prepare(image, flexit_loop.SOURCE, flexit_loop.TARGET)
                prepared["done"] = True
            return loop.step()
    return step


def cfg_label(cfg) -> str:
    return "tiny" if cfg.vqgan == "tiny" else "paper"


class Variant(NamedTuple):
    autocast: str
    channels_last: bool
    per_network: bool  # per-network backward (False: one joint backward)
    vit_bf16: bool = False  # the ViT towers follow autocast too (FlexIT keeps them fp32 on CPU)
    batchnorm_folded: bool = True  # as FlexIT does to the ResNet towers it loads itself


FLEXIT_VARIANTS = {
    "editrt fp32, joint backward": Variant("off", False, False),
    "editrt fp32, BatchNorm not folded": Variant("off", False, True, batchnorm_folded=False),
    "editrt fp32": Variant("off", False, True),
    "editrt fp32 channels_last": Variant("off", True, True),
    "editrt bf16": Variant("bf16", False, True),
    "editrt bf16 channels_last": Variant("bf16", True, True),
    "editrt bf16 channels_last, ViT in bf16": Variant("bf16", True, True, vit_bf16=True),
}


def folded_ensemble(clip):
    """The ensemble FlexIT builds when it loads the nets itself: each ResNet tower a copy with its
    BatchNorms folded into the convs (``ClipNet.fold_batchnorm``); the others shared."""
    import copy

    from editrt.models.clip import ClipEnsemble

    def fold(net):
        if not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()):
            return net
        net = copy.deepcopy(net)
        net.fold_batchnorm()
        return net
    return ClipEnsemble([fold(n) for n in clip])


def run_flexit_steps(models, cfg, rounds: int, label: str, variants=FLEXIT_VARIANTS,
                     drift_steps: int = 0, warmup: int = 1,
                     save_trajectories: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Interleaved step timings (rows) and the drift between variants (findings).

    Every editrt variant starts from the same latent with the same seed, hence the same random
    views, so after the timed rounds their trajectories can be compared directly; the fp32 and
    bf16 ones are then continued to ``drift_steps`` steps in total (``rounds=0``: no timed rounds,
    the trajectories only). ``save_trajectories``: also write them to this file."""
    import flexit_loop

    image = flexit_loop.input_image(cfg, torch.device("cpu"), 1)
    fns, records = {"reference": _reference_variant(models, cfg, image)}, {}
    folded = ({**models, "clip": folded_ensemble(models["clip"])}
              if any(v.batchnorm_folded for v in variants.values()) else models)
    for name, v in variants.items():
        fns[name], records[name] = _flexit_variant(folded if v.batchnorm_folded else models, cfg, image,
                                                   autocast=v.autocast, channels_last=v.channels_last,
                                                   per_network=v.per_network, vit_bf16=v.vit_bf16)
    timings = interleaved(fns, rounds, warmup=warmup) if rounds else {}
    group = f"flexit {cfg_label(cfg)} step ({label})"
    params = {"clip_models": list(cfg.clip_models), "image_size": cfg.image_size, "n_augment": cfg.n_augment}
    rows = []
    for name, t in timings.items():
        amp = variants[name].autocast if name in variants else "off"
        rows.append(harness.row_from_timing(t, suite="flexit", group=group, name=name, items=1, backend="torch",
                                            precision="bf16" if amp == "bf16" else "fp32", batch=1, params=params,
                                            baseline=None if name == "reference" else "reference"))
    for name in DRIFT_CONTINUED:
        while name in records and len(records[name]["images"]) < drift_steps:
            _progress(f"drift: {name} step {len(records[name]['images']) + 1}/{drift_steps}")
            fns[name]()
    for rec in records.values():
        rec["final"] = rec.pop("decode")() if rec["images"] else None
    _set_layout(folded, False)
    _set_layout(models, False)
    if save_trajectories:
        save_trajectory_file(records, cfg, label, save_trajectories)
    return rows, drift_findings(records, cfg, label)


# the trajectories continued to --drift-steps; the fp32 channels_last one differs from fp32 by
# float summation order only: the round-off floor that the bf16 drift is read against
DRIFT_CONTINUED = ("editrt fp32", "editrt bf16", "editrt bf16 channels_last", "editrt fp32 channels_last")
DRIFT_PAIRS = (("editrt bf16", "editrt fp32"), ("editrt bf16 channels_last", "editrt fp32"),
               ("editrt bf16 channels_last", "editrt fp32 channels_last"),
               ("editrt bf16 channels_last, ViT in bf16", "editrt fp32"),
               ("editrt fp32 channels_last", "editrt fp32"),
               ("editrt fp32", "editrt fp32, joint backward"),
               ("editrt fp32", "editrt fp32, BatchNorm not folded"))


def drift_findings(records: dict[str, dict], cfg, label: str) -> list[dict[str, Any]]:
    """The drift of every pair of :data:`DRIFT_PAIRS` with steps in ``records`` (with
    ``rounds=0`` a variant outside :data:`DRIFT_CONTINUED` ran none)."""
    ran = {k for k, r in records.items() if r["images"]}
    findings = [_drift(records[a], records[b], f"{a} vs {b}", cfg, label)
                for a, b in DRIFT_PAIRS if a in ran and b in ran]
    return [f for f in findings if _informative(f)]


def save_trajectory_file(records: dict[str, dict], cfg, label: str, path: Path) -> None:
    """Each variant's per-step decodes, metrics and step seconds, and its final decode: the
    ``drift`` section compares trajectories that ran in separate processes (one per core)."""
    data = {"config": cfg.to_dict(), "label": label,
            "records": {k: {"images": torch.stack(r["images"]) if r["images"] else None, "metrics": r["metrics"],
                            "seconds": r["seconds"], "final": r["final"]} for k, r in records.items()}}
    tmp = Path(f"{path}.partial")
    torch.save(data, tmp)
    tmp.replace(path)


def drift_section(args) -> tuple[list[dict], dict[str, Any]]:
    """Findings ({"drift": [...]}) between trajectories saved by ``flexit --save-trajectories``
    (same preset, label and start); no timing rows."""
    from editrt.config import FlexITConfig

    records, configs = {}, set()
    for p in args.inputs:
        data = torch.load(p, weights_only=False)
        configs.add((json.dumps(data["config"], sort_keys=True), data["label"]))
        for name, r in data["records"].items():
            if r["images"] is None:
                continue
            if name in records:
                raise SystemExit(f"{p}: variant {name!r} is in more than one trajectory file")
            records[name] = {**r, "images": list(r["images"])}
    if len(configs) != 1:
        raise SystemExit("drift: the trajectory files come from different configurations or labels")
    cfg_json, label = configs.pop()
    cfg = FlexITConfig.from_dict(json.loads(cfg_json))
    findings = {"drift": drift_findings(records, cfg, label),
                "trajectory_seconds": {k: sum(r["seconds"]) for k, r in records.items()}}
    if args.score_views:
        findings["final_scores_fp32"] = score_final_images(records, cfg, args.score_views)
        verdict = bf16_verdict(findings["drift"], findings["final_scores_fp32"])
        if verdict:
            findings["auto_bf16"] = verdict
    return [], findings


BF16, FP32, FP32_CL = "editrt bf16 channels_last", "editrt fp32", "editrt fp32 channels_last"


def bf16_verdict(drift: list[dict], scores: dict[str, dict]) -> dict[str, Any] | None:
    """Whether bf16 (channels_last, the ViT in fp32: what ``autocast="bf16"`` runs on CPU) meets
    the bound of ``editrt.methods.flexit.CPU_BF16_DRIFT_FACTOR`` against fp32's own spread
    (fp32 channels_last vs fp32); None without those trajectories."""
    from editrt.methods.flexit import CPU_BF16_DRIFT_FACTOR, CPU_BF16_MIN_GAIN

    by_name = {f["name"]: f for f in drift}
    bf16, spread = by_name.get(f"{BF16} vs {FP32}"), by_name.get(f"{FP32_CL} vs {FP32}")
    if bf16 is None or spread is None or not {BF16, FP32, FP32_CL} <= set(scores):
        return None
    image_ratio = bf16["final_image_mean_abs"] / spread["final_image_mean_abs"]
    loss_excess = scores[BF16]["loss"] - scores[FP32]["loss"]
    loss_spread = abs(scores[FP32_CL]["loss"] - scores[FP32]["loss"])
    gain_ratio = bf16["sim_target_gain"] / bf16["sim_target_gain_reference"]
    checks = {"image": image_ratio <= CPU_BF16_DRIFT_FACTOR,
              "loss": loss_excess <= CPU_BF16_DRIFT_FACTOR * loss_spread,
              "target_gain": gain_ratio >= CPU_BF16_MIN_GAIN}
    return {"steps": bf16["steps"], "image_drift": bf16["final_image_mean_abs"],
            "fp32_image_spread": spread["final_image_mean_abs"], "image_ratio": image_ratio,
            "loss_excess_fp32_scored": loss_excess, "fp32_loss_spread": loss_spread,
            "target_gain_ratio": gain_ratio, "factor": CPU_BF16_DRIFT_FACTOR, "min_gain": CPU_BF16_MIN_GAIN,
            "checks": checks, "within_bound": all(checks.values())}


def score_final_images(records: dict[str, dict], cfg, n_views: int, seed: int = 1234) -> dict[str, dict]:
    """Every trajectory's final image scored the same way, in fp32 with ``n_views`` fixed views
    per CLIP net: a bf16 run's own metrics are bf16 evaluations, so its final loss cannot be read
    against fp32's. ``loss`` = the CLIP term + lpips_weight * LPIPS of the final image +
    latent_weight * the last recorded l2,1 term (fp32 in every run; one update before the image)."""
    import flexit_loop
    import torch.nn.functional as F
    from editrt.methods.flexit import FlexIT

    cpu = torch.device("cpu")
    models = flexit_loop.load_models(cfg, cpu)  # seeded: the weights the trajectories ran with
    models = {**models, "clip": folded_ensemble(models["clip"])}
    ed = FlexIT(cfg.replace(autocast="off", channels_last="off", compile="off", n_augment=n_views), models=models)
    tg = ed.prepare(flexit_loop.input_image(cfg, cpu, 1), flexit_loop.SOURCE, flexit_loop.TARGET, seed=0).targets
    view_inputs = ed._view_inputs(1, torch.Generator().manual_seed(seed))  # the same views for every image
    scores = {}
    with torch.no_grad():
        for name, r in records.items():
            image = r["final"].float()
            terms = [float((F.normalize(ed._view_embeddings(net, image, vin), dim=-1).mean(0) * point[0]).sum())
                     for net, vin, point in zip(ed.clip, view_inputs, tg.points)]
            clip, lp = -sum(terms) / len(terms), float(ed.lpips.distance(image, tg.lpips_target)[0])
            latent = r["metrics"][-1]["latent"]
            scores[name] = {"loss": clip + cfg.lpips_weight * lp + cfg.latent_weight * latent, "clip": clip,
                            "lpips": lp, "latent": latent, "views_per_net": n_views}
    return scores


def _informative(finding: dict[str, Any]) -> bool:
    """A drift over one step compares the decodes of the shared start only (step k's image is
    the decode of the latent before update k): say nothing rather than a trivial zero."""
    return finding.get("steps", 0) >= 2


def _drift(run: dict, ref: dict, name: str, cfg, label: str) -> dict[str, Any]:
    """Difference of two trajectories from the same start: decoded images per step and at the
    end (mean/max abs in [0, 1] units, PSNR in dB), final losses of both."""
    n = min(len(run["images"]), len(ref["images"]))
    per_step = [float((a - b).abs().mean()) for a, b in zip(run["images"][:n], ref["images"][:n])]
    final, final_ref = (run["final"], ref["final"]) if len(run["images"]) == len(ref["images"]) else \
        (run["images"][n - 1], ref["images"][n - 1])
    diff = (final.float() - final_ref.float()).abs()
    mse = max(float(diff.pow(2).mean()), 1e-20)
    keys = ("loss", "clip", "lpips", "latent", "sim_target")
    last, last_ref = run["metrics"][n - 1], ref["metrics"][n - 1]
    return {"name": name, "flexit": f"{cfg_label(cfg)}, {label}", "steps": n,
            "final_image_mean_abs": float(diff.mean()), "final_image_max_abs": float(diff.max()),
            "final_image_psnr_db": 10 * torch.log10(torch.tensor(1.0 / mse)).item(),
            "mean_abs_per_step": per_step,
            "final_losses": {k: last[k] for k in keys}, "final_losses_reference": {k: last_ref[k] for k in keys},
            "loss_abs_diff": abs(last["loss"] - last_ref["loss"]),
            "sim_target_gain": last["sim_target"] - run["metrics"][0]["sim_target"],
            "sim_target_gain_reference": last_ref["sim_target"] - ref["metrics"][0]["sim_target"]}


def _network_passes(models, cfg, image):
    """Per network: (forward fn returning a scalar, input leaf) at the sizes of one paper step."""
    from editrt.methods import augment

    gen = torch.Generator().manual_seed(0)
    z = models["vqgan"].encode(image).detach()
    tgt = models["lpips"].prepare_target(image)
    out = {f"VQGAN decoder ({cfg.image_size} px)": (lambda x: models["vqgan"].decode_clamped(x).float().mean(), z),
           f"LPIPS-VGG ({cfg.image_size} px)": (lambda x: models["lpips"].distance(x, tgt).float().sum(), image)}
    for net in models["clip"]:
        th = augment.sample_thetas(1, cfg.n_augment, cfg.image_size, cfg.image_size, degrees=cfg.rotation_degrees,
                                   scale=cfg.crop_scale, ratio=cfg.crop_ratio, hflip=cfg.hflip, generator=gen)

        def f(x, net=net, th=th):
            return net.encode_image(net.normalize(augment.warp(x, th, net.image_size))).float().sum()
        out[f"CLIP {net.name} ({cfg.n_augment} views, {net.image_size} px)"] = (f, image)
    return out


def run_flexit_networks(models, cfg, rounds: int) -> list[dict]:
    """Forward and backward (input gradient only, as FlexIT) per network, fp32 / bf16 / bf16+NHWC."""
    image = __import__("flexit_loop").input_image(cfg, torch.device("cpu"), 1)
    settings = {"fp32": (None, False), "bf16": (torch.bfloat16, False), "bf16 channels_last": (torch.bfloat16, True)}
    rows = []
    for net_name, (fn, leaf0) in _network_passes(models, cfg, image).items():
        fwd = {k: [] for k in settings}
        bwd = {k: [] for k in settings}
        for r in range(rounds):
            for sname, (dtype, cl) in settings.items():
                _progress(f"networks: {net_name} {sname} round {r + 1}")
                _set_layout(models, cl)
                leaf = leaf0.clone().requires_grad_(True)
                x = leaf.contiguous(memory_format=torch.channels_last) if cl else leaf
                ctx = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
                t0 = time.perf_counter()
                with ctx:
                    y = fn(x)
                t1 = time.perf_counter()
                torch.autograd.grad(y, leaf)
                t2 = time.perf_counter()
                fwd[sname].append((t1 - t0) * 1e3)  # no warm-up: the step rounds ran every network
                bwd[sname].append((t2 - t1) * 1e3)
        _set_layout(models, False)
        for sname in settings:
            for part, vals in (("forward", fwd[sname]), ("backward", bwd[sname])):
                t = harness.Timing(wall_ms=vals, device_ms=None, warmup_calls=1, peak_cuda_bytes=None,
                                   peak_rss_bytes=None)
                rows.append(harness.row_from_timing(
                    t, suite="flexit", group=f"flexit {cfg_label(cfg)} network {part}: {net_name}", name=sname, items=1,
                    backend="torch", precision="bf16" if "bf16" in sname else "fp32", stage=part,
                    baseline=None if sname == "fp32" else "fp32"))
    return rows


def flexit_section(args, progress=_progress) -> tuple[list[dict], dict[str, Any]]:
    """Rows (timings) and findings ({"drift": [...]}) of the FlexIT section."""
    import flexit_loop
    from editrt.config import FlexITConfig

    cfg = FlexITConfig.preset(args.preset)
    if args.n_augment:
        cfg = cfg.replace(n_augment=args.n_augment)
    progress(f"flexit: loading {args.preset} networks (random weights)")
    models = flexit_loop.load_models(cfg, torch.device("cpu"))
    variants = {k: v for k, v in FLEXIT_VARIANTS.items() if k in args.variants} if args.variants else FLEXIT_VARIANTS
    label = f"{cfg.n_augment} views per net" + (f", {args.label}" if args.label else "")
    rows, drift = run_flexit_steps(models, cfg, args.rounds, label, variants, drift_steps=args.drift_steps,
                                   warmup=args.warmup, save_trajectories=args.save_trajectories)
    if args.one_view and cfg.n_augment > 1:
        r1, d1 = run_flexit_steps(models, cfg.replace(n_augment=1), args.rounds, "1 view per net",
                                  {k: FLEXIT_VARIANTS[k] for k in ("editrt fp32", "editrt bf16")})
        rows, drift = rows + r1, drift + d1
    if args.networks:
        rows += run_flexit_networks(models, cfg, args.networks)
    return rows, {"drift": drift}


# -- torch.compile ----------------------------------------------------------------------------------

def compile_child(args) -> tuple[list[dict], dict[str, Any]]:
    """One process: the first compiled step (inductor compiles here), then eager vs compiled steps
    interleaved. The cache state (cold / warm) is the caller's TORCHINDUCTOR_CACHE_DIR."""
    import flexit_loop
    from editrt.config import FlexITConfig
    from editrt.methods.flexit import FlexIT

    cfg = FlexITConfig.preset(args.preset)
    models = flexit_loop.load_models(cfg, torch.device("cpu"))
    image = flexit_loop.input_image(cfg, torch.device("cpu"), 1)
    eager, _ = _flexit_variant(models, cfg, image, autocast="off", channels_last=False, per_network=True)
    ed = FlexIT(cfg.replace(autocast="off", channels_last="off", compile="compile"), models=models)
    state = {"s": ed.prepare(image, flexit_loop.SOURCE, flexit_loop.TARGET, seed=0)}
    t0 = time.perf_counter()
    state["s"] = ed.step(state["s"])
    first = time.perf_counter() - t0

    def compiled():
        state["s"] = ed.step(state["s"])
    timings = interleaved({"editrt fp32 eager": eager, "editrt fp32 compiled (inductor)": compiled},
                          args.rounds, warmup=1)
    group = f"flexit {args.preset} step, torch.compile ({args.compile_cache} cache)"
    rows = [harness.row_from_timing(t, suite="flexit", group=group, name=name, items=1, backend="torch",
                                    precision="fp32", batch=1, baseline=None if "eager" in name else "editrt fp32 eager")
            for name, t in timings.items()]
    return rows, {"compile": [{"preset": args.preset, "cache": args.compile_cache, "first_step_s": first}]}


def compile_section(args, progress=_progress) -> tuple[list[dict], dict[str, Any]]:
    """Cold then warm cache, each in a fresh process bounded by ``--compile-timeout``."""
    import subprocess
    import tempfile

    rows, found = [], []
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for state in ("cold", "warm"):
            out = Path(cache) / f"{state}.json"
            cmd = [sys.executable, __file__, "compile-child", "--out", str(out), "--preset", args.preset,
                   "--threads", str(args.threads), "--rounds", str(args.rounds), "--compile-cache", state]
            progress(f"compile: {args.preset}, {state} cache (limit {args.compile_timeout} s)")
            t0 = time.perf_counter()
            try:
                subprocess.run(cmd, env=env, check=True, timeout=args.compile_timeout)
            except subprocess.TimeoutExpired:
                found.append({"preset": args.preset, "cache": state, "first_step_s": None,
                              "timeout_s": args.compile_timeout,
                              "note": f"the compile did not finish within {args.compile_timeout} s"})
                rows.append(harness.skipped_row(suite="flexit", group=f"flexit {args.preset} step, torch.compile "
                                                f"({state} cache)", name="editrt fp32 compiled (inductor)",
                                                reason=found[-1]["note"]))
                break
            doc = harness.load_json(out)
            rows += doc["results"]
            found += [{**f, "process_s": time.perf_counter() - t0} for f in doc["findings"]["compile"]]
    return rows, {"compile": found}


# -- documents ------------------------------------------------------------------------------------

NOTE = "shared 2-core machine: other jobs ran at the same time; ratios come from interleaved rounds"


def write_doc(rows: list[dict], findings: dict[str, Any], path: Path, section: str, preset: str,
              argv: list[str], device: str = "cpu") -> Path:
    """A harness result document; ``findings`` (drift, decisions) go under ``doc["findings"]``."""
    doc = harness.make_document(rows, environment=harness.collect_environment(NOTE),
                                settings={"preset": preset, "device": device, "suites": [section], "argv": argv,
                                          "threads": torch.get_num_threads()})
    doc["findings"] = findings
    return harness.write_json(doc, path)


def _parts(path: Path, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """How a document's rows ran: its own settings, or the parts of an earlier merge."""
    if "parts" in doc["settings"]:
        return doc["settings"]["parts"]
    return [{"file": path.name, "settings": doc["settings"], "load_average": doc["environment"].get("load_average")}]


def merge(paths: list[Path], out: Path, note: str | None = None) -> Path:
    """One document from section files (an earlier merge among them keeps its parts); ``note``
    replaces the environment note (how the parts ran)."""
    docs = [harness.load_json(p) for p in paths]
    rows = [r for d in docs for r in d["results"]]
    suites = [s for d in docs for s in d["settings"].get("suites", [])]
    doc = harness.make_document(rows, environment=docs[-1]["environment"],
                                settings={"preset": "paper", "device": docs[-1]["settings"].get("device", "cpu"),
                                          "suites": suites,
                                          "parts": [part for p, d in zip(paths, docs) for part in _parts(p, d)]},
                                warnings=[w for d in docs for w in d.get("warnings", [])])
    findings: dict[str, Any] = {}
    for d in docs:
        for k, v in (d.get("findings") or {}).items():
            if k == "drift":  # every part's trajectories
                findings[k] = findings.get(k, []) + [f for f in v if _informative(f)]
            else:
                findings[k] = v
    doc["findings"] = findings
    if note:
        doc["environment"]["note"] = note
    return harness.write_json(doc, out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("section", choices=("flexit", "edits", "text", "batch", "synthesis", "compile", "compile-child",
                                       "drift", "merge"))
    ap.add_argument("inputs", nargs="*", type=Path,
                    help="merge: the section JSON files; drift: the files of flexit --save-trajectories")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                    help="tiny: the same code on tiny networks (smoke runs, tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="edits section: torch device (scripts/gpu_check.sh: cuda)")
    ap.add_argument("--rounds", type=int, default=3, help="timed interleaved rounds per comparison")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed rounds first (0 is fine when one call takes minutes: one-time costs are small)")
    ap.add_argument("--drift-steps", type=int, default=0,
                    help="continue the fp32 and bf16 FlexIT trajectories to this many steps for the drift")
    ap.add_argument("--save-trajectories", type=Path, default=None,
                    help="flexit: write every variant's per-step decodes and metrics here (for the drift section)")
    ap.add_argument("--score-views", type=int, default=0,
                    help="drift: also score every final image in fp32 with this many fixed views per CLIP net")
    ap.add_argument("--variants", nargs="+", default=None, choices=list(FLEXIT_VARIANTS),
                    help="editrt FlexIT variants to time (default: all)")
    ap.add_argument("--n-augment", type=int, default=None, help="views per CLIP net (default: the preset's)")
    ap.add_argument("--label", default=None,
                    help="flexit: appended to the step group's name (a second run with other variants)")
    ap.add_argument("--one-view", action="store_true", help="also time the 1-view-per-net configuration")
    ap.add_argument("--networks", type=int, default=0, help="rounds of the per-network forward/backward split")
    ap.add_argument("--engines-dir", type=Path, default=None, help="ONNX artifact store kept between runs")
    ap.add_argument("--note", default=None, help="merge: how the parts were run (replaces the environment note)")
    ap.add_argument("--compile-timeout", type=int, default=1800, help="compile: seconds allowed per process")
    ap.add_argument("--compile-cache", default="cold", help=argparse.SUPPRESS)  # compile-child: the cache state
    import cpu_paper_edits

    cpu_paper_edits.add_arguments(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.section == "merge":
        print(merge(args.inputs, args.out, note=args.note))
        return 0
    torch.set_num_threads(args.threads)
    if args.engines_dir:
        os.environ["EDITRT_ENGINES"] = str(args.engines_dir)  # the ONNX store of onnxruntime editors
    if args.section == "flexit":
        rows, findings = flexit_section(args)
    elif args.section == "drift":
        rows, findings = drift_section(args)
    elif args.section in ("compile", "compile-child"):
        rows, findings = (compile_section if args.section == "compile" else compile_child)(args)
    else:
        import cpu_paper_edits

        section = {"edits": cpu_paper_edits.edits_section, "text": cpu_paper_edits.text_section,
                   "batch": cpu_paper_edits.batch_section,
                   "synthesis": cpu_paper_edits.synthesis_backends_section}[args.section]
        rows, findings = section(args, _progress)
    path = write_doc(rows, findings, args.out, args.section, args.preset, sys.argv[1:] if argv is None else list(argv),
                     device=args.device)
    doc = harness.load_json(path)
    print(harness.format_table(doc))
    if findings:
        print(json.dumps(findings, indent=1, default=str)[:4000])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
