"""Faces attribute-classifier config (the zoo's offline judge of face generators).

Usage::

  python -m launch.face_classifier --config launch/configs/face_classifier.py \
      --workdir runs/face_classifier
  python -m launch.face_classifier --workdir runs/face_classifier --mode eval

Variants (after the colon):
  (none)  32x32 input, trained on faces rendered at 32 and 64 px (alternating steps),
          evaluated at 32 and 64 px. Reaches >= 99.6 % test accuracy on every attribute
          at both sizes in about 6.5 minutes on a busy 2-core CPU.
  tiny    a seconds-long smoke run at 16 px (tests).

Every key can be overridden with ``--config.KEY=VALUE`` (sizes as ``'32,64'``).
"""

import ml_collections

from zoo.tasks.face_classifier import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The defaults live in the library so zoo.eval can train the judge on demand
  # without importing launch/ (imports go launch -> zoo only).
  return default_config(arg)
