"""KL-divergence loss and KL annealing of Sketch-RNN.

Reference: D. Ha and D. Eck, "A Neural Representation of Sketch Drawings",
ICLR 2018 (arXiv:1704.03477), section 3 (eq. 10-11) and the magenta
``sketch_rnn`` implementation. Pure functions of ``jnp`` arrays; no Flax or
training-loop dependency.
"""

from __future__ import annotations

import math
from typing import Union

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = Union[jax.Array, float, int]

__all__ = ["gaussian_kl", "sketch_rnn_kl_loss", "kl_annealing_weight"]


def gaussian_kl(mu: Array, logvar: Array) -> Array:
  """Elementwise ``KL(N(mu, exp(logvar)) || N(0, 1))`` (paper eq. 10).

  ``-1/2 (1 + logvar - mu^2 - exp(logvar))``, evaluated as
  ``1/2 (mu^2 + expm1(logvar) - logvar)`` to keep precision when
  ``logvar`` is near 0.

  In Sketch-RNN the encoder's ``presig`` (``sigma_hat`` in the paper) is this
  log-variance: ``sigma = exp(presig / 2)``.

  Args:
    mu: ``[..., Z]`` posterior means.
    logvar: ``[..., Z]`` posterior log-variances.

  Returns:
    ``[..., Z]`` non-negative KL per latent dimension (nats).
  """
  return 0.5 * (jnp.square(mu) + jnp.expm1(logvar) - logvar)


def sketch_rnn_kl_loss(mu: Array, presig: Array, *, kl_tolerance: float) -> tuple[Array, Array]:
  """Sketch-RNN KL loss with the ``KL_min`` floor (paper eq. 10-11).

  Follows magenta: the elementwise KL is averaged over the batch *and* the
  latent dimensions (``reduce_mean``; the paper's eq. 10 normalises by
  ``N_z`` as well, so this is ``L_KL`` averaged over the batch), then
  floored: ``loss = max(kl, kl_tolerance)``. Below the tolerance the loss is
  constant and its gradient w.r.t. ``mu``/``presig`` is zero, so the
  optimiser stops pushing the KL down.

  Args:
    mu: ``[B, Z]`` posterior means.
    presig: ``[B, Z]`` posterior log-variances (``sigma = exp(presig/2)``).
    kl_tolerance: floor ``KL_min`` (keyword-only; magenta's default 0.2).

  Returns:
    ``(loss, raw_kl)``: scalars; ``raw_kl`` is the unfloored mean KL (for
    logging), ``loss = max(raw_kl, kl_tolerance)``.
  """
  raw_kl = jnp.mean(gaussian_kl(mu, presig))
  loss = jnp.maximum(raw_kl, jnp.asarray(kl_tolerance, raw_kl.dtype))
  return loss, raw_kl


def kl_annealing_weight(
  step: ArrayLike,
  *,
  kl_weight: float,
  kl_weight_start: float,
  kl_decay_rate: float,
) -> Array:
  """KL weight annealing schedule of Sketch-RNN (paper eq. 11, ``eta_step``).

  Magenta's ``sketch_rnn_train.py``::

    w(step) = kl_weight - (kl_weight - kl_weight_start) * kl_decay_rate**step

  i.e. ``w(0) = kl_weight_start`` rising geometrically towards
  ``kl_weight``. Computed as
  ``kl_weight_start + (kl_weight - kl_weight_start) * -expm1(step * log r)``
  (same value; exact at step 0, and ``log r`` is taken in float64 when
  ``kl_decay_rate`` is a Python number, so float32 steps stay accurate).

  Args:
    step: non-negative integer step; a Python int or an (optionally traced)
      integer/float array of any shape. Works under ``jax.jit``.
    kl_weight: final weight (magenta default 0.5).
    kl_weight_start: weight at step 0 (magenta default 0.01).
    kl_decay_rate: per-step decay ``r`` in ``(0, 1]`` (magenta 0.99995).

  Returns:
    float array with the shape of ``step``.
  """
  step_f = jnp.asarray(step).astype(jnp.result_type(float))
  if isinstance(kl_decay_rate, (int, float)):
    if not 0.0 < kl_decay_rate <= 1.0:
      raise ValueError(f"kl_decay_rate must be in (0, 1], got {kl_decay_rate}.")
    log_rate = math.log(kl_decay_rate)
  else:
    log_rate = jnp.log(jnp.asarray(kl_decay_rate, step_f.dtype))
  progress = -jnp.expm1(step_f * log_rate)
  return kl_weight_start + (kl_weight - kl_weight_start) * progress
