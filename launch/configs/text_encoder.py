"""Char-CNN-RNN caption encoder config (pre-trained with DS-SJE for the text-to-image GANs).

Usage::

  python -m launch.text_encoder --config launch/configs/text_encoder.py --workdir runs/text_encoder

Variants: (none) the embedded captioned faces; ``tiny`` a seconds-long smoke run (tests).
Sections: model (``CharCNNRNN(**model)``), data, optim, eval.
"""

import ml_collections

from zoo.tasks.text_encoder import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The defaults live in the library so the GAN tasks can train the encoder on demand.
  return default_config(arg)
