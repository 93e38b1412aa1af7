"""`editrt serve --toy` end to end: a real Triton server (PyTriton) on free loopback ports with
the trained toy FlexIT models and the seeded random tiny StyleGAN2/CLIP, edits over HTTP and gRPC compared with the same SDK calls, bad
requests, 8 concurrent clients x 50 requests, and SIGTERM while under load (the last test: it
stops the module's server). Every wait and loop is bounded in count and time."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")

from editrt.client import EditClient, png_pixels, triton_metrics  # noqa: E402
from editrt.errors import BackendUnavailable, InputError  # noqa: E402
from editrt.serve.protocol import encode_png  # noqa: E402
from editrt.serve.process import ServerProcess, wait_until  # noqa: E402

STARTUP_S = 300  # model loading + Triton start on a busy CPU
FUSED_TOLERANCE = 1e-4  # max |diff| of a fused-batch edit vs the single SDK call, images in [-1, 1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    s = ServerProcess(["--toy", "--drain-timeout", "10", "--max-batch", "8", "--queue-delay-us", "20000"],
                      startup_s=STARTUP_S, log=tmp / "server.log",
                      env={"OMP_NUM_THREADS": str(torch.get_num_threads()), "EDITRT_HOME": str(tmp / "home")})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def editors():
    """The SDK editors the server runs, built independently in this process."""
    from editrt.methods.flexit import FlexIT
    from editrt.methods.stylespace.deltaedit import DeltaEdit
    from editrt.methods.stylespace.feu import FEU
    from editrt.methods.stylespace.global_direction import GlobalDirection
    from editrt.toy.models import TOY_FLEXIT, load_toy_models

    return {"global": GlobalDirection(random_init=True), "feu": FEU(random_init=True),
            "deltaedit": DeltaEdit(random_init=True),
            "flexit": FlexIT(TOY_FLEXIT, models=load_toy_models().flexit_models())}


def _assert_same_style(served, ref) -> None:
    assert torch.equal(served.images, ref.images)
    assert torch.equal(served.source, ref.source)
    assert torch.equal(served.direction, ref.direction)
    assert served.strengths == ref.strengths and served.channels_changed == ref.channels_changed
    assert all(torch.equal(a.flat(), b.flat()) for a, b in zip(served.codes, ref.codes))
    assert served.extras["png"] == encode_png(ref.grid())  # the PNG `editrt style-edit -o` writes


def test_server_listens_on_loopback_with_every_model(server):
    assert server.ready["http"].startswith("127.0.0.1:") and server.ready["grpc"].startswith("127.0.0.1:")
    assert server.ready["models"] == ["global", "feu", "deltaedit", "flexit", "clip_text", "clip_image"]
    for protocol in ("http", "grpc"):
        with EditClient(server.url(protocol)) as c:
            assert c.is_ready() and c.models() == server.ready["models"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_method_matches_the_sdk_bitwise(server, editors, protocol):
    from editrt.toy.demo import demo_image

    with EditClient(server.url(protocol)) as c:
        g = editors["global"]
        served = c.edit(target="smiling face", seed=3, method="global", strength=[2.0, 4.0], beta=0.1)
        _assert_same_style(served, g.edit(g.codes_from_seeds([3]), "smiling face", alpha=[2.0, 4.0], beta=0.1))
        w = g.generator.mapping(torch.from_numpy(np.random.RandomState(7).randn(1, g.generator.style_dim)).float())
        wplus = w[:, None].expand(1, g.generator.n_latent, -1).contiguous()
        _assert_same_style(c.edit(target="a face with glasses", latent=wplus[0], method="global"),
                           g.edit(wplus, "a face with glasses"))
        f = editors["feu"]
        _assert_same_style(c.edit(target="smiling face", seed=5, method="feu", k=4),
                           f.edit(f.codes_from_seeds([5]), "smiling face", k=4))
        d = editors["deltaedit"]
        _assert_same_style(c.edit(target="smiling face", seed=5, method="deltaedit", strength=1.5, threshold=0.01),
                           d.edit(d.codes_from_seeds([5]), "smiling face", strength=1.5, threshold=0.01))
        photo = (demo_image() * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        _assert_same_style(c.edit(photo, "smiling face", method="deltaedit"), d.edit(photo, "smiling face"))
        fx = c.edit(photo, "red circle", source="orange circle", method="flexit", steps=2, seed=1)
        ref = editors["flexit"].edit(photo, "orange circle", "red circle", steps=2, seed=1)
        assert torch.equal(fx.images, ref.images) and len(fx.history) == 2
        assert fx.history[-1]["loss"] == ref.history[-1]["loss"] and fx.config == ref.config
        clip = g.clip
        assert torch.equal(c.embed_text("a face"), clip.embed_text(["a face"])[0])


def test_editrt_client_command_writes_what_style_edit_writes(server, editors, tmp_path, capsys):
    from editrt.cli import main
    from editrt.imageio import save_image
    from editrt.toy.demo import demo_image

    out = tmp_path / "served.png"
    argv = ["client", "--url", server.url("grpc"), "--method", "global", "--seed", "3", "--target", "smiling face",
            "--alpha", "1,3", "-o", str(out)]
    assert main(argv) == 0 and "channels changed" in capsys.readouterr().out
    g = editors["global"]
    ref = tmp_path / "sdk.png"
    g.edit(g.codes_from_seeds([3]), "smiling face", alpha=[1.0, 3.0]).save(ref)
    assert out.read_bytes() == ref.read_bytes()
    assert json.loads((tmp_path / "served.png.json").read_text())["strengths"] == [1.0, 3.0]
    photo = tmp_path / "circle.png"
    save_image(demo_image(), photo)
    flex = tmp_path / "flexit.png"
    assert main(["client", "--url", server.url("http"), "--method", "flexit", "--image", str(photo), "--source",
                 "orange circle", "--target", "red circle", "--steps", "2", "-o", str(flex)]) == 0
    flex_ref = tmp_path / "flexit_ref.png"
    editors["flexit"].edit(photo, "orange circle", "red circle", steps=2).save(flex_ref)
    assert flex.read_bytes() == flex_ref.read_bytes()
    assert main(["client", "--url", server.url("http"), "--status"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"][0] == "global"
    assert main(["client", "--url", "127.0.0.1:1", "--status"]) == 6  # nothing listens there
    assert main(["client", "--url", server.url("http"), "--method", "global", "--seed", "1", "--target", "",
                 "-o", str(tmp_path / "x.png")]) == 2 and not (tmp_path / "x.png").exists()


def _bad_requests(photo_png: bytes):
    yield "empty prompt", dict(target="   ", seed=1), "empty target"
    yield "over-long prompt", dict(target="x" * 5000, seed=1), "over the 1000-byte limit"
    yield "too many tokens", dict(target="a " * 100, seed=1), "too long for CLIP"
    yield "NaN strength", dict(target="ok", seed=1, strength=float("nan")), "finite"
    yield "corrupt image", dict(target="ok", image=photo_png[: len(photo_png) // 2]), "image"
    yield "random bytes", dict(target="ok", image=b"\x00garbage" * 10), "not an image"
    yield "wrong latent shape", dict(target="ok", latent=np.zeros((3, 5), np.float32)), "latent must be"
    yield "NaN latent", dict(target="ok", latent=np.full((1, 64), np.nan, np.float32)), "NaN"
    yield "out-of-range beta", dict(target="ok", seed=1, beta=2.0), "beta"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_editrt_errors_and_the_server_keeps_serving(server, protocol):
    from editrt.toy.demo import demo_image

    photo_png = encode_png(demo_image())
    with EditClient(server.url(protocol)) as c:
        for what, kwargs, needle in _bad_requests(photo_png):
            with pytest.raises(InputError, match=needle):
                c.edit(method="global", **kwargs)
            assert c.edit(target="smiling face", seed=2, method="global").images.shape[0] == 1, what
        # wrong dtype and shape are refused by Triton itself before any editrt code runs
        with pytest.raises(InputError, match="FP64|data-type|datatype"):
            c.infer("global", {"target": np.array([[b"ok"]], dtype=object), "seed": np.array([[1.0]])})
        with pytest.raises(InputError):
            c.infer("global", {"target": np.array([[b"ok"]], dtype=object),
                               "seed": np.zeros((1, 2, 2), dtype=np.int64)})
        with pytest.raises(InputError, match="exactly one source"):
            c.infer("global", {"target": np.array([[b"ok"]], dtype=object), "seed": np.array([[1]], np.int64),
                               "latent": np.zeros((1, 1, 64), np.float32)})
        with pytest.raises(InputError, match="steps must lie"):
            c.edit(photo_png, "red", source="orange", method="flexit", steps=-1)
        assert c.edit(target="smiling face", seed=2, method="global").channels_changed > 0


def _load(url: str, clients: int, per_client: int, seeds: list[int], results: list, deadline: float,
          stop: threading.Event | None = None) -> list[threading.Thread]:
    """Clients sending global edits; every attempt is recorded before it is sent and gets its
    outcome (result or exception, of any type) when it returns."""
    def worker(n: int) -> None:
        with EditClient(url, timeout_s=60) as c:
            for j in range(per_client):
                if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                    return
                seed = seeds[(n * per_client + j) % len(seeds)]
                record = {"client": n, "seed": seed, "sent": time.monotonic()}
                results.append(record)
                try:
                    record["result"] = c.edit(target="smiling face", seed=seed, method="global")
                except Exception as exc:  # noqa: BLE001 - the test checks the types
                    record["error"] = exc
                record["done"] = time.monotonic()
                if "error" in record and stop is not None:
                    return
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    return threads


def test_eight_concurrent_clients_fifty_requests_each(server, editors):
    g = editors["global"]
    seeds = list(range(10))
    refs = {s: g.edit(g.codes_from_seeds([s]), "smiling face") for s in seeds}
    results: list = []
    threads = _load(server.url("grpc"), 8, 50, seeds, results, time.monotonic() + 150)
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 400 and all("done" in r for r in results), "requests left unanswered"
    errors = [r["error"] for r in results if "error" in r]
    assert not errors, errors[:3]
    worst, fused = 0.0, 0
    for rec in results:
        r, ref = rec["result"], refs[rec["seed"]]
        worst = max(worst, float((r.images - ref.images).abs().max()))
        fused += r.extras["served"]["fused"] > 1
        if r.extras["served"]["fused"] == 1:
            _assert_same_style(r, ref)
        else:  # fused batch: float rounding of batched convolutions only
            assert torch.allclose(r.images, ref.images, atol=FUSED_TOLERANCE, rtol=0)
            assert np.abs(png_pixels(r.extras["png"]).astype(int) - png_pixels(encode_png(ref.grid()))).max() <= 1
    assert worst <= FUSED_TOLERANCE
    m = triton_metrics(server.metrics_url)["global"]
    assert m["nv_inference_count"] >= 400 and m["nv_inference_exec_count"] <= m["nv_inference_count"]
    assert fused > 0 and m["nv_inference_exec_count"] < m["nv_inference_count"]  # Triton formed batches > 1


def test_sigterm_under_load_answers_every_request_then_stops(server, editors):
    """Last test of the module: it stops the shared server."""
    g = editors["global"]
    seeds = list(range(4))
    refs = {s: g.edit(g.codes_from_seeds([s]), "smiling face") for s in seeds}
    results: list = []
    stop = threading.Event()
    threads = _load(server.url("http"), 8, 200, seeds, results, time.monotonic() + 90, stop)
    assert wait_until(lambda: len(results) >= 40, timeout_s=60)
    t_sig = time.monotonic()
    server.terminate()
    rc, output = server.wait(timeout_s=60)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a client waited forever"
    assert rc == 0
    assert '{"stopped": true}' in output
    assert all("done" in r for r in results), "a request was left without an answer"
    ok = [r for r in results if "result" in r]
    failed = [r for r in results if "error" in r]
    assert len(ok) >= 40
    for r in ok:
        assert torch.allclose(r["result"].images, refs[r["seed"]].images, atol=FUSED_TOLERANCE, rtol=0)
    # requests sent before the signal were drained (answered with an edit), not dropped
    early = [r for r in results if r["sent"] < t_sig - 0.05]
    assert early and all("result" in r for r in early), [r["error"] for r in early if "error" in r][:3]
    # after the drain the server refuses: clients get editrt's BackendUnavailable, not a hang (the
    # load threads may all have been answered before it stopped, so one more request is sent here)
    assert all(isinstance(r["error"], BackendUnavailable) for r in failed), \
        [type(r["error"]).__name__ for r in failed][:5]
    with EditClient(server.url("http"), timeout_s=10) as c, pytest.raises(BackendUnavailable):
        c.edit(target="smiling face", seed=0, method="global")
    assert all(r["done"] - r["sent"] < 60 for r in results)
