"""``editrt demo`` on the toy world: four methods turn an orange circle red with the shipped toy models.

FlexIT edits the 64 px world image directly; the three StyleGAN2 direction methods (StyleCLIP
global directions, StyleCLIP-FEU, DeltaEdit) edit the toy generator's code of the same image,
inverted by the toy encoder (32 px), each at the setting the toy protocol selected on its dev
queries (:data:`STYLE_SETTINGS`). Writes ``input.png``, ``flexit_output.png``,
``<method>_output.png``, ``comparison.png`` (labelled: input, FlexIT, the inversion, the three
direction edits, each with the classifier's verdict) and ``report.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# A colour change the shipped toy models perform reliably (6/6 demo images; red -> blue: 0/6)
SOURCE, TARGET = "orange circle", "red circle"
DEMO_INDEX = 0  # the demo image: image 0 of the demo seed stream
# Direction-method settings: the grid points `editrt evaluate --toy --family stylespace` selects on dev
STYLE_SETTINGS = {"global": {"alpha": 4.1, "beta": 0.4}, "feu": {"alpha": 4.1, "beta": 0.15},
                  "deltaedit": {"strength": 2.0}}


def available() -> bool:
    """True when the trained toy weights ship with the package."""
    from .models import available as weights_present

    return weights_present()


def demo_image() -> torch.Tensor:
    """The demo's input, a red circle: float [3, 64, 64] in [0, 1]."""
    from . import world

    return world.make_image(world.class_index(SOURCE), world.STREAM_DEMO, DEMO_INDEX)


def verdict(classifier, image: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
    """The toy classifier's top-``k`` classes and probabilities for one [3, H, W] image."""
    from . import world

    with torch.no_grad():
        p = classifier(image[None]).softmax(-1)[0]
    top = p.topk(k)
    return [(world.CLASSES[int(i)], float(v)) for v, i in zip(top.values, top.indices)]


def style_edits(image01: torch.Tensor, folder=None) -> dict:
    """The three direction methods on one toy image [3, H, W] in [0, 1] (inverted by the toy encoder).

    Returns {"inverted": [3, 32, 32], "global" | "feu" | "deltaedit": [3, 32, 32]} in [0, 1] and
    "seconds": per method.
    """
    from ..config import DeltaEditConfig, FEUConfig, GlobalDirectionConfig
    from ..methods.stylespace import FEU, DeltaEdit, GlobalDirection
    from .models import load_toy_style

    toy = load_toy_style(folder)
    code = toy.invert(image01[None])
    common = dict(generator=toy.generator, clip=toy.clip, fs3=toy.fs3, stats=toy.stats)
    to01 = lambda t: ((t + 1) / 2).clamp(0, 1)  # noqa: E731
    out, secs = {}, {}
    with torch.no_grad():
        out["inverted"] = to01(toy.generator.synthesize(code))[0]
    editors = {
        "global": lambda: GlobalDirection(config=GlobalDirectionConfig(generator="toy", clip_model="tiny"),
                                          **common).edit(code, TARGET, SOURCE, **STYLE_SETTINGS["global"]),
        "feu": lambda: FEU(config=FEUConfig(generator="toy", clip_model="tiny"), corpus=toy.corpus,
                           **common).edit(code, TARGET, **STYLE_SETTINGS["feu"]),
        "deltaedit": lambda: DeltaEdit(config=DeltaEditConfig(generator="toy", clip_model="tiny", mapper="toy"),
                                       mapper=toy.mapper, **common).edit(code, TARGET, SOURCE,
                                                                         **STYLE_SETTINGS["deltaedit"]),
    }
    for name, edit in editors.items():
        t0 = time.perf_counter()
        out[name] = to01(edit().images[0, 0])
        secs[name] = time.perf_counter() - t0
    out["seconds"] = secs
    return out


def labelled_row(images: list[torch.Tensor], labels: list[str], size: int = 128) -> torch.Tensor:
    """Images [3, h, w] in [0, 1], each enlarged (nearest) to ``size`` with its label underneath."""
    import numpy as np
    from PIL import Image, ImageDraw

    cells = []
    for img, label in zip(images, labels):
        big = torch.nn.functional.interpolate(img[None].clamp(0, 1), size=(size, size), mode="nearest")[0]
        canvas = Image.new("RGB", (size + 4, size + 30), "white")
        canvas.paste(Image.fromarray((big.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), (2, 2))
        draw = ImageDraw.Draw(canvas)
        for k, line in enumerate(label.split("\n")[:2]):
            draw.text((3, size + 4 + 12 * k), line, fill="black")
        cells.append(torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255)
    return torch.cat(cells, dim=2)


def run(output_dir: str | Path, steps: int | None = None, seed: int = 0, style_folder=None) -> int:
    """FlexIT plus (when their files ship, or are in ``style_folder``) the three direction methods."""
    from .. import imageio
    from ..methods.flexit import FlexIT
    from .models import TOY_FLEXIT, load_toy_models

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TOY_FLEXIT if steps is None else TOY_FLEXIT.replace(steps=int(steps))
    t0 = time.perf_counter()
    models = load_toy_models()
    editor = FlexIT(cfg, models=models.flexit_models(), seed=seed)
    load_s = time.perf_counter() - t0
    image = demo_image()
    result = editor.edit(image, SOURCE, TARGET, seed=seed, progress=True)
    before_img, after_img = image, result.images[0]
    before, after = verdict(models.classifier, before_img), verdict(models.classifier, after_img)
    paths = {"input": out / "input.png", "output": out / "flexit_output.png", "comparison": out / "comparison.png"}
    imageio.save_image(before_img, paths["input"])
    result.save(paths["output"])
    fmt = lambda v: ", ".join(f"{c} {p:.0%}" for c, p in v)  # noqa: E731
    panels = [("input", before_img, before), ("FlexIT", after_img, after)]
    style, style_report = {}, {}
    from .models import style_available

    if style_available(style_folder):
        style = style_edits(image, style_folder)
        names = {"inverted": "inverted (32 px)", "global": "StyleCLIP global", "feu": "StyleCLIP-FEU",
                 "deltaedit": "DeltaEdit"}
        for key, label in names.items():
            v = verdict(models.classifier, style[key])
            panels.append((label, style[key], v))
            path = out / f"{key}_output.png"
            imageio.save_image(style[key], path)
            style_report[key] = {"classifier": v, "output": str(path), "seconds": style["seconds"].get(key),
                                 "setting": STYLE_SETTINGS.get(key)}
    imageio.save_image(labelled_row([p[1] for p in panels], [f"{p[0]}\n{p[2][0][0]} {p[2][0][1]:.0%}" for p in panels]),
                       paths["comparison"])
    report = result.report() | {
        "world": "toy", "random_weights": False, "model_load_seconds": load_s,
        "classifier_before": before, "classifier_after": after, "direction_methods": style_report,
        "history": result.history, **{k: str(v) for k, v in paths.items()}}
    imageio.atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
    first, last = result.history[0], result.history[-1]
    print(f"editrt demo: FlexIT on the toy world, '{SOURCE}' -> '{TARGET}', {len(result.history)} steps "
          f"on {editor.device} (trained toy CLIP + VQGAN, shipped with editrt)")
    print(f"  classifier before: {fmt(before)}")
    print(f"  classifier after:  {fmt(after)}")
    print(f"  loss {first['loss'][0]:.4f} -> {last['loss'][0]:.4f}   clip {first['clip'][0]:.4f} -> "
          f"{last['clip'][0]:.4f}   sim(target) {first['sim_target'][0]:.3f} -> {last['sim_target'][0]:.3f}   "
          f"lpips {last['lpips'][0]:.4f}")
    print(f"  time per step (median) {report['seconds_per_step_median'] * 1000:.0f} ms, "
          f"total {report['seconds_total']:.1f} s, model load {load_s:.1f} s")
    for key, r in style_report.items():
        extra = f" ({r['seconds']:.1f} s)" if r["seconds"] is not None else ""
        print(f"  {key:<10} {fmt(r['classifier'])}{extra}")
    for k, v in paths.items():
        print(f"  {k:<10} {v}")
    print(f"  report     {out / 'report.json'}")
    return 0


__all__ = ["available", "run", "demo_image", "verdict", "SOURCE", "TARGET"]
