"""``editrt serve`` (a Triton server of the editors) and ``editrt client`` (one edit from it).

    editrt serve --toy --methods global,flexit            # 127.0.0.1, HTTP 8000, gRPC 8001, metrics 8002
    editrt client --method global --seed 3 --target "smiling face" -o edit.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_args import BACKEND_CHOICES
from ..errors import InputError
from . import protocol as P


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in P.METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown or text!r}; choose from {','.join(P.METHODS)}")
    return names


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_subcommands(sub) -> None:
    from .protocol import DEFAULT_HOST

    p = sub.add_parser("serve", help="serve the editors behind Triton Inference Server (HTTP, gRPC, metrics)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address of every endpoint (default {DEFAULT_HOST}; another address exposes the server)")
    p.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 picks a free port)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--methods", type=_methods, default=P.METHODS, help=f"comma-separated (default {','.join(P.METHODS)})")
    p.add_argument("--no-clip-models", action="store_true", help="do not serve clip_text / clip_image")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="runtime of the forward-only stages (engines built on first use); auto: onnxruntime "
                        "on CPU for direction edits on generators of 512 px and up, else torch")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="engine graph precision")
    p.add_argument("--max-batch", type=int, default=8, help="requests Triton fuses into one model call")
    p.add_argument("--queue-delay-us", type=int, default=5000, help="longest wait for a batch to fill")
    p.add_argument("--no-fuse", action="store_true",
                   help="one SDK call per request even inside a Triton batch (bitwise the SDK call; slower)")
    p.add_argument("--drain-timeout", type=int, default=15, help="seconds requests in flight may finish on SIGTERM")
    p.add_argument("--corpus", type=Path, help="FEU corpus index (needed for feu with real weights)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--toy", action="store_true",
                     help="the trained toy-world models shipped with editrt (FlexIT); tiny random StyleGAN2")
    src.add_argument("--random-weights", action="store_true", help="seeded random tiny networks (smoke runs)")
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--allow-pickle", action="store_true", help="allow checkpoints that need full unpickling")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    p.add_argument("--describe", action="store_true", help="print the models' inputs and outputs as JSON and exit")
    p.set_defaults(func=cmd_serve)

    c = sub.add_parser("client", help="send one edit to an `editrt serve` server and write the result")
    c.add_argument("--url", default="127.0.0.1:8000", help="host:port, http://host:port or grpc://host:port")
    c.add_argument("--grpc", action="store_true", help="host:port is the gRPC port")
    c.add_argument("--method", choices=P.METHODS, default="global", help="served method to call (default global)")
    c.add_argument("--image", type=Path, help="input image (flexit; direction methods invert it with e4e)")
    c.add_argument("--seed", type=int, help="direction methods: generator sample; flexit: optimisation seed")
    c.add_argument("--target", help="text of the wanted result")
    c.add_argument("--source", help="flexit: text describing the input")
    c.add_argument("--neutral", help="global/deltaedit neutral text")
    c.add_argument("--strength", "--alpha", type=_floats, dest="strength", help="strength(s), comma-separated")
    c.add_argument("--beta", type=float, help="disentanglement threshold (global/feu)")
    c.add_argument("--threshold", type=float, help="DeltaEdit channel-mask threshold")
    c.add_argument("--k", type=int, help="FEU: positives/negatives retrieved")
    c.add_argument("--steps", type=int, help="flexit updates")
    c.add_argument("-o", "--output", type=Path, help="output image (.png, ...) and its .json summary")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    c.add_argument("--status", action="store_true", help="print readiness and the served models, then exit")
    c.set_defaults(func=cmd_client)


def cmd_serve(args) -> int:
    from .loading import ModelSource
    from .server import EditServer, ServeOptions, model_config_rows

    options = ServeOptions(methods=args.methods, clip_models=not args.no_clip_models, host=args.host,
                           http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                           max_batch=args.max_batch, queue_delay_us=args.queue_delay_us, fuse=not args.no_fuse,
                           drain_timeout_s=args.drain_timeout)
    if args.describe:
        names = list(options.methods) + (list(P.CLIP_MODELS) if options.clip_models else [])
        print(json.dumps(model_config_rows(names), indent=2))
        return 0
    source = ModelSource(toy=args.toy, random_weights=args.random_weights, weights_dir=args.weights_dir,
                         corpus=args.corpus, backend=args.backend, precision=args.precision, device=args.device,
                         allow_pickle=args.allow_pickle)
    server = EditServer(options, source)

    def ready(s: EditServer) -> None:
        print(json.dumps({"ready": True, "http": s.http_url, "grpc": s.grpc_url, "metrics": s.metrics_url,
                          "models": s.model_names()}), flush=True)
        if args.random_weights or args.toy:
            from ..cli_args import RANDOM_WEIGHTS_WARNING

            print(RANDOM_WEIGHTS_WARNING if args.random_weights else
                  "NOTE: --toy: FlexIT runs the trained toy models; direction methods run a tiny random "
                  "StyleGAN2 (no meaningful face edit).", file=sys.stderr, flush=True)

    server.serve_forever(on_ready=ready)
    print(json.dumps({"stopped": True}), flush=True)
    return 0


def cmd_client(args) -> int:
    from .. import imageio
    from ..client import EditClient

    url = args.url if not args.grpc or "://" in args.url else f"grpc://{args.url}"
    with EditClient(url, timeout_s=args.timeout) as client:
        if args.status:
            ready = client.is_ready()
            print(json.dumps({"ready": ready, "models": client.models() if ready else []}))
            return 0 if ready else 6
        if args.target is None or args.output is None:
            raise InputError("editrt client needs --target and -o/--output (or --status)")
        out = imageio.check_output_path(args.output, inputs=(args.image,) if args.image else ())
        if args.method == "flexit":
            result = client.edit(args.image, args.target, method="flexit", source=args.source, seed=args.seed,
                                 steps=args.steps)
            result.save(out)
            imageio.atomic_write_bytes(out.with_suffix(out.suffix + ".json"),
                                       json.dumps(result.report(), indent=2).encode())
            print(f"flexit: {len(result.history)} steps -> {out}")
        else:
            result = client.edit(args.image, args.target, method=args.method, seed=args.seed, neutral=args.neutral, strength=args.strength, beta=args.beta,
                                 threshold=args.threshold, k=args.k)
            result.save(out)
            print(f"{args.method}: {result.channels_changed} channels changed, strengths {list(result.strengths)} "
                  f"-> {out}")
    return 0


__all__ = ["add_subcommands", "cmd_serve", "cmd_client"]
