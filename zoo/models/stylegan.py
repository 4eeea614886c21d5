"""StyleGAN networks (Karras et al., "A Style-Based Generator Architecture for Generative
Adversarial Networks", CVPR 2019), flax.linen, NHWC, grown like ProGAN.

Generator = mapping network ``z -> w`` + synthesis network ``[w_0 .. w_{L-1}] -> image``.

* Mapping (:class:`Mapping`): pixel-normalised ``z`` (concatenated with an embedded label
  when conditional) through ``mapping_layers`` equalized dense layers with leaky ReLU and
  learning-rate multiplier 0.01. The generator tracks ``w_avg``, a moving average of the
  ``w`` it maps (collection ``'stats'``), for the truncation trick.
* Synthesis (:class:`Synthesis`): a learned constant at the start resolution, then per
  resolution two layers, each ``(conv) -> noise -> bias -> leaky ReLU -> AdaIN(w_i)``;
  from the second resolution on, the first layer is nearest 2x upsampling, a 3x3 conv
  and the ``[1, 2, 1]`` blur. So stage ``s`` has ``L = 2 (s + 1)`` style inputs; layer
  ``i`` belongs to resolution ``start * 2**(i // 2)`` whatever the stage, so truncation
  cutoffs, style mixing and edits name the same layer in every stage.
* Discriminator (:class:`Discriminator`): ProGAN's, with the blur before each 2x average
  pooling; conditional variants: a projection discriminator (Miyato & Koyama 2018, the
  inner product of an embedded label with D's last hidden features added to the score)
  and an ACGAN head (Odena et al. 2017, class logits next to the score).

Growth is ProGAN's parameter-tree surgery (:mod:`zoo.gan.growth`): parameter names depend
on the resolution (``block_<h>x<w>``, ``to_rgb_<h>x<w>``, ``from_rgb_<h>x<w>``), the
mapping network is the same module at every stage, and with ``alpha = 0`` the grown G
outputs the nearest-2x-upsampled image of the previous stage and the grown D scores the
2x average-pooled input as the previous D did.

Synthesis features: every layer's output is sown into the ``'intermediates'`` collection
as ``layer<i>`` (``apply(..., mutable=['intermediates'])``) for feature-map views, and
``edits={i: delta}`` adds ``delta`` (broadcastable to ``[B, H_i, W_i, C_i]``) to layer
``i``'s output before the next layer reads it, for local edits. Every layer's style (the
AdaIN scales and biases ``[B, 2 C_i]`` its affine map makes of ``w_i``: the "style space"
S of Wu et al. 2021) is sown as ``style<i>``, and ``style_edits={i: delta}`` adds
``delta`` (broadcastable to ``[B, 2 C_i]``) to it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping as MappingT
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import ConfigError
from zoo.models.layers import (
  AdaIN,
  EqualizedConv,
  EqualizedDense,
  NoiseInjection,
  blur,
  downsample_2x,
  pixel_norm,
  upsample_2x,
)
from zoo.models import progan as progan_models
from zoo.models.progan import (
  D_WIDTH_KEYS,
  _check_stage,
  channels_at,
  check_start,
  discriminator_widths,
  lerp,
  resolution_at,
  resolution_name,
)

Array = jax.Array

__all__ = [
  "CONDITIONS",
  "NOISE_MODES",
  "Discriminator",
  "Generator",
  "Mapping",
  "Synthesis",
  "init_variables",
  "layer_resolution",
  "make_stylegan",
  "mix_styles",
  "num_layers",
  "truncate",
]

LRELU_SLOPE = 0.2
NOISE_MODES = ("random", "zero")
CONDITIONS = ("none", "projection", "acgan")


def _lrelu(x: Array) -> Array:
  return jax.nn.leaky_relu(x, LRELU_SLOPE)


def num_layers(stage: int) -> int:
  """Style inputs of the synthesis network at ``stage``: two per resolution."""
  return 2 * (int(stage) + 1)


def layer_resolution(start: Sequence[int], layer: int) -> tuple[int, int]:
  """``(H, W)`` of synthesis layer ``layer``'s output."""
  return resolution_at(start, int(layer) // 2)


def truncate(ws: Array, w_avg: Array, psi: Any, cutoff: int | None = None) -> Array:
  """The truncation trick in W (StyleGAN Sec. 4.4 / Eq. 8): ``w_avg + psi (w - w_avg)``
  for the layers below ``cutoff`` (None: every layer), ``ws`` unchanged above it.

  ``ws [B, L, W]``, ``w_avg [W]``, ``psi`` a scalar (``psi = 1``: no truncation,
  ``psi = 0``: every image is the average one).
  """
  out = w_avg + (ws - w_avg) * jnp.asarray(psi, ws.dtype)
  if cutoff is None:
    return out
  keep = (jnp.arange(ws.shape[1]) < cutoff)[None, :, None]
  return jnp.where(keep, out, ws)


def mix_styles(w1: Array, w2: Array, crossover: Array, num: int) -> Array:
  """Style mixing (StyleGAN Sec. 3.1): ``[B, num, W]`` styles, ``w1`` for the layers
  before each example's ``crossover`` and ``w2`` from it on (``crossover >= num``: no
  mixing). ``w1``, ``w2``: ``[B, W]``; ``crossover``: int ``[B]``."""
  idx = jnp.arange(num)[None, :, None]
  return jnp.where(idx < jnp.asarray(crossover)[:, None, None], w1[:, None], w2[:, None])


# --------------------------------------------------------------------------
# mapping network
# --------------------------------------------------------------------------


class Mapping(nn.Module):
  """``z [B, Z]`` (and a label ``[B, label_dim]`` when ``label_dim > 0``) -> ``w [B, w_dim]``."""

  latent_dim: int = 512
  w_dim: int = 512
  num_layers: int = 8
  hidden: int = 512
  lr_multiplier: float = 0.01
  label_dim: int = 0
  normalize_latents: bool = True

  @nn.compact
  def __call__(self, z: Array, label: Array | None = None) -> Array:
    if z.ndim != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(f"z must be [B, {self.latent_dim}], got shape {z.shape}")
    x = z
    if self.label_dim:
      if label is None or label.shape != (z.shape[0], self.label_dim):
        got = None if label is None else label.shape
        raise ValueError(f"label must be [B, {self.label_dim}], got {got}")
      # The reference embeds the label to z's size and concatenates it before normalising.
      y = EqualizedDense(self.latent_dim, gain=1.0, use_bias=False, name="label_embed")(label)
      x = jnp.concatenate([x, y.astype(x.dtype)], axis=-1)
    if self.normalize_latents:
      x = pixel_norm(x)
    for i in range(self.num_layers):
      width = self.w_dim if i == self.num_layers - 1 else self.hidden
      x = _lrelu(EqualizedDense(width, lr_multiplier=self.lr_multiplier, name=f"dense{i}")(x))
    return x


# --------------------------------------------------------------------------
# synthesis network
# --------------------------------------------------------------------------


class _Epilogue(nn.Module):
  """noise -> (the conv's bias) -> leaky ReLU -> AdaIN(w): the end of every layer."""

  @nn.compact
  def __call__(self, x: Array, w: Array, noise: str, style_fn=None) -> Array:
    n = jnp.zeros(x.shape[:-1] + (1,), x.dtype) if noise == "zero" else None
    x = NoiseInjection(name="noise")(x, n)
    return AdaIN(name="style")(_lrelu(x), w, style_fn)


class _Hooks(NamedTuple):
  """What :class:`Synthesis` does at each layer ``i``: ``layer(i, x)`` edits and sows its
  output; ``style(i)`` is the ``style_fn`` its AdaIN applies to the style."""

  layer: Callable[[int, Array], Array]
  style: Callable[[int], Callable[[Array], Array]]


class _StartBlock(nn.Module):
  start: tuple[int, int]
  features: int

  @nn.compact
  def __call__(self, ws: Array, noise: str, hooks: _Hooks) -> Array:
    h0, w0 = self.start
    const = self.param("const", nn.initializers.ones_init(), (h0, w0, self.features))
    x = jnp.broadcast_to(const, (ws.shape[0], h0, w0, self.features)).astype(ws.dtype)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x = hooks.layer(0, _Epilogue(name="epilogue0")(x + bias, ws[:, 0], noise, hooks.style(0)))
    x = EqualizedConv(self.features, 3, name="conv")(x)
    x = hooks.layer(1, _Epilogue(name="epilogue1")(x, ws[:, 1], noise, hooks.style(1)))
    return x


class _UpBlock(nn.Module):
  features: int
  level: int

  @nn.compact
  def __call__(self, x: Array, ws: Array, noise: str, hooks: _Hooks) -> Array:
    i = 2 * self.level
    # Upsample, conv, then blur (the reference's order for its unfused layers); the conv's
    # bias is added after the blur, which commutes with a per-channel constant anyway.
    x = upsample_2x(x, kernel=None)
    x = blur(EqualizedConv(self.features, 3, name="conv0")(x))
    x = hooks.layer(i, _Epilogue(name="epilogue0")(x, ws[:, i], noise, hooks.style(i)))
    x = EqualizedConv(self.features, 3, name="conv1")(x)
    x = hooks.layer(i + 1, _Epilogue(name="epilogue1")(x, ws[:, i + 1], noise, hooks.style(i + 1)))
    return x


class Synthesis(nn.Module):
  """``ws [B, L, w_dim]`` (``L = num_layers(stage)``) -> images ``[B, H, W, num_channels]``."""

  start: tuple[int, int] = (4, 4)
  stage: int = 0
  fmap_base: int = 8192
  fmap_max: int = 512
  num_channels: int = 3

  def _nf(self, level: int) -> int:
    return channels_at(level, fmap_base=self.fmap_base, fmap_max=self.fmap_max)

  def _to_rgb(self, level: int) -> nn.Module:
    name = f"to_rgb_{resolution_name(resolution_at(self.start, level))}"
    return EqualizedConv(self.num_channels, 1, gain=1.0, name=name)

  @nn.compact
  def __call__(
    self,
    ws: Array,
    alpha: Any = 1.0,
    *,
    noise: str = "random",
    edits: MappingT[int, Array] | None = None,
    style_edits: MappingT[int, Array] | None = None,
  ) -> Array:
    start = _check_stage(self.start, self.stage)
    n = num_layers(self.stage)
    if ws.ndim != 3 or ws.shape[1] != n:
      raise ValueError(f"ws must be [B, {n}, W] at stage {self.stage}, got shape {ws.shape}")
    if noise not in NOISE_MODES:
      raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
    edits, style_edits = dict(edits or {}), dict(style_edits or {})
    for what, d in (("edits", edits), ("style_edits", style_edits)):
      bad = sorted(set(d) - set(range(n)))
      if bad:
        raise ValueError(f"{what} name layers {bad}; this stage has layers 0..{n - 1}")

    def edit(i: int, x: Array) -> Array:
      if i in edits:
        x = x + jnp.asarray(edits[i], x.dtype)
      self.sow("intermediates", f"layer{i}", x)
      return x

    def restyle(i: int) -> Callable[[Array], Array]:
      def fn(s: Array) -> Array:
        if i in style_edits:
          s = s + jnp.asarray(style_edits[i], s.dtype)
        self.sow("intermediates", f"style{i}", s)
        return s

      return fn

    hooks = _Hooks(edit, restyle)
    h = _StartBlock(start, self._nf(0), name=f"block_{resolution_name(start)}")(ws, noise, hooks)
    prev = h
    for k in range(1, self.stage + 1):
      prev = h
      name = f"block_{resolution_name(resolution_at(start, k))}"
      h = _UpBlock(self._nf(k), k, name=name)(h, ws, noise, hooks)
    img = self._to_rgb(self.stage)(h)
    if self.stage == 0:
      return img
    old = upsample_2x(self._to_rgb(self.stage - 1)(prev), kernel=None)
    return lerp(old, img, jnp.asarray(alpha, img.dtype))


class Generator(nn.Module):
  """StyleGAN generator of one training stage.

  Attributes:
    start, stage, fmap_base, fmap_max, num_channels: as ProGAN's (see
      :mod:`zoo.models.progan`); the stage outputs ``start * 2**stage``.
    latent_dim, w_dim, mapping_layers, mapping_hidden, mapping_lr_multiplier: the
      mapping network (the paper: 512, 512, 8, 512, 0.01).
    label_dim: > 0 makes G conditional: the mapping network also takes a label vector.
    w_avg_beta: decay of the tracked ``w_avg`` per training step (reference 0.995).

  ``__call__(z, alpha=1.0, label=None, *, psi=1.0, cutoff=None, noise='random')`` maps,
  truncates (``psi``, layers below ``cutoff``) and synthesises; ``noise='random'`` needs
  the ``'noise'`` RNG stream. :meth:`map`, :meth:`styles` and :meth:`synthesize` are the
  parts (``apply(..., method=...)``).
  """

  start: tuple[int, int] = (4, 4)
  stage: int = 0
  latent_dim: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  mapping_hidden: int = 512
  mapping_lr_multiplier: float = 0.01
  fmap_base: int = 8192
  fmap_max: int = 512
  num_channels: int = 3
  label_dim: int = 0
  w_avg_beta: float = 0.995

  def setup(self):
    self.mapping = Mapping(
      latent_dim=self.latent_dim,
      w_dim=self.w_dim,
      num_layers=self.mapping_layers,
      hidden=self.mapping_hidden,
      lr_multiplier=self.mapping_lr_multiplier,
      label_dim=self.label_dim,
    )
    self.synthesis = Synthesis(
      start=self.start,
      stage=self.stage,
      fmap_base=self.fmap_base,
      fmap_max=self.fmap_max,
      num_channels=self.num_channels,
    )
    self.w_avg = self.variable("stats", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)

  @property
  def resolution(self) -> tuple[int, int]:
    return resolution_at(self.start, self.stage)

  @property
  def num_ws(self) -> int:
    return num_layers(self.stage)

  def map(self, z: Array, label: Array | None = None, *, update_w_avg: bool = False) -> Array:
    """``w [B, w_dim]``; with ``update_w_avg`` (and ``'stats'`` mutable) ``w_avg`` moves
    toward the batch mean by ``1 - w_avg_beta``."""
    w = self.mapping(z, label)
    if update_w_avg and not self.is_initializing():
      mean = jnp.mean(w, axis=0).astype(jnp.float32)
      self.w_avg.value = lerp(mean, self.w_avg.value, self.w_avg_beta)
    return w

  def styles(
    self, z: Array, label: Array | None = None, *, psi: Any = 1.0, cutoff: int | None = None
  ) -> Array:
    """``ws [B, num_ws, w_dim]``: ``w`` for every layer, truncated by ``psi`` below ``cutoff``."""
    w = self.map(z, label)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], self.num_ws, w.shape[-1]))
    return truncate(ws, self.w_avg.value.astype(ws.dtype), psi, cutoff)

  def synthesize(
    self, ws: Array, alpha: Any = 1.0, *, noise: str = "random", edits=None, style_edits=None
  ):
    return self.synthesis(ws, alpha, noise=noise, edits=edits, style_edits=style_edits)

  def __call__(
    self,
    z: Array,
    alpha: Any = 1.0,
    label: Array | None = None,
    *,
    psi: Any = 1.0,
    cutoff: int | None = None,
    noise: str = "random",
  ) -> Array:
    return self.synthesize(self.styles(z, label, psi=psi, cutoff=cutoff), alpha, noise=noise)


# --------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------


class _DBlock(nn.Module):
  """3x3 conv, blur, 3x3 conv, 2x average pooling (leaky ReLU after each conv)."""

  features: int
  features_out: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = _lrelu(EqualizedConv(self.features, 3, name="conv0")(x))
    x = blur(x)
    # Pooling before the activation as the reference's conv2d_downscale2d + bias + act;
    # the conv's bias commutes with the average.
    x = EqualizedConv(self.features_out, 3, name="conv1")(x)
    return _lrelu(downsample_2x(x, kernel=None))


class Discriminator(progan_models.Discriminator):
  """StyleGAN discriminator of one training stage: ProGAN's (fields, names, fade-in) with
  the blur before each downsampling and optional conditional heads.

  Attributes (beyond ProGAN's):
    condition: ``'none'``, ``'projection'`` (score += <embed(label), features>) or
      ``'acgan'`` (also class logits ``[B, label_dim]``).
    label_dim: size of the label vector (conditional variants).

  ``__call__(x, alpha=1.0, label=None)`` -> ``(scores [B], logits [B, label_dim] or None)``.
  """

  condition: str = "none"
  label_dim: int = 0

  def _block(self, level: int, x: Array) -> Array:
    name = f"block_{resolution_name(resolution_at(self.start, level))}"
    return _DBlock(self._nf(level), self._nf(level - 1), name=name)(x)

  @nn.compact
  def __call__(
    self, x: Array, alpha: Any = 1.0, label: Array | None = None
  ) -> tuple[Array, Array | None]:
    if self.condition == "projection" and (label is None or label.shape[-1] != self.label_dim):
      raise ValueError(f"the projection discriminator needs a label [B, {self.label_dim}]")
    h = self._trunk(x, alpha)
    return _DOutput(
      self._nf(0),
      self._nf(-1),
      self.mbstd_group_size,
      self.condition,
      self.label_dim,
      name=f"block_{resolution_name(self.start)}",
    )(h, label)


class _DOutput(nn.Module):
  """Minibatch stddev -> 3x3 conv -> dense -> score (and the conditional heads)."""

  features: int
  hidden: int
  mbstd_group_size: int
  condition: str
  label_dim: int

  @nn.compact
  def __call__(self, x: Array, label: Array | None) -> tuple[Array, Array | None]:
    x = progan_models.minibatch_stddev(x, self.mbstd_group_size)
    x = _lrelu(EqualizedConv(self.features, 3, name="conv")(x))
    feats = _lrelu(EqualizedDense(self.hidden, name="dense0")(x.reshape(x.shape[0], -1)))
    score = EqualizedDense(1, gain=1.0, name="dense1")(feats)[:, 0]
    logits = None
    if self.condition == "projection":
      embed = EqualizedDense(self.hidden, gain=1.0, use_bias=False, name="label_embed")(label)
      score = score + jnp.sum(embed.astype(feats.dtype) * feats, axis=-1)
    elif self.condition == "acgan":
      logits = EqualizedDense(self.label_dim, gain=1.0, name="aux")(feats)
    return score, logits


# --------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------

_G_KEYS = (
  "start",
  "latent_dim",
  "w_dim",
  "mapping_layers",
  "mapping_hidden",
  "mapping_lr_multiplier",
  "fmap_base",
  "fmap_max",
  "num_channels",
  "w_avg_beta",
)
_D_KEYS = ("start", "fmap_base", "fmap_max", "num_channels", "mbstd_group_size")
_INT_KEYS = ("latent_dim", "w_dim", "mapping_layers", "mapping_hidden", "fmap_base", "fmap_max")


def make_stylegan(
  config: MappingT[str, Any], stage: int, *, label_dim: int = 0
) -> tuple[Generator, Discriminator]:
  """The ``(Generator, Discriminator)`` of ``stage`` from a model config section.

  Keys: those of :class:`Generator` and :class:`Discriminator`, D's own widths
  ``d_fmap_base`` / ``d_fmap_max`` (0: G's, as ProGAN's) and ``condition``
  (``'none'``, ``'projection'``, ``'acgan'``); ``label_dim`` (the data's label size) is
  used when ``condition != 'none'``. Unknown keys and bad values: one-line ConfigError.
  """
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  config = dict(config)
  condition = config.pop("condition", "none")
  unknown = sorted(set(config) - set(_G_KEYS) - set(_D_KEYS) - set(D_WIDTH_KEYS))
  if unknown:
    raise ConfigError(f"unknown StyleGAN model option(s): {', '.join(unknown)}")
  if condition not in CONDITIONS:
    raise ConfigError(f"model.condition={condition!r}, expected one of {CONDITIONS}")
  if "start" in config:
    config["start"] = check_start(config["start"])
  for key in (*_INT_KEYS, "num_channels"):
    v = config.get(key, 1)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
      raise ConfigError(f"model.{key}={v!r} must be a positive integer")
  if not 0 < config.get("mapping_lr_multiplier", 1.0) <= 1:
    raise ConfigError("model.mapping_lr_multiplier must be in (0, 1]")
  if not 0 <= config.get("w_avg_beta", 0.5) < 1:
    raise ConfigError("model.w_avg_beta must be in [0, 1)")
  v = config.get("mbstd_group_size", 0)
  if not isinstance(v, int) or isinstance(v, bool) or v < 0:
    raise ConfigError(f"model.mbstd_group_size={v!r} must be an integer >= 0 (<= 1: off)")
  _check_stage(config.get("start", (4, 4)), stage)
  labels = int(label_dim) if condition != "none" else 0
  if condition != "none" and labels < 1:
    raise ConfigError(f"model.condition={condition!r} needs labelled data")
  g = Generator(stage=stage, label_dim=labels, **{k: v for k, v in config.items() if k in _G_KEYS})
  d = Discriminator(
    stage=stage,
    condition=condition,
    label_dim=labels,
    **{k: v for k, v in config.items() if k in _D_KEYS} | discriminator_widths(config),
  )
  return g, d


def init_variables(module: Generator | Discriminator, key: Array) -> dict:
  """``module.init`` on zero inputs of the right shapes (``{'params'[, 'stats']}``), as
  one compiled program (an eager ``init`` dispatches op by op)."""
  return jax.jit(functools.partial(_init_variables, module))(key)


def _init_variables(module: Generator | Discriminator, key: Array) -> dict:
  label = jnp.zeros((1, max(module.label_dim, 1)), jnp.float32) if module.label_dim else None
  if isinstance(module, Generator):
    z = jnp.zeros((1, module.latent_dim), jnp.float32)
    k1, k2 = jax.random.split(key)
    return module.init({"params": k1, "noise": k2}, z, jnp.float32(0.0), label)
  if isinstance(module, Discriminator):
    h, w = module.resolution
    x = jnp.zeros((1, h, w, module.num_channels), jnp.float32)
    return module.init(key, x, jnp.float32(0.0), label)
  raise TypeError(f"expected a StyleGAN Generator or Discriminator, got {type(module).__name__}")
