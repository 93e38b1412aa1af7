"""The one list of model families, and the one way to load any of them.

Every family's loader has the same call shape (open_clip ``factory.create_model`` style)::

    load(name, *, weights=None, path=None, random_init=False, seed=0, device="cpu",
         download=False, allow_pickle=False)

``name`` is the architecture (``"ViT-B-32"``, ``"tiny"``, ``"ffhq-1024"``, ...); ``weights`` a
store-like folder, a file, or a ``{key: path}`` mapping; ``path`` an explicit checkpoint file;
``random_init`` seeded random weights instead (never silently). Both the spec registry
(``registry.py``) and the checkpoint list (``weights.known_files``) walk :data:`FAMILIES`, so a
family added here is exportable and listed by ``editrt weights``; a family whose module cannot be
imported is an error naming the missing package, never a family that silently disappears.

:data:`CHECKPOINT_MODULES` are the other modules that declare checkpoint files any command can
use (evaluation backbones, StyleCLIP's relevance matrix); they are imported for the listing only.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from types import ModuleType
from typing import Any, Callable

from ..errors import BackendUnavailable, InputError


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: where its code lives and what it needs."""

    name: str  # spec/key prefix: "clip" -> "clip/ViT-B-32/image", store key "clip/ViT-B-32"
    module: str  # module that builds it and registers its specs and files
    loader: str  # attribute path of its loader in ``module``: "load_clip", "StyleGAN2.load"
    requires: tuple[tuple[str, str], ...] = ()  # (import name, pip name) of third-party packages
    exportable: bool = True  # declares ModelSpecs
    used_by: str = ""  # the commands that load it (for `editrt weights`)


FAMILIES: tuple[Family, ...] = (
    Family("clip", "editrt.models.clip", "load_clip", (("open_clip", "open_clip_torch"),),
           used_by="edit, style-edit, evaluate, relevance, corpus"),
    Family("vqgan", "editrt.models.vqgan", "load_vqgan",
           (("taming", "taming-transformers"), ("omegaconf", "omegaconf")), used_by="edit, evaluate"),
    Family("lpips", "editrt.models.lpips", "load_lpips", (("lpips", "lpips"),), exportable=False,
           used_by="edit, evaluate"),
    Family("stylegan2", "editrt.models.stylegan2", "StyleGAN2.load", used_by="style-edit, relevance, corpus"),
    Family("e4e", "editrt.models.e4e", "Encoder4Editing.load", used_by="style-edit --image"),
    Family("deltaedit", "editrt.models.delta_mapper", "load_delta_mapper", used_by="style-edit --method deltaedit"),
)

# (module, key prefix, commands that use its files)
CHECKPOINT_MODULES: tuple[tuple[str, str, str], ...] = (
    ("editrt.eval.backbones", "eval", "evaluate (accuracy, SFID)"),
    ("editrt.methods.stylespace.relevance_matrix", "styleclip", "style-edit --method global|feu|deltaedit"),
)

LOADER_PARAMETERS: tuple[tuple[str, Any], ...] = (
    ("weights", None), ("path", None), ("random_init", False), ("seed", 0), ("device", "cpu"),
    ("download", False), ("allow_pickle", False))


def family(name: str) -> Family:
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise InputError(f"unknown model family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def _import(module: str, requires: tuple[tuple[str, str], ...], what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        pip = dict(requires).get(top, top)
        raise BackendUnavailable(f"{what} needs the Python package {pip!r}, which is not installed "
                                 f"(pip install {pip}); importing {module} failed: {exc}") from None


def import_family(name: str) -> ModuleType:
    """The family's module (importing it registers its specs and checkpoint files)."""
    fam = family(name)
    return _import(fam.module, fam.requires, f"model family {fam.name!r}")


def import_all() -> None:
    """Import every family and checkpoint module; a missing package raises BackendUnavailable."""
    for fam in FAMILIES:
        import_family(fam.name)
    for module, _, _ in CHECKPOINT_MODULES:
        _import(module, (), f"checkpoint module {module}")


def used_by(key: str) -> str:
    """The commands that read checkpoint ``key`` (``"clip/ViT-B-32"`` -> its family's)."""
    prefix = key.split("/")[0]
    for fam in FAMILIES:
        if fam.name == prefix:
            return fam.used_by
    return next((uses for _, p, uses in CHECKPOINT_MODULES if p == prefix), "")


def loader(name: str) -> Callable[..., Any]:
    """The family's loader function (see the module docstring for its signature)."""
    obj: Any = import_family(name)
    for part in family(name).loader.split("."):
        obj = getattr(obj, part)
    return obj


def load(family_name: str, name: str, **kwargs: Any) -> Any:
    """``load("clip", "ViT-B-32", random_init=True)``: the network of any family by name."""
    unknown = sorted(set(kwargs) - {p for p, _ in LOADER_PARAMETERS})
    if unknown:
        raise InputError(f"unknown loader option(s) {unknown}; known: {[p for p, _ in LOADER_PARAMETERS]}")
    return loader(family_name)(name, **kwargs)


def signature_problems(fn: Callable[..., Any]) -> list[str]:
    """Differences between ``fn``'s signature and the shared loader signature (empty if none)."""
    params = list(inspect.signature(fn).parameters.values())
    problems = []
    if not params or params[0].name != "name" or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        problems.append("the first parameter must be the positional `name`")
    rest = [(p.name, p.default, p.kind) for p in params[1:]]
    want = [(n, d, inspect.Parameter.KEYWORD_ONLY) for n, d in LOADER_PARAMETERS]
    if rest != want:
        problems.append(f"keyword-only parameters {[(n, d) for n, d, _ in rest]} "
                        f"!= {[(n, d) for n, d, _ in want]}")
    return problems


__all__ = ["Family", "FAMILIES", "CHECKPOINT_MODULES", "LOADER_PARAMETERS", "family", "import_family",
           "import_all", "loader", "load", "signature_problems", "used_by"]
