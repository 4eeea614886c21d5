"""Benchmark of the GAN families' training steps: the zoo's jitted step vs a PyTorch reference.

For every row (family x configuration x loss) this builds the zoo's own train step from
the family's task class and config, exactly as ``zoo.training.loop`` compiles it
(``jax.jit`` over the 1-D data mesh, state replicated and donated, the step's key
``fold_in(key, step)``), and in the same process a PyTorch re-implementation of the same
networks, losses and update order written for the benchmark only
(``benchmarks/torch_gans.py``: pix2pix, DCGAN-CLS; ``benchmarks/torch_progressive.py``:
ProGAN, StyleGAN, T2F). The two are timed in alternating rounds (JAX, PyTorch, then a large
``jnp.dot`` / ``torch.mm``, the machine's matmul limit under the same load), ``--repeats``
rounds after one warm-up step each; the table reports medians.

Rows (defaults; see ``--help`` for the flags that pick them):

* pix2pix: 256x256 batch 1 with ngf = ndf = 64 (the reference's setting, config
  ``:paper``) and 64x64 batch 8 with ngf = ndf = 32 (the default config); U-Net +
  70x70 PatchGAN, vanilla cGAN + 100 L1, batch norm, dropout.
* dcgan_cls: 64x64 with the paper's widths (config ``gan_int_cls,paper``: ngf = ndf = 64,
  batch 64), GAN-INT-CLS; the caption embeddings are random vectors of the zoo encoder's
  size (``embed_dim`` 256; the frozen encoder is not part of the step).
* progan: the last stage (after its fade) of the default config grown to 32x32 and
  64x64, batch 16: the reference recipe (WGAN-GP + drift, ``wgangp``) and the
  non-saturating logistic loss with R1 (gamma 10) on every step (``r1``) and lazily,
  every ``--lazy-interval`` steps (``r1lazy``, with StyleGAN2's Adam correction).
* stylegan: the same resolutions, ``r1`` and ``r1lazy`` (its config's recipe).
* t2f: the default config (LSTM caption encoder trained with G, conditioning
  augmentation, ProGAN G and D with the text embedding entering D's last block) at its
  final 32x32 stage after the fade, batch 16: WGAN-GP + drift, the matching-aware
  ``D(real, wrong caption)`` term weighted 1/2 (``loss.balanced_mismatch``) and the CA's
  KL (weight 1) in G's loss. The captions are the embedded captioned faces', encoded
  with the vocabulary of the config's full training captions (only batch 0 is read);
  the PyTorch side gets the same word ids. Evaluation is off (no face classifier).

A lazy row's timing unit is a block of ``--lazy-interval`` consecutive steps (exactly one
of which applies R1) and the reported time is the block's mean per step. As in the loop,
the R1 step and the R1-free step are two compiled programs: the compile column is both,
and the FLOPs are their mean over the block.

Columns:
  compile      lowering + XLA compilation of the step (ahead of time, no cache);
  s/step       median over the rounds; img/s = batch / s/step;
  speedup      PyTorch s/step / JAX s/step (> 1: JAX faster);
  GFLOP        XLA's ``cost_analysis()['flops']`` of the compiled step (per step);
  GFLOP/s      GFLOP / s/step, and its share of the same rounds' matmul rate (JAX against
               ``jnp.dot``, PyTorch against ``torch.mm``, 2048^3 float32, best of 3); the
               PyTorch figure uses XLA's count for the same architecture;
  RSS peak     ``ru_maxrss`` after the row: the *process-wide* high-water mark of the
               resident set (both frameworks, all rows so far), not the row's own peak;
  params       trainable G / D parameters of each side (batch-norm statistics excluded).

Usage::

  python benchmarks/gan_step.py --families pix2pix,dcgan_cls,progan,stylegan --repeats 5
  python benchmarks/gan_step.py --families pix2pix --pix2pix 64x8 --repeats 3
  python benchmarks/gan_step.py --families progan --prog-resolutions 32 --progan-losses wgangp
  python benchmarks/gan_step.py --families dcgan_cls --dcgan-batch 16 --no-torch
  python benchmarks/gan_step.py --families t2f --repeats 3

Process settings (before JAX / PyTorch start), as ``benchmarks/sketch_rnn_step.py``:
``OMP_WAIT_POLICY=PASSIVE`` (PyTorch's OpenMP threads sleep instead of spinning on a
shared CPU) and ``--malloc-tuning`` (glibc keeps freed large blocks for reuse).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks.bench_common import (  # noqa: E402
  DotPeak,
  cpu_model,
  git_head,
  load,
  med,
  release_memory,
  tune_malloc,
  versions,
)

FAMILIES = ("pix2pix", "dcgan_cls", "progan", "stylegan", "t2f")
PROGAN_LOSSES = ("wgangp", "r1", "r1lazy")
STYLEGAN_LOSSES = ("r1", "r1lazy")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument(
    "--families", default=",".join(FAMILIES), help="comma list of " + ",".join(FAMILIES)
  )
  p.add_argument("--repeats", type=int, default=5, help="timed rounds per row (median)")
  p.add_argument(
    "--pix2pix",
    default="256x1,64x8",
    help="comma list of SIZExBATCH; widths from the config variant of that size "
    "(256: ':paper', ngf = ndf = 64; otherwise the default, ngf = ndf = 32)",
  )
  p.add_argument("--pix2pix-ngf", type=int, default=0, help="override ngf (0: the config's)")
  p.add_argument("--pix2pix-ndf", type=int, default=0, help="override ndf (0: the config's)")
  p.add_argument("--dcgan-resolutions", default="64", help="comma list of 32, 64, 128")
  p.add_argument("--dcgan-batch", type=int, default=0, help="0: the config's (64)")
  p.add_argument("--dcgan-variant", default="gan_int_cls,paper", help="launch/configs/dcgan_cls.py")
  p.add_argument("--dcgan-embed-dim", type=int, default=256, help="caption embedding size")
  p.add_argument("--prog-resolutions", default="32,64", help="ProGAN / StyleGAN final sides")
  p.add_argument("--prog-batch", type=int, default=0, help="0: the config's (16)")
  p.add_argument("--progan-losses", default=",".join(PROGAN_LOSSES))
  p.add_argument("--stylegan-losses", default=",".join(STYLEGAN_LOSSES))
  p.add_argument("--t2f-batch", type=int, default=0, help="0: the T2F config's (16)")
  p.add_argument("--lazy-interval", type=int, default=16, help="R1 interval of the r1lazy rows")
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch references")
  p.add_argument("--torch-threads", type=int, default=0, help="0: the core count")
  p.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE", "unset"))
  p.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--dot-size", type=int, default=2048)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
  p.add_argument("--json", default="", help="also write all results to this file")
  return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else parse_args([])
if __name__ == "__main__":
  if ARGS.omp_wait_policy != "unset":
    os.environ["OMP_WAIT_POLICY"] = ARGS.omp_wait_policy
  if ARGS.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()
MALLOC_TUNED = tune_malloc() if (__name__ == "__main__" and ARGS.malloc_tuning) else False

import jax
import numpy as np

jax.config.update("jax_enable_compilation_cache", False)

from launch.configs import dcgan_cls as dcgan_cfg
from launch.configs import pix2pix as p2p_cfg
from launch.configs import progan as progan_cfg
from launch.configs import stylegan as stylegan_cfg
from launch.configs import t2f as t2f_cfg
from zoo.gan.progressive import make_schedule
from zoo.tasks import dcgan_cls as dcgan_task
from zoo.tasks import pix2pix as p2p_task
from zoo.tasks import progan as progan_task
from zoo.tasks import stylegan as stylegan_task
from zoo.tasks import t2f as t2f_task
from zoo.training import mesh as mesh_lib


def rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def count(tree) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def _flops(cost) -> float:
  """``cost_analysis()`` returns a dict (or, in older JAX, a list of one dict)."""
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  try:
    return float(cost.get("flops", float("nan")))
  except AttributeError:
    return float("nan")


# ----------------------------------------------------------------------------- JAX


class JaxStep:
  """A task's ``train_step`` compiled like ``zoo.training.loop`` (state donated; one
  program per step variant where the task has ``step_variant``, as the loop does).

  Args:
    train_step: ``(state, batch, rng, step[, variant=...]) -> (state, metrics)`` (stage
      bound).
    init_state: ``rng -> state``.
    batch: one host batch (numpy pytree), reused for every step.
    step0: the global step of the first call (a lazy row's first block starts on an
      R1 step when ``step0 % interval == 0``).
    interval: steps per timing block (a lazy row's R1 interval): compile time and FLOPs
      cover the block's programs, FLOPs averaged per step.
    step_variant: the task's ``step_variant`` (``step -> variant``), or None.
  """

  def __init__(
    self,
    *,
    train_step,
    init_state,
    batch,
    step0: int,
    mesh,
    seed: int,
    interval: int = 1,
    step_variant: Callable[[int], Any] | None = None,
  ):
    self.mesh = mesh
    repl, dsh = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
    state = jax.jit(init_state, out_shardings=repl)(jax.random.key(seed))
    jax.block_until_ready(state)
    self.g_params = count(state["g"]["params"])
    self.d_params = count(state["d"]["params"])
    train_key = jax.random.key(seed + 1)
    self.batch = mesh_lib.to_global(batch, mesh)
    self.variant_of = step_variant or (lambda step: None)
    self.programs: dict[Any, Any] = {}
    self.compile_s, self.flops = 0.0, 0.0
    for step in range(step0, step0 + interval):
      v = self.variant_of(step)
      if v not in self.programs:
        kw = {} if step_variant is None else {"variant": v}

        def step_fn(state, batch, step, kw=kw):
          return train_step(state, batch, jax.random.fold_in(train_key, step), step, **kw)

        jitted = jax.jit(
          step_fn,
          in_shardings=(repl, dsh, repl),
          out_shardings=(repl, repl),
          donate_argnums=(0,),
        )
        t0 = time.perf_counter()
        step_arr = mesh_lib.replicate(np.int32(step), mesh)
        self.programs[v] = jitted.lower(state, self.batch, step_arr).compile()
        self.compile_s += time.perf_counter() - t0
      self.flops += _flops(self.programs[v].cost_analysis()) / interval
    self.state = state
    self.step = step0
    self.last_loss = float("nan")

  def __call__(self, n: int = 1) -> float:
    """Mean seconds per step over ``n`` consecutive steps."""
    t0 = time.perf_counter()
    metrics = None
    for _ in range(n):
      step = mesh_lib.replicate(np.int32(self.step), self.mesh)
      program = self.programs[self.variant_of(self.step)]
      self.state, metrics = program(self.state, self.batch, step)
      self.step += 1
    jax.block_until_ready((self.state, metrics))
    dt = (time.perf_counter() - t0) / n
    self.last_loss = float(metrics["loss"])
    return dt


def last_stage_step(task, *, seed: int, interval: int = 1, batch=None) -> JaxStep:
  """A staged task's (ProGAN, StyleGAN, T2F) step at its last stage after the fade
  (alpha = 1), from a step that is a multiple of ``interval``; ``batch`` defaults to
  that stage's batch 0."""
  sched = task.schedule
  stage = sched.num_stages - 1
  first = sched.starts[stage] + sched.fades[stage] + 1
  return JaxStep(
    train_step=functools.partial(task.train_step, stage=stage),
    init_state=functools.partial(task.init_state, stage=stage),
    batch=task.stream(stage).batch(0) if batch is None else batch,
    step0=-(-first // interval) * interval,
    mesh=task.mesh,
    seed=seed,
    interval=interval,
    step_variant=task.step_variant,
  )


def pix2pix_step(task, *, seed: int) -> JaxStep:
  """pix2pix's step on its batch 0 (pix2pix has no stages)."""
  return JaxStep(
    train_step=task.train_step,
    init_state=task.init_state,
    batch=task.stream.batch(0),
    step0=1,
    mesh=task.mesh,
    seed=seed,
  )


class TorchMMPeak:
  """GFLOP/s of one ``n x n x n`` float32 ``torch.mm`` (best of 3), on the device the
  PyTorch references run on."""

  def __init__(self, torch_mod, n: int):
    from benchmarks import torch_gans  # pylint: disable=g-import-not-at-top

    self.torch, self.n = torch_mod, n
    self.device, self.sync = torch_gans.device(), torch_gans.sync
    g = torch_mod.Generator().manual_seed(0)
    self.a = torch_mod.randn(n, n, generator=g).to(self.device)
    self.b = torch_mod.randn(n, n, generator=g).to(self.device)
    torch_mod.mm(self.a, self.b)
    self.sync(self.device)

  def __call__(self) -> float:
    best = float("inf")
    for _ in range(3):
      t0 = time.perf_counter()
      self.torch.mm(self.a, self.b)
      self.sync(self.device)
      best = min(best, time.perf_counter() - t0)
    return 2 * self.n**3 / best / 1e9


# ------------------------------------------------------------------------------ rows


@dataclasses.dataclass
class Row:
  family: str
  config: str  # resolution, batch, widths
  loss: str
  batch: int
  interval: int  # timing block: the R1 interval of a lazy row, else 1
  make_jax: Callable[[], JaxStep]
  make_torch: Callable[[], Callable[[], None]] | None
  torch_note: str = ""


class _StubEncoder:
  """What ``DCGANCLSTask`` needs of its caption encoder for ``init_state`` / ``train_step``:
  the embedding size. The training batch carries pre-computed embeddings (the zoo computes
  them once with the frozen encoder), so the encoder itself is not part of the step."""

  def __init__(self, embed_dim: int):
    self.embed_dim = embed_dim


def _torch_progressive():
  from benchmarks import torch_progressive  # pylint: disable=g-import-not-at-top

  return torch_progressive


def pix2pix_rows(args, mesh) -> list[Row]:
  rows = []
  for spec in filter(None, args.pix2pix.split(",")):
    size, batch = (int(x) for x in spec.lower().split("x"))
    c = p2p_cfg.get_config("paper" if size >= 256 else "default")
    c.crop_size = size
    c.load_size = max(size, round(size * 286 / 256))
    c.batch_size = batch
    if args.pix2pix_ngf:
      c.ngf = args.pix2pix_ngf
    if args.pix2pix_ndf:
      c.ndf = args.pix2pix_ndf
    c.synthetic_num_train = max(8, batch)  # only batch 0 is used
    c.synthetic_num_val = 2
    c.synthetic_num_test = 2
    c.num_workers = 1
    n_layers = 3 if c.netD == "basic" else c.n_layers_D

    def make_jax(c=c):
      return pix2pix_step(p2p_task.build_task(c, mesh), seed=args.seed)

    def make_torch(c=c, size=size, batch=batch, n_layers=n_layers):
      from benchmarks import torch_gans  # pylint: disable=g-import-not-at-top

      return torch_gans.pix2pix_step(
        size,
        batch,
        ngf=c.ngf,
        ndf=c.ndf,
        n_layers_D=n_layers,
        norm=c.norm,
        input_nc=c.input_nc,
        output_nc=c.output_nc,
        use_dropout=not c.no_dropout,
        gan_mode=c.gan_mode,
        lambda_l1=c.lambda_L1,
        lr=c.lr,
        b1=c.beta1,
        b2=c.beta2,
      )

    rows.append(
      Row(
        "pix2pix",
        f"{size}x{size} b{batch} ngf{c.ngf} ndf{c.ndf}",
        f"{c.gan_mode}+{c.lambda_L1:g}L1",
        batch,
        1,
        make_jax,
        make_torch,
      )
    )
  return rows


def dcgan_rows(args, mesh) -> list[Row]:
  rows = []
  for res in (int(r) for r in filter(None, args.dcgan_resolutions.split(","))):
    c = dcgan_cfg.get_config(args.dcgan_variant)
    c.model.resolution = res
    if args.dcgan_batch:
      c.batch_size = args.dcgan_batch
    c.data.num_faces = max(c.data.num_faces, c.batch_size)
    c.eval.num_samples = 0
    batch = c.batch_size
    e = args.dcgan_embed_dim
    obj = ("GAN-INT-CLS" if c.objective.int_beta else "GAN-CLS") if c.objective.cls else "GAN"
    if not c.objective.cls and c.objective.int_beta:
      obj = "GAN-INT"

    def make_jax(c=c, res=res, batch=batch, e=e):
      task = dcgan_task.DCGANCLSTask(c, mesh, encoder=_StubEncoder(e), classifier=None, log=None)
      rng = np.random.default_rng(args.seed)
      host = {
        "image": rng.uniform(-1, 1, (batch, res, res, c.model.num_channels)).astype(np.float32),
        "emb": rng.standard_normal((batch, e)).astype(np.float32),
      }
      return JaxStep(
        train_step=task.train_step,
        init_state=task.init_state,
        batch=host,
        step0=1,
        mesh=mesh,
        seed=args.seed,
      )

    def make_torch(c=c, res=res, batch=batch, e=e):
      from benchmarks import torch_gans  # pylint: disable=g-import-not-at-top

      if c.model.minibatch_kernels or c.objective.feature_matching:
        raise NotImplementedError("minibatch discrimination / feature matching")
      return torch_gans.dcgan_cls_step(
        res,
        batch,
        ngf=c.model.ngf,
        ndf=c.model.ndf,
        latent_dim=c.model.latent_dim,
        embed_dim=e,
        proj_dim=c.model.proj_dim,
        num_channels=c.model.num_channels,
        cls=bool(c.objective.cls),
        int_beta=float(c.objective.int_beta),
        lr=c.optim.lr,
        b1=c.optim.b1,
        b2=c.optim.b2,
      )

    rows.append(
      Row(
        "dcgan_cls",
        f"{res}x{res} b{batch} ngf{c.model.ngf} ndf{c.model.ndf} emb{e}",
        obj,
        batch,
        1,
        make_jax,
        make_torch,
      )
    )
  return rows


def _set_loss(c, loss: str, interval: int) -> None:
  if loss == "wgangp":
    return  # ProGAN's config is the reference recipe
  c.loss.d_loss, c.loss.g_loss = "logistic", "nonsaturating"
  c.loss.reg, c.loss.reg_weight, c.loss.drift = "r1", 10.0, 0.0
  c.loss.reg_interval = interval if loss == "r1lazy" else 1
  c.optim.lazy_adam_correction = loss == "r1lazy"


def progressive_rows(family: str, args, mesh) -> list[Row]:
  rows = []
  cfg_mod = progan_cfg if family == "progan" else stylegan_cfg
  task_cls = progan_task.ProGANTask if family == "progan" else stylegan_task.StyleGANTask
  losses = args.progan_losses if family == "progan" else args.stylegan_losses
  for res in (int(r) for r in filter(None, args.prog_resolutions.split(","))):
    for loss in filter(None, losses.split(",")):
      c = cfg_mod.get_config()
      c.schedule.resolution = (res, res)
      if args.prog_batch:
        c.schedule.batch_sizes = (args.prog_batch,)
      interval = args.lazy_interval if loss == "r1lazy" else 1
      _set_loss(c, loss, interval)
      c.data.num_train = max(64, max(c.schedule.batch_sizes))
      c.eval.fd = "off"
      if family == "stylegan":
        c.mixing.prob = 0.9  # the paper's, as the PyTorch step mixes (the CPU config: 0)
      m = c.model

      def make_jax(c=c, interval=interval):
        task = task_cls(c, mesh, log=None)
        return last_stage_step(task, seed=args.seed, interval=interval)

      batch = make_schedule(c).batch_sizes[-1]  # the last stage's minibatch
      common = {"fmap_base": m.fmap_base, "fmap_max": m.fmap_max, "latent_dim": m.latent_dim}

      if family == "progan":

        def make_torch(res=res, batch=batch, c=c, common=common):
          return _torch_progressive().progan_step(
            res, batch, reg=c.loss.reg, reg_interval=c.loss.reg_interval, **common
          )

      else:

        def make_torch(res=res, batch=batch, c=c, common=common, w_dim=m.w_dim):
          return _torch_progressive().stylegan_step(
            res, batch, reg_interval=c.loss.reg_interval, w_dim=w_dim, **common
          )

      name = {"wgangp": "WGAN-GP+drift", "r1": "NS+R1 every step"}.get(
        loss, f"NS+R1 every {interval} (lazy)"
      )
      rows.append(
        Row(
          family,
          f"{res}x{res} b{batch} fmap{m.fmap_base}/{m.fmap_max} z{m.latent_dim}",
          name,
          batch,
          interval,
          make_jax,
          make_torch,
        )
      )
  return rows


def t2f_rows(args, mesh) -> list[Row]:
  """The T2F row: the default config (LSTM encoder) at its last stage, after the fade."""
  c = t2f_cfg.get_config()
  if args.t2f_batch:
    c.schedule.batch_sizes = (args.t2f_batch,)
  sched = make_schedule(c)
  batch = sched.batch_sizes[-1]
  stage = sched.num_stages - 1
  res = sched.resolution(stage)[0]
  # The vocabulary of the config's whole training data (a real run's embedding table);
  # the task itself reads a tiny source (captions only, no image rendered) for batch 0.
  vocab = t2f_task.build_vocabulary(c)
  c.data.num_faces = -(-batch // c.data.captions_per_face)
  c.eval.num_samples = 0
  c.eval.fd = False
  m, lc = c.model, c.loss
  source = t2f_task.training_source(c)
  captions = [source.caption(i)[0] for i in range(batch)]
  tokens, lengths = vocab.encode(captions, c.text.max_len)

  def make_jax(c=c):
    task = t2f_task.T2FTask(c, mesh, vocab=vocab, classifier=None, log=None, source=source)
    return last_stage_step(task, seed=args.seed)

  def make_torch(c=c):
    if m.text_encoder != "lstm" or m.d_condition != "embedding":
      raise NotImplementedError("the PyTorch T2F has the LSTM encoder and D on the embedding")
    if (lc.d_loss, lc.g_loss, lc.reg, lc.reg_interval, lc.n_critic) != ("wgan", "wgan", "gp", 1, 1):
      raise NotImplementedError("the PyTorch T2F has WGAN-GP, every step, one critic")
    if not lc.matching_aware or m.normalize_latents or not m.use_pixelnorm:
      raise NotImplementedError("the PyTorch T2F has the matching-aware term and pixel norm")
    return _torch_progressive().t2f_step(
      res,
      batch,
      vocab_size=len(vocab),
      tokens=tokens,
      lengths=lengths,
      max_len=c.text.max_len,
      latent_dim=m.latent_dim,
      ca_dim=m.ca_dim,
      embed_dim=m.embed_dim,
      hidden_dim=m.hidden_dim,
      num_layers=m.num_layers,
      cond_dim=m.cond_dim,
      fmap_base=m.fmap_base,
      fmap_max=m.fmap_max,
      kl_weight=float(lc.kl_weight),
      balanced_mismatch=bool(lc.balanced_mismatch),
      cond_grad=bool(lc.cond_grad),
    )

  mismatch = "D(wrong)/2" if lc.balanced_mismatch else "D(wrong)"
  return [
    Row(
      "t2f",
      f"{res}x{res} b{batch} fmap{m.fmap_base}/{m.fmap_max} z{m.latent_dim}+ca{m.ca_dim} "
      f"lstm{m.num_layers}x{m.hidden_dim} L{c.text.max_len} V{len(vocab)}",
      f"WGAN-GP+drift+{mismatch}+KL",
      batch,
      1,
      make_jax,
      make_torch,
    )
  ]


# ------------------------------------------------------------------------------ main


def _fmt(x, spec=".3f", none="-"):
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return none
  return format(x, spec)


def _params(g, d):
  if g is None or d is None:
    return "-"
  return f"{g / 1e6:.3f}M / {d / 1e6:.3f}M"


def _diff(a, b):
  if a is None or b is None or not a:
    return "-"
  return f"{100 * (b - a) / a:+.2f}%"


def torch_param_counts(step) -> tuple[int | None, int | None]:
  """``(G, D)`` trainable parameters of a PyTorch step: its ``g_params`` / ``d_params``
  attributes (``torch_gans``), else the ``requires_grad`` parameters of its ``g`` / ``d``
  modules (``torch_progressive``; T2F's G includes its LSTM encoder and CA, less the
  frozen zero ``bias_hh`` of ``nn.LSTM``, which flax's LSTM cell does not have); None
  when it carries neither."""
  out = []
  for name in ("g", "d"):
    n = getattr(step, f"{name}_params", None)
    module = getattr(step, name, None)
    if not isinstance(n, int) and hasattr(module, "parameters"):
      n = sum(p.numel() for p in module.parameters() if p.requires_grad)
    out.append(n if isinstance(n, int) else None)
  return out[0], out[1]


def run_row(row: Row, args, dot, torch_mod, mm) -> dict:
  out: dict[str, Any] = {
    "family": row.family,
    "config": row.config,
    "loss": row.loss,
    "batch": row.batch,
  }
  out["interval"] = row.interval
  print(f"\n## {row.family} {row.config} {row.loss}", flush=True)
  js = row.make_jax()
  out.update(
    compile_s=js.compile_s, gflop=js.flops / 1e9, jax_g_params=js.g_params, jax_d_params=js.d_params
  )
  print(
    f"  JAX: compile {js.compile_s:.1f} s, G {js.g_params} / D {js.d_params} params, "
    f"{js.flops / 1e9:.2f} GFLOP/step (XLA)",
    flush=True,
  )
  ts = None
  if torch_mod is not None and row.make_torch is not None:
    try:
      ts = row.make_torch()
      out["torch_g_params"], out["torch_d_params"] = torch_param_counts(ts)
      desc = getattr(ts, "describe", "")
      print(
        f"  PyTorch: {desc + '; ' if desc else ''}G {out['torch_g_params']} / "
        f"D {out['torch_d_params']} params",
        flush=True,
      )
    except Exception as e:  # noqa: BLE001  (a missing or broken reference: '-' columns)
      out["torch_error"] = f"{type(e).__name__}: {e}"
      print(f"  PyTorch reference unavailable: {out['torch_error']}", flush=True)
      ts = None

  def torch_unit(ts) -> float:
    t0 = time.perf_counter()
    for _ in range(row.interval):
      ts()
    return (time.perf_counter() - t0) / row.interval

  # Warm-up: one step each (first execution, allocations, page faults).
  js(1)
  if ts is not None:
    try:
      ts()
    except Exception as e:  # noqa: BLE001
      out["torch_error"] = f"{type(e).__name__}: {e}"
      print(f"  PyTorch step failed: {out['torch_error']}", flush=True)
      traceback.print_exc()
      ts = None
  jt, tt, dots, mms, loads = [], [], [], [], []
  for r in range(args.repeats):
    jt.append(js(row.interval))
    if ts is not None:
      tt.append(torch_unit(ts))
    dots.append(dot())
    if mm is not None:
      mms.append(mm())
    loads.append(os.getloadavg()[0])
    print(
      f"    round {r}: jax {jt[-1]:.4f}s"
      + (f" torch {tt[-1]:.4f}s" if tt else "")
      + f" dot {dots[-1]:.0f} GF/s"
      + (f" mm {mms[-1]:.0f} GF/s" if mms else "")
      + f" load {loads[-1]:.2f}",
      flush=True,
    )
  t = med(jt)
  out.update(
    jax_s=t,
    jax_all=[round(x, 5) for x in jt],
    jax_img_s=row.batch / t,
    jax_gflops=js.flops / t / 1e9,
    dot_gflops=med(dots),
    jax_frac=js.flops / t / 1e9 / med(dots),
    jax_loss=js.last_loss,
    load_med=med(loads),
  )
  if tt:
    t2 = med(tt)
    out.update(
      torch_s=t2,
      torch_all=[round(x, 5) for x in tt],
      torch_img_s=row.batch / t2,
      speedup=t2 / t,
      speedup_per_round=med([b / a for a, b in zip(jt, tt)]),
      torch_gflops=js.flops / t2 / 1e9,
      mm_gflops=med(mms) if mms else float("nan"),
      torch_frac=(js.flops / t2 / 1e9 / med(mms)) if mms else float("nan"),
    )
  out["rss_peak_mib"] = rss_mib()
  print(
    f"  => JAX {t:.4f} s/step ({row.batch / t:.1f} img/s)"
    + (f", PyTorch {out['torch_s']:.4f} s/step, speedup {out['speedup']:.2f}x" if tt else "")
    + f"; RSS peak {out['rss_peak_mib']:.0f} MiB",
    flush=True,
  )
  del js, ts
  release_memory()
  return out


def print_tables(results: list[dict]) -> None:
  print("\n## Results\n")
  print(
    "| family | config | loss | JAX compile (s) | JAX s/step | JAX img/s | PyTorch s/step "
    "| PyTorch img/s | JAX speedup | GFLOP/step | JAX GFLOP/s | % of jnp.dot | PyTorch GFLOP/s "
    "| % of torch.mm | RSS peak (MiB) | load |"
  )
  print("|" + "---|" * 16)
  for r in results:
    if "jax_s" not in r:
      print(f"| {r['family']} | {r['config']} | {r['loss']} | failed: {r.get('error', '')} |")
      continue
    print(
      f"| {r['family']} | {r['config']} | {r['loss']} | {r['compile_s']:.1f} | "
      f"{r['jax_s']:.4f} | {r['jax_img_s']:.1f} | {_fmt(r.get('torch_s'), '.4f')} | "
      f"{_fmt(r.get('torch_img_s'), '.1f')} | {_fmt(r.get('speedup'), '.2f')}"
      f"{'x' if 'speedup' in r else ''} | {r['gflop']:.2f} | {r['jax_gflops']:.1f} | "
      f"{100 * r['jax_frac']:.0f}% ({r['dot_gflops']:.0f}) | "
      f"{_fmt(r.get('torch_gflops'), '.1f')} | "
      + (
        f"{100 * r['torch_frac']:.0f}% ({r['mm_gflops']:.0f})"
        if r.get("torch_frac") == r.get("torch_frac") and "torch_frac" in r
        else "-"
      )
      + f" | {r['rss_peak_mib']:.0f} | {r['load_med']:.2f} |"
    )
  print("\nParameters (trainable G / D; batch-norm running statistics excluded):\n")
  print("| family | config | JAX G / D | PyTorch G / D | G diff | D diff |")
  print("|---|---|---|---|---|---|")
  seen = set()
  for r in results:
    key = (r["family"], r["config"])
    if key in seen or "jax_g_params" not in r:
      continue
    seen.add(key)
    tg, td = r.get("torch_g_params"), r.get("torch_d_params")
    print(
      f"| {r['family']} | {r['config']} | {_params(r['jax_g_params'], r['jax_d_params'])} | "
      f"{_params(tg, td)} | {_diff(r['jax_g_params'], tg)} | {_diff(r['jax_d_params'], td)} |"
    )
  errors = {(r["family"], r.get("torch_error")) for r in results if r.get("torch_error")}
  for fam, err in sorted(errors):
    print(f"\nPyTorch reference for {fam} unavailable: {err}")


def main(args):
  families = [f for f in args.families.split(",") if f]
  for f in families:
    if f not in FAMILIES:
      raise SystemExit(f"unknown family {f!r}; expected some of {FAMILIES}")
  torch_mod = None
  if not args.no_torch:
    try:
      import torch as torch_mod  # benchmark-only dependency

      torch_mod.set_num_threads(args.torch_threads or os.cpu_count())
    except ImportError as e:
      print(f"PyTorch unavailable ({e}): JAX numbers only")
      torch_mod = None
  mesh = mesh_lib.make_mesh()
  info = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "versions": versions(torch_mod),
    "command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
    "jax_devices": str(jax.devices()),
    "malloc_tuning": MALLOC_TUNED,
    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    "torch_threads": torch_mod.get_num_threads() if torch_mod is not None else None,
    "load_start": load(),
    "git": git_head(),
  }
  print("# GAN train step benchmark")
  for k, v in info.items():
    print(f"- {k}: {v}")
  sys.stdout.flush()

  rows: list[Row] = []
  for f in families:
    if f == "pix2pix":
      rows += pix2pix_rows(args, mesh)
    elif f == "dcgan_cls":
      rows += dcgan_rows(args, mesh)
    elif f == "t2f":
      rows += t2f_rows(args, mesh)
    else:
      rows += progressive_rows(f, args, mesh)
  dot = DotPeak(args.dot_size)
  mm = TorchMMPeak(torch_mod, args.dot_size) if torch_mod is not None else None
  results = []
  for row in rows:
    try:
      results.append(run_row(row, args, dot, torch_mod, mm))
    except Exception as e:  # noqa: BLE001  (report the row as failed, go on)
      traceback.print_exc()
      results.append(
        {
          "family": row.family,
          "config": row.config,
          "loss": row.loss,
          "error": f"{type(e).__name__}: {e}",
        }
      )
      release_memory()
  print_tables(results)
  print(f"\nload at end: {load()}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"info": info, "results": results}, f, indent=1, default=str)


if __name__ == "__main__":
  main(ARGS)
