"""FlexIT's EditResult and the direction edits' StyleEditResult expose the same things:
``.image`` (PIL), ``.images01`` (float32 in [0, 1]) and ``.pil()``."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from editrt.config import FlexITConfig
from editrt.methods.flexit import EditResult
from editrt.methods.stylespace.result import StyleEditResult


def _style_result(images):
    return StyleEditResult(images=images, codes=[], source=images[:, 0], strengths=(1.0, 2.0), channels_changed=3,
                           direction=torch.zeros(4), method="global", config={})


def test_both_results_give_pil_and_unit_range_tensors():
    g = torch.Generator().manual_seed(0)
    style = _style_result(torch.rand(2, 2, 3, 8, 8, generator=g) * 2.4 - 1.2)  # slightly out of range
    flex = EditResult(images=torch.rand(2, 3, 8, 8, generator=g), history=[], snapshots={}, config=FlexITConfig(),
                      step_seconds=[], sources=["a", "a"], targets=["b", "b"])
    for res, n in ((style, 4), (flex, 2)):
        assert isinstance(res.image, Image.Image) and res.image.size == (8, 8)
        assert len(res.pil()) == n
        x = res.images01
        assert x.dtype == torch.float32 and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(style.images01, ((style.images + 1) / 2).clamp(0, 1))
    assert torch.equal(flex.images01, flex.images)


def test_style_pil_order_and_conversion_follow_styleclip():
    images = torch.linspace(-1, 1, 2 * 2 * 3 * 4 * 4).view(2, 2, 3, 4, 4)
    res = _style_result(images)
    pils = res.pil()
    want = ((images[1, 0] + 1) * (255 / 2)).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)  # input 1, strength 0
    assert torch.equal(torch.from_numpy(np.array(pils[2])), want)
