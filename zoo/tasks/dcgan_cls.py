"""Text-conditional DCGAN (Reed et al. 2016) on the adversarial core.

``train_and_evaluate(config, workdir)`` is what ``python -m launch.dcgan_cls`` runs
(config: ``launch/configs/dcgan_cls.py``). Pieces:

* networks: :mod:`zoo.models.dcgan_cls` (G: projected text ++ z -> deconvolutions;
  D: convolutions, the projected text replicated at 4x4, 1x1 conv, 4x4 conv);
* objective: :class:`zoo.gan.objectives.TextConditionalObjective` (GAN / GAN-CLS /
  GAN-INT / GAN-INT-CLS, optional feature matching), Adam 2e-4, β1 0.5;
* text: the char-CNN-RNN of :mod:`zoo.tasks.text_encoder`, frozen; the embeddings of all
  training captions are computed once (the reference's pre-computed embeddings). It must
  have been trained on the same ``data.source``: a folder source gets its own encoder
  (:func:`zoo.tasks.text_encoder.encoder_workdir_for`), and an encoder trained on other
  data is refused (one line);
* data (:func:`zoo.data.caption_pairs.open_pair_source`, ``data.source``): the embedded
  captioned faces, or every (image, caption) pair of a caption dataset folder (Reed's
  CUB / flowers format or Face2Text's), through the shared stream.

Judged by the captions (:meth:`DCGANCLSTask.evaluate`, every ``eval_every`` steps and at
the end): ``eval.num_samples`` samples for held-out captions of test faces (strings no
training pair uses); the face classifier's accuracy on each attribute a caption mentions
(``eval/acc/<attribute>``, ``eval/acc_mentioned`` over all mentioned attributes), classifier
Fréchet distance against the test faces (``eval/FD``), and D's mismatch rejection:
the fraction of real test faces D scores higher with their own caption than with another
test face's caption that does not describe them (``eval/mismatch_rejection``), and
whether D overfits its training pairs (``eval/D_overfitting``, StyleGAN2-ADA's ``r_v``:
0 when D scores held-out pairs like training pairs, 1 when like fakes). A caption
dataset folder has no attributes: FD and mismatch rejection only (the other caption is
another test image's, of another class when there are classes), on held-out captions of
its ``'test'`` split; a folder without one is refused while ``eval.num_samples`` > 0, and
with evaluation off the sample grids show training captions.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from zoo.data import caption_pairs, faces
from zoo.data.stream import ShardedStream, is_process_count
from zoo.errors import ConfigError
from zoo.eval import captions as caption_eval
from zoo.eval import metrics as em
from zoo.gan import core, objectives
from zoo.models import dcgan_cls as models
from zoo.models import export as export_lib
from zoo.tasks import text_encoder as text_task
from zoo.training import loop, mesh as mesh_lib
from zoo.training import restore as restore_lib
from zoo.training import workdir as workdir_lib
from zoo.training.metrics import MetricWriter
from zoo.training.pictures import (
  sample_grid,
  text_interpolations,
  write_caption_grid,
  write_caption_interpolations,
  write_caption_samples,
)

RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=("model", "text", "ema"),  # the EMA of G is part of the state's structure
  free=workdir_lib.LOOP_FREE + ("eval", "num_captions", "num_latents", "data.render_processes"),
)
_LOOP_KEYS = ("num_steps", "log_every", "save_every", "eval_every", "sample_every", "max_to_keep")


def validate_config(c) -> None:
  def need(ok, msg):
    if not ok:
      raise ConfigError(f"bad dcgan_cls config: {msg}")

  for key in ("batch_size", "num_steps", "num_captions", "num_latents"):
    need(isinstance(c[key], int) and c[key] > 0, f"{key}={c[key]!r} must be a positive integer")
  need(c.model.resolution in (32, 64, 128), f"model.resolution={c.model.resolution!r}")
  need(0 <= c.objective.int_beta <= 1, f"objective.int_beta={c.objective.int_beta!r}")
  need(c.objective.feature_matching >= 0, "objective.feature_matching must be >= 0")
  wrong = wrong_caption(c)
  need(wrong in WRONG_CAPTIONS, f"objective.wrong_caption={wrong!r}: one of {WRONG_CAPTIONS}")
  need(
    wrong == "random" or not caption_pairs.is_folder(c.data),
    "objective.wrong_caption='contradicting' needs captions that name attributes (the "
    "embedded faces); a caption dataset's captions name none",
  )
  need(c.optim.lr > 0, f"optim.lr={c.optim.lr!r} must be > 0")
  need(
    isinstance(c.data.get("source", ""), str),
    "data.source must be a caption dataset folder or '' (the embedded faces)",
  )
  if not caption_pairs.is_folder(c.data):  # a folder's pairs are counted when it is opened
    need(c.data.num_faces * c.data.captions_per_face >= c.batch_size, "fewer pairs than a batch")
  procs = c.data.get("render_processes", 0)
  need(is_process_count(procs), f"data.render_processes={procs!r} must be an integer >= 0")
  need(c.eval.num_samples >= 0, "eval.num_samples must be >= 0")
  hl = ema_half_life(c)
  need(
    isinstance(hl, (int, float)) and not isinstance(hl, bool) and hl >= 0,
    f"ema.half_life_images={hl!r} must be a number >= 0",
  )
  objectives.LossConfig.from_config(c.loss)


#: How GAN-CLS picks a real image's wrong caption: another example's (the paper), or one
#: that contradicts it in the fewest named attributes (``caption_pairs.contradicting_captions``).
WRONG_CAPTIONS = ("random", "contradicting")


def wrong_caption(c) -> str:
  """``objective.wrong_caption`` (``'random'`` for runs written before the key existed)."""
  return c.objective.get("wrong_caption", "random")


def ema_half_life(c) -> float:
  """``ema.half_life_images`` (0 when off, and for runs written before the key existed)."""
  return c.get("ema", {}).get("half_life_images", 0)


class DCGANCLSTask:
  """See the module docstring and :class:`zoo.training.loop.Task`."""

  name = "dcgan_cls"

  def __init__(self, config, mesh, *, encoder, classifier=None, log=print, source=None):
    validate_config(config)
    self.config = c = config
    self.mesh, self.log = mesh, log
    mesh_lib.check_batch_size(c.batch_size, mesh)
    self.encoder, self.classifier = encoder, classifier
    self.g, self.d = models.make_dcgan_cls(c.model)
    self.res = (c.model.resolution, c.model.resolution)
    self.losses = objectives.LossConfig.from_config(c.loss)
    self.tx_g = optax.adam(c.optim.lr, b1=c.optim.b1, b2=c.optim.b2)
    self.tx_d = optax.adam(c.optim.lr, b1=c.optim.b1, b2=c.optim.b2)
    self.objective = objectives.TextConditionalObjective(
      g_apply=self._g_train,
      d_apply=self._d_train,
      latent_dim=c.model.latent_dim,
      losses=self.losses,
      cls=bool(c.objective.cls),
      int_beta=float(c.objective.int_beta) or None,
      feature_matching=float(c.objective.feature_matching),
    )
    self._source = source  # None: opened on first use (modes that only draw never do)
    self._caption_rows: list[tuple] | None = None  # source.caption(i) of every pair
    self.table = None  # embeddings of every training caption, computed once for training
    self._contradict = None  # (attributes [N, A], mentions [N, A]) of every training caption
    self._held = None
    self._jit: dict[str, Callable] = {}
    self.last_eval: dict[str, float] = {}

  # ---- networks -------------------------------------------------------------
  def _g_train(self, g_vars, z, emb, step):
    return self.g.apply(g_vars, z, emb, train=True, mutable=["batch_stats"])

  def _d_train(self, d_vars, x, emb, step):
    return self.d.apply(d_vars, x, emb, train=True, features=True, mutable=["batch_stats"])

  def init_state(self, rng):
    g_vars, d_vars = models.init_variables(self.g, self.d, rng, text_dim=self.encoder.embed_dim)
    ema = ema_half_life(self.config) > 0
    # The EMA G keeps batch statistics of its own (see zoo.gan.core).
    return core.init_state(
      g_vars, d_vars, tx_g=self.tx_g, tx_d=self.tx_d, ema=ema, ema_collections=ema
    )

  def train_step(self, state, batch, rng, step):
    return core.train_step(
      state,
      batch,
      rng,
      step,
      objective=self.objective,
      tx_g=self.tx_g,
      tx_d=self.tx_d,
      config=self.losses.step_config(
        ema_beta=core.ema_beta(
          batch_size=self.config.batch_size, half_life_images=ema_half_life(self.config)
        )
      ),
    )

  # ---- data -----------------------------------------------------------------
  @property
  def source(self):
    if self._source is None:
      self._source = caption_pairs.open_pair_source(self.config.data, "train", self.res)
    return self._source

  @property
  def train_captions(self) -> list[str]:
    return [row[0] for row in self._rows()]

  def _rows(self) -> list[tuple]:
    """``(text, mentions, attributes)`` of every training pair, read once."""
    if self._caption_rows is None:
      self._caption_rows = [self.source.caption(i) for i in range(len(self.source))]
    return self._caption_rows

  def collate(self, items, indices):
    indices = np.asarray(indices)
    x = np.stack([it["image"] for it in items]).astype(np.float32) * (2 / 255) - 1
    batch = {"image": x, "emb": self.table[indices]}
    if self._contradict is not None:
      # Drawn from the batch's own indices, so a resumed stream draws the same.
      rng = np.random.default_rng([self.config.seed, 0xC1A5, *indices.tolist()])
      attrs = np.stack([it["attributes"] for it in items])
      chosen = caption_pairs.contradicting_captions(attrs, *self._contradict, rng)
      rolled = np.roll(indices, 1)
      batch["wrong_emb"] = self.table[np.where(chosen >= 0, chosen, rolled)]
    return batch

  def train_batches(self, start_step: int) -> Iterator[dict]:
    if self.table is None:
      self.table = self.encoder.embed(self.train_captions)
    if wrong_caption(self.config) == "contradicting" and self._contradict is None:
      rows = self._rows()
      self._contradict = (
        np.stack([[r[2][n] for n in faces.ATTRIBUTE_NAMES] for r in rows]),
        np.stack([r[1] for r in rows]),
      )
    stream = ShardedStream(
      self.source,
      batch_size=self.config.batch_size,
      collate=self.collate,
      seed=self.config.seed,
      stream_id=(13,),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    return stream.iterate(start_step)

  # ---- generating -----------------------------------------------------------
  def _fn(self, name):
    if name not in self._jit:
      if name == "generate":
        fn = lambda v, z, e: self.g.apply(v, z, e, train=False)  # noqa: E731
      else:
        fn = lambda v, x, e: self.d.apply(v, x, e, train=False)  # noqa: E731
      self._jit[name] = jax.jit(fn)
    return self._jit[name]

  def generate(self, state, z, emb) -> np.ndarray:
    """float images in [-1, 1] for latents ``z`` [n, latent] and embeddings ``emb`` [n, E]."""
    g_vars = core.generator_variables(state)
    out = [
      np.asarray(
        self._fn("generate")(g_vars, jnp.asarray(z[i : i + 250]), jnp.asarray(emb[i : i + 250]))
      )
      for i in range(0, len(z), 250)
    ]
    return np.concatenate(out)

  def latents(self, n: int, seed: int) -> np.ndarray:
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, self.config.model.latent_dim)))

  # ---- judging --------------------------------------------------------------
  def heldout(self) -> dict:
    if self._held is None:
      c = self.config
      n = max(int(c.eval.num_samples), int(c.num_captions))
      # A real test caption may have no character the encoder knows: skip it.
      accept = (
        caption_pairs.encodable(self.encoder.encode) if caption_pairs.is_folder(c.data) else None
      )
      self._held = caption_pairs.heldout(
        c.data, n, exclude=set(self.train_captions), size=self.res, accept=accept
      )
      caps = self._held["caption"]
      self._held["emb"] = (
        self.encoder.embed(caps) if caps else np.zeros((0, self.encoder.embed_dim), np.float32)
      )
    return self._held

  def evaluate(self, state, step):
    if self.classifier is None or not self.config.eval.num_samples:
      return {}
    self.last_eval = judge(self, state)
    return self.last_eval

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    held = self.heldout()
    nc, nl = self.config.num_captions, self.config.num_latents
    if held["caption"]:
      captions, emb = held["caption"][:nc], held["emb"][:nc]
    else:  # a folder without held-out captions, evaluation off: training captions
      captions = self.source.first_captions(nc)
      emb = self.encoder.embed(captions)
    emb = np.repeat(emb, nl, axis=0)
    z = np.tile(self.latents(nl, self.config.seed + 1), (len(captions), 1))
    grid = sample_grid(self.generate(state, z, emb), cols=nl)
    if jax.process_index() != 0:
      return
    write_caption_samples(os.path.join(workdir, "samples"), f"{step:08d}", grid, captions, step)
    writer.image(step, "samples/fixed_captions", grid)
    writer.flush()


def judge(task: DCGANCLSTask, state) -> dict[str, float]:
  """Caption accuracy, classifier FD and mismatch rejection (see the module docstring)."""
  held = task.heldout()
  n = min(int(task.config.eval.num_samples), len(held["caption"]))
  if not n:
    raise ConfigError(f"nothing to evaluate: {held.get('reason') or 'eval.num_samples is 0'}")
  emb = held["emb"][:n]
  attrs, mentions = held.get("attributes"), held.get("mentions")
  attrs = None if attrs is None else attrs[:n]
  mentions = None if mentions is None else mentions[:n]
  # D's wrong caption: the previous example's (another class's, when the data has classes).
  others = caption_eval.other_captions(n, held["label"][:n] if "label" in held else None)
  fake = task.generate(state, task.latents(n, task.config.seed + 2), emb)
  real = held["image"][:n].astype(np.float32) * (2 / 255) - 1
  scores = _d_scores(task, state, real, emb, others)
  out = caption_eval.judge(
    task.classifier,
    fake,
    real,
    attrs,
    mentions,
    fd=bool(task.config.eval.fd),
    scores=scores,
    others=others,
  )
  if attrs is not None:  # which attributes D checks: one-attribute twins of the captions
    out.update(
      caption_eval.attribute_rejection(
        lambda x, caps: _score(task, state, x, task.encoder.embed(caps)), real, attrs
      )
    )
    seed = task.config.seed + 3
    out.update(
      caption_eval.sample_diversity(
        task.classifier,
        lambda rows: task.generate(state, task.latents(len(rows), seed), emb[rows]),
        real,
        mentions,
      )
    )
  # D's overfitting to the training pairs: n of them, spread over the set, own captions.
  train, train_caps = caption_pairs.spread_pairs(task.source, n)
  train = train.astype(np.float32) * (2 / 255) - 1
  out["eval/D_overfitting"] = em.discriminator_overfitting(
    _score(task, state, train, task.encoder.embed(train_caps)),
    scores[0],
    _score(task, state, fake, emb),
  )
  return out


def _score(task, state, x, emb) -> np.ndarray:
  """D's scores of images ``x`` with embeddings ``emb``."""
  d_vars = core.net_variables(state["d"])
  f = task._fn("score")  # pylint: disable=protected-access
  return np.concatenate(
    [
      np.asarray(f(d_vars, jnp.asarray(x[i : i + 250]), jnp.asarray(emb[i : i + 250])))
      for i in range(0, len(x), 250)
    ]
  )


def _d_scores(task, state, real, emb, others=None) -> tuple[np.ndarray, np.ndarray]:
  """D's scores of ``real`` with their own embeddings and with example ``others[i]``'s
  (default: the previous example's)."""
  wrong = np.roll(emb, 1, axis=0) if others is None else emb[others]
  return _score(task, state, real, emb), _score(task, state, real, wrong)


def mismatch_rejection(task, state, real, emb, attrs=None, mentions=None, others=None) -> float:
  """Fraction of (image, own caption, other caption) triples with D(own) > D(other),
  over other captions (the previous example's, or ``others``) that do not describe the
  image (see :func:`zoo.eval.captions.mismatch_rejection`)."""
  right_s, wrong_s = _d_scores(task, state, real, emb, others)
  return caption_eval.mismatch_rejection(right_s, wrong_s, attrs, mentions, others=others)


# ---------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------


def _encoder(c, log):
  """The run's caption encoder: ``text.encoder_workdir`` ('' = the default for
  ``data.source``), trained first on that data when missing; refused (one line) when it
  was trained on other data."""
  return text_task.get_or_train_text_encoder(
    c.text.encoder_workdir or None, log_fn=log, data=c.data
  )


def _classifier(log):
  from zoo.tasks import face_classifier as fc_task  # pylint: disable=g-import-not-at-top

  return fc_task.get_or_train_classifier(log_fn=log)


def loop_config(c) -> loop.LoopConfig:
  return loop.LoopConfig(**{k: c[k] for k in _LOOP_KEYS})


def train_and_evaluate(
  config, workdir: str, *, mesh=None, log=print, allow_config_change: bool = False
) -> loop.TrainResult:
  """Trains (or resumes) in ``workdir``; the encoder and classifier are trained first
  when missing. Writes ``eval.json`` with the final caption accuracy. A bad ``data.source``
  or an encoder trained on other data stops it (one line) before anything is written to
  the workdir."""
  validate_config(config)
  cfg = loop_config(config)
  workdir_lib.check_usable(workdir)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  say = log or (lambda m: None)
  res = (config.model.resolution, config.model.resolution)
  source = caption_pairs.open_pair_source(config.data, "train", res)
  caption_pairs.check_pairs(
    config.data,
    source,
    batch_size=config.batch_size,
    evaluate=bool(config.eval.num_samples),
    size=res,
    what="dcgan_cls",
  )
  encoder = _encoder(config, say)  # refuses an encoder of other data before training any
  # Its vocabulary judges the training captions (the encoder trainer checks them too).
  caption_pairs.check_captions(
    config.data, source, caption_pairs.encodable(encoder.encode), what="dcgan_cls"
  )
  clf = _classifier(say) if config.eval.num_samples else None
  task = DCGANCLSTask(config, mesh, encoder=encoder, classifier=clf, log=say, source=source)
  if log and caption_pairs.is_folder(config.data) and jax.process_index() == 0:
    log(f"[dcgan_cls] {caption_pairs.summary(config.data, source, task.heldout())}")
  result = loop.train(
    task,
    cfg,
    workdir,
    mesh=mesh,
    run_config=workdir_lib.jsonable(config),
    resume_keys=RESUME_KEYS,
    allow_config_change=allow_config_change,
  )
  loop.write_final_eval(workdir, result, task.last_eval)
  return result


def restore_task(workdir: str, *, step: int | None = None, classifier: bool = False):
  """``(task, state, step)`` of a trained run through the one restore."""
  c = ml_collections.ConfigDict(restore_lib.read_config(workdir))
  enc = text_task.load_text_encoder(c.text.encoder_workdir or None, data=c.data)
  clf = _classifier(print) if classifier else None
  task = DCGANCLSTask(
    c,
    mesh_lib.make_mesh(jax.devices()[:1]),
    encoder=enc,
    classifier=clf,
    log=None,
  )
  r = restore_lib.restore(
    workdir, lambda config, meta: jax.eval_shape(task.init_state, jax.random.key(0)), step=step
  )
  return task, r.state, r.step


def evaluate(workdir: str, *, step: int | None = None, log=print) -> dict:
  task, state, step = restore_task(workdir, step=step, classifier=True)
  results = {"step": step, **judge(task, state)}
  workdir_lib.write_json(os.path.join(workdir, f"eval_{step:08d}.json"), results)
  if log:
    log(f"[dcgan_cls] step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
  return results


def _check_captions(task, captions):
  for t in captions:
    task.encoder.encode([t])  # CaptionError (one line) for empty / unknown-only captions


def generate(
  workdir: str, caption: str, *, num: int = 16, seed: int = 0, output: str = "", log=print
) -> str:
  """A grid of ``num`` samples for ``caption`` (latest checkpoint)."""
  if num < 1:
    raise ConfigError(f"num={num} must be >= 1")
  task, state, step = restore_task(workdir)
  _check_captions(task, [caption])
  emb = np.repeat(task.encoder.embed([caption]), num, axis=0)
  imgs = task.generate(state, task.latents(num, seed), emb)
  path = write_caption_grid(imgs, workdir, caption, seed=seed, output=output)
  if log:
    log(f"[dcgan_cls] wrote {num} samples of step {step} for {caption!r} to {path}")
  return path


def interpolate(
  workdir: str,
  caption: str,
  caption2: str,
  *,
  steps: int = 8,
  seed: int = 0,
  output: str = "",
  log=print,
) -> list[str]:
  """The paper's interpolations: between the two captions' embeddings with fixed latents
  (rows = latents) and between two latents with ``caption`` fixed; a grid and a GIF each."""
  if steps < 2:
    raise ConfigError(f"steps={steps} must be >= 2")
  task, state, step = restore_task(workdir)
  _check_captions(task, [caption, caption2])
  e1, e2 = task.encoder.embed([caption, caption2])
  sets = text_interpolations(
    lambda e, z: task.generate(state, z, e), e1, e2, task.latents, steps=steps, seed=seed
  )
  paths = write_caption_interpolations(
    sets, workdir, caption, caption2, steps=steps, seed=seed, output=output
  )
  if log:
    log(f"[dcgan_cls] step {step}: wrote " + ", ".join(paths))
  return paths


def export(workdir: str, *, output: str = "", log=print) -> str:
  """G in the zoo's export format, with the text encoder exported beside it (``text/``)."""
  task, state, step = restore_task(workdir)
  out = output or os.path.join(workdir, "export")
  export_lib.save(
    out,
    task.g,
    jax.device_get(core.generator_variables(state)),
    info={
      "family": "dcgan_cls",
      "step": step,
      "resolution": list(task.res),
      "latent_dim": int(task.config.model.latent_dim),
      "text_encoder": "text/",
      "value_range": [-1.0, 1.0],
      "call": "module.apply(variables, z [B, latent_dim], text_embedding [B, E], train=False)",
    },
  )
  task.encoder.save(os.path.join(out, "text"))
  if log:
    log(f"[dcgan_cls] exported the step-{step} generator and its text encoder to {out}")
  return out
