"""Joint image-text embedding losses and metrics.

Pure functions of arrays in the style of :mod:`zoo.losses.gan`:
hyper-parameters are keyword-only and losses return one value per example
(shape ``[B]``); the caller reduces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["ds_sje_loss", "retrieval_accuracy"]


def ds_sje_loss(
  image_emb: Array,
  text_emb: Array,
  *,
  labels: Array | None = None,
  match: Array | None = None,
  margin: float = 1.0,
  aggregate: str = "max",
) -> Array:
  r"""Deep symmetric structured joint embedding loss (Reed et al. 2016, CVPR).

  "Learning Deep Representations of Fine-Grained Visual Descriptions", eq. 3-5:
  with the compatibility :math:`F(v, t) = \theta(v)^\top \varphi(t)`, the
  image- and text-side surrogate losses of pair :math:`(v_n, t_n, y_n)` are

  .. math::

     \ell_v = \max_y \big(\Delta(y_n, y)
       + \mathbb{E}_{t \sim T(y)} [F(v_n, t)] - F(v_n, t_n)\big),
     \qquad
     \ell_t = \max_y \big(\Delta(y_n, y)
       + \mathbb{E}_{v \sim V(y)} [F(v, t_n)] - F(v_n, t_n)\big)

  with the 0-1 loss :math:`\Delta`. In minibatch form the classes are the
  batch's own examples: with ``s = image_emb @ text_emb.T`` ``[B, B]`` and
  ``Δ[i, j] = margin * (labels[i] != labels[j])``,

  .. code-block:: text

     image term  l_v[i] = max_j (Δ[i, j] + s[i, j]) - s[i, i]
     text term   l_t[i] = max_j (Δ[j, i] + s[j, i]) - s[i, i]
     loss[i]     = (l_v[i] + l_t[i]) / 2

  ``j = i`` contributes ``0``, so every term is ``>= 0``. With
  ``labels=None`` every pair is its own class (as when each minibatch holds one
  pair per class, Reed's setting), so this is exactly the paper's loss over the
  batch's classes. With repeated labels the expectation over a class is
  replaced by the max over its samples in the batch (a stricter bound).

  Args:
    image_emb: ``[B, D]`` image embeddings :math:`\theta(v)`.
    text_emb: ``[B, D]`` text embeddings :math:`\varphi(t)`; row ``i`` is the
      text matching image ``i``.
    labels: optional int ``[B]`` class labels; ``None`` = ``arange(B)``.
    match: optional bool ``[B, B]`` instead of ``labels``: ``match[i, j]`` when text
      ``i`` describes image ``j`` (e.g. a caption naming a subset of attributes matches
      every image that has them); ``Δ[i, j] = margin * ~match[j, i]`` on the image side
      and ``margin * ~match[i, j]`` on the text side. The diagonal must be True.
    margin: value of :math:`\Delta` between different classes.
    aggregate: ``'max'`` (the paper: the most violating class) or ``'sum'`` (every
      violation, ``sum_j max(0, Δ[i, j] + s[i, j] - s[i, i])`` on each side, the
      VSE-style relaxation that gives every negative a gradient from the start).

  Returns:
    Per-example loss ``[B]``.
  """
  image_emb = jnp.asarray(image_emb)
  text_emb = jnp.asarray(text_emb)
  if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
    raise ValueError(
      f"image_emb and text_emb must both be [B, D], got {image_emb.shape} and {text_emb.shape}"
    )
  b = image_emb.shape[0]
  s = image_emb @ text_emb.T
  if labels is not None and match is not None:
    raise ValueError("give labels or match, not both")
  if match is not None:
    match = jnp.asarray(match, bool)
    if match.shape != (b, b):
      raise ValueError(f"match must be [{b}, {b}], got {match.shape}")
    differ = ~match.T  # [image i, text j]: text j does not describe image i
  elif labels is None:
    differ = ~jnp.eye(b, dtype=bool)
  else:
    labels = jnp.asarray(labels)
    differ = labels[:, None] != labels[None, :]
  delta = margin * differ.astype(s.dtype)  # [image, text]
  diag = jnp.diagonal(s)
  if aggregate == "max":
    image_term = jnp.max(delta + s, axis=1) - diag
    text_term = jnp.max(delta + s, axis=0) - diag
  elif aggregate == "sum":
    image_term = jnp.sum(jnp.maximum(0.0, delta + s - diag[:, None]) * (delta > 0), axis=1)
    text_term = jnp.sum(jnp.maximum(0.0, delta + s - diag[None, :]) * (delta > 0), axis=0)
  else:
    raise ValueError(f"aggregate must be 'max' or 'sum', got {aggregate!r}")
  return 0.5 * (image_term + text_term)


def retrieval_accuracy(
  query_emb: Array, candidate_emb: Array, *, match: Array | None = None
) -> Array:
  """Top-1 retrieval accuracy by dot-product score.

  Args:
    query_emb: ``[N, D]``.
    candidate_emb: ``[M, D]``.
    match: optional bool ``[N, M]``, True where candidate ``j`` is a correct
      answer to query ``i``; ``None`` = identity (needs ``N == M``).

  Returns:
    Scalar float32 array in ``[0, 1]``: the fraction of queries whose
    top-scoring candidate (first one on ties) is a match. A JAX array so the
    function works under ``jit``; use ``float(...)`` for a Python number.
  """
  query_emb = jnp.asarray(query_emb)
  candidate_emb = jnp.asarray(candidate_emb)
  n, m = query_emb.shape[0], candidate_emb.shape[0]
  if match is None:
    if n != m:
      raise ValueError(f"match=None needs as many queries as candidates, got {n} and {m}")
    match = jnp.eye(n, dtype=bool)
  match = jnp.asarray(match, bool)
  if match.shape != (n, m):
    raise ValueError(f"match must be [{n}, {m}], got {match.shape}")
  top = jnp.argmax(query_emb @ candidate_emb.T, axis=1)
  hit = jnp.take_along_axis(match, top[:, None], axis=1)[:, 0]
  return jnp.mean(hit.astype(jnp.float32))
