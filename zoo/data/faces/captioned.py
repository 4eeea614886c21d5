"""The synthetic faces with captions: the embedded text-to-image dataset.

Each face of a split has ``captions_per_face`` captions (:func:`zoo.data.faces.describe`
with a random non-empty subset of the attributes, so a caption may say nothing about the
hair), drawn from a generator seeded by ``(seed, split, face, variant)``; a pair's
caption never depends on the image size or on other pairs. :class:`CaptionedFaces` is a
random-access source of ``(image, caption)`` pairs for :class:`zoo.data.stream.ShardedStream`
(pair ``j`` = face ``j // K``, caption variant ``j % K``); images are rendered on first use
and kept.

Held-out captions (:func:`heldout_pairs`): the evaluation of a text-to-image model draws
captions of *test* faces and keeps only strings that no training pair uses, so a sample
is judged on a phrasing the model never saw. ``mentions`` says which attributes the
caption names; only those are scored.

Pair layout: ``image`` uint8 [H, W, 3], ``caption`` str, ``attributes`` int32 [A] (schema
order of :data:`zoo.data.faces.ATTRIBUTE_NAMES`), ``mentions`` bool [A], ``face`` int.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zoo.data import faces
from zoo.data.stream import Memo, MemoSource

_CAPTION_MAGIC = 0xCA9


def face_attributes(index: int, *, seed: int, split: str) -> dict[str, int]:
  """The attributes of face ``index`` of ``(seed, split)`` without rendering it."""
  r_attr = faces._example_rngs(seed, split, index)[0]  # pylint: disable=protected-access
  return {k: int(v[0]) for k, v in faces.sample_attributes(r_attr, 1).items()}


def pair_caption(
  attrs: dict[str, int], *, seed: int, split: str, face: int, variant: int
) -> tuple[str, np.ndarray]:
  """Caption ``variant`` of a face and its ``mentions`` mask (bool [A])."""
  ss = np.random.SeedSequence(
    [_CAPTION_MAGIC, int(seed), faces._SPLIT_IDS[split], int(face), int(variant)]  # pylint: disable=protected-access
  )
  text, names = faces.describe(attrs, np.random.default_rng(ss), all_attributes=False)
  return text, np.asarray([n in names for n in faces.ATTRIBUTE_NAMES])


def twin_captions(
  attributes: np.ndarray, attribute: str, *, seed: int = 0, split: str = "test"
) -> tuple[list[str], list[str]]:
  """For each face (codes ``[n, A]``), a caption that names ``attribute`` and its twin
  that says another value of it: the same template, words and other attributes, so
  the two differ in that attribute only (the value drawn from ``seed`` and the face).

  Returns ``(right, wrong)`` lists of ``n`` captions."""
  j = faces.ATTRIBUTE_NAMES.index(attribute)
  size = faces.ATTRIBUTE_SIZES[j]
  right, wrong = [], []
  for i, row in enumerate(np.asarray(attributes)):
    attrs = {k: int(v) for k, v in zip(faces.ATTRIBUTE_NAMES, row)}
    rng = np.random.default_rng([_CAPTION_MAGIC, 0x7A1, int(seed), faces._SPLIT_IDS[split], i])  # pylint: disable=protected-access
    other = dict(attrs, **{attribute: (attrs[attribute] + int(rng.integers(1, size))) % size})
    for variant in range(1000):  # a random subset names the attribute half the time
      text, mentions = pair_caption(attrs, seed=seed, split=split, face=i, variant=variant)
      if mentions[j]:
        break
    right.append(text)
    wrong.append(pair_caption(other, seed=seed, split=split, face=i, variant=variant)[0])
  return right, wrong


def near_misses(
  attributes: np.ndarray, mentions: np.ndarray, *, k: int = 8, seed: int = 0
) -> np.ndarray:
  """For every pair's caption, ``k`` pairs whose faces contradict it in exactly one of
  the attributes it names: the caption's hard mismatched images.

  Args:
    attributes: int [n, A], the attribute codes of pair i's face (non-negative).
    mentions: bool [n, A], which attributes pair i's caption names.
    k: candidates per caption, drawn uniformly with replacement from all near misses.
    seed: seeds the draw.
  Returns:
    int64 [n, k]: pair indices; row j is -1 where no face near-misses caption j.

  Grouped rather than compared pair by pair (O(n log n) per named-attribute pattern, not
  O(n^2)): the near misses of caption j that differ in attribute t are the pairs that
  agree with j on every other attribute j names (one block of a sort by those codes and
  then by t), less the sub-block that also agrees on t. A draw picks t in proportion to
  its block's size and then a pair in it, which is uniform over all near misses.
  """
  a = np.asarray(attributes, np.int64)
  m = np.asarray(mentions, bool)
  n, num = a.shape
  out = np.full((n, k), -1, np.int64)
  if n == 0 or k == 0:
    return out
  radix = a.max(0) + 1  # codes as digits of one integer key per pair
  if float(np.prod(radix.astype(np.float64))) >= 2.0**62:
    raise ValueError("near_misses: too many attribute values to key the pairs by")
  sizes = np.zeros((n, num), np.int64)  # |near misses of caption j that differ in t|
  plans = []
  patterns, which = np.unique(m, axis=0, return_inverse=True)
  which = np.asarray(which).reshape(-1)
  for p, pattern in enumerate(patterns):
    js = np.flatnonzero(which == p)
    named = np.flatnonzero(pattern)
    for t in named:
      key = np.zeros(n, np.int64)
      for i in named[named != t]:
        key = key * radix[i] + a[:, i]
      combined = key * radix[t] + a[:, t]
      order = np.argsort(combined, kind="stable")
      sorted_keys = combined[order]
      base = key[js] * radix[t]
      start = np.searchsorted(sorted_keys, base)
      stop = np.searchsorted(sorted_keys, base + radix[t])
      lo = np.searchsorted(sorted_keys, base + a[js, t])
      hi = np.searchsorted(sorted_keys, base + a[js, t] + 1)
      sizes[js, t] = (stop - start) - (hi - lo)
      plans.append((js, t, order, start, lo, hi))
  total = sizes.sum(1)
  rng = np.random.default_rng([_CAPTION_MAGIC, 0x4EA, int(seed)])
  u = np.minimum(
    (rng.random((n, k)) * total[:, None]).astype(np.int64), np.maximum(total - 1, 0)[:, None]
  )
  ends = np.cumsum(sizes, 1)
  pick = np.minimum((u[:, :, None] >= ends[:, None, :]).sum(-1), num - 1)  # the attribute t
  r = u - np.take_along_axis(ends - sizes, pick, 1)  # the rank within t's block
  for js, t, order, start, lo, hi in plans:
    rows, cols = np.nonzero((pick[js] == t) & (total[js] > 0)[:, None])
    pos = start[rows] + r[js[rows], cols]
    pos = np.where(pos < lo[rows], pos, pos + (hi[rows] - lo[rows]))  # skip the agreeing ones
    out[js[rows], cols] = order[pos]
  return out


def _codes(attrs: dict[str, int]) -> np.ndarray:
  return np.asarray([attrs[n] for n in faces.ATTRIBUTE_NAMES], np.int32)


class CaptionedFaces(MemoSource):
  """``num_faces * captions_per_face`` (image, caption) pairs of one faces split; each
  face is drawn once and kept, by ``processes`` worker processes when > 0
  (:class:`zoo.data.stream.Memo`)."""

  def __init__(
    self,
    split: str,
    size: Sequence[int],
    *,
    num_faces: int,
    captions_per_face: int = 5,
    seed: int = 0,
    processes: int = 0,
  ):
    if split not in faces.SPLITS:
      raise ValueError(f"split must be one of {faces.SPLITS}, got {split!r}")
    if num_faces < 1 or captions_per_face < 1:
      raise ValueError("num_faces and captions_per_face must be >= 1")
    self.split, self.seed = split, int(seed)
    self.height, self.width = int(size[0]), int(size[1])
    faces._check_size(self.height, self.width)  # pylint: disable=protected-access
    self.num_faces, self.captions_per_face = int(num_faces), int(captions_per_face)
    draw = functools.partial(
      faces.face_image, seed=self.seed, split=self.split, height=self.height, width=self.width
    )
    self._memo = Memo(draw, processes=processes)

  def __len__(self) -> int:
    return self.num_faces * self.captions_per_face

  @property
  def num_images(self) -> int:
    """The faces, by the name every pair source uses (:mod:`zoo.data.caption_pairs`)."""
    return self.num_faces

  def image(self, face: int) -> np.ndarray:
    return self._memo.get(int(face))

  def caption(self, index: int) -> tuple[str, np.ndarray, dict[str, int]]:
    face, variant = divmod(int(index), self.captions_per_face)
    attrs = face_attributes(face, seed=self.seed, split=self.split)
    text, mentions = pair_caption(
      attrs, seed=self.seed, split=self.split, face=face, variant=variant
    )
    return text, mentions, attrs

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self.get_many([index])[0]

  def get_many(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    """The pairs of ``indices``, their new faces drawn together (by the worker processes
    when the source has them)."""
    indices = [int(i) for i in indices]
    for index in indices:
      if not 0 <= index < len(self):
        raise IndexError(f"pair {index} out of range [0, {len(self)})")
    face_of = [i // self.captions_per_face for i in indices]
    out = []
    for index, face, image in zip(indices, face_of, self._memo.get_many(face_of)):
      text, mentions, attrs = self.caption(index)
      out.append(
        {
          "image": image,
          "caption": text,
          "attributes": _codes(attrs),
          "mentions": mentions,
          "face": face,
        }
      )
    return out

  def near_misses(self, *, k: int = 8, seed: int = 0) -> np.ndarray:
    """:func:`near_misses` of every pair of the source (no rendering)."""
    rows = [self.caption(i) for i in range(len(self))]
    attrs = np.stack([_codes(r[2]) for r in rows])
    return near_misses(attrs, np.stack([r[1] for r in rows]), k=k, seed=seed)

  def all_captions(self) -> set[str]:
    """Every caption string of the source (no rendering)."""
    return {self.caption(i)[0] for i in range(len(self))}


def heldout_pairs(
  num: int,
  *,
  exclude: set[str],
  seed: int = 0,
  split: str = "test",
  size: Sequence[int] = (32, 32),
  with_images: bool = True,
  accept: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
  """``num`` captions of ``split`` faces whose strings are not in ``exclude``.

  Returns ``caption`` list[str], ``attributes`` int32 [n, A], ``mentions`` bool [n, A],
  ``face`` int64 [n] and (``with_images``) ``image`` uint8 [n, H, W, 3]. One caption per
  face (variant 0, else the next variant not excluded), faces in order. ``accept``: an
  optional test a caption must also pass (e.g. that a vocabulary can encode it).
  """
  src = CaptionedFaces(split, size, num_faces=10**9, captions_per_face=16, seed=seed)
  out: dict[str, list] = {"caption": [], "attributes": [], "mentions": [], "face": []}
  face = 0
  while len(out["caption"]) < num:
    for variant in range(src.captions_per_face):
      text, mentions, attrs = src.caption(face * src.captions_per_face + variant)
      if text not in exclude and (accept is None or accept(text)):
        out["caption"].append(text)
        out["attributes"].append(_codes(attrs))
        out["mentions"].append(mentions)
        out["face"].append(face)
        break
    face += 1
  result: dict[str, Any] = {
    "caption": out["caption"],
    "attributes": np.stack(out["attributes"]),
    "mentions": np.stack(out["mentions"]),
    "face": np.asarray(out["face"], np.int64),
  }
  if with_images:
    result["image"] = np.stack([src.image(int(f)) for f in result["face"]])
  return result
