"""Where checkpoints come from, and how they are read safely.

Resolution order for a named file: explicit path > the user's weights folder or mapping >
the ``EDITRT_HOME`` store (default ``~/.cache/editrt``) > the copy shipped inside the package
(toy-world models) > the known public source, only when the caller asked for a download > a
:class:`WeightsError` naming the file expected and how to get it.

Reading never executes pickled code: ``torch.load(weights_only=True)`` or safetensors. Formats
that need full unpickling (NVIDIA ``.pkl``, old Lightning ``.ckpt`` with custom classes) need
``allow_pickle=True``, which the CLI exposes as ``--allow-pickle``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch

from . import checkpoint_format as fmt
from .errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)

WeightsArg = str | os.PathLike | Mapping[str, str | os.PathLike] | None


@dataclasses.dataclass(frozen=True)
class KnownFile:
    """A checkpoint file the SDK knows: where it lives in the store and where it comes from."""

    key: str  # e.g. "clip/ViT-B-32"
    store_path: str  # relative to EDITRT_HOME (and to a --weights-dir folder)
    url: str | None  # public source, used only when a download is requested
    how_to_get: str  # one line for the error message
    bundled: str | None = None  # shipped inside the installed package, relative to the editrt folder
    # other places in a user's weights folder where the file sits as published (a release's own
    # folder layout), tried after ``store_path``
    folder_layouts: tuple[str, ...] = ()

    @property
    def bundled_path(self) -> Path | None:
        return Path(__file__).resolve().parent / self.bundled if self.bundled else None

    @property
    def origin(self) -> str:
        """Where the file comes from, in words (``editrt weights``)."""
        if self.bundled:
            return f"shipped with editrt ({self.bundled})"
        return f"download: {self.url}" if self.url else f"by hand: {self.how_to_get}"


_KNOWN: dict[str, KnownFile] = {}


def register_known(entry: KnownFile) -> KnownFile:
    _KNOWN[entry.key] = entry
    return entry


def known_files() -> dict[str, KnownFile]:
    """Every checkpoint file any command can use, by key (imports every model family)."""
    from .models import catalog

    catalog.import_all()
    return dict(_KNOWN)


# Files editrt computes into the store (read back by later runs), and the one the user builds.
COMPUTED = (
    ("styleclip/relevance", "relevance matrices computed by `editrt relevance` (style-edit reads them)"),
    ("styleclip/stats", "S-space channel statistics computed on first use (style-edit)"),
)
CORPUS_HOWTO = ("StyleCLIP-FEU corpus index: built with `editrt corpus build --folder DIR -o FILE.safetensors`, "
                "passed as --corpus FILE")


def inventory(weights: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every checkpoint any command can use, found or missing, and the files editrt computed.

    One dict per file: ``key``, ``kind`` ("checkpoint" | "computed" | "user"), ``found``,
    ``path`` (the one found, or where it is expected), ``origin`` (where it comes from),
    ``source`` (download URL or None), ``how_to_get``, ``used_by`` (commands).
    """
    from .models import catalog

    rows = []
    for key, entry in sorted(known_files().items()):
        try:
            path, found = str(resolve(key, weights=weights)), True
        except WeightsError:
            path, found = str(Path(weights or editrt_home()) / entry.store_path), False
        rows.append({"key": key, "kind": "checkpoint", "found": found, "path": path, "origin": entry.origin,
                     "source": entry.url, "how_to_get": entry.how_to_get, "used_by": catalog.used_by(key)})
    for folder, what in COMPUTED:
        files = sorted((editrt_home() / folder).glob("*.safetensors"))
        for f in files or [None]:
            rows.append({"key": f"{folder}/{f.stem}" if f else f"{folder}/*", "kind": "computed",
                         "found": f is not None, "path": str(f or editrt_home() / folder), "origin": what,
                         "source": None, "how_to_get": what, "used_by": "style-edit"})
    rows.append({"key": "styleclip/corpus", "kind": "user", "found": None, "path": "--corpus FILE",
                 "origin": CORPUS_HOWTO, "source": None, "how_to_get": CORPUS_HOWTO,
                 "used_by": "style-edit --method feu"})
    return rows


def editrt_home() -> Path:
    return Path(os.environ.get("EDITRT_HOME", Path.home() / ".cache" / "editrt")).expanduser()


def resolve(key: str, *, path: str | os.PathLike | None = None, weights: WeightsArg = None,
            download: bool = False) -> Path:
    """Return the local path of checkpoint ``key`` (see module docstring for the order)."""
    entry = _KNOWN.get(key)
    candidates: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise WeightsError(f"checkpoint for {key} not found at {p}")
        return p
    if isinstance(weights, Mapping):
        if key in weights:
            p = Path(weights[key]).expanduser()
            if not p.exists():
                raise WeightsError(f"checkpoint for {key} not found at {p} (from the weights mapping)")
            return p
    elif weights is not None and entry is not None:
        folder = Path(weights).expanduser()
        candidates += [folder / rel for rel in (entry.store_path, *entry.folder_layouts)]
    if entry is not None:
        candidates.append(editrt_home() / entry.store_path)
        if entry.bundled_path is not None:
            candidates.append(entry.bundled_path)
    for c in candidates:
        if c.exists():
            return c
    if entry is None:
        raise WeightsError(f"no checkpoint known for {key!r}; pass an explicit path")
    if download and entry.url:
        return _download(entry, editrt_home() / entry.store_path)
    where = " or ".join(str(c) for c in candidates)
    src = f" Source: {entry.url} (or call with download=True / --download)." if entry.url else ""
    raise WeightsError(
        f"missing checkpoint for {key}: expected {where}. {entry.how_to_get}.{src} "
        "For a weight-free smoke run use random_init=True / --random-weights.")


def _download(entry: KnownFile, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", entry.key, entry.url)
    from .files import atomic_path

    try:
        with atomic_path(dest) as tmp:
            torch.hub.download_url_to_file(entry.url, str(tmp), progress=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise WeightsError(f"download of {entry.key} from {entry.url} failed: {exc}") from None
    return dest


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False,
                    stub_globals: tuple[str, ...] = ()) -> Any:
    """Read a checkpoint file without executing code unless ``allow_pickle``.

    ``.safetensors`` -> dict of tensors; ``.npy`` -> a tensor; anything else through
    ``torch.load`` on the CPU. A file that is none of these, truncated, or a pickle that needs
    Python globals raises a WeightsError saying which (and naming the globals).

    stub_globals: module prefixes (``"pytorch_lightning."``) whose classes a weights-only read
    may meet in training state; they are read as inert placeholder classes (nothing of theirs
    is imported or run) instead of refusing the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    kind = fmt.sniff(path)
    if kind in ("empty", "unknown"):
        raise WeightsError(f"{path} is {fmt.describe(path)}")
    if kind == "npy":
        return torch.from_numpy(load_array(path))
    if kind == "safetensors" or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:  # noqa: BLE001 - the format's own errors are opaque; describe the file
            raise WeightsError(f"{path} is not a readable safetensors file: it is {fmt.describe(path)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # noqa: BLE001
        if not allow_pickle and stub_globals:
            stubs = [g for g in fmt.scan_pickle(path).globals if g.startswith(stub_globals)]
            if stubs:
                try:
                    with torch.serialization.safe_globals([(_inert_class(g), g) for g in stubs]):
                        return torch.load(path, map_location="cpu", weights_only=True)
                except Exception as again:  # noqa: BLE001 - report what is still refused
                    exc = again
        raise WeightsError(_unreadable(path, exc, allow_pickle)) from None


def _inert_class(qualified: str) -> type:
    """A class that accepts any constructor arguments and state and does nothing with them."""
    return type(qualified.rsplit(".", 1)[-1], (), {
        "__init__": lambda self, *args, **kwargs: None,
        "__setstate__": lambda self, state: None,
        "__module__": "editrt.weights.inert",
        "__doc__": f"inert stand-in for {qualified} (training state, never imported)"})


def _unreadable(path: Path, exc: Exception, allow_pickle: bool) -> str:
    """Why ``torch.load`` failed, from the file's bytes rather than from the exception alone."""
    what = fmt.describe(path)
    if "truncated" in what or "damaged" in what:
        return f"{path} is {what}; download or copy it again"
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if refused and not allow_pickle:
        scan = fmt.scan_pickle(path)
        name = refused.group(1).rstrip(".")
        if scan.truncated or name not in scan.globals:
            return (f"{path} is {what} whose pickle data is damaged (the loader stopped at a global "
                    f"{name!r} the file does not name); download or copy it again")
        others = [g for g in scan.globals if not g.startswith(("torch.", "collections.", "builtins."))]
        return (f"{path} is {what} that imports the Python global {name!r}, which weights-only loading "
                f"refuses (non-torch globals in the file: {', '.join(others) or name}). If you trust the "
                "file, pass allow_pickle=True (CLI: --allow-pickle); this runs the code those globals name.")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{path} is {what} but cannot be read as a checkpoint: {msg}"


def load_array(path: str | os.PathLike) -> "np.ndarray":
    """Read an ``.npy`` file (never unpickling): numeric arrays only.

    Raises WeightsError for a missing file, a file that is not .npy (saying what it is), a
    truncated one, or an object array (which would need pickle).
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"array file {path} does not exist or is not a file")
    if fmt.sniff(path) != "npy":
        raise WeightsError(f"{path} is not an .npy array: it is {fmt.describe(path)}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise WeightsError(f"{path} is an .npy array of Python objects (it needs pickle); "
                               "a numeric array was expected") from None
        raise WeightsError(f"{path} is a truncated or damaged .npy array ({exc})") from None
    except OSError as exc:
        raise WeightsError(f"{path} is a truncated or damaged .npy array ({exc})") from None


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str,
              strict: bool = True, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state_dict`` into ``module``, with an error listing missing/unexpected keys and shape
    mismatches (the usual sign of a checkpoint for another model or resolution)."""
    own = module.state_dict()
    sd = {k: v for k, v in state_dict.items() if not k.startswith(ignore_prefixes)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if shapes or (strict and (missing or unexpected)):
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:3]}")
        if strict and missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if strict and unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise WeightsError(f"checkpoint does not match {what}: " + "; ".join(parts)
                           + ". Is it the checkpoint of another model, size or resolution?")
    module.load_state_dict(sd, strict=False)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic random init without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
