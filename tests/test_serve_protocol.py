"""The serving pieces that need no running server: the wire format's value checks, error
payloads through Triton's traceback text, the model callables on real tiny editors (batches,
fusion, per-request errors), server options and the Python-backend stub's library path."""

from __future__ import annotations

import io
import json
import os
import sysconfig

import numpy as np
import pytest
import torch
from PIL import Image

from editrt.errors import EditrtError, InputError, NumericalError
from editrt.serve import protocol as P
from editrt.serve import runtime
from editrt.serve.handlers import ClipHandler, StyleEditHandler, answer
from editrt.serve.loading import ModelSource
from editrt.serve.server import ServeOptions


def _png(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def _request(**values) -> dict[str, np.ndarray]:
    out = {}
    for k, v in values.items():
        if isinstance(v, (str, bytes)):
            out[k] = P.bytes_tensor(v)
        elif isinstance(v, float):
            out[k] = np.array([[v]], np.float32)
        elif isinstance(v, int):
            out[k] = np.array([[v]], np.int64)
        else:
            out[k] = np.asarray(v)
    return out


# -- values ----------------------------------------------------------------------------------------
def test_text_values_are_checked():
    assert P.text_value(P.bytes_tensor("smiling face"), "target") == "smiling face"
    with pytest.raises(InputError, match="empty target"):
        P.text_value(P.bytes_tensor("  "), "target")
    with pytest.raises(InputError, match="1000-byte limit"):
        P.text_value(P.bytes_tensor("a" * 1001), "target")
    with pytest.raises(InputError, match="UTF-8"):
        P.text_value(P.bytes_tensor(b"\xff\xfe"), "target")
    with pytest.raises(InputError, match="finite"):
        P.floats_value(np.array([[1.0, np.nan]], np.float32), "strength")
    with pytest.raises(InputError, match="finite"):
        P.float_value(np.array([[np.inf]], np.float32), "beta")


def test_images_decode_like_imageio_and_bad_bytes_fail():
    rgba = np.random.RandomState(0).randint(0, 255, (40, 48, 4), dtype=np.uint8)
    img = P.decode_image(P.bytes_tensor(_png(rgba, "RGBA")))
    assert img.mode == "RGB" and img.size == (48, 40)  # alpha composited over white, as imageio
    good = _png(rgba[..., :3])
    for data, needle in ((b"", "empty"), (good[:60], "unreadable|truncated|not an image"),
                         (b"GIF89a" + b"\x00" * 20, "unreadable|not an image"), (os.urandom(64), "not an image")):
        with pytest.raises(InputError, match=needle):
            P.decode_image(P.bytes_tensor(data))
    with pytest.raises(InputError, match="smaller|px"):
        P.decode_image(P.bytes_tensor(_png(np.zeros((8, 8, 3), np.uint8))))


def test_error_payload_survives_triton_traceback_text():
    exc = InputError('prompt too long for CLIP (108 tokens > 77): "a a a"\nsecond line {braces}')
    payload = P.error_payload(exc)
    tb = ("Traceback (most recent call last):\n  File \"model.py\", line 5\n"
          f"editrt.serve.protocol.ServedError: {payload}\n\n\n\nAt:\n  model.py(501): execute\n")
    for text in (tb, tb.encode("unicode_escape").decode()):  # as gRPC and HTTP clients show it
        got = P.parse_error(text)
        assert got == {"type": "InputError", "message": str(exc)}
    assert P.error_class("NumericalError") is NumericalError
    assert P.error_class("NoSuchError") is EditrtError and P.error_class("ValueError") is EditrtError
    assert P.parse_error("[400] inference input 'seed' data-type is 'FP64'") is None
    internal = P.parse_error(P.error_payload(RuntimeError("boom")))
    assert internal == {"type": "InternalError", "message": "RuntimeError: boom"}


# -- answer(): one batch, per-request errors --------------------------------------------------------------
def _echo(requests, fail_on="bad"):
    def parse(r):
        text = P.text_value(r["text"], "text")
        if text == fail_on:
            raise InputError("refused")
        return text

    def execute(jobs):
        for i, t in jobs:
            yield i, t.upper()

    def encode(t, n):
        return {"out": P.bytes_tensor(t), "error": P.bytes_tensor(b"")}
    specs = (P.TensorSpec("out", np.bytes_, (1,)), P.ERROR_OUT)
    return answer(requests, parse, execute, encode, specs)


def test_a_lone_failed_request_raises_and_a_batched_one_fails_alone():
    with pytest.raises(P.ServedError) as info:
        _echo([_request(text="bad")])
    assert P.parse_error(str(info.value)) == {"type": "InputError", "message": "refused"}
    out = _echo([_request(text="ok"), _request(text="bad"), _request(text="fine")])
    assert [o["out"][0, 0] for o in out] == [b"OK", b"", b"FINE"]
    assert out[0]["error"][0, 0] == b"" and P.parse_error(out[1]["error"][0, 0].decode())["message"] == "refused"
    with pytest.raises(P.ServedError, match="batch dimension 1"):
        _echo([{"text": np.array([[b"a"], [b"b"]], dtype=object)}])


# -- handlers on a real tiny editor -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def global_editor():
    from editrt.methods.stylespace.global_direction import GlobalDirection

    return GlobalDirection(random_init=True)


def test_style_handler_fuses_equal_edits_and_isolates_bad_ones(global_editor):
    g = global_editor
    handler = StyleEditHandler("global", g, fuse=True)
    reqs = [_request(target="smiling face", seed=1), _request(target="smiling face", seed=2),
            _request(target="", seed=3), _request(target="a face with glasses", seed=1)]
    out = handler(reqs)
    assert len(out) == 4
    assert P.parse_error(out[2]["error"][0, 0].decode())["type"] == "InputError"
    for n, (seed, target) in enumerate(((1, "smiling face"), (2, "smiling face"), (None, None),
                                        (1, "a face with glasses"))):
        if seed is None:
            continue
        ref = g.edit(g.codes_from_seeds([seed]), target)
        got = torch.from_numpy(out[n]["images"][0])
        summary = json.loads(out[n]["summary"][0, 0])
        assert summary["batch"] == {"requests": 4, "fused": 2 if n < 2 else 1}
        if n == 3:  # alone in its group: bitwise the SDK call
            assert torch.equal(got, ref.images[0]) and out[n]["image"][0, 0] == P.encode_png(ref.grid())
        else:
            assert torch.allclose(got, ref.images[0], atol=1e-4, rtol=0)
    unfused = StyleEditHandler("global", g, fuse=False)(reqs[:2])
    for n, seed in enumerate((1, 2)):
        ref = g.edit(g.codes_from_seeds([seed]), "smiling face")
        assert torch.equal(torch.from_numpy(unfused[n]["images"][0]), ref.images[0])


def test_style_handler_checks_sources_and_latents(global_editor):
    handler = StyleEditHandler("global", global_editor)
    with pytest.raises(P.ServedError, match="exactly one source"):
        handler([_request(target="x")])
    with pytest.raises(P.ServedError, match="latent must be"):
        handler([_request(target="x", latent=np.zeros((1, 3, 64), np.float32))])
    with pytest.raises(P.ServedError, match="NaN"):
        handler([_request(target="x", latent=np.full((1, 8, 64), np.nan, np.float32))])
    # fields of other methods are not part of this model's inputs and are ignored by the parser
    assert handler.parse(_request(target="x", seed=1, threshold=0.5)).params == {"target": "x"}


def test_clip_handler_fuses_texts_and_isolates_an_overlong_one(global_editor):
    clip = global_editor.clip
    handler = ClipHandler("clip_text", clip)
    out = handler([_request(text="a face"), _request(text="a " * 100), _request(text="a dog")])
    assert P.parse_error(out[1]["error"][0, 0].decode())["type"] == "InputError"
    for n, text in ((0, "a face"), (2, "a dog")):
        assert torch.allclose(torch.from_numpy(out[n]["embedding"][0]), clip.embed_text([text])[0], atol=1e-6)


# -- options ----------------------------------------------------------------------------------------------
def test_server_options_are_validated():
    assert ServeOptions().host == "127.0.0.1"
    for bad in (dict(methods=("global", "nope")), dict(methods=()), dict(methods=("global", "global")),
                dict(max_batch=0), dict(http_port=9000, grpc_port=9000), dict(http_port=70000),
                dict(drain_timeout_s=0)):
        with pytest.raises(InputError):
            ServeOptions(**bad)
    opts = ServeOptions(http_port=0, grpc_port=0, metrics_port=0).with_free_ports()
    assert len({opts.http_port, opts.grpc_port, opts.metrics_port}) == 3 and 0 not in (opts.http_port,)
    with pytest.raises(InputError, match="not both"):
        ModelSource(toy=True, random_weights=True)
    with pytest.raises(InputError, match="auto runs fp32"):
        ModelSource(precision="fp16")
    with pytest.raises(InputError, match="torch runs fp32"):
        ModelSource(backend="torch", precision="bf16")
    with pytest.raises(InputError, match="backend"):
        ModelSource(backend="tvm")


def test_client_urls():
    from editrt.client import _parse_url

    assert _parse_url("127.0.0.1:8000", None) == ("http", "127.0.0.1:8000")
    assert _parse_url("grpc://127.0.0.1:8001", None) == ("grpc", "127.0.0.1:8001")
    assert _parse_url("localhost:8001", "grpc") == ("grpc", "localhost:8001")
    for url, proto in (("ftp://x:1", None), ("http://x:1", "grpc"), ("x:1", "udp")):
        with pytest.raises(InputError):
            _parse_url(url, proto)


# -- the Python-backend stub's library path ----------------------------------------------------------------
def test_stub_library_path_puts_this_interpreters_lib_first(monkeypatch, tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "libpython3.11.so").write_bytes(b"")
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: {"LIBDIR": str(libdir),
                                                                "LDLIBRARY": "libpython3.11.so"}.get(k, real(k)))
    assert runtime.python_lib_dir() == libdir
    assert runtime.stub_library_path(None) == str(libdir)
    assert runtime.stub_library_path(f"/opt/x{os.pathsep}{libdir}") == f"{libdir}{os.pathsep}/opt/x"
    assert runtime.stub_library_path(f"{libdir}{os.pathsep}/opt/x") is None  # already first
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/cuda/lib")
    with runtime.stub_environment():
        assert os.environ["LD_LIBRARY_PATH"] == f"{libdir}{os.pathsep}/opt/cuda/lib"
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/cuda/lib"
    monkeypatch.delenv("LD_LIBRARY_PATH")
    with runtime.stub_environment():
        assert os.environ["LD_LIBRARY_PATH"] == str(libdir)
    assert "LD_LIBRARY_PATH" not in os.environ


def test_static_interpreter_leaves_the_path_alone(monkeypatch):
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var", lambda k: {"LDLIBRARY": "libpython3.11.a"}.get(k, real(k)))
    assert runtime.python_lib_dir() is None and runtime.stub_library_path("/x") is None


def test_loopback_and_free_ports():
    assert runtime.is_loopback("127.0.0.1") and runtime.is_loopback("::1") and runtime.is_loopback("localhost")
    assert not runtime.is_loopback("0.0.0.0") and not runtime.is_loopback("10.1.2.3")
    a, b = runtime.free_port(), runtime.free_port()
    assert 0 < a < 65536 and 0 < b < 65536


def test_serve_cli_describes_models_without_starting(capsys):
    from editrt.cli import main

    assert main(["serve", "--describe", "--methods", "deltaedit,flexit"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["deltaedit", "flexit", "clip_text", "clip_image"]
    de = {i["name"]: i for i in rows[0]["inputs"]}
    assert de["target"] == {"name": "target", "dtype": "BYTES", "shape": [1], "optional": False}
    assert de["threshold"]["optional"] and "beta" not in de
    with pytest.raises(SystemExit):
        main(["serve", "--methods", "global,bogus", "--describe"])


def test_a_busy_port_is_refused_before_any_model_loads(monkeypatch):
    import socket

    from editrt.serve import server as S

    monkeypatch.setattr(S.EditServer, "_load", lambda self: pytest.fail("models loaded before the port check"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"HTTP port {port} on 127.0.0.1 is not available"):
            S.EditServer(ServeOptions(http_port=port, grpc_port=0, metrics_port=0), ModelSource(random_weights=True))


def test_clip_models_use_the_first_served_methods_clip(tiny_models):
    from types import SimpleNamespace

    from editrt.serve.loading import clip_of

    ensemble = tiny_models["clip"]
    assert clip_of(SimpleNamespace(clip=ensemble)) is ensemble.nets[0]
    assert clip_of(SimpleNamespace(clip=ensemble.nets[0])) is ensemble.nets[0]
