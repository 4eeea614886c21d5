"""The faces attribute classifier as an offline judge of generators: loading and inference.

The network (:class:`AttributeCNN`, :func:`make_model`, :func:`prepare_images`) lives in
:mod:`zoo.models.face_classifier`; it has one softmax head per attribute of
:data:`zoo.data.faces.ATTRIBUTES` and a penultimate feature layer (``feature_dim``, 128
by default) used for classifier Fréchet distances
(:func:`zoo.eval.metrics.classifier_frechet_distance`). Inputs of any size are accepted
(centre-cropped to the face square and resized to the network's input size).

It is trained by ``python -m launch.face_classifier`` (:mod:`zoo.tasks.face_classifier`),
which exports the trained weights to ``<workdir>/classifier/`` in the zoo's export format
(:mod:`zoo.models.export`: ``classifier.msgpack`` + ``classifier.json``). Use it as::

  clf = load_classifier()   # default_classifier_workdir(); CheckpointError when untrained
  clf.predict(images)   # {attribute: int32[b]}
  clf.features(images)  # float32 [b, feature_dim]
  clf.logits(images)    # {attribute: float32[b, num_classes]}

(``zoo.tasks.face_classifier.get_or_train_classifier()`` trains it first when missing.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from zoo.data import faces
from zoo.errors import CheckpointError
from zoo.models import export as export_lib
from zoo.models.face_classifier import (  # noqa: F401  (re-exported)
  MODEL_KEYS,
  AttributeCNN,
  make_model,
  prepare_images,
)
from zoo.models import face_classifier as fc_models

EXPORT_SUBDIR = "classifier"
#: File stem of the export: ``classifier.msgpack`` + ``classifier.json``.
EXPORT_NAME = "classifier"
EXPORT_FORMAT = export_lib.FORMAT
#: The classifier's first export format (``classifier.json`` + ``params.msgpack``), still read.
LEGACY_FORMAT = "zoo.face_classifier/1"
_LEGACY_PARAMS = "params.msgpack"
ENV_WORKDIR = "ZOO_FACE_CLASSIFIER"
DEFAULT_WORKDIR = os.path.join("runs", "face_classifier")


def _attribute_schema() -> dict[str, int]:
  return {k: len(v) for k, v in faces.ATTRIBUTES.items()}


def _to_float_images(images) -> np.ndarray:
  """uint8 [0, 255] or float [-1, 1] -> float32 [-1, 1], with a channel axis."""
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f"expected images [b, H, W(, C)], got shape {x.shape}")
  if x.dtype == np.uint8:
    return x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
  return x.astype(np.float32)


def _bucket(n: int, batch_size: int) -> int:
  """Padded chunk size: ``batch_size``, or the next power of two (>= 8) below it."""
  if n >= batch_size:
    return batch_size
  return min(batch_size, max(8, 1 << (n - 1).bit_length()))


class FaceClassifier:
  """A trained :class:`AttributeCNN` with numpy-in / numpy-out helpers.

  Images: ``[b, H, W, C]`` (or ``[b, H, W]``), uint8 in [0, 255] or float in [-1, 1], any
  ``H, W`` (the face square is centre-cropped and resized to ``input_size``). Work is done
  in chunks of ``batch_size`` (padded, so each image shape compiles once).
  """

  def __init__(
    self,
    model_config: Mapping[str, Any],
    params: Any,
    *,
    batch_size: int = 256,
    info: Mapping[str, Any] | None = None,
  ):
    self.model_config = {k: model_config[k] for k in MODEL_KEYS}
    self.model = make_model(self.model_config)
    self.params = params
    self.batch_size = int(batch_size)
    self.info = dict(info or {})
    self.attribute_names = tuple(faces.ATTRIBUTE_NAMES)
    self._apply = jax.jit(lambda p, x: self.model.apply({"params": p}, x))

  @property
  def input_size(self) -> int:
    return int(self.model_config["input_size"])

  @property
  def feature_dim(self) -> int:
    return int(self.model_config["feature_dim"])

  # ---- loading -------------------------------------------------------------------
  @classmethod
  def load(cls, workdir: str | None = None, **kwargs) -> "FaceClassifier":
    """Loads the classifier exported in ``workdir`` (default: :func:`default_classifier_workdir`).

    ``workdir`` may be the training workdir or its ``classifier/`` export directory.
    Raises :class:`CheckpointError` (one line) when there is no trained classifier.
    """
    workdir = default_classifier_workdir() if workdir is None else workdir
    d = export_dir(workdir)
    if not _has_export(d) and _has_export(workdir):
      d = workdir
    _, json_path = export_lib.paths(d, EXPORT_NAME)
    if not _has_export(d):
      raise CheckpointError(
        f"no trained face classifier in {workdir!r} (expected {json_path}); train one with "
        f"`python -m launch.face_classifier --workdir {workdir}`"
      )
    if _format(json_path) == LEGACY_FORMAT:
      model_config, params, info = _load_legacy(d)
    else:
      ex = export_lib.load(d, name=EXPORT_NAME)
      if not isinstance(ex.module, fc_models.AttributeCNN):
        raise CheckpointError(f"{json_path}: not a face classifier ({type(ex.module).__name__})")
      info = ex.info
      if dict(info.get("attributes", {})) != _attribute_schema():
        raise CheckpointError(f"{json_path}: trained on a different attribute schema; retrain it")
      model_config, params = fc_models.model_config(ex.module), ex.variables["params"]
    return cls(model_config, params, info=info, **kwargs)

  def save(self, workdir: str) -> str:
    """Writes ``<workdir>/classifier/{classifier.msgpack, classifier.json}`` atomically."""
    return save_export(workdir, self.model_config, self.params, extra=self.info)

  # ---- inference -----------------------------------------------------------------
  def outputs(self, images) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(logits {attribute: float32[b, K]}, features float32[b, F])`` in one pass."""
    x = _to_float_images(images)
    n = x.shape[0]
    if n == 0:
      raise ValueError("no images")
    logits, feats = [], []
    for start in range(0, n, self.batch_size):
      chunk = x[start : start + self.batch_size]
      m = chunk.shape[0]
      pad = _bucket(m, self.batch_size) - m
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      lg, ft = jax.device_get(self._apply(self.params, chunk))
      logits.append({k: np.asarray(v)[:m] for k, v in lg.items()})
      feats.append(np.asarray(ft)[:m])
    names = [k for k in faces.ATTRIBUTE_NAMES if k in logits[0]]
    names += [k for k in logits[0] if k not in names]
    out = {k: np.concatenate([l[k] for l in logits]) for k in names}
    return out, np.concatenate(feats)

  def logits(self, images) -> dict[str, np.ndarray]:
    """``{attribute: float32[b, num_classes]}`` unnormalised log-probabilities."""
    return self.outputs(images)[0]

  def predict(self, images) -> dict[str, np.ndarray]:
    """``{attribute: int32[b]}`` most likely code of each attribute."""
    return {k: v.argmax(-1).astype(np.int32) for k, v in self.logits(images).items()}

  def features(self, images) -> np.ndarray:
    """``float32[b, feature_dim]`` penultimate-layer features (for Fréchet distances)."""
    return self.outputs(images)[1]

  def accuracy(self, images, attributes: Mapping[str, Any]) -> dict[str, float]:
    """Per-attribute accuracy (and ``'mean'``) of :meth:`predict` against true codes."""
    from zoo.eval import metrics  # pylint: disable=g-import-not-at-top

    return metrics.attribute_accuracy(self.predict(images), attributes)

  def __repr__(self) -> str:
    return f"FaceClassifier({self.model_config})"


def export_dir(workdir: str) -> str:
  return os.path.join(workdir, EXPORT_SUBDIR)


def _has_export(d: str) -> bool:
  params_path, json_path = export_lib.paths(d, EXPORT_NAME)
  legacy = os.path.join(d, _LEGACY_PARAMS)
  return os.path.isfile(json_path) and (os.path.isfile(params_path) or os.path.isfile(legacy))


def _format(json_path: str) -> Any:
  try:
    with open(json_path) as f:
      return json.load(f).get("format")
  except (OSError, ValueError, AttributeError):
    return None  # export_lib.load names the problem


def _load_legacy(d: str) -> tuple[dict, Any, dict]:
  """``(model_config, params, info)`` of a ``zoo.face_classifier/1`` export."""
  meta_path, params_path = os.path.join(d, "classifier.json"), os.path.join(d, _LEGACY_PARAMS)
  with open(meta_path) as f:
    meta = json.load(f)
  if dict(meta.get("attributes", {})) != _attribute_schema():
    raise CheckpointError(f"{meta_path}: trained on a different attribute schema; retrain it")
  model = make_model(meta["model"])
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, model.input_size, model.input_size, 3)))[
      "params"
    ]
  )
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
  try:
    with open(params_path, "rb") as f:
      params = flax.serialization.from_bytes(target, f.read())
  except Exception as e:  # pylint: disable=broad-except  # corrupt / mismatched file
    raise CheckpointError(f"cannot read {params_path}: {e}") from None
  return meta["model"], jax.tree.map(jnp.asarray, params), meta


def is_trained(workdir: str) -> bool:
  """Whether ``workdir`` holds an exported classifier."""
  return _has_export(export_dir(workdir))


def save_export(
  workdir: str,
  model_config: Mapping[str, Any],
  params: Any,
  *,
  extra: Mapping[str, Any] | None = None,
) -> str:
  """Writes the weights and their description (:mod:`zoo.models.export`, name
  ``classifier``) under ``<workdir>/classifier/``; returns that directory.

  ``extra`` (step, eval results, config, ...) is stored as the export's ``info``, with
  the attribute schema the classifier was trained on.
  """
  d = export_dir(workdir)
  info = dict(extra or {})
  info.pop("format", None)  # a legacy export's meta, re-saved
  info.pop("model", None)
  info["attributes"] = _attribute_schema()
  export_lib.save(d, make_model(model_config), {"params": params}, info=info, name=EXPORT_NAME)
  return d


def default_classifier_workdir() -> str:
  """``$ZOO_FACE_CLASSIFIER`` if set, else ``runs/face_classifier`` (relative to the cwd,
  like the launcher's default ``--workdir``), as an absolute path."""
  return os.path.abspath(os.environ.get(ENV_WORKDIR) or DEFAULT_WORKDIR)


def load_classifier(workdir: str | None = None, **kwargs) -> FaceClassifier:
  """Same as :meth:`FaceClassifier.load`."""
  return FaceClassifier.load(workdir, **kwargs)
