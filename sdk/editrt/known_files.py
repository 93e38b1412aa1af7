"""Every checkpoint file the SDK knows, and where a named one is found (no torch import).

Resolution order for a named file: explicit path > the user's weights folder or mapping >
the ``EDITRT_HOME`` store (default ``~/.cache/editrt``) > the copy shipped inside the package
(toy-world models) > the known public source, only when the caller asked for a download > a
:class:`WeightsError` naming the file expected and how to get it.

The table is plain data so that ``editrt weights`` answers without importing torch, open_clip or
taming; tests check it against the model modules and the libraries it names (the OpenAI CLIP
URLs are open_clip's ``pretrained.get_pretrained_url(name, "openai")``). Reading the files is
``editrt.weights``' job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import WeightsError

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


# -- the table ------------------------------------------------------------------------------------

# OpenAI CLIP releases (clip.available_models(), open_clip spelling) -> URL (OpenAI clip/clip.py _MODELS)
_OPENAI = "https://openaipublic.azureedge.net/clip/models/"
OPENAI_CLIP_URLS = {
    "RN50": _OPENAI + "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": _OPENAI + "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": _OPENAI + "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": _OPENAI + "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": _OPENAI + "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B-32": _OPENAI + "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B-16": _OPENAI + "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L-14": _OPENAI + "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L-14-336": _OPENAI + "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

# taming-transformers README / FlexIT install.sh: the two ImageNet f16 VQGANs (folder shares)
VQGAN_SOURCES = {
    "vqgan_imagenet_f16_1024": "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/files/?p=%2F",
    "vqgan_imagenet_f16_16384": "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2F",
}
# Where a taming checkpoint sits inside a folder, as downloaded or trained: the editrt store,
# the release folders (<dir>/last.ckpt, <dir>/ckpts/last.ckpt) and taming's log folders
# (<dir>/checkpoints/last.ckpt with <dir>/configs/*-project.yaml).
VQGAN_CHECKPOINT_LAYOUTS = ("vqgan/{name}/last.ckpt", "last.ckpt", "checkpoints/last.ckpt", "ckpts/last.ckpt")

# lpips trunks: torchvision's ImageNet classifiers (torchvision/models/vgg.py, alexnet.py)
LPIPS_TRUNK_FILES = {
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
}

ROSINALITY_GENERATORS = {"ffhq-1024": "stylegan2-ffhq-config-f.pt", "church-256": "stylegan2-church-config-f.pt",
                         "cat-256": "stylegan2-cat-config-f.pt", "horse-256": "stylegan2-horse-config-f.pt"}
NVIDIA_GENERATORS = ("afhqdog", "afhqcat")  # stylegan2-ada-pytorch pretrained *.pkl at 512 px

DEIT_NAME = "deit_base_distilled_patch16_384"


def _builtin() -> list[KnownFile]:
    rows = [KnownFile("clip/tiny", "clip/tiny.safetensors", None,
                      "the toy world's tiny CLIP ships with editrt; retrain it with scripts/train_toy.py",
                      bundled="data/toy/clip_tiny.safetensors")]
    rows += [KnownFile(f"clip/{name}", f"clip/{name}.pt", url,
                       f"place OpenAI's {name}.pt (or an open_clip state_dict, with the -quickgelu name for OpenAI "
                       "weights) there") for name, url in OPENAI_CLIP_URLS.items()]
    for name, src in VQGAN_SOURCES.items():
        how = (f"download last.ckpt and model.yaml of {name} from taming-transformers (or pass the "
               "downloaded folder as weights=/--weights-dir)")
        rows += [KnownFile(f"vqgan/{name}", f"vqgan/{name}/last.ckpt", src + "ckpts%2Flast.ckpt&dl=1", how,
                           folder_layouts=VQGAN_CHECKPOINT_LAYOUTS[1:]),
                 KnownFile(f"vqgan/{name}/config", f"vqgan/{name}/model.yaml", src + "configs%2Fmodel.yaml&dl=1", how,
                           folder_layouts=("model.yaml", "configs/model.yaml"))]
    rows.append(KnownFile("vqgan/tiny", "vqgan/tiny/last.ckpt", None,
                          "the toy world's tiny VQGAN ships with editrt; retrain it with scripts/train_toy.py",
                          bundled="data/toy/vqgan_tiny.safetensors", folder_layouts=VQGAN_CHECKPOINT_LAYOUTS[1:]))
    rows += [KnownFile(f"lpips/{net}", f"lpips/{file}", url,
                       f"place torchvision's {file} there (or in a --weights-dir folder, or torch hub's checkpoints "
                       "folder), or pass any .pth with its features.* keys", folder_layouts=(file,))
             for net, (file, url) in LPIPS_TRUNK_FILES.items()]
    rows += [KnownFile(f"stylegan2/{ds}", f"stylegan2/{file}", None,
                       f"Download {file} (rosinality/stylegan2-pytorch README links) or convert NVIDIA's TF "
                       f"stylegan2-{ds.split('-')[0]}-config-f.pkl with rosinality's convert_weight.py")
             for ds, file in ROSINALITY_GENERATORS.items()]
    rows.append(KnownFile("stylegan2/toy", "stylegan2/toy.safetensors", None,
                          "the toy generator ships with editrt (editrt/data/toy/stylegan2_toy.safetensors; "
                          "retrain with scripts/train_toy.py --only stylegan2)"))
    rows += [KnownFile(f"stylegan2/{ds}-512", f"stylegan2/{ds}.pkl",
                       f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/{ds}.pkl",
                       f"NVIDIA stylegan2-ada-pytorch pretrained {ds}.pkl (loading it needs allow_pickle=True)")
             for ds in NVIDIA_GENERATORS]
    rows += [
        KnownFile("e4e/ffhq", "e4e/e4e_ffhq_encode.pt", None,
                  "Download e4e_ffhq_encode.pt (omertov/encoder4editing README, 'Pretrained Models')"),
        KnownFile("deltaedit/ffhq/mapper", "deltaedit/net_face.pth", None,
                  "download net_face.pth (DeltaEdit README, Google Drive link) and place it there"),
        KnownFile("deltaedit/tiny/mapper", "deltaedit/tiny.safetensors", None,
                  "the tiny Delta Mapper has no public weights; use random_init=True"),
        KnownFile("styleclip/ffhq-1024/fs3", "styleclip/ffhq-1024/fs3.npy",
                  "https://github.com/orpatashnik/StyleCLIP/raw/main/global_torch/npy/ffhq/fs3.npy",
                  "take global_torch/npy/ffhq/fs3.npy from the StyleCLIP repository (same file as DeltaEdit's "
                  "models/stylegan2/npy_ffhq/fs3.npy), or compute one with `editrt relevance`"),
        KnownFile("eval/deit", f"eval/{DEIT_NAME}-d0272ac0.pth",
                  f"https://dl.fbaipublicfiles.com/deit/{DEIT_NAME}-d0272ac0.pth",
                  f"place DeiT's {DEIT_NAME}-d0272ac0.pth (facebookresearch/deit) there"),
        KnownFile("eval/inception", "eval/inception_v3_google-0cc3c7bd.pth",
                  "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
                  "place torchvision's inception_v3_google-0cc3c7bd.pth there"),
    ]
    return rows


_KNOWN: dict[str, KnownFile] = {f.key: f for f in _builtin()}


def register_known(entry: KnownFile) -> KnownFile:
    """Add a file to the table (for code outside editrt that brings its own checkpoints)."""
    _KNOWN[entry.key] = entry
    return entry


def known_files() -> dict[str, KnownFile]:
    """Every checkpoint file any command can use, by key."""
    return dict(_KNOWN)


# Files editrt computes into the store (read back by later runs), and the one the user builds.
COMPUTED = (
    ("styleclip/relevance", "relevance matrices computed by `editrt relevance` (style-edit reads them)"),
    ("styleclip/stats", "S-space channel statistics computed on first use (style-edit)"),
)
CORPUS_HOWTO = ("StyleCLIP-FEU corpus index: built with `editrt corpus build --folder DIR -o FILE.safetensors`, "
                "passed as --corpus FILE")


def editrt_home() -> Path:
    return Path(os.environ.get("EDITRT_HOME", Path.home() / ".cache" / "editrt")).expanduser()


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
    from torch.hub import download_url_to_file

    from .files import atomic_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", entry.key, entry.url)
    try:
        with atomic_path(dest) as tmp:
            download_url_to_file(entry.url, str(tmp), progress=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise WeightsError(f"download of {entry.key} from {entry.url} failed: {exc}") from None
    return dest


__all__ = ["KnownFile", "WeightsArg", "register_known", "known_files", "inventory", "resolve", "editrt_home",
           "COMPUTED", "CORPUS_HOWTO", "OPENAI_CLIP_URLS", "VQGAN_SOURCES", "VQGAN_CHECKPOINT_LAYOUTS",
           "LPIPS_TRUNK_FILES", "ROSINALITY_GENERATORS", "NVIDIA_GENERATORS", "DEIT_NAME"]
