"""The faces attribute classifier network (the zoo's offline judge of generators).

:class:`AttributeCNN` is a small CNN with one softmax head per attribute of
:data:`zoo.data.faces.ATTRIBUTES` and a penultimate feature layer (``feature_dim``,
128 by default) used for classifier Fréchet distances. Inputs of any size are accepted:
the network centre-crops the ``min(H, W)`` square (the faces are drawn in that square,
see ``docs/faces.md``) and resizes it to its input size (32x32 by default) with
``jax.image.resize`` (antialiased bilinear), so it can score a generator's output at 32,
64, 128 px or rectangular sizes alike.

Trained by :mod:`zoo.tasks.face_classifier`; used through
:class:`zoo.eval.face_classifier.FaceClassifier`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.data import faces

#: Architecture keys of a classifier config (what :func:`make_model` reads).
MODEL_KEYS = ("input_size", "widths", "convs_per_stage", "feature_dim")


def prepare_images(images: jax.Array, size: int) -> jax.Array:
  """Float images ``[b, H, W, C]`` (C = 1 or 3, in [-1, 1]) -> ``[b, size, size, 3]``.

  Centre-crops the ``min(H, W)`` square, then resizes it (antialiased bilinear) unless it
  already has the right size. One channel is repeated to three.
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"expected images [b, H, W, 1 or 3], got shape {images.shape}")
  b, h, w, c = images.shape
  m = min(h, w)
  top, left = (h - m) // 2, (w - m) // 2
  x = images[:, top : top + m, left : left + m, :].astype(jnp.float32)
  if c == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if m != size:
    x = jax.image.resize(x, (b, size, size, 3), method="linear", antialias=True)
  return x


class AttributeCNN(nn.Module):
  """conv stages (3x3 conv + ReLU, ``convs_per_stage`` times, then 2x2 average pooling),
  flatten, ``Dense(feature_dim)`` + ReLU (the *features*), one ``Dense`` head per attribute.

  ``__call__(images) -> (logits {attribute: [b, K]}, features [b, feature_dim])``; images
  are float in [-1, 1], any size (see :func:`prepare_images`).
  """

  input_size: int = 32
  widths: Sequence[int] = (32, 64, 128)
  convs_per_stage: int = 2
  feature_dim: int = 128
  attribute_sizes: Mapping[str, int] | None = None  # default: faces.ATTRIBUTES

  @nn.compact
  def __call__(self, images):
    sizes = (
      dict(self.attribute_sizes)
      if self.attribute_sizes is not None
      else {k: len(v) for k, v in faces.ATTRIBUTES.items()}
    )
    x = prepare_images(images, self.input_size)
    for i, w in enumerate(self.widths):
      for j in range(self.convs_per_stage):
        x = nn.relu(nn.Conv(w, (3, 3), padding="SAME", name=f"conv{i}_{j}")(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    feats = nn.relu(nn.Dense(self.feature_dim, name="features")(x))
    logits = {k: nn.Dense(n, name=f"head_{k}")(feats) for k, n in sizes.items()}
    return logits, feats


def make_model(model_config: Mapping[str, Any]) -> AttributeCNN:
  """An :class:`AttributeCNN` from the :data:`MODEL_KEYS` of a config (a dict or ConfigDict)."""
  return AttributeCNN(
    input_size=int(model_config["input_size"]),
    widths=tuple(int(w) for w in model_config["widths"]),
    convs_per_stage=int(model_config["convs_per_stage"]),
    feature_dim=int(model_config["feature_dim"]),
  )


def model_config(model: AttributeCNN) -> dict:
  """The :data:`MODEL_KEYS` of ``model`` (JSON-friendly): the inverse of :func:`make_model`."""
  return {
    "input_size": int(model.input_size),
    "widths": [int(w) for w in model.widths],
    "convs_per_stage": int(model.convs_per_stage),
    "feature_dim": int(model.feature_dim),
  }
