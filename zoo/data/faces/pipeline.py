"""grain input pipeline over the synthetic cartoon faces (rendered on the fly).

- :class:`FacesSource` is a random-access grain data source: ``source[i]`` is
  example ``i`` of the ``(seed, split)`` stream of :mod:`zoo.data.faces` (identical to
  ``faces.make_example(i, seed=seed, split=split, ...)`` and to record ``i`` of the
  prepared TFDS builder), so it needs no preparation and works with
  ``grain.MapDataset.source(FacesSource(...))``.
- :func:`faces_batches` returns a :class:`FacesBatches` stream (a
  :class:`zoo.data.stream.ShardedStream`) in which global batch
  ``k`` is a pure function of ``(seed, k)``: epoch ``e = k // steps_per_epoch`` visits
  the examples in a permutation seeded by ``(seed, split, e)``; process ``p`` of ``P``
  keeps rows ``[p*B/P, (p+1)*B/P)`` of the global batch of size ``B``.
  ``batch(step)`` computes one batch, ``iterate(start_step)`` yields batches from
  ``start_step`` on, prefetched by grain threads (exact resume after preemption).

Batch layout (``views`` selects what is computed):

- ``image``: float32 [b,H,W,3] in [-1, 1]; ``image_uint8``: uint8 [b,H,W,3]
- ``label_map``: int32 [b,H,W] (ids in ``faces.LABELS``)
- ``edges``: float32 [b,H,W,3] in [-1, 1] (white = 1); ``edges_uint8``: uint8
- ``attributes``: ``{name: int32[b]}``; ``attributes_onehot``: float32 [b, sum(vocab)]
- ``caption``: list[str] of length b
- ``index`` (always): int64 [b] example ids within the split stream
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.data import faces
from zoo.data.stream import ShardedStream

#: Default number of examples in each split of the on-the-fly stream.
DEFAULT_NUM_EXAMPLES = {"train": 100_000, "valid": 5_000, "test": 5_000}
VIEWS = (
  "image",
  "image_uint8",
  "label_map",
  "edges",
  "edges_uint8",
  "attributes",
  "attributes_onehot",
  "caption",
  "index",
)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  h, w = size
  return int(h), int(w)


#: The drawn views (:data:`zoo.data.faces.VIEWS`) each batch view needs.
_DRAWN = {
  "image": "image",
  "image_uint8": "image",
  "label_map": "label_map",
  "edges": "edges",
  "edges_uint8": "edges",
  "caption": "caption",
}


class FacesSource:
  """Random-access source: ``index -> dict`` of numpy arrays, rendered on demand.

  Items: ``image`` uint8 [H,W,3], ``label_map`` uint8 [H,W], ``edges`` uint8 [H,W,3],
  ``caption`` str (those of ``views`` only: each map costs about as much as the image),
  ``attributes`` ``{name: np.int32}``, ``index`` np.int64. Deterministic per
  ``(seed, split, index)``.
  """

  def __init__(
    self,
    split: str = "train",
    *,
    size: int | Sequence[int] = 64,
    num_examples: int | None = None,
    seed: int = 0,
    all_attributes: bool = True,
    views: Sequence[str] = faces.VIEWS,
  ):
    if split not in faces.SPLITS:
      raise ValueError(f"split must be one of {faces.SPLITS}, got {split!r}")
    self.split = split
    self.height, self.width = _size(size)
    faces._check_size(self.height, self.width)
    self.num_examples = int(DEFAULT_NUM_EXAMPLES[split] if num_examples is None else num_examples)
    self.seed = int(seed)
    self.all_attributes = all_attributes
    self.views = tuple(views)

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if index < 0:
      index += self.num_examples
    if not 0 <= index < self.num_examples:
      raise IndexError(f"index {index} out of range [0, {self.num_examples})")
    ex = faces.make_example(
      index,
      seed=self.seed,
      split=self.split,
      height=self.height,
      width=self.width,
      all_attributes=self.all_attributes,
      views=self.views,
    )
    ex["attributes"] = {k: np.int32(v) for k, v in ex["attributes"].items()}
    ex["index"] = np.int64(index)
    return ex

  def __repr__(self) -> str:
    return (
      f"FacesSource(split={self.split!r}, size=({self.height}, {self.width}), "
      f"num_examples={self.num_examples}, seed={self.seed})"
    )


class FacesBatches(ShardedStream):
  """Deterministic, shardable, resumable batch stream over a :class:`FacesSource`.

  A :class:`zoo.data.stream.ShardedStream` (``stream_id`` = the split's id, so epoch
  ``e`` is the permutation seeded by ``(seed, split, e)``). ``batch_size`` is the
  *global* batch size ``B`` (divisible by ``process_count``); each process gets
  ``B // process_count`` rows. An epoch is ``len(source) // B`` steps (the remainder of
  each permutation is dropped).
  """

  def __init__(
    self,
    split: str = "train",
    *,
    batch_size: int,
    size: int | Sequence[int] = 64,
    seed: int = 0,
    num_examples: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    views: Sequence[str] = ("image", "attributes"),
    shuffle: bool = True,
    all_attributes: bool = True,
    num_threads: int = 2,
    prefetch: int = 4,
  ):
    unknown = set(views) - set(VIEWS)
    if unknown:
      raise ValueError(f"unknown views {sorted(unknown)}; choose from {VIEWS}")
    self.views = tuple(views)
    source = FacesSource(
      split,
      size=size,
      num_examples=num_examples,
      seed=seed,
      all_attributes=all_attributes,
      views=tuple(dict.fromkeys(_DRAWN[v] for v in self.views if v in _DRAWN)),
    )
    super().__init__(
      source,
      batch_size=batch_size,
      collate=lambda items, indices: collate(items, self.views),
      seed=seed,
      stream_id=faces._SPLIT_IDS[split],
      shuffle=shuffle,
      process_index=process_index,
      process_count=process_count,
      num_threads=num_threads,
      prefetch=prefetch,
    )

  def element_spec(self) -> dict[str, Any]:
    """Shapes/dtypes of one (local) batch, without rendering."""
    b, h, w = self.local_batch_size, self.source.height, self.source.width
    spec: dict[str, Any] = {
      "image": ((b, h, w, 3), np.float32),
      "image_uint8": ((b, h, w, 3), np.uint8),
      "label_map": ((b, h, w), np.int32),
      "edges": ((b, h, w, 3), np.float32),
      "edges_uint8": ((b, h, w, 3), np.uint8),
      "attributes": {k: ((b,), np.int32) for k in faces.ATTRIBUTE_NAMES},
      "attributes_onehot": ((b, sum(faces.ATTRIBUTE_SIZES)), np.float32),
      "caption": ((b,), str),
      "index": ((b,), np.int64),
    }
    return {k: v for k, v in spec.items() if k in self.views or k == "index"}


def _to_float(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def collate(
  items: Sequence[dict[str, Any]], views: Sequence[str] = ("image", "attributes")
) -> dict[str, Any]:
  """Stack :class:`FacesSource` items into a batch with the requested ``views``."""
  out: dict[str, Any] = {"index": np.asarray([it["index"] for it in items], np.int64)}
  if "image" in views or "image_uint8" in views:
    img = np.stack([it["image"] for it in items])
    if "image" in views:
      out["image"] = _to_float(img)
    if "image_uint8" in views:
      out["image_uint8"] = img
  if "edges" in views or "edges_uint8" in views:
    e = np.stack([it["edges"] for it in items])
    if "edges" in views:
      out["edges"] = _to_float(e)
    if "edges_uint8" in views:
      out["edges_uint8"] = e
  if "label_map" in views:
    out["label_map"] = np.stack([it["label_map"] for it in items]).astype(np.int32)
  if "attributes" in views or "attributes_onehot" in views:
    attrs = {
      k: np.asarray([it["attributes"][k] for it in items], np.int32) for k in faces.ATTRIBUTE_NAMES
    }
    if "attributes" in views:
      out["attributes"] = attrs
    if "attributes_onehot" in views:
      out["attributes_onehot"] = faces.one_hot_attributes(attrs)
  if "caption" in views:
    out["caption"] = [str(it["caption"]) for it in items]
  return out


def faces_batches(
  split: str = "train",
  *,
  batch_size: int,
  size: int | Sequence[int] = 64,
  seed: int = 0,
  num_examples: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
  views: Sequence[str] = ("image", "attributes"),
  shuffle: bool = True,
  all_attributes: bool = True,
  num_threads: int = 2,
  prefetch: int = 4,
) -> FacesBatches:
  """Batch stream over the faces ``split`` (see :class:`FacesBatches`)."""
  return FacesBatches(
    split,
    batch_size=batch_size,
    size=size,
    seed=seed,
    num_examples=num_examples,
    process_index=process_index,
    process_count=process_count,
    views=views,
    shuffle=shuffle,
    all_attributes=all_attributes,
    num_threads=num_threads,
    prefetch=prefetch,
  )
