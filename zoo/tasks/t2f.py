"""T2F (akanimax/T2F, "Text to Face") as a zoo task: a caption-conditioned ProGAN.

``python -m launch.t2f`` runs :func:`train_and_evaluate` (``--mode train``), :func:`evaluate`,
:func:`generate`, :func:`interpolate` or :func:`export` (config: ``launch/configs/t2f.py``).

Pieces:

* networks (:mod:`zoo.models.t2f`): a word-level LSTM encoder -> conditioning
  augmentation (``c = mu + exp(logvar / 2) * eps``) -> ``[c, z]`` -> ProGAN's progressive
  generator; ProGAN's discriminator with the text entering its last (4x4) block;
* the text encoder and the CA are part of G's parameters, trained jointly with it by G's
  optimizer (the reference trains them with their own Adam of the same settings, from
  G's loss plus the KL term); D never updates them. Or (``model.text_encoder =
  'pretrained'``, the reference's ``use_pretrained_encoder``) the zoo's frozen caption
  encoder of ``python -m launch.text_encoder`` (``text.encoder_workdir``, '' = the default
  for the data, trained first when missing, as the DCGAN's) embeds every caption once and
  its embeddings take the LSTM's place; the CA is still trained with G;
* objective (:class:`zoo.gan.objectives.LearnedConditionObjective`): WGAN-GP (λ = 10) +
  drift 1e-3, the reference's matching-aware term ``+ mean D(real, wrong caption)`` (or,
  ``loss.mismatch_pairs='near_miss'``, each caption with a real face that contradicts
  exactly one attribute it names: hard negatives from the embedded faces' labels), and
  ``loss.kl_weight`` (1, as the reference) x the CA's KL in G's loss;
* what D is conditioned on (``model.d_condition``): ``'embedding'`` as the reference,
  which shows D the encoder's output; in D's update it is a constant (the reference zeroes
  the encoder's gradients of D's loss before its step), and G's loss reaches the encoder
  through it too (``loss.cond_grad``; the reference does not detach it there);
* schedule, growth, level-of-detail blending of the reals and the Adam resets: ProGAN's
  (:mod:`zoo.tasks.progan`, :mod:`zoo.gan.progressive`), the stages' networks built by
  :func:`zoo.models.t2f.make_t2f`;
* data (:func:`zoo.data.caption_pairs.open_pair_source`, ``data.source``): the embedded
  :class:`zoo.data.faces.captioned.CaptionedFaces`, or every (image, caption) pair of a
  caption dataset folder (Reed's CUB / flowers format or Face2Text's), at the final
  resolution, box-filtered per stage; captions become word ids of a vocabulary built
  from the training captions and saved as ``<workdir>/vocab.json`` when training starts
  (reloaded on resume and by every mode that reads the workdir).

A *latent* here is ``latent_dim + ca_dim`` numbers: the noise ``z`` followed by the CA
noise ``eps``; with the caption it fixes a sample (sample grids, interpolations and the
export all take it so).

Judged by the captions (:mod:`zoo.eval.captions`, every ``eval_every`` steps, at each stage
end and at the end): samples for held-out captions of test faces, the face classifier's
accuracy on the attributes each caption mentions (``eval/acc_mentioned``,
``eval/acc/<attribute>``), classifier FD against the test faces (``eval/FD``), D's
mismatch rejection and D's overfitting to the training pairs (``eval/D_overfitting``, as
the DCGAN's). A caption dataset folder has no attributes: FD (on the classifier's
features) and mismatch rejection only, on held-out captions of its ``'test'`` split; a
folder without one (or whose test captions all occur in training) is refused while
``eval.num_samples`` > 0, and with evaluation off the sample grids show training
captions. Samples: rows of fixed held-out captions (``samples/captions.txt``) x
columns of fixed latents, ``samples/stage<k>_<HxW>_<step>.png`` and
``samples/timelapse.gif`` across the run.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from zoo.data import caption_pairs
from zoo.data.images import unconditional as image_data
from zoo.data.stream import ShardedStream, is_process_count
from zoo.errors import ConfigError
from zoo.eval import captions as caption_eval
from zoo.eval import metrics as em
from zoo.gan import core, objectives, progressive
from zoo.models import export as export_lib
from zoo.models import t2f as models
from zoo.models.text import Vocabulary
from zoo.tasks import text_encoder as text_task
from zoo.training import checkpoint as ckpt_lib
from zoo.training import loop
from zoo.training import mesh as mesh_lib
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

VOCAB_FILE = "vocab.json"
#: The T2F keys of the ``loss`` section; the rest is :class:`objectives.LossConfig`.
_T2F_LOSS_KEYS = (
  "kl_weight",
  "matching_aware",
  "cond_grad",
  "balanced_mismatch",
  "ca_noise",
  "mismatch_pairs",
)
#: ``loss.mismatch_pairs``: the mismatched pairs of D's matching-aware term.
MISMATCH_PAIRS = ("other", "near_miss")
_LOOP_KEYS = ("seed", "log_every", "save_every", "eval_every", "sample_every", "max_to_keep")

#: How a resume may differ from the run (see :mod:`zoo.training.workdir`): the networks
#: and the stage layout are fixed; the final stage's length, evaluation, the sample grids and the loop's cadence are
#: free; the data, text and optimisation settings need ``--allow_config_change`` (the
#: vocabulary is the run's ``vocab.json`` whatever the data says).
RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=("model",) + progressive.SCHEDULE_SHAPE_KEYS,
  free=workdir_lib.LOOP_FREE
  + progressive.SCHEDULE_FREE_KEYS
  + ("eval", "num_captions", "num_latents", "data.render_processes"),
)


# ---------------------------------------------------------------------------
# Config.
# ---------------------------------------------------------------------------


def split_loss_config(section) -> tuple[objectives.LossConfig, dict]:
  """``(LossConfig, {'kl_weight', 'matching_aware', 'cond_grad', 'balanced_mismatch',
  'ca_noise', 'mismatch_pairs'})`` of a ``loss`` section (a run without
  ``balanced_mismatch`` used the reference's sum)."""
  d = dict(section.to_dict() if hasattr(section, "to_dict") else section)
  extra = {
    "kl_weight": 1.0,
    "matching_aware": True,
    "cond_grad": True,
    "balanced_mismatch": False,
    "ca_noise": 1.0,
    "mismatch_pairs": "other",
  }
  extra.update({k: d.pop(k) for k in _T2F_LOSS_KEYS if k in d})
  losses = objectives.LossConfig.from_config(d)
  for key in ("kl_weight", "ca_noise"):
    v = extra[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
      raise ConfigError(f"bad t2f config: loss.{key}={v!r} must be a finite number >= 0")
  for key in ("matching_aware", "cond_grad", "balanced_mismatch"):
    if not isinstance(extra[key], bool):
      raise ConfigError(f"bad t2f config: loss.{key}={extra[key]!r} must be a bool")
  if extra["mismatch_pairs"] not in MISMATCH_PAIRS:
    raise ConfigError(
      f"bad t2f config: loss.mismatch_pairs={extra['mismatch_pairs']!r}, expected one "
      f"of {list(MISMATCH_PAIRS)}"
    )
  objectives.check_mismatch_term(
    losses.d_loss,
    mismatch=extra["matching_aware"],
    balanced=extra["balanced_mismatch"],
    where="bad t2f config: ",
  )
  return losses, extra


def validate_config(c) -> None:
  """One-line ConfigError for a bad value; checks every section."""

  def need(ok, msg):
    if not ok:
      raise ConfigError(f"bad t2f config: {msg}")

  # Unknown model keys, bad sizes or start (a pretrained encoder's size is known later).
  models.make_t2f(c.model, 0, vocab_size=3, text_dim=1)
  sched = progressive.make_schedule(c)
  _, extra = split_loss_config(c.loss)
  need(
    extra["mismatch_pairs"] != "near_miss"
    or (extra["matching_aware"] and not caption_pairs.is_folder(c.data)),
    "loss.mismatch_pairs='near_miss' needs loss.matching_aware and the embedded faces (a "
    "caption folder has no attributes to find near misses by)",
  )
  o = c.optim
  need(o.lr > 0, f"optim.lr={o.lr!r} must be > 0")
  need(0 <= o.b1 < 1 and 0 <= o.b2 < 1, "optim.b1 and optim.b2 must be in [0, 1)")
  need(c.ema.half_life_images >= 0, "ema.half_life_images must be >= 0")
  need(
    isinstance(c.data.get("source", ""), str),
    "data.source must be a caption dataset folder or '' (the embedded faces)",
  )
  if not caption_pairs.is_folder(c.data):  # a folder's pairs are counted when it is opened
    for key in ("num_faces", "captions_per_face"):
      need(isinstance(c.data[key], int) and c.data[key] >= 1, f"data.{key} must be an integer >= 1")
    need(
      c.data.num_faces * c.data.captions_per_face >= max(sched.batch_sizes),
      f"data.num_faces x data.captions_per_face = {c.data.num_faces * c.data.captions_per_face} "
      "pairs is fewer than the largest batch size",
    )
  procs = c.data.get("render_processes", 0)
  need(is_process_count(procs), f"data.render_processes={procs!r} must be an integer >= 0")
  need(isinstance(c.text.max_len, int) and c.text.max_len >= 1, "text.max_len must be >= 1")
  need(isinstance(c.text.min_count, int) and c.text.min_count >= 1, "text.min_count must be >= 1")
  need(
    isinstance(c.text.get("encoder_workdir", ""), str),
    "text.encoder_workdir must be a path or '' (the default for the data)",
  )
  for key in _LOOP_KEYS:
    need(isinstance(c[key], int) and c[key] >= 0, f"{key}={c[key]!r} must be an integer >= 0")
  for key in ("num_captions", "num_latents"):
    need(isinstance(c[key], int) and c[key] >= 1, f"{key}={c[key]!r} must be an integer >= 1")
  need(
    isinstance(c.eval.num_samples, int) and c.eval.num_samples >= 0,
    "eval.num_samples must be an integer >= 0 (0: no evaluation)",
  )


def training_source(c):
  """The training pairs at the schedule's final resolution (``data.source``: the embedded
  faces or a caption dataset folder; CaptionDataError, one line, for a bad folder)."""
  sched = progressive.make_schedule(c)
  return caption_pairs.open_pair_source(c.data, "train", sched.resolution(sched.num_stages - 1))


def build_vocabulary(c, source=None) -> Vocabulary:
  """The word vocabulary of the training captions (``text.min_count``)."""
  src = training_source(c) if source is None else source
  captions = [src.caption(i)[0] for i in range(len(src))]
  return Vocabulary.build(captions, "word", min_count=c.text.min_count)


def workdir_vocabulary(workdir: str, c, source=None) -> tuple[Vocabulary, bool]:
  """``(vocabulary, is_new)``: the run's ``vocab.json`` when the workdir has checkpoints
  (CheckpointError when it is missing), else a new one built from the config."""
  if ckpt_lib.list_steps(ckpt_lib.checkpoint_dir(workdir)):
    return Vocabulary.load(os.path.join(workdir, VOCAB_FILE)), False
  return build_vocabulary(c, source), True


# ---------------------------------------------------------------------------
# The task.
# ---------------------------------------------------------------------------


class T2FTask(progressive.StagedGANTask):
  """See the module docstring and :class:`zoo.training.loop.Task` (a staged task).

  Args:
    config: the run's config.
    mesh: the device mesh.
    vocab: the word :class:`Vocabulary` (its size fixes the encoder's shapes).
    vocab_path: where to write ``vocab`` when training starts (None: it is already there).
    classifier: the face classifier judging the samples (None: no evaluation).
    source: the training pairs when already open (None: :func:`training_source`, opened
      on first use).
    encoder: the pretrained caption encoder (:class:`zoo.tasks.text_encoder.TextEncoder`)
      of a ``model.text_encoder='pretrained'`` run; None for the LSTM.
  """

  name = "t2f"

  def __init__(
    self,
    config,
    mesh,
    *,
    vocab: Vocabulary,
    vocab_path=None,
    classifier=None,
    log=print,
    source=None,
    encoder=None,
  ):
    validate_config(config)
    self.config = c = config
    self.mesh, self.log = mesh, log
    self.schedule = progressive.make_schedule(c)
    for b in self.schedule.batch_sizes:
      mesh_lib.check_batch_size(b, mesh, "schedule.batch_sizes entry")
    if vocab.kind != "word":
      raise ConfigError(f"T2F needs a word vocabulary, got a {vocab.kind!r} one")
    self.vocab, self.vocab_path, self.classifier = vocab, vocab_path, classifier
    self.pretrained = c.model.get("text_encoder", "lstm") == "pretrained"
    if self.pretrained and encoder is None:
      raise ConfigError("model.text_encoder='pretrained' needs the trained caption encoder")
    self.encoder = encoder if self.pretrained else None
    #: The batch keys of the text input (see :func:`zoo.models.t2f.text_embedding`).
    self.text_keys = ("emb",) if self.pretrained else ("tokens", "lengths")
    self.losses, extra = split_loss_config(c.loss)
    self.kl_weight, self.ca_noise = float(extra["kl_weight"]), float(extra["ca_noise"])
    self.matching_aware, self.cond_grad = extra["matching_aware"], extra["cond_grad"]
    self.balanced_mismatch = extra["balanced_mismatch"]
    self.near = extra["mismatch_pairs"] == "near_miss"
    self.tx_d = progressive.optimizer(c.optim, self.losses.reg_interval)
    self.tx_g = progressive.optimizer(c.optim, 1)
    self.final = self.schedule.resolution(self.schedule.num_stages - 1)
    self._source = source
    self.noise_dim = int(c.model.latent_dim) + int(c.model.ca_dim)
    self._train_captions: list[str] | None = None
    self._train_text: tuple[np.ndarray, ...] | None = None
    self._held: dict | None = None
    self._near: np.ndarray | None = None
    self._jit: dict[Any, Callable] = {}
    self.last_eval: dict[str, float] = {}

  # ---- stages ---------------------------------------------------------------
  def networks(self, stage: int):
    text_dim = self.encoder.embed_dim if self.pretrained else None
    return models.make_t2f(self.config.model, stage, len(self.vocab), text_dim=text_dim)

  init_variables = staticmethod(models.init_variables)

  def objective(self, stage: int, alpha) -> objectives.LearnedConditionObjective:
    g, d = self.networks(stage)
    key = models.D_CONDITIONS[self.config.model.d_condition]

    def g_apply(v, batch, z, rng, step):
      text = tuple(batch[k] for k in self.text_keys)
      eps = self.ca_noise * jax.random.normal(rng, (z.shape[0], g.ca_dim), z.dtype)
      images, aux = models.generate_images(g, v, text, z, alpha, eps=eps)
      return {"image": images, "cond": aux[key], "mu": aux["mu"], "logvar": aux["logvar"]}

    return objectives.LearnedConditionObjective(
      g_apply=g_apply,
      d_apply=lambda v, x, cond, step: d.apply(v, x, cond, alpha),
      latent_dim=int(self.config.model.latent_dim),
      losses=self.losses,
      kl_weight=self.kl_weight,
      mismatch=self.matching_aware,
      balanced_mismatch=self.balanced_mismatch,
      cond_grad=self.cond_grad,
    )

  # ---- data -----------------------------------------------------------------
  @property
  def source(self):
    if self._source is None:  # modes that only draw never open the data
      self._source = training_source(self.config)
    return self._source

  @property
  def train_captions(self) -> list[str]:
    if self._train_captions is None:
      self._train_captions = [self.source.caption(i)[0] for i in range(len(self.source))]
    return self._train_captions

  def encode(self, captions) -> tuple[np.ndarray, ...]:
    """The text input of ``captions``: word ids ``[n, text.max_len]`` and lengths ``[n]``
    (the LSTM), or the pretrained encoder's embeddings ``[n, E]``; CaptionError (one
    line) for an empty caption or one the encoder cannot read."""
    if self.pretrained:
      return (np.asarray(self.encoder.embed(list(captions)), np.float32),)
    return self.vocab.encode(list(captions), self.config.text.max_len)

  def near_misses(self) -> np.ndarray:
    """int [pairs, 8]: for each training caption, training pairs whose faces contradict it
    in exactly one attribute it names (:func:`zoo.data.faces.captioned.near_misses`)."""
    if self._near is None:
      self._near = self.source.near_misses(seed=self.config.seed)
    return self._near

  def check_readable(self, captions) -> None:
    """CaptionError (one line) for a caption :meth:`encode` would refuse, found by
    tokenizing alone (a pretrained encoder's forward pass is not needed to know)."""
    if self.pretrained:
      self.encoder.encode(list(captions))
    else:
      self.encode(captions)

  def stream(self, stage: int) -> ShardedStream:
    factor = self.final[0] // self.schedule.resolution(stage)[0]
    if self._train_text is None:  # every training caption encoded (or embedded) once
      self._train_text = self.encode(self.train_captions)
    text = self._train_text
    near = self.near_misses() if self.near else None

    def pixels(items):
      x = image_data.to_float(np.stack([it["image"] for it in items]))
      return image_data.downsample(x, factor)

    def collate(items, indices):
      idx = np.asarray(indices)
      out = {"image": pixels(items)}
      out.update({k: a[idx] for k, a in zip(self.text_keys, text)})
      if near is not None:  # one of each caption's near-miss faces, drawn from the batch
        rng = np.random.default_rng([self.config.seed, *idx.tolist()])
        wrong = near[idx, rng.integers(0, near.shape[1], len(idx))]
        wrong = np.where(wrong < 0, np.roll(idx, 1), wrong)  # none: the previous pair's
        out["wrong_image"] = pixels(self.source.get_many(wrong.tolist()))
      return out

    return ShardedStream(
      self.source,
      batch_size=self.schedule.batch_sizes[stage],
      collate=collate,
      seed=self.config.seed,
      stream_id=(17, stage),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )

  def train_batches(self, start_step: int) -> Iterator[dict]:
    # The loop asks for the batches once the resume checks passed and the workdir holds the
    # run's config.json: the moment to write a new run's vocabulary beside it.
    if self.vocab_path and jax.process_index() == 0:
      self.vocab.save(self.vocab_path)
    self.vocab_path = None
    return progressive.staged_batches(self.schedule, self.stream, start_step)

  # ---- looking at G ---------------------------------------------------------
  def _state_stage(self, step: int) -> int:
    return self.stage_at(max(step - 1, 0))  # the loop evaluates after the step

  def _alpha(self, step: int):
    return self.schedule.alpha(step - 1, self._state_stage(step))

  def latents(self, n: int, seed: int) -> np.ndarray:
    """``[n, latent_dim + ca_dim]``: the noise z then the CA noise eps ~ N(0, I) (scaled
    by ``loss.ca_noise`` when drawn, as in training)."""
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, self.noise_dim)))

  def _fn(self, name: str, stage: int):
    key = (name, stage)
    if key in self._jit:
      return self._jit[key]
    g, d = self.networks(stage)
    zd = int(self.config.model.latent_dim)
    factor = self.final[0] // self.schedule.resolution(stage)[0]

    def draw(images):
      return jnp.clip(progressive.upsample_nearest(images, factor), -1, 1)

    if name == "text":  # (g_vars, text, latents, alpha) -> images at the final size

      def fn(v, text, lat, a):
        eps = self.ca_noise * lat[:, zd:]
        return draw(models.generate_images(g, v, text, lat[:, :zd], a, eps=eps)[0])

    elif name == "embedding":  # (g_vars, emb, latents, alpha) -> images

      def fn(v, emb, lat, a):
        eps = self.ca_noise * lat[:, zd:]
        return draw(g.apply(v, emb, lat[:, :zd], a, eps=eps, method="synthesize")[0])

    elif name == "embed":  # (g_vars, text) -> text embeddings

      def fn(v, text):
        return models.text_embedding(g, v, text)

    elif name == "score":  # (g_vars, d_vars, x, text, alpha) -> D's scores

      def fn(gv, dv, x, text, a):
        cond = models.text_embedding(g, gv, text)
        if self.config.model.d_condition == "ca":
          cond = g.apply(gv, cond, method="condition")[1]  # the CA's mean
        return d.apply(dv, x, cond, a)

    else:
      raise ValueError(name)
    self._jit[key] = jax.jit(fn)
    return self._jit[key]

  def _chunked(self, fn, *arrays, size: int = 64) -> np.ndarray:
    n = len(arrays[0])
    return np.concatenate(
      [np.asarray(fn(*(jnp.asarray(a[i : i + size]) for a in arrays))) for i in range(0, n, size)]
    )

  def generate_text(self, state, text, latents, step: int) -> np.ndarray:
    """Images in [-1, 1] at the final resolution (lower stages pixel-repeated) of the EMA
    generator at ``step`` for encoded captions (:meth:`encode`) and latents, row by row."""
    fn = self._fn("text", self._state_stage(step))
    g_vars, a = core.generator_variables(state), self._alpha(step)
    return self._chunked(lambda z, *t: fn(g_vars, t, z, a), latents, *text)

  def generate_for(self, state, captions, latents, step: int) -> np.ndarray:
    """:meth:`generate_text` for caption strings (CaptionError for a bad one)."""
    return self.generate_text(state, self.encode(captions), latents, step)

  def embed(self, state, captions, step: int) -> np.ndarray:
    """The EMA generator's text embeddings of ``captions``."""
    fn = self._fn("embed", self._state_stage(step))
    g_vars = core.generator_variables(state)
    return self._chunked(lambda *t: fn(g_vars, t), *self.encode(captions))

  def generate_from_embeddings(self, state, emb, latents, step: int) -> np.ndarray:
    fn = self._fn("embedding", self._state_stage(step))
    g_vars, a = core.generator_variables(state), self._alpha(step)
    return self._chunked(lambda e, z: fn(g_vars, e, z, a), emb, latents)

  def d_scores(self, state, images, text, step: int, *, real: bool = True) -> np.ndarray:
    """D's scores of faces (final resolution, [-1, 1]) with encoded captions; the
    condition comes from the trained (not the EMA) encoder, as in training. Reals are
    blended during a fade as training blends them; G's samples (``real=False``) already
    are, by G's own fade."""
    stage = self._state_stage(step)
    factor = self.final[0] // self.schedule.resolution(stage)[0]
    a = self._alpha(step)
    x = image_data.downsample(np.asarray(images, np.float32), factor)
    if real:
      x = np.asarray(progressive.lod_blend(jnp.asarray(x), a, stage))
    fn = self._fn("score", stage)
    gv, dv = core.net_variables(state["g"]), core.net_variables(state["d"])
    return self._chunked(lambda x_, *t: fn(gv, dv, x_, t, a), x, *text)

  # ---- judging --------------------------------------------------------------
  def heldout(self) -> dict:
    """Held-out captions of test images (strings no training pair uses), encoded."""
    if self._held is None:
      c = self.config
      n = max(int(c.eval.num_samples), int(c.num_captions))
      # A real test caption may use no word of the training vocabulary: skip it.
      accept = (
        caption_pairs.encodable(self.check_readable) if caption_pairs.is_folder(c.data) else None
      )
      self._held = caption_pairs.heldout(
        c.data, n, exclude=set(self.train_captions), size=self.final, accept=accept
      )
      self._held["text"] = self.encode(self._held["caption"])
    return self._held

  def judge(self, state, step: int) -> dict[str, float]:
    held = self.heldout()
    n = min(int(self.config.eval.num_samples), len(held["caption"]))
    if not n:
      raise ConfigError(f"nothing to evaluate: {held.get('reason') or 'eval.num_samples is 0'}")
    text = tuple(a[:n] for a in held["text"])
    fake = self.generate_text(state, text, self.latents(n, self.config.seed + 2), step)
    real = image_data.to_float(held["image"][:n])
    # D's wrong caption: the previous example's (another class's, when the data has classes).
    others = caption_eval.other_captions(n, held["label"][:n] if "label" in held else None)
    right = self.d_scores(state, real, text, step)
    wrong = self.d_scores(state, real, tuple(a[others] for a in text), step)
    attrs, mentions = held.get("attributes"), held.get("mentions")
    out = caption_eval.judge(
      self.classifier,
      fake,
      real,
      None if attrs is None else attrs[:n],
      None if mentions is None else mentions[:n],
      fd=bool(self.config.eval.fd),
      scores=(right, wrong),
      others=others,
    )
    if attrs is not None:  # which attributes D checks: one-attribute twins of the captions
      out.update(
        caption_eval.attribute_rejection(
          lambda x, caps: self.d_scores(state, x, self.encode(caps), step), real, attrs[:n]
        )
      )
      seed = self.config.seed + 3
      out.update(
        caption_eval.sample_diversity(
          self.classifier,
          lambda rows: self.generate_text(
            state, tuple(a[rows] for a in text), self.latents(len(rows), seed), step
          ),
          real,
          mentions[:n],
        )
      )
    train, train_caps = caption_pairs.spread_pairs(self.source, n)
    out["eval/D_overfitting"] = em.discriminator_overfitting(
      self.d_scores(state, image_data.to_float(train), self.encode(train_caps), step),
      right,
      self.d_scores(state, fake, text, step, real=False),
    )
    out["eval/stage"] = float(self._state_stage(step))
    return out

  def evaluate(self, state, step):
    if self.classifier is None or not self.config.eval.num_samples:
      return {}
    self.last_eval = self.judge(state, step)
    return self.last_eval

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    held = self.heldout()
    nc, nl = self.config.num_captions, self.config.num_latents
    if held["caption"]:
      captions, text = held["caption"][:nc], tuple(a[:nc] for a in held["text"])
    else:  # a folder without held-out captions, evaluation off: training captions
      captions = self.source.first_captions(nc)
      text = self.encode(captions)
    text = tuple(np.repeat(a, nl, axis=0) for a in text)
    z = np.tile(self.latents(nl, self.config.seed + 1), (len(captions), 1))
    grid = sample_grid(self.generate_text(state, text, z, step), cols=nl)
    if jax.process_index() != 0:
      return
    stage = self._state_stage(step)
    h, w = self.schedule.resolution(stage)
    name = f"stage{stage}_{h}x{w}_{step:08d}"
    write_caption_samples(os.path.join(workdir, "samples"), name, grid, captions, step)
    writer.image(step, "samples/fixed_captions", grid)
    writer.flush()


# ---------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------


def _encoder(c, log, *, train: bool):
  """A ``model.text_encoder='pretrained'`` run's caption encoder (None for the LSTM):
  ``text.encoder_workdir`` ('' = the default for ``data.source``), trained first on that
  data when missing and ``train``; refused (one line) when trained on other data."""
  if c.model.get("text_encoder", "lstm") != "pretrained":
    return None
  where = c.text.get("encoder_workdir", "") or None
  if train:
    return text_task.get_or_train_text_encoder(where, log_fn=log, data=c.data)
  return text_task.load_text_encoder(where, data=c.data)


def _classifier(log):
  from zoo.tasks import face_classifier as fc_task  # pylint: disable=g-import-not-at-top

  return fc_task.get_or_train_classifier(log_fn=log)


def loop_config(c) -> loop.LoopConfig:
  return loop.LoopConfig(
    num_steps=progressive.make_schedule(c).total,
    **{k: c[k] for k in _LOOP_KEYS},
    async_checkpoints=c.async_checkpoints,
  )


def train_and_evaluate(
  config, workdir: str, *, mesh=None, log=print, allow_config_change: bool = False
) -> loop.TrainResult:
  """Trains (or resumes) T2F in ``workdir`` through the shared staged loop (which checks a
  resume against the run's ``config.json`` before writing anything); the face classifier
  is trained first when missing and ``eval.num_samples`` > 0. Writes ``eval.json`` with
  the final judgement. A bad ``data.source`` stops it (one line) before anything is
  written to the workdir."""
  validate_config(config)
  cfg = loop_config(config)
  workdir = workdir_lib.check_usable(workdir)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  say = log or (lambda m: None)
  source = training_source(config)
  vocab, is_new = workdir_vocabulary(workdir, config, source)
  task = T2FTask(
    config,
    mesh,
    vocab=vocab,
    vocab_path=os.path.join(workdir, VOCAB_FILE) if is_new else None,
    log=say,
    source=source,
    encoder=_encoder(config, say, train=True),
  )
  caption_pairs.check_pairs(
    config.data,
    source,
    batch_size=max(task.schedule.batch_sizes),
    evaluate=bool(config.eval.num_samples),
    size=task.final,
    what="t2f",
    accept=caption_pairs.encodable(task.check_readable),
  )
  task.classifier = _classifier(say) if config.eval.num_samples else None
  if log and caption_pairs.is_folder(config.data) and jax.process_index() == 0:
    log(f"[t2f] {caption_pairs.summary(config.data, source, task.heldout())}")
  sched = task.schedule
  if log and jax.process_index() == 0:
    stages = ", ".join(
      f"{'x'.join(map(str, sched.resolution(s)))}@{sched.batch_sizes[s]}"
      for s in range(sched.num_stages)
    )
    log(f"[t2f] {sched.num_stages} stages ({stages}), {sched.total} steps, {len(vocab)} words")
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
  """``(task, state, step)`` of a trained run (its config, ``vocab.json`` and checkpoint)."""
  c = ml_collections.ConfigDict(restore_lib.read_config(workdir))
  vocab = Vocabulary.load(os.path.join(workdir, VOCAB_FILE))
  clf = _classifier(print) if classifier else None
  task = T2FTask(
    c,
    mesh_lib.make_mesh(jax.devices()[:1]),
    vocab=vocab,
    classifier=clf,
    log=None,
    encoder=_encoder(c, None, train=False),
  )

  def abstract(config, meta):
    stage = int(meta.get("stage", 0))
    return jax.eval_shape(functools.partial(task.init_state, stage=stage), jax.random.key(0))

  r = restore_lib.restore(workdir, abstract, step=step)
  return task, r.state, r.step


def evaluate(workdir: str, *, step: int | None = None, log=print) -> dict:
  """Caption accuracy, FD and mismatch rejection of a checkpoint; writes ``eval_<step>.json``."""
  task, state, step = restore_task(workdir, step=step, classifier=True)
  if not task.config.eval.num_samples:
    raise ConfigError("eval.num_samples is 0 in this run's config; nothing to judge")
  results = {"step": step, **task.judge(state, step)}
  workdir_lib.write_json(os.path.join(workdir, f"eval_{step:08d}.json"), results)
  if log:
    log(f"[t2f] step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
  return results


def generate(
  workdir: str, caption: str, *, num: int = 16, seed: int = 0, output: str = "", log=print
) -> str:
  """A grid of ``num`` samples for ``caption`` from the latest checkpoint's EMA generator."""
  if num < 1:
    raise ConfigError(f"num={num} must be >= 1")
  task, state, step = restore_task(workdir)
  text = tuple(np.repeat(a, num, axis=0) for a in task.encode([caption]))
  imgs = task.generate_text(state, text, task.latents(num, seed), step)
  path = write_caption_grid(imgs, workdir, caption, seed=seed, output=output)
  if log:
    log(f"[t2f] wrote {num} samples of step {step} for {caption!r} to {path}")
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
  """Between the two captions' text embeddings with fixed latents (rows = latents), and
  between two latents with ``caption`` fixed; a PNG grid and a ping-pong GIF each."""
  if steps < 2:
    raise ConfigError(f"steps={steps} must be >= 2")
  task, state, step = restore_task(workdir)
  e1, e2 = task.embed(state, [caption, caption2], step)
  sets = text_interpolations(
    lambda e, z: task.generate_from_embeddings(state, e, z, step),
    e1,
    e2,
    task.latents,
    steps=steps,
    seed=seed,
  )
  paths = write_caption_interpolations(
    sets, workdir, caption, caption2, steps=steps, seed=seed, output=output
  )
  if log:
    log(f"[t2f] step {step}: wrote " + ", ".join(paths))
  return paths


def _text_export_info(task: T2FTask) -> dict:
  """How an export's user turns captions into the generator's text input (``eps`` is
  ``ca_noise`` times a standard normal, as in training)."""
  if task.pretrained:
    return {
      "ca_noise": task.ca_noise,
      "text_encoder": "text/",
      "call": (
        "emb = zoo.tasks.text_encoder.load_text_encoder(dir/text).embed(captions); images, "
        "aux = module.apply(variables, emb, z [B, latent_dim], alpha, eps=eps [B, ca_dim], "
        "method='synthesize')"
      ),
    }
  return {
    "ca_noise": task.ca_noise,
    "vocabulary": VOCAB_FILE,
    "max_len": int(task.config.text.max_len),
    "call": (
      "ids, lengths = zoo.models.text.Vocabulary.load(dir/vocab.json).encode(captions, "
      "max_len); images, aux = module.apply(variables, ids, lengths, z [B, latent_dim], "
      "alpha, eps=eps [B, ca_dim])"
    ),
  }


def export(workdir: str, *, output: str = "", log=print) -> str:
  """The (EMA) generator, text encoder and CA included, at its trained stage in the zoo's
  export format, with the vocabulary beside it (``vocab.json``); a pretrained caption
  encoder is exported beside it instead (``text/``)."""
  task, state, step = restore_task(workdir)
  stage = task._state_stage(step)  # pylint: disable=protected-access
  g, _ = task.networks(stage)
  out = output or os.path.join(workdir, "export")
  c = task.config
  export_lib.save(
    out,
    g,
    jax.device_get(core.generator_variables(state)),
    info={
      "family": "t2f",
      "step": step,
      "stage": stage,
      "resolution": list(task.schedule.resolution(stage)),
      "alpha": float(task._alpha(step)),  # pylint: disable=protected-access
      "latent_dim": int(c.model.latent_dim),
      "ca_dim": int(c.model.ca_dim),
      "value_range": [-1.0, 1.0],
      **_text_export_info(task),
    },
  )
  if task.pretrained:
    task.encoder.save(os.path.join(out, "text"))
  else:
    task.vocab.save(os.path.join(out, VOCAB_FILE))
  if log:
    log(f"[t2f] exported the step-{step} generator (stage {stage}) and its vocabulary to {out}")
  return out
