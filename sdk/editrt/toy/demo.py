"""``editrt demo`` on the toy world: FlexIT turns an orange circle red with the shipped toy models.

Writes ``input.png``, ``flexit_output.png``, ``comparison.png`` (before | after, enlarged) and
``report.json`` (losses per step, time per step, the classifier's verdict before and after).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# A colour change the shipped toy models perform reliably (6/6 demo images; red -> blue: 0/6)
SOURCE, TARGET = "orange circle", "red circle"
DEMO_INDEX = 0  # the demo image: image 0 of the demo seed stream


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


def run(output_dir: str | Path, steps: int | None = None, seed: int = 0) -> int:
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
    pair = torch.cat([before_img, torch.ones(3, before_img.shape[1], 2), after_img.clamp(0, 1)], dim=2)
    imageio.save_image(torch.nn.functional.interpolate(pair[None], scale_factor=4, mode="nearest")[0],
                       paths["comparison"])
    report = result.report() | {
        "world": "toy", "random_weights": False, "model_load_seconds": load_s,
        "classifier_before": before, "classifier_after": after,
        "history": result.history, **{k: str(v) for k, v in paths.items()}}
    imageio.atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
    first, last = result.history[0], result.history[-1]
    fmt = lambda v: ", ".join(f"{c} {p:.0%}" for c, p in v)  # noqa: E731
    print(f"editrt demo: FlexIT on the toy world, '{SOURCE}' -> '{TARGET}', {len(result.history)} steps "
          f"on {editor.device} (trained toy CLIP + VQGAN, shipped with editrt)")
    print(f"  classifier before: {fmt(before)}")
    print(f"  classifier after:  {fmt(after)}")
    print(f"  loss {first['loss'][0]:.4f} -> {last['loss'][0]:.4f}   clip {first['clip'][0]:.4f} -> "
          f"{last['clip'][0]:.4f}   sim(target) {first['sim_target'][0]:.3f} -> {last['sim_target'][0]:.3f}   "
          f"lpips {last['lpips'][0]:.4f}")
    print(f"  time per step (median) {report['seconds_per_step_median'] * 1000:.0f} ms, "
          f"total {report['seconds_total']:.1f} s, model load {load_s:.1f} s")
    for k, v in paths.items():
        print(f"  {k:<10} {v}")
    print(f"  report     {out / 'report.json'}")
    return 0


__all__ = ["available", "run", "demo_image", "verdict", "SOURCE", "TARGET"]
