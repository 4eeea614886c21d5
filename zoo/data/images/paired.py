"""Paired (aligned) image data for image-to-image translation (pix2pix).

Two sources share one batch interface:

* :class:`AlignedFolder`: the pix2pix dataset layout, ``root/{train,val,test}/*.png``
  where every file holds the pair side by side, ``A | B``: the left half
  (columns ``[0, W/2)``) is A, the right half B. With ``check_square`` (the
  default) each half must be square, i.e. ``W == 2H``; a file that is not is
  refused with a one-line :class:`PairedDataError` naming it.
* :class:`SyntheticEdgesFaces`: the embedded default "edges2faces": A is the
  edge drawing and B the colour face from the procedural renderer of
  :mod:`zoo.data.faces`, rendered in memory, so no download is needed.

Sources return uint8 ``(A, B)`` pairs already resized to a requested size.
:class:`PairedBatches` turns a source into the training stream (pix2pix's
"resize_and_crop" jitter: resize both halves to ``load_size``, random crop of
``crop_size`` at the same position in A and B, the same random horizontal flip)
and :func:`eval_batches` into ordered, un-jittered evaluation batches.

Determinism (:class:`PairedBatches` is a :class:`zoo.data.stream.ShardedStream`):
global batch ``k`` holds the examples at global positions ``k*B .. k*B+B-1`` of an
endless sequence of epochs, each a permutation of the source seeded by
``(seed, epoch)``; the jitter of position ``g`` is drawn from ``(seed, g)``. Batch ``k``
is therefore a pure function of ``(seed, k)`` and training resumes exactly. Process
``p`` of ``P`` keeps rows ``[p*B/P, (p+1)*B/P)``.

Batches are dicts of numpy arrays: ``A`` float32 ``[b, h, w, input_nc]`` and
``B`` float32 ``[b, h, w, output_nc]`` in ``[-1, 1]``, ``index`` int64 ``[b]``
(source index) and, for evaluation, ``mask`` float32 ``[b]`` (0 on padding rows).
``direction='BtoA'`` swaps A and B at the source.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from zoo.data import stream
from zoo.data.images.decode import to_rgb8
from zoo.errors import ZooError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
DIRECTIONS = ("AtoB", "BtoA")
SPLITS = ("train", "val", "test")
_PERM_MAGIC = 0x9A1D
_JITTER_MAGIC = 0x71D7


class PairedDataError(ZooError, ValueError):
  """A paired-image folder or file is missing or unusable (one-line message)."""


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  h, w = size
  return int(h), int(w)


def scaled_load_size(crop_size: int, ref_load: int = 286, ref_crop: int = 256) -> int:
  """pix2pix's jitter margin scaled to a smaller crop: ``round(crop * 286 / 256)``."""
  return int(round(crop_size * ref_load / ref_crop))


def to_float(x: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return np.asarray(x, np.float32) / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255] (clipped, rounded)."""
  x = (np.asarray(x, np.float32) + 1.0) * 127.5
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _channels(img: np.ndarray, nc: int) -> np.ndarray:
  """uint8 [h, w, 3] -> [h, w, nc] (nc 1: luminance, like PIL's 'L')."""
  if nc == 3:
    return img
  g = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.rint(g), 0, 255).astype(np.uint8)[..., None]


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  if img.shape[:2] == hw:
    return img
  return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BICUBIC))


# ---------------------------------------------------------------------------
# Sources.
# ---------------------------------------------------------------------------


def list_images(folder: str) -> list[str]:
  """Image files under ``folder`` (recursive, sorted). One-line error if none."""
  if not os.path.isdir(folder):
    raise PairedDataError(f"paired image folder {folder!r} does not exist")
  out = []
  for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
    dirnames.sort()
    for name in sorted(filenames):
      if name.lower().endswith(IMG_EXTENSIONS):
        out.append(os.path.join(dirpath, name))
  if not out:
    raise PairedDataError(
      f"no images in {folder!r} (expected A|B pairs as {'/'.join(IMG_EXTENSIONS)} files)"
    )
  return out


class _PairSource(stream.MemoSource):
  """``load``/``load_many`` of a pair source whose ``_memo`` (:class:`zoo.data.stream.Memo`)
  makes ``(A, B)`` from the key ``(index, (h, w))``."""

  _memo: stream.Memo

  def load(self, index: int, size: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` at ``size``, uint8 [h, w, 3] (made once, then kept unless ``cache=False``)."""
    return self._memo.get((int(index), _hw(size)))

  def load_many(self, indices: Sequence[int], size) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs of ``indices``, those not yet made made together (in the worker
    processes when the source has them)."""
    return self._memo.get_many([(int(i), _hw(size)) for i in indices])


class AlignedFolder(_PairSource):
  """A folder of ``A | B`` side-by-side images (pix2pix's ``aligned`` dataset).

  Args:
    folder: directory with the images (searched recursively).
    direction: 'AtoB' or 'BtoA' (swaps the halves).
    check_square: refuse files whose width is not twice their height.
    max_size: keep only the first ``max_size`` files (0: all).
    cache: keep resized pairs in memory (keyed by index and size).
    single: the files are plain A images with no target (pix2pix's ``single``
      dataset for testing); ``B`` is then all zeros and ``has_target`` False.
  """

  def __init__(
    self,
    folder: str,
    *,
    direction: str = "AtoB",
    check_square: bool = True,
    max_size: int = 0,
    cache: bool = True,
    single: bool = False,
  ):
    if direction not in DIRECTIONS:
      raise PairedDataError(f"direction={direction!r}, expected one of {DIRECTIONS}")
    self.folder = folder
    self.direction = direction
    self.single = single
    self.has_target = not single
    paths = list_images(folder)
    if max_size > 0:
      paths = paths[:max_size]
    self.paths = paths
    self._memo = stream.Memo(self._load, cache=cache)
    for p in paths:
      self._check(p, check_square)

  def _check(self, path: str, check_square: bool) -> None:
    try:
      with Image.open(path) as im:
        w, h = im.size
    except Exception as e:  # pylint: disable=broad-except
      raise PairedDataError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    if self.single:
      return
    if check_square and w != 2 * h:
      raise PairedDataError(
        f"{path}: width {w} is not twice the height {h}; expected an A|B pair side by side "
        "(set check_square=False to accept non-square halves)"
      )
    if w < 2 or w % 2:
      raise PairedDataError(f"{path}: width {w} must be even to split into A|B halves")

  def __len__(self) -> int:
    return len(self.paths)

  def name(self, index: int) -> str:
    return os.path.splitext(os.path.relpath(self.paths[index], self.folder))[0].replace(os.sep, "_")

  def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The full-resolution halves ``(A, B)`` as uint8 [h, w, 3] (after ``direction``)."""
    path = self.paths[index]
    try:
      with Image.open(path) as im:
        img = to_rgb8(im, path)  # 16-bit greyscale scaled to 8 bits, not clipped
    except Exception as e:  # pylint: disable=broad-except
      raise PairedDataError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    if self.single:
      return img, np.zeros_like(img)
    half = img.shape[1] // 2
    a, b = img[:, :half], img[:, half : 2 * half]
    return (b, a) if self.direction == "BtoA" else (a, b)

  def _load(self, key: tuple[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    index, hw = key
    a, b = self.read(index)
    return np.ascontiguousarray(_resize(a, hw)), np.ascontiguousarray(_resize(b, hw))


class SyntheticEdgesFaces(_PairSource):
  """Embedded "edges2faces": A = edge drawing, B = colour face (:mod:`zoo.data.faces`).

  Example ``i`` of split ``split`` is ``faces.make_example(i, seed=seed,
  split=...)`` rendered directly at the requested size (sizes above the
  renderer's maximum are rendered at that maximum and resized), so edges stay
  one pixel thin at every resolution. :meth:`attributes` gives its true labels
  without rendering; :data:`EDGE_ATTRIBUTES` are those the edge drawing shows
  (the rest are colours, which edges do not carry).
  """

  #: Attributes visible in the edge drawing A (colour attributes are not).
  EDGE_ATTRIBUTES = ("face_shape", "hair_style", "eyes", "mouth", "glasses")

  def __init__(
    self,
    split: str,
    num_examples: int,
    *,
    seed: int = 0,
    direction: str = "AtoB",
    cache: bool = True,
    processes: int = 0,
  ):
    from zoo.data import faces  # pylint: disable=g-import-not-at-top

    self._faces = faces
    if direction not in DIRECTIONS:
      raise PairedDataError(f"direction={direction!r}, expected one of {DIRECTIONS}")
    if num_examples < 1:
      raise PairedDataError(f"synthetic split {split!r} needs >= 1 examples, got {num_examples}")
    self.split = {"val": "valid"}.get(split, split)
    if self.split not in faces.SPLITS:
      raise PairedDataError(f"split={split!r}, expected one of {SPLITS}")
    self.num_examples = int(num_examples)
    self.seed = int(seed)
    self.direction = direction
    self.has_target = True
    draw = functools.partial(_draw_pair, seed=self.seed, split=self.split, direction=direction)
    self._memo = stream.Memo(draw, cache=cache, processes=processes)

  def __len__(self) -> int:
    return self.num_examples

  def name(self, index: int) -> str:
    return f"{self.split}_{index:06d}"

  def attributes(self, index: int | Sequence[int] | np.ndarray) -> dict[str, Any]:
    """True attribute codes of example ``index`` (``{name: int}``) or of an array of
    indices (``{name: int64[n]}``), exactly ``faces.make_example(...)['attributes']``
    but without rendering (the attribute draw has its own rng stream)."""
    if np.ndim(index) == 0:
      rngs = self._faces._example_rngs  # pylint: disable=protected-access
      r_attr = rngs(self.seed, self.split, int(index))[0]
      return {k: int(v[0]) for k, v in self._faces.sample_attributes(r_attr, 1).items()}
    idx = np.asarray(index, np.int64).reshape(-1)
    out = {k: np.empty(idx.shape, np.int64) for k in self._faces.ATTRIBUTE_NAMES}
    for j, i in enumerate(idx):
      for k, v in self.attributes(int(i)).items():
        out[k][j] = v
    return out


def _draw_pair(
  key: tuple[int, tuple[int, int]], *, seed: int, split: str, direction: str
) -> tuple[np.ndarray, np.ndarray]:
  """``(A, B)`` of :class:`SyntheticEdgesFaces` example ``key = (index, (h, w))``."""
  from zoo.data import faces  # pylint: disable=g-import-not-at-top

  index, (h, w) = key
  lo, hi = faces.MIN_SIZE, faces.MAX_SIZE
  rh, rw = min(max(h, lo), hi), min(max(w, lo), hi)
  ex = faces.make_example(
    index, seed=seed, split=split, height=rh, width=rw, views=("image", "edges")
  )
  a, b = _resize(ex["edges"], (h, w)), _resize(ex["image"], (h, w))
  return (b, a) if direction == "BtoA" else (a, b)


# ---------------------------------------------------------------------------
# Jitter and batches.
# ---------------------------------------------------------------------------


def _draw_jitter(
  rng: np.random.Generator, load_hw: tuple[int, int], crop_hw: tuple[int, int], flip: bool
) -> tuple[int, int, bool]:
  top = int(rng.integers(0, load_hw[0] - crop_hw[0] + 1))
  left = int(rng.integers(0, load_hw[1] - crop_hw[1] + 1))
  mirror = bool(rng.random() < 0.5) if flip else False
  return top, left, mirror


def jitter_params(
  seed: int, position: int, *, load_hw: tuple[int, int], crop_hw: tuple[int, int], flip: bool
) -> tuple[int, int, bool]:
  """``(top, left, mirror)`` for global stream position ``position``."""
  rng = np.random.default_rng([_JITTER_MAGIC, int(seed), int(position)])
  return _draw_jitter(rng, load_hw, crop_hw, flip)


def apply_jitter(
  img: np.ndarray, top: int, left: int, mirror: bool, crop_hw: tuple[int, int]
) -> np.ndarray:
  out = img[top : top + crop_hw[0], left : left + crop_hw[1]]
  return out[:, ::-1] if mirror else out


def _process_rows(batch_size: int, process_index: int, process_count: int) -> range:
  try:
    per = stream.check_sharding(batch_size, process_index, process_count)
  except ValueError as e:
    raise PairedDataError(str(e)) from None
  return range(process_index * per, (process_index + 1) * per)


class _AtSize:
  """``source[i]`` = ``(i, A, B)``: the pair ``i`` of a paired source resized to ``hw``."""

  def __init__(self, source, hw: tuple[int, int]):
    self.source, self.hw = source, hw

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray]:
    return (int(index), *self.source.load(int(index), self.hw))

  def get_many(self, indices: Sequence[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    pairs = self.source.load_many(indices, self.hw)
    return [(int(i), a, b) for i, (a, b) in zip(indices, pairs)]


class PairedBatches(stream.ShardedStream):
  """The jittered training stream over a source (see the module docstring).

  A :class:`zoo.data.stream.ShardedStream` without dropped remainders (epochs follow
  each other without a gap), whose per-row generator draws the jitter.

  Args:
    source: an :class:`AlignedFolder` or :class:`SyntheticEdgesFaces`.
    batch_size: the *global* batch size.
    load_size, crop_size: ``int`` (square) or ``(h, w)``; ``load >= crop``.
    flip: random horizontal mirroring (pix2pix's ``not no_flip``).
    shuffle: visit a fresh permutation each epoch (else the source order).
    input_nc, output_nc: 3 (RGB) or 1 (luminance).
    seed, process_index, process_count: see the module docstring.
    num_workers: grain threads computing batches ahead in :meth:`iterate` (at least 1).
  """

  def __init__(
    self,
    source,
    *,
    batch_size: int,
    load_size: int | Sequence[int],
    crop_size: int | Sequence[int],
    flip: bool = True,
    shuffle: bool = True,
    input_nc: int = 3,
    output_nc: int = 3,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
  ):
    if len(source) < 1:
      raise PairedDataError("the paired-image source is empty")
    _process_rows(batch_size, process_index, process_count)
    self.load_hw, self.crop_hw = _hw(load_size), _hw(crop_size)
    if self.load_hw[0] < self.crop_hw[0] or self.load_hw[1] < self.crop_hw[1]:
      raise PairedDataError(f"load_size {self.load_hw} must be >= crop_size {self.crop_hw}")
    for nc in (input_nc, output_nc):
      if nc not in (1, 3):
        raise PairedDataError(f"input_nc/output_nc must be 1 or 3, got {nc}")
    self.flip = bool(flip)
    self.input_nc, self.output_nc = int(input_nc), int(output_nc)
    super().__init__(
      _AtSize(source, self.load_hw),
      batch_size=batch_size,
      collate=_collate_pairs,
      seed=seed,
      transform=self._jitter,
      shuffle=shuffle,
      drop_remainder=False,
      permutation_key=(_PERM_MAGIC, int(seed)),
      row_key=(_JITTER_MAGIC, int(seed)),
      process_index=process_index,
      process_count=process_count,
      num_threads=max(int(num_workers), 1),
      prefetch=2,
    )

  def _jitter(self, item, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    index, a, b = item
    top, left, mirror = _draw_jitter(rng, self.load_hw, self.crop_hw, self.flip)
    a = apply_jitter(a, top, left, mirror, self.crop_hw)
    b = apply_jitter(b, top, left, mirror, self.crop_hw)
    return index, _channels(a, self.input_nc), _channels(b, self.output_nc)


def _collate_pairs(items, indices: np.ndarray) -> dict[str, np.ndarray]:
  return {
    "A": to_float(np.stack([a for _, a, _ in items])),
    "B": to_float(np.stack([b for _, _, b in items])),
    "index": np.asarray(indices, np.int64),
  }


def eval_batches(
  source,
  *,
  batch_size: int,
  size: int | Sequence[int],
  num_examples: int = 0,
  input_nc: int = 3,
  output_nc: int = 3,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Ordered, un-jittered batches over the first ``num_examples`` (0: all) examples.

  Pairs are resized straight to ``size`` (pix2pix tests with ``load_size =
  crop_size``, no flip). The last batch is padded by repeating the last example
  with ``mask`` 0, so every global batch has ``batch_size`` rows; this process
  gets its rows of each.
  """
  n = len(source) if num_examples <= 0 else min(num_examples, len(source))
  rows = _process_rows(batch_size, process_index, process_count)
  hw = _hw(size)
  for start in range(0, n, batch_size):
    idx, mask, a_list, b_list = [], [], [], []
    for r in rows:
      g = start + r
      i = min(g, n - 1)
      a, b = source.load(i, hw)
      idx.append(i)
      mask.append(1.0 if g < n else 0.0)
      a_list.append(_channels(a, input_nc))
      b_list.append(_channels(b, output_nc))
    yield {
      "A": to_float(np.stack(a_list)),
      "B": to_float(np.stack(b_list)),
      "index": np.asarray(idx, np.int64),
      "mask": np.asarray(mask, np.float32),
    }


def num_eval_batches(n: int, batch_size: int) -> int:
  return math.ceil(n / batch_size)


def open_source(
  dataroot: str,
  split: str,
  *,
  direction: str = "AtoB",
  check_square: bool = True,
  max_size: int = 0,
  synthetic_sizes: dict[str, int] | None = None,
  seed: int = 0,
  cache: bool = True,
  required: bool = True,
  processes: int = 0,
):
  """The source of ``split``: ``dataroot/split`` or, for ``dataroot=''``, edges2faces.

  With ``required=False`` a missing split folder gives ``None`` instead of an error.
  ``processes`` draw the embedded pairs (:class:`zoo.data.stream.Memo`); a folder's
  images are decoded by the stream's reader threads, as Pillow decodes outside the GIL.
  """
  if split not in SPLITS:
    raise PairedDataError(f"split={split!r}, expected one of {SPLITS}")
  if not dataroot:
    sizes = synthetic_sizes or {"train": 1000, "val": 64, "test": 64}
    n = int(sizes.get(split, 0))
    if n <= 0:
      if required:
        raise PairedDataError(f"the synthetic {split} split is empty (size {n})")
      return None
    src = SyntheticEdgesFaces(
      split, n, seed=seed, direction=direction, cache=cache, processes=processes
    )
    if max_size > 0:
      src.num_examples = min(src.num_examples, max_size)
    return src
  if not os.path.isdir(dataroot):
    raise PairedDataError(f"dataroot {dataroot!r} does not exist")
  folder = os.path.join(dataroot, split)
  if not os.path.isdir(folder):
    if required:
      raise PairedDataError(
        f"no {split!r} folder in dataroot {dataroot!r} (expected {folder} with A|B images)"
      )
    return None
  return AlignedFolder(
    folder, direction=direction, check_square=check_square, max_size=max_size, cache=cache
  )


__all__ = [
  "PairedDataError",
  "AlignedFolder",
  "SyntheticEdgesFaces",
  "PairedBatches",
  "eval_batches",
  "open_source",
  "list_images",
  "jitter_params",
  "apply_jitter",
  "scaled_load_size",
  "to_float",
  "to_uint8",
  "IMG_EXTENSIONS",
  "DIRECTIONS",
  "SPLITS",
]
