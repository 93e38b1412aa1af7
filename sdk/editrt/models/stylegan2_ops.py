"""Pure-torch building blocks of the rosinality StyleGAN2 generator (no custom CUDA ops).

Module and parameter names match rosinality/stylegan2-pytorch ``model.py`` so that a
``g_ema`` state dict loads strictly. Everything exports to ONNX: filters are plain
pad / depthwise ``conv2d``, the fused bias + leaky ReLU is ``leaky_relu(x + b, 0.2) * sqrt(2)``.

Two forms of the modulated convolution are provided (:class:`ModulatedConv2d`):

* ``"grouped"`` — rosinality's fused formula: per-sample weights ``W' = scale * W * s``,
  demodulated, folded into one grouped conv with ``groups=B``. Weights are computed tensors and
  the batch is baked into the reshape, which is why NVIDIA/TensorRT exports break on it.
* ``"activation"`` (default) — modulation moved onto the activations:
  ``conv(x * s, scale * W) * d`` with ``d = rsqrt(s^2 @ sum_k (scale * W)^2 + 1e-8)``.
  The conv weights are constants and the batch axis stays dynamic. The demodulation
  coefficients are computed in fp32 whatever the activation dtype, because ``s^2 W^2`` summed
  over up to 512 x 9 terms is where an fp16 graph overflows (NVIDIA's code pre-normalises for
  the same reason); the product is cast back to the activation dtype.

In the activation form the synthesis also moves the leaky ReLU's ``sqrt(2)`` gain from each
layer's output onto the styles of the layers that read it (``in_gain``): every consumer of a
StyledConv output is a modulated conv, and ``(sqrt2 * a) * s = a * (sqrt2 * s)``, so one
full-resolution multiply per layer becomes a multiply of the [B, C] style (round-off level
change; demodulation still uses the style itself).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8
MODCONV_MODES = ("activation", "grouped")


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR taps -> normalised 2-D kernel [k, k] (sums to 1)."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0),
              depthwise: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample by zero insertion, pad, then FIR-filter each channel (rosinality ``upfirdn2d``
    with ``down=1`` and non-negative pads, which is all the generator uses).

    x: [B, C, H, W]; kernel: [k, k]; returns [B, C, H*up + pad0 + pad1 - k + 1, same for W].
    depthwise: the precomputed conv weight [C, 1, k, k] (see :func:`depthwise_filter`).
    """
    b, c, h, w = x.shape
    if up > 1:
        # [B,C,H,1,W,1] -> zero-pad the singleton axes to `up` -> interleaved zeros
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = depthwise_filter(kernel, c) if depthwise is None else depthwise
    return F.conv2d(x, weight.to(x.dtype), groups=c)


def depthwise_filter(kernel: torch.Tensor, channels: int) -> torch.Tensor:
    """upfirdn2d convolves (flipped kernel in a cross-correlation): weight [C, 1, k, k]."""
    return torch.flip(kernel, [0, 1])[None, None].expand(channels, 1, -1, -1)


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor, bias_scale: float = 1.0, gain: bool = True) -> torch.Tensor:
    """rosinality ``fused_leaky_relu``: ``leaky_relu(x + bias, 0.2) * sqrt(2)``, bias on dim 1
    (``gain=False``: without the ``sqrt(2)``, which the caller then owes the consumers)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = F.leaky_relu(x + (bias * bias_scale).view(shape), LRELU_SLOPE)
    return out * LRELU_GAIN if gain else out


class PixelNorm(nn.Module):
    """``x * rsqrt(mean(x^2, dim=1) + 1e-8)``; the first layer of the mapping network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer (stored weight = randn / lr_mul, runtime scale
    lr_mul / sqrt(in)); ``activation=True`` applies the fused bias + leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return bias_leaky_relu(F.linear(x, self.weight * self.scale), self.bias, self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR filter after the transposed conv of an upsampling layer (buffer ``kernel`` as rosinality)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * gain)
        self.pad = pad

    def freeze(self, channels: int) -> None:
        self.register_buffer("frozen_filter", depthwise_filter(self.kernel, channels).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, 1, self.pad, getattr(self, "frozen_filter", None))


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip (buffer ``kernel`` as rosinality)."""

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = len(taps) - factor
        self.factor = factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def freeze(self, channels: int) -> None:
        self.register_buffer("frozen_filter", depthwise_filter(self.kernel, channels).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, self.factor, self.pad, getattr(self, "frozen_filter", None))


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) conv; ``forward(x, s)`` takes the S-space style
    ``s = modulation(w)`` [B, in_ch] directly, so S-space edits enter here.

    x: [B, in_ch, H, W] -> [B, out_ch, H', W'] (H' = 2H when ``upsample``).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, demodulate: bool = True,
                 upsample: bool = False, blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_ch, out_ch, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        if upsample:
            factor = 2
            p = (len(blur_taps) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_taps, ((p + 1) // 2 + factor - 1, p // 2 + 1), gain=factor**2)

    def forward(self, x: torch.Tensor, s: torch.Tensor, mode: str = "activation", in_gain: float = 1.0
                ) -> torch.Tensor:
        """``in_gain``: a scalar the true input is ``x`` times (activation form only)."""
        if mode == "activation":
            return self.forward_activation(x, s, in_gain)
        if in_gain != 1.0:
            raise ValueError("in_gain is for the activation form only")
        if mode == "grouped":
            return self.forward_grouped(x, s)
        raise ValueError(f"modulated conv mode must be one of {MODCONV_MODES}, got {mode!r}")

    def freeze(self) -> None:
        """Precompute the constants of the activation form as (non-persistent) buffers, so an
        exported graph holds the conv weights as initializers instead of ``weight * scale``
        subgraphs. Only for export copies: later weight changes do not reach the buffers."""
        w = (self.weight[0] * self.scale).detach()
        self.register_buffer("frozen_weight", (w.transpose(0, 1) if self.upsample else w).contiguous(),
                             persistent=False)
        self.register_buffer("frozen_wsq_t", self._wsq_t(), persistent=False)
        if self.upsample:
            self.blur.freeze(self.out_channel)

    def _wsq_t(self) -> torch.Tensor:
        # [in, out]: sum over the kernel taps of (scale * W)^2, a constant of the layer
        return (self.weight[0].detach().float() * self.scale).square().sum(dim=(2, 3)).t().contiguous()

    def demod_coefficients(self, s: torch.Tensor) -> torch.Tensor:
        """[B, out_ch] fp32: ``rsqrt(sum_{i,k} (scale * W[o,i,k] * s[i])^2 + 1e-8)``."""
        wsq_t = getattr(self, "frozen_wsq_t", None)
        if wsq_t is None:
            wsq_t = (self.weight[0].float() * self.scale).square().sum(dim=(2, 3)).t()
        return torch.rsqrt(s.float().square() @ wsq_t.float() + DEMOD_EPS)

    def forward_activation(self, x: torch.Tensor, s: torch.Tensor, in_gain: float = 1.0) -> torch.Tensor:
        frozen = getattr(self, "frozen_weight", None)
        if frozen is not None:
            weight = frozen.to(x.dtype)  # already transposed for the upsampling conv
        else:
            weight = (self.weight[0] * self.scale).to(x.dtype)
            weight = weight.transpose(0, 1) if self.upsample else weight
        x = x * (s * in_gain if in_gain != 1.0 else s).to(x.dtype)[:, :, None, None]
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            out = out * self.demod_coefficients(s).to(out.dtype)[:, :, None, None]
        return out

    def forward_grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k, o = self.kernel_size, self.out_channel
        weight = self.scale * self.weight * s.view(b, 1, c, 1, 1)  # [B, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + DEMOD_EPS).view(b, o, 1, 1, 1)
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, o, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.reshape(b, o, out.shape[-2], out.shape[-1]))
        out = F.conv2d(x, weight.reshape(b * o, c, k, k), padding=self.padding, groups=b)
        return out.reshape(b, o, out.shape[-2], out.shape[-1])


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with a learned scalar strength (``noise.weight`` [1])."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            return x
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class BiasLeakyReLU(nn.Module):
    """rosinality ``FusedLeakyReLU``: parameter ``bias`` [C]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, gain: bool = True) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias.to(x.dtype), gain=gain)


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> noise -> bias + leaky ReLU (rosinality ``StyledConv``)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, *, upsample: bool = False,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample, blur_taps=blur_taps)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor | None, mode: str = "activation",
                clamp: float | None = None, in_gain: float = 1.0, defer_gain: bool = False) -> torch.Tensor:
        """``defer_gain``: return the activation without its ``sqrt(2)`` (clamped at ``clamp / sqrt(2)``,
        the same bound on the true value); the consumers pass ``in_gain=sqrt(2)``."""
        out = self.activate(self.noise(self.conv(x, s, mode, in_gain), noise), gain=not defer_gain)
        if clamp is None:
            return out
        c = clamp / LRELU_GAIN if defer_gain else clamp
        return out.clamp(-c, c)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation + bias, added to the upsampled skip image."""

    def __init__(self, in_ch: int, style_dim: int, *, upsample: bool = True,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None, mode: str = "activation",
                clamp: float | None = None, in_gain: float = 1.0) -> torch.Tensor:
        out = self.conv(x, s, mode, in_gain) + self.bias.to(x.dtype)
        if clamp is not None:
            out = out.clamp(-clamp, clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """Learned 4x4 input (parameter ``input`` [1, C, 4, 4]), broadcast to the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_like: torch.Tensor) -> torch.Tensor:
        return self.input.to(batch_like.dtype).expand(batch_like.shape[0], -1, -1, -1)
