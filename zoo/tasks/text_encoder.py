"""Pre-training the char-CNN-RNN caption encoder of the text-conditional DCGAN.

Reed et al. ("Learning Deep Representations of Fine-Grained Visual Descriptions",
CVPR 2016) train the text encoder φ against fixed image features θ with the deep
symmetric structured joint embedding loss (:func:`zoo.losses.embedding.ds_sje_loss`);
"Generative Adversarial Text to Image Synthesis" then conditions G and D on φ(t).
Here the fixed image features are the penultimate features of the faces attribute
classifier (:mod:`zoo.eval.face_classifier`, trained on demand), mapped by a learned
linear layer into the joint space, and the text is ``data.source``
(:mod:`zoo.data.caption_pairs`): the embedded captioned faces
(:mod:`zoo.data.faces.captioned`: ``captions_per_face`` partial captions per face) or a
caption dataset folder (Reed's CUB / flowers format or Face2Text's).

A caption *matches* an image when the image has every attribute the caption mentions;
the structured loss gives no margin to matching pairs in the batch (the paper's classes).
On a caption dataset folder the classes are the dataset's (Reed: a caption matches every
image of its class) or, without classes (Face2Text), the image itself; the image side is
still the face classifier's features, a stand-in for the GoogLeNet features of Reed et
al. (nothing is downloaded). Evaluation: caption->image retrieval top-1 accuracy on
held-out test captions, each query against a pool of ``eval.pool`` test images (correct =
the best image matches); a folder without held-out test captions reports NaN.

The export records the data it was trained on (``data_source`` in its info: ``''`` for
the embedded faces, else the folder's real path); :func:`load_text_encoder` and
:func:`get_or_train_text_encoder` given a config's ``data`` refuse (one line) an encoder
trained on other data, and the default workdir of a folder is its own
(:func:`encoder_workdir_for`).

``python -m launch.text_encoder`` runs :func:`train_and_evaluate`; the trained encoder is
exported to ``<workdir>/encoder/`` (the zoo's export format + ``vocab.json``) and loaded
with :func:`load_text_encoder` (:func:`get_or_train_text_encoder` trains it when missing).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from zoo.data import caption_pairs
from zoo.data.stream import ShardedStream
from zoo.errors import CheckpointError, ConfigError
from zoo.losses import embedding as emb_losses
from zoo.models import export as export_lib
from zoo.models import text as text_lib
from zoo.training import loop, mesh as mesh_lib
from zoo.training import workdir as workdir_lib
from zoo.training.metrics import MetricWriter

EXPORT_SUBDIR = "encoder"
EXPORT_NAME = "text_encoder"
VOCAB_FILE = "vocab.json"
DEFAULT_WORKDIR = os.path.join("runs", "text_encoder")
ENV_WORKDIR = "ZOO_TEXT_ENCODER"

RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=("model", "data.max_len", "data.image_size"),
  free=workdir_lib.LOOP_FREE + ("eval",),
)


def default_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The encoder's config (``launch/configs/text_encoder.py`` serves it)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(
    dict(
      conv_channels=(128, 192, 256),
      kernel_size=4,
      pool_size=3,
      rnn="gru",
      rnn_dim=256,
      embed_dim=256,
    )
  )
  c.data = ml_collections.ConfigDict(
    # image_size: the images the classifier sees when computing the image features.
    # source: '' = the embedded captioned faces (num_faces, captions_per_face, seed), or a
    # caption dataset folder (Reed or Face2Text format), prepared by TFDS under data_dir
    # ('' = TFDS's default); see zoo.data.caption_pairs.
    dict(
      num_faces=10_000,
      captions_per_face=5,
      max_len=256,
      image_size=32,
      seed=0,
      source="",
      data_dir="",
    )
  )
  c.optim = ml_collections.ConfigDict(dict(lr=1e-3, warmup_steps=100))
  c.batch_size = 64
  c.num_steps = 3000
  # DS-SJE on cosine compatibilities with every violation counted ('sum'): the paper's max
  # over classes ('max') barely leaves chance level from a random start here (BENCHMARKS.md).
  c.loss = ml_collections.ConfigDict(dict(margin=0.2, aggregate="sum", normalize=True))
  c.eval = ml_collections.ConfigDict(dict(num_queries=1000, pool=50))
  c.log_every = 100
  c.save_every = 500
  c.eval_every = 1000
  c.sample_every = 0
  c.max_to_keep = 2
  variant = arg or "default"
  if variant == "tiny":
    c.model.conv_channels = (16, 16, 16)
    c.model.rnn_dim = 16
    c.model.embed_dim = 16
    c.data.num_faces = 128
    c.data.captions_per_face = 2
    c.data.image_size = 16
    c.batch_size = 16
    c.num_steps = 20
    c.optim.warmup_steps = 2
    c.eval.num_queries = 32
    c.eval.pool = 8
    c.log_every = 10
    c.save_every = 0
    c.eval_every = 0
  elif variant != "default":
    raise ValueError(f"unknown text_encoder config variant {variant!r}; expected default, tiny")
  return c


def validate_config(c) -> None:
  def need(ok, msg):
    if not ok:
      raise ConfigError(f"bad text_encoder config: {msg}")

  for key in ("batch_size", "num_steps"):
    need(isinstance(c[key], int) and c[key] > 0, f"{key}={c[key]!r} must be a positive integer")
  for key in ("num_faces", "captions_per_face", "max_len"):
    v = c.data[key]
    need(isinstance(v, int) and v > 0, f"data.{key}={v!r} must be a positive integer")
  need(16 <= c.data.image_size <= 256, f"data.image_size={c.data.image_size} must be in 16..256")
  need(
    isinstance(c.data.get("source", ""), str),
    "data.source must be a caption dataset folder or '' (the embedded faces)",
  )
  need(c.optim.lr > 0, f"optim.lr={c.optim.lr!r} must be > 0")
  need(c.loss.margin > 0, f"loss.margin={c.loss.margin!r} must be > 0")
  need(c.loss.aggregate in ("max", "sum"), f"loss.aggregate={c.loss.aggregate!r}: max or sum")
  need(c.eval.pool >= 2, f"eval.pool={c.eval.pool!r} must be >= 2")
  need(
    caption_pairs.is_folder(c.data) or c.data.num_faces * c.data.captions_per_face >= c.batch_size,
    "fewer caption pairs than one batch",
  )


def _unit(x):
  return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-12)


def _maybe_unit(x, normalize: bool):
  return _unit(x) if normalize else x


def match_matrix(attributes: np.ndarray, mentions: np.ndarray) -> np.ndarray:
  """``M[i, j]``: image ``j`` has every attribute caption ``i`` mentions (bool [B, B])."""
  same = attributes[:, None, :] == attributes[None, :, :]
  return np.all(same | ~mentions[:, None, :], axis=-1)


class _Joint(nn.Module):
  """φ(text) and the linear map of the fixed image features into the joint space."""

  encoder: text_lib.CharCNNRNN

  @nn.compact
  def __call__(self, tokens, lengths, image_features):
    t = self.encoder(tokens, lengths)
    v = nn.Dense(self.encoder.embed_dim, name="image_proj")(image_features)
    return t, v


def make_encoder(c, vocab: text_lib.Vocabulary) -> text_lib.CharCNNRNN:
  m = dict(c.model)
  m["conv_channels"] = tuple(m["conv_channels"])
  return text_lib.CharCNNRNN(vocab_size=len(vocab), **m)


@dataclasses.dataclass
class TextEncoderTask:
  """DS-SJE pre-training through the shared loop (see :class:`zoo.training.loop.Task`)."""

  config: Any
  mesh: Any
  classifier: Any
  log: Callable[[str], None] = print
  name: str = "text_encoder"
  source: Any = None  # the training pairs (None: opened from config.data)

  def __post_init__(self):
    c = self.config
    mesh_lib.check_batch_size(c.batch_size, self.mesh)
    self.vocab = text_lib.Vocabulary.default_chars()
    self.encoder = make_encoder(c, self.vocab)
    self.joint = _Joint(self.encoder)
    if self.source is None:
      self.source = training_source(c)
    self.features = self._face_features()
    sched = optax.warmup_cosine_decay_schedule(
      0.0, c.optim.lr, min(c.optim.warmup_steps, c.num_steps - 1), max(c.num_steps, 1)
    )
    self.tx = optax.adam(sched)
    self.last_eval: dict[str, float] = {}

  def _face_features(self) -> np.ndarray:
    """Classifier features of every training image, computed once: float32 [N, F]."""
    feats = []
    for lo in range(0, self.source.num_images, 500):
      hi = min(lo + 500, self.source.num_images)
      feats.append(
        self.classifier.features(np.stack([self.source.image(f) for f in range(lo, hi)]))
      )
    return np.concatenate(feats).astype(np.float32)

  def collate(self, items, indices) -> dict:
    del indices
    tokens, lengths = self.vocab.encode([it["caption"] for it in items], self.config.data.max_len)
    if "attributes" in items[0]:  # the embedded faces: by the attributes a caption names
      attrs = np.stack([it["attributes"] for it in items])
      mentions = np.stack([it["mentions"] for it in items])
      match = match_matrix(attrs, mentions)
    else:  # a caption dataset: by class (Reed), else by image (DS-SJE's labels)
      ids = np.asarray([it["class_id"] for it in items])
      match = ids[:, None] == ids[None, :]
    return {
      "tokens": tokens,
      "lengths": lengths,
      "features": self.features[[it["face"] for it in items]],
      "match": match,
    }

  def init_state(self, rng):
    c = self.config
    tokens = jnp.zeros((2, c.data.max_len), jnp.int32)
    params = self.joint.init(
      rng, tokens, jnp.ones((2,), jnp.int32), jnp.zeros((2, self.features.shape[1]))
    )["params"]
    return {"params": params, "opt_state": self.tx.init(params)}

  def train_step(self, state, batch, rng, step):
    del rng, step

    def loss_fn(params):
      t, v = self.joint.apply(
        {"params": params}, batch["tokens"], batch["lengths"], batch["features"]
      )
      if self.config.loss.normalize:
        t, v = _unit(t), _unit(v)
      loss = emb_losses.ds_sje_loss(
        v,
        t,
        match=batch["match"],
        margin=self.config.loss.margin,
        aggregate=self.config.loss.aggregate,
      )
      return jnp.mean(loss), (t, v)

    (loss, (t, v)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    acc = emb_losses.retrieval_accuracy(t, v, match=batch["match"])
    return {"params": params, "opt_state": opt_state}, {"loss": loss, "batch_retrieval": acc}

  def train_batches(self, start_step: int) -> Iterator[dict]:
    stream = ShardedStream(
      self.source,
      batch_size=self.config.batch_size,
      collate=self.collate,
      seed=self.config.seed,
      stream_id=(11,),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    return stream.iterate(start_step)

  def embed_fn(self):
    return jax.jit(lambda p, tok, ln: self.encoder.apply({"params": p}, tok, ln))

  def evaluate(self, state, step):
    del step
    params = jax.device_get(state["params"])
    self.last_eval = evaluate_retrieval(
      functools.partial(
        _embed,
        self.encoder,
        params["encoder"],
        self.vocab,
        self.config.data.max_len,
        normalize=self.config.loss.normalize,
      ),
      lambda feats: np.asarray(
        _maybe_unit(
          jnp.dot(feats, params["image_proj"]["kernel"]) + params["image_proj"]["bias"],
          self.config.loss.normalize,
        )
      ),
      self.classifier,
      self.config,
      exclude=self.source.all_captions(),
    )
    return self.last_eval

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    del state, step, workdir, writer  # an encoder has nothing to draw


def training_source(c):
  """The encoder's training pairs (``data.source``) with images at ``data.image_size``."""
  size = (c.data.image_size, c.data.image_size)
  return caption_pairs.open_pair_source(c.data, "train", size)


def _embed(encoder, params, vocab, max_len, captions, normalize=False, batch=256) -> np.ndarray:
  # The encoder's output does not depend on the padded length (see CharCNNRNN), so the
  # captions go in order of length, each batch cut to its longest (rounded up to 32, so
  # that only a few shapes compile): most captions are far shorter than max_len.
  order = np.argsort([len(t) for t in captions], kind="stable")
  out = np.zeros((len(captions), encoder.embed_dim), np.float32)
  for lo in range(0, len(captions), batch):
    idx = order[lo : lo + batch]
    tok, ln = vocab.encode([captions[i] for i in idx], max_len)
    tok = tok[:, : min(tok.shape[1], -(-int(ln.max()) // 32) * 32)]
    e = _apply_encoder(encoder, params, tok, ln)
    out[idx] = np.asarray(_unit(e) if normalize else e)
  return out


@functools.partial(jax.jit, static_argnums=0)
def _apply_encoder(encoder, params, tokens, lengths):
  return encoder.apply({"params": params}, tokens, lengths)


def evaluate_retrieval(embed_text, embed_image, classifier, c, *, exclude) -> dict[str, float]:
  """Caption->image top-1 retrieval on held-out test captions (pools of ``eval.pool``;
  smaller when a caption dataset has fewer held-out captions; NaN with fewer than 2)."""
  n, pool = int(c.eval.num_queries), int(c.eval.pool)
  n -= n % pool
  size = (c.data.image_size, c.data.image_size)
  held = caption_pairs.heldout(c.data, n, exclude=exclude, size=size)
  if len(held["caption"]) < n:  # a caption dataset with few held-out captions
    pool = min(pool, len(held["caption"]))
    n = len(held["caption"]) - len(held["caption"]) % pool if pool >= 2 else 0
    if not n:
      return {"eval/retrieval_top1": float("nan"), "eval/retrieval_chance": float("nan")}
  t = embed_text(held["caption"][:n])
  v = embed_image(classifier.features(held["image"][:n]))

  def matches(sl):
    if "attributes" in held:
      return match_matrix(held["attributes"][sl], held["mentions"][sl])
    labels = held["label"][sl]
    if (labels >= 0).all():  # classes: a caption describes every image of its class
      return labels[:, None] == labels[None, :]
    return np.eye(len(labels), dtype=bool)  # one held-out caption per image

  hits = []
  for lo in range(0, n, pool):
    sl = slice(lo, lo + pool)
    hits.append(float(emb_losses.retrieval_accuracy(t[sl], v[sl], match=matches(sl))))
  # Chance: the mean fraction of the pool an average caption matches.
  chance = float(np.mean(matches(slice(0, pool)).mean(1)))
  return {"eval/retrieval_top1": float(np.mean(hits)), "eval/retrieval_chance": chance}


# ---------------------------------------------------------------------------
# Export and loading.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TextEncoder:
  """A trained caption encoder: ``embed(captions) -> float32 [n, embed_dim]``."""

  module: text_lib.CharCNNRNN
  params: Any
  vocab: text_lib.Vocabulary
  max_len: int
  normalize: bool = False  # unit-length embeddings (what the encoder was trained with)
  data_source: str = ""  # what it was trained on: '' = the embedded faces, else a folder

  @property
  def embed_dim(self) -> int:
    return int(self.module.embed_dim)

  def encode(self, captions) -> tuple[np.ndarray, np.ndarray]:
    return self.vocab.encode(list(captions), self.max_len)

  def embed(self, captions) -> np.ndarray:
    return _embed(
      self.module, self.params, self.vocab, self.max_len, list(captions), self.normalize
    )

  def save(self, directory: str) -> str:
    """Exports this encoder to ``directory`` (loadable by :func:`load_text_encoder`)."""
    info = {"normalize": self.normalize, "data_source": self.data_source}
    return save_export(directory, self.module, self.params, self.vocab, self.max_len, info)


def export_dir(workdir: str) -> str:
  return os.path.join(workdir, EXPORT_SUBDIR)


def is_trained(workdir: str) -> bool:
  return os.path.exists(export_lib.paths(export_dir(workdir), EXPORT_NAME)[1])


def save_export(workdir, encoder, params, vocab, max_len, info) -> str:
  d = export_dir(workdir)
  export_lib.save(
    d, encoder, {"params": params}, name=EXPORT_NAME, info={**info, "max_len": max_len}
  )
  vocab.save(os.path.join(d, VOCAB_FILE))
  return d


def default_workdir() -> str:
  return os.path.abspath(os.environ.get(ENV_WORKDIR) or DEFAULT_WORKDIR)


def encoder_workdir_for(data=None) -> str:
  """The default encoder workdir for a config's ``data``: :func:`default_workdir` for the
  embedded faces; for a caption dataset folder, that path + ``_<folder name>`` (e.g.
  ``runs/text_encoder_cub`` for ``/data/cub``), so it never reuses the faces encoder."""
  base = default_workdir()
  if data is None or not caption_pairs.is_folder(data):
    return base
  key = caption_pairs.source_key(caption_pairs.source_of(data))
  name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(key)).strip("._") or "data"
  return f"{base}_{name}"


def _recorded_source(info) -> str:
  return str((info or {}).get("data_source", "") or "")  # exports before the key: the faces


def _check_source(workdir: str, recorded: str, data) -> None:
  want = caption_pairs.source_key(caption_pairs.source_of(data))
  if recorded != want:
    have = recorded or "the embedded captioned faces"
    raise ConfigError(
      f"the text encoder in {workdir} was trained on {have}, not on "
      f"{want or 'the embedded captioned faces'}: set text.encoder_workdir to an empty "
      "folder (it is trained there) or to an encoder of this data"
    )


def check_encoder_data(workdir: str | None, data) -> None:
  """One-line ConfigError when ``workdir`` (None: :func:`encoder_workdir_for`) holds an
  encoder trained on other data than ``data.source``; nothing when it holds none."""
  workdir = encoder_workdir_for(data) if workdir is None else workdir
  if is_trained(workdir):
    desc = export_lib.read_description(export_lib.paths(export_dir(workdir), EXPORT_NAME)[1])
    _check_source(workdir, _recorded_source(desc.get("info")), data)


def load_text_encoder(workdir: str | None = None, *, data=None) -> TextEncoder:
  """The encoder exported in ``workdir`` (CheckpointError, one line, when there is none).
  With a config's ``data``: ``workdir`` None is :func:`encoder_workdir_for` ``data``, and an
  encoder trained on other data is refused (ConfigError, one line)."""
  workdir = encoder_workdir_for(data) if workdir is None else workdir
  d = export_dir(workdir)
  if not is_trained(workdir):
    raise CheckpointError(
      f"no trained text encoder in {workdir}; train one with "
      f"python -m launch.text_encoder --workdir {workdir}"
    )
  ex = export_lib.load(d, name=EXPORT_NAME)
  if not isinstance(ex.module, text_lib.CharCNNRNN):
    raise CheckpointError(f"{d} holds a {type(ex.module).__name__}, not a CharCNNRNN")
  if data is not None:
    _check_source(workdir, _recorded_source(ex.info), data)
  vocab = text_lib.Vocabulary.load(os.path.join(d, VOCAB_FILE))
  return TextEncoder(
    ex.module,
    ex.variables["params"],
    vocab,
    int(ex.info["max_len"]),
    bool(ex.info.get("normalize", False)),
    _recorded_source(ex.info),
  )


# ---------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------


def train_and_evaluate(
  config, workdir: str, *, mesh=None, log_fn=None, allow_config_change: bool = False
) -> loop.TrainResult:
  """Trains (or resumes) the encoder in ``workdir``, evaluates and exports it."""
  from zoo.tasks import face_classifier as fc_task  # pylint: disable=g-import-not-at-top

  validate_config(config)
  say = log_fn or (lambda msg: print(msg, flush=True))
  cfg = loop.LoopConfig.from_config(config)
  workdir_lib.check_usable(workdir)
  source = training_source(config)  # a bad data.source stops here, before any write
  caption_pairs.check_pairs(
    config.data,
    source,
    batch_size=config.batch_size,
    evaluate=False,  # evaluation reports NaN without held-out captions
    size=(config.data.image_size, config.data.image_size),
    what="text_encoder",
    accept=caption_pairs.encodable(
      lambda caps: text_lib.Vocabulary.default_chars().encode(caps, config.data.max_len)
    ),
  )
  clf = fc_task.get_or_train_classifier(log_fn=log_fn)
  with workdir_lib.lock(workdir, say=say):
    task = TextEncoderTask(
      config, mesh if mesh is not None else mesh_lib.make_mesh(), clf, say, source=source
    )
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
    if result.stopped_by_signal:
      return result
    if not result.eval_history or result.eval_history[-1]["step"] != result.step:
      task.evaluate(result.state, result.step)
    if jax.process_index() == 0:
      params = jax.device_get(result.state["params"])["encoder"]
      info = {
        "step": int(result.step),
        "eval": task.last_eval,
        "normalize": bool(config.loss.normalize),
        "data_source": caption_pairs.source_key(caption_pairs.source_of(config.data)),
      }
      save_export(workdir, task.encoder, params, task.vocab, config.data.max_len, info)
      workdir_lib.write_json(os.path.join(workdir, "eval.json"), info)
      say(
        f"[text_encoder] exported to {export_dir(workdir)}; caption->image retrieval top-1 "
        f"{task.last_eval['eval/retrieval_top1']:.3f} (chance "
        f"{task.last_eval['eval/retrieval_chance']:.3f}, pools of {config.eval.pool})"
      )
  return result


def get_or_train_text_encoder(
  workdir: str | None = None, config=None, *, log_fn=None, data=None
) -> TextEncoder:
  """Loads the exported encoder; trains it first (default config) when there is none.

  ``data``: a GAN config's data section. Then ``workdir`` None is
  :func:`encoder_workdir_for` ``data``, a new encoder is trained on ``data.source`` (and
  ``data.data_dir``), and one trained on other data is refused (ConfigError, one line).
  """
  if workdir is None:
    workdir = encoder_workdir_for(data)
  workdir = os.path.abspath(workdir)
  if data is not None:
    check_encoder_data(workdir, data)
  if not is_trained(workdir):
    with workdir_lib.lock(workdir, wait=True):
      if not is_trained(workdir):
        config = default_config() if config is None else config
        if data is not None:
          config = config.copy_and_resolve_references()
          config.data.source = caption_pairs.source_of(data)
          config.data.data_dir = str(data.get("data_dir", "") or "")
        (log_fn or print)(
          f"[text_encoder] no trained text encoder in {workdir}; training it on "
          f"{caption_pairs.describe(config.data)} ({config.num_steps} steps)"
        )
        train_and_evaluate(config, workdir, log_fn=log_fn)
  return load_text_encoder(workdir, data=data)
