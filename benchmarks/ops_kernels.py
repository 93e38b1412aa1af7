"""Fused editrt._C kernels vs the torch reference, side by side: forward+backward time.

Sizes are FlexIT's at 288 px: the VQGAN latent 1x256x18x18 for the l2,1 norm, and the five
LPIPS-VGG feature maps (64x288², 128x144², 256x72², 512x36², 512x18²).

    python benchmarks/ops_kernels.py                       # CPU, 2 threads, fp32
    python benchmarks/ops_kernels.py --device cuda --dtype float16 --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

import editrt.ops as ops

LATENT = (1, 256, 18, 18)
VGG_288 = [(64, 288), (128, 144), (256, 72), (512, 36), (512, 18)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(step: Callable[[], None], device: torch.device, reps: int, warmup: int) -> float:
    """Median wall time of `step` in milliseconds."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def fwd_bwd(fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        fn().sum().backward()
    return step


def compare(name: str, fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor],
            device: torch.device, reps: int, warmup: int) -> dict:
    step = fwd_bwd(fn, leaves)
    with ops.use_kernels(True):
        kernel = time_ms(step, device, reps, warmup)
    with ops.use_kernels(False):
        ref = time_ms(step, device, reps, warmup)
    row = {"case": name, "kernel_ms": round(kernel, 3), "reference_ms": round(ref, 3),
           "speedup": round(ref / kernel, 2)}
    print(f"{name:<34} {kernel:>10.3f} {ref:>12.3f} {ref / kernel:>8.2f}x", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32",
                        choices=["float32", "float16", "bfloat16", "float64"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if not ops.kernel_available(device.type):
        print(f"no editrt._C kernels for {device.type}: {ops.kernel_status()['extension']}",
              file=sys.stderr)
        return 1
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    print(f"device={device} dtype={args.dtype} threads={args.threads} reps={args.reps} "
          f"torch={torch.__version__}")
    print(f"{'forward+backward':<34} {'kernel ms':>10} {'reference ms':>12} {'ratio':>9}")
    rows = []

    z0 = rand(*LATENT)
    z = (z0 + 0.1 * rand(*LATENT)).requires_grad_(True)
    rows.append(compare("l21_norm 1x256x18x18", lambda: ops.l21_norm(z, z0), [z], device,
                        args.reps, args.warmup))

    feats = [rand(1, c, s, s).relu().requires_grad_(True) for c, s in VGG_288]
    target = ops.lpips_prepare_target([rand(1, c, s, s).relu() for c, s in VGG_288])
    weights = [torch.rand(c, generator=gen).to(device) for c, _ in VGG_288]
    for i, (c, s) in enumerate(VGG_288):
        rows.append(compare(f"lpips layer {i} 1x{c}x{s}x{s}",
                            lambda i=i: ops.lpips_distance([feats[i]], [target[i]], [weights[i]]),
                            [feats[i]], device, args.reps, args.warmup))
    rows.append(compare("lpips_distance, all 5 layers",
                        lambda: ops.lpips_distance(feats, target, weights), feats, device,
                        args.reps, args.warmup))

    if args.json:
        record = {"device": str(device), "dtype": args.dtype, "threads": args.threads,
                  "reps": args.reps, "torch": torch.__version__,
                  "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                  "results": rows}
        from editrt.files import atomic_write_json

        atomic_write_json(args.json, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
