"""Regenerate tests/golden/deltaedit_tiny_mapper.safetensors (never edit goldens by hand).

The golden holds seeded inputs and the output of the seeded random tiny Delta Mapper, so a
changed architecture, init or forward shows up in tests/test_delta_mapper.py.

    .venv/bin/python scripts/make_goldens_deltaedit.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from editrt.models.delta_mapper import TINY_CONFIG, load_delta_mapper

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "deltaedit_tiny_mapper.safetensors"
SEED = 1234


def golden_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED)
    return {"sspace": torch.randn(3, TINY_CONFIG.s_dim, generator=gen),
            "clip_cond": torch.randn(3, TINY_CONFIG.clip_dim, generator=gen)}


def main() -> None:
    net = load_delta_mapper("tiny", random_init=True, seed=SEED)
    feeds = golden_inputs()
    with torch.no_grad():
        out = net(feeds["sspace"], feeds["clip_cond"])
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    save_file({**feeds, "delta_s": out}, str(GOLDEN), metadata={"seed": str(SEED)})
    print(f"wrote {GOLDEN} (delta_s {tuple(out.shape)}, mean |x| {out.abs().mean():.4f})")


if __name__ == "__main__":
    main()
