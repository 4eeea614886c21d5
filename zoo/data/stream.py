"""The one deterministic, sharded, resumable batch stream every data source of the zoo uses.

The stream is an endless sequence of *positions* ``g = 0, 1, ...``; global batch ``k``
holds positions ``k*B .. k*B+B-1`` and process ``p`` of ``P`` keeps rows
``[p*B/P, (p+1)*B/P)`` of it. Epoch ``e`` visits the ``N`` examples in a permutation
seeded by ``(seed, stream_id, e)``; how positions map onto epochs:

- ``drop_remainder=True`` (the default): an epoch is ``N // B`` whole batches, the
  remainder of each permutation is dropped, so batch ``k`` is batch ``k % (N // B)`` of
  epoch ``k // (N // B)``.
- ``drop_remainder=False``: the epochs follow each other without a gap, position ``g`` is
  example ``perm_{g // N}[g % N]``, and a batch may straddle two (or, with ``B > N``,
  more) epochs.

Per-example randomness (crops, flips, augmentation) comes from a generator seeded by
``(seed, stream_id, g)``, handed to ``transform`` with the example. So global batch ``k``
is a pure function of ``(seed, stream_id, k)``: a run restarted at step ``k`` reads
exactly the batches an uninterrupted run would, and 1 or N processes see the same global
batches. ``iterate(start)`` prefetches with grain reader threads.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

_PERM_MAGIC = 0x5EED
_ROW_MAGIC = 0x5EEE
_NUM_CACHED_EPOCHS = 4


class Source(Protocol):
  """Random access to examples: ``len(source)`` and ``source[i]``.

  A source may also have ``get_many(indices) -> list`` (the examples of a batch in one
  call), which :meth:`ShardedStream.batch` then uses, e.g. to make them in parallel.
  """

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Any: ...


def is_process_count(value: Any) -> bool:
  """Whether ``value`` can be :class:`Memo`'s ``processes``: an int >= 0 (not a bool)."""
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Memo:
  """The in-memory cache of a source whose items are costly to make (drawn faces,
  decoded and resized images): ``get(key)`` is ``load(key)``, made once.

  Args:
    load: ``key -> item``. With ``processes > 0`` it runs in worker processes, so it
      and its items must pickle: a function of an importable module (not of the script
      being run, which the workers do not import), or a ``functools.partial`` of one.
    cache: keep what was made (else every call makes it again).
    processes: worker processes that make the misses of :meth:`get_many` (0: the
      calling thread). Drawing a face is Python driving Pillow, which holds the GIL,
      so reader threads cannot draw in parallel but processes can. They are spawned
      (a fork of a process running JAX is unsafe) at the first miss and stop with the
      memo.

  Thread-safe. Pickling a memo (for another process) keeps ``load`` and the settings,
  not the cached items or the workers.
  """

  def __init__(self, load: Callable[[Any], Any], *, cache: bool = True, processes: int = 0):
    if int(processes) < 0:
      raise ValueError(f"processes must be >= 0, got {processes}")
    self.load = load
    self.cache = bool(cache)
    self.processes = int(processes)
    self._reset()

  def _reset(self) -> None:
    self._items: dict[Hashable, Any] = {}
    self._lock = threading.Lock()
    self._pool: concurrent.futures.ProcessPoolExecutor | None = None

  def __getstate__(self) -> dict[str, Any]:
    return {"load": self.load, "cache": self.cache, "processes": self.processes}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._reset()

  def __len__(self) -> int:
    """Items held."""
    return len(self._items)

  def get(self, key: Hashable) -> Any:
    with self._lock:
      hit = self._items.get(key)
    if hit is None:
      hit = self.load(key)
      self._keep([key], [hit])
    return hit

  def get_many(self, keys: Sequence[Hashable]) -> list[Any]:
    """``[get(k) for k in keys]``, the misses made together (by the workers, if any)."""
    if not self.processes:
      return [self.get(k) for k in keys]
    with self._lock:
      found = {k: self._items[k] for k in keys if k in self._items}
    misses = list(dict.fromkeys(k for k in keys if k not in found))
    if misses:
      chunk = -(-len(misses) // self.processes)
      made = list(self._workers().map(self.load, misses, chunksize=chunk))
      self._keep(misses, made)
      found.update(zip(misses, made))
    return [found[k] for k in keys]

  def _keep(self, keys: Sequence[Hashable], items: Sequence[Any]) -> None:
    if self.cache:
      with self._lock:
        self._items.update(zip(keys, items))

  def _workers(self) -> concurrent.futures.ProcessPoolExecutor:
    with self._lock:
      if self._pool is None:
        self._pool = _start_pool(self.processes)
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
      return self._pool

  def close(self) -> None:
    """Stop the worker processes (the cache stays)."""
    with self._lock:
      pool, self._pool = self._pool, None
    if pool is not None:
      pool.shutdown(wait=True, cancel_futures=True)


class MemoSource:
  """Mixin of a source whose items come from a :class:`Memo` kept as ``self._memo``:
  ``close()`` (or ``with source:``) stops its drawing processes; the items it made stay.
  Unclosed, they stop when the source is collected or the program exits."""

  _memo: Memo

  def close(self) -> None:
    self._memo.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  @property
  def num_cached(self) -> int:
    """Items made so far and kept."""
    return len(self._memo)


def check_sharding(batch_size: int, process_index: int, process_count: int) -> int:
  """The local batch size; ValueError when the global batch does not split evenly."""
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


_MAIN_LOCK = threading.Lock()


def _start_pool(processes: int) -> concurrent.futures.ProcessPoolExecutor:
  """``processes`` spawned workers, started now with ``__main__`` hidden from them.

  A spawned child re-imports the parent's main module. Memo workers run only the
  library's drawing code, so that import would cost seconds and about 200 MB each (the
  launchers import JAX) and, in a user's script without an ``if __name__ ==
  '__main__'`` guard, start the script over. Spawn skips it when ``__main__`` has neither
  ``__spec__`` nor ``__file__``, so both are hidden while the workers start.
  """
  main = sys.modules.get("__main__")
  names = ("__spec__", "__file__") if main is not None else ()
  with _MAIN_LOCK:
    hidden = {k: main.__dict__.pop(k) for k in names if k in vars(main)}
    try:
      if "__spec__" in hidden:
        main.__spec__ = None
      pool = concurrent.futures.ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
      )
      # Each submit spawns a worker while none is idle: all of them start here.
      for f in [pool.submit(time.sleep, 0.01) for _ in range(processes)]:
        f.result()
    finally:
      if hidden:
        main.__dict__.update(hidden)
  return pool


def _worker_init(parent: int) -> None:
  """A memo worker holds neither its parent's stdout/stderr (whoever reads them would wait
  on it) nor outlives the parent (SIGKILL gives the pool no chance to stop it)."""
  devnull = os.open(os.devnull, os.O_RDWR)
  for fd in (0, 1, 2):
    os.dup2(devnull, fd)

  def exit_when_orphaned():
    while os.getppid() == parent:
      time.sleep(1.0)
    os._exit(0)

  threading.Thread(target=exit_when_orphaned, daemon=True).start()


class ShardedStream:
  """Batches of ``source`` in which global batch ``k`` depends only on ``(seed, stream_id, k)``.

  Args:
    source: random-access examples (:class:`Source`).
    batch_size: the *global* batch size ``B``.
    collate: ``(examples, indices) -> batch`` for this process's rows.
    seed, stream_id: seed the epoch permutations and the per-row generators;
      ``stream_id`` (int or tuple of ints) keeps streams of one seed apart (splits,
      stages, ...).
    transform: optional ``(example, rng) -> example`` with the generator of its position.
    shuffle: permute each epoch (else the source order, epoch after epoch).
    drop_remainder: an epoch is ``len(source) // B`` whole batches (else epochs follow
      each other without a gap; see the module docstring).
    permutation_key, row_key: the seeds of the generators are ``[*permutation_key, epoch]``
      and ``[*row_key, position]``; by default ``(0x5EED, seed, *stream_id)`` and
      ``(0x5EEE, seed, *stream_id)``. Streams whose seeding predates this class pass their
      own keys so that their batches stay what they were.
    process_index, process_count: this process's rows of every global batch.
    num_threads, prefetch: grain reader threads and buffered batches of :meth:`iterate`.
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
    drop_remainder: bool = True,
    permutation_key: Sequence[int] | None = None,
    row_key: Sequence[int] | None = None,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    prefetch: int = 4,
  ):
    self.local_batch_size = check_sharding(batch_size, process_index, process_count)
    self.source = source
    self.num_examples = len(source)
    if self.num_examples == 0:
      raise ValueError("the source is empty")
    self.batch_size = int(batch_size)
    self.process_index, self.process_count = int(process_index), int(process_count)
    self.drop_remainder = bool(drop_remainder)
    self.steps_per_epoch = self.num_examples // self.batch_size
    if self.drop_remainder and self.steps_per_epoch == 0:
      raise ValueError(f"{self.num_examples} examples are fewer than batch_size {batch_size}")
    self.collate = collate
    self.transform = transform
    self.shuffle = bool(shuffle)
    self.seed = int(seed)
    ids = stream_id if isinstance(stream_id, (tuple, list)) else (stream_id,)
    self.stream_id = tuple(int(i) for i in ids)
    default = (self.seed, *self.stream_id)
    self.permutation_key = tuple(int(k) for k in (permutation_key or (_PERM_MAGIC, *default)))
    self.row_key = tuple(int(k) for k in (row_key or (_ROW_MAGIC, *default)))
    self.num_threads = max(int(num_threads), 1)
    self.prefetch = max(int(prefetch), self.num_threads)  # grain warns when fewer
    self._perms: dict[int, np.ndarray] = {}
    self._perms_lock = threading.Lock()

  def permutation(self, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the examples, int64 ``[N]``."""
    if not self.shuffle:
      return np.arange(self.num_examples, dtype=np.int64)
    epoch = int(epoch)
    with self._perms_lock:
      perm = self._perms.get(epoch)
    if perm is None:
      rng = np.random.default_rng([*self.permutation_key, epoch])
      perm = rng.permutation(self.num_examples).astype(np.int64)
      with self._perms_lock:
        if len(self._perms) >= _NUM_CACHED_EPOCHS:
          self._perms.pop(next(iter(self._perms)))
        self._perms[epoch] = perm
    return perm

  def global_indices(self, step: int) -> np.ndarray:
    """Example ids of global batch ``step`` (all processes), int64 ``[B]``."""
    if step < 0:
      raise ValueError(f"step must be non-negative, got {step}")
    b = self.batch_size
    if self.drop_remainder:
      epoch, pos = divmod(int(step), self.steps_per_epoch)
      return self.permutation(epoch)[pos * b : (pos + 1) * b]
    epochs, offsets = np.divmod(
      np.arange(step * b, (step + 1) * b, dtype=np.int64), self.num_examples
    )
    out = np.empty(b, np.int64)
    for e in np.unique(epochs):
      at = epochs == e
      out[at] = self.permutation(int(e))[offsets[at]]
    return out

  def rows(self) -> range:
    """This process's rows of every global batch."""
    b = self.local_batch_size
    return range(self.process_index * b, (self.process_index + 1) * b)

  def indices(self, step: int) -> np.ndarray:
    """Example ids of this process's rows of batch ``step``, int64 ``[B/P]``."""
    r = self.rows()
    return self.global_indices(step)[r.start : r.stop]

  def row_rng(self, step: int, row: int) -> np.random.Generator:
    """The generator of global row ``row`` of batch ``step`` (position ``step*B + row``)."""
    return np.random.default_rng([*self.row_key, int(step) * self.batch_size + int(row)])

  def batch(self, step: int) -> Any:
    """This process's part of global batch ``step``."""
    idx = self.indices(step)
    get_many = getattr(self.source, "get_many", None)
    if get_many is not None:
      items = get_many([int(i) for i in idx])
    else:
      items = [self.source[int(i)] for i in idx]
    if self.transform is not None:
      items = [self.transform(it, self.row_rng(step, r)) for it, r in zip(items, self.rows())]
    return self.collate(items, idx)

  def iterate(self, start_step: int = 0, num_steps: int | None = None) -> Iterator[Any]:
    """``batch(start_step)``, ``batch(start_step + 1)``, ... prefetched by reader threads.

    Endless unless ``num_steps`` is given. The iterator is a grain ``DatasetIterator``
    (``get_state`` / ``set_state`` count batches from ``start_step``), although
    ``iterate(step)`` alone resumes exactly.
    """
    if start_step < 0:
      raise ValueError(f"start_step must be >= 0, got {start_step}")
    stop = start_step + num_steps if num_steps is not None else start_step + 2**40
    # Imported here: grain imports JAX, which Memo's drawing workers do not need.
    import grain  # pylint: disable=g-import-not-at-top

    ds = grain.MapDataset.range(int(start_step), int(stop)).map(self.batch)
    opts = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)
    return iter(ds.to_iter_dataset(opts))

  def __len__(self) -> int:
    """Whole batches per epoch (``len(source) // batch_size``)."""
    return self.steps_per_epoch
