"""``editrt demo``: the embedded default job, offline on a CPU in about a minute.

It edits the bundled sample image (a red disc on a gradient, sdk/editrt/data/sample.png) with
FlexIT. When the trained toy-world models ship with the package (``editrt.toy``), they are
used and the edit is real ("red circle" -> "blue circle"); otherwise the tiny networks run with
seeded random weights, which exercises the whole pipeline but gives no meaningful edit.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from . import imageio

SAMPLE_IMAGE = "sample.png"


def sample_image_path() -> Path:
    return Path(str(resources.files("editrt") / "data" / SAMPLE_IMAGE))


def _toy_demo():
    """The toy world's demo hook, when that package part exists and its weights ship."""
    try:
        from .toy import demo as toy_demo
    except ModuleNotFoundError:
        return None
    return toy_demo if toy_demo.available() else None


def run_demo(output_dir: str | Path, *, steps: int | None = None, seed: int = 0,
             force_random: bool = False) -> int:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    toy = None if force_random else _toy_demo()
    if toy is not None:
        return toy.run(output_dir, steps=steps, seed=seed)
    return _random_tiny_demo(output_dir, steps=steps, seed=seed)


def _random_tiny_demo(output_dir: Path, *, steps: int | None, seed: int) -> int:
    from .cli_args import RANDOM_WEIGHTS_WARNING
    from .config import FlexITConfig
    from .methods.flexit import FlexIT

    cfg = FlexITConfig.preset("tiny").replace(steps=steps or 24, snapshot_steps=(0, 8, 16, 24))
    t0 = time.perf_counter()
    editor = FlexIT(cfg, random_init=True, seed=seed)
    load_s = time.perf_counter() - t0
    src = sample_image_path()
    result = editor.edit(src, "a photo of a red circle", "a photo of a blue circle", seed=seed, progress=True)
    before = output_dir / "input.png"
    after = output_dir / "flexit_output.png"
    imageio.save_image(editor.load_images(src)[0].cpu(), before)
    result.save(after)
    report = result.report() | {"random_weights": True, "model_load_seconds": load_s,
                                "input": str(before), "output": str(after)}
    imageio.atomic_write_bytes(output_dir / "report.json", json.dumps(report, indent=2).encode())
    print(f"editrt demo: FlexIT, tiny networks, {len(result.history)} steps on {editor.device}")
    print(f"  input  {before}\n  output {after}\n  report {output_dir / 'report.json'}")
    first, last = result.history[0], result.history[-1]
    print(f"  loss {first['loss'][0]:.4f} -> {last['loss'][0]:.4f}   clip {first['clip'][0]:.4f} -> "
          f"{last['clip'][0]:.4f}   lpips {last['lpips'][0]:.4f}   latent {last['latent'][0]:.4f}")
    print(f"  time per step (median) {report['seconds_per_step_median'] * 1000:.0f} ms")
    print(RANDOM_WEIGHTS_WARNING)
    return 0
