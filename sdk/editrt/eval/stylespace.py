"""The toy protocol of the StyleGAN2 direction methods (StyleCLIP global directions, StyleCLIP-FEU,
DeltaEdit), with FlexIT on the same queries.

Queries are FlexIT's toy queries (:func:`editrt.toy.world.toy_queries`: a source class changed
into a related class, a colour change within a shape or a shape change within a colour; 96 test and
96 dev). The source of a query is a sample of the toy generator that the toy classifier labels
as the source class with confidence >= 0.9 (``sources="generated"``), or the query's world image
inverted by the toy encoder (``sources="inverted"``). Texts are the class names: target
"red circle", neutral "orange circle" (global directions, DeltaEdit); FEU takes the target only.

Each method runs over a small grid of its strengths; each grid point is scored on every query:

- ``accuracy``: % of outputs the toy classifier labels as the target class (argmax over all 24);
- ``kept``: % of outputs whose *other* attribute is the source's (the shape under a colour edit,
  the colour under a shape edit; an unchanged output counts as kept);
- ``unedited``: % still labelled as the source class;
- ``lpips``: LPIPS-alex (random trunk, the toy world's metric) x 100 between output and source, 64 px.

Each method's reported setting is the grid point with the best dev accuracy (ties: lower LPIPS),
scored on the test queries, so the grid search does not fit the test half (FlexIT paper §4.1
splits its queries the same way). Baselines: no edit, and the best single S channel (the
channel with the largest |fs3 . dt|, moved along the sign of that product by alpha x its std).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .. import imageio
from ..errors import InputError
from ..methods.stylespace.directions import NoChannelOverBeta

log = logging.getLogger(__name__)

CONFIDENT = 0.9
SUMMARY_FILE = "stylespace_summary.json"
TABLE_FILE = "stylespace_table.md"
GRID_FILE = "stylespace_examples.png"
# Strength grids (the toy S-space's scale; the paper defaults alpha 4.1 / beta 0.15 / strength 1 are inside).
# Beta is on the toy's own scale too: the toy CLIP embeds in 64 dimensions (ViT-B/32: 512) and the toy
# generator's channels are entangled, so |fs3 . dt| of a channel unrelated to an edit is far larger than
# with FFHQ + ViT-B/32 (median ~0.3 over the toy's 416 channels for "orange circle" -> "red circle";
# beta 0.1 keeps 80% of them). The grid therefore reaches up to beta 0.5 (~25% of the channels kept).
BETAS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
GLOBAL_GRID = tuple({"alpha": a, "beta": b} for b in BETAS for a in (2.0, 4.1, 8.0, 12.0))
FEU_GRID = tuple({"alpha": a, "beta": b} for b in BETAS for a in (2.0, 4.1, 8.0, 12.0))
DELTAEDIT_GRID = tuple({"strength": s} for s in (1.0, 2.0, 4.0))
CHANNEL_GRID = tuple({"alpha": a} for a in (5.0, 10.0, 20.0))


@dataclasses.dataclass
class Source:
    """One query's input: its S code (batch 1), the image [3, 32, 32] in [0, 1], how it was made."""

    code: object
    image: torch.Tensor
    origin: str  # "generated:<pool index>" or "inverted"


def generated_sources(toy, queries, *, pool: int = 2048, seed: int = 0, batch: int = 128) -> list[Source]:
    """For each query a distinct confident generator sample of its source class (z from
    ``torch.Generator(seed)``); queries whose class has too few such samples fall back to inversion."""
    from ..toy import world

    G, gen = toy.generator, torch.Generator().manual_seed(seed)
    z = torch.randn(pool, G.style_dim, generator=gen)
    by_class: dict[int, list[int]] = {}
    with torch.no_grad():
        for start in range(0, pool, batch):
            img = _synth01(G, G.styles_from_w(G.mapping(z[start:start + batch])))
            p = toy.classifier(img).softmax(-1)
            conf, cls = p.max(1)
            for k in torch.nonzero(conf >= CONFIDENT).flatten().tolist():
                by_class.setdefault(int(cls[k]), []).append(start + k)
    used: dict[int, int] = {}
    out = []
    for q in queries:
        n = used.get(q.source_id, 0)
        used[q.source_id] = n + 1
        cands = by_class.get(q.source_id, [])
        if n < len(cands):
            i = cands[n]
            with torch.no_grad():
                code = G.styles_from_w(G.mapping(z[i:i + 1]))
            out.append(Source(code, _synth01(G, code)[0], f"generated:{i}"))
        else:
            out.append(inverted_source(toy, world.query_image(q)))
    return out


def inverted_source(toy, image01: torch.Tensor) -> Source:
    with torch.no_grad():
        code = toy.invert(image01[None])
        return Source(code, _synth01(toy.generator, code)[0], "inverted")


def _synth01(G, code) -> torch.Tensor:
    return ((G.synthesize(code) + 1) / 2).clamp(0, 1)


# -- methods ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Method:
    """A method under test: ``run(source, query, settings) -> [K, 3, H, W]`` in [0, 1], one per setting."""

    name: str
    grid: tuple[dict, ...]
    run: Callable[[Source, object, Sequence[dict]], torch.Tensor]
    batch: int = 1  # queries per call of ``run_batch`` (when set)
    run_batch: Callable[[list[Source], list], list[torch.Tensor]] | None = None


def _by_beta(settings: Sequence[dict], edit: Callable[[float, list[float]], torch.Tensor],
             source: torch.Tensor | None = None) -> torch.Tensor:
    """Group a grid by beta so each beta is one edit call over its alphas; outputs in grid order.

    A beta above every channel's |relevance| edits nothing (the methods raise NoChannelOverBeta there, as
    the reference would divide by zero): with ``source`` [3, H, W] those grid points output the
    source unchanged, as DeltaEdit's empty mask does.
    """
    out: dict[int, torch.Tensor] = {}
    for beta in dict.fromkeys(s["beta"] for s in settings):
        idx = [i for i, s in enumerate(settings) if s["beta"] == beta]
        try:
            imgs = edit(beta, [settings[i]["alpha"] for i in idx])
        except NoChannelOverBeta as err:
            if source is None:
                raise
            log.debug("beta %g: %s; the source is kept", beta, err)
            imgs = source[None].expand(len(idx), *source.shape)
        out.update({i: imgs[j] for j, i in enumerate(idx)})
    return torch.stack([out[i] for i in range(len(settings))])


def direction_methods(toy, *, include: Sequence[str] = ("global", "feu", "deltaedit", "channel", "none")) -> list[Method]:
    """The three direction methods and the two baselines on the toy world's shipped files."""
    from ..config import DeltaEditConfig, FEUConfig, GlobalDirectionConfig
    from ..methods.stylespace import DeltaEdit, FEU, GlobalDirection

    common = dict(generator=toy.generator, clip=toy.clip, fs3=toy.fs3, stats=toy.stats)
    gd = GlobalDirection(config=GlobalDirectionConfig(generator="toy", clip_model="tiny"), **common)
    methods = []
    to01 = lambda t: ((t + 1) / 2).clamp(0, 1)  # noqa: E731
    if "none" in include:
        methods.append(Method("no edit", ({},), lambda src, q, st: src.image[None]))
    if "channel" in include:
        stats_std = gd.stats.std.conv_view()[0]

        def single_channel(src, q, settings):
            dt = gd.direction(q.target, q.source)
            r = gd.fs3 @ dt
            c = int(r.abs().argmax())
            delta = torch.zeros(1, r.shape[0])
            delta[0, c] = torch.sign(r[c]) * stats_std[c]
            imgs, _, _ = gd._apply(src.code, delta, tuple(s["alpha"] for s in settings))
            return to01(imgs[0])

        methods.append(Method("best single channel", CHANNEL_GRID, single_channel))
    if "global" in include:
        methods.append(Method("StyleCLIP global", GLOBAL_GRID, lambda src, q, st: _by_beta(
            st, lambda b, alphas: to01(gd.edit(src.code, q.target, q.source, alpha=alphas, beta=b).images[0]),
            src.image)))
    if "feu" in include:
        feu = FEU(config=FEUConfig(generator="toy", clip_model="tiny"), corpus=toy.corpus, **common)
        methods.append(Method("StyleCLIP-FEU", FEU_GRID, lambda src, q, st: _by_beta(
            st, lambda b, alphas: to01(feu.edit(src.code, q.target, alpha=alphas, beta=b).images[0]),
            src.image)))
    if "deltaedit" in include:
        de = DeltaEdit(config=DeltaEditConfig(generator="toy", clip_model="tiny", mapper="toy"), mapper=toy.mapper,
                       **common)
        methods.append(Method("DeltaEdit", DELTAEDIT_GRID, lambda src, q, st: to01(de.edit(
            src.code, q.target, q.source, strength=[s["strength"] for s in st]).images[0])))
    return methods


def flexit_method(steps: int | None = None, seed: int = 0, batch: int = 8) -> Method:
    """FlexIT with the toy world's CLIP/VQGAN on the same (64 px upsampled) source images,
    ``batch`` queries per edit call (every loss is per image, so batching changes no result)."""
    from ..methods.flexit import FlexIT
    from ..toy.models import TOY_FLEXIT, load_toy_models

    cfg = TOY_FLEXIT if steps is None else TOY_FLEXIT.replace(steps=int(steps))
    editor = FlexIT(cfg, models=load_toy_models().flexit_models(), seed=seed)

    def run_batch(srcs, qs):
        x = F.interpolate(torch.stack([s.image for s in srcs]), size=(64, 64), mode="bilinear",
                          align_corners=False).clamp(0, 1)
        res = editor.edit(list(x), [q.source for q in qs], [q.target for q in qs], seed=seed)
        return [im[None].clamp(0, 1) for im in res.images]

    return Method("FlexIT", ({"steps": cfg.steps},), lambda src, q, st: run_batch([src], [q])[0], batch=batch,
                  run_batch=run_batch)


# -- scoring ------------------------------------------------------------------------------------

@torch.no_grad()
def score(toy, outputs: torch.Tensor, source: torch.Tensor, query) -> list[dict]:
    """Per output [K, 3, H, W] in [0, 1]: prediction, correctness, other attribute kept, LPIPS x100."""
    from ..toy import world

    up = lambda t: F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)  # noqa: E731
    outs = up(outputs.float())
    p = toy.classifier(outs).softmax(-1)
    pred = p.argmax(1).tolist()
    lp = toy.lpips_metric(outs * 2 - 1, up(source[None].float()).expand_as(outs) * 2 - 1).flatten() * 100
    keep = world.shape_of if query.kind == "colour" else world.colour_of
    return [{"pred": world.CLASSES[c], "correct": c == query.target_id, "unedited": c == query.source_id,
             "kept": keep(c) == keep(query.source_id), "p_target": float(p[k, query.target_id]),
             "lpips": float(lp[k])} for k, c in enumerate(pred)]


def _aggregate(rows: list[dict]) -> dict:
    if not rows:
        return {}
    mean = lambda key: 100.0 * sum(r[key] for r in rows) / len(rows)  # noqa: E731
    out = {"n": len(rows), "accuracy": mean("correct"), "kept": mean("kept"), "unedited": mean("unedited"),
           "lpips": sum(r["lpips"] for r in rows) / len(rows)}
    for kind in ("colour", "shape"):
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            out[f"accuracy_{kind}"] = 100.0 * sum(r["correct"] for r in sub) / len(sub)
            out[f"kept_{kind}"] = 100.0 * sum(r["kept"] for r in sub) / len(sub)
    return out


def evaluate_stylespace(toy, out_dir: str | Path, *, split: str = "test", limit: int | None = None,
                        sources: str = "generated", flexit: bool = True, flexit_steps: int | None = None,
                        methods: Sequence[str] = ("global", "feu", "deltaedit", "channel", "none"),
                        seed: int = 0, pool: int = 2048, progress: bool = True) -> dict:
    """Run the protocol; writes the summary JSON, a Markdown table and an example grid to ``out_dir``.

    split: the half the table reports ("test", "dev" or "all"); grid points are chosen on "dev"
    (on the reported queries themselves when split is "all"). pool: generator samples the sources
    are picked from. Returns the summary dict.
    """
    from tqdm.auto import tqdm

    from ..toy import world

    if split not in ("test", "dev", "all"):
        raise InputError(f"split must be test, dev or all, got {split!r}")
    if sources not in ("generated", "inverted"):
        raise InputError(f"sources must be 'generated' or 'inverted', got {sources!r}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    all_q = world.toy_queries(seed)
    pick = lambda test: [q for q in all_q if q.is_test == test][:limit]  # noqa: E731
    report_q = pick(True) if split == "test" else pick(False) if split == "dev" else all_q[:limit]
    select_q = pick(False) if split == "test" else report_q
    queries = list({q.query_id: q for q in [*select_q, *report_q]}.values())
    srcs = (generated_sources(toy, queries, pool=pool, seed=seed) if sources == "generated"
            else [inverted_source(toy, world.query_image(q)) for q in queries])
    src_of = {q.query_id: s for q, s in zip(queries, srcs)}
    runners = direction_methods(toy, include=methods)
    rows: dict[str, list[list[dict]]] = {}
    examples: dict[str, list[torch.Tensor]] = {}
    timings = {}
    flexit_ids = {q.query_id for q in report_q}
    if flexit:
        runners.append(flexit_method(flexit_steps, seed))
    for m in runners:
        tm = time.perf_counter()
        per_setting: list[list[dict]] = [[] for _ in m.grid]
        qs = [q for q in queries if m.name != "FlexIT" or q.query_id in flexit_ids]  # FlexIT has no grid to select
        chunks = [qs[i:i + m.batch] for i in range(0, len(qs), m.batch)]
        for chunk in tqdm(chunks, desc=m.name, unit=f"x{m.batch} query", disable=not progress):
            outs = (m.run_batch([src_of[q.query_id] for q in chunk], chunk) if m.run_batch is not None
                    else [m.run(src_of[q.query_id], q, m.grid) for q in chunk])
            for q, imgs in zip(chunk, outs):
                for k, r in enumerate(score(toy, imgs, src_of[q.query_id].image, q)):
                    per_setting[k].append({**r, "query_id": q.query_id, "kind": q.kind, "is_test": q.is_test})
                if len(examples.setdefault(m.name, [])) < 8 and q.query_id in flexit_ids:
                    examples[m.name].append(imgs)
        rows[m.name] = per_setting
        timings[m.name] = time.perf_counter() - tm
    select_ids, report_ids = {q.query_id for q in select_q}, {q.query_id for q in report_q}
    table = []
    for m in runners:
        per_setting = rows[m.name]
        sel = [_aggregate([r for r in rs if r["query_id"] in select_ids]) for rs in per_setting]
        best = max(range(len(m.grid)), key=lambda k: (sel[k].get("accuracy", 0.0), -sel[k].get("lpips", 0.0)))
        rep = _aggregate([r for r in per_setting[best] if r["query_id"] in report_ids])
        grid = [{"setting": m.grid[k], "select": sel[k],
                 "report": _aggregate([r for r in per_setting[k] if r["query_id"] in report_ids])}
                for k in range(len(m.grid))]
        table.append({"method": m.name, "setting": m.grid[best], **rep, "grid": grid,
                      "seconds": timings[m.name]})
    summary = {"world": "toy stylegan2", "split": split, "select_split": "dev" if split == "test" else split,
               "queries": len(report_q), "sources": sources,
               "source_origins": {"generated": sum(s.origin.startswith("generated") for s in srcs),
                                  "inverted": sum(s.origin == "inverted" for s in srcs)},
               "seconds": time.perf_counter() - t0, "rows": table}
    imageio.atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    imageio.atomic_write_bytes(out / TABLE_FILE, (format_table(summary) + "\n").encode())
    _write_grid(out / GRID_FILE, [src_of[q.query_id].image for q in report_q[:8]], examples, runners)
    return summary


def _write_grid(path: Path, sources: list[torch.Tensor], examples: dict, runners: list[Method]) -> None:
    """Rows: queries; columns: source, then each method's reported-setting-independent first output."""
    if not sources:
        return
    up = lambda t: F.interpolate(t[None], size=(64, 64), mode="nearest")[0]  # noqa: E731
    rows = []
    for i, src in enumerate(sources):
        cells = [up(src)]
        for m in runners:
            ims = examples.get(m.name, [])
            cells.append(up(ims[i][-1]) if i < len(ims) else torch.ones(3, 64, 64))
        rows.append(torch.cat([torch.cat([c, torch.ones(3, 64, 2)], 2) for c in cells], 2))
    imageio.save_image(torch.cat([torch.cat([r, torch.ones(3, 2, r.shape[2])], 1) for r in rows], 1), path)


def format_table(summary: dict) -> str:
    """Markdown table (Table 1 style): one row per method at its selected setting."""
    head = ("| method | setting | Acc. | Acc. colour | Acc. shape | kept | unedited | LPIPS |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in summary["rows"]:
        setting = ", ".join(f"{k} {v:g}" for k, v in r["setting"].items()) or "-"
        f = lambda k: f"{r[k]:.1f}" if k in r else "-"  # noqa: E731
        lines.append(f"| {r['method']} | {setting} | {f('accuracy')} | {f('accuracy_colour')} | "
                     f"{f('accuracy_shape')} | {f('kept')} | {f('unedited')} | {f('lpips')} |")
    return "\n".join(lines)


__all__ = ["evaluate_stylespace", "direction_methods", "flexit_method", "generated_sources", "inverted_source",
           "score", "format_table", "Method", "Source"]
