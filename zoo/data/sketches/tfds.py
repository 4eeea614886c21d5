"""Sketch datasets as a TFDS builder that works without TensorFlow, plus one loading entry point.

:func:`load_sketch_splits` is what trainers call.  ``data_set`` may be

``"synthetic"``
    the embedded procedural dataset (:mod:`zoo.data.sketches.synthetic`),
    generated in memory -- no TFDS, no files, no download.
a path ending in ``.npz``
    a sketch-rnn stroke-3 ``.npz`` file read directly with the safe loader
    (:func:`zoo.data.sketches.npz.load_sketch_npz`).
``"quickdraw/<category>"``
    one QuickDraw category through the TFDS builder below.  The sketch-rnn
    file for a category is published at
    ``https://storage.googleapis.com/quickdraw_dataset/sketchrnn/<category>.npz``
    (e.g. ``.../sketchrnn/cat.npz``; spaces in names are kept, URL-encoded
    as ``%20``).  Nothing is downloaded here: fetch the file yourself into
    ``manual_dir`` (default ``<data_dir>/downloads/manual``) as
    ``<category>.npz``.
``"tfds:<config>"``
    any builder config: ``tfds:synthetic``, ``tfds:quickdraw/<category>``,
    ``tfds:npz/<file>`` (a file name inside ``manual_dir`` or a path; also
    ``tfds:npz:<file>`` or simply ``tfds:<path>.npz``).

The TFDS builder :class:`ZooSketches` (name ``zoo_sketches``) prepares
``array_record`` files under ``data_dir`` (default: TFDS' default data dir)
and reads them back with ``builder.as_data_source()`` -- neither step needs
TensorFlow.  Features: ``strokes`` (int16 ``[n, 3]`` stroke-3), ``label``
(int32 class id; ``-1`` when the source has no labels) and ``index``
(int32 position in the source split, used to return sketches in their
original order).  Splits: ``train``, ``valid``, ``test``.  Every ``.npz``
file goes through the safe loader.  A prepared config is cached under its
name (``npz_<stem>``, ``quickdraw_<category>``, ``synthetic``), so after
replacing a source file delete that directory to rebuild.

Requirements for TFDS without TF (4.9.x): the builder lives in a module of
a package (here ``zoo.data.sketches``), ``_info`` builds ``tfds.core.DatasetInfo``
directly, and ``file_format="array_record"``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from zoo.data.sketches.npz import (
  DEFAULT_SPLITS,
  SketchDataError,
  SketchFileNotFoundError,
  load_sketch_npz,
)
from zoo.data.sketches.synthetic import make_synthetic_sketches
from zoo.errors import ConfigError

__all__ = [
  "QUICKDRAW_URL",
  "SketchConfig",
  "ZooSketches",
  "config_from_spec",
  "load_tfds_splits",
  "load_sketch_splits",
]

QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/sketchrnn/{category}.npz"


def quickdraw_url(category: str) -> str:
  return QUICKDRAW_URL.format(category=category.replace(" ", "%20"))


@dataclasses.dataclass(eq=False)
class SketchConfig(tfds.core.BuilderConfig):
  """``source``: ``"synthetic"``, ``"npz"`` (``npz_file``) or ``"quickdraw"`` (``category``)."""

  source: str = "synthetic"
  npz_file: str = ""
  category: str = ""
  seed: int = 0


def _sanitize(text: str) -> str:
  s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
  return s or "x"


def config_from_spec(spec: str, *, seed: int = 0) -> SketchConfig:
  """``"synthetic" | "npz/<file>" | "npz:<file>" | "<path>.npz" | "quickdraw/<category>"`` -> config."""
  if spec == "synthetic":
    name = "synthetic" if seed == 0 else f"synthetic_seed{int(seed)}"
    return SketchConfig(
      name=name, source="synthetic", seed=int(seed), description="embedded synthetic shapes"
    )
  for prefix in ("npz/", "npz:"):
    if spec.startswith(prefix):
      file = spec[len(prefix) :]
      break
  else:
    file = spec if spec.endswith(".npz") and not spec.startswith("quickdraw/") else ""
  if file:
    stem = Path(file).name[: -len(".npz")] if file.endswith(".npz") else Path(file).name
    return SketchConfig(
      name=f"npz_{_sanitize(stem)}",
      source="npz",
      npz_file=file,
      description=f"sketch-rnn npz {file}",
    )
  if spec.startswith("quickdraw/"):
    cat = spec[len("quickdraw/") :]
    if not cat or "/" in cat or cat.startswith("."):
      raise ConfigError(f"bad QuickDraw category in {spec!r}")
    return SketchConfig(
      name=f"quickdraw_{_sanitize(cat)}",
      source="quickdraw",
      category=cat,
      description=f"QuickDraw '{cat}'",
    )
  raise ConfigError(
    f"unknown sketch TFDS config {spec!r}: "
    "use 'synthetic', 'npz/<file.npz>' or 'quickdraw/<category>'"
  )


class ZooSketches(tfds.core.GeneratorBasedBuilder):
  """Stroke-3 sketches (synthetic, sketch-rnn .npz, QuickDraw) for Sketch-RNN."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [config_from_spec("synthetic")]
  DEFAULT_CONFIG_NAME = "synthetic"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Put sketch-rnn stroke-3 .npz files in manual_dir.  QuickDraw category <c> is "
    f"{QUICKDRAW_URL.format(category='<c>')}, saved as <c>.npz."
  )

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS 4.9's default resolves the package through `importlib_resources`,
    # which only exists as a backport on Python < 3.9; the plain file path
    # is what it falls back to anyway.
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description="Stroke-3 sketches (dx, dy, pen_lift) for Sketch-RNN.",
      features=tfds.features.FeaturesDict(
        {
          "strokes": tfds.features.Tensor(shape=(None, 3), dtype=np.int16),
          "label": tfds.features.Scalar(dtype=np.int32),
          "index": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      homepage="https://github.com/googlecreativelab/quickdraw-dataset",
      disable_shuffling=True,
    )

  def _manual_path(self, dl_manager, file_name: str) -> Path | None:
    """``manual_dir / file_name`` (even when that directory is missing), or None without a manual_dir."""
    try:
      manual = Path(os.fspath(dl_manager.manual_dir))
    except (AssertionError, ValueError):  # TFDS refuses a missing/empty manual_dir
      raw = getattr(dl_manager, "_manual_dir", None)
      manual = Path(os.fspath(raw)) if raw else None
    return manual / file_name if manual is not None else None

  def _missing(self, path: Path | None, file_name: str, what: str) -> SketchFileNotFoundError:
    where = (
      str(path) if path is not None else f"<manual_dir>/{file_name} (no manual_dir configured)"
    )
    msg = f"{what} file not found: {where}"
    if what == "QuickDraw":
      msg += f"; download it from {quickdraw_url(self.builder_config.category)} and put it there"
    return SketchFileNotFoundError(msg + " (nothing is downloaded automatically)")

  def _load_source(self, dl_manager):
    cfg: SketchConfig = self.builder_config
    if cfg.source == "synthetic":
      return make_synthetic_sketches(seed=cfg.seed, return_labels=True)
    if cfg.source == "npz":
      p = Path(cfg.npz_file).expanduser()
      if not p.is_absolute():
        in_manual = self._manual_path(dl_manager, cfg.npz_file)
        if in_manual is not None and in_manual.is_file():
          p = in_manual
        elif not p.is_file():
          raise self._missing(in_manual, cfg.npz_file, "npz")
      return load_sketch_npz(p), None
    if cfg.source == "quickdraw":
      name = f"{cfg.category}.npz"
      p = self._manual_path(dl_manager, name)
      if p is None or not p.is_file():
        raise self._missing(p, name, "QuickDraw")
      return load_sketch_npz(p), None
    raise ValueError(f"unknown source {cfg.source!r}")

  def _split_generators(self, dl_manager):
    splits, labels = self._load_source(dl_manager)
    for split, sketches in splits.items():
      for i, s in enumerate(sketches):
        if s.dtype != np.int16 and not (
          np.array_equal(s, np.round(s)) and np.abs(s).max() <= np.iinfo(np.int16).max
        ):
          raise SketchDataError(
            f"{self.builder_config.name}: split '{split}' element {i} is not int16-valued"
          )
    return {
      split: self._generate_examples(splits[split], None if labels is None else labels[split])
      for split in DEFAULT_SPLITS
    }

  def _generate_examples(self, sketches, labels):
    for i, s in enumerate(sketches):
      yield (
        i,
        {
          "strokes": np.asarray(s, dtype=np.int16),
          "label": np.int32(-1 if labels is None else labels[i]),
          "index": np.int32(i),
        },
      )


def load_tfds_splits(
  spec: str | SketchConfig,
  *,
  data_dir: str | os.PathLike | None = None,
  manual_dir: str | os.PathLike | None = None,
  seed: int = 0,
  return_labels: bool = False,
):
  """Prepare (once) and read a :class:`ZooSketches` config via ``as_data_source`` (no TensorFlow).

  Returns ``{split: [int16 stroke-3 arrays]}`` in source order, and with
  ``return_labels=True`` also ``{split: int32 labels}``.
  """
  config = spec if isinstance(spec, SketchConfig) else config_from_spec(spec, seed=seed)
  registered = ZooSketches.builder_configs.get(config.name)
  if registered is not None:  # TFDS refuses a new config object named like a registered one
    if dataclasses.astuple(registered) != dataclasses.astuple(config):
      raise ConfigError(f"config name {config.name!r} is reserved for {registered}")
    config = registered
  kwargs = {"config": config, "file_format": "array_record"}
  if data_dir is not None:
    kwargs["data_dir"] = os.fspath(data_dir)
  builder = ZooSketches(**kwargs)
  download_config = tfds.download.DownloadConfig(
    manual_dir=os.fspath(manual_dir) if manual_dir is not None else None
  )
  builder.download_and_prepare(file_format="array_record", download_config=download_config)
  sources = builder.as_data_source()
  splits: dict[str, list[np.ndarray]] = {}
  labels: dict[str, np.ndarray] = {}
  for split in DEFAULT_SPLITS:
    src = sources[split]
    n = len(src)
    items = [None] * n
    lab = np.full(n, -1, np.int32)
    for ex in src.__getitems__(list(range(n))) if n else []:
      i = int(ex["index"])
      items[i] = np.asarray(ex["strokes"], dtype=np.int16).reshape(-1, 3)
      lab[i] = int(ex["label"])
    if any(x is None for x in items):
      raise SketchDataError(f"{builder.data_dir}: split '{split}' has missing or duplicate indices")
    splits[split] = items
    labels[split] = lab
  return (splits, labels) if return_labels else splits


def load_sketch_splits(
  data_set: str,
  *,
  data_dir: str | os.PathLike | None = None,
  manual_dir: str | os.PathLike | None = None,
  seed: int = 0,
) -> dict[str, list[np.ndarray]]:
  """Single entry point for trainers: ``{"train", "valid", "test"} -> list of stroke-3 arrays``.

  ``data_set``: ``"synthetic"`` (in memory, fast), a ``.npz`` path (safe
  direct load), ``"quickdraw/<category>"`` or ``"tfds:<config>"`` (TFDS
  builder + ``as_data_source``; see the module docstring).  ``seed`` only
  affects the synthetic set.
  """
  if data_set == "synthetic":
    return make_synthetic_sketches(seed=seed)
  if data_set.startswith("tfds:"):
    return load_tfds_splits(
      data_set[len("tfds:") :], data_dir=data_dir, manual_dir=manual_dir, seed=seed
    )
  if data_set.startswith("quickdraw/"):
    return load_tfds_splits(data_set, data_dir=data_dir, manual_dir=manual_dir, seed=seed)
  if data_set.endswith(".npz"):
    return load_sketch_npz(Path(data_set).expanduser())
  raise ConfigError(
    f"unknown data_set {data_set!r}: use 'synthetic', a path to a .npz file, "
    "'quickdraw/<category>' or 'tfds:<config>'"
  )
