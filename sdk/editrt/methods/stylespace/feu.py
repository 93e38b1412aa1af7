"""StyleCLIP-FEU (styleclip-feu.txt §3): the edit direction without a neutral text.

For an instruction t: the template-averaged CLIP text embedding (79 ImageNet templates, as
GetDt) ranks a corpus of CLIP image embeddings by cosine similarity; the ``k`` most similar are
positives, the ``k`` least similar negatives; a linear SVM separates them in CLIP space and its
unit normal (pointing to the positives) replaces Δt in the global-direction mapping
(r = fs3·n, β threshold, max-abs scaling, per-layer code_std, s' = s + α·Δs).

No public implementation exists; choices not fixed by the paper are ours:
the SVM is ``SVC(kernel='linear', C)`` as in InterFaceGAN/StyleCLIP ``train_boundary`` (or
``LinearSVC``), fitted on unit CLIP embeddings with all 2k samples (no validation split).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Sequence

import numpy as np
import torch

from ...config import STYLE_ALPHA_LIMIT, FEUConfig
from ...errors import InputError, NumericalError
from .corpus import CorpusIndex, build_corpus_from_generator
from .editor import StyleEditor
from .global_direction import DirectionMapper
from .result import StyleEditResult, as_strengths
from .text import template_embeddings

log = logging.getLogger(__name__)


def svm_direction(positives: torch.Tensor, negatives: torch.Tensor, *, C: float = 1.0, kind: str = "svc",
                  max_iter: int = 100_000) -> tuple[torch.Tensor, float]:
    """Unit normal [D] of a linear SVM separating ``positives`` [k, D] from ``negatives`` [k, D],
    oriented towards the positives, and the training accuracy."""
    from sklearn.svm import SVC, LinearSVC

    x = torch.cat([positives, negatives]).double().cpu().numpy()
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    if kind == "svc":
        clf = SVC(kernel="linear", C=C, max_iter=-1)
    elif kind == "linear_svc":
        clf = LinearSVC(C=C, max_iter=max_iter, dual="auto")
    else:
        raise InputError(f"unknown SVM kind {kind!r}; use 'svc' or 'linear_svc'")
    clf.fit(x, y)
    w = np.asarray(clf.coef_, dtype=np.float64).ravel()
    if clf.classes_[1] != 1:  # coef_ points towards classes_[1]
        w = -w
    norm = float(np.linalg.norm(w))
    if not math.isfinite(norm) or norm < 1e-12:
        raise NumericalError("the SVM found no separating direction (identical positives and negatives?)")
    return torch.from_numpy(w / norm).float(), float(clf.score(x, y))


class FEU(StyleEditor):
    """StyleCLIP-FEU editor: ``edit(code_or_image, instruction)``, no neutral text.

    corpus: a :class:`CorpusIndex` or the path of one (``editrt corpus build``). Its CLIP model
    must be this editor's. With ``random_init`` and no corpus, an index of generator samples is
    built in memory. Other arguments as :class:`GlobalDirection`.
    """

    method = "feu"
    config_class = FEUConfig

    def __init__(self, generator=None, clip=None, config: FEUConfig | None = None, *, corpus=None,
                 weights=None, random_init: bool = False, seed: int = 0, device="cpu", fs3=None, stats=None,
                 download: bool = False, allow_pickle: bool = False, backend="auto", precision: str | None = None):
        config = config or (FEUConfig.preset("tiny") if random_init and generator is None else FEUConfig())
        super().__init__(generator, clip, config, weights=weights, random_init=random_init, seed=seed,
                         device=device, fs3=fs3, stats=stats, download=download, allow_pickle=allow_pickle,
                         backend=backend, precision=precision)
        if isinstance(corpus, (str, os.PathLike)):
            corpus = CorpusIndex.load(corpus, clip_model=self.clip.name)
        elif corpus is not None:
            corpus.check_clip(self.clip.name)
        elif random_init:
            corpus = build_corpus_from_generator(self.clip, self.generator, max(4 * config.k, 64), seed=seed,
                                                 progress=False)
        else:
            raise InputError("FEU needs a corpus index: build one with `editrt corpus build --folder IMAGES` "
                             "(or --generator NAME --n N) and pass corpus=PATH")
        if len(corpus) == 0:
            raise InputError("the corpus index is empty")
        self.corpus = corpus

    def direction(self, instruction: str, *, k: int | None = None) -> tuple[torch.Tensor, dict]:
        """CLIP direction [D] (unit SVM normal) and retrieval details for ``instruction``."""
        k = self.config.k if k is None else k
        if not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        query = template_embeddings(self.clip, [instruction], engines=self.engines)[0]  # stage: CLIP text
        pos, neg = self.corpus.retrieve(query, k)
        emb = self.corpus.embeddings
        normal, acc = svm_direction(emb[pos], emb[neg], C=self.config.svm_c, kind=self.config.svm,
                                    max_iter=self.config.svm_max_iter)
        info = {"k": k, "svm_train_accuracy": acc, "positives": [self.corpus.items[i] for i in pos.tolist()],
                "negatives": [self.corpus.items[i] for i in neg.tolist()],
                "cos_normal_text": float(normal @ query)}
        return normal, info

    @torch.no_grad()
    def edit(self, code_or_image, target: str, *, alpha: float | Sequence[float] | None = None,
             beta: float | str | None = None, k: int | None = None,
             source_image: torch.Tensor | None = None) -> StyleEditResult:
        """Edit towards the instruction ``target``; alpha/beta/source_image as GlobalDirection.edit."""
        alphas = as_strengths(alpha, self.config.alpha, limit=STYLE_ALPHA_LIMIT, what="alpha")
        dt, info = self.direction(target, k=k)
        mapper = DirectionMapper(self.fs3, self.stats)
        b = mapper.resolve_beta(dt, beta, self.config)
        ds, num_c = mapper.delta(dt, b)
        code, _ = self.encode(code_or_image)  # stage: e4e (photos only)
        source = self.source_images(code, source_image)
        images, codes, source = self._apply(code, ds, alphas, source)  # stage: synthesis
        log.info("FEU %r: beta %.3f, %d channels, svm accuracy %.3f", target, b, num_c, info["svm_train_accuracy"])
        return StyleEditResult(images, codes, source, alphas, num_c, dt, self.method, self.config.to_dict(),
                               {"beta": b, "target": target, **info})


__all__ = ["FEU", "svm_direction"]
