"""Direction edits and batch scaling for benchmarks/cpu_paper.py (sections ``edits`` and ``batch``).

Direction edits reuse the stage-by-stage editrt and reference loops of benchmarks/style_edits.py
on one shared generator and CLIP model (seeded random weights; the relevance matrix, channel
statistics and FEU corpus are random too: their values do not change the timings). Variants,
interleaved per round: the reference loop (always encodes its prompts), editrt with a new prompt
(text cache cleared before every call) and editrt with a cached prompt, in torch and, with
``--ort``, with onnxruntime synthesis.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

import harness
import style_edits

ONE_SHOT = harness.Budget(warmup=0, warmup_s=0.0, min_reps=1, max_reps=1, min_time_s=0.0)


def _shared_networks(preset: str, device: torch.device):
    from editrt.models.clip import load_clip
    from editrt.models.stylegan2 import StyleGAN2

    cfg = style_edits._config("global", preset)
    return (StyleGAN2.load(cfg.generator, random_init=True, seed=0, device=device),
            load_clip(cfg.clip_model, random_init=True, seed=0, device=device))


def build_editor(method: str, preset: str, generator, clip, device: torch.device, backend: str = "torch"):
    """A paper-config editor on the shared random networks, with random fs3 / stats / corpus."""
    from editrt.methods.stylespace.corpus import CorpusIndex

    cls, reason = style_edits._import_method(method)
    if cls is None:
        raise RuntimeError(reason)
    cfg = style_edits._config(method, preset)
    if hasattr(cfg, "stats_samples"):
        cfg = cfg.replace(stats_samples=512)  # mapping samples for code_std; 100k only costs time here
    if method == "deltaedit":
        cfg = cfg.replace(threshold=0.0)  # random CLIP texts give a tiny |dt|: keep every channel
    gen = torch.Generator().manual_seed(1)
    fs3 = F.normalize(torch.randn(generator.layout.conv_total, clip.embed_dim, generator=gen), dim=1)
    kw: dict[str, Any] = {}
    if method == "feu":
        n = max(4 * cfg.k, 256)
        kw["corpus"] = CorpusIndex(embeddings=F.normalize(torch.randn(n, clip.embed_dim, generator=gen), dim=1),
                                   clip_model=clip.name, items=[f"seed:{i}" for i in range(n)],
                                   provenance={"random": True})
    return cls(generator=generator, clip=clip, config=cfg, random_init=True, seed=0, device=device, fs3=fs3,
               backend=backend, **kw)


def _clear_text_cache(backend: str = "torch") -> None:
    """Forget ``backend``'s template embeddings (the other backends' cached prompts stay cached)."""
    from editrt.methods.stylespace import text

    for cache in text._TEMPLATE_CACHE.values():
        for key in [k for k in cache if k[2][0] == backend]:
            del cache[key]


def edit_variants(method: str, ed, ed_ort, code, alpha: float, ed_ort_lean=None) -> dict[str, Callable]:
    """name -> staged callable(mark) of one whole edit (``ed_ort_lean``: onnxruntime without
    its CPU memory arena)."""
    ref = style_edits._reference_fn(method, ed, code, alpha)
    mine = style_edits._editrt_fn(method, ed, code, alpha)

    def new_prompt(mark):
        _clear_text_cache()
        return mine(mark)
    out = {"reference": ref, "editrt torch, new prompt": new_prompt, "editrt torch, cached prompt": mine}
    if ed_ort is not None:
        out["editrt onnxruntime, cached prompt"] = style_edits._editrt_fn(method, ed_ort, code, alpha)
    if ed_ort_lean is not None:
        out["editrt onnxruntime arena off, cached prompt"] = style_edits._editrt_fn(method, ed_ort_lean, code, alpha)
    return out


def run_edits(method: str, batch: int, generator, clip, args, progress, device) -> list[dict]:
    ed = build_editor(method, args.preset, generator, clip, device)
    ed_ort = ed_ort_lean = None
    if args.ort:
        from editrt.engines.stages import EngineSet

        progress(f"edits: {method} onnxruntime engines (export on first use)")
        ed_ort = build_editor(method, args.preset, generator, clip, device, backend="onnxruntime")
        ed_ort._fs3, ed_ort._stats = ed.fs3, ed.stats
        ed_ort_lean = build_editor(method, args.preset, generator, clip, device,
                                   backend=EngineSet("onnxruntime", device=device, cpu_arena=False))
        ed_ort_lean._fs3, ed_ort_lean._stats = ed.fs3, ed.stats
    code = ed.codes_from_seeds(list(range(batch)))
    alpha = float(getattr(ed.config, "alpha", getattr(ed.config, "strength", 1.0)))
    _ = ed.fs3, ed.stats
    fns = edit_variants(method, ed, ed_ort, code, alpha, ed_ort_lean)
    # warm the caches a cached-prompt run relies on (and the ORT session) outside the timing
    for name in [n for n in fns if "cached" in n]:
        progress(f"edits: {method} B={batch} warm {name}")
        harness.measure_stages(fns[name], budget=ONE_SHOT, device=device)
    totals: dict[str, list[float]] = {k: [] for k in fns}
    stages: dict[str, dict[str, list[float]]] = {k: {} for k in fns}
    peaks: dict[str, int] = {k: 0 for k in fns}
    for r in range(args.rounds):
        for name, fn in fns.items():
            progress(f"edits: {method} B={batch} round {r + 1}/{args.rounds}: {name}")
            staged = harness.measure_stages(fn, budget=ONE_SHOT, device=device)
            totals[name] += staged.total.wall_ms
            peaks[name] = max(peaks[name], staged.total.peak_rss_bytes or 0)
            for stage, ms in staged.stages.items():
                stages[name].setdefault(stage, []).extend(ms)
    group = f"{method} {args.preset} edit (B={batch}, 1 alpha)"
    rows = []
    for name in fns:
        backend = "onnxruntime" if "onnxruntime" in name else "torch"
        common = dict(suite="edits", device=device, backend=backend, precision="fp32", batch=batch, variant=name)
        t = harness.Timing(wall_ms=totals[name], device_ms=None, warmup_calls=0, peak_cuda_bytes=None,
                           peak_rss_bytes=peaks[name] or None)
        rows.append(harness.row_from_timing(t, group=group, name=name, items=batch,
                                            baseline=None if name == "reference" else "reference", **common))
        for stage, ms in stages[name].items():
            st = harness.Timing(wall_ms=ms, device_ms=None, warmup_calls=0, peak_cuda_bytes=None, peak_rss_bytes=None)
            rows.append(harness.row_from_timing(st, group=group, name=f"{name} | {stage}", stage=stage,
                                                items=batch, **common))
    return rows


def edits_section(args, progress) -> tuple[list[dict], dict[str, Any]]:
    device = torch.device(args.device)
    progress(f"edits: building the {args.preset} generator and CLIP (random weights)")
    generator, clip = _shared_networks(args.preset, device)
    rows = []
    for spec in args.edit_runs:
        method, batch = spec.split(":")
        try:
            rows += run_edits(method, int(batch), generator, clip, args, progress, device)
        except Exception as exc:  # noqa: BLE001 - one failing method must not sink the run
            rows.append(harness.skipped_row(suite="edits", group=f"{method} {args.preset} edit (B={batch}, 1 alpha)",
                                            name="editrt", status="error", reason=f"{type(exc).__name__}: {exc}"))
    return rows, {}


# -- text encoding of a new prompt pair ----------------------------------------------------------

def text_section(args, progress) -> tuple[list[dict], dict[str, Any]]:
    """2 x 79 templated prompts of a new (target, neutral) pair: the reference's
    ``zeroshot_classifier`` (one 77-token batch per class) against ``template_embeddings`` (cache
    cleared: one batch per class, trimmed to its longest prompt), interleaved; plus their
    agreement. With ``--ort``, onnxruntime too: a graph with a fixed 77-token axis fed rows padded
    back to 77 (before the text graphs took a dynamic token axis), the dynamic graph at 77 tokens,
    and ``template_embeddings`` on the dynamic graph (trimmed rows)."""
    import cpu_paper
    from editrt.methods.stylespace import template_embeddings
    from editrt.models.clip import load_clip

    device = torch.device(args.device)
    cfg = style_edits._config("global", args.preset)
    clip = load_clip(cfg.clip_model, random_init=True, seed=0, device=device).eval()
    pair = ["smiling face", "face"]

    def editrt_new(engines=None):
        _clear_text_cache("torch" if engines is None else engines.backend)
        return template_embeddings(clip, pair, engines=engines)
    fns = {"reference (one 77-token batch per class)": lambda: style_edits._classifier_per_class(clip, pair),
           "editrt torch (trimmed, one batch per class)": editrt_new}
    if args.ort:
        fns.update(_ort_text_variants(clip, pair, device, editrt_new, progress))
    timings = cpu_paper.interleaved(fns, args.rounds, warmup=1, progress=progress)
    first = next(iter(fns))
    group = f"text encoding {args.preset} ({clip.name}, 2 x 79 prompts, new pair)"
    rows, baselines = [], {}
    for name, t in timings.items():  # onnxruntime rows: against the fixed-axis graph, in their own group
        backend = "onnxruntime" if "onnxruntime" in name else "torch"
        g = group if backend == "torch" else f"{group}, onnxruntime"
        base = baselines.setdefault(g, name)
        rows.append(harness.row_from_timing(t, suite="edits", group=g, name=name, items=1, device=device,
                                            backend=backend, precision="fp32", baseline=None if name == base else base))
    harness.assign_ratios(rows)
    with torch.no_grad():
        ref = fns[first]()
        diffs = {name: float((fn() - ref).abs().max()) for name, fn in fns.items() if name != first}
    found = {"clip": clip.name, "max_abs_diff_vs_reference": diffs.pop("editrt torch (trimmed, one batch per class)")}
    if diffs:
        found["onnxruntime_max_abs_diff_vs_reference"] = diffs
    return rows, {"text_encoding": found}


def _ort_text_variants(clip, pair: list[str], device: torch.device, editrt_new, progress) -> dict[str, Callable]:
    """onnxruntime variants of the text section (exported into the store on first use)."""
    import dataclasses

    from editrt.engines.stages import EngineSet, open_engine
    from editrt.models.clip import ClipTextTower
    from editrt.models.registry import TensorSpec, get_spec

    spec = get_spec(f"clip/{clip.name}/text")
    tower = ClipTextTower(clip)
    # the text spec as it was with a fixed token axis (own store slot)
    fixed = dataclasses.replace(spec, name=f"{spec.name}-ctx{clip.context_length}",
                                inputs=(TensorSpec("tokens", ("B", clip.context_length), torch.int32),),
                                axes={"B": 2}, profile={"B": spec.profile["B"]})
    progress(f"text: onnxruntime graphs of {spec.name}, fixed and dynamic token axis (export on first use)")
    old = open_engine(fixed, "onnxruntime", module=tower, weights_id="random-init:seed=0", device=device)
    engines = EngineSet("onnxruntime", device=device)
    engines.register(clip, random_init=True, seed=0)
    new = engines.engine(tower)
    return {"onnxruntime fixed 77-token graph (rows padded to 77)": lambda: _ort_classifier(old, clip, pair),
            "onnxruntime dynamic-T graph (rows padded to 77)": lambda: _ort_classifier(new, clip, pair),
            "onnxruntime dynamic-T graph (trimmed, template_embeddings)": lambda: editrt_new(engines)}


def _ort_classifier(engine, clip, classnames: list[str]) -> torch.Tensor:
    """``template_embeddings``' per-class loop on one engine, rows padded back to the context
    length as a fixed-axis graph needs them."""
    from editrt.methods.stylespace import IMAGENET_TEMPLATES
    from editrt.models.clip import trim_padding

    rows = []
    for c in classnames:
        tokens = trim_padding(clip.tokenize([t.format(c) for t in IMAGENET_TEMPLATES]))
        tokens = F.pad(tokens, (0, clip.context_length - tokens.shape[1]))
        emb = F.normalize(engine({"tokens": tokens})["embedding"].float(), dim=-1).mean(0)
        rows.append(F.normalize(emb, dim=-1).cpu())
    return torch.stack(rows)


# -- batch scaling --------------------------------------------------------------------------------

def _per_image_rows(group: str, fns: dict[str, tuple[int, Callable]], rounds: int, progress, **fields) -> list[dict]:
    """Interleaved: name -> (images per call, fn). The baseline is the first entry (batch 1)."""
    import cpu_paper

    timings = cpu_paper.interleaved({k: f for k, (_, f) in fns.items()}, rounds, warmup=1, progress=progress)
    first = next(iter(fns))
    return [harness.row_from_timing(t, suite="batch", group=group, name=name, items=fns[name][0],
                                    batch=fns[name][0], baseline=None if name == first else first, **fields)
            for name, t in timings.items()]


def synthesis_batch_rows(generator_name: str, batches, rounds: int, progress) -> list[dict]:
    """The synthesis stage as direction edits run it in torch (``SynthesisExport``, one call per
    chunk), per image at each batch: one call, and chunks of the default batch."""
    from editrt.methods.stylespace import default_batch
    from editrt.models.stylegan2 import StyleGAN2, SynthesisExport

    g = StyleGAN2.load(generator_name, random_init=True, seed=0)
    codes = {b: g.styles_from_w(g.mapping(torch.randn(b, g.style_dim, generator=torch.Generator().manual_seed(b))))
             for b in batches}
    stage = SynthesisExport(g)
    chunk = default_batch(g, "cpu")

    @torch.no_grad()
    def run(code, step):
        return torch.cat([stage(*code[i:i + step].styles) for i in range(0, code.batch_size, step)])
    fns: dict[str, tuple[int, Callable]] = {}
    for b in batches:
        fns[f"B={b} one call"] = (b, lambda c=codes[b], b=b: run(c, b))
    for b in batches:
        if b > chunk:
            fns[f"B={b} default chunks of {chunk}"] = (b, lambda c=codes[b]: run(c, chunk))
    return _per_image_rows(f"synthesis {generator_name} per image", fns, rounds, progress, backend="torch",
                           precision="fp32", note=f"default_batch on this CPU: {chunk}")


def synthesis_backends_section(args, progress) -> tuple[list[dict], dict[str, Any]]:
    """Synthesis at batch 1 in torch and in onnxruntime (with and without its CPU memory arena)
    for each generator size, what the first onnxruntime use costs (export + check against torch,
    into an empty store) and each variant's memory in a fresh process: the measurements behind
    the CPU choice of ``backend="auto"`` (editrt.engines.stages) and the arena default."""
    import tempfile

    from editrt.engines.stages import EngineSet
    from editrt.engines.store import ArtifactStore

    rows: list[dict] = []
    findings: dict[str, Any] = {}
    for name in args.synthesis_generators:
        g, stage, code = _synthesis_case(name)
        with tempfile.TemporaryDirectory() as tmp:
            sets = {"torch": EngineSet("torch"), "onnxruntime": EngineSet("onnxruntime", store=ArtifactStore(tmp)),
                    "onnxruntime arena off": EngineSet("onnxruntime", store=ArtifactStore(tmp), cpu_arena=False)}
            progress(f"synthesis {name}: first onnxruntime use (export + check)")
            t0 = time.perf_counter()
            sets["onnxruntime"].engine(stage)
            findings[f"{name} first onnxruntime use seconds"] = round(time.perf_counter() - t0, 1)
            sets["onnxruntime arena off"].engine(stage)  # the stored graph: no second export

            @torch.no_grad()
            def run(backend):
                return sets[backend].run(stage, *code.styles)
            fns = {b: (1, lambda b=b: run(b)) for b in sets}
            rows += _per_image_rows(f"synthesis {name} ({g.size} px) B=1 by backend", fns, args.rounds, progress,
                                    precision="fp32", params={"generator": name, "size": g.size})
            for variant in sets:
                progress(f"synthesis {name}: memory of {variant} in a fresh process")
                findings[f"{name} memory MB, {variant}"] = _memory_in_child(name, tmp, variant, args.threads)
    return rows, findings


def _synthesis_case(name: str):
    """(seeded random generator, its synthesis stage, one seeded StyleCode) for ``name``."""
    from editrt.models.stylegan2 import StyleGAN2, SynthesisExport

    g = StyleGAN2.load(name, random_init=True, seed=0)
    code = g.styles_from_w(g.mapping(torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(1))))
    return g, SynthesisExport(g), code


def _memory_in_child(name: str, store: str, variant: str, threads: int | None) -> dict[str, Any]:
    """Resident memory (MB) around two batch-1 syntheses in a fresh interpreter: after loading,
    the sampled peak during the calls, after them. In one process the memory an arena keeps
    would count against the next variant."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import cpu_paper_edits as m; "
            "print(json.dumps(m.synthesis_memory_child(*sys.argv[2:])))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), name, store, variant,
                          str(threads or 0)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def synthesis_memory_child(name: str, store: str, variant: str, threads: str) -> dict[str, Any]:
    import psutil

    from editrt.engines.stages import EngineSet
    from editrt.engines.store import ArtifactStore

    if int(threads):
        torch.set_num_threads(int(threads))
    _, stage, code = _synthesis_case(name)  # the parent's weights: its stored graph matches
    es = (EngineSet("torch") if variant == "torch" else
          EngineSet("onnxruntime", store=ArtifactStore(store), rebuild=False, cpu_arena=variant == "onnxruntime"))
    rss = lambda: psutil.Process().memory_info().rss / 2**20  # noqa: E731
    with torch.no_grad():
        if variant != "torch":
            es.engine(stage)
        ready = rss()
        with harness.RSSSampler() as sampled:
            for _ in range(2):
                es.run(stage, *code.styles)
    return {"after_load": round(ready), "peak_during_calls": round(sampled.peak / 2**20), "after_calls": round(rss())}


def flexit_batch_rows(preset: str, batches, rounds: int, progress) -> list[dict]:
    import flexit_loop
    from editrt.config import FlexITConfig
    from editrt.methods.flexit import FlexIT, default_batch_size

    cfg = FlexITConfig.preset(preset)
    models = flexit_loop.load_models(cfg, torch.device("cpu"))
    ed = FlexIT(cfg, models=models)
    fns: dict[str, tuple[int, Callable]] = {}
    for b in batches:
        images = flexit_loop.input_image(cfg, torch.device("cpu"), b)
        chunked = (default_batch_size("cpu", cfg.image_size) or b) < b
        for joint in ((True, False) if chunked else (True,)):
            size = b if joint else (default_batch_size("cpu", cfg.image_size) or b)
            states = [ed.prepare(images[i:i + size], "a photo of a cat", "a photo of a dog")
                      for i in range(0, b, size)]

            def step(states=states):
                for k, s in enumerate(states):
                    states[k] = ed.step(s)
            fns[f"B={b} " + ("one joint batch" if joint else f"default chunks of {size}")] = (b, step)
    return _per_image_rows(f"flexit {preset} step per image", fns, rounds, progress, backend="torch",
                           precision="bf16" if ed._amp_dtype == torch.bfloat16 else "fp32")


def edit_batch_rows(preset: str, batches, rounds: int, progress) -> list[dict]:
    device = torch.device("cpu")
    generator, clip = _shared_networks(preset, device)
    ed = build_editor("global", preset, generator, clip, device)
    _ = ed.fs3, ed.stats
    alpha = float(ed.config.alpha)
    fns: dict[str, tuple[int, Callable]] = {}
    for b in batches:
        code = ed.codes_from_seeds(list(range(b)))
        fns[f"B={b} edit()"] = (b, lambda c=code: _new_images_edit(ed, c, alpha))
    fns[f"B={batches[0]} edit()"][1]()  # text embeddings cached: the rows time the per-image work
    return _per_image_rows(f"global {preset} edit per image (cached prompt, new images)", fns, rounds, progress,
                           backend="torch", precision="fp32",
                           note="every call edits codes not edited before (source and edit synthesised)")


def _new_images_edit(ed, code, alpha: float):
    """One edit of codes the editor has not seen: its source synthesis is not reused."""
    ed._last_source = None
    return ed.edit(code, "smiling face", "face", alpha=alpha)


def batch_section(args, progress) -> tuple[list[dict], dict[str, Any]]:
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in args.synthesis_generators:
        rows += synthesis_batch_rows(name, tuple(args.batches_synthesis), args.rounds, progress)
    rows += flexit_batch_rows("tiny", (1, 2, 4, 8), args.rounds, progress)
    if args.preset == "paper" and args.flexit_paper_batch:
        rows += flexit_batch_rows("paper", (1, 2), 1, progress)
    rows += edit_batch_rows(args.preset, tuple(args.batches_edits), args.rounds, progress)
    return rows, {"batch_section_seconds": time.perf_counter() - t0}


def add_arguments(ap) -> None:
    ap.add_argument("--edit-runs", nargs="+", default=["global:1", "global:4", "deltaedit:1", "feu:1"],
                    help="edits: METHOD:BATCH runs")
    ap.add_argument("--ort", action="store_true",
                    help="edits, text: also onnxruntime engines (exports on first use)")
    ap.add_argument("--synthesis-generators", nargs="+", default=["tiny", "ffhq-256"])
    ap.add_argument("--batches-synthesis", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--batches-edits", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--flexit-paper-batch", action="store_true", help="batch: FlexIT paper steps at batch 1 and 2")
