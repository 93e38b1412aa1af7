"""Direction edits end to end (text -> image), by stage, editrt vs the reference code's way.

Methods: StyleCLIP global directions, StyleCLIP-FEU and DeltaEdit (sdk/editrt/methods/). Each
is timed twice on the same networks, inputs and prompts:

- ``editrt``: the SDK's own pieces in the order ``edit()`` runs them (text encoding of the 79
  templates of both prompts in one batch, direction on the device, one batched synthesis of the
  sources and all edits), then the uint8 conversion of the outputs;
- ``reference``: the reference code's loops (StyleCLIP global_torch/StyleCLIP.py, DeltaEdit scripts/inference.py): ``zeroshot_classifier``
  encodes one class per call; ``GetBoundary``/``SplitS`` and DeltaEdit's channel mask run in
  numpy on the CPU; ``GenerateImg`` / DeltaEdit's inference synthesise one image per call
  (DeltaEdit also runs its mapper per image, batch_size=1); each image converted to uint8 on its
  own. FEU has no public code: its reference row uses the same StyleCLIP loops around the same
  retrieval and SVM. DeltaEdit's reference reads the source images' CLIP features from disk
  (``examples/cspace_img_feat.npy``), so they are computed before timing there.

Stages: text encoding, retrieval + SVM (FEU), direction (relevance, beta, per-layer scaling),
source synthesis + CLIP embedding (DeltaEdit, editrt only: the reference reads the features, and
synthesises its source in "synthesis"), mapper (DeltaEdit), synthesis, decode (uint8).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

import harness

log = logging.getLogger(__name__)

PROMPTS = {"global": ("smiling face", "face"), "feu": ("smiling face", None), "deltaedit": ("smiling face", "face")}
METHODS = ("global", "feu", "deltaedit")


@dataclasses.dataclass
class StyleBench:
    preset: str  # "tiny" or "paper"
    device: torch.device
    budget: harness.Budget
    batch: int = 2
    seed: int = 0


def _import_method(method: str):
    """The editor class, or a reason why it cannot be benchmarked."""
    module, cls = {"global": ("editrt.methods.stylespace.global_direction", "GlobalDirection"),
                   "feu": ("editrt.methods.stylespace.feu", "FEU"),
                   "deltaedit": ("editrt.methods.stylespace.deltaedit", "DeltaEdit")}[method]
    try:
        return getattr(importlib.import_module(module), cls), None
    except (ImportError, AttributeError) as exc:
        return None, f"{module}.{cls} is not available ({type(exc).__name__}: {exc})"


def _config(method: str, preset: str):
    from editrt import config as C

    cls = {"global": C.GlobalDirectionConfig, "feu": C.FEUConfig, "deltaedit": C.DeltaEditConfig}[method]
    return cls.preset("tiny") if preset == "tiny" else cls()


def build_editor(method: str, bench: StyleBench):
    cls, reason = _import_method(method)
    if cls is None:
        raise RuntimeError(reason)
    cfg = _config(method, bench.preset)
    return cls(config=cfg, random_init=True, seed=bench.seed, device=bench.device)


# -- shared pieces --------------------------------------------------------------------------------

def _uint8_each(images: torch.Tensor) -> list[np.ndarray]:
    """The reference's per-image conversion (torch GenerateImg: (x+1)*255/2, clamp, uint8, to host)."""
    return [((x + 1) * 255 / 2).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy() for x in images]


def _uint8_batch(images: torch.Tensor) -> torch.Tensor:
    from editrt.methods.stylespace import to_uint8_truncate

    return to_uint8_truncate(images).cpu()


def _classifier_per_class(clip, classnames: list[str]) -> torch.Tensor:
    """``zeroshot_classifier``: one encoder call per class (79 prompts each)."""
    from editrt.methods.stylespace import IMAGENET_TEMPLATES

    rows = []
    for c in classnames:
        tokens = clip.tokenize([t.format(c) for t in IMAGENET_TEMPLATES])
        emb = F.normalize(clip.encode_text(tokens).float(), dim=-1).mean(0)
        rows.append(F.normalize(emb, dim=-1).cpu())
    return torch.stack(rows)


def _numpy_boundary(fs3: np.ndarray, dt: np.ndarray, beta: float, std_conv: np.ndarray) -> np.ndarray:
    """GetBoundary + SplitS in numpy: r = fs3 @ dt, |r| < beta -> 0, r /= max|r|, times code_std
    per conv channel (tRGB layers get no delta). Returns the conv-view delta [C_conv]."""
    r = fs3 @ dt
    r[np.abs(r) < beta] = 0
    m = np.abs(r).max()
    return (r / m if m > 0 else r) * std_conv


def _synthesize_one_by_one(generator, codes) -> torch.Tensor:
    return torch.cat([generator.synthesize(codes[i:i + 1]) for i in range(codes.batch_size)])


# -- per method -----------------------------------------------------------------------------------

def _editrt_fn(method: str, ed, code, alpha: float) -> Callable[[Callable[[str], None]], Any]:
    from editrt.models.stylegan2 import StyleCode as SC

    target, neutral = PROMPTS[method]

    @torch.no_grad()
    def run(mark):
        if method == "global":
            dt = ed.direction(target, neutral)
            mark("text encoding")
            ds, _ = ed.mapper.delta(dt, ed.mapper.resolve_beta(dt, None, ed.config))
            mark("direction")
            edited = code + alpha * ds
        elif method == "feu":
            from editrt.methods.stylespace.feu import svm_direction
            from editrt.methods.stylespace.global_direction import DirectionMapper
            from editrt.methods.stylespace import template_embeddings

            query = template_embeddings(ed.clip, [target])[0]
            mark("text encoding")
            pos, neg = ed.corpus.retrieve(query, ed.config.k)
            emb = ed.corpus.embeddings
            dt, _ = svm_direction(emb[pos], emb[neg], C=ed.config.svm_c, kind=ed.config.svm,
                                  max_iter=ed.config.svm_max_iter)
            mark("retrieval + SVM")
            mapper = DirectionMapper(ed.fs3, ed.stats)
            ds, _ = mapper.delta(dt, mapper.resolve_beta(dt, None, ed.config))
            mark("direction")
            edited = code + alpha * ds
        else:
            dt, keep, _ = ed.text_condition(target, neutral)
            mark("text encoding")
            # as DeltaEdit.edit: the source is synthesised once, for the CLIP condition and the output
            source = ed.synthesize(code)
            c_img = ed.clip_image_embedding(source)
            mark("source synthesis + CLIP embedding")
            cond = torch.cat([c_img, dt.expand(c_img.shape[0], -1)], dim=1)
            delta = ed.engines.run(ed.mapper, code.conv_view().float(), cond).masked_fill(~keep, 0.0)
            mark("mapper")
            images = torch.cat([source, ed.synthesize(code.add_conv_delta(delta, alpha))])
            mark("synthesis")
        if method != "deltaedit":
            images = ed.synthesize(SC.cat([code, edited]))
            mark("synthesis")
        out = _uint8_batch(images)
        mark("decode")
        return out
    return run


def _reference_fn(method: str, ed, code, alpha: float) -> Callable[[Callable[[str], None]], Any]:
    target, neutral = PROMPTS[method]
    fs3 = ed.fs3.detach().cpu().numpy()
    std_conv = ed.stats.std.conv_view()[0].detach().cpu().numpy() if method != "deltaedit" else None
    src_clip = None
    if method == "deltaedit":  # the reference reads these from examples/cspace_img_feat.npy
        with torch.no_grad():
            src_clip = ed.clip_image_embedding(ed.synthesize(code))

    def boundary_delta(dt_np: np.ndarray) -> torch.Tensor:
        beta = ed.config.beta if ed.config.beta is not None else ed.config.auto_beta_fallback
        return torch.from_numpy(_numpy_boundary(fs3, dt_np, beta, std_conv)).float().to(ed.device)[None]

    @torch.no_grad()
    def run(mark):
        if method in ("global", "feu"):
            if method == "global":
                emb = _classifier_per_class(ed.clip, [target, neutral])
                dt = emb[0] - emb[1]
                dt = (dt / dt.norm()).numpy()
                mark("text encoding")
            else:
                from editrt.methods.stylespace.feu import svm_direction

                query = _classifier_per_class(ed.clip, [target])[0]
                mark("text encoding")
                sims = ed.corpus.embeddings.float().cpu().numpy() @ query.numpy()
                order = np.argsort(-sims)
                k = ed.config.k
                emb = ed.corpus.embeddings
                n, _ = svm_direction(emb[torch.from_numpy(order[:k].copy())], emb[torch.from_numpy(order[-k:].copy())],
                                     C=ed.config.svm_c, kind=ed.config.svm, max_iter=ed.config.svm_max_iter)
                dt = n.cpu().numpy()
                mark("retrieval + SVM")
            delta = boundary_delta(dt)
            mark("direction")
            edited = code.add_conv_delta(delta, alpha)
            images = torch.cat([_synthesize_one_by_one(ed.generator, code),
                                _synthesize_one_by_one(ed.generator, edited)])
            mark("synthesis")
        else:
            emb = _classifier_per_class(ed.clip, [target, neutral])
            dt_raw = (emb[0] - emb[1]).numpy()
            select = np.abs(fs3 @ dt_raw) < ed.config.threshold
            dt = dt_raw / max(np.linalg.norm(dt_raw), 1e-5)
            mark("text encoding")
            outs = []
            for i in range(code.batch_size):  # batch_size=1, as scripts/inference.py
                cond = torch.cat([src_clip[i:i + 1], torch.from_numpy(dt).float().to(ed.device)[None]], dim=1)
                ds = ed.mapper(code[i:i + 1].conv_view().float(), cond)
                ds[:, torch.from_numpy(select).to(ds.device)] = 0
                outs.append(code[i:i + 1].add_conv_delta(ds, alpha))
            mark("mapper")
            images = torch.cat([_synthesize_one_by_one(ed.generator, code)]
                               + [ed.generator.synthesize(o) for o in outs])
            mark("synthesis")
        out = _uint8_each(images)
        mark("decode")
        return out
    return run


def run_style_suite(bench: StyleBench, methods=METHODS, progress: Callable[[str], None] = lambda s: None) -> list[dict]:
    rows: list[dict] = []
    for method in methods:
        group = f"{method} {bench.preset} edit (B={bench.batch}, 1 alpha)"
        common = dict(suite="edits", device=bench.device, backend="torch", precision="fp32", batch=bench.batch)
        cls, reason = _import_method(method)
        if cls is None:
            rows.append(harness.skipped_row(group=group, name="editrt", reason=reason, **common))
            continue
        progress(f"edits: {method} (building random networks)")
        try:
            ed = build_editor(method, bench)
            code = ed.codes_from_seeds(list(range(bench.batch)))
            alpha = float(getattr(ed.config, "alpha", getattr(ed.config, "strength", 1.0)))
            _ = ed.fs3, ed.stats  # one-time precomputation stays out of the timing
        except Exception as exc:  # noqa: BLE001
            log.exception("building %s failed", method)
            rows.append(harness.skipped_row(group=group, name="editrt", status="error",
                                            reason=f"{type(exc).__name__}: {exc}", **common))
            continue
        for variant, make, baseline in (("reference", _reference_fn, None), ("editrt", _editrt_fn, "reference")):
            progress(f"edits: {method} {variant}")
            try:
                staged = harness.measure_stages(make(method, ed, code, alpha), budget=bench.budget,
                                                device=bench.device)
            except Exception as exc:  # noqa: BLE001
                log.exception("%s %s failed", method, variant)
                rows.append(harness.skipped_row(group=group, name=variant, status="error", baseline=baseline,
                                                reason=f"{type(exc).__name__}: {exc}", **common))
                continue
            rows.append(harness.row_from_timing(staged.total, group=group, name=variant, items=bench.batch,
                                                baseline=baseline, variant=variant, **common))
            for stage, times in staged.stages.items():
                t = harness.Timing(wall_ms=times, device_ms=None, warmup_calls=staged.total.warmup_calls,
                                   peak_cuda_bytes=None, peak_rss_bytes=None)
                row = harness.row_from_timing(t, group=group, name=f"{variant} | {stage}", stage=stage,
                                              variant=variant, items=bench.batch, **common)
                row["time_source"] = "cuda_events" if bench.device.type == "cuda" else "wall"
                rows.append(row)
    return rows
