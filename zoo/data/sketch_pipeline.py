"""Grain input pipeline for Sketch-RNN: deterministic, sharded across processes, resumable.

Typical use::

    splits = load_sketch_splits("synthetic")                 # zoo.data.sketch_tfds
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
  :func:`~zoo.data.strokes.random_scale`, then
  :func:`~zoo.data.strokes.augment_strokes` (as magenta's ``random_batch``),
  applied to the already normalised sketch, and converted to stroke-5
  padded to ``max_seq_len``;
* global batch ``k`` is elements ``k*B .. k*B+B-1``; process ``p`` of ``P``
  holds rows ``[p*B/P, (p+1)*B/P)`` of it.

So a batch is a pure function of ``(seed, step)`` (and the data and
settings): :meth:`SketchTrainStream.batch` gives any step by random access,
:meth:`SketchTrainStream.iterate` streams from any step with prefetching,
and concatenating the shards of all processes gives the single-process
batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from zoo.data import strokes as S

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


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> int:
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"bad process_index={process_index} for process_count={process_count}")
  if batch_size % process_count:
    raise ValueError(
      f"global batch_size={batch_size} is not divisible by process_count={process_count}; "
      "each process must load the same number of rows"
    )
  return batch_size // process_count


def _collate(rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


class SketchTrainStream:
  """Infinite, augmented, per-epoch shuffled training batches (see the module docstring).

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
    self.local_batch_size = _check_sharding(batch_size, process_index, process_count)
    self.batch_size = int(batch_size)
    self.max_seq_len = int(max_seq_len)
    self.scale_factor = float(scale_factor)
    self.random_scale_factor = float(random_scale_factor)
    self.augment_stroke_prob = float(augment_stroke_prob)
    self.seed = int(seed)
    self.process_index = int(process_index)
    self.process_count = int(process_count)
    self.num_threads = max(int(num_threads), 1)
    self.prefetch_batches = max(int(prefetch_batches), 1)
    self._sketches = _normalised(sketches, self.scale_factor, self.max_seq_len, limit)
    self.num_sketches = len(self._sketches)
    self._perm_cache: dict[int, np.ndarray] = {}
    self._perm_lock = threading.Lock()
    # Local element i -> one augmented stroke-5 sketch; random access over an
    # (effectively) infinite index range.
    self._elements = grain.MapDataset.range(np.iinfo(np.int64).max // 2).map(self._local_element)
    self._batches = self._elements.batch(self.local_batch_size, batch_fn=_collate)

  # -- index arithmetic ---------------------------------------------------
  @property
  def steps_per_epoch(self) -> float:
    """Global batches per pass over the training set (fractional)."""
    return self.num_sketches / self.batch_size

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._perm_lock:
      perm = self._perm_cache.get(epoch)
      if perm is None:
        perm = np.random.default_rng([self.seed, _PERM_TAG, epoch]).permutation(self.num_sketches)
        if len(self._perm_cache) >= 4:
          self._perm_cache.pop(next(iter(self._perm_cache)))
        self._perm_cache[epoch] = perm
      return perm

  def global_element(self, local_index: int) -> int:
    """Global stream position of this process's ``local_index``-th element."""
    step, row = divmod(int(local_index), self.local_batch_size)
    return step * self.batch_size + self.process_index * self.local_batch_size + row

  def source_index(self, element: int) -> int:
    """Index into ``sketches`` of global stream element ``element``."""
    epoch, pos = divmod(int(element), self.num_sketches)
    return int(self._permutation(epoch)[pos])

  def indices(self, step: int) -> np.ndarray:
    """Source sketch indices of this process's rows of batch ``step``."""
    base = step * self.local_batch_size
    return np.array(
      [self.source_index(self.global_element(base + j)) for j in range(self.local_batch_size)]
    )

  # -- elements -------------------------------------------------------------
  def element(self, element: int) -> dict[str, np.ndarray]:
    """Global stream element ``element`` as ``dict(strokes [max_seq_len+1, 5], seq_len)``."""
    sketch = self._sketches[self.source_index(element)]
    rng = np.random.default_rng([self.seed, _AUG_TAG, int(element)])
    data = S.random_scale(sketch, rng, self.random_scale_factor)
    if self.augment_stroke_prob > 0:
      data = S.augment_strokes(data, self.augment_stroke_prob, rng)
    return {"strokes": S.sketch_to_stroke5(data, self.max_seq_len), "seq_len": np.int32(len(data))}

  def _local_element(self, local_index: int) -> dict[str, np.ndarray]:
    return self.element(self.global_element(local_index))

  # -- batches --------------------------------------------------------------
  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch ``step`` (random access)."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    return self._batches[int(step)]

  def dataset(self) -> grain.MapDataset:
    """The underlying grain ``MapDataset`` of local batches (index = step)."""
    return self._batches

  def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Prefetching iterator yielding ``batch(start_step), batch(start_step + 1), ...``.

    It is a grain ``DatasetIterator``: ``get_state()`` / ``set_state()``
    work too (the state counts elements from ``start_step``), although
    ``iterate(step)`` alone is enough to resume exactly.
    """
    if start_step < 0:
      raise ValueError(f"start_step must be >= 0, got {start_step}")
    bl = self.local_batch_size
    opts = grain.ReadOptions(
      num_threads=self.num_threads, prefetch_buffer_size=self.prefetch_batches * bl
    )
    ds = self._elements[int(start_step) * bl :].to_iter_dataset(opts).batch(bl, batch_fn=_collate)
    return iter(ds)


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
  bl = _check_sharding(batch_size, process_index, process_count)
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
