"""Mixture-density (MDN) reconstruction losses of Sketch-RNN.

Reference: D. Ha and D. Eck, "A Neural Representation of Sketch Drawings",
ICLR 2018 (arXiv:1704.03477), section 3 (eqs. 3-9). The decoder emits, per
time step, the parameters of an ``M``-component mixture of bivariate normals
for the pen offset ``(dx, dy)`` and three logits for the pen state
``(p1, p2, p3)``. The reconstruction loss is ``L_R = L_s + L_p`` (eq. 9) with

* ``L_s = -1/N_max * sum_{i<=N_s} log(sum_j Pi_j N(dx_i, dy_i | mu, sigma, rho))``
* ``L_p = -1/N_max * sum_{i<=N_max} sum_k p_k,i log q_k,i``

All functions are pure functions of ``jnp`` arrays with keyword-only
hyperparameters; they do not depend on Flax or on any training loop.

Stroke-5 format: each row is ``(dx, dy, p1, p2, p3)`` where ``p1`` = pen down
(keep drawing), ``p2`` = pen up after this point, ``p3`` = end of sketch; rows
after the end of a sketch are padding ``(0, 0, 0, 0, 1)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = Union[jax.Array, float]

_LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
  "MixtureParams",
  "split_mixture_params",
  "bivariate_normal_log_prob",
  "mixture_nll",
  "pen_cross_entropy",
  "sketch_rnn_reconstruction_loss_per_step",
  "sketch_rnn_reconstruction_loss_per_example",
  "sketch_rnn_reconstruction_loss",
]


class MixtureParams(NamedTuple):
  """Per-step decoder distribution parameters (paper eq. 3-6).

  Attributes:
    pen_logits: ``[..., 3]`` unnormalised logits of the pen state
      ``(p1, p2, p3)``; ``q = softmax(pen_logits)`` (eq. 6).
    mixture_logits: ``[..., M]`` unnormalised mixture weights;
      ``Pi = softmax(mixture_logits)`` (eq. 6).
    mu_x: ``[..., M]`` component means of ``dx``.
    mu_y: ``[..., M]`` component means of ``dy``.
    log_sigma_x: ``[..., M]`` log standard deviations of ``dx``
      (``sigma_x = exp(log_sigma_x)``, eq. 6).
    log_sigma_y: ``[..., M]`` log standard deviations of ``dy``.
    rho: ``[..., M]`` correlation coefficients, already squashed with
      ``tanh`` into ``(-1, 1)`` (eq. 6).
  """

  pen_logits: Array
  mixture_logits: Array
  mu_x: Array
  mu_y: Array
  log_sigma_x: Array
  log_sigma_y: Array
  rho: Array


def split_mixture_params(raw: Array, *, num_mixture: int) -> MixtureParams:
  """Splits the decoder output projection into :class:`MixtureParams`.

  The layout follows magenta's ``sketch_rnn`` (``get_mixture_coef``): the
  first 3 entries are the pen-state logits, followed by six contiguous
  chunks of size ``M``, in order: mixture logits (``Pi``), ``mu_x``,
  ``mu_y``, ``log sigma_x``, ``log sigma_y`` and the pre-``tanh``
  correlation. ``tanh`` is applied to the correlation chunk here; the
  sigmas stay in log space (exponentiate them yourself if needed).

  Args:
    raw: ``[..., 3 + 6 * num_mixture]`` output of the decoder's linear
      projection (paper eq. 4: ``y_i = W_y h_i + b_y``).
    num_mixture: number of mixture components ``M`` (keyword-only).

  Returns:
    :class:`MixtureParams` with ``pen_logits`` of shape ``[..., 3]`` and the
    six mixture fields of shape ``[..., M]``.

  Raises:
    ValueError: if ``num_mixture < 1`` or the last dimension of ``raw`` is
      not ``3 + 6 * num_mixture``.
  """
  num_mixture = int(num_mixture)
  if num_mixture < 1:
    raise ValueError(f"num_mixture must be >= 1, got {num_mixture}.")
  raw = jnp.asarray(raw)
  expected = 3 + 6 * num_mixture
  if raw.ndim < 1 or raw.shape[-1] != expected:
    raise ValueError(
      "split_mixture_params expects the last dimension of `raw` to be "
      f"3 + 6 * num_mixture = {expected} (num_mixture={num_mixture}), "
      f"got shape {raw.shape}."
    )
  m = num_mixture
  chunk = lambda k: raw[..., 3 + k * m : 3 + (k + 1) * m]  # noqa: E731
  return MixtureParams(
    pen_logits=raw[..., :3],
    mixture_logits=chunk(0),
    mu_x=chunk(1),
    mu_y=chunk(2),
    log_sigma_x=chunk(3),
    log_sigma_y=chunk(4),
    rho=jnp.tanh(chunk(5)),
  )


def bivariate_normal_log_prob(
  x: ArrayLike,
  y: ArrayLike,
  mu_x: ArrayLike,
  mu_y: ArrayLike,
  log_sigma_x: ArrayLike,
  log_sigma_y: ArrayLike,
  rho: ArrayLike,
  *,
  rho_eps: float = 1e-6,
) -> Array:
  """Elementwise log density of a correlated bivariate normal.

  Implements the log of Graves (2013) eq. 24-25, used by Sketch-RNN eq. 3::

    log N = -log(2 pi) - log s_x - log s_y - 1/2 log(1 - rho^2)
            - Z / (2 (1 - rho^2)),
    Z = n_x^2 + n_y^2 - 2 rho n_x n_y,  n_x = (x - mu_x) / s_x, ...

  computed entirely in log space. ``Z / (1 - rho^2)`` is evaluated in the
  algebraically equal, cancellation-free form
  ``(n_x - rho n_y)^2 / (1 - rho^2) + n_y^2``. ``1 - rho^2`` is computed
  as ``(1 - rho)(1 + rho)`` and floored at ``rho_eps`` with ``maximum``,
  so ``|rho| -> 1`` (e.g. ``tanh(±20) == ±1`` in float32) yields finite
  values and finite gradients (the floor has zero gradient w.r.t. rho
  while active).

  Args:
    x, y: points, broadcastable against the parameters.
    mu_x, mu_y: means.
    log_sigma_x, log_sigma_y: log standard deviations.
    rho: correlation in ``(-1, 1)`` (already ``tanh``-ed).
    rho_eps: lower bound on ``1 - rho^2`` (keyword-only); magenta uses no
      bound. The effect is nil for ``|rho| < sqrt(1 - rho_eps)``.

  Returns:
    The broadcast shape of all inputs, the log density.
  """
  nx = (x - mu_x) * jnp.exp(-log_sigma_x)
  ny = (y - mu_y) * jnp.exp(-log_sigma_y)
  one_minus_rho2 = jnp.maximum((1.0 - rho) * (1.0 + rho), rho_eps)
  quad = jnp.square(nx - rho * ny) / one_minus_rho2 + jnp.square(ny)
  return -_LOG_2PI - log_sigma_x - log_sigma_y - 0.5 * jnp.log(one_minus_rho2) - 0.5 * quad


def _mixture_fields(params):
  if isinstance(params, MixtureParams):
    return (
      params.mixture_logits,
      params.mu_x,
      params.mu_y,
      params.log_sigma_x,
      params.log_sigma_y,
      params.rho,
    )
  params = tuple(params)
  if len(params) != 6:
    raise ValueError(
      "Expected a MixtureParams or a 6-tuple (mixture_logits, mu_x, "
      f"mu_y, log_sigma_x, log_sigma_y, rho); got {len(params)} fields."
    )
  return params


def mixture_nll(
  x: ArrayLike,
  y: ArrayLike,
  params,
  *,
  eps: float = 1e-6,
  rho_eps: float = 1e-6,
) -> Array:
  """Per-step negative log-likelihood of pen offsets under the GMM.

  Paper eq. 3 / the ``L_s`` summand of eq. 9 (before masking)::

    nll = -log(sum_j Pi_j N(x, y | mu_j, sigma_j, rho_j) + eps)

  with ``Pi = softmax(mixture_logits)``. It is evaluated stably as
  ``-logaddexp(logsumexp_j(log_softmax(logits)_j + log N_j), log(eps))``.
  Magenta adds ``eps = 1e-6`` inside the log "to avoid log(0)"; the default
  keeps parity with it, and ``eps=0`` gives the exact NLL. Note that a
  positive ``eps`` caps the loss at ``-log(eps)`` (about 13.8) and damps
  its gradient when the density is tiny.

  Args:
    x, y: ``[...]`` target offsets ``dx, dy``.
    params: a :class:`MixtureParams` (``pen_logits`` is ignored), or a
      6-tuple ``(mixture_logits, mu_x, mu_y, log_sigma_x, log_sigma_y,
      rho)``; each field ``[..., M]``.
    eps: additive floor inside the log (keyword-only, ``>= 0``).
    rho_eps: floor on ``1 - rho^2``, see :func:`bivariate_normal_log_prob`.

  Returns:
    ``[...]`` per-step NLL (nats).
  """
  logits, mu_x, mu_y, log_sx, log_sy, rho = _mixture_fields(params)
  x = jnp.asarray(x)[..., None]
  y = jnp.asarray(y)[..., None]
  log_n = bivariate_normal_log_prob(x, y, mu_x, mu_y, log_sx, log_sy, rho, rho_eps=rho_eps)
  log_pi = jax.nn.log_softmax(logits, axis=-1)
  lse = jax.nn.logsumexp(log_pi + log_n, axis=-1)
  if isinstance(eps, (int, float)):
    if eps < 0:
      raise ValueError(f"eps must be >= 0, got {eps}.")
    if eps == 0:
      return -lse
    return -jnp.logaddexp(lse, math.log(eps))
  return -jnp.logaddexp(lse, jnp.log(eps))


def pen_cross_entropy(pen_logits: Array, pen_targets: Array) -> Array:
  """Softmax cross-entropy of the pen state (the ``L_p`` summand, eq. 9).

  Args:
    pen_logits: ``[..., 3]`` unnormalised logits.
    pen_targets: ``[..., 3]`` one-hot (or soft) targets ``(p1, p2, p3)``.

  Returns:
    ``[...]`` ``-sum_k p_k log softmax(pen_logits)_k``.
  """
  log_q = jax.nn.log_softmax(pen_logits, axis=-1)
  return -jnp.sum(pen_targets * log_q, axis=-1)


def _check_targets(targets: Array) -> Array:
  targets = jnp.asarray(targets)
  if targets.ndim < 2 or targets.shape[-1] != 5:
    raise ValueError(
      "targets must be stroke-5 data of shape [B, T, 5] (dx, dy, p1, "
      f"p2, p3); got shape {targets.shape}."
    )
  return targets


def sketch_rnn_reconstruction_loss_per_step(
  params: MixtureParams,
  targets: Array,
  *,
  train: bool = True,
  eps: float = 1e-6,
  rho_eps: float = 1e-6,
) -> dict[str, Array]:
  """Per-time-step terms of the Sketch-RNN reconstruction loss.

  Args:
    params: :class:`MixtureParams` with leading shape ``[B, T]``.
    targets: ``[B, T, 5]`` stroke-5 decoder targets (the sequence without
      the start token).
    train: if True (magenta's ``is_training=True``) the pen loss is kept at
      every step, padding included; if False it is masked like the offset
      loss. See :func:`sketch_rnn_reconstruction_loss`.
    eps: see :func:`mixture_nll`.
    rho_eps: see :func:`bivariate_normal_log_prob`.

  Returns:
    dict with ``offset_loss`` and ``pen_loss`` (each ``[B, T]``, already
    masked) and ``mask`` (``[B, T]``, ``1 - p3``).
  """
  targets = _check_targets(targets)
  mask = 1.0 - targets[..., 4]
  offset = mixture_nll(targets[..., 0], targets[..., 1], params, eps=eps, rho_eps=rho_eps)
  offset = offset * mask
  pen = pen_cross_entropy(params.pen_logits, targets[..., 2:5])
  if not train:
    pen = pen * mask
  return {"offset_loss": offset, "pen_loss": pen, "mask": mask}


def sketch_rnn_reconstruction_loss_per_example(
  params: MixtureParams,
  targets: Array,
  *,
  train: bool = True,
  eps: float = 1e-6,
  rho_eps: float = 1e-6,
) -> tuple[Array, dict[str, Array]]:
  """Per-example Sketch-RNN reconstruction loss ``L_R`` (paper eq. 9).

  Each term is summed over time and divided by ``T`` (= ``N_max``, the
  padded length), so ``per_example.mean()`` equals the scalar returned by
  :func:`sketch_rnn_reconstruction_loss`. Useful for weighting out padded
  examples in evaluation, or for per-sketch scores.

  Args:
    params: :class:`MixtureParams` with leading shape ``[B, T]``.
    targets: ``[B, T, 5]`` stroke-5 decoder targets.
    train, eps, rho_eps: see :func:`sketch_rnn_reconstruction_loss`.

  Returns:
    ``(total [B], {"offset_loss": [B], "pen_loss": [B]})``.
  """
  terms = sketch_rnn_reconstruction_loss_per_step(
    params, targets, train=train, eps=eps, rho_eps=rho_eps
  )
  num_steps = terms["offset_loss"].shape[-1]
  offset = jnp.sum(terms["offset_loss"], axis=-1) / num_steps
  pen = jnp.sum(terms["pen_loss"], axis=-1) / num_steps
  return offset + pen, {"offset_loss": offset, "pen_loss": pen}


def sketch_rnn_reconstruction_loss(
  params: MixtureParams,
  targets: Array,
  *,
  train: bool = True,
  eps: float = 1e-6,
  rho_eps: float = 1e-6,
) -> tuple[Array, dict[str, Array]]:
  """Sketch-RNN reconstruction loss ``L_R = L_s + L_p`` (paper eq. 9).

  Matches magenta's ``get_lossfunc`` followed by ``reduce_mean`` over all
  ``B * T`` steps::

    L_s = sum_{b,t} mask[b,t] * mixture_nll[b,t] / (B * T)
    L_p = sum_{b,t} [mask[b,t] if not train else 1] * pen_ce[b,t] / (B * T)

  with ``mask = 1 - p3`` (zero on padding rows ``(0, 0, 0, 0, 1)``). Both are
  normalised by ``B * T`` (``N_max`` per sketch in the paper), not by the
  number of real steps.

  Magenta semantics of ``train``: the pen loss is masked only when the
  model is built with ``hps.is_training = False``. In magenta's
  ``sketch_rnn_train.py`` the validation/test model uses
  ``is_training = 1`` (only dropout is disabled), so the reported
  ``Valid_Reconstr_Cost``/``Eval_Reconstr_Cost`` use the *unmasked* pen loss
  (call this with ``train=True`` to reproduce them); ``is_training = 0`` is
  only used by the inference helpers (``load_env``/``load_model``, batch
  size 1). ``train=False`` here masks the pen loss like magenta's
  ``is_training = False`` path.

  Args:
    params: :class:`MixtureParams` with leading shape ``[B, T]``.
    targets: ``[B, T, 5]`` stroke-5 decoder targets ``(dx, dy, p1, p2, p3)``,
      i.e. the input sequence without its start token.
    train: whether the pen loss covers padding steps (see above).
    eps: additive floor inside the offset log-likelihood, see
      :func:`mixture_nll` (``1e-6`` as in magenta; ``0`` for exact).
    rho_eps: floor on ``1 - rho^2``, see :func:`bivariate_normal_log_prob`.

  Returns:
    ``(total, {"offset_loss": L_s, "pen_loss": L_p})``, all scalars, with
    ``total = L_s + L_p``.
  """
  terms = sketch_rnn_reconstruction_loss_per_step(
    params, targets, train=train, eps=eps, rho_eps=rho_eps
  )
  offset = jnp.mean(terms["offset_loss"])
  pen = jnp.mean(terms["pen_loss"])
  return offset + pen, {"offset_loss": offset, "pen_loss": pen}
