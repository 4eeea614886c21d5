"""(image, caption) pairs for the text-to-image families: the embedded captioned faces or a
caption dataset you bring, behind one switch.

``data.source`` of the text-to-image configs (``launch/configs/t2f.py``,
``dcgan_cls.py``, ``text_encoder.py``) picks the data:

* ``''``: the embedded captioned faces (:class:`zoo.data.faces.captioned.CaptionedFaces`
  with ``data.num_faces``, ``data.captions_per_face``, ``data.seed``), exactly as before
  this key existed;
* a folder: a caption dataset in Reed's or the Face2Text format (detected, see
  :mod:`zoo.data.captions`), prepared once by the TFDS builder ``zoo_captions`` at the
  size the model needs under ``data.data_dir`` (``''``: TFDS's default,
  ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``) and read back through its data
  source, without TensorFlow. ``data.num_faces`` and ``data.captions_per_face`` do not
  apply; ``data.seed`` orders the held-out images.

:func:`open_pair_source` and :func:`heldout` are what the tasks call; they dispatch.

Pairs of a folder (:class:`CaptionPairs`): the images of a split in prepared order, each
followed by its captions in file order, so pair ``j`` is caption ``k`` of image ``e``.
``pairs[j]`` -> ``{'image': uint8 [H, W, 3], 'caption': str, 'face': e, 'label': int,
'class_id': int}`` (``label``: the class, ``-1`` for Face2Text; ``class_id``: the class,
or ``e`` when the format has none: two pairs with one ``class_id`` describe each other's
images). ``caption(j)`` -> ``(text, None, None)``: a real caption names no attributes
(the embedded faces return ``(text, mentions, attributes)``). ``image(e)``,
``num_images``, ``all_captions()`` as on the embedded faces.

Held-out captions of a folder (:func:`heldout_pairs`): the images of the ``'test'`` split
in a fixed order drawn from ``data.seed`` (so a prefix spreads over the classes), one
caption each: its first caption whose string no training pair uses (and that ``accept``
takes); an image without one is skipped. A dataset without a ``'test'`` split gives none,
with the ``reason`` why; the tasks refuse to evaluate on it (one line).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zoo.data import captions as caption_data
from zoo.data.faces import captioned
from zoo.errors import CaptionError, ConfigError

__all__ = [
  "CaptionPairs",
  "check_captions",
  "check_pairs",
  "contradicting_captions",
  "describe",
  "encodable",
  "heldout",
  "heldout_pairs",
  "is_folder",
  "open_pair_source",
  "prepare",
  "source_key",
  "source_of",
  "summary",
]

_HELDOUT_MAGIC = 0x4E1D


def contradicting_captions(
  attributes: np.ndarray,
  table_attributes: np.ndarray,
  table_mentions: np.ndarray,
  rng: np.random.Generator,
  *,
  candidates: int = 128,
) -> np.ndarray:
  """A hard wrong caption for each example: of ``candidates`` captions drawn at random
  from the table, one that contradicts the example's attributes in as few of the
  attributes it names as possible, but in at least one.

  A random wrong caption (Reed et al.'s GAN-CLS) usually contradicts the image in a
  salient attribute (the background colour), so D learns to reject it by that alone and
  never checks the small ones (mouth, eyes); a caption wrong in one attribute makes it.

  Args:
    attributes: int ``[B, A]`` attribute codes of the examples' images.
    table_attributes: int ``[N, A]`` the codes of the image each table caption describes.
    table_mentions: bool ``[N, A]`` the attributes each table caption names.
    rng: draws the candidates.
    candidates: captions drawn per example.

  Returns:
    int ``[B]`` table indices; ``-1`` where no candidate contradicts the example.
  """
  attributes = np.asarray(attributes)
  b = attributes.shape[0]
  cand = rng.integers(0, len(table_attributes), (b, candidates))
  wrong = table_mentions[cand] & (table_attributes[cand] != attributes[:, None])
  count = wrong.sum(-1)  # [B, K] contradicted attributes
  count = np.where(count > 0, count, np.iinfo(count.dtype).max)
  best = np.argmin(count, axis=1)  # the first drawn among the fewest
  chosen = cand[np.arange(b), best]
  return np.where(count[np.arange(b), best] < np.iinfo(count.dtype).max, chosen, -1)


def source_of(data) -> str:
  """``data.source`` of a config's data section (``''`` when absent: an older run)."""
  value = data.get("source", "") if hasattr(data, "get") else getattr(data, "source", "")
  return str(value or "").strip()


def is_folder(data) -> bool:
  """Whether ``data`` names a caption dataset folder (not the embedded faces)."""
  return bool(source_of(data))


def source_key(source: str) -> str:
  """The identity of a data source as runs record it: ``''`` for the embedded faces, else
  the folder's absolute real path."""
  source = str(source or "").strip()
  return os.path.realpath(os.path.expanduser(source)) if source else ""


def describe(data) -> str:
  """A few words naming the data, for logs and errors."""
  src = source_of(data)
  return f"caption dataset {src}" if src else "the embedded captioned faces"


def summary(data, source, held) -> str:
  """One log line: the data, its training pairs and images, the held-out captions."""
  reason = f" ({held['reason']})" if held.get("reason") else ""
  return (
    f"{describe(data)}: {len(source)} training pairs of {source.num_images} images, "
    f"{len(held['caption'])} held-out test captions{reason}"
  )


def prepare(data, size: int | Sequence[int]) -> dict[str, caption_data.PreparedCaptions]:
  """The folder of ``data.source`` prepared at ``size`` (once) and opened, by split."""
  data_dir = str(data.get("data_dir", "") or "").strip() if hasattr(data, "get") else ""
  return caption_data.prepare_captions(
    os.path.expanduser(source_of(data)),
    size=size,
    data_dir=os.path.expanduser(data_dir) if data_dir else None,
  )


def encodable(encode: Callable[[list[str]], Any]) -> Callable[[str], bool]:
  """An ``accept`` test for :func:`heldout`: whether ``encode([text])`` (a vocabulary's or
  a task's caption encoding) takes the caption, i.e. does not raise CaptionError."""

  def accept(text: str) -> bool:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation notices, one per caption
        encode([text])
    except CaptionError:
      return False
    return True

  return accept


class CaptionPairs:
  """Every (image, caption) pair of one split of a caption dataset (module docstring).

  ``images``: a :class:`zoo.data.captions.PreparedCaptions` (or any source with its
  items, e.g. :class:`zoo.data.captions.CaptionedImages`). Captions and labels are read
  once, here; images on each access.
  """

  def __init__(self, images, *, source: str = "", split: str = ""):
    self.images, self.source, self.split = images, source, split
    caps, labels = [], []
    for e in range(len(images)):
      ex = images[e]
      caps.append(tuple(ex["captions"]))
      labels.append(int(ex["label"]))
    self.captions: tuple[tuple[str, ...], ...] = tuple(caps)
    self.labels = np.asarray(labels, np.int64)
    counts = np.asarray([len(c) for c in caps], np.int64)
    self.offsets = np.concatenate([[0], np.cumsum(counts)])  # pair ids of image e's captions
    self._image_of = np.repeat(np.arange(len(caps), dtype=np.int64), counts)
    self.has_classes = bool(len(labels)) and bool((self.labels >= 0).all())

  @property
  def num_images(self) -> int:
    return len(self.captions)

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def locate(self, index: int) -> tuple[int, int]:
    """``(image e, caption k)`` of pair ``index``."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"pair {index} out of range [0, {len(self)})")
    e = int(self._image_of[index])
    return e, index - int(self.offsets[e])

  def pair_index(self, image: int, caption: int = 0) -> int:
    return int(self.offsets[int(image)]) + int(caption)

  def image(self, index: int) -> np.ndarray:
    """The uint8 ``[H, W, 3]`` image ``index`` (an image, not a pair)."""
    return np.asarray(self.images[int(index)]["image"], np.uint8)

  def class_id(self, image: int) -> int:
    return int(self.labels[image]) if self.has_classes else int(image)

  def caption(self, index: int) -> tuple[str, None, None]:
    e, k = self.locate(index)
    return self.captions[e][k], None, None

  def __getitem__(self, index: int) -> dict[str, Any]:
    e, k = self.locate(index)
    return {
      "image": self.image(e),
      "caption": self.captions[e][k],
      "face": e,
      "label": int(self.labels[e]),
      "class_id": self.class_id(e),
    }

  def all_captions(self) -> set[str]:
    return {t for caps in self.captions for t in caps}

  def first_captions(self, n: int) -> list[str]:
    """The first caption of each of the first ``n`` images."""
    return [caps[0] for caps in self.captions[:n]]


def heldout_pairs(
  test: CaptionPairs,
  num: int,
  *,
  exclude: set[str],
  seed: int = 0,
  size: Sequence[int] = (32, 32),
  with_images: bool = True,
  accept: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
  """At most ``num`` held-out captions of ``test`` (the module docstring's rule).

  Returns ``caption`` list[str], ``face`` int64 [n] (images of ``test``), ``label`` int64
  [n], ``reason`` (``''``, or why there are fewer than ``num``) and (``with_images``)
  ``image`` uint8 [n, H, W, 3].
  """
  order = np.random.default_rng([_HELDOUT_MAGIC, int(seed)]).permutation(test.num_images)
  picked: list[tuple[int, str]] = []
  for e in order:
    if len(picked) >= num:
      break
    for text in test.captions[int(e)]:
      if text not in exclude and (accept is None or accept(text)):
        picked.append((int(e), text))
        break
  faces = np.asarray([e for e, _ in picked], np.int64)
  if len(picked) >= num:
    reason = ""
  elif len(order) > len(picked):
    reason = (
      f"only {len(picked)} of the {test.num_images} test images of {test.source or 'the data'} "
      "have a caption that no training pair uses"
      + (" and the model's vocabulary can encode" if accept is not None else "")
    )
  else:
    reason = f"the 'test' split of {test.source or 'the data'} has {test.num_images} images"
  out: dict[str, Any] = {
    "caption": [t for _, t in picked],
    "face": faces,
    "label": test.labels[faces] if len(faces) else np.zeros((0,), np.int64),
    "reason": reason,
  }
  if with_images:
    h, w = (int(s) for s in size)
    out["image"] = (
      np.stack([test.image(int(e)) for e in faces])
      if len(faces)
      else np.zeros((0, h, w, 3), np.uint8)
    )
  return out


def spread_pairs(source, n: int) -> tuple[np.ndarray, list[str]]:
  """``n`` pairs spread evenly over a pair source: their images (as stored, ``[n, H, W,
  C]``) and captions (e.g. to compare D's scores of training pairs with held-out ones)."""
  items = [source[int(i)] for i in np.linspace(0, len(source) - 1, n)]
  return np.stack([it["image"] for it in items]), [it["caption"] for it in items]


def open_pair_source(data, split: str, size: Sequence[int]):
  """The ``split`` pairs of ``data`` at ``size`` ``(H, W)``: the embedded
  :class:`CaptionedFaces` (the train split's faces drawn by ``data.render_processes``
  worker processes), or the :class:`CaptionPairs` of the folder (CaptionDataError, one
  line, for a bad folder or a split it does not have)."""
  if not is_folder(data):
    return captioned.CaptionedFaces(
      split,
      size,
      num_faces=data.num_faces,
      captions_per_face=data.captions_per_face,
      seed=data.seed,
      processes=data.get("render_processes", 0) if split == "train" else 0,
    )
  prepared = prepare(data, size)
  if split not in prepared:
    raise caption_data.CaptionDataError(
      f"caption dataset {source_of(data)} has no {split!r} split (splits with images: "
      f"{', '.join(prepared) or 'none'})"
    )
  return CaptionPairs(prepared[split], source=source_of(data), split=split)


def heldout(
  data,
  num: int,
  *,
  exclude: set[str],
  size: Sequence[int],
  with_images: bool = True,
  accept: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
  """Held-out captions with their test images: :func:`captioned.heldout_pairs` for the
  embedded faces (``attributes``, ``mentions``), :func:`heldout_pairs` for a folder
  (``label``, ``reason``; none, with the reason, when it has no ``'test'`` split)."""
  if not is_folder(data):
    return captioned.heldout_pairs(
      num, exclude=exclude, seed=data.seed, size=size, with_images=with_images, accept=accept
    )
  prepared = prepare(data, size)
  if "test" not in prepared:
    h, w = (int(s) for s in size)
    out: dict[str, Any] = {
      "caption": [],
      "face": np.zeros((0,), np.int64),
      "label": np.zeros((0,), np.int64),
      "reason": (
        f"caption dataset {source_of(data)} has no 'test' split (Reed format: "
        "testclasses.txt; Face2Text: test rows in the split column)"
      ),
    }
    if with_images:
      out["image"] = np.zeros((0, h, w, 3), np.uint8)
    return out
  test = CaptionPairs(prepared["test"], source=source_of(data), split="test")
  return heldout_pairs(
    test,
    num,
    exclude=exclude,
    seed=data.seed,
    size=size,
    with_images=with_images,
    accept=accept,
  )


def check_captions(data, source, accept: Callable[[str], bool], *, what: str) -> None:
  """A one-line ConfigError naming the first training caption of a caption dataset
  folder that ``accept`` refuses (see :func:`check_pairs`); the embedded faces pass."""
  if not is_folder(data):
    return
  for e, caps in enumerate(source.captions):
    for k, text in enumerate(caps):
      if not accept(text):
        raise ConfigError(
          f"bad {what} data: caption {k + 1} of training image {e} in {describe(data)} "
          f"({text[:40]!r}) is empty or has no character or word the caption encoder "
          "knows; fix or remove it"
        )


def check_pairs(
  data,
  source,
  *,
  batch_size: int,
  evaluate: bool,
  size: Sequence[int],
  what: str,
  accept: Callable[[str], bool] | None = None,
) -> None:
  """For a caption dataset folder, before a run writes anything: a one-line ConfigError
  when ``source`` (its training pairs) holds fewer pairs than ``batch_size``, or when
  ``evaluate`` and no test image has a held-out caption (no ``'test'`` split, or every
  test caption occurs in training), or when ``accept`` (the run's caption encoding, see
  :func:`encodable`) refuses a training caption (e.g. one of only unknown characters),
  which would otherwise stop the run at the batch that draws it. The embedded faces
  pass (their config is checked by the task)."""
  if not is_folder(data):
    return
  if len(source) < batch_size:
    raise ConfigError(
      f"bad {what} config: {describe(data)} has {len(source)} training pairs, fewer than "
      f"the batch size {batch_size}"
    )
  if accept is not None:
    check_captions(data, source, accept, what=what)
  if evaluate:
    held = heldout(
      data, 1, exclude=source.all_captions(), size=size, with_images=False, accept=accept
    )
    if not held["caption"]:
      raise ConfigError(
        f"{held['reason']}: evaluation needs held-out test captions; set "
        "eval.num_samples=0 to train without evaluation"
      )
