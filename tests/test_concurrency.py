"""Thread safety: one onnxruntime-backed editor first used from 8 threads, the kernels switch,
and the artifact store's per-weights slots and abandoned build folders."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from editrt import ops
from editrt.config import FlexITConfig
from editrt.engines.build import build_onnx
from editrt.engines.store import MAX_SLOTS_PER_SPEC, ArtifactStore
from editrt.methods.flexit import FlexIT

THREADS = 8


def _edit(editor, image):
    return editor.edit(image, "a red circle", "a blue square", steps=1, seed=3, progress=False)


@pytest.mark.slow  # four tiny ONNX exports and nine 1-step edits: about 30 s on an idle 2-core machine
def test_eight_threads_first_use_of_one_onnxruntime_editor(tmp_path, monkeypatch):
    """Every engine is exported once (the others wait and reuse it), nothing process-wide is
    broken (stdout stays open), the caller's modules are untouched, and every thread's result is
    bitwise equal to a serial run's."""
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    cfg = FlexITConfig.preset("tiny").replace(n_augment=1)
    monkeypatch.setenv("EDITRT_ENGINES", str(tmp_path / "threads"))
    editor = FlexIT(cfg, random_init=True, backend="onnxruntime")
    params_before = {n: p.detach().clone() for n, p in editor.vqgan.named_parameters()}
    modes_before = {n: m.training for n, m in editor.vqgan.named_modules()}
    grads_before = {n: p.requires_grad for n, p in editor.vqgan.named_parameters()}
    stdout = os.sys.stdout
    barrier = threading.Barrier(THREADS)
    results, errors = [None] * THREADS, []

    def work(i):
        try:
            barrier.wait()
            results[i] = _edit(editor, image)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert os.sys.stdout is stdout and not stdout.closed
    manifest = ArtifactStore(tmp_path / "threads").manifest()["artifacts"]
    assert len(manifest) == 4  # one artifact per spec: exported once, reused by the other threads
    # the serial reference: a fresh editor, one thread, on the artifacts the threads built
    serial = _edit(FlexIT(cfg, random_init=True, backend="onnxruntime"), image)
    assert ArtifactStore(tmp_path / "threads").manifest()["artifacts"].keys() == manifest.keys()
    for r in results:
        assert torch.equal(r.images, serial.images)
        assert r.history == serial.history
    for n, p in editor.vqgan.named_parameters():
        assert torch.equal(p, params_before[n]) and p.requires_grad == grads_before[n], n
    assert {n: m.training for n, m in editor.vqgan.named_modules()} == modes_before


def test_use_kernels_is_per_thread():
    """Two threads switching the kernels never see each other's setting."""
    seen, start = {}, threading.Barrier(2)
    flip = [threading.Event(), threading.Event()]

    def worker(i, enabled):
        start.wait()
        with ops.use_kernels(enabled):
            flip[i].set()
            flip[1 - i].wait(timeout=10)  # the other thread has switched too
            seen[i] = ops.kernels_enabled()
        seen[f"after{i}"] = ops.kernels_enabled()

    for _ in range(20):
        seen.clear()
        for e in flip:
            e.clear()
        before = ops.kernels_enabled()
        ts = [threading.Thread(target=worker, args=(0, False)), threading.Thread(target=worker, args=(1, True))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=20)
        assert seen[0] is False and seen[1] is True
        assert ops.kernels_enabled() == before  # the main thread's setting never moved
    ops.use_kernels(False)
    try:
        t_state = []
        t = threading.Thread(target=lambda: t_state.append(ops.kernels_enabled()))
        t.start()
        t.join()
        assert t_state == [ops._kernels._DEFAULT_ENABLED]  # a plain call switches this thread only
    finally:
        ops.use_kernels(ops._kernels._DEFAULT_ENABLED)


NAME = "stylegan2/tiny/mapping"


def test_store_keeps_one_slot_per_weights_lru_bounded(tmp_path, monkeypatch):
    from editrt.engines import store as store_mod

    monkeypatch.setattr(store_mod, "MAX_SLOTS_PER_SPEC", 2)  # the bound, reached with few exports
    store = ArtifactStore(tmp_path)
    arts = [build_onnx(NAME, store=store, random_init=True, seed=s, verify=False) for s in (0, 1)]
    assert arts[0].folder != arts[1].folder
    for a in arts:  # two weights of one spec: both stay valid, no eviction on alternate use
        assert store.lookup(a.key) is not None
    again = build_onnx(NAME, store=store, random_init=True, seed=0, rebuild=False)
    assert again.folder == arts[0].folder
    build_onnx(NAME, store=store, random_init=True, seed=2, verify=False)
    slots = [s for s in store.manifest()["artifacts"] if s.startswith(NAME.replace("/", "__"))]
    assert len(slots) == 2 and MAX_SLOTS_PER_SPEC >= 2
    assert arts[1].key.slot not in slots  # seed 1: least recently used, evicted
    assert arts[0].key.slot in slots and not arts[1].folder.exists()


def test_abandoned_staging_folders_are_removed(tmp_path):
    store = ArtifactStore(tmp_path)
    dead = 2 ** 22 + 12345  # beyond the default pid range: no such process
    left = [tmp_path / f".staging-{dead}-abc", tmp_path / "x__y" / f".fp32-onnx-1.new-{dead}-q"]
    for p in left:
        p.mkdir(parents=True)
        (p / "model.onnx").write_bytes(b"partial")
    mine = tmp_path / f".staging-{os.getpid()}-live"
    mine.mkdir()
    with store.staging():
        pass
    assert not any(p.exists() for p in left)
    assert mine.exists()  # a build of a running process is never touched
