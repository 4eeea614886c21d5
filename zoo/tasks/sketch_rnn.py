"""Sketch-RNN as a zoo task: config → data, model, losses, optimizer, train/eval step.

``train_and_evaluate(config, workdir)`` is what ``python -m launch.sketch_rnn``
runs. Everything here is built from the library pieces (``zoo.models``,
``zoo.losses``, ``zoo.data``) and the shared loop (``zoo.training.loop``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data.sketches import pipeline as sketch_pipeline, strokes as strokes_lib
from zoo.data.sketches.tfds import load_sketch_splits
from zoo.errors import ConfigError
from zoo.losses import kl as kl_lib
from zoo.losses import mdn
from zoo.models.sketch_rnn import SketchRNN
from zoo.models import sketch_rnn_sampling
from zoo.training import checkpoint as ckpt_lib
from zoo.training import loop, mesh as mesh_lib
from zoo.training import workdir as workdir_lib
from zoo.training.metrics import MetricWriter

CELLS = ("lstm", "layer_norm", "hyper")

#: How a resume may differ from the run (see :mod:`zoo.training.workdir`): the network
#: sizes are fixed; the data, its derived statistics (``derived.scale_factor``,
#: ``derived.max_seq_len``) and the optimisation need ``--allow_config_change``.
RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=(
    "enc_rnn_size",
    "dec_rnn_size",
    "z_size",
    "num_mixture",
    "enc_model",
    "dec_model",
    "conditional",
    "hyper_num_units",
    "hyper_embedding_size",
  ),
  free=workdir_lib.LOOP_FREE
  + ("num_samples", "sample_temperature", "eval_batch_size", "data_dir", "manual_dir"),
)


def validate_config(c) -> None:
  """Raises ConfigError (one line) for out-of-range or inconsistent values."""

  def need(cond, msg):
    if not cond:
      raise ConfigError(f"bad sketch_rnn config: {msg}")

  for key in ("enc_model", "dec_model"):
    need(c[key] in CELLS, f"{key}={c[key]!r}, expected one of {CELLS}")
  for key in (
    "enc_rnn_size",
    "dec_rnn_size",
    "z_size",
    "num_mixture",
    "batch_size",
    "num_steps",
    "hyper_num_units",
    "hyper_embedding_size",
    "num_samples",
  ):
    need(isinstance(c[key], int) and c[key] > 0, f"{key}={c[key]!r} must be a positive integer")
  for key in (
    "save_every",
    "log_every",
    "eval_every",
    "sample_every",
    "max_seq_len",
    "eval_batch_size",
  ):
    need(isinstance(c[key], int) and c[key] >= 0, f"{key}={c[key]!r} must be an integer >= 0")
  for key in ("recurrent_dropout_prob", "input_dropout_prob", "output_dropout_prob"):
    need(0.0 < c[key] <= 1.0, f"{key}={c[key]!r} is a keep probability in (0, 1]")
  for key in ("learning_rate", "grad_clip"):
    need(c[key] > 0, f"{key}={c[key]!r} must be > 0")
  need(
    0 <= c.min_learning_rate <= c.learning_rate,
    f"min_learning_rate={c.min_learning_rate!r} must be in [0, learning_rate]",
  )
  for key in ("decay_rate", "kl_decay_rate"):
    need(0.0 < c[key] <= 1.0, f"{key}={c[key]!r} must be in (0, 1]")
  need(
    c.kl_weight >= 0 and c.kl_weight_start >= 0 and c.kl_tolerance >= 0,
    "kl_weight, kl_weight_start and kl_tolerance must be >= 0",
  )
  need(
    0.0 <= c.random_scale_factor < 1.0,
    f"random_scale_factor={c.random_scale_factor!r} must be in [0, 1)",
  )
  need(
    0.0 <= c.augment_stroke_prob < 1.0,
    f"augment_stroke_prob={c.augment_stroke_prob!r} must be in [0, 1)",
  )
  need(
    c.compute_dtype in ("float32", "bfloat16"),
    f"compute_dtype={c.compute_dtype!r}, expected float32 or bfloat16",
  )
  need(c.sample_temperature > 0, f"sample_temperature={c.sample_temperature!r} must be > 0")


def make_model(c) -> SketchRNN:
  return SketchRNN(
    enc_rnn_size=c.enc_rnn_size,
    dec_rnn_size=c.dec_rnn_size,
    z_size=c.z_size,
    num_mixture=c.num_mixture,
    enc_model=c.enc_model,
    dec_model=c.dec_model,
    conditional=c.conditional,
    use_recurrent_dropout=c.use_recurrent_dropout,
    recurrent_dropout_prob=c.recurrent_dropout_prob,
    use_input_dropout=c.use_input_dropout,
    input_dropout_prob=c.input_dropout_prob,
    use_output_dropout=c.use_output_dropout,
    output_dropout_prob=c.output_dropout_prob,
    hyper_num_units=c.hyper_num_units,
    hyper_embedding_size=c.hyper_embedding_size,
    dtype=jnp.dtype(c.compute_dtype),
  )


def learning_rate_schedule(c):
  """magenta: ``(lr - min_lr) * decay_rate**step + min_lr``."""
  lr, min_lr, decay = c.learning_rate, c.min_learning_rate, c.decay_rate
  return lambda count: (lr - min_lr) * decay**count + min_lr


def make_optimizer(c) -> optax.GradientTransformation:
  """Adam with magenta's decaying learning rate; gradients clipped by value."""
  return optax.chain(optax.clip(c.grad_clip), optax.adam(learning_rate_schedule(c)))


def sketch_losses(
  model: SketchRNN,
  params,
  batch,
  *,
  rngs=None,
  deterministic: bool,
  train_pen_loss: bool,
  kl_tolerance: float,
):
  """Reconstruction and KL terms for one batch (``batch['strokes']`` has the start token)."""
  out = model.apply(
    {"params": params}, batch["strokes"], batch["seq_len"], deterministic=deterministic, rngs=rngs
  )
  mp = mdn.split_mixture_params(out["raw"].astype(jnp.float32), num_mixture=model.num_mixture)
  targets = batch["strokes"][:, 1:]
  r_cost, parts = mdn.sketch_rnn_reconstruction_loss(mp, targets, train=train_pen_loss)
  if model.conditional:
    kl_cost, kl_raw = kl_lib.sketch_rnn_kl_loss(
      out["mu"].astype(jnp.float32), out["presig"].astype(jnp.float32), kl_tolerance=kl_tolerance
    )
  else:
    kl_cost = kl_raw = jnp.zeros((), jnp.float32)
  return r_cost, kl_cost, kl_raw, parts


@dataclasses.dataclass
class SketchRNNTask:
  """The Sketch-RNN training task (see :class:`zoo.training.loop.Task`)."""

  config: Any
  splits: Mapping[str, list]
  max_seq_len: int
  scale_factor: float
  mesh: Any
  name: str = "sketch_rnn"

  def __post_init__(self):
    c = self.config
    self.model = make_model(c)
    self.tx = make_optimizer(c)
    self.lr_fn = learning_rate_schedule(c)
    pc, pi = jax.process_count(), jax.process_index()
    mesh_lib.check_batch_size(c.batch_size, self.mesh)
    self.stream = sketch_pipeline.SketchTrainStream(
      self.splits["train"],
      batch_size=c.batch_size,
      max_seq_len=self.max_seq_len,
      scale_factor=self.scale_factor,
      random_scale_factor=c.random_scale_factor,
      augment_stroke_prob=c.augment_stroke_prob,
      seed=c.seed,
      process_index=pi,
      process_count=pc,
    )
    self.eval_batch_size = c.eval_batch_size or c.batch_size
    mesh_lib.check_batch_size(self.eval_batch_size, self.mesh, "eval_batch_size")
    self._eval_step = jax.jit(self._eval_sums)
    self._sample = jax.jit(
      functools.partial(
        sketch_rnn_sampling.sample, self.model, batch_size=c.num_samples, max_len=self.max_seq_len
      ),
      static_argnames=("greedy",),
    )

  # ---- loop.Task interface -------------------------------------------------
  def init_state(self, rng):
    dummy = jnp.zeros((1, self.max_seq_len + 1, 5), jnp.float32)
    variables = self.model.init(
      {"params": rng, "dropout": rng, "latent": rng},
      dummy,
      jnp.ones((1,), jnp.int32),
      deterministic=True,
    )
    params = variables["params"]
    return {"params": params, "opt_state": self.tx.init(params)}

  def train_step(self, state, batch, rng, step):
    c = self.config
    kl_weight = kl_lib.kl_annealing_weight(
      step, kl_weight=c.kl_weight, kl_weight_start=c.kl_weight_start, kl_decay_rate=c.kl_decay_rate
    )
    k_drop, k_lat = jax.random.split(rng)

    def loss_fn(params):
      r, kl, kl_raw, parts = sketch_losses(
        self.model,
        params,
        batch,
        rngs={"dropout": k_drop, "latent": k_lat},
        deterministic=False,
        train_pen_loss=True,
        kl_tolerance=c.kl_tolerance,
      )
      return r + kl_weight * kl, (r, kl, kl_raw, parts)

    (loss, (r, kl, kl_raw, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state["params"]
    )
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {
      "loss": loss,
      "r_cost": r,
      "kl_cost": kl,
      "kl_raw": kl_raw,
      "offset_loss": parts["offset_loss"],
      "pen_loss": parts["pen_loss"],
      "kl_weight": kl_weight,
      "lr": self.lr_fn(step),
      "grad_norm": optax.tree.norm(grads),
    }
    return {"params": params, "opt_state": opt_state}, metrics

  def train_batches(self, start_step: int) -> Iterator[dict]:
    return self.stream.iterate(start_step)

  def _eval_sums(self, params, batch):
    """Weighted sums over the batch's real rows (``weights`` 0 marks padding rows).

    ``kl_cost`` is floored per batch as magenta does (``max(mean KL, kl_tolerance)``),
    then weighted by the batch's real rows, so full batches give magenta's numbers and a
    smaller last batch counts for its size.
    """
    out = self.model.apply(
      {"params": params}, batch["strokes"], batch["seq_len"], deterministic=True
    )
    mp = mdn.split_mixture_params(
      out["raw"].astype(jnp.float32), num_mixture=self.model.num_mixture
    )
    targets = batch["strokes"][:, 1:]
    w = batch["weights"].astype(jnp.float32)
    n = jnp.sum(w)
    r, _ = mdn.sketch_rnn_reconstruction_loss_per_example(mp, targets, train=True)
    r_masked, _ = mdn.sketch_rnn_reconstruction_loss_per_example(mp, targets, train=False)
    if self.model.conditional:
      kl = jnp.mean(
        kl_lib.gaussian_kl(out["mu"].astype(jnp.float32), out["presig"].astype(jnp.float32)),
        axis=-1,
      )
    else:
      kl = jnp.zeros_like(r)
    kl_sum = jnp.sum(w * kl)
    kl_cost = jnp.maximum(kl_sum / jnp.maximum(n, 1.0), self.config.kl_tolerance) * n
    return {
      "r_cost": jnp.sum(w * r),
      "r_cost_masked": jnp.sum(w * r_masked),
      "kl_cost": kl_cost if self.model.conditional else jnp.zeros(()),
      "kl_raw": kl_sum,
      "n": n,
    }

  def evaluate_split(self, state, split: str) -> dict[str, float]:
    """magenta's ``evaluate_model``: means over the split's batches.

    Unlike magenta, the last, smaller batch is evaluated too (padded to the batch size,
    the padding rows masked out), so a split smaller than ``eval_batch_size`` still gets
    numbers; on whole batches the numbers are magenta's.

    Reported, per split:
      * ``r_cost``: reconstruction loss as magenta reports it. magenta's eval model is
        built with ``is_training=1`` (only dropout off), so its pen loss is *unmasked*.
      * ``r_cost_masked``: the same with the pen loss masked after the end of each
        sketch (magenta's ``is_training=0`` path): the loss of the real strokes only.
      * ``kl_cost``: the KL floored at ``kl_tolerance``; ``kl_raw`` unfloored.
      * ``loss``: ``r_cost + kl_weight_start * kl_cost``. magenta's eval model has its
        own ``kl_weight`` variable that keeps its initial value ``kl_weight_start``
        (training feeds the annealed weight only to the training model).
    Unlike magenta, z is the posterior mean (no sampling), so evaluation is deterministic.
    """
    c = self.config
    batches = sketch_pipeline.eval_batches(
      self.splits[split],
      batch_size=self.eval_batch_size,
      max_seq_len=self.max_seq_len,
      scale_factor=self.scale_factor,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      drop_remainder=False,
    )
    sums = None
    for b in batches:
      out = self._eval_step(state["params"], mesh_lib.to_global(b, self.mesh))
      out = jax.device_get(out)
      sums = out if sums is None else {k: sums[k] + out[k] for k in out}
    if not sums or float(sums["n"]) == 0:
      return {}
    n = float(sums.pop("n"))
    means = {k: float(v) / n for k, v in sums.items()}
    means["loss"] = means["r_cost"] + c.kl_weight_start * means["kl_cost"]
    return means

  def evaluate(self, state, step):
    out = {}
    for split in ("valid", "test"):
      if self.splits.get(split):
        for k, v in self.evaluate_split(state, split).items():
          out[f"{split}/{k}"] = v
    return out

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    c = self.config
    k_z, k_sample = jax.random.split(jax.random.fold_in(jax.random.key(c.seed + 1), step))
    variables = {"params": state["params"]}
    z = jax.random.normal(k_z, (c.num_samples, c.z_size)) if c.conditional else None
    strokes, lengths = self._sample(variables, k_sample, z=z, temperature=c.sample_temperature)
    strokes, lengths = jax.device_get((strokes, lengths))
    if jax.process_index() != 0:
      return
    sketches = []
    for s, n in zip(np.asarray(strokes), np.asarray(lengths)):
      s3 = strokes_lib.to_stroke3(s[: n + 1], has_start_token=False)
      s3[:, :2] *= self.scale_factor
      sketches.append(s3)
    outdir = os.path.join(workdir, "samples")
    os.makedirs(outdir, exist_ok=True)
    svg = strokes_lib.grid_svg(sketches, ncols=int(np.ceil(np.sqrt(len(sketches)))))
    path = os.path.join(outdir, f"samples_{step:08d}.svg")
    with open(path, "w") as f:
      f.write(svg)
    with open(os.path.join(outdir, "latest.svg"), "w") as f:
      f.write(svg)


def load_data(c):
  """Loads splits and derives ``max_seq_len`` (when 0) and the scale factor.

  One-line ConfigError when no training sketch is left after dropping those longer than
  ``max_seq_len``, or when the training offsets have no spread (nothing to normalise by).
  """
  splits = load_sketch_splits(
    c.data_set, data_dir=c.data_dir or None, manual_dir=c.manual_dir or None, seed=c.seed
  )
  longest = max((len(s) for sk in splits.values() for s in sk), default=0)
  try:
    splits, max_seq_len, scale = sketch_pipeline.prepare_splits(
      splits, max_seq_len=c.max_seq_len or None
    )
  except ValueError as e:
    if "empty after filtering" in str(e):
      raise ConfigError(
        f"data set {c.data_set!r}: no training sketch has at most max_seq_len={c.max_seq_len} "
        f"points (the longest has {longest}); raise max_seq_len or set it to 0 (the longest)"
      ) from None
    if "degenerate scale factor" in str(e):
      raise ConfigError(
        f"data set {c.data_set!r}: every training offset is the same (zero spread), so "
        "the data cannot be normalised; check the file"
      ) from None
    raise ConfigError(f"data set {c.data_set!r}: {e}") from None
  return splits, max_seq_len, scale


def build_task(c, mesh=None) -> SketchRNNTask:
  validate_config(c)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  splits, max_seq_len, scale = load_data(c)
  return SketchRNNTask(
    config=c, splits=splits, max_seq_len=max_seq_len, scale_factor=scale, mesh=mesh
  )


def run_info(task: SketchRNNTask) -> dict:
  """What ``config.json`` holds: the config and the values derived from the data."""
  return dict(
    workdir_lib.jsonable(task.config),
    derived={"max_seq_len": task.max_seq_len, "scale_factor": task.scale_factor},
  )


def save_run_info(task: SketchRNNTask, workdir: str) -> None:
  """Writes ``config.json`` (with derived values) so other modes can rebuild the model."""
  ckpt_lib.write_run_config(workdir, run_info(task))


def train_and_evaluate(
  config, workdir: str, *, mesh=None, allow_config_change: bool = False
) -> loop.TrainResult:
  """Trains (or resumes) in ``workdir``; ``config.json`` is written by the loop once a
  resume is known to succeed (its derived statistics are part of the resume check)."""
  validate_config(config)
  cfg = loop.LoopConfig.from_config(config)
  workdir_lib.check_usable(workdir)
  task = build_task(config, mesh)
  return loop.train(
    task,
    cfg,
    workdir,
    mesh=task.mesh,
    run_config=run_info(task),
    resume_keys=RESUME_KEYS,
    allow_config_change=allow_config_change,
  )
