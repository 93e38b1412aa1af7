"""The toy world: procedural coloured shapes and small trained models, so that FlexIT's edits, the
StyleGAN2 direction edits and their evaluation protocols run for real offline (``editrt demo``,
``editrt evaluate --toy [--family stylespace]``).

- :mod:`editrt.toy.world`: the image generator, classes, clusters, captions and queries
- :mod:`editrt.toy.classifier`: the independent judge (accuracy and SFID features)
- :mod:`editrt.toy.train`: seeded training of the tiny CLIP, tiny VQGAN and classifier
  (``scripts/train_toy.py``)
- :mod:`editrt.toy.stylegan`: the toy StyleGAN2 (config ``toy``, 32 px) and its encoder, trained
  as a VAE whose decoder is the generator (``scripts/train_toy.py --only stylegan2``)
- :mod:`editrt.toy.models`: the shipped weights (``editrt/data/toy``) and FlexIT's toy settings
- :mod:`editrt.toy.demo`: ``editrt demo``'s edit ("orange circle" -> "red circle") by all four methods
"""
