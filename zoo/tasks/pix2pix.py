"""pix2pix as a zoo task: config -> paired data, U-Net + PatchGAN, cGAN + L1, train/test/export.

``python -m launch.pix2pix`` runs :func:`train_and_evaluate` (``--mode train``),
:func:`test` (``--mode test``) or :func:`export` (``--mode export``).

Objective (Isola et al. 2017, Eq. 4): ``G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G)``
with λ = ``lambda_L1`` (100). One train step is the reference's
``optimize_parameters``: G produces ``fake_B = G(A)`` once; D is updated on
``[A, B]`` (real) and ``[A, fake_B]`` (fake, no gradient to G) with its loss
halved; then G is updated against the *updated* D on
``L_GAN(D([A, fake_B]), real) + λ |fake_B - B|_1``. Both use Adam(lr, β1=0.5).

The train state holds both networks::

  {'g': {'params', 'opt_state'[, 'batch_stats']}, 'd': {'params', 'opt_state'[, 'batch_stats']}}
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import os
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from zoo.data.images import paired as pdata
from zoo.errors import CheckpointError, ConfigError, ZooError
from zoo.gan import core as gan_core
from zoo.losses import gan as gan_losses
from zoo.losses import pix2pix as p2p_losses
from zoo.models import export as export_lib
from zoo.models import pix2pix as models
from zoo.training import checkpoint as ckpt_lib
from zoo.training import loop, mesh as mesh_lib
from zoo.training import restore as restore_lib
from zoo.training import workdir as workdir_lib
from zoo.training.metrics import MetricWriter

GAN_MODES = p2p_losses.GAN_MODES
NET_G = ("unet", "unet_128", "unet_256")
NET_D = ("basic", "n_layers", "pixel")
LR_POLICIES = ("linear", "constant")
#: Keys that define the generator/discriminator; test/export rebuild them from the workdir.
MODEL_KEYS = (
  "netG",
  "ngf",
  "netD",
  "ndf",
  "n_layers_D",
  "norm",
  "no_dropout",
  "input_nc",
  "output_nc",
  "num_downs",
  "crop_size",
  "crop_width",
)
EXPORT_FORMAT = export_lib.FORMAT


# ---------------------------------------------------------------------------
# Config.
# ---------------------------------------------------------------------------


def image_size(c) -> tuple[int, int]:
  """Training/test image ``(height, width)``: ``crop_size`` x (``crop_width`` or ``crop_size``)."""
  return int(c.crop_size), int(c.crop_width or c.crop_size)


def load_hw(c) -> tuple[int, int]:
  """Resize target before the random crop; ``load_width=0`` keeps the crop's aspect ratio."""
  h, w = image_size(c)
  lw = c.load_width or int(round(w * c.load_size / h))
  return int(c.load_size), int(lw)


def validate_config(c) -> None:
  """Raises ConfigError (one line) for out-of-range or inconsistent values."""

  def need(cond, msg):
    if not cond:
      raise ConfigError(f"bad pix2pix config: {msg}")

  need(c.netG in NET_G, f"netG={c.netG!r}, expected one of {NET_G}")
  need(c.netD in NET_D, f"netD={c.netD!r}, expected one of {NET_D}")
  need(c.norm in models.NORMS, f"norm={c.norm!r}, expected one of {models.NORMS}")
  need(c.gan_mode in GAN_MODES, f"gan_mode={c.gan_mode!r}, expected one of {GAN_MODES}")
  need(
    c.direction in pdata.DIRECTIONS,
    f"direction={c.direction!r}, expected one of {pdata.DIRECTIONS}",
  )
  need(c.lr_policy in LR_POLICIES, f"lr_policy={c.lr_policy!r}, expected one of {LR_POLICIES}")
  need(c.phase in pdata.SPLITS, f"phase={c.phase!r}, expected one of {pdata.SPLITS}")
  for key in (
    "ngf",
    "ndf",
    "n_layers_D",
    "batch_size",
    "num_steps",
    "crop_size",
    "load_size",
    "num_samples",
  ):
    need(isinstance(c[key], int) and c[key] > 0, f"{key}={c[key]!r} must be a positive integer")
  for key in (
    "save_every",
    "log_every",
    "eval_every",
    "sample_every",
    "num_eval",
    "eval_batch_size",
    "num_test",
    "max_dataset_size",
    "num_workers",
    "render_processes",
    "crop_width",
    "load_width",
    "num_downs",
    "synthetic_num_train",
    "synthetic_num_val",
    "synthetic_num_test",
    "seed",
  ):
    need(isinstance(c[key], int) and c[key] >= 0, f"{key}={c[key]!r} must be an integer >= 0")
  for key in ("input_nc", "output_nc"):
    need(c[key] in (1, 3), f"{key}={c[key]!r} must be 1 or 3")
  need(c.lr > 0, f"lr={c.lr!r} must be > 0")
  need(0.0 <= c.beta1 < 1.0 and 0.0 <= c.beta2 < 1.0, "beta1 and beta2 must be in [0, 1)")
  need(c.lambda_L1 >= 0, f"lambda_L1={c.lambda_L1!r} must be >= 0")
  need(
    isinstance(c.n_steps_decay, int) and -1 <= c.n_steps_decay <= c.num_steps,
    f"n_steps_decay={c.n_steps_decay!r} must be -1 (half of num_steps) or in "
    f"[0, num_steps={c.num_steps}]",
  )
  h, w = image_size(c)
  lh, lw = load_hw(c)
  need(lh >= h and lw >= w, f"load size {lh}x{lw} must be >= crop size {h}x{w}")
  if not c.dataroot:
    need(c.synthetic_num_train > 0, "synthetic_num_train must be > 0 for the embedded dataset")
  fixed = {"unet": c.num_downs, "unet_128": 7, "unet_256": 8}[c.netG]
  models.unet_num_downs(h, w, fixed)  # ConfigError if the size does not fit the U-Net


def model_config(c) -> dict:
  """The architecture part of the config (plus derived U-Net depth), JSON-friendly."""
  out = {k: c[k] for k in MODEL_KEYS}
  h, w = image_size(c)
  fixed = {"unet": c.num_downs, "unet_128": 7, "unet_256": 8}[c.netG]
  out["derived_num_downs"] = models.unet_num_downs(h, w, fixed)
  return out


# ---------------------------------------------------------------------------
# Models, losses, optimizers.
# ---------------------------------------------------------------------------


def make_generator(c) -> models.UNetGenerator:
  h, w = image_size(c)
  return models.make_generator(
    netG=c.netG,
    height=h,
    width=w,
    output_nc=c.output_nc,
    ngf=c.ngf,
    norm=c.norm,
    use_dropout=not c.no_dropout,
    num_downs=c.num_downs,
  )


def make_discriminator(c):
  return models.make_discriminator(netD=c.netD, ndf=c.ndf, n_layers_D=c.n_layers_D, norm=c.norm)


def decay_steps(c) -> int:
  """``n_steps_decay``, with -1 meaning half of ``num_steps``."""
  return c.num_steps // 2 if c.n_steps_decay < 0 else int(c.n_steps_decay)


def learning_rate_schedule(c):
  """'constant', or 'linear': constant for ``num_steps - n_steps_decay`` steps, then linear decay.

  The reference's ``n_epochs`` + ``n_epochs_decay`` in steps: step ``s`` of the
  decay phase (0-based) trains at ``lr * (1 - (s + 1) / (n_steps_decay + 1))``.
  """
  lr = float(c.lr)
  n_decay = decay_steps(c)
  if c.lr_policy == "constant" or n_decay == 0:
    return lambda count: jnp.asarray(lr, jnp.float32)
  n_const = c.num_steps - n_decay

  def schedule(count):
    k = jnp.maximum(0, jnp.asarray(count, jnp.int32) - n_const + 1)
    return lr * (1.0 - k.astype(jnp.float32) / (n_decay + 1))

  return schedule


def make_optimizer(c) -> optax.GradientTransformation:
  return optax.adam(learning_rate_schedule(c), b1=c.beta1, b2=c.beta2)


def psnr(fake, real):
  """Per-example PSNR (dB) of images in [-1, 1], measured on the [0, 1] scale."""
  mse = jnp.mean(jnp.square((fake - real) / 2.0), axis=tuple(range(1, fake.ndim)))
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


def init_key(rng: jax.Array) -> jax.Array:
  """An ``'rbg'`` key derived from ``rng`` for parameter initialisation.

  Drawing every initial weight from threefry makes XLA's CPU compiler spend
  ~10 s on a small U-Net + PatchGAN init; XLA's RngBitGenerator compiles in a
  fraction of that. The result is a pure function of ``rng`` on a given backend
  (a resumed run restores its weights from the checkpoint anyway).
  """
  return jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")


def init_train_state(c, generator, discriminator, tx_g, tx_d, rng) -> dict:
  """Fresh GAN state ``{'g': ..., 'd': ...}`` (:func:`zoo.gan.core.init_state`; traceable)."""
  h, w = image_size(c)
  k_g, k_d, k_drop = jax.random.split(init_key(rng), 3)
  a = jnp.zeros((1, h, w, c.input_nc), jnp.float32)
  ab = jnp.zeros((1, h, w, c.input_nc + c.output_nc), jnp.float32)
  gv = generator.init({"params": k_g, "dropout": k_drop}, a, train=False, dropout=False)
  dv = discriminator.init(k_d, ab, train=False)
  return gan_core.init_state(gv, dv, tx_g=tx_g, tx_d=tx_d)


@dataclasses.dataclass(frozen=True)
class Pix2PixObjective:
  """pix2pix as a :class:`zoo.gan.core.Objective`: fake_B = G(A); D judges [A, B] pairs.

  Both networks run in training mode (dropout in G, batch statistics in both), as
  in the reference, so D's running averages are updated by each of its forwards.
  """

  generator: Any
  discriminator: Any
  gan_mode: str
  lambda_l1: float

  def generate(self, g_vars, batch, rng, step):
    mutable = [k for k in g_vars if k != "params"]
    out = self.generator.apply(
      g_vars, batch["A"], train=True, dropout=True, rngs={"dropout": rng}, mutable=mutable
    )
    return out if mutable else (out, {})

  def _d(self, d_vars, a, b):
    mutable = [k for k in d_vars if k != "params"]
    x = jnp.concatenate([a, b], axis=-1)
    out = self.discriminator.apply(d_vars, x, train=True, mutable=mutable)
    return out if mutable else (out, {})

  def d_loss(self, d_vars, batch, fake, rng, step):
    pred_fake, upd = self._d(d_vars, batch["A"], fake)
    pred_real, upd = self._d({**d_vars, **upd}, batch["A"], batch["B"])
    loss, real, fake_term = p2p_losses.d_loss(pred_real, pred_fake, gan_mode=self.gan_mode)
    threshold = 0.0 if self.gan_mode == "vanilla" else 0.5
    metrics = {
      "D_real": jnp.mean(real),
      "D_fake": jnp.mean(fake_term),
      "D_real_acc": jnp.mean((pred_real > threshold).astype(jnp.float32)),
      "D_fake_acc": jnp.mean((pred_fake < threshold).astype(jnp.float32)),
    }
    return jnp.mean(loss), (metrics, upd)

  def g_loss(self, d_vars, batch, fake, rng, step):
    pred, upd = self._d(d_vars, batch["A"], fake)
    loss, g_gan, g_l1 = p2p_losses.g_loss(
      pred, fake, batch["B"], gan_mode=self.gan_mode, lambda_l1=self.lambda_l1
    )
    return jnp.mean(loss), ({"G_GAN": jnp.mean(g_gan), "G_L1": jnp.mean(g_l1)}, upd)


# ---------------------------------------------------------------------------
# Images.
# ---------------------------------------------------------------------------


def _rgb(x_uint8: np.ndarray) -> np.ndarray:
  return np.repeat(x_uint8, 3, axis=-1) if x_uint8.shape[-1] == 1 else x_uint8


def comparison_grid(a, fake, b, *, pad: int = 2) -> np.ndarray:
  """uint8 grid with one row per example: input | output | target (inputs in [-1, 1])."""
  a, fake, b = (_rgb(pdata.to_uint8(x)) for x in (a, fake, b))
  n, h, w, _ = a.shape
  out = np.full((n * (h + pad) + pad, 3 * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    y = pad + i * (h + pad)
    for j, img in enumerate((a[i], fake[i], b[i])):
      x = pad + j * (w + pad)
      out[y : y + h, x : x + w] = img
  return out


def _save_png(path: str, img: np.ndarray) -> None:
  img = np.asarray(img)
  Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img).save(path)


# ---------------------------------------------------------------------------
# The task.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Pix2PixTask:
  """The pix2pix training task (see :class:`zoo.training.loop.Task`)."""

  config: Any
  mesh: Any
  sources: Mapping[str, Any]  # 'train' (required), 'val' (optional)
  name: str = "pix2pix"

  def __post_init__(self):
    c = self.config
    self.generator = make_generator(c)
    self.discriminator = make_discriminator(c)
    self.objective = Pix2PixObjective(
      self.generator, self.discriminator, gan_mode=c.gan_mode, lambda_l1=c.lambda_L1
    )
    self.tx_g = make_optimizer(c)
    self.tx_d = make_optimizer(c)
    self.lr_fn = learning_rate_schedule(c)
    self.height, self.width = image_size(c)
    mesh_lib.check_batch_size(c.batch_size, self.mesh)
    self.stream = pdata.PairedBatches(
      self.sources["train"],
      batch_size=c.batch_size,
      load_size=load_hw(c),
      crop_size=(self.height, self.width),
      flip=not c.no_flip,
      shuffle=True,
      input_nc=c.input_nc,
      output_nc=c.output_nc,
      seed=c.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      num_workers=c.num_workers,
    )
    ndev = self.mesh.devices.size
    self.eval_batch_size = c.eval_batch_size or -(-max(c.batch_size, 8) // ndev) * ndev
    mesh_lib.check_batch_size(self.eval_batch_size, self.mesh, "eval_batch_size")
    self._eval_sums = jax.jit(self._eval_sums_fn)
    self._generate = jax.jit(self._generate_fn)
    self._sample_batch = None

  # ---- loop.Task interface -------------------------------------------------
  def init_state(self, rng):
    return init_train_state(
      self.config, self.generator, self.discriminator, self.tx_g, self.tx_d, rng
    )

  def train_step(self, state, batch, rng, step):
    state, metrics = gan_core.train_step(
      state, batch, rng, step, objective=self.objective, tx_g=self.tx_g, tx_d=self.tx_d
    )
    return state, {**metrics, "lr": self.lr_fn(step)}

  def train_batches(self, start_step: int) -> Iterator[dict]:
    return self.stream.iterate(start_step)

  def _generate_fn(self, g_vars, a, index):
    return models.generate(
      self.generator, g_vars, a, index, seed=self.config.seed, eval_mode=self.config.eval_mode
    )

  def _eval_sums_fn(self, g_vars, batch):
    fake = self._generate_fn(g_vars, batch["A"], batch["index"])
    l1 = gan_losses.l1_loss(fake, batch["B"])
    m = batch["mask"]
    return {"L1": jnp.sum(l1 * m), "PSNR": jnp.sum(psnr(fake, batch["B"]) * m), "n": jnp.sum(m)}

  def evaluate_split(self, state, split: str = "val") -> dict[str, float]:
    """Mean L1 (on [-1, 1], as the training loss) and PSNR (dB on [0, 1]) over a split."""
    source = self.sources.get(split)
    if source is None:
      return {}
    c = self.config
    g_vars = gan_core.generator_variables(state)
    sums = None
    for b in pdata.eval_batches(
      source,
      batch_size=self.eval_batch_size,
      size=(self.height, self.width),
      num_examples=c.num_eval,
      input_nc=c.input_nc,
      output_nc=c.output_nc,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    ):
      out = jax.device_get(self._eval_sums(g_vars, mesh_lib.to_global(b, self.mesh)))
      sums = out if sums is None else {k: sums[k] + out[k] for k in out}
    if not sums or float(sums["n"]) == 0:
      return {}
    n = float(sums["n"])
    return {"L1": float(sums["L1"]) / n, "PSNR": float(sums["PSNR"]) / n}

  def evaluate(self, state, step):
    return {f"val/{k}": v for k, v in self.evaluate_split(state, "val").items()}

  def sample_batch(self) -> dict:
    """The fixed examples drawn in sample grids: the first ``num_samples`` of val (or train)."""
    if self._sample_batch is None:
      c = self.config
      source = self.sources.get("val") or self.sources["train"]
      n = min(c.num_samples, len(source))
      self._sample_batch = next(
        pdata.eval_batches(
          source,
          batch_size=n,
          size=(self.height, self.width),
          num_examples=n,
          input_nc=c.input_nc,
          output_nc=c.output_nc,
        )
      )
    return self._sample_batch

  def write_samples(self, state, step, workdir, writer: MetricWriter):
    b = self.sample_batch()
    g_vars = gan_core.generator_variables(state)
    fake = self._generate(
      g_vars, mesh_lib.replicate(b["A"], self.mesh), mesh_lib.replicate(b["index"], self.mesh)
    )
    fake = np.asarray(jax.device_get(fake))
    if jax.process_index() != 0:
      return
    grid = comparison_grid(b["A"], fake, b["B"])
    outdir = os.path.join(workdir, "samples")
    os.makedirs(outdir, exist_ok=True)
    _save_png(os.path.join(outdir, f"samples_{step:08d}.png"), grid)
    _save_png(os.path.join(outdir, "latest.png"), grid)
    writer.image(step, "samples/input_output_target", grid)
    writer.flush()


# ---------------------------------------------------------------------------
# Building, training.
# ---------------------------------------------------------------------------


def _synthetic_sizes(c) -> dict[str, int]:
  return {"train": c.synthetic_num_train, "val": c.synthetic_num_val, "test": c.synthetic_num_test}


def open_split(c, split: str, *, required: bool = True):
  return pdata.open_source(
    c.dataroot,
    split,
    direction=c.direction,
    check_square=c.check_square,
    max_size=c.max_dataset_size,
    synthetic_sizes=_synthetic_sizes(c),
    seed=c.seed,
    cache=c.cache_images,
    required=required,
    processes=c.render_processes if split == "train" else 0,
  )


def build_task(c, mesh=None) -> Pix2PixTask:
  validate_config(c)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  sources = {"train": open_split(c, "train"), "val": open_split(c, "val", required=False)}
  return Pix2PixTask(config=c, mesh=mesh, sources=sources)


#: How a resume may differ from the run (see :mod:`zoo.training.workdir`): the networks
#: (``MODEL_KEYS`` and the derived ``model`` section) are fixed; test/export settings and the
#: loop's cadence are free; the data and the optimisation need ``--allow_config_change``.
RESUME_KEYS = workdir_lib.ResumeKeys(
  shape=MODEL_KEYS + ("model",),
  free=workdir_lib.LOOP_FREE
  + (
    "num_samples",
    "num_eval",
    "eval_batch_size",
    "num_workers",
    "render_processes",
    "cache_images",
    "eval_mode",
    "phase",
    "test_dir",
    "test_single",
    "num_test",
    "results_dir",
    "export_dir",
  ),
)


def run_info(c) -> dict:
  """What ``config.json`` holds: the config and its model section (test/export rebuild
  the same networks from it)."""
  return dict(workdir_lib.jsonable(c), model=model_config(c))


def save_run_info(c, workdir: str) -> None:
  """Writes ``config.json`` (with the model section) so test/export rebuild the same nets."""
  ckpt_lib.write_run_config(workdir, run_info(c))


def train_and_evaluate(
  config, workdir: str, *, mesh=None, allow_config_change: bool = False
) -> loop.TrainResult:
  """Trains (or resumes) in ``workdir``; the loop checks a resume against the run's
  ``config.json`` and writes it once the resume is known to succeed."""
  validate_config(config)
  cfg = loop.LoopConfig.from_config(config)
  workdir_lib.check_usable(workdir)
  task = build_task(config, mesh)
  return loop.train(
    task,
    cfg,
    workdir,
    mesh=task.mesh,
    run_config=run_info(config),
    resume_keys=RESUME_KEYS,
    allow_config_change=allow_config_change,
  )


# ---------------------------------------------------------------------------
# Test and export.
# ---------------------------------------------------------------------------


def config_for_workdir(c, workdir: str):
  """``c`` with its architecture keys replaced by those the workdir was trained with."""
  saved = restore_lib.read_config(workdir, required=False)
  if not saved:
    return c
  c = c.copy_and_resolve_references()
  with c.unlocked():
    for k in MODEL_KEYS:
      if k in saved:
        c[k] = saved[k]
  return c


def restore_generator(
  c, workdir: str, mesh=None, *, step: int | None = None, ema: bool = True
) -> tuple[dict, int]:
  """``(generator variables, step)`` from the latest (or ``step``) checkpoint of ``workdir``.

  Through :func:`zoo.training.restore.restore`: one-line CheckpointError when the workdir
  has no (such) checkpoint or it does not fit ``c``'s networks.
  """
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  generator, discriminator = make_generator(c), make_discriminator(c)
  tx = make_optimizer(c)

  def abstract(config, meta):
    del config, meta  # the architecture comes from ``c`` (see config_for_workdir)
    init = lambda rng: init_train_state(c, generator, discriminator, tx, tx, rng)
    return jax.eval_shape(init, jax.random.key(0))

  r = restore_lib.restore(
    workdir, abstract, step=step, sharding=mesh_lib.replicated(mesh), require_config=False
  )
  return restore_lib.generator_variables(r.state, ema=ema), r.step


@functools.lru_cache(maxsize=8)
def jitted_generate(generator: models.UNetGenerator, *, seed: int, eval_mode: bool):
  """``jit(models.generate)`` for one generator and test protocol (cached)."""
  return jax.jit(functools.partial(models.generate, generator, seed=seed, eval_mode=eval_mode))


def _write_index_html(
  path: str,
  title: str,
  rows: list[tuple[str, str, str, str | None]],
  metrics: Mapping[str, float] | None,
) -> None:
  esc = html.escape
  lines = [
    "<!DOCTYPE html>",
    "<html><head><meta charset='utf-8'>",
    f"<title>{esc(title)}</title>",
    "<style>body{font-family:sans-serif} td{padding:4px;text-align:center}"
    " img{image-rendering:pixelated;width:256px}</style></head><body>",
    f"<h2>{esc(title)}</h2>",
  ]
  if metrics:
    lines.append("<p>" + ", ".join(f"{esc(k)} = {v:.4f}" for k, v in metrics.items()) + "</p>")
  lines.append("<table><tr><th>name</th><th>input</th><th>output</th><th>target</th></tr>")
  for name, a, fake, b in rows:
    cells = [f"<td>{esc(name)}</td>"]
    for src in (a, fake, b):
      cells.append(f"<td><img src='{esc(src)}'></td>" if src else "<td>&mdash;</td>")
    lines.append("<tr>" + "".join(cells) + "</tr>")
  lines += ["</table>", "</body></html>"]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def test(config, workdir: str, *, mesh=None, log=print) -> dict:
  """The reference's ``test.py``: translate a split (``phase``) or a folder (``test_dir``).

  Restores the latest checkpoint of ``workdir``, runs the generator over up to
  ``num_test`` examples (0: all) and writes ``images/<name>_{real_A,fake_B,real_B}.png``
  plus an ``index.html`` (rows input | output | target) and ``metrics.json`` to
  ``results_dir`` (default ``workdir/results/<phase>_<step>``). Returns
  ``{'results_dir', 'index', 'step', 'num_images'[, 'L1', 'PSNR']}``.
  """
  c = config_for_workdir(config, workdir)
  validate_config(c)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  g_vars, step = restore_generator(c, workdir, mesh)
  generator = make_generator(c)
  if c.test_dir:
    source = pdata.AlignedFolder(
      c.test_dir,
      direction=c.direction,
      check_square=c.check_square,
      single=c.test_single,
      cache=False,
    )
    label = os.path.basename(os.path.normpath(c.test_dir))
  else:
    source = open_split(c, c.phase)
    label = c.phase
  out_dir = c.results_dir or os.path.join(workdir, "results", f"{label}_{step:08d}")
  write = jax.process_index() == 0  # every process computes, process 0 writes
  if write:
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
  h, w = image_size(c)
  gen = jitted_generate(generator, seed=c.seed, eval_mode=c.eval_mode)
  g_vars = jax.device_put(g_vars, mesh_lib.replicated(mesh))
  rows, fakes, reals = [], [], []
  bs = c.eval_batch_size or 8
  for b in pdata.eval_batches(
    source,
    batch_size=bs,
    size=(h, w),
    num_examples=c.num_test,
    input_nc=c.input_nc,
    output_nc=c.output_nc,
  ):
    fake = np.asarray(jax.device_get(gen(g_vars, b["A"], b["index"])))
    for r in range(len(b["index"])):
      if b["mask"][r] == 0:
        continue
      name = source.name(int(b["index"][r]))
      files = {}
      for key, img in (("real_A", b["A"][r]), ("fake_B", fake[r]), ("real_B", b["B"][r])):
        if key == "real_B" and not source.has_target:
          continue
        files[key] = f"images/{name}_{key}.png"
        if write:
          _save_png(os.path.join(out_dir, files[key]), pdata.to_uint8(img))
      rows.append((name, files["real_A"], files["fake_B"], files.get("real_B")))
      if source.has_target:
        fakes.append(fake[r])
        reals.append(np.asarray(b["B"][r]))
  metrics = paired_metrics(np.stack(fakes), np.stack(reals), c) if fakes else {}
  mode = (
    "eval mode (no dropout, running averages)"
    if c.eval_mode
    else "as in training (dropout, per-image batch-norm statistics)"
  )
  index = os.path.join(out_dir, "index.html")
  result = {
    "results_dir": out_dir,
    "index": index,
    "step": step,
    "num_images": len(rows),
    **metrics,
  }
  if not write:
    return result
  _write_index_html(index, f"pix2pix {label}: step {step}, generator run {mode}", rows, metrics)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(result, f, indent=2)
  if log:
    log(
      f"[pix2pix] wrote {len(rows)} results to {index}"
      + "".join(f", {k}={v:.4f}" for k, v in metrics.items())
    )
  return result


def paired_metrics(fake: np.ndarray, real: np.ndarray, c, *, index=None) -> dict[str, float]:
  """L1, PSNR and SSIM (images in [-1, 1]) and, for the embedded synthetic faces when a
  trained face classifier exists (``$ZOO_FACE_CLASSIFIER`` or ``runs/face_classifier``,
  made by ``python -m launch.face_classifier``), the classifier Fréchet distance FD
  between the generated and the real target faces and (``AtoB``) the attribute agreement
  ``agree/<attr>``, ``agree/mean`` of :func:`edge_attribute_agreement`.

  ``index``: the source indices of the rows of ``fake`` in split ``c.phase`` (default
  ``0 .. len(fake)-1``, the order of :func:`zoo.data.images.paired.eval_batches`)."""
  from zoo.eval import face_classifier as fc  # pylint: disable=g-import-not-at-top
  from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

  out = {k.upper(): v for k, v in em.image_metrics(fake, real, data_range=2.0).items()}
  if not (c.dataroot or c.test_dir) and c.output_nc == 3 and len(fake) >= 2:
    try:
      clf = fc.load_classifier(fc.default_classifier_workdir())
    except ZooError:
      return out  # no trained judge here: FD is skipped rather than trained on demand
    out["FD"] = float(em.classifier_frechet_distance(clf, fake, real))
    if c.direction == "AtoB":
      out.update(edge_attribute_agreement(clf, fake, c, index=index))
  return out


def edge_attribute_agreement(clf, images: np.ndarray, c, *, index=None) -> dict[str, float]:
  """``{'agree/<attr>': ..., 'agree/mean': ...}``: how often the face classifier ``clf``
  reads, on ``images`` (translations of the embedded synthetic split ``c.phase``, rows at
  source ``index``, default ``0 .. n-1``), the attributes that the edge drawings carry
  (``SyntheticEdgesFaces.EDGE_ATTRIBUTES``: face shape, hair style, eyes, mouth, glasses)
  as the source faces' true labels. Colour attributes are left out: edges do not show
  them. A generator that only paints the median face scores near chance."""
  from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

  source = open_split(c, c.phase)
  index = np.arange(len(images)) if index is None else np.asarray(index, np.int64)
  target = source.attributes(index)
  agree = em.attribute_agreement(clf.predict(images), target, source.EDGE_ATTRIBUTES)
  return {f"agree/{k}": v for k, v in agree.items()}


def export(config, workdir: str, *, mesh=None, log=print) -> dict:
  """Writes the generator in the zoo's export format (:mod:`zoo.models.export`):
  ``generator.msgpack`` + ``generator.json``.

  Output directory: ``export_dir`` (default ``workdir/export``). Load it back with
  :func:`load_exported` (or, without the pix2pix call conventions,
  :func:`zoo.models.export.load`). The export's ``info`` holds the step, ``input_nc``,
  ``image_size``, ``direction``, the test protocol (``eval_mode``, ``seed``), the value
  range and the model config.
  """
  c = config_for_workdir(config, workdir)
  validate_config(c)
  g_vars, step = restore_generator(c, workdir, mesh)
  out_dir = c.export_dir or os.path.join(workdir, "export")
  params_path, json_path = export_lib.paths(out_dir)
  result = {"params": params_path, "info": json_path, "step": step}
  if jax.process_index() != 0:
    return result
  h, w = image_size(c)
  info = {
    "step": step,
    "input_nc": int(c.input_nc),
    "image_size": [h, w],
    "direction": c.direction,
    "eval_mode": bool(c.eval_mode),
    "seed": int(c.seed),
    "value_range": [-1.0, 1.0],
    "config": model_config(c),
  }
  export_lib.save(out_dir, make_generator(c), g_vars, info=info)
  if log:
    log(f"[pix2pix] exported the step-{step} generator to {params_path} (+ {json_path})")
  return result


@dataclasses.dataclass
class ExportedGenerator:
  """A loaded export: call it on float images in [-1, 1], ``[B, H, W, input_nc]``."""

  model: models.UNetGenerator
  variables: dict
  info: dict

  def __call__(self, a, index=None, *, eval_mode: bool | None = None, seed: int | None = None):
    a = jnp.asarray(a, jnp.float32)
    index = jnp.arange(a.shape[0]) if index is None else jnp.asarray(index)
    fn = jitted_generate(
      self.model,
      seed=self.info["seed"] if seed is None else int(seed),
      eval_mode=bool(self.info["eval_mode"] if eval_mode is None else eval_mode),
    )
    return fn(self.variables, a, index)


def load_exported(path: str) -> ExportedGenerator:
  """Loads what :func:`export` wrote (``path``: the export directory or one of its files)."""
  ex = export_lib.load(path)
  if not isinstance(ex.module, models.UNetGenerator):
    raise CheckpointError(f"{path!r} holds a {type(ex.module).__name__}, not a pix2pix generator")
  missing = [k for k in ("seed", "eval_mode") if k not in ex.info]
  if missing:
    raise CheckpointError(f"{path!r}: the export's info lacks {', '.join(missing)}")
  return ExportedGenerator(model=ex.module, variables=ex.variables, info=ex.info)
