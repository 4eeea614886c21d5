"""Char-CNN-RNN caption encoder config (pre-trained with DS-SJE for the text-to-image GANs).

Usage::

  python -m launch.text_encoder --config launch/configs/text_encoder.py --workdir runs/text_encoder

  python -m launch.text_encoder --config launch/configs/text_encoder.py \
      --config.data.source=/data/cub --workdir runs/text_encoder_cub

Variants: (none) the embedded captioned faces; ``tiny`` a seconds-long smoke run (tests).
Sections: model (``CharCNNRNN(**model)``), data, optim, eval.

``data.source``: '' (default) the embedded captioned faces; a folder path: a caption
dataset in Reed's (CUB-200-2011, Oxford-102 flowers) or the Face2Text format, prepared by
TFDS under ``data.data_dir`` ('' = TFDS's default) at ``data.image_size``. DS-SJE's
classes are then the dataset's classes (Reed) or each image (Face2Text), and the image
side is the face classifier's features (a stand-in for Reed's GoogLeNet features). The
export records the source; the DCGAN refuses an encoder trained on other data, and its
default ``text.encoder_workdir`` for a folder is ``runs/text_encoder_<folder name>``.
"""

import ml_collections

from zoo.tasks.text_encoder import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The defaults live in the library so the GAN tasks can train the encoder on demand.
  return default_config(arg)
