"""The one deterministic, sharded, resumable batch stream every data source of the zoo uses.

Global batch ``k`` is a pure function of ``(seed, stream_id, k)``: epoch
``e = k // steps_per_epoch`` visits the examples in a permutation seeded by
``(seed, stream_id, e)`` (the remainder of each permutation is dropped), and process
``p`` of ``P`` keeps rows ``[p*B/P, (p+1)*B/P)`` of the global batch of size ``B``. So
a run restarted at step ``k`` reads exactly the batches an uninterrupted run would,
and 1 or N processes see the same global batches. Per-example randomness (crops,
flips, augmentation) gets its own generator seeded by ``(seed, stream_id, k, row)``.

``iterate(start)`` prefetches with grain reader threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import grain
import numpy as np

_PERM_MAGIC = 0x5EED


class Source(Protocol):
  """Random access to examples: ``len(source)`` and ``source[i]``."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Any: ...


def check_sharding(batch_size: int, process_index: int, process_count: int) -> int:
  """The local batch size; ValueError when the global batch does not split evenly."""
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(
      f"batch_size {batch_size} must be a positive multiple of process_count {process_count}"
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return batch_size // process_count


class ShardedStream:
  """Batches of ``source`` in which global batch ``k`` depends only on ``(seed, stream_id, k)``.

  Args:
    source: random-access examples (:class:`Source`).
    batch_size: the *global* batch size ``B``.
    collate: ``(examples, indices) -> batch`` for this process's rows.
    seed, stream_id: seed the epoch permutations; ``stream_id`` (int or tuple of ints)
      keeps streams of one seed apart (splits, stages, ...).
    transform: optional ``(example, rng) -> example`` with a per-row generator.
    shuffle: permute each epoch (else the source order, epoch after epoch).
    drop_remainder: an epoch is ``len(source) // B`` batches.
  """

  def __init__(
    self,
    source: Source,
    *,
    batch_size: int,
    collate: Callable[[Sequence[Any], np.ndarray], Any],
    seed: int = 0,
    stream_id: int | Sequence[int] = 0,
    transform: Callable[[Any, np.random.Generator], Any] | None = None,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    prefetch: int = 4,
  ):
    self.local_batch_size = check_sharding(batch_size, process_index, process_count)
    self.source = source
    self.batch_size = int(batch_size)
    self.process_index, self.process_count = int(process_index), int(process_count)
    self.steps_per_epoch = len(source) // self.batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(f"{len(source)} examples are fewer than batch_size {batch_size}")
    self.collate = collate
    self.transform = transform
    self.shuffle = bool(shuffle)
    self.seed = int(seed)
    ids = stream_id if isinstance(stream_id, (tuple, list)) else (stream_id,)
    self.stream_id = tuple(int(i) for i in ids)
    self.num_threads, self.prefetch = int(num_threads), int(prefetch)

  @functools.lru_cache(maxsize=2)
  def permutation(self, epoch: int) -> np.ndarray:
    n = len(self.source)
    if not self.shuffle:
      return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([_PERM_MAGIC, self.seed, *self.stream_id, int(epoch)])
    return rng.permutation(n).astype(np.int64)

  def global_indices(self, step: int) -> np.ndarray:
    """Example ids of global batch ``step`` (all processes), int64 ``[B]``."""
    if step < 0:
      raise ValueError(f"step must be non-negative, got {step}")
    epoch, pos = divmod(int(step), self.steps_per_epoch)
    return self.permutation(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]

  def rows(self) -> range:
    """This process's rows of every global batch."""
    b = self.local_batch_size
    return range(self.process_index * b, (self.process_index + 1) * b)

  def indices(self, step: int) -> np.ndarray:
    """Example ids of this process's rows of batch ``step``, int64 ``[B/P]``."""
    r = self.rows()
    return self.global_indices(step)[r.start : r.stop]

  def row_rng(self, step: int, row: int) -> np.random.Generator:
    """The generator for global row ``row`` of batch ``step``."""
    return np.random.default_rng([_PERM_MAGIC + 1, self.seed, *self.stream_id, int(step), row])

  def batch(self, step: int) -> Any:
    """This process's part of global batch ``step``."""
    idx = self.indices(step)
    items = [self.source[int(i)] for i in idx]
    if self.transform is not None:
      items = [self.transform(it, self.row_rng(step, r)) for it, r in zip(items, self.rows())]
    return self.collate(items, idx)

  def iterate(self, start_step: int = 0, num_steps: int | None = None) -> Iterator[Any]:
    """``batch(start_step)``, ``batch(start_step + 1)``, ... prefetched by reader threads."""
    stop = start_step + num_steps if num_steps is not None else start_step + 2**40
    ds = grain.MapDataset.range(int(start_step), int(stop)).map(self.batch)
    opts = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)
    return iter(ds.to_iter_dataset(opts))

  def __len__(self) -> int:
    """Batches per epoch."""
    return self.steps_per_epoch
