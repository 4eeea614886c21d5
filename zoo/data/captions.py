"""Captioned images you bring, read from a local folder: a random-access source and a TFDS builder.

Nothing is downloaded. :func:`open_captions` reads a folder in one of the two formats
below and returns a :class:`CaptionedImages` source: ``len(source)`` and ``source[i]`` ->
``{'image': uint8 [H, W, 3], 'captions': tuple[str, ...], 'label': int, 'index': int}``.
``image`` is the largest centred crop with the aspect ratio ``H:W``, resized with
Lanczos to ``size``, so images of mixed sizes are fine (they are resized, and the ones
smaller than ``size`` are upscaled). 16-bit greyscale is scaled to 8 bits, palette, grey
and RGBA images become RGB (:mod:`zoo.data.images.decode`). ``captions`` holds every
caption of the image, in file order; ``label`` is the class id, or ``-1`` when the format
has no classes; ``index`` is ``i``. The source plugs into
:class:`zoo.data.stream.ShardedStream`: :func:`pick_caption` as its ``transform`` draws
one caption per row from the row's generator, :func:`collate_captions` stacks a batch
(:func:`caption_batches` wires both). The text-to-image families read a prepared folder
as (image, caption) pairs through :mod:`zoo.data.caption_pairs` (``data.source``).

Format ``'reed'``: Reed et al.'s CUB-200-2011 and Oxford-102 flowers captions
---------------------------------------------------------------------------------
As published with Reed et al., "Learning Deep Representations of Fine-Grained Visual
Descriptions" (CVPR 2016, ``cvpr2016_cub`` / ``cvpr2016_flowers``) and used by
``reedscot/icml2016``, plus the images of the original datasets::

    root/
      images/                  CUB: images/<class_dir>/<name>.jpg
        001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg
        ...
      jpg/                     flowers (used when there is no images/): jpg/image_00001.jpg
      text_c10/<class_dir>/<name>.txt
                               ten captions of image <name>, one per line
      trainvalclasses.txt      class dirs of the 'train' split, one per line
      testclasses.txt          class dirs of the 'test' split
      valclasses.txt           optional: class dirs of the 'validation' split
      allclasses.txt           optional: every class dir, in label order

- The image folder is ``images/``, else ``jpg/`` (or ``image_dir=``). Its ``.jpg``,
  ``.jpeg`` and ``.png`` files are read, at any depth, hidden files skipped; other
  files are ignored -- Reed's own ``cvpr2016_cub/images/`` holds Torch ``.t7``
  features, which are never read: put (or link) ``CUB_200_2011/images`` there instead.
  Flowers: link ``jpg/`` of ``102flowers.tgz`` next to ``text_c10/``.
- Caption file ``text_c10/<class_dir>/<name>.txt`` belongs to the image
  ``<image folder>/<class_dir>/<name>.<ext>`` (CUB), else to
  ``<image folder>/<name>.<ext>`` (a flat folder: flowers). Other files in
  ``text_c10/`` (``.t7``, ``.h5``, ...) are ignored. Every caption file needs its image
  and every image needs its caption file, whatever split it is in.
- Lines are stripped; empty lines are skipped, but a file whose lines are all empty is
  an error. Files are UTF-8.
- Labels: the position of the class dir in ``allclasses.txt``, else in the sorted list of
  the folders of ``text_c10/``; the same in every split.
- Splits: ``'train'`` = the classes of ``trainvalclasses.txt`` (without that file: every
  class not in ``testclasses.txt``), ``'test'`` = ``testclasses.txt``,
  ``'validation'`` = ``valclasses.txt`` (in Reed's files a subset of trainval, so it
  overlaps ``'train'``). ``train`` and ``test`` must not share a class. Inside a split,
  images are ordered by label, then caption file path.

Format ``'face2text'``: one caption file for a folder of (face) images
----------------------------------------------------------------------
As for Face2Text (descriptions of CelebA faces)::

    root/
      captions.json | captions.csv | captions.tsv     exactly one of them
      <any/relative/path>.jpg ...                     the images it names

- ``captions.json``: a list of ``{"image": "<relative path>", "caption": "<text>" or
  ["<text>", ...], "split": "train" | "test"}`` (``"captions"`` is accepted for
  ``"caption"``; ``"split"`` is optional).
- ``captions.csv`` (comma separated, standard quoting) / ``captions.tsv`` (tab
  separated, no quoting): a header row with the columns ``image`` and ``caption``, and
  optionally ``split``; other columns are ignored. One or more rows per image.
- Image paths are relative to ``root`` (or ``image_dir=``), ``/`` separated; absolute
  paths and ``..`` are refused. Entries of one image are merged, captions kept in file
  order; images are ordered by their first appearance. Images the file does not name are
  ignored. ``label`` is always ``-1``.
- Split: the ``split`` value (``train``, ``test``; ``validation``, ``valid``, ``val``
  also work), which then every image needs and which must agree between rows of one
  image. Without it, :func:`fallback_split`: an image is ``'test'`` when the first 8
  hex digits of the SHA-256 of its UTF-8 relative path, as an integer, are ``0`` mod
  10, else ``'train'`` (about 90/10, the same on every machine and run).

Errors
------
Bad input is one line, a :class:`CaptionDataError` (``ZooError``, ``ValueError``) that
names the file: a missing root, no images, a caption entry whose image is missing (both
are named), an image without a caption file (Reed), an image whose captions are all
empty, an unreadable or corrupt image (checked for every image of the split when the
source opens; ``verify=False`` defers it to the first read), an undefined or empty split.
Nothing is ever unpickled.

TFDS
----
:class:`CaptionedImagesBuilder` (name ``zoo_captions``) prepares the same examples as
``array_record`` files and reads them back with ``as_data_source()``, without
TensorFlow. Its ``manual_dir`` is the dataset root above; configs ``reed_<S>`` and
``face2text_<S>`` (``<S>`` = 64, 128, 256, or ``<H>x<W>`` through
:func:`captions_config`). Features: ``image`` (PNG, uint8 ``[H, W, 3]``), ``captions``
(Sequence of Text), ``label`` (int32), ``filename`` (Text: the image path relative to
the image folder) and ``index`` (int32, position in the split). Splits: those of the
format that hold images. A prepared config is cached under its name: delete
``<data_dir>/zoo_captions/<config>`` after changing the files. The folder it was
prepared from is recorded beside it (``zoo_source.json``), and preparing another folder
of the same format and size into the same ``data_dir`` is refused (one line): give each
dataset its own ``data_dir``. :func:`prepare_captions`
prepares and returns :class:`PreparedCaptions` sources with the items of
:class:`CaptionedImages`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, UnidentifiedImageError

from zoo.data.images.decode import to_rgb8_image
from zoo.data.images.unconditional import IMAGE_EXTENSIONS, center_crop_resize, to_float
from zoo.data.stream import Memo, MemoSource, ShardedStream
from zoo.errors import ConfigError, ZooError

__all__ = [
  "CAPTION_FILES",
  "FORMATS",
  "SPLITS",
  "CaptionDataError",
  "CaptionedImages",
  "CaptionedImagesBuilder",
  "CaptionsConfig",
  "PreparedCaptions",
  "available_splits",
  "caption_batches",
  "captions_config",
  "collate_captions",
  "detect_format",
  "fallback_split",
  "open_captions",
  "pick_caption",
  "prepare_captions",
]

FORMATS = ("reed", "face2text")
SPLITS = ("train", "validation", "test")
CAPTION_FILES = ("captions.json", "captions.csv", "captions.tsv")
#: Written beside a prepared config: the dataset folder it was prepared from.
SOURCE_FILE = "zoo_source.json"
REED_TEXT_DIR = "text_c10"
REED_IMAGE_DIRS = ("images", "jpg")
REED_SPLIT_FILES = {
  "train": "trainvalclasses.txt",
  "validation": "valclasses.txt",
  "test": "testclasses.txt",
}
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "eval": "validation"}


class CaptionDataError(ZooError, ValueError):
  """A caption dataset that cannot be used; the one-line message names the file."""

  def __init__(self, message: str):
    super().__init__(" ".join(str(message).splitlines()))


# ----------------------------------------------------------------------------- helpers


def _size(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, (int, np.integer)):
    h = w = int(size)
  else:
    try:
      h, w = (int(s) for s in size)
    except (TypeError, ValueError):
      raise ConfigError(f"size must be an int or (height, width), got {size!r}") from None
  if h < 1 or w < 1:
    raise ConfigError(f"size must be positive, got {h}x{w}")
  return h, w


def _split_name(split: str) -> str:
  s = _SPLIT_ALIASES.get(str(split).strip().lower(), str(split).strip().lower())
  if s not in SPLITS:
    raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
  return s


def _read_text(path: Path) -> str:
  try:
    return path.read_text(encoding="utf-8-sig")
  except UnicodeDecodeError as e:
    raise CaptionDataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
  except OSError as e:
    raise CaptionDataError(f"cannot read {path} ({type(e).__name__}: {e.strerror or e})") from None


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _unreadable(path: Path, e: Exception) -> CaptionDataError:
  if isinstance(e, UnidentifiedImageError):
    return CaptionDataError(f"unreadable image {path} (not an image file Pillow can identify)")
  return CaptionDataError(f"unreadable image {path} ({type(e).__name__}: {e})")


def fallback_split(relative_path: str) -> str:
  """``'test'`` for about 1 image in 10 (by SHA-256 of the path), else ``'train'``."""
  digest = hashlib.sha256(relative_path.encode("utf-8")).hexdigest()
  return "test" if int(digest[:8], 16) % 10 == 0 else "train"


def detect_format(root: str | os.PathLike) -> str:
  """``'reed'`` (a ``text_c10/`` folder) or ``'face2text'`` (a ``captions.*`` file)."""
  root = Path(root).expanduser()
  if not root.is_dir():
    raise CaptionDataError(f"caption dataset folder {root} does not exist or is not a directory")
  reed = (root / REED_TEXT_DIR).is_dir()
  face = [n for n in CAPTION_FILES if (root / n).is_file()]
  if reed and face:
    raise CaptionDataError(
      f"{root} holds both {REED_TEXT_DIR}/ and {face[0]}; pass format='reed' or 'face2text'"
    )
  if reed:
    return "reed"
  if face:
    return "face2text"
  raise CaptionDataError(
    f"{root} is not a caption dataset: expected a {REED_TEXT_DIR}/ folder (Reed format) "
    f"or one of {', '.join(CAPTION_FILES)} (Face2Text format)"
  )


@dataclasses.dataclass(frozen=True)
class _Entry:
  path: Path  # the image file
  filename: str  # its path relative to the image folder, '/' separated
  label: int
  captions: tuple[str, ...] | None = None  # None: read from caption_file
  caption_file: Path | None = None


@dataclasses.dataclass
class _Index:
  format: str
  root: Path
  image_dir: Path
  class_names: tuple[str, ...]
  splits: dict[str, list[_Entry]]
  undefined: dict[str, str]  # split -> why it does not exist


# ----------------------------------------------------------------------------- Reed


def _read_class_list(path: Path) -> list[str]:
  out: list[str] = []
  for line in _read_text(path).splitlines():
    name = line.strip()
    if name and name not in out:
      out.append(name)
  return out


def _reed_image_dir(root: Path, image_dir: Path | None) -> Path:
  if image_dir is not None:
    if not image_dir.is_dir():
      raise CaptionDataError(f"image folder {image_dir} does not exist or is not a directory")
    return image_dir
  for name in REED_IMAGE_DIRS:
    if (root / name).is_dir():
      return root / name
  raise CaptionDataError(
    f"{root} has no image folder: expected {root / 'images'} (CUB: images/<class>/<name>.jpg) "
    f"or {root / 'jpg'} (flowers: jpg/image_XXXXX.jpg)"
  )


def _index_reed(root: Path, image_dir: Path | None) -> _Index:
  text_dir = root / REED_TEXT_DIR
  if not text_dir.is_dir():
    raise CaptionDataError(f"{root} has no {REED_TEXT_DIR}/ folder of caption files (Reed format)")
  img_dir = _reed_image_dir(root, image_dir)

  # Images, keyed by their path without extension relative to the image folder.
  images: dict[str, Path] = {}
  for dirpath, dirs, names in os.walk(img_dir, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in sorted(names):
      if not _is_image(name):
        continue
      p = Path(dirpath) / name
      key = p.relative_to(img_dir).with_suffix("").as_posix()
      if key in images:
        raise CaptionDataError(f"two images for one caption file: {images[key]} and {p}")
      images[key] = p
  if not images:
    raise CaptionDataError(
      f"no images in {img_dir}: expected {'/'.join(IMAGE_EXTENSIONS)} files (Reed's own "
      "cvpr2016_cub/images holds .t7 features, which are not read: put the CUB_200_2011 "
      "images/<class>/<name>.jpg there)"
    )

  class_dirs = sorted(d.name for d in text_dir.iterdir() if d.is_dir() and d.name[0] != ".")
  all_file = root / "allclasses.txt"
  class_names = _read_class_list(all_file) if all_file.is_file() else class_dirs
  label_of = {c: i for i, c in enumerate(class_names)}

  # Every caption file with its image; every image with its caption file.
  by_class: dict[str, list[tuple[Path, Path, str]]] = {}
  matched: set[str] = set()
  for cls in class_dirs:
    rows = by_class.setdefault(cls, [])
    for txt in sorted((text_dir / cls).iterdir()):
      if txt.name.startswith(".") or txt.suffix.lower() != ".txt" or not txt.is_file():
        continue
      key = f"{cls}/{txt.stem}"
      if key not in images:
        key = txt.stem
      if key not in images:
        raise CaptionDataError(
          f"caption file {txt} has no image: neither {img_dir / cls / txt.stem}.jpg nor "
          f"{img_dir / txt.stem}.jpg (nor .jpeg/.png) exists"
        )
      if key in matched:
        raise CaptionDataError(f"image {images[key]} has two caption files, one is {txt}")
      matched.add(key)
      rows.append((images[key], txt, images[key].relative_to(img_dir).as_posix()))
  for key, path in images.items():
    if key not in matched:
      cls = key.rsplit("/", 1)[0] if "/" in key else "<class_dir>"
      stem = key.rsplit("/", 1)[-1]
      raise CaptionDataError(
        f"image {path} has no caption file (expected {text_dir / cls / stem}.txt)"
      )

  def classes_of(split: str) -> list[str] | None:
    path = root / REED_SPLIT_FILES[split]
    if path.is_file():
      names = _read_class_list(path)
      for c in names:
        if c not in by_class:
          raise CaptionDataError(f"{path}: class {c!r} has no folder {text_dir / c}")
        if c not in label_of:
          raise CaptionDataError(f"{path}: class {c!r} is not listed in {all_file}")
      return names
    return None

  test = classes_of("test")
  train = classes_of("train")
  val = classes_of("validation")
  undefined: dict[str, str] = {}
  if train is None:
    held_out = set(test or ())
    train = [c for c in class_names if c in by_class and c not in held_out]
  elif test is not None and set(train) & set(test):
    c = min(set(train) & set(test))
    raise CaptionDataError(
      f"class {c!r} is in both {root / REED_SPLIT_FILES['train']} and "
      f"{root / REED_SPLIT_FILES['test']}"
    )
  chosen = {"train": train, "validation": val, "test": test}
  splits: dict[str, list[_Entry]] = {}
  for split, classes in chosen.items():
    if classes is None:
      undefined[split] = f"there is no {root / REED_SPLIT_FILES[split]}"
      continue
    entries = []
    for cls in sorted(classes, key=lambda c: label_of[c]):
      for img, txt, rel in by_class[cls]:
        entries.append(_Entry(path=img, filename=rel, label=label_of[cls], caption_file=txt))
    splits[split] = entries
  return _Index("reed", root, img_dir, tuple(class_names), splits, undefined)


def _read_reed_captions(txt: Path) -> tuple[str, ...]:
  caps = tuple(line.strip() for line in _read_text(txt).splitlines() if line.strip())
  if not caps:
    raise CaptionDataError(f"caption file {txt} has no captions (all lines are empty)")
  return caps


# ----------------------------------------------------------------------------- Face2Text


def _face2text_rows(path: Path):
  """``(where, image, [captions], split or None)`` for each entry of the caption file."""
  if path.suffix == ".json":
    try:
      data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
      raise CaptionDataError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, list):
      raise CaptionDataError(
        f'{path} must hold a list of {{"image": ..., "caption": ...}} objects, '
        f"not a {type(data).__name__}"
      )
    for i, item in enumerate(data):
      where = f"{path} entry {i}"
      if not isinstance(item, dict):
        raise CaptionDataError(f"{where} is a {type(item).__name__}, not an object")
      cap = item.get("caption", item.get("captions"))
      if isinstance(cap, str):
        caps = [cap]
      elif isinstance(cap, list) and all(isinstance(c, str) for c in cap):
        caps = cap
      else:
        raise CaptionDataError(f'{where}: "caption" must be a string or a list of strings')
      split = item.get("split")
      if split is not None and not isinstance(split, str):
        raise CaptionDataError(f'{where}: "split" must be a string')
      yield where, item.get("image"), caps, split
    return
  delimiter = "\t" if path.suffix == ".tsv" else ","
  quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
  lines = _read_text(path).splitlines(keepends=True)
  try:
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if header is None:
      raise CaptionDataError(f"{path} is empty: expected a header row image{delimiter}caption")
    cols = {h.strip().lower(): j for j, h in enumerate(header)}
    for need in ("image", "caption"):
      if need not in cols:
        raise CaptionDataError(
          f"{path} has no {need!r} column (header: {delimiter.join(header)!r})"
        )
    for row in reader:
      if not any(cell.strip() for cell in row):
        continue
      image, caption, split = (
        row[j].strip() if j is not None and j < len(row) else None
        for j in (cols["image"], cols["caption"], cols.get("split"))
      )
      yield f"{path} line {reader.line_num}", image, [caption or ""], split
  except csv.Error as e:
    raise CaptionDataError(f"{path} is not valid {path.suffix[1:].upper()} ({e})") from None


def _index_face2text(root: Path, image_dir: Path | None) -> _Index:
  found = [root / n for n in CAPTION_FILES if (root / n).is_file()]
  if not found:
    raise CaptionDataError(f"{root} has none of {', '.join(CAPTION_FILES)} (Face2Text format)")
  if len(found) > 1:
    raise CaptionDataError(f"{root} has {found[0].name} and {found[1].name}: keep only one")
  cap_file = found[0]
  img_dir = root if image_dir is None else image_dir
  if not img_dir.is_dir():
    raise CaptionDataError(f"image folder {img_dir} does not exist or is not a directory")

  order: list[str] = []
  caps: dict[str, list[str]] = {}
  split_of: dict[str, str | None] = {}
  where_of: dict[str, str] = {}
  for where, image, texts, split in _face2text_rows(cap_file):
    if not isinstance(image, str) or not image.strip():
      raise CaptionDataError(f"{where}: no image path")
    rel = PurePosixPath(image.strip().replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or str(rel) in ("", "."):
      raise CaptionDataError(f"{where}: image path {image!r} must be relative, without '..'")
    name = str(rel)
    if split is not None and split.strip():
      split = _SPLIT_ALIASES.get(split.strip().lower(), split.strip().lower())
      if split not in SPLITS:
        raise CaptionDataError(f"{where}: unknown split {split!r} (use train, test or validation)")
    else:
      split = None
    if name not in caps:
      path = img_dir / name
      if not path.is_file():
        raise CaptionDataError(f"{where} names image {name!r}, which is missing: {path}")
      order.append(name)
      caps[name], split_of[name], where_of[name] = [], split, where
    elif split != split_of[name]:
      raise CaptionDataError(
        f"{where}: image {name!r} has split {split!r} here but {split_of[name]!r} in "
        f"{where_of[name]}"
      )
    caps[name].extend(t.strip() for t in texts if t.strip())
  if not order:
    raise CaptionDataError(f"no images: {cap_file} lists none")
  given = [n for n in order if split_of[n] is not None]
  if given and len(given) < len(order):
    n = next(n for n in order if split_of[n] is None)
    raise CaptionDataError(
      f"{where_of[n]}: image {n!r} has no split, but other entries of {cap_file.name} have one"
    )
  splits: dict[str, list[_Entry]] = {s: [] for s in SPLITS}
  for n in order:
    if not caps[n]:
      raise CaptionDataError(f"{cap_file}: image {n!r} has no captions (all are empty)")
    s = split_of[n] or fallback_split(n)
    splits[s].append(_Entry(path=img_dir / n, filename=n, label=-1, captions=tuple(caps[n])))
  return _Index("face2text", root, img_dir, (), splits, {})


def _index(root, format: str, image_dir) -> _Index:
  root = Path(root).expanduser()
  if not root.is_dir():
    raise CaptionDataError(f"caption dataset folder {root} does not exist or is not a directory")
  if format == "auto":
    format = detect_format(root)
  if format not in FORMATS:
    raise ConfigError(f"unknown caption format {format!r}: use 'auto', 'reed' or 'face2text'")
  img_dir = Path(image_dir).expanduser() if image_dir else None
  return _index_reed(root, img_dir) if format == "reed" else _index_face2text(root, img_dir)


def available_splits(
  root: str | os.PathLike, *, format: str = "auto", image_dir: str | os.PathLike | None = None
) -> tuple[str, ...]:
  """The splits of ``root`` that hold at least one image, in :data:`SPLITS` order."""
  idx = _index(root, format, image_dir)
  return tuple(s for s in SPLITS if idx.splits.get(s))


# ----------------------------------------------------------------------------- source


class CaptionedImages(MemoSource):
  """Random access to one split of a caption dataset (see the module docstring).

  ``source[i]`` -> ``{'image': uint8 [H, W, 3], 'captions': tuple[str, ...],
  'label': int, 'index': int}``. Attributes: ``format``, ``root``, ``image_dir``,
  ``split``, ``size`` ``(H, W)``, ``class_names`` (Reed; empty for Face2Text), and per
  example ``filenames`` (relative to ``image_dir``), ``paths``, ``captions``, ``labels``.
  ``cache=True`` keeps decoded images in memory (``N * H * W * 3`` bytes).
  """

  def __init__(
    self,
    root: str | os.PathLike,
    split: str,
    size: int | Sequence[int],
    *,
    format: str = "auto",
    image_dir: str | os.PathLike | None = None,
    verify: bool = True,
    cache: bool = False,
  ):
    self.size = _size(size)
    self.split = _split_name(split)
    idx = _index(root, format, image_dir)
    self.format, self.root, self.image_dir = idx.format, idx.root, idx.image_dir
    self.class_names = idx.class_names
    if self.split in idx.undefined:
      raise CaptionDataError(
        f"split {self.split!r} of {idx.root} is not defined: {idx.undefined[self.split]}"
      )
    entries = idx.splits.get(self.split, [])
    if not entries:
      have = [s for s in SPLITS if idx.splits.get(s)]
      raise CaptionDataError(
        f"split {self.split!r} of {idx.root} holds no images (splits with images: "
        f"{', '.join(have) or 'none'})"
      )
    self.paths: tuple[Path, ...] = tuple(e.path for e in entries)
    self.filenames: tuple[str, ...] = tuple(e.filename for e in entries)
    self.labels: tuple[int, ...] = tuple(e.label for e in entries)
    self.captions: tuple[tuple[str, ...], ...] = tuple(
      e.captions if e.captions is not None else _read_reed_captions(e.caption_file) for e in entries
    )
    if verify:
      for p in self.paths:
        try:
          with Image.open(p) as im:
            im.verify()
        except Exception as e:  # pylint: disable=broad-except  # PIL raises many types
          raise _unreadable(p, e) from None
    self._memo = Memo(self._load, cache=cache)

  def __len__(self) -> int:
    return len(self.paths)

  def _load(self, index: int) -> np.ndarray:
    path = self.paths[index]
    try:
      with Image.open(path) as im:
        return center_crop_resize(to_rgb8_image(im, str(path)), self.size)
    except ZooError as e:
      raise CaptionDataError(str(e)) from None
    except Exception as e:  # pylint: disable=broad-except
      raise _unreadable(path, e) from None

  def image(self, index: int) -> np.ndarray:
    """The uint8 ``[H, W, 3]`` image of example ``index``."""
    return self._memo.get(int(index))

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    n = len(self.paths)
    if index < 0:
      index += n
    if not 0 <= index < n:
      raise IndexError(f"index {index} out of range [0, {n})")
    return {
      "image": self.image(index),
      "captions": self.captions[index],
      "label": self.labels[index],
      "index": index,
    }

  def __repr__(self) -> str:
    h, w = self.size
    return (
      f"CaptionedImages({str(self.root)!r}, split={self.split!r}, size=({h}, {w}), "
      f"format={self.format!r}, n={len(self)})"
    )


def open_captions(
  root: str | os.PathLike,
  split: str,
  size: int | Sequence[int],
  *,
  format: str = "auto",
  image_dir: str | os.PathLike | None = None,
  verify: bool = True,
  cache: bool = False,
) -> CaptionedImages:
  """Split ``split`` (``train``, ``validation``, ``test``) of the caption dataset in ``root``.

  ``format``: ``'auto'`` (``text_c10/`` -> ``'reed'``, ``captions.*`` -> ``'face2text'``),
  ``'reed'`` or ``'face2text'``; ``size``: ``(H, W)`` or an int; ``image_dir``: the image
  folder when it is not the default one; see the module docstring.
  """
  return CaptionedImages(
    root, split, size, format=format, image_dir=image_dir, verify=verify, cache=cache
  )


# ----------------------------------------------------------------------------- batches


def pick_caption(example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
  """A :class:`ShardedStream` ``transform``: adds ``'caption'``, one caption drawn by ``rng``."""
  caps = example["captions"]
  return {**example, "caption": caps[int(rng.integers(len(caps)))]}


def collate_captions(items: Sequence[dict[str, Any]], indices: np.ndarray) -> dict[str, Any]:
  """``image`` float32 ``[b, H, W, 3]`` in [-1, 1], ``image_uint8``, ``captions`` (list of
  tuples), ``caption`` (list of str, with :func:`pick_caption`), ``label`` int32 ``[b]``,
  ``index`` int64 ``[b]`` (example ids in the split)."""
  img = np.stack([it["image"] for it in items])
  out = {
    "image": to_float(img),
    "image_uint8": img,
    "captions": [tuple(it["captions"]) for it in items],
    "label": np.asarray([it["label"] for it in items], np.int32),
    "index": np.asarray(indices, np.int64),
  }
  if items and "caption" in items[0]:
    out["caption"] = [str(it["caption"]) for it in items]
  return out


def caption_batches(
  source: Any,
  *,
  batch_size: int,
  seed: int = 0,
  stream_id: int | Sequence[int] = 0,
  transform: Callable[[Any, np.random.Generator], Any] | None = pick_caption,
  **kwargs,
) -> ShardedStream:
  """A :class:`ShardedStream` over ``source`` with :func:`pick_caption` and
  :func:`collate_captions`; other keyword arguments go to :class:`ShardedStream`."""
  return ShardedStream(
    source,
    batch_size=batch_size,
    collate=collate_captions,
    seed=seed,
    stream_id=stream_id,
    transform=transform,
    **kwargs,
  )


# ----------------------------------------------------------------------------- TFDS


@dataclasses.dataclass(eq=False)
class CaptionsConfig(tfds.core.BuilderConfig):
  """``format`` (``'reed'`` or ``'face2text'``) at ``height`` x ``width``."""

  format: str = "reed"
  height: int = 64
  width: int = 64


def _make_config(format: str, size: int | Sequence[int]) -> CaptionsConfig:
  if format not in FORMATS:
    raise ConfigError(f"unknown caption format {format!r}: use 'reed' or 'face2text'")
  h, w = _size(size)
  name = f"{format}_{h}" if h == w else f"{format}_{h}x{w}"
  what = "Reed et al. text_c10 captions" if format == "reed" else "Face2Text-style captions"
  return CaptionsConfig(
    name=name, format=format, height=h, width=w, description=f"{what}, images at {h}x{w}"
  )


def captions_config(format: str, size: int | Sequence[int]) -> CaptionsConfig:
  """The builder config for ``format`` at ``size`` (the registered one when it exists)."""
  config = _make_config(format, size)
  # TFDS refuses a new config object named like a registered one.
  return CaptionedImagesBuilder.builder_configs.get(config.name, config)


class CaptionedImagesBuilder(tfds.core.GeneratorBasedBuilder):
  """Captioned images from a local folder (``manual_dir``): Reed or Face2Text format."""

  name = "zoo_captions"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [_make_config(f, s) for f in FORMATS for s in (64, 128, 256)]
  DEFAULT_CONFIG_NAME = "reed_64"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Nothing is downloaded: manual_dir is the dataset folder. Reed format (configs "
    "reed_*): images/<class>/<name>.jpg (CUB_200_2011/images) or jpg/<name>.jpg (flowers), "
    "text_c10/<class>/<name>.txt (captions, one per line), trainvalclasses.txt, "
    "testclasses.txt [, valclasses.txt, allclasses.txt]. Face2Text format (face2text_*): "
    "images plus one captions.json / captions.csv / captions.tsv (image, caption[, split]). "
    "See the docstring of zoo.data.captions."
  )

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS 4.9 resolves the package through `importlib_resources` (a backport that is
    # not installed); the module file is what it falls back to anyway.
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    c: CaptionsConfig = self.builder_config
    return tfds.core.DatasetInfo(
      builder=self,
      description="Captioned images read from a local folder (Reed or Face2Text format).",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(c.height, c.width, 3), dtype=np.uint8),
          "captions": tfds.features.Sequence(tfds.features.Text()),
          "label": tfds.features.Scalar(dtype=np.int32),
          "filename": tfds.features.Text(),
          "index": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      homepage="https://github.com/reedscot/icml2016",
      disable_shuffling=True,  # record i of a split is example i of CaptionedImages
    )

  def _manual_root(self, dl_manager) -> Path:
    try:
      return Path(os.fspath(dl_manager.manual_dir))
    except (AssertionError, ValueError):  # TFDS refuses a missing or empty manual_dir
      raw = getattr(dl_manager, "_manual_dir", None)
      if not raw:
        raise CaptionDataError(
          "no manual_dir configured: pass the dataset folder as manual_dir"
        ) from None
      return Path(os.fspath(raw))

  def _split_generators(self, dl_manager):
    c: CaptionsConfig = self.builder_config
    root = self._manual_root(dl_manager)
    splits = available_splits(root, format=c.format)
    return {
      s: self._generate_examples(
        open_captions(root, s, (c.height, c.width), format=c.format, verify=True)
      )
      for s in splits
    }

  def _generate_examples(self, source: CaptionedImages):
    for i in range(len(source)):
      ex = source[i]
      yield (
        i,
        {
          # PIL images are PNG-encoded by Pillow (numpy arrays would need TensorFlow).
          "image": Image.fromarray(ex["image"]),
          "captions": list(ex["captions"]),
          "label": np.int32(ex["label"]),
          "filename": source.filenames[i],
          "index": np.int32(i),
        },
      )


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


class PreparedCaptions:
  """One split of a prepared :class:`CaptionedImagesBuilder`, with the items of
  :class:`CaptionedImages` (``image``, ``captions``, ``label``, ``index``)."""

  def __init__(self, data_source, split: str):
    self._ds = data_source
    self.split = split

  def __len__(self) -> int:
    return len(self._ds)

  def record(self, index: int) -> dict[str, Any]:
    """The raw TFDS record (``filename``, captions as ``bytes``)."""
    return self._ds[int(index)]

  def filename(self, index: int) -> str:
    return _text(self.record(index)["filename"])

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range [0, {len(self)})")
    r = self._ds[index]
    return {
      "image": np.asarray(r["image"], np.uint8),
      "captions": tuple(_text(c) for c in r["captions"]),
      "label": int(r["label"]),
      "index": int(r["index"]),
    }


def prepare_captions(
  root: str | os.PathLike,
  *,
  format: str = "auto",
  size: int | Sequence[int] = 64,
  data_dir: str | os.PathLike | None = None,
) -> dict[str, PreparedCaptions]:
  """Prepare (once) the dataset in ``root`` as ``zoo_captions/<format>_<size>`` under
  ``data_dir`` and return ``{split: PreparedCaptions}`` (read without TensorFlow)."""
  if format == "auto":
    format = detect_format(root)
  config = captions_config(format, size)
  kwargs: dict[str, Any] = {"config": config, "file_format": "array_record"}
  if data_dir is not None:
    kwargs["data_dir"] = os.fspath(data_dir)
  builder = CaptionedImagesBuilder(**kwargs)
  here = os.path.realpath(Path(root).expanduser())
  # Two datasets of one format and size share the config name: refuse to read another
  # folder's prepared examples as this one's.
  marker = Path(os.fspath(builder.data_dir)) / SOURCE_FILE
  prepared_from = _prepared_from(marker)
  if prepared_from is not None and prepared_from != here:
    raise CaptionDataError(
      f"{builder.data_dir} holds {config.name} prepared from {prepared_from}, not {here}: "
      "use another data_dir (data.data_dir in the launchers) or delete that folder"
    )
  download_config = tfds.download.DownloadConfig(manual_dir=os.fspath(Path(root).expanduser()))
  builder.download_and_prepare(file_format="array_record", download_config=download_config)
  if prepared_from is None:
    marker.write_text(json.dumps({"root": here}), encoding="utf-8")
  return {s: PreparedCaptions(ds, s) for s, ds in builder.as_data_source().items()}


def _prepared_from(marker: Path) -> str | None:
  """The dataset folder a prepared config was made from (None: unknown or not prepared)."""
  try:
    return str(json.loads(marker.read_text(encoding="utf-8"))["root"])
  except (OSError, ValueError, KeyError, TypeError):
    return None
