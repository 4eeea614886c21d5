"""Unconditional image sources for the GANs: a folder, a prepared TFDS dataset, or faces.

Every source is random access (``len``, ``source[i]`` -> uint8 ``[H, W, 3]``) at one
size ``(H, W)``, and plugs into :class:`zoo.data.stream.ShardedStream`:

- ``faces`` (the default, embedded): the synthetic cartoon faces of :mod:`zoo.data.faces`,
  rendered once and kept in memory.
- a folder path: every ``.jpg``/``.jpeg``/``.png`` below it (sorted, recursive), each
  centre-cropped to the target aspect ratio and resized; rectangular targets allowed.
  Every file is checked when the source opens, so a bad file is one line up front,
  not a crash in the middle of training.
- ``tfds:NAME[/CONFIG]`` (e.g. ``tfds:celeb_a``): a TFDS dataset the user has already
  prepared under ``data_dir`` (nothing is downloaded), read with
  ``tfds.data_source`` (no TensorFlow); images from its ``image`` feature.

:func:`downsample` box-filters a batch to a lower resolution (ProGAN's real images at
each level of detail).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from zoo.data.images.decode import to_rgb8_image
from zoo.data.stream import Memo, MemoSource
from zoo.errors import ZooError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ImageDataError(ZooError, ValueError):
  """An image source that cannot be used (one-line message)."""


def center_crop_resize(img: Image.Image, size: Sequence[int]) -> np.ndarray:
  """uint8 ``[h, w, 3]``: the largest centred crop with aspect ``h:w``, resized (Lanczos)."""
  h, w = int(size[0]), int(size[1])
  img = to_rgb8_image(img)  # 16-bit greyscale scaled to 8 bits, not clipped
  iw, ih = img.size
  if iw * h > ih * w:  # too wide: crop the width
    cw, ch = max(1, round(ih * w / h)), ih
  else:
    cw, ch = iw, max(1, round(iw * h / w))
  left, top = (iw - cw) // 2, (ih - ch) // 2
  img = img.crop((left, top, left + cw, top + ch))
  if img.size != (w, h):
    img = img.resize((w, h), Image.LANCZOS)
  return np.asarray(img, np.uint8)


def list_images(folder: str) -> list[str]:
  """Sorted image files below ``folder``; ImageDataError when there is none."""
  if not os.path.isdir(folder):
    raise ImageDataError(f"image folder {folder!r} does not exist or is not a directory")
  files = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
  if not files:
    raise ImageDataError(f"image folder {folder!r} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
  return files


class ImageFolder(MemoSource):
  """Images of a folder at ``size``; see the module docstring."""

  def __init__(self, folder: str, size: Sequence[int], *, max_images: int = 0, cache=True):
    self._memo = Memo(self._load, cache=cache)
    files = list_images(folder)
    self.files = files[:max_images] if max_images else files
    self.size = (int(size[0]), int(size[1]))
    h, w = self.size
    for path in self.files:
      try:
        with Image.open(path) as im:
          im.verify()
          iw, ih = im.size
      except Exception as e:  # pylint: disable=broad-except  # PIL raises many types
        raise ImageDataError(f"unreadable image {path!r} ({type(e).__name__}: {e})") from None
      # The centre crop of aspect h:w must hold at least h x w pixels: no upscaled training data.
      if min(iw / w, ih / h) < 1:
        raise ImageDataError(
          f"image {path!r} is {iw}x{ih} (width x height), too small for the target "
          f"{w}x{h}; lower the resolution or drop the file"
        )

  def __len__(self) -> int:
    return len(self.files)

  def _load(self, index: int) -> np.ndarray:
    path = self.files[index]
    try:
      with Image.open(path) as im:
        return center_crop_resize(im, self.size)
    except Exception as e:  # pylint: disable=broad-except
      raise ImageDataError(f"unreadable image {path!r} ({type(e).__name__}: {e})") from None

  def __getitem__(self, index: int) -> np.ndarray:
    return self._memo.get(int(index))


class TfdsImages(MemoSource):
  """The ``image`` feature of a prepared TFDS dataset (never downloads)."""

  def __init__(
    self, name: str, split: str, size: Sequence[int], *, data_dir: str | None = None, cache=False
  ):
    self._memo = Memo(self._load, cache=cache)
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    self.size = (int(size[0]), int(size[1]))
    try:
      self._ds = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as e:  # pylint: disable=broad-except  # missing/unprepared datasets
      first = (str(e).strip().splitlines() or [""])[0][:200]
      raise ImageDataError(
        f"TFDS dataset {name!r} (split {split!r}) is not prepared in "
        f"{data_dir or tfds.core.constants.DATA_DIR!r}; prepare it first "
        f"(`tfds build {name.split('/')[0]}`, with manual_dir where the dataset needs one): "
        f"{type(e).__name__}: {first}"
      ) from None
    if len(self._ds) == 0:
      raise ImageDataError(f"TFDS dataset {name!r} split {split!r} is empty")

  def __len__(self) -> int:
    return len(self._ds)

  def _load(self, index: int) -> np.ndarray:
    ex = self._ds[index]
    if "image" not in ex:
      raise ImageDataError(f"TFDS examples have no 'image' feature (keys: {sorted(ex)})")
    return center_crop_resize(Image.fromarray(np.asarray(ex["image"])), self.size)

  def __getitem__(self, index: int) -> np.ndarray:
    return self._memo.get(int(index))


class RenderedFaces(MemoSource):
  """The synthetic faces of a split at ``size``, drawn on first use and kept in memory;
  ``processes`` > 0 draws each batch's new faces in that many worker processes
  (:class:`zoo.data.stream.Memo`)."""

  def __init__(
    self, split: str, size: Sequence[int], *, num_examples: int, seed: int = 0, processes: int = 0
  ):
    from zoo.data import faces  # pylint: disable=g-import-not-at-top

    self.split, self.seed = {"val": "valid"}.get(split, split), int(seed)
    self.size = (int(size[0]), int(size[1]))
    self.num_examples = int(num_examples)
    lo, hi = faces.MIN_SIZE, faces.MAX_SIZE
    if not all(lo <= s <= hi for s in self.size):
      raise ImageDataError(f"synthetic faces come in sizes {lo}..{hi}, not {self.size}")
    h, w = self.size
    draw = functools.partial(faces.face_image, seed=self.seed, split=self.split, height=h, width=w)
    self._memo = Memo(draw, processes=processes)

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> np.ndarray:
    return self._memo.get(int(index))

  def get_many(self, indices: Sequence[int]) -> list[np.ndarray]:
    return self._memo.get_many([int(i) for i in indices])


def open_images(
  spec: str,
  split: str,
  size: Sequence[int],
  *,
  num_examples: int = 0,
  seed: int = 0,
  data_dir: str = "",
  processes: int = 0,
):
  """The source named by ``spec``: ``''``/``'faces'``, ``'tfds:NAME'`` or a folder path;
  ``processes`` draw the embedded faces (:class:`RenderedFaces`)."""
  if spec in ("", "faces"):
    return RenderedFaces(split, size, num_examples=num_examples, seed=seed, processes=processes)
  if spec.startswith("tfds:"):
    split = {"valid": "validation", "val": "validation"}.get(split, split)
    return TfdsImages(spec[len("tfds:") :], split, size, data_dir=data_dir)
  return ImageFolder(spec, size, max_images=num_examples)


def validation_faces(size: Sequence[int], num: int, *, seed: int = 0) -> np.ndarray:
  """The first ``num`` embedded validation faces at ``size`` as one float32 array in
  [-1, 1], ``[num, H, W, 3]``: the real faces a generator's samples are judged against."""
  faces = open_images("", "valid", size, num_examples=num, seed=seed)
  return to_float(np.stack([faces[i] for i in range(len(faces))]))


def to_float(x: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1]."""
  return x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def downsample(x: np.ndarray, factor: int) -> np.ndarray:
  """Box filter ``[..., H, W, C]`` by an integer ``factor`` (average of each block)."""
  if factor == 1:
    return x
  *lead, h, w, c = x.shape
  if h % factor or w % factor:
    raise ValueError(f"{h}x{w} is not divisible by {factor}")
  x = x.reshape(*lead, h // factor, factor, w // factor, factor, c)
  return x.mean(axis=(-4, -2))


def collate_images(items: Sequence[Any], indices: np.ndarray) -> dict[str, Any]:
  """``{'image': float32 [b, H, W, 3] in [-1, 1], 'index': int64 [b]}``."""
  return {"image": to_float(np.stack(items)), "index": np.asarray(indices, np.int64)}
