"""FlexIT step ladder: the loop as the reference code runs it, then each optimisation in turn.

    python benchmarks/flexit_loop.py --preset tiny          # standalone
    python benchmarks/run.py --suites flexit                # same rows inside the full harness

Rungs, cumulative (each row adds one change to the row above; the ratio is against row 0):

 0 reference          ``FlexitEditer.step`` as coded (FlexIT src/flexit_editer.py), on the SDK's networks:
                      weights NOT frozen (``signal.backward(retain_graph=True)`` accumulates
                      parameter grads every step), the latent kept on the CPU and moved to the
                      device in ``decode``, the 1e-6 noise in the l2,1 term written as
                      ``pow(2).sum(1).sqrt()``, LPIPS through the lpips package's own forward
                      (the input image's VGG features recomputed every step), each augmented
                      view made one at a time with torchvision (then one encoder call per net,
                      as ``CLIP.encode_image(ncuts=n)``), fp32, six ``.item()`` syncs for the
                      history and one for ``‖z0‖``.
 1 +frozen weights    parameters ``requires_grad=False``; gradient of z only, no retained graph.
 2 +cached input      the input image's LPIPS features normalised once (the reference already
                      computes the input's CLIP embedding once, so nothing else to cache).
 3 editrt step        ``FlexIT.step`` with the reference's per-view torchvision augmentations,
                      torch ops, noise and fp32: the SDK's own bookkeeping (batched per-image
                      losses, no history syncs) on the same work.
 4 +batched views     every view of every image as one affine warp (``gpu_augment``).
 5 +fused kernels     editrt._C l2,1 and LPIPS kernels (when built).
 6 +zero-safe l2,1    no 1e-6 noise (the op's gradient is zero-safe at z = z0).
 7 +channels_last     (off by default on CPU)
 8 +autocast bf16     (off by default on CPU)
 9 +torch.compile     ``compile="cuda_graph"`` on CUDA; ``"compile"`` on CPU, only with
                      ``--flexit-compile`` (inductor needs minutes on a small CPU).

The row whose settings equal ``FlexITConfig()``'s defaults on the device is marked ``default``.
Per edit, the reference runs ``steps + 1`` forward/backward passes (its output is the decode
*before* the last update) and editrt ``steps`` passes plus one decode; both are timed by stage.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from editrt import ops  # noqa: E402
from editrt.config import FlexITConfig  # noqa: E402
from editrt.methods import augment  # noqa: E402
from editrt.methods.flexit import FlexIT  # noqa: E402

log = logging.getLogger(__name__)

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
SAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "sdk" / "editrt" / "data" / "sample.png"


# -- the reference loop ---------------------------------------------------------------------------

class ReferenceLoop:
    """``FlexitEditer`` (single image, SGD, ``znorm_loss='l1l2'``) on editrt's networks.

    ``frozen``: parameters without grad (rung 1). ``cached``: the input's LPIPS features
    normalised once (rung 2). Otherwise every detail follows the reference (see module doc).
    """

    def __init__(self, clip, vqgan, lpips, config: FlexITConfig, device: torch.device, *,
                 frozen: bool = False, cached: bool = False, seed: int = 0):
        self.clip, self.vqgan, self.lpips = clip, vqgan, lpips
        self.cfg, self.device = config, torch.device(device)
        self.frozen, self.cached = frozen, cached
        self.gen = torch.Generator().manual_seed(seed)
        self.history: dict[str, list[float]] = {}

    @torch.no_grad()
    def prepare(self, image0: torch.Tensor, source: str, target: str) -> None:
        """image0: [1, 3, S, S] in [0, 1] on the device."""
        if image0.shape[0] != 1:
            raise ValueError("the reference loop edits one image at a time")
        cfg = self.cfg
        self.img0 = image0
        self.z0 = self.vqgan.encode(image0).cpu().detach()  # the reference keeps z0 on the CPU
        e_i0 = [e[0] for e in self.clip.embed_image(image0)]
        e_s, e_t = [], []
        for net in self.clip:
            both = net.embed_text([source, target])
            e_s.append(both[0])
            e_t.append(both[1])
        self.e_s, self.e_t = e_s, e_t
        self.tgt = [cfg.target_coef * t + cfg.image_coef * i - cfg.source_coef * s
                    for s, t, i in zip(e_s, e_t, e_i0)]
        self.lpips_target = self.lpips.prepare_target(image0) if self.cached else None
        self.z = self.z0.clone().detach().requires_grad_(True)
        self.z.retain_grad()
        self.history = {}

    def _encode_views(self, net, dec: torch.Tensor) -> torch.Tensor:
        """``CLIP.encode_image(dec, ncuts=n)``: views one by one, one encoder call, mean of the
        normalised embeddings (not renormalised)."""
        cfg = self.cfg
        views = augment.reference_views(dec, cfg.n_augment, net.image_size, degrees=cfg.rotation_degrees,
                                        scale=cfg.crop_scale, ratio=cfg.crop_ratio, hflip=cfg.hflip,
                                        generator=self.gen)
        emb = net.encode_image(net.normalize(views))
        return (emb / emb.norm(dim=-1, keepdim=True)).mean(0)

    def step(self) -> torch.Tensor:
        """One reference step; returns the decoded image of this step (before the update)."""
        cfg, z, z0 = self.cfg, self.z, self.z0
        noise = 1e-6 * torch.randn(z.shape, generator=self.gen, dtype=z.dtype)
        loss_z = (z - z0 + noise).pow(2).sum(1).sqrt().sum() / z0.pow(2).sum(1).sqrt().sum().detach()
        dec = self.vqgan.decode_clamped(z.to(self.device))
        if self.lpips_target is None:  # lpips.LPIPS(dec, img0, normalize=True): both trunks run
            loss_lpips = self.lpips.lp(dec, self.img0, normalize=True).mean()
        else:
            loss_lpips = self.lpips.distance(dec, self.lpips_target).mean()
        preds = [self._encode_views(net, dec) for net in self.clip]
        loss_clip = -torch.stack([p @ t for p, t in zip(preds, self.tgt)]).mean()
        signal = loss_clip + cfg.lpips_weight * loss_lpips.to(loss_clip.device) \
            + cfg.latent_weight * loss_z.to(loss_clip.device)
        if self.frozen:
            (grad,) = torch.autograd.grad(signal, z)
        else:
            signal.backward(retain_graph=True)
            grad = z.grad
        self._log(loss=signal.item(), loss_z=loss_z.item(), loss_clip=loss_clip.item(),
                  loss_lpips=loss_lpips.item(),
                  sim_source=torch.stack([p @ s for p, s in zip(preds, self.e_s)]).mean().item(),
                  sim_target=torch.stack([p @ t for p, t in zip(preds, self.e_t)]).mean().item())
        g = grad[0]
        if cfg.normalize_gradient:
            g = g / g.norm(p=2)
        self.z = z.detach() - cfg.lr * g * z0.norm().item()
        self.z.requires_grad_(True)
        self.z.retain_grad()
        return dec

    def _log(self, **values: float) -> None:
        for k, v in values.items():
            self.history.setdefault(k, []).append(v)


@contextlib.contextmanager
def unfrozen(*modules: torch.nn.Module):
    """Parameters trainable inside the block (as the reference leaves them); grads dropped and
    parameters frozen again on exit, so the shared networks are clean for the next rung."""
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None


# -- the ladder -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Rung:
    name: str
    description: str
    reference: dict[str, bool] | None = None  # ReferenceLoop flags, or None for FlexIT.step
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # cumulative FlexITConfig changes
    kernels: bool = False


def ladder(device: torch.device, *, cpu_compile: bool = False) -> list[tuple[Rung, str | None]]:
    """The rungs in order, each with a skip reason (None: runs) for this device."""
    cuda = device.type == "cuda"
    base = dict(gpu_augment=False, reference_noise=True, autocast="off", channels_last="off", compile="off")
    rungs = [
        Rung("reference", "FlexitEditer.step as coded: unfrozen weights, input LPIPS features "
             "recomputed, views one by one, fp32, 1e-6 noise", reference=dict(frozen=False, cached=False)),
        Rung("+frozen weights", "no parameter grads, no retained graph", reference=dict(frozen=True, cached=False)),
        Rung("+cached input features", "input LPIPS features normalised once",
             reference=dict(frozen=True, cached=True)),
        Rung("editrt step", "FlexIT.step, per-view torchvision augmentations, torch ops", config=dict(base)),
        Rung("+batched views", "all views as one affine warp", config={**base, "gpu_augment": True}),
        Rung("+fused kernels", "editrt._C l2,1 and LPIPS", config={**base, "gpu_augment": True}, kernels=True),
        Rung("+zero-safe l2,1", "no 1e-6 noise", config={**base, "gpu_augment": True, "reference_noise": False},
             kernels=True),
        Rung("+channels_last", "NHWC activations",
             config={**base, "gpu_augment": True, "reference_noise": False, "channels_last": "on"}, kernels=True),
        Rung("+autocast bf16", "bf16 autocast, fp32 latent",
             config={**base, "gpu_augment": True, "reference_noise": False, "channels_last": "on",
                     "autocast": "bf16"}, kernels=True),
        Rung("+torch.compile" + (" (CUDA graph)" if cuda else ""), "compiled loss",
             config={**base, "gpu_augment": True, "reference_noise": False, "channels_last": "on",
                     "autocast": "bf16", "compile": "cuda_graph" if cuda else "compile"}, kernels=True),
    ]
    out = []
    for r in rungs:
        skip = None
        if r.config.get("compile") == "compile" and not cpu_compile:
            skip = "torch.compile on CPU is off by default (inductor compiles for minutes): pass --flexit-compile"
        if r.kernels and not ops.kernel_available(device.type):
            skip = f"editrt._C has no {device.type} kernels in this build (see `editrt doctor`)"
        out.append((r, skip))
    return out


def _effective(cfg: FlexITConfig, device: torch.device) -> tuple:
    cuda = device.type == "cuda"
    amp = {"auto": "bf16" if cuda else "off"}.get(cfg.autocast, cfg.autocast)
    cl = {"auto": "on" if cuda else "off"}.get(cfg.channels_last, cfg.channels_last)
    return (cfg.gpu_augment, cfg.reference_noise, amp, cl, cfg.compile)


def is_default(rung: Rung, base_cfg: FlexITConfig, device: torch.device) -> bool:
    if rung.reference is not None:
        return False
    default = FlexITConfig()
    kernels_default = default.use_kernels and ops.kernel_available(device.type)
    return (_effective(base_cfg.replace(**rung.config), device) == _effective(default, device)
            and rung.kernels == kernels_default)


def _restore_layout(*modules: torch.nn.Module) -> None:
    for m in modules:
        m.to(memory_format=torch.contiguous_format)


@dataclasses.dataclass
class FlexITBench:
    """Settings of the FlexIT suite."""

    config: FlexITConfig
    device: torch.device
    budget: harness.Budget
    edit_budget: harness.Budget
    batches: tuple[int, ...] = (1,)
    edit_steps: int | None = None  # None: config.steps
    cpu_compile: bool = False
    seed: int = 0
    label: str = "tiny"


def load_models(cfg: FlexITConfig, device: torch.device, seed: int = 0) -> dict[str, Any]:
    from editrt.models.clip import load_ensemble
    from editrt.models.lpips import load_lpips
    from editrt.models.vqgan import load_vqgan

    models = {"clip": load_ensemble(cfg.clip_models, random_init=True, seed=seed),
              "vqgan": load_vqgan(cfg.vqgan, random_init=True, seed=seed),
              "lpips": load_lpips(cfg.lpips_net, random_init=True, seed=seed)}
    for m in models.values():
        m.eval().requires_grad_(False).to(device)
    return models


def input_image(cfg: FlexITConfig, device: torch.device, batch: int = 1) -> torch.Tensor:
    """The packaged sample image at the config's size, repeated ``batch`` times: [B, 3, S, S]."""
    from editrt import imageio
    from editrt.models.preprocess import resize_center_crop

    x = imageio.as_image_tensor(imageio.load_image(SAMPLE_IMAGE))
    s = cfg.image_size
    x = resize_center_crop(x, s).clamp(0, 1)
    return x.unsqueeze(0).repeat(batch, 1, 1, 1).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_flexit_suite(bench: FlexITBench, progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """All FlexIT rows: the step ladder (batch 1), batched editrt steps, and whole edits by stage."""
    cfg, device = bench.config, bench.device
    models = load_models(cfg, device, bench.seed)
    clip, vqgan, lp = models["clip"], models["vqgan"], models["lpips"]
    step_group = f"flexit {bench.label} step"
    common = dict(suite="flexit", device=device)
    params = {"clip_models": list(cfg.clip_models), "vqgan": cfg.vqgan, "image_size": cfg.image_size,
              "n_augment": cfg.n_augment}
    rows: list[dict[str, Any]] = []
    image1 = input_image(cfg, device, 1)
    base_name = None
    fastest: tuple[float, Rung] | None = None
    chosen: Rung | None = None

    for k, (rung, skip) in enumerate(ladder(device, cpu_compile=bench.cpu_compile)):
        name = f"{k} {rung.name}"
        extra = dict(backend="torch", precision="bf16" if rung.config.get("autocast") == "bf16" else "fp32",
                     batch=1, variant=rung.name, note=rung.description,
                     default=is_default(rung, cfg, device), params=params)
        if skip:
            rows.append(harness.skipped_row(group=step_group, name=name, reason=skip, baseline=base_name,
                                            **common, **extra))
            continue
        progress(f"flexit step: {name}")
        try:
            timing = _time_rung(rung, bench, models, image1)
        except Exception as exc:  # noqa: BLE001 - one failing rung must not sink the run
            log.exception("rung %s failed", name)
            rows.append(harness.skipped_row(group=step_group, name=name, status="error",
                                            reason=f"{type(exc).__name__}: {exc}", baseline=base_name,
                                            **common, **extra))
            continue
        rows.append(harness.row_from_timing(timing, group=step_group, name=name, items=1,
                                            baseline=base_name, **common, **extra))
        base_name = base_name or name
        p50 = harness.primary_p50(rows[-1])
        if rung.reference is None and (fastest is None or p50 < fastest[0]):
            fastest = (p50, rung)
        if extra["default"]:
            chosen = rung
    # batched steps and whole edits use the device's default settings (what users get), or the
    # fastest editrt rung when the default one could not run
    chosen = chosen or (fastest[1] if fastest else None)
    which = "default" if chosen is not None and is_default(chosen, cfg, device) else "fastest"

    # several images in one batch, compared per image with the reference
    if chosen is not None:
        for b in bench.batches:
            if b == 1:
                continue
            rung = chosen
            progress(f"flexit step: batch {b}")
            imgs = input_image(cfg, device, b)
            try:
                timing = _time_rung(rung, bench, models, imgs)
                rows.append(harness.row_from_timing(
                    timing, group=step_group, name=f"editrt {which} ({rung.name}) B={b}", items=b,
                    baseline=rows[0]["name"], backend="torch", batch=b, variant=rung.name,
                    precision="bf16" if rung.config.get("autocast") == "bf16" else "fp32",
                    params=params, **common))
            except Exception as exc:  # noqa: BLE001
                rows.append(harness.skipped_row(group=step_group, name=f"editrt {which} B={b}", status="error",
                                                reason=f"{type(exc).__name__}: {exc}", **common))
    _restore_layout(clip, vqgan, lp)

    # whole edits, by stage
    steps = cfg.steps if bench.edit_steps is None else bench.edit_steps
    edit_group = f"flexit {bench.label} edit ({steps} steps)"
    progress(f"flexit edit: reference ({steps} steps)")
    rows += _edit_rows(edit_group, "reference", _reference_edit(models, cfg, device, image1, steps),
                       bench, None, params)
    best = chosen
    if best is not None:
        progress(f"flexit edit: editrt ({best.name})")
        rows += _edit_rows(edit_group, f"editrt ({best.name})", _sdk_edit(models, cfg, best, device, image1, steps),
                           bench, "reference", params)
        _restore_layout(clip, vqgan, lp)
    return rows


def _time_rung(rung: Rung, bench: FlexITBench, models: dict[str, Any], images: torch.Tensor) -> harness.Timing:
    cfg, device = bench.config, bench.device
    if rung.reference is not None:
        loop = ReferenceLoop(models["clip"], models["vqgan"], models["lpips"], cfg, device,
                             seed=bench.seed, **rung.reference)
        guard = contextlib.nullcontext() if rung.reference["frozen"] else \
            unfrozen(models["clip"], models["vqgan"], models["lpips"])
        with ops.use_kernels(False), guard:
            loop.prepare(images, SOURCE, TARGET)
            return harness.measure(loop.step, budget=bench.budget, device=device)
    flexit = FlexIT(cfg.replace(**rung.config), device=device, models=models)
    state = {"s": flexit.prepare(images, SOURCE, TARGET, seed=bench.seed)}

    def step() -> torch.Tensor:
        state["s"] = flexit.step(state["s"])
        return state["s"].z

    try:
        with ops.use_kernels(rung.kernels):
            return harness.measure(step, budget=bench.budget, device=device)
    finally:
        _restore_layout(models["clip"], models["vqgan"], models["lpips"])


def _reference_edit(models, cfg: FlexITConfig, device: torch.device, image: torch.Tensor, steps: int):
    def run(mark: Callable[[str], None]) -> torch.Tensor:
        loop = ReferenceLoop(models["clip"], models["vqgan"], models["lpips"], cfg, device)
        with ops.use_kernels(False), unfrozen(models["clip"], models["vqgan"], models["lpips"]):
            loop.prepare(image, SOURCE, TARGET)
            mark("prepare (encode, texts)")
            for _ in range(steps):
                loop.step()
            mark(f"{steps} steps")
            out = loop.step()  # the reference's output is this extra pass's decode
            mark("final pass (decode)")
        return out
    return run


def _sdk_edit(models, cfg: FlexITConfig, rung: Rung, device: torch.device, image: torch.Tensor, steps: int):
    flexit = FlexIT(cfg.replace(**rung.config), device=device, models=models)

    def run(mark: Callable[[str], None]) -> torch.Tensor:
        with ops.use_kernels(rung.kernels):
            state = flexit.prepare(image, SOURCE, TARGET)
            mark("prepare (encode, texts)")
            for _ in range(steps):
                state = flexit.step(state)
            mark(f"{steps} steps")
            out = flexit.decode(state.z)
            mark("final pass (decode)")
        return out
    return run


def _edit_rows(group: str, variant: str, fn, bench: FlexITBench, baseline: str | None,
               params: dict[str, Any]) -> list[dict[str, Any]]:
    common = dict(suite="flexit", device=bench.device, backend="torch", batch=1, variant=variant, params=params)
    try:
        staged = harness.measure_stages(fn, budget=bench.edit_budget, device=bench.device)
    except Exception as exc:  # noqa: BLE001
        log.exception("edit %s failed", variant)
        return [harness.skipped_row(group=group, name=variant, status="error",
                                    reason=f"{type(exc).__name__}: {exc}", **common)]
    out = [harness.row_from_timing(staged.total, group=group, name=variant, items=1, baseline=baseline, **common)]
    for stage, times in staged.stages.items():
        t = harness.Timing(wall_ms=times, device_ms=None, warmup_calls=staged.total.warmup_calls,
                           peak_cuda_bytes=None, peak_rss_bytes=None)
        row = harness.row_from_timing(t, group=group, name=f"{variant} | {stage}", stage=stage, items=1, **common)
        row["time_source"] = "cuda_events" if bench.device.type == "cuda" else "wall"
        out.append(row)
    return out


# -- presets and CLI ------------------------------------------------------------------------------

def preset_bench(preset: str, device: torch.device, *, quick: bool = False, cpu_compile: bool = False,
                 clip_models: tuple[str, ...] | None = None, n_augment: int | None = None,
                 edit_steps: int | None = None, batches: tuple[int, ...] | None = None) -> FlexITBench:
    """``tiny``: tiny random networks at 64 px; ``paper``: FlexIT's networks at 288 px (random
    weights), optionally with fewer CLIP nets / views so a CPU run stays short."""
    if preset == "tiny":
        cfg = FlexITConfig.preset("tiny")
        budget = harness.Budget(warmup=1, warmup_s=0.2, min_reps=3 if quick else 8, max_reps=50,
                                min_time_s=0.5 if quick else 2.0)
        edit_budget = harness.Budget(warmup=1, warmup_s=0.0, min_reps=2 if quick else 5, max_reps=20,
                                     min_time_s=0.0 if quick else 3.0)
        default_steps, default_batches = cfg.steps, (1, 2) if quick else (1, 2, 4)
    elif preset == "paper":
        cfg = FlexITConfig.preset("paper")
        cuda = device.type == "cuda"
        budget = harness.Budget(warmup=2 if cuda else 1, warmup_s=0.2, min_reps=10 if cuda else (2 if quick else 3),
                                max_reps=200, min_time_s=3.0 if cuda else 0.0)
        edit_budget = harness.Budget(warmup=1, warmup_s=0.0, min_reps=3 if cuda else 1, max_reps=10, min_time_s=0.0)
        default_steps = cfg.steps if cuda and not quick else 2
        default_batches = (1, 4) if cuda else (1,)
    else:
        raise ValueError(f"unknown preset {preset!r}: use tiny or paper")
    changes = {}
    if clip_models:
        changes["clip_models"] = tuple(clip_models)
    if n_augment:
        changes["n_augment"] = n_augment
    if changes:
        cfg = cfg.replace(**changes)
    label = preset if not changes else f"{preset}-reduced"
    return FlexITBench(config=cfg, device=device, budget=budget, edit_budget=edit_budget,
                       batches=batches or default_batches,
                       edit_steps=default_steps if edit_steps is None else edit_steps,
                       cpu_compile=cpu_compile, label=label)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--flexit-compile", action="store_true", help="include torch.compile on CPU")
    ap.add_argument("--clip-models", nargs="+", default=None, help="override the CLIP networks")
    ap.add_argument("--n-augment", type=int, default=None)
    ap.add_argument("--edit-steps", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as a result document")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bench = preset_bench(args.preset, device, quick=args.quick, cpu_compile=args.flexit_compile,
                         clip_models=tuple(args.clip_models) if args.clip_models else None,
                         n_augment=args.n_augment, edit_steps=args.edit_steps)
    rows = run_flexit_suite(bench, progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    doc = harness.make_document(rows, environment=harness.collect_environment(),
                                settings={"preset": args.preset, "device": str(device), "quick": args.quick,
                                          "suites": ["flexit"], "budget": bench.budget.to_dict(),
                                          "flexit_config": bench.config.to_dict()})
    print(harness.format_table(doc))
    if args.json:
        harness.write_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
