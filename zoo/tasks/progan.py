"""ProGAN (Karras et al. 2018) as a zoo task: progressive growing on the adversarial core.

``python -m launch.progan`` runs :func:`train_and_evaluate` (``--mode train``),
:func:`sample` (``--mode sample``) or :func:`export` (``--mode export``).

Schedule. Stage 0 trains the start resolution (4x4, or a rectangle such as 4x2)
for ``stable_images``; every later stage doubles the resolution, fading the new
block in over ``fade_images`` (``alpha`` 0 -> 1) and then training it for
``stable_images`` (``final_stable_images`` for the last stage). Images become
steps with the stage's minibatch size. Real images are box-filtered to the stage's
resolution and, during a fade, blended with their 2x-blurred version by the same
``alpha`` (the reference's level-of-detail blending), so D never sees a sharper
real than fake.

Recipe (the reference's): WGAN-GP (λ = 10) + drift 1e-3, Adam(1e-3, β = 0, 0.99),
n_critic 1, an EMA of G for samples and evaluation, Adam moments reset at each
new stage (``schedule.reset_optimizer``).

Outputs in the workdir: checkpoints (with the stage), ``config.json``, TensorBoard
scalars (losses, alpha, the classifier Fréchet distance FD at every stage end and
evaluation), ``samples/stage<k>_<HxW>_<step>.png`` grids of fixed latents, and
``samples/timelapse.gif`` of the same latents across the whole run.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from PIL import Image

from zoo.data.images import unconditional as image_data
from zoo.data import stream as stream_lib
from zoo.errors import ConfigError, ZooError
from zoo.gan import core, objectives, progressive
from zoo.gan.progressive import Schedule, make_schedule, upsample_nearest  # noqa: F401 (re-exported)
from zoo.models import export as export_lib
from zoo.models import progan as models
from zoo.training import loop, mesh as mesh_lib
from zoo.training import restore as restore_lib
from zoo.training import workdir as workdir_lib
from zoo.training.metrics import MetricWriter
from zoo.training.pictures import sample_grid, write_timelapse

#: Config sections whose change makes a workdir's checkpoints unusable.
_SHAPE_SECTIONS = ("model", "schedule")
#: Validation faces for the real attribute distribution (runs written before eval.num_real).
NUM_REAL = 5000

_LOOP_KEYS = ("seed", "log_every", "save_every", "eval_every", "sample_every", "max_to_keep")

# ---------------------------------------------------------------------------
# Config and schedule.
# ---------------------------------------------------------------------------


def validate_config(
  c, *, family: str = "progan", networks=models.make_progan, loss_keys: tuple[str, ...] = ()
) -> None:
  """One-line ConfigError for a bad value; checks every section. ``networks(model, stage)``
  builds the family's pair (StyleGAN checks its own model section through it);
  ``loss_keys`` are the family's own ``loss`` keys, which it checks itself."""

  def need(ok, msg):
    if not ok:
      raise ConfigError(f"bad {family} config: {msg}")

  networks(c.model, 0)  # unknown model keys, bad start
  sched = make_schedule(c)
  objectives.LossConfig.from_config(c.loss, family_keys=loss_keys)
  o = c.optim
  need(o.lr > 0, f"optim.lr={o.lr!r} must be > 0")
  need(0 <= o.b1 < 1 and 0 <= o.b2 < 1, "optim.b1 and optim.b2 must be in [0, 1)")
  need(c.ema.half_life_images >= 0, "ema.half_life_images must be >= 0")
  need(
    c.data.num_train >= max(sched.batch_sizes) or c.data.source not in ("", "faces"),
    f"data.num_train={c.data.num_train} must be >= the largest batch size",
  )
  procs = c.data.get("render_processes", 0)
  need(
    stream_lib.is_process_count(procs), f"data.render_processes={procs!r} must be an integer >= 0"
  )
  for key in _LOOP_KEYS:
    need(isinstance(c[key], int) and c[key] >= 0, f"{key}={c[key]!r} must be an integer >= 0")
  need(
    isinstance(c.num_samples, int) and c.num_samples >= 1,
    f"num_samples={c.num_samples!r} must be an integer >= 1 (the sample grid's images)",
  )
  need(c.eval.num_samples >= 2, "eval.num_samples must be >= 2")
  need(
    isinstance(c.eval.get("num_real", NUM_REAL), int) and c.eval.get("num_real", NUM_REAL) >= 1,
    "eval.num_real must be an integer >= 1",
  )
  need(c.eval.fd in ("auto", "train", "off"), f"eval.fd={c.eval.fd!r}, expected auto|train|off")


def shape_sections(c) -> dict:
  """The parts of the config that fix the state's shapes, JSON-friendly."""
  d = c.to_dict() if hasattr(c, "to_dict") else dict(c)
  return json.loads(json.dumps({k: d[k] for k in _SHAPE_SECTIONS}))


#: How a resume may differ from the run (see :mod:`zoo.training.workdir`): the networks
#: and the stage layout are fixed; the final stage's length, evaluation, sample grids and the
#: loop's cadence are free; the data and the optimisation need ``--allow_config_change``.
RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=("model",) + progressive.SCHEDULE_SHAPE_KEYS,
  free=workdir_lib.LOOP_FREE
  + progressive.SCHEDULE_FREE_KEYS
  + ("eval", "num_samples", "data.data_dir", "data.render_processes"),
)


# ---------------------------------------------------------------------------
# The task.
# ---------------------------------------------------------------------------


def _optimizer(c, reg_interval: int) -> optax.GradientTransformation:
  return progressive.optimizer(c.optim, reg_interval)


class ProGANTask(progressive.StagedGANTask):
  """See the module docstring and :class:`zoo.training.loop.Task` (a staged task)."""

  name = "progan"
  export_call = "module.apply(variables, z [B, latent_dim], alpha)"
  family_loss_keys: tuple[str, ...] = ()  # the family's own ``loss`` keys (see validate_config)

  @staticmethod
  def validate_config(config) -> None:
    validate_config(config)

  def __init__(self, config, mesh, *, log=print):
    self.validate_config(config)
    self.config = c = config
    self.mesh = mesh
    self.log = log
    self.schedule = make_schedule(c)
    for b in self.schedule.batch_sizes:
      mesh_lib.check_batch_size(b, mesh, "schedule.batch_sizes entry")
    self.losses = objectives.LossConfig.from_config(c.loss, family_keys=self.family_loss_keys)
    self.tx_d = _optimizer(c, self.losses.reg_interval)
    self.tx_g = _optimizer(c, 1)
    self.final = self.schedule.resolution(self.schedule.num_stages - 1)
    self.source = image_data.open_images(
      c.data.source,
      "train",
      self.final,
      num_examples=c.data.num_train,
      seed=c.data.seed,
      data_dir=c.data.data_dir,
      processes=c.data.get("render_processes", 0),
    )
    if len(self.source) < max(self.schedule.batch_sizes):
      raise ConfigError(
        f"data has {len(self.source)} images, fewer than the batch size "
        f"{max(self.schedule.batch_sizes)}"
      )
    self.latents = self.generator_inputs(jax.random.key(c.seed + 1), c.num_samples)
    self._fd = None  # (classifier, real statistics) once loaded
    self._jit_cache: dict[Any, Any] = {}

  # ---- stages ---------------------------------------------------------------
  def networks(self, stage: int):
    return models.make_progan(self.config.model, stage)

  init_variables = staticmethod(models.init_variables)

  def objective(self, stage: int, alpha):
    g, d = self.networks(stage)
    return objectives.LatentObjective(
      g_apply=lambda v, z, step: g.apply(v, z, alpha),
      d_apply=lambda v, x, step: d.apply(v, x, alpha),
      latent_dim=self.config.model.latent_dim,
      losses=self.losses,
    )

  def stream(self, stage: int) -> stream_lib.ShardedStream:
    factor = self.final[0] // self.schedule.resolution(stage)[0]

    def collate(items, indices):
      x = image_data.to_float(np.stack(items))
      return {"image": image_data.downsample(x, factor), **self.batch_extras(indices)}

    return stream_lib.ShardedStream(
      self.source,
      batch_size=self.schedule.batch_sizes[stage],
      collate=collate,
      seed=self.config.seed,
      stream_id=(7, stage),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )

  def batch_extras(self, indices) -> dict:
    """More training-batch entries for the examples ``indices`` (labels); none here."""
    return self.example_extras(indices, "train")

  def example_extras(self, indices, split: str) -> dict:
    """D's inputs besides the image for examples ``indices`` of ``split`` (labels); none."""
    del indices, split
    return {}

  def train_batches(self, start_step: int) -> Iterator[dict]:
    return progressive.staged_batches(self.schedule, self.stream, start_step)

  # ---- looking at G ---------------------------------------------------------
  def _state_stage(self, step: int) -> int:
    return self.stage_at(max(step - 1, 0))  # the loop evaluates after the step

  def export_program(self, directory: str, g, g_vars, alpha: float) -> None:
    """Extra export files of a family (StyleGAN: a ``jax.export`` program); none here."""

  def generator_inputs(self, key, n: int) -> np.ndarray:
    """The ``[n, ...]`` inputs G's samples are drawn from (``z``; a conditional family
    appends labels), a pure function of ``key``."""
    return np.asarray(jax.random.normal(key, (n, self.config.model.latent_dim)))

  def apply_generator(self, g, g_vars, z, alpha):
    """G's images for latents ``z`` (traced); a family with more inputs overrides it."""
    return g.apply(g_vars, z, alpha)

  def generator_fn(self, stage: int):
    """Jitted ``(g_vars, z, alpha) -> images`` at the final resolution (pixel-repeated)."""
    key = ("gen", stage)
    if key not in self._jit_cache:
      g, _ = self.networks(stage)
      factor = self.final[0] // self.schedule.resolution(stage)[0]
      self._jit_cache[key] = jax.jit(
        lambda v, z, a: jnp.clip(upsample_nearest(self.apply_generator(g, v, z, a), factor), -1, 1)
      )
    return self._jit_cache[key]

  def apply_discriminator(self, d, d_vars, x, alpha, extras: dict):
    """D's scores ``[B]`` of images ``x`` at the stage's resolution (traced)."""
    del extras
    return d.apply(d_vars, x, alpha).reshape(-1)

  def score_fn(self, stage: int, blend: bool = True):
    """Jitted ``(d_vars, x, alpha, extras) -> D's scores [B]`` for images at the final
    resolution, box-filtered to the stage's and, with ``blend`` (reals), blended as
    training blends the reals; G's samples are already blended by its own fade."""
    key = ("score", stage, blend)
    if key not in self._jit_cache:
      _, d = self.networks(stage)
      factor = self.final[0] // self.schedule.resolution(stage)[0]

      def score(v, x, a, extras):
        x = image_data.downsample(x, factor)
        if blend:
          x = progressive.lod_blend(x, a, stage)
        return self.apply_discriminator(d, v, x, a, extras)

      self._jit_cache[key] = jax.jit(score)
    return self._jit_cache[key]

  def d_scores(self, state, images, step: int, extras: dict, *, real: bool = True) -> np.ndarray:
    """D's scores of ``images`` (final resolution): reals, or (``real=False``) G's samples."""
    stage = self._state_stage(step)
    alpha = self.schedule.alpha(step - 1, stage)
    d_vars = core.net_variables(state["d"])
    out = []
    for i in range(0, len(images), 64):
      part = {k: jnp.asarray(v[i : i + 64]) for k, v in extras.items()}
      out.append(
        np.asarray(self.score_fn(stage, real)(d_vars, jnp.asarray(images[i : i + 64]), alpha, part))
      )
    return np.concatenate(out)

  def d_overfitting(self, state, step: int, fake, real) -> float:
    """``eval/D_overfitting`` (StyleGAN2-ADA's ``r_v``) from ``len(fake)`` training
    reals spread over the set, the held-out ``real`` faces and the ``fake`` samples
    (drawn for the labels of the held-out faces, see :meth:`generator_inputs`)."""
    from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

    n = len(fake)
    idx = np.linspace(0, len(self.source) - 1, n).astype(int)
    train = image_data.to_float(np.stack([self.source[int(i)] for i in idx]))
    held = self.example_extras(range(n), "valid")
    return em.discriminator_overfitting(
      self.d_scores(state, train, step, self.example_extras(idx, "train")),
      self.d_scores(state, real[:n], step, held),
      self.d_scores(state, fake, step, held, real=False),
    )

  def generate(self, state, z, step: int) -> np.ndarray:
    stage = self._state_stage(step)
    alpha = self.schedule.alpha(step - 1, stage)
    g_vars = core.generator_variables(state)
    out = []
    for i in range(0, len(z), 64):
      out.append(np.asarray(self.generator_fn(stage)(g_vars, jnp.asarray(z[i : i + 64]), alpha)))
    return np.concatenate(out)

  def _fd_judge(self):
    if self._fd is None:
      c = self.config
      if c.eval.fd == "off" or c.data.source not in ("", "faces"):
        self._fd = False
        return None
      from zoo.eval import face_classifier as fc  # pylint: disable=g-import-not-at-top
      from zoo.tasks import face_classifier as fc_task  # pylint: disable=g-import-not-at-top

      try:
        if c.eval.fd == "train":
          clf = fc_task.get_or_train_classifier()
        else:
          clf = fc.load_classifier(fc.default_classifier_workdir())
      except ZooError as e:
        self.log(
          f"[{self.name}] no classifier FD ({e}); train one with python -m launch.face_classifier"
        )
        self._fd = False
        return None
      # FD compares equal numbers of images; the real attribute distribution for TV is
      # estimated from more (eval.num_real), as a 1k-image estimate alone inflates TV.
      n = c.eval.num_samples
      num_real = max(n, c.eval.get("num_real", NUM_REAL))
      real = image_data.validation_faces(self.final, num_real, seed=c.data.seed)
      feats = clf.features(real[:n])
      pred = clf.predict(real)
      self._fd = (clf, feats, pred, real[:n])
    return self._fd or None

  def evaluate(self, state, step):
    judge = self._fd_judge()
    if judge is None:
      return {}
    from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

    clf, real_feats, real_pred, real = judge
    n = self.config.eval.num_samples
    z = self.generator_inputs(jax.random.key(self.config.seed + 2), n)
    fake = self.generate(state, z, step)
    out = {"eval/FD": float(em.frechet_distance(clf.features(fake), real_feats))}
    out["eval/D_overfitting"] = self.d_overfitting(state, step, fake, real)
    fake_pred = clf.predict(fake)
    tv = em.attribute_tv_distance(fake_pred, real_pred)
    out.update({f"eval/TV_{k}": v for k, v in tv.items()})
    out.update(self.label_metrics(fake_pred, n))
    out["eval/stage"] = float(self._state_stage(step))
    return out

  def label_metrics(self, fake_pred, n: int) -> dict:
    """Extra evaluation of the ``n`` samples' predicted attributes (conditional tasks
    score them against the labels they were drawn for); none here."""
    del fake_pred, n
    return {}

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    imgs = self.generate(state, self.latents, step)
    if jax.process_index() != 0:
      return
    stage = self._state_stage(step)
    h, w = self.schedule.resolution(stage)
    grid = sample_grid(imgs)
    outdir = os.path.join(workdir, "samples")
    os.makedirs(os.path.join(outdir, "frames"), exist_ok=True)
    Image.fromarray(grid).save(os.path.join(outdir, f"stage{stage}_{h}x{w}_{step:08d}.png"))
    Image.fromarray(grid).save(os.path.join(outdir, "latest.png"))
    frame = grid
    Image.fromarray(frame).save(os.path.join(outdir, "frames", f"{step:08d}.png"))
    write_timelapse(os.path.join(outdir, "frames"), os.path.join(outdir, "timelapse.gif"))
    writer.image(step, "samples/fixed_latents", grid)
    writer.flush()


# ---------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------


def loop_config(c) -> loop.LoopConfig:
  sched = make_schedule(c)
  return loop.LoopConfig(
    num_steps=sched.total, **{k: c[k] for k in _LOOP_KEYS}, async_checkpoints=c.async_checkpoints
  )


def train_and_evaluate(
  config,
  workdir: str,
  *,
  mesh=None,
  log=print,
  allow_config_change: bool = False,
  task_cls=None,
) -> loop.TrainResult:
  """Trains (or resumes) ProGAN (or another ``task_cls`` built like it, e.g. StyleGAN) in
  ``workdir`` through the shared staged loop, which checks a resume against the run's
  ``config.json`` (``RESUME_KEYS``) before writing anything."""
  task_cls = task_cls or ProGANTask
  task_cls.validate_config(config)
  cfg = loop_config(config)
  workdir_lib.check_usable(workdir)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  task = task_cls(config, mesh, log=log)
  sched = task.schedule
  if log and jax.process_index() == 0:
    stages = ", ".join(
      f"{'x'.join(map(str, sched.resolution(s)))}@{sched.batch_sizes[s]}"
      for s in range(sched.num_stages)
    )
    log(f"[{task.name}] {sched.num_stages} stages ({stages}), {sched.total} steps")
  return loop.train(
    task,
    cfg,
    workdir,
    mesh=mesh,
    run_config=workdir_lib.jsonable(config),
    resume_keys=RESUME_KEYS,
    allow_config_change=allow_config_change,
  )


def config_from_workdir(workdir: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(restore_lib.read_config(workdir))


def restore_state(workdir: str, *, step: int | None = None, fd: str = "off", task_cls=None):
  """``(task, state, step)`` of a trained run through the one restore."""
  c = config_from_workdir(workdir)
  c.eval.fd = fd
  task = (task_cls or ProGANTask)(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)

  def abstract(config, meta):
    stage = int(meta.get("stage", 0))
    return jax.eval_shape(functools.partial(task.init_state, stage=stage), jax.random.key(0))

  r = restore_lib.restore(workdir, abstract, step=step)
  return task, r.state, r.step


def evaluate(workdir: str, *, step: int | None = None, log=print, task_cls=None) -> dict:
  """Classifier FD and per-attribute TV distances of ``eval.num_samples`` EMA samples.

  Needs a trained face classifier (trains it first when missing) and the embedded faces;
  writes ``eval_<step>.json`` in the workdir.
  """
  task, state, step = restore_state(workdir, step=step, fd="train", task_cls=task_cls)
  results = task.evaluate(state, step)
  if not results:
    raise ConfigError("evaluation needs the embedded faces (data.source='') and a classifier")
  results = {"step": step, **results}
  if jax.process_index() == 0:
    workdir_lib.write_json(os.path.join(workdir, f"eval_{step:08d}.json"), results)
  if log:
    log(f"[{task.name}] step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
  return results


def sample(
  workdir: str, *, num: int = 64, seed: int = 0, output: str = "", log=print, task_cls=None
) -> str:
  """A PNG grid of ``num`` samples of the EMA generator at the latest checkpoint."""
  if num < 1:
    raise ConfigError(f"num={num} must be >= 1")
  task, state, step = restore_state(workdir, task_cls=task_cls)
  z = task.generator_inputs(jax.random.key(seed), num)
  imgs = task.generate(state, z, step)
  path = output or os.path.join(workdir, f"samples_{step:08d}_seed{seed}.png")
  Image.fromarray(sample_grid(imgs)).save(path)
  if log:
    log(f"[{task.name}] wrote {num} samples of step {step} to {path}")
  return path


def export(workdir: str, *, output: str = "", log=print, task_cls=None) -> str:
  """Exports the (EMA) generator at its trained stage with alpha 1 (zoo generator format)."""
  task, state, step = restore_state(workdir, task_cls=task_cls)
  stage = task._state_stage(step)  # pylint: disable=protected-access
  g, _ = task.networks(stage)
  out = output or os.path.join(workdir, "export")
  g_vars = jax.device_get(core.generator_variables(state))
  alpha = float(task.schedule.alpha(step - 1, stage))
  export_lib.save(
    out,
    g,
    g_vars,
    info={
      "family": task.name,
      "step": step,
      "stage": stage,
      "resolution": list(task.schedule.resolution(stage)),
      "alpha": alpha,
      "latent_dim": int(task.config.model.latent_dim),
      "value_range": [-1.0, 1.0],
      "call": task.export_call,
    },
  )
  task.export_program(out, g, g_vars, alpha)
  if log:
    log(f"[{task.name}] exported the step-{step} generator (stage {stage}) to {out}")
  return out
