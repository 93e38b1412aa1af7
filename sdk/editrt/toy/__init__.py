"""The toy world: procedural coloured shapes and small trained models, so that FlexIT's edits and
its evaluation protocol run for real offline (``editrt demo``, ``editrt evaluate --toy``).

- :mod:`editrt.toy.world`: the image generator, classes, clusters, captions and queries
- :mod:`editrt.toy.classifier`: the independent judge (accuracy and SFID features)
- :mod:`editrt.toy.train`: seeded training of the tiny CLIP, tiny VQGAN and classifier
  (``scripts/train_toy.py``)
- :mod:`editrt.toy.models`: the shipped weights (``editrt/data/toy``) and FlexIT's toy settings
- :mod:`editrt.toy.demo`: ``editrt demo``'s edit ("red circle" -> "blue circle")
"""
