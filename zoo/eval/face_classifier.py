"""An attribute classifier for the synthetic faces: the zoo's offline judge of generators.

:class:`AttributeCNN` is a small CNN with one softmax head per attribute of
:data:`zoo.data.faces.ATTRIBUTES` and a penultimate feature layer (``feature_dim``,
128 by default) used for classifier Fréchet distances
(:func:`zoo.eval.metrics.classifier_frechet_distance`).

Inputs of any size are accepted: the network centre-crops the ``min(H, W)`` square (the
faces are drawn in that square, see ``docs/faces.md``) and resizes it to its input size
(32x32 by default) with ``jax.image.resize`` (antialiased bilinear), so it can score a
generator's output at 32, 64, 128 px or rectangular sizes alike.

It is trained by ``python -m launch.face_classifier`` (:mod:`zoo.tasks.face_classifier`),
which exports the trained weights to ``<workdir>/classifier/``. Use it as::

  clf = get_or_train_classifier()            # loads default_classifier_workdir(), or trains
  clf.predict(images)   # {attribute: int32[b]}
  clf.features(images)  # float32 [b, feature_dim]
  clf.logits(images)    # {attribute: float32[b, num_classes]}
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from zoo.data import faces
from zoo.errors import CheckpointError

EXPORT_SUBDIR = "classifier"
EXPORT_FORMAT = "zoo.face_classifier/1"
ENV_WORKDIR = "ZOO_FACE_CLASSIFIER"
DEFAULT_WORKDIR = os.path.join("runs", "face_classifier")
#: Architecture keys stored with the exported weights.
MODEL_KEYS = ("input_size", "widths", "convs_per_stage", "feature_dim")


def prepare_images(images: jax.Array, size: int) -> jax.Array:
  """Float images ``[b, H, W, C]`` (C = 1 or 3, in [-1, 1]) -> ``[b, size, size, 3]``.

  Centre-crops the ``min(H, W)`` square, then resizes it (antialiased bilinear) unless it
  already has the right size. One channel is repeated to three.
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"expected images [b, H, W, 1 or 3], got shape {images.shape}")
  b, h, w, c = images.shape
  m = min(h, w)
  top, left = (h - m) // 2, (w - m) // 2
  x = images[:, top : top + m, left : left + m, :].astype(jnp.float32)
  if c == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if m != size:
    x = jax.image.resize(x, (b, size, size, 3), method="linear", antialias=True)
  return x


class AttributeCNN(nn.Module):
  """conv stages (3x3 conv + ReLU, ``convs_per_stage`` times, then 2x2 average pooling),
  flatten, ``Dense(feature_dim)`` + ReLU (the *features*), one ``Dense`` head per attribute.

  ``__call__(images) -> (logits {attribute: [b, K]}, features [b, feature_dim])``; images
  are float in [-1, 1], any size (see :func:`prepare_images`).
  """

  input_size: int = 32
  widths: Sequence[int] = (32, 64, 128)
  convs_per_stage: int = 2
  feature_dim: int = 128
  attribute_sizes: Mapping[str, int] | None = None  # default: faces.ATTRIBUTES

  @nn.compact
  def __call__(self, images):
    sizes = (
      dict(self.attribute_sizes)
      if self.attribute_sizes is not None
      else {k: len(v) for k, v in faces.ATTRIBUTES.items()}
    )
    x = prepare_images(images, self.input_size)
    for i, w in enumerate(self.widths):
      for j in range(self.convs_per_stage):
        x = nn.relu(nn.Conv(w, (3, 3), padding="SAME", name=f"conv{i}_{j}")(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    feats = nn.relu(nn.Dense(self.feature_dim, name="features")(x))
    logits = {k: nn.Dense(n, name=f"head_{k}")(feats) for k, n in sizes.items()}
    return logits, feats


def make_model(model_config: Mapping[str, Any]) -> AttributeCNN:
  return AttributeCNN(
    input_size=int(model_config["input_size"]),
    widths=tuple(int(w) for w in model_config["widths"]),
    convs_per_stage=int(model_config["convs_per_stage"]),
    feature_dim=int(model_config["feature_dim"]),
  )


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
    if not os.path.isfile(os.path.join(d, "classifier.json")) and os.path.isfile(
      os.path.join(workdir, "classifier.json")
    ):
      d = workdir
    meta_path, params_path = os.path.join(d, "classifier.json"), os.path.join(d, "params.msgpack")
    if not (os.path.isfile(meta_path) and os.path.isfile(params_path)):
      raise CheckpointError(
        f"no trained face classifier in {workdir!r} (expected {meta_path}); train one with "
        f"`python -m launch.face_classifier --workdir {workdir}`"
      )
    with open(meta_path) as f:
      meta = json.load(f)
    if meta.get("format") != EXPORT_FORMAT:
      raise CheckpointError(
        f"{meta_path}: format {meta.get('format')!r}, expected {EXPORT_FORMAT!r}"
      )
    if dict(meta.get("attributes", {})) != {k: len(v) for k, v in faces.ATTRIBUTES.items()}:
      raise CheckpointError(f"{meta_path}: trained on a different attribute schema; retrain it")
    model = make_model(meta["model"])
    abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, model.input_size, model.input_size, 3)))[
        "params"
      ]
    )
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    with open(params_path, "rb") as f:
      try:
        params = flax.serialization.from_bytes(target, f.read())
      except Exception as e:  # corrupt / mismatched file
        raise CheckpointError(f"cannot read {params_path}: {e}") from None
    return cls(meta["model"], jax.tree.map(jnp.asarray, params), info=meta, **kwargs)

  def save(self, workdir: str) -> str:
    """Writes ``<workdir>/classifier/{params.msgpack, classifier.json}`` atomically."""
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


def is_trained(workdir: str) -> bool:
  """Whether ``workdir`` holds an exported classifier."""
  d = export_dir(workdir)
  return all(os.path.isfile(os.path.join(d, f)) for f in ("classifier.json", "params.msgpack"))


def save_export(
  workdir: str,
  model_config: Mapping[str, Any],
  params: Any,
  *,
  extra: Mapping[str, Any] | None = None,
) -> str:
  """Writes the weights and a JSON description under ``<workdir>/classifier/``; returns the dir."""
  d = export_dir(workdir)
  os.makedirs(d, exist_ok=True)
  meta = dict(extra or {})
  meta.update(
    format=EXPORT_FORMAT,
    model={k: model_config[k] for k in MODEL_KEYS},
    attributes={k: len(v) for k, v in faces.ATTRIBUTES.items()},
  )
  meta["model"]["widths"] = [int(w) for w in meta["model"]["widths"]]
  data = flax.serialization.to_bytes(jax.device_get(params))
  for name, payload, mode in (
    ("params.msgpack", data, "wb"),
    ("classifier.json", json.dumps(meta, indent=2, default=str), "w"),
  ):
    tmp = os.path.join(d, f".{name}.tmp{os.getpid()}")
    with open(tmp, mode) as f:
      f.write(payload)
    os.replace(tmp, os.path.join(d, name))
  return d


def default_classifier_workdir() -> str:
  """``$ZOO_FACE_CLASSIFIER`` if set, else ``runs/face_classifier`` (relative to the cwd,
  like the launcher's default ``--workdir``), as an absolute path."""
  return os.path.abspath(os.environ.get(ENV_WORKDIR) or DEFAULT_WORKDIR)


def load_classifier(workdir: str | None = None, **kwargs) -> FaceClassifier:
  """Same as :meth:`FaceClassifier.load`."""
  return FaceClassifier.load(workdir, **kwargs)


@contextlib.contextmanager
def _lock(workdir: str):
  """An exclusive lock on ``<workdir>/.train.lock`` (so concurrent callers train once)."""
  os.makedirs(workdir, exist_ok=True)
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover - non-POSIX
    yield
    return
  with open(os.path.join(workdir, ".train.lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def get_or_train_classifier(
  workdir: str | None = None,
  config=None,
  *,
  log_fn: Callable[[str], None] | None = None,
  **load_kwargs,
) -> FaceClassifier:
  """Loads the classifier exported in ``workdir``; trains (or resumes) it first if missing.

  Args:
    workdir: defaults to :func:`default_classifier_workdir`.
    config: training config when it must be trained (default:
      ``launch/configs/face_classifier.py``'s ``get_config()``). An existing export is
      used as is, whatever its config.
    log_fn: progress messages (default: print).
  """
  workdir = default_classifier_workdir() if workdir is None else os.path.abspath(workdir)
  if not is_trained(workdir):
    with _lock(workdir):
      if not is_trained(workdir):  # another process may have trained it meanwhile
        from zoo.tasks import face_classifier as task_lib  # pylint: disable=g-import-not-at-top

        if config is None:
          config = task_lib.default_config()
        say = log_fn or (lambda msg: print(msg, flush=True))
        say(
          f"[face_classifier] no trained classifier in {workdir}; training it "
          f"({config.num_steps} steps)"
        )
        task_lib.train_and_evaluate(config, workdir, log_fn=log_fn)
  return FaceClassifier.load(workdir, **load_kwargs)
