"""Artifact store: exported ONNX graphs and TensorRT plans, keyed so that nothing stale loads.

Layout under the store root (default ``engines/``)::

    manifest.json                         index: slot -> key, files (size + sha256), build report
    clip__ViT-B-32__image/fp16-onnx-<w>/  one slot per (spec, precision, kind, weights); <w> is a
        model.onnx                        short hash of the weights identity
    clip__ViT-B-32__image/fp16-plan-<w>/
        model.plan
    timing_cache/trt<version>-<gpu>.cache TensorRT timing cache, kept between builds
    ort_trt_cache/...                     engine + timing caches of onnxruntime's TensorRT EP

Each artifact's key holds the spec name, a hash of the spec's signature (I/O, profile,
fp32_ops), the weights identity, precision, opset and the library versions (and, for plans, the
TensorRT version and the GPU name + compute capability). Only the fields that can change the
artifact are compared (:data:`RELEVANT`); a mismatch is reported field by field. Files are
written to a temporary folder and moved into place; the manifest is rewritten atomically under
a file lock, so concurrent builders and readers never see half an artifact.

Two models of one spec (say two fine-tuned VQGANs) keep one slot each, so they do not evict each
other on every use; at most :data:`MAX_SLOTS_PER_SPEC` weights per (spec, precision, kind) are
kept, the least recently used going first. Build folders carry the builder's pid
(``.staging-<pid>-*``, ``.<slot>.new-<pid>-*``): folders of processes that died (SIGKILL,
power loss) are removed by the next build into the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from ..errors import EngineError
from ..files import atomic_write_json, publish_mode

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
MAX_SLOTS_PER_SPEC = 4  # weights kept per (spec, precision, kind); least recently used evicted
# build folders left by a process that no longer runs (pid in the name); legacy names after a day
_BUILD_DIR = re.compile(r"^\.(?:staging-|.+\.(?:new|old)-)(\d+)(?:-|$)")
_LEGACY_BUILD_DIR = re.compile(r"^\.(?:staging-|.+\.(?:new|old)-)")
_LEGACY_MAX_AGE_S = 24 * 3600
PRECISIONS = ("fp32", "fp16", "bf16")
KINDS = ("onnx", "plan")

# Key fields that can change each kind of artifact. The others are recorded for information.
RELEVANT: dict[str, tuple[str, ...]] = {
    "onnx": ("spec", "signature", "weights", "precision", "opset", "torch", "onnx", "editrt"),
    "plan": ("spec", "signature", "weights", "precision", "opset", "torch", "onnx", "editrt",
             "tensorrt", "gpu", "compute_capability"),
}


def default_root() -> Path:
    """``$EDITRT_ENGINES``; else ``./engines`` when that folder exists (the repository's store);
    else ``$EDITRT_HOME/engines`` (``~/.cache/editrt/engines``), so that a default run elsewhere
    leaves nothing in the working directory."""
    from ..known_files import editrt_home

    if os.environ.get("EDITRT_ENGINES"):
        return Path(os.environ["EDITRT_ENGINES"]).expanduser()
    return Path("engines") if Path("engines").is_dir() else editrt_home() / "engines"


# -- environment ------------------------------------------------------------------------------

def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on ("" when not installed)."""
    from .. import __version__

    out = {"editrt": __version__, "torch": torch.__version__}
    for mod in ("onnx", "onnxruntime", "tensorrt"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an absent or broken install counts as absent
            out[mod] = ""
    return out


def gpu_identity(device: torch.device | str | None = None) -> dict[str, str]:
    """Name and compute capability of the CUDA device (empty strings without one)."""
    if not torch.cuda.is_available():
        return {"gpu": "", "compute_capability": ""}
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type != "cuda":
        dev = torch.device("cuda")
    major, minor = torch.cuda.get_device_capability(dev)
    return {"gpu": torch.cuda.get_device_name(dev), "compute_capability": f"{major}.{minor}"}


def spec_signature(spec) -> str:
    """Hash of what a spec declares about its graph: I/O names, dtypes, shapes, profile, fp32_ops."""
    desc = {
        "inputs": [(t.name, list(t.shape), str(t.dtype)) for t in spec.inputs],
        "outputs": [(t.name, list(t.shape), str(t.dtype)) for t in spec.outputs],
        "profile": {k: list(v) for k, v in sorted(spec.profile.items())},
        "fp32_ops": list(spec.fp32_ops),
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


# -- weights identity -------------------------------------------------------------------------

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _cached_file_hash(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_sha256(path)
    return _FILE_HASHES[key]


def checkpoint_keys(spec_name: str) -> list[str]:
    """Known checkpoint keys a spec's weights come from: its family (``clip/ViT-B-32`` for
    ``clip/ViT-B-32/image``) and the keys below it (``vqgan/tiny/config``, ``deltaedit/ffhq/mapper``)."""
    from ..weights import known_files

    family = spec_name.rsplit("/", 1)[0]
    keys = [k for k in known_files() if k == family or k.startswith(family + "/")]
    return sorted(keys, key=lambda k: (k != family and k != spec_name, k))


def weights_identity(spec_name: str, *, weights=None, random_init: bool = False, seed: int = 0) -> str:
    """A string that changes whenever the weights a spec would be built with change.

    Random weights: ``random-init:seed=N``. Otherwise the sha256 of every checkpoint file the
    spec resolves (cached per path, size and mtime). Raises WeightsError like the loaders when
    the main checkpoint is missing.
    """
    if random_init:
        return f"random-init:seed={int(seed)}"
    from ..errors import WeightsError
    from ..weights import resolve

    keys = checkpoint_keys(spec_name)
    if not keys:
        raise EngineError(f"no known checkpoint for {spec_name}; pass the module itself (module=...) "
                          f"so its weights are hashed, or use random weights")
    parts, first_error = [], None
    for k in keys:
        try:
            p = resolve(k, weights=weights)
        except WeightsError as exc:
            first_error = first_error or exc
            continue
        parts.append(f"{k}={_cached_file_hash(p)}")
    if not parts:
        raise first_error
    return "files:" + hashlib.sha256(";".join(parts).encode()).hexdigest()[:24]


def module_identity(module: torch.nn.Module) -> str:
    """sha256 over a module's state_dict (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()[:24]


# -- keys -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ArtifactKey:
    """Everything an artifact depends on. ``kind`` is "onnx" or "plan"."""

    spec: str
    kind: str
    precision: str
    weights: str
    signature: str
    opset: int
    versions: tuple[tuple[str, str], ...]
    device: tuple[tuple[str, str], ...] = ()

    @classmethod
    def create(cls, spec, kind: str, precision: str, weights: str, *, opset: int,
               device: torch.device | str | None = None) -> "ArtifactKey":
        if kind not in KINDS:
            raise EngineError(f"unknown artifact kind {kind!r}; use one of {KINDS}")
        if precision not in PRECISIONS:
            raise EngineError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
        dev = tuple(sorted(gpu_identity(device).items())) if kind == "plan" else ()
        return cls(spec=spec.name, kind=kind, precision=precision, weights=weights,
                   signature=spec_signature(spec), opset=int(opset),
                   versions=tuple(sorted(library_versions().items())), device=dev)

    def fields(self) -> dict[str, Any]:
        out = {"spec": self.spec, "kind": self.kind, "precision": self.precision, "weights": self.weights,
               "signature": self.signature, "opset": self.opset}
        out.update(dict(self.versions))
        out.update(dict(self.device))
        return out

    @property
    def slot(self) -> str:
        weights = hashlib.sha256(self.weights.encode()).hexdigest()[:10]
        return f"{self.family_slot}-{weights}"

    @property
    def family_slot(self) -> str:
        """The slot name without the weights: shared by every weights of (spec, precision, kind)."""
        return f"{self.spec.replace('/', '__')}/{self.precision}-{self.kind}"


def key_differences(stored: Mapping[str, Any], current: ArtifactKey) -> list[str]:
    """Human-readable list of the relevant fields that differ."""
    now = current.fields()
    diffs = []
    for f in RELEVANT[current.kind]:
        if str(stored.get(f, "")) != str(now.get(f, "")):
            diffs.append(f"{f}: artifact has {stored.get(f, '')!r}, now {now.get(f, '')!r}")
    return diffs


# -- the store --------------------------------------------------------------------------------

@dataclasses.dataclass
class Artifact:
    """A verified artifact in the store."""

    key: ArtifactKey
    folder: Path
    files: dict[str, Path]
    report: dict[str, Any]

    @property
    def path(self) -> Path:
        """The main file (``model.onnx`` or ``model.plan``)."""
        return self.files[f"model.{self.key.kind}"]


class ArtifactStore:
    """A folder of artifacts with a manifest. See the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    # -- manifest ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"format": FORMAT, "artifacts": {}}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise EngineError(f"{self.manifest_path} is unreadable ({exc}); delete it and the artifacts "
                              f"next to it, then rebuild with `editrt export`") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("artifacts"), dict):
            raise EngineError(f"{self.manifest_path} is not an editrt manifest (format {FORMAT}); "
                              f"use another --out folder or delete it")
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                import fcntl

                fcntl.flock(fh, fcntl.LOCK_EX)
            except ImportError:  # non-POSIX: single-process use only
                pass
            yield

    def _write_manifest(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, data, sort_keys=True)

    # -- lookup -----------------------------------------------------------------------------
    def lookup(self, key: ArtifactKey, *, verify_hash: bool = True) -> Artifact | None:
        """The artifact for ``key``; None when its slot is empty.

        Raises EngineError when the slot holds an artifact built from something else (naming
        each differing field), a file not in the manifest, or a corrupt/truncated file.
        """
        folder = self.root / key.slot
        entry = self.manifest()["artifacts"].get(key.slot)
        if entry is None:
            if folder.exists() and any(folder.iterdir()):
                raise EngineError(f"{folder} holds files that {self.manifest_path} does not list "
                                  f"(foreign or half-copied artifact); delete the folder or rebuild")
            return None
        diffs = key_differences(entry.get("key", {}), key)
        if diffs:
            raise EngineError(f"stale artifact {folder} for {key.spec} ({key.precision} {key.kind}): "
                              + "; ".join(diffs)
                              + ". Rebuild it with `editrt export` (or allow rebuilding on first use)")
        files = {}
        for name, info in entry.get("files", {}).items():
            p = folder / name
            if not p.exists():
                raise EngineError(f"artifact file {p} is missing (listed in {self.manifest_path}); rebuild it")
            size = p.stat().st_size
            if size != info["size"]:
                raise EngineError(f"artifact file {p} is corrupt or truncated: {size} bytes, "
                                  f"manifest says {info['size']}; rebuild it")
            if verify_hash and file_sha256(p) != info["sha256"]:
                raise EngineError(f"artifact file {p} is corrupt: its sha256 differs from the manifest; rebuild it")
            files[name] = p
        return Artifact(key=key, folder=folder, files=files, report=dict(entry.get("report", {})))

    def other_weights(self, key: ArtifactKey) -> list[str]:
        """For each stored artifact of ``key``'s spec, precision and kind but another slot
        (other weights): what differs, as :func:`key_differences` names it."""
        out = []
        for slot, entry in sorted(self.manifest()["artifacts"].items()):
            if slot != key.slot and slot.rsplit("-", 1)[0] == key.family_slot:
                out.append("; ".join(key_differences(entry.get("key", {}), key)) or slot)
        return out

    def touch(self, key: ArtifactKey) -> None:
        """Record that ``key``'s artifact was just used (least-recently-used eviction). Best
        effort: a read-only store still loads, it only keeps its old order."""
        try:
            with self._locked():
                data = self.manifest()
                entry = data["artifacts"].get(key.slot)
                if entry is not None:
                    entry["last_used"] = time.time()
                    self._write_manifest(data)
        except OSError as exc:
            log.debug("could not record the use of %s: %s", key.slot, exc)

    def status(self, key: ArtifactKey) -> tuple[str, str]:
        """("ok" | "missing" | "stale", message) without raising."""
        try:
            art = self.lookup(key, verify_hash=False)
        except EngineError as exc:
            return "stale", str(exc)
        return ("ok", str(art.folder)) if art else ("missing", f"no artifact in {self.root / key.slot}")

    # -- write ------------------------------------------------------------------------------
    def staging(self) -> tempfile.TemporaryDirectory:
        """A temporary folder on the store's file system, for building files before :meth:`put`.
        Build folders that dead processes left behind are removed first."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_abandoned()
        return tempfile.TemporaryDirectory(dir=self.root, prefix=f".staging-{os.getpid()}-")

    def remove_abandoned(self) -> list[Path]:
        """Delete ``.staging-*`` / ``.new-`` / ``.old-`` build folders whose process is gone
        (or, for names without a pid, older than a day). Returns what was removed."""
        removed = []
        if not self.root.is_dir():
            return removed
        candidates = [p for p in self.root.iterdir()] + [p for d in self.root.iterdir() if d.is_dir()
                                                          and not d.name.startswith(".") for p in d.iterdir()]
        for p in candidates:
            if not p.is_dir() or not _LEGACY_BUILD_DIR.match(p.name):
                continue
            m = _BUILD_DIR.match(p.name)
            if m is not None:
                abandoned = not _process_alive(int(m.group(1)))
            else:
                try:
                    abandoned = time.time() - p.stat().st_mtime > _LEGACY_MAX_AGE_S
                except OSError:
                    continue
            if abandoned:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
                log.info("removed %s, left by a build that did not finish", p)
        return removed

    def put(self, key: ArtifactKey, files: Mapping[str, str | os.PathLike],
            report: Mapping[str, Any] | None = None) -> Artifact:
        """Move ``files`` (name -> path, usually in :meth:`staging`) into the key's slot."""
        folder = self.root / key.slot
        with self._locked():
            folder.parent.mkdir(parents=True, exist_ok=True)
            new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.new-{os.getpid()}-"))
            try:
                os.chmod(new, publish_mode(directory=True))  # mkdtemp creates 0700
                info = {}
                for name, src in files.items():
                    dst = new / name
                    shutil.move(str(src), dst)
                    info[name] = {"size": dst.stat().st_size, "sha256": file_sha256(dst)}
                old = None
                if folder.exists():
                    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
                    os.replace(folder, old)
                os.replace(new, folder)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
            data = self.manifest()
            data["artifacts"][key.slot] = {
                "key": key.fields(), "files": info, "report": dict(report or {}), "last_used": time.time(),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            for slot in self._least_recently_used(data, key)[MAX_SLOTS_PER_SPEC:]:
                data["artifacts"].pop(slot)
                shutil.rmtree(self.root / slot, ignore_errors=True)
                log.info("evicted %s (more than %d weights of %s)", slot, MAX_SLOTS_PER_SPEC, key.family_slot)
            self._write_manifest(data)
        log.info("stored %s", folder)
        return Artifact(key=key, folder=folder, files={n: folder / n for n in info}, report=dict(report or {}))

    @staticmethod
    def _least_recently_used(data: dict[str, Any], key: ArtifactKey) -> list[str]:
        """Slots of ``key``'s spec, precision and kind, most recently used first."""
        slots = [s for s in data["artifacts"] if s.rsplit("-", 1)[0] == key.family_slot]
        return sorted(slots, key=lambda s: -float(data["artifacts"][s].get("last_used", 0.0)))

    def remove(self, key: ArtifactKey) -> None:
        with self._locked():
            shutil.rmtree(self.root / key.slot, ignore_errors=True)
            data = self.manifest()
            if data["artifacts"].pop(key.slot, None) is not None:
                self._write_manifest(data)

    # -- caches -----------------------------------------------------------------------------
    def timing_cache_path(self, device: torch.device | str | None = None) -> Path:
        """TensorRT timing cache for this TensorRT version and GPU."""
        v = library_versions()["tensorrt"] or "none"
        g = gpu_identity(device)
        slug = "".join(c if c.isalnum() else "-" for c in f"{g['gpu']}-cc{g['compute_capability']}")
        return self.root / "timing_cache" / f"trt{v}-{slug}.cache"

    def ort_trt_cache_dir(self, key: ArtifactKey, device: torch.device | str | None = None) -> Path:
        """Engine/timing cache folder of onnxruntime's TensorRT EP: one per ORT/TRT version and GPU,
        so a cache built elsewhere is never picked up."""
        v = library_versions()
        g = gpu_identity(device)
        slug = "".join(c if c.isalnum() else "-" for c in
                       f"ort{v['onnxruntime']}-trt{v['tensorrt']}-{g['gpu']}-cc{g['compute_capability']}")
        return self.root / "ort_trt_cache" / key.slot / slug


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


__all__ = ["ArtifactStore", "ArtifactKey", "Artifact", "weights_identity", "module_identity",
           "library_versions", "gpu_identity", "spec_signature", "checkpoint_keys", "default_root",
           "PRECISIONS", "RELEVANT", "MAX_SLOTS_PER_SPEC"]
