"""The faces attribute classifier as a zoo task (trained through the shared loop).

``train_and_evaluate(config, workdir)`` is what ``python -m launch.face_classifier``
runs: it trains :class:`zoo.models.face_classifier.AttributeCNN` on the synthetic faces
(:func:`zoo.data.faces.pipeline.faces_batches`) with one cross-entropy term per
attribute, evaluates per-attribute accuracy on the faces test split at every size in
``eval_sizes``, and exports the weights to ``<workdir>/classifier/`` for
:meth:`zoo.eval.face_classifier.FaceClassifier.load`.

Data: the training split has ``num_train`` faces; each one is rendered once and kept in
memory (``image`` + ``attributes`` only), so later epochs cost no rendering. Step ``k``
reads global batch ``k`` of the stream rendered at ``train_sizes[k % len(train_sizes)]``
(the network resizes every input to ``input_size``), so the classifier sees faces
rendered natively at each size a generator may produce.

:func:`get_or_train_classifier` loads the exported classifier, training it first when
there is none (what code that needs the judge calls).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Iterator, Mapping

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ml_collections

from zoo.data import faces
from zoo.data.faces import pipeline as faces_pipeline
from zoo.data.stream import Memo
from zoo.errors import ConfigError
from zoo.eval import face_classifier as fc
from zoo.eval import metrics
from zoo.models import face_classifier as fc_models
from zoo.training import loop, mesh as mesh_lib
from zoo.training import workdir as workdir_lib
from zoo.training.metrics import MetricWriter

#: How a resume may differ from the run (see :mod:`zoo.training.workdir`).
RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=("input_size", "widths", "convs_per_stage", "feature_dim"),
  free=workdir_lib.LOOP_FREE
  + ("eval_sizes", "num_eval", "eval_batch_size", "num_threads", "prefetch"),
)


def default_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The classifier's config (``launch/configs/face_classifier.py`` serves it; see there)."""
  c = ml_collections.ConfigDict()
  # Model (stored with the exported weights).
  c.input_size = 32  # every input is centre-cropped to its face square and resized to this
  c.widths = (32, 64, 128)  # conv stage widths (each stage halves the resolution)
  c.convs_per_stage = 1
  c.feature_dim = 128  # penultimate features (Fréchet distance)
  # Data.
  c.train_sizes = "32,64"  # render sizes of the training faces, one per step in turn
  c.eval_sizes = "32,64"  # test accuracy is reported at each size
  c.num_train = 12_000  # training faces (each rendered once per size, then cached)
  c.num_eval = 2000  # test faces scored at each evaluation
  c.data_seed = 0  # faces stream seed (the generators' default data uses seed 0 too)
  c.num_threads = 2  # grain threads rendering batches
  c.prefetch = 4
  # Optimisation.
  c.batch_size = 64
  c.num_steps = 2400  # 12.8 epochs of 12k faces (6.4 at each size)
  c.learning_rate = 2e-3
  c.warmup_steps = 100
  c.weight_decay = 1e-4
  c.seed = 0
  # Loop.
  c.log_every = 100
  c.save_every = 400
  c.eval_every = 1200
  c.sample_every = 0
  c.max_to_keep = 2
  c.eval_batch_size = 250

  variant = arg or "default"
  if variant == "default":
    pass
  elif variant == "tiny":
    c.input_size = 16
    c.widths = (8, 16)
    c.feature_dim = 16
    c.train_sizes = "16"
    c.eval_sizes = "16"
    c.num_train = 256
    c.num_eval = 128
    c.batch_size = 32
    c.num_steps = 30
    c.warmup_steps = 5
    c.learning_rate = 3e-3
    c.log_every = 10
    c.save_every = 0
    c.eval_every = 0
    c.eval_batch_size = 64
  else:
    raise ValueError(
      f"unknown face_classifier config variant {variant!r}; expected one of: default, tiny"
    )
  return c


def _sizes(value, key: str) -> tuple[int, ...]:
  if isinstance(value, (int, np.integer)):
    value = (value,)
  if isinstance(value, str):
    value = [v for v in value.replace(",", " ").split() if v]
  try:
    out = tuple(int(v) for v in value)
  except (TypeError, ValueError):
    raise ConfigError(
      f"bad face_classifier config: {key}={value!r} must be sizes, e.g. (32, 64) or '32,64'"
    ) from None
  if not out:
    raise ConfigError(f"bad face_classifier config: {key} is empty")
  return out


def validate_config(c) -> None:
  """Raises ConfigError (one line) for out-of-range or inconsistent values."""

  def need(cond, msg):
    if not cond:
      raise ConfigError(f"bad face_classifier config: {msg}")

  for key in (
    "input_size",
    "convs_per_stage",
    "feature_dim",
    "batch_size",
    "num_steps",
    "num_train",
  ):
    need(isinstance(c[key], int) and c[key] > 0, f"{key}={c[key]!r} must be a positive integer")
  for key in (
    "save_every",
    "log_every",
    "eval_every",
    "num_eval",
    "eval_batch_size",
    "seed",
    "data_seed",
    "warmup_steps",
  ):
    need(isinstance(c[key], int) and c[key] >= 0, f"{key}={c[key]!r} must be an integer >= 0")
  widths = tuple(c.widths) if not isinstance(c.widths, int) else (c.widths,)
  need(
    len(widths) > 0 and all(isinstance(w, int) and w > 0 for w in widths),
    f"widths={c.widths!r} must be positive integers",
  )
  need(
    c.input_size % (2 ** len(widths)) == 0,
    f"input_size={c.input_size} must be divisible by 2**len(widths)={2 ** len(widths)}",
  )
  for key in ("train_sizes", "eval_sizes"):
    for s in _sizes(c[key], key):
      need(16 <= s <= 256, f"{key} has size {s}; faces are rendered at 16..256 px")
  need(c.learning_rate > 0, f"learning_rate={c.learning_rate!r} must be > 0")
  need(c.weight_decay >= 0, f"weight_decay={c.weight_decay!r} must be >= 0")
  need(c.num_train >= c.batch_size, f"num_train={c.num_train} must be >= batch_size={c.batch_size}")


def model_config(c) -> dict:
  widths = tuple(c.widths) if not isinstance(c.widths, int) else (c.widths,)
  return {
    "input_size": int(c.input_size),
    "widths": [int(w) for w in widths],
    "convs_per_stage": int(c.convs_per_stage),
    "feature_dim": int(c.feature_dim),
  }


def learning_rate_schedule(c):
  """Linear warm-up to ``learning_rate``, then cosine decay to 0 at ``num_steps``."""
  warm = min(int(c.warmup_steps), max(int(c.num_steps) - 1, 0))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=c.learning_rate,
    warmup_steps=warm,
    decay_steps=max(int(c.num_steps), warm + 1),
    end_value=0.0,
  )


def make_optimizer(c) -> optax.GradientTransformation:
  return optax.adamw(learning_rate_schedule(c), weight_decay=c.weight_decay)


def attribute_losses(logits: Mapping[str, jax.Array], attrs: Mapping[str, jax.Array]):
  """Mean softmax cross-entropy of each head: ``{attribute: scalar}``."""
  return {
    k: jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits[k].astype(jnp.float32), attrs[k])
    )
    for k in faces.ATTRIBUTE_NAMES
  }


class _CachedSource:
  """Wraps a :class:`FacesSource`, keeping only ``image``/``attributes``/``index`` of each
  drawn example in memory."""

  def __init__(self, source):
    self.source = source
    self._memo = Memo(self._load)

  def __len__(self) -> int:
    return len(self.source)

  def __getattr__(self, name):  # split, seed, height, width, ... of the wrapped source
    if name in ("source", "_memo"):
      raise AttributeError(name)
    return getattr(self.source, name)

  def _load(self, index: int) -> dict:
    full = self.source[index]
    return {"image": full["image"], "attributes": full["attributes"], "index": full["index"]}

  def __getitem__(self, index: int) -> dict:
    return self._memo.get(int(index))


def cached_faces_batches(split: str, **kwargs) -> faces_pipeline.FacesBatches:
  """:func:`faces_batches` whose examples are rendered once and then served from memory."""
  stream = faces_pipeline.faces_batches(split, **kwargs)
  stream.source = _CachedSource(stream.source)
  return stream


@dataclasses.dataclass
class FaceClassifierTask:
  """Attribute-classifier training (see :class:`zoo.training.loop.Task`)."""

  config: Any
  mesh: Any
  name: str = "face_classifier"

  def __post_init__(self):
    c = self.config
    self.model_config = model_config(c)
    self.model = fc_models.make_model(self.model_config)
    self.tx = make_optimizer(c)
    self.lr_fn = learning_rate_schedule(c)
    mesh_lib.check_batch_size(c.batch_size, self.mesh)
    self.train_sizes = _sizes(c.train_sizes, "train_sizes")
    self.eval_sizes = _sizes(c.eval_sizes, "eval_sizes")
    pc, pi = jax.process_count(), jax.process_index()
    self.streams = [
      cached_faces_batches(
        "train",
        batch_size=c.batch_size,
        size=s,
        seed=c.data_seed,
        num_examples=c.num_train,
        process_index=pi,
        process_count=pc,
        views=("image", "attributes"),
      )
      for s in self.train_sizes
    ]
    self._eval_sets: dict[int, dict] = {}
    self.last_eval: dict[str, float] = {}

  # ---- loop.Task interface -------------------------------------------------
  def init_state(self, rng):
    s = self.model.input_size
    params = self.model.init(rng, jnp.zeros((1, s, s, 3), jnp.float32))["params"]
    return {"params": params, "opt_state": self.tx.init(params)}

  def train_step(self, state, batch, rng, step):
    del rng
    attrs = batch["attributes"]

    def loss_fn(params):
      logits, _ = self.model.apply({"params": params}, batch["image"])
      losses = attribute_losses(logits, attrs)
      return sum(losses.values()), (logits, losses)

    (loss, (logits, losses)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    accs = [jnp.mean(jnp.argmax(logits[k], -1) == attrs[k]) for k in faces.ATTRIBUTE_NAMES]
    metrics_ = {
      "loss": loss,
      "acc_mean": jnp.mean(jnp.stack(accs)),
      "acc_min": jnp.min(jnp.stack(accs)),
      "lr": self.lr_fn(step),
      "grad_norm": optax.tree.norm(grads),
    }
    metrics_.update({f"loss/{k}": v for k, v in losses.items()})
    return {"params": params, "opt_state": opt_state}, metrics_

  def _batch(self, step: int) -> dict:
    stream = self.streams[step % len(self.streams)]
    b = stream.batch(step)
    return {"image": b["image"], "attributes": b["attributes"]}

  def train_batches(self, start_step: int) -> Iterator[dict]:
    ds = grain.MapDataset.range(int(start_step), int(start_step) + 2**40).map(self._batch)
    opts = grain.ReadOptions(
      num_threads=int(self.config.num_threads), prefetch_buffer_size=int(self.config.prefetch)
    )
    return iter(ds.to_iter_dataset(opts))

  def eval_set(self, size: int) -> dict:
    """The first ``num_eval`` test faces at ``size`` (rendered once)."""
    if size not in self._eval_sets:
      self._eval_sets[size] = render_eval_set(self.config, size)
    return self._eval_sets[size]

  def classifier(self, state) -> fc.FaceClassifier:
    params = jax.device_get(state["params"])
    return fc.FaceClassifier(
      self.model_config, params, batch_size=self.config.eval_batch_size or 256
    )

  def evaluate(self, state, step):
    if not self.config.num_eval:
      return {}
    self.last_eval = evaluate_classifier(
      self.classifier(state), self.config, eval_set=self.eval_set
    )
    return self.last_eval

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    del state, step, workdir, writer  # a classifier has nothing to draw


def render_eval_set(c, size: int) -> dict:
  """The first ``num_eval`` faces of the test split at ``size``: uint8 ``image``, ``attributes``."""
  stream = faces_pipeline.faces_batches(
    "test",
    batch_size=c.num_eval,
    size=size,
    seed=c.data_seed,
    num_examples=c.num_eval,
    shuffle=False,
    views=("image_uint8", "attributes"),
  )
  b = stream.batch(0)
  return {"image": b["image_uint8"], "attributes": b["attributes"]}


def evaluate_classifier(
  clf: fc.FaceClassifier, c, *, eval_set: Callable[[int], dict] | None = None
) -> dict[str, float]:
  """Test accuracy of ``clf`` at each of ``c.eval_sizes``, and a real-vs-real FD.

  Returns ``test{size}/acc/{attribute}``, ``test{size}/acc/mean``, ``test{size}/acc_min``
  and, at the first size, ``test{size}/fd_real_real``: the classifier Fréchet distance
  between the first and second halves of the test faces (the floor a generator's FD
  against real faces can reach with that many samples).
  """
  eval_set = eval_set or (lambda size: render_eval_set(c, size))
  out = {}
  for i, size in enumerate(_sizes(c.eval_sizes, "eval_sizes")):
    data = eval_set(size)
    logits, feats = clf.outputs(data["image"])
    acc = metrics.attribute_accuracy(
      {k: v.argmax(-1) for k, v in logits.items()}, data["attributes"]
    )
    for k, v in acc.items():
      out[f"test{size}/acc/{k}"] = v
    out[f"test{size}/acc_min"] = min(v for k, v in acc.items() if k != "mean")
    if i == 0 and len(feats) >= 16:
      h = len(feats) // 2
      out[f"test{size}/fd_real_real"] = metrics.frechet_distance(feats[:h], feats[h : 2 * h])
  return out


def evaluate_exported(config, workdir: str) -> dict[str, float]:
  """Loads the classifier exported in ``workdir`` and evaluates it with ``config``."""
  validate_config(config)
  return evaluate_classifier(fc.FaceClassifier.load(workdir), config)


def build_task(c, mesh=None) -> FaceClassifierTask:
  validate_config(c)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  return FaceClassifierTask(config=c, mesh=mesh)


def train_and_evaluate(
  config,
  workdir: str,
  *,
  mesh=None,
  log_fn: Callable[[str], None] | None = None,
  allow_config_change: bool = False,
) -> loop.TrainResult:
  """Trains (or resumes) the classifier in ``workdir``, evaluates it, exports it.

  Writes ``config.json`` (once a resume is known to succeed), ``eval.json`` (final test
  accuracies, step, training seconds) and ``classifier/`` (weights for
  :class:`FaceClassifier`), all under the workdir's lock.
  """
  validate_config(config)
  cfg = loop.LoopConfig.from_config(config)
  workdir_lib.check_usable(workdir)
  with workdir_lib.lock(workdir, say=log_fn or print):
    return _train_and_export(config, cfg, workdir, mesh, log_fn, allow_config_change)


def _train_and_export(config, cfg, workdir, mesh, log_fn, allow_config_change):
  task = build_task(config, mesh)
  t0 = time.perf_counter()
  result = loop.train(
    task,
    cfg,
    workdir,
    mesh=task.mesh,
    log_fn=log_fn,
    run_config=workdir_lib.jsonable(config),
    resume_keys=RESUME_KEYS,
    allow_config_change=allow_config_change,
  )
  seconds = time.perf_counter() - t0
  if not result.eval_history or result.eval_history[-1]["step"] != result.step:
    task.evaluate(result.state, result.step)  # e.g. resumed at the end: nothing evaluated
  if result.stopped_by_signal:
    return result  # not finished: no export, so get_or_train resumes it
  if jax.process_index() == 0:
    info = {
      "step": int(result.step),
      "train_seconds_last_run": round(seconds, 1),
      "eval": task.last_eval,
      "config": config.to_dict(),
    }
    fc.save_export(workdir, task.model_config, result.state["params"], extra=info)
    workdir_lib.write_json(
      os.path.join(workdir, "eval.json"),
      {k: info[k] for k in ("step", "train_seconds_last_run", "eval")},
    )
    say = log_fn or (lambda msg: print(msg, flush=True))
    say(f"[face_classifier] exported to {fc.export_dir(workdir)}; " + format_eval(task.last_eval))
  return result


def format_eval(results: Mapping[str, float]) -> str:
  """One line per eval size: ``test32: min 0.99 mean 0.99 | face_shape 0.99 ...``."""
  lines = []
  prefixes = sorted({k.split("/")[0] for k in results}, key=lambda p: (len(p), p))
  for p in prefixes:
    accs = {k.split("/")[-1]: v for k, v in results.items() if k.startswith(f"{p}/acc/")}
    parts = [
      f"{p}: min {results.get(f'{p}/acc_min', float('nan')):.4f} "
      f"mean {accs.get('mean', float('nan')):.4f}"
    ]
    parts += [f"{k} {accs[k]:.4f}" for k in faces.ATTRIBUTE_NAMES if k in accs]
    if f"{p}/fd_real_real" in results:
      parts.append(f"fd_real_real {results[f'{p}/fd_real_real']:.4f}")
    lines.append(" | ".join(parts))
  return "\n".join(lines)


def _lock(workdir: str):
  """The workdir's training lock, waited for (so concurrent callers train once; a training
  run started from the command line meanwhile is waited for, not refused)."""
  return workdir_lib.lock(workdir, wait=True)


def get_or_train_classifier(
  workdir: str | None = None,
  config=None,
  *,
  log_fn: Callable[[str], None] | None = None,
  **load_kwargs,
) -> fc.FaceClassifier:
  """Loads the classifier exported in ``workdir``; trains (or resumes) it first if missing.

  Args:
    workdir: defaults to :func:`zoo.eval.face_classifier.default_classifier_workdir`.
    config: training config when it must be trained (default: :func:`default_config`,
      which ``launch/configs/face_classifier.py`` serves). An existing export is used as
      is, whatever its config.
    log_fn: progress messages (default: print).
    **load_kwargs: for :meth:`FaceClassifier.load` (e.g. ``batch_size``).
  """
  workdir = fc.default_classifier_workdir() if workdir is None else os.path.abspath(workdir)
  if not fc.is_trained(workdir):
    with _lock(workdir):
      if not fc.is_trained(workdir):  # another process may have trained it meanwhile
        if config is None:
          config = default_config()
        say = log_fn or (lambda msg: print(msg, flush=True))
        say(
          f"[face_classifier] no trained classifier in {workdir}; training it "
          f"({config.num_steps} steps)"
        )
        train_and_evaluate(config, workdir, log_fn=log_fn)
  return fc.FaceClassifier.load(workdir, **load_kwargs)
