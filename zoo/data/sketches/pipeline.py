"""Grain input pipeline for Sketch-RNN: deterministic, sharded across processes, resumable.

Typical use::

    splits = load_sketch_splits("synthetic")                 # zoo.data.sketches.tfds
    splits, max_seq_len, scale = prepare_splits(splits)
    train = SketchTrainStream(splits["train"], batch_size=100, max_seq_len=max_seq_len,
                              scale_factor=scale, seed=0,
                              process_index=jax.process_index(), process_count=jax.process_count())
    for step, batch in enumerate(train.iterate(start_step), start_step): ...
    valid = eval_batches(splits["valid"], batch_size=100, max_seq_len=max_seq_len, scale_factor=scale)

Training stream definition (the contract that makes resume exact and
results independent of the number of processes):

* the stream is an infinite sequence of *global elements* ``e = 0, 1, ...``;
  element ``e`` is sketch ``perm_epoch[e % N]`` with ``epoch = e // N``, where
  ``perm_epoch`` is a fresh permutation of the ``N`` training sketches drawn
  from ``(seed, epoch)``;
* it is augmented with a generator seeded by ``(seed, e)``: first
  :func:`~zoo.data.sketches.strokes.random_scale`, then
  :func:`~zoo.data.sketches.strokes.augment_strokes` (as magenta's ``random_batch``),
  applied to the already normalised sketch, and converted to stroke-5
  padded to ``max_seq_len``;
* global batch ``k`` is elements ``k*B .. k*B+B-1``; process ``p`` of ``P``
  holds rows ``[p*B/P, (p+1)*B/P)`` of it.

This is :class:`zoo.data.stream.ShardedStream` with ``drop_remainder=False``. So a
batch is a pure function of ``(seed, step)`` (and the data and
settings): :meth:`SketchTrainStream.batch` gives any step by random access,
:meth:`SketchTrainStream.iterate` streams from any step with prefetching,
and concatenating the shards of all processes gives the single-process
batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo.data.sketches import strokes as S
from zoo.data.stream import ShardedStream, check_sharding

__all__ = ["prepare_splits", "SketchTrainStream", "eval_batches"]

_PERM_TAG = 0x5EED  # stream tags keep the shuffle and augmentation generators independent
_AUG_TAG = 0xA06


def prepare_splits(
  splits: Mapping[str, Sequence[np.ndarray]],
  *,
  max_seq_len: int | None = None,
  limit: float = 1000,
  scale_split: str = "train",
) -> tuple[dict[str, list[np.ndarray]], int, float]:
  """Clean raw splits -> ``(splits_clean, max_seq_len, scale_factor)`` (magenta's ``load_dataset``).

  Offsets are clamped to ``+-limit`` (float32, *not* normalised).  With
  ``max_seq_len=None`` it is the longest sketch over all splits; otherwise
  sketches longer than ``max_seq_len`` are dropped.  ``scale_factor`` is
  the std of all ``dx, dy`` in ``splits[scale_split]`` after cleaning;
  pass it to :class:`SketchTrainStream` / :func:`eval_batches`, which
  divide by it.
  """
  if max_seq_len is None:
    max_seq_len = S.max_seq_len_of(splits)
  out = {
    name: [S.clean(s, limit) for s in S.filter_by_length(sk, max_seq_len)]
    for name, sk in splits.items()
  }
  if scale_split not in out or not out[scale_split]:
    raise ValueError(
      f"split '{scale_split}' is missing or empty after filtering to max_seq_len={max_seq_len}"
    )
  return out, int(max_seq_len), S.normalizing_scale_factor(out[scale_split])


def _normalised(
  sketches: Sequence[np.ndarray], scale_factor: float, max_seq_len: int, limit: float
) -> list[np.ndarray]:
  if len(sketches) == 0:
    raise ValueError("no sketches given")
  if not scale_factor > 0:
    raise ValueError(f"scale_factor must be > 0, got {scale_factor}")
  out = []
  for i, s in enumerate(sketches):
    if len(s) > max_seq_len:
      raise ValueError(
        f"sketch {i} has {len(s)} points > max_seq_len={max_seq_len}; filter with prepare_splits(max_seq_len=...)"
      )
    c = S.clean(s, limit)
    c[:, 0:2] /= scale_factor
    out.append(c)
  return out


def _collate(rows: Sequence[dict[str, Any]], indices: np.ndarray) -> dict[str, np.ndarray]:
  del indices
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


class SketchTrainStream(ShardedStream):
  """Infinite, augmented, per-epoch shuffled training batches (see the module docstring).

  A :class:`zoo.data.stream.ShardedStream` without dropped remainders (epochs follow
  each other without a gap), whose per-row generator drives the augmentation.

  ``sketches``: stroke-3 arrays in data units, raw or cleaned by
  :func:`prepare_splits` (clamping is idempotent); the stream clamps them
  to ``+-limit`` and divides ``dx, dy`` by ``scale_factor`` -- pass
  ``scale_factor=1.0`` for sketches that are already normalised.  Every
  sketch must have at most ``max_seq_len`` points.

  Batches are ``dict(strokes=float32 [B/P, max_seq_len+1, 5], seq_len=int32 [B/P])``
  with ``B = batch_size`` (global) and ``P = process_count``.
  """

  def __init__(
    self,
    sketches: Sequence[np.ndarray],
    *,
    batch_size: int,
    max_seq_len: int,
    scale_factor: float,
    random_scale_factor: float = 0.15,
    augment_stroke_prob: float = 0.10,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    prefetch_batches: int = 2,
    limit: float = 1000,
  ):
    self.max_seq_len = int(max_seq_len)
    self.scale_factor = float(scale_factor)
    self.random_scale_factor = float(random_scale_factor)
    self.augment_stroke_prob = float(augment_stroke_prob)
    super().__init__(
      _normalised(sketches, self.scale_factor, self.max_seq_len, limit),
      batch_size=batch_size,
      collate=_collate,
      seed=seed,
      transform=self._augment,
      drop_remainder=False,
      permutation_key=(int(seed), _PERM_TAG),
      row_key=(int(seed), _AUG_TAG),
      process_index=process_index,
      process_count=process_count,
      num_threads=num_threads,
      prefetch=prefetch_batches,
    )

  def _augment(self, sketch: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One normalised sketch -> ``dict(strokes [max_seq_len+1, 5], seq_len)``, augmented."""
    data = S.random_scale(sketch, rng, self.random_scale_factor)
    if self.augment_stroke_prob > 0:
      data = S.augment_strokes(data, self.augment_stroke_prob, rng)
    return {"strokes": S.sketch_to_stroke5(data, self.max_seq_len), "seq_len": np.int32(len(data))}


def eval_batches(
  sketches: Sequence[np.ndarray],
  *,
  batch_size: int,
  max_seq_len: int,
  scale_factor: float,
  process_index: int = 0,
  process_count: int = 1,
  drop_remainder: bool = True,
  limit: float = 1000,
) -> list[dict[str, np.ndarray]]:
  """Un-augmented evaluation batches, in the given order.

  Each is ``dict(strokes=float32 [B/P, max_seq_len+1, 5], seq_len=int32 [B/P],
  weights=float32 [B/P])``; process ``p`` gets rows ``[p*B/P, (p+1)*B/P)`` of
  every global batch.  Like magenta's ``evaluate_model``
  (``num_batches = len // batch_size``) the trailing partial batch is
  dropped by default (magenta additionally sorts by length first, so there
  the longest sketches are the ones dropped; here it is the last ones).
  With ``drop_remainder=False`` the last batch is completed with copies of
  the first sketch whose ``weights`` are 0.
  """
  bl = check_sharding(batch_size, process_index, process_count)
  data = _normalised(sketches, scale_factor, max_seq_len, limit)
  n = len(data)
  num = n // batch_size if drop_remainder else -(-n // batch_size)
  out = []
  for k in range(num):
    rows = range(k * batch_size + process_index * bl, k * batch_size + (process_index + 1) * bl)
    chosen = [data[i] if i < n else data[0] for i in rows]
    strokes, seq_len = S.to_stroke5(chosen, max_seq_len)
    weights = np.array([1.0 if i < n else 0.0 for i in rows], dtype=np.float32)
    out.append({"strokes": strokes, "seq_len": seq_len, "weights": weights})
  return out
