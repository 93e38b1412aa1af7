"""StyleGAN2 S-space direction edits: StyleCLIP global directions, StyleCLIP-FEU and DeltaEdit.

- :mod:`.text` — template-averaged CLIP text embeddings and text directions (``GetDt``);
- :mod:`.directions` — CLIP direction -> S delta (``GetBoundary``, ``SplitS``, ``GetDt2``);
- :mod:`.stats` — per-channel S statistics; :mod:`.relevance_matrix` — the relevance matrix fs3;
- :mod:`.corpus` — StyleCLIP-FEU's CLIP image corpus;
- :mod:`.editor` — :class:`StyleEditor`, the base of the three methods; :mod:`.result` — its result;
- :mod:`.global_direction`, :mod:`.feu`, :mod:`.deltaedit` — the methods.
"""

from .corpus import CorpusIndex, build_corpus_from_folder, build_corpus_from_generator
from .directions import NoChannelOverBeta, auto_beta, boundary, relevance, split_delta
from .editor import StyleEditor, relevance_store_path
from .identity import generator_fingerprint, generator_name
from .relevance_matrix import (check_fs3, clip_features_of_generated, compute_relevance, get_fs, load_fs3,
                               to_uint8_truncate)
from .result import StyleEditResult, as_strengths, check_beta, default_batch
from .stats import ChannelStats, channel_stats_for, compute_channel_stats, stats_cache_path
from .text import IMAGENET_TEMPLATES, template_embeddings, text_direction
from .global_direction import DirectionMapper, GlobalDirection  # noqa: E402  (after the base pieces)
from .feu import FEU, svm_direction  # noqa: E402
from .deltaedit import DeltaEdit, deltaedit_clip_input  # noqa: E402

__all__ = ["IMAGENET_TEMPLATES", "template_embeddings", "text_direction", "relevance", "boundary", "NoChannelOverBeta",
           "auto_beta", "split_delta", "ChannelStats", "compute_channel_stats", "channel_stats_for",
           "stats_cache_path", "check_fs3", "load_fs3", "get_fs", "compute_relevance",
           "clip_features_of_generated", "to_uint8_truncate", "CorpusIndex", "build_corpus_from_folder",
           "build_corpus_from_generator", "StyleEditResult", "as_strengths", "check_beta", "StyleEditor",
           "generator_name", "generator_fingerprint", "relevance_store_path", "default_batch",
           "GlobalDirection", "DirectionMapper", "FEU", "svm_direction", "DeltaEdit", "deltaedit_clip_input"]
