"""Regenerate tests/golden/core_tiny.pt: seeded tiny CLIP/VQGAN/LPIPS outputs and one FlexIT step.

Run only when an intended change alters these outputs:  .venv/bin/python scripts/make_goldens_core.py
"""

from __future__ import annotations

from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "core_tiny.pt"
PROMPTS = ["a photo of a red circle", "a blue square"]
FIXED_VIEWS = dict(rotation_degrees=0.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False)


def compute() -> dict[str, torch.Tensor]:
    from editrt.config import FlexITConfig
    from editrt.methods.flexit import FlexIT
    from editrt.models.clip import load_clip, load_ensemble
    from editrt.models.lpips import load_lpips
    from editrt.models.vqgan import load_vqgan

    torch.set_num_threads(1)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    clip = load_clip("tiny", random_init=True, seed=0)
    vq = load_vqgan("tiny", random_init=True, seed=0)
    lp = load_lpips("vgg", random_init=True, seed=0)
    with torch.no_grad():
        z = vq.encode(x)
        out = {
            "clip_text": clip.embed_text(PROMPTS),
            "clip_image": clip.embed_image(x),
            "vqgan_latent": z,
            "vqgan_decode": torch.nn.functional.avg_pool2d(vq.decode_clamped(z), 4),
            "lpips_vgg": lp(x[:1], x[1:]).flatten(),
        }
    models = {"clip": load_ensemble(["tiny"], random_init=True, seed=0), "vqgan": vq, "lpips": lp}
    ed = FlexIT(FlexITConfig.preset("tiny").replace(**FIXED_VIEWS), models=models)
    state = ed.step(ed.prepare(x[0], "red circle", "blue circle"))
    out["flexit_step1_z"] = state.z
    out["flexit_step1_loss"] = state.metrics["loss"]
    return out


if __name__ == "__main__":
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    torch.save(compute(), GOLDEN)
    print(f"wrote {GOLDEN}")
