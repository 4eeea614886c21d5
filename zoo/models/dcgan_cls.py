"""Text-conditional DCGAN of Reed et al., "Generative Adversarial Text to Image
Synthesis" (ICML 2016; GAN-CLS / GAN-INT-CLS), with optional minibatch
discrimination (Salimans et al., "Improved Techniques for Training GANs", 2016).

flax.linen, NHWC, images in [-1, 1], pure ``init`` / ``apply``. The text
condition is a fixed sentence embedding ``emb [B, E]`` (e.g. the char-CNN-RNN
embedding, ``E = 1024``); ``E`` is inferred from the input.

Layout (the plain variant of the authors' Torch code, ``reedscot/icml2016``,
``main_cls.lua``), shown for 64x64 with ``ngf = ndf = 64``:

* :class:`Generator` ``(z [B, latent_dim], emb [B, E]) -> [B, 64, 64, C]``:
  ``emb -> Dense(proj_dim) -> LeakyReLU(0.2)``, concatenated after ``z``;
  ``Dense(4*4*8ngf)`` (the reference's 4x4 full convolution of the 1x1 input is
  exactly this dense layer) -> ``[B, 4, 4, 8ngf]`` -> BN -> ReLU; then 4x4
  stride-2 transposed convolutions to 8x8x4ngf, 16x16x2ngf, 32x32xngf, each with
  BN -> ReLU; a last 4x4 stride-2 transposed convolution to ``C`` channels and
  tanh.
* :class:`Discriminator` ``(x [B, 64, 64, C], emb [B, E]) -> logits [B]``:
  4x4 stride-2 convolutions to 32x32xndf (LeakyReLU(0.2), no BN), 16x16x2ndf,
  8x8x4ndf, 4x4x8ndf (BN -> LeakyReLU(0.2)); ``emb -> Dense(proj_dim) ->
  LeakyReLU(0.2)`` replicated over the 4x4 grid and concatenated after the image
  features; ``1x1 conv(8ndf) -> BN -> LeakyReLU(0.2)``; a 4x4 VALID convolution
  to one logit (the reference ends in a sigmoid; here the losses take logits).
  With ``conditioning='projection'`` (not the paper's; Miyato & Koyama, "cGANs with
  Projection Discriminator", 2018) the text instead enters as an inner product:
  ``logit = head(h) + <Dense(16 * 8ndf)(emb), flatten(h)>``, where ``h`` is the 4x4
  image features and ``head`` the same 1x1 and 4x4 convolutions without the text.
  With ``minibatch_kernels > 0`` the 4x4 joint features are instead flattened,
  passed through :class:`~zoo.models.layers.MinibatchDiscrimination` and a
  ``Dense(1)``.

Choices relative to the reference:

* The residual 1x1/3x3/3x3 bottleneck blocks that ``main_cls.lua`` /
  ``main_cls_int.lua`` add at 4x4 and 8x8 in G are left out; this is the plain
  DCGAN layout of the paper's Sec. 4 figure. (In D the reference's 4x4 block is
  wired to an undefined module, ``conc:add(skipD)`` with ``skipD = nil``, so it
  reduces to the identity there and our D matches it.) ``main_cls_int.lua``
  also has a batch norm on D's text projection and no LeakyReLU after D's 8x8
  BN; we follow ``main_cls.lua`` (no text BN, LeakyReLU after every BN).
* Convolutions have no bias: the reference zeroes every convolution bias before
  each forward pass, so its convolutions are effectively bias-free. The text
  projections (Torch ``nn.Linear``) keep their bias.
* Initialisation as the reference's ``weights_init``: convolution / projection
  kernels ``N(0, 0.02)``, BN scales ``N(1, 0.02)``, biases 0. The text
  projections use Torch's default ``nn.Linear`` weight init
  ``U(-1/sqrt(E), 1/sqrt(E))`` (their bias starts at 0 instead of uniform).
* BatchNorm: ``momentum=0.9`` (running average ``0.9 old + 0.1 batch``, Torch's
  0.1) and ``epsilon=1e-5``; batch statistics when ``train=True`` (make
  ``'batch_stats'`` mutable), running averages when ``train=False``.
* Resolution: ``log2(resolution / 4)`` resampling layers; the 4x4 stage always
  has 8ngf / 8ndf channels and every step away from it halves the width, with
  ngf / ndf as the floor (:func:`generator_channels`,
  :func:`discriminator_channels`). 32x32 thus drops the outermost hidden layer
  of the 64x64 networks (G: 8ngf, 4ngf, 2ngf; D: 2ndf, 4ndf, 8ndf) and 128x128
  adds one of width ngf / ndf.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import ConfigError
from zoo.models.layers import Conv2xDown, ConvTranspose2x, MinibatchDiscrimination

Array = jax.Array

__all__ = [
  "RESOLUTIONS",
  "num_resamplings",
  "generator_channels",
  "discriminator_channels",
  "Generator",
  "Discriminator",
  "make_dcgan_cls",
  "init_variables",
]

RESOLUTIONS = (32, 64, 128)

_LRELU_SLOPE = 0.2


def num_resamplings(resolution: int) -> int:
  """``log2(resolution / 4)``: up-samplings in G, down-samplings in D.

  ``resolution`` must be one of :data:`RESOLUTIONS`; a one-line
  :class:`ConfigError` otherwise.
  """
  if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
    raise ConfigError(
      f"DCGAN-CLS resolution={resolution!r} is not supported, expected one of {RESOLUTIONS}"
    )
  return int(resolution).bit_length() - 3


def generator_channels(resolution: int, ngf: int) -> list[int]:
  """G widths at 4x4, 8x8, ..., ``resolution/2``: ``ngf * max(8 / 2**k, 1)``."""
  return [ngf * max(8 >> k, 1) for k in range(num_resamplings(resolution))]


def discriminator_channels(resolution: int, ndf: int) -> list[int]:
  """D widths at ``resolution/2``, ..., 8x8, 4x4 (the mirror of :func:`generator_channels`)."""
  return generator_channels(resolution, ndf)[::-1]


def _normal(stddev: float, mean: float = 0.0):
  def init(key, shape, dtype=jnp.float32):
    return mean + stddev * jax.random.normal(key, shape, dtype)

  return init


# Torch nn.Linear default weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    scale_init=_normal(0.02, 1.0),
    name=name,
  )


def _text_projection(emb: Array, proj_dim: int) -> Array:
  t = nn.Dense(
    proj_dim,
    kernel_init=_torch_linear_init,
    bias_init=nn.initializers.zeros,
    name="text_proj",
  )(emb)
  return nn.leaky_relu(t, _LRELU_SLOPE)


def _check_emb(emb: Array, batch: int) -> None:
  if emb.ndim != 2 or emb.shape[0] != batch:
    raise ValueError(f"emb must be [B, E] with B = {batch}, got shape {emb.shape}")


class Generator(nn.Module):
  """Text-conditional DCGAN generator ``(z, emb) -> images [B, R, R, C]`` in [-1, 1].

  Attributes:
    resolution: output side ``R`` (32, 64 or 128).
    ngf: width of the last hidden layer (the 4x4 stage has ``8 ngf``).
    latent_dim: size of ``z``.
    proj_dim: size of the projected text embedding.
    num_channels: output channels ``C``.
  """

  resolution: int = 64
  ngf: int = 64
  latent_dim: int = 100
  proj_dim: int = 128
  num_channels: int = 3

  @nn.compact
  def __call__(self, z: Array, emb: Array, *, train: bool) -> Array:
    chans = generator_channels(self.resolution, self.ngf)
    if z.ndim != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(f"z must be [B, {self.latent_dim}], got shape {z.shape}")
    b = z.shape[0]
    _check_emb(emb, b)
    t = _text_projection(emb, self.proj_dim)
    h = jnp.concatenate([z, t.astype(z.dtype)], axis=-1)
    h = nn.Dense(4 * 4 * chans[0], use_bias=False, kernel_init=_normal(0.02), name="project")(h)
    h = h.reshape(b, 4, 4, chans[0])
    h = nn.relu(_batch_norm(train, "project_bn")(h))
    for i, c in enumerate(chans[1:], start=1):
      h = self._deconv(c, f"deconv{i}")(h)
      h = nn.relu(_batch_norm(train, f"deconv{i}_bn")(h))
    h = self._deconv(self.num_channels, "to_rgb")(h)
    return jnp.tanh(h)

  @staticmethod
  def _deconv(features: int, name: str) -> ConvTranspose2x:
    # Torch SpatialFullConvolution(k=4, s=2, p=1), which doubles the size (the same
    # parameters as nn.ConvTranspose with padding k - 1 - p = 2, computed as matmuls).
    return ConvTranspose2x(features, use_bias=False, kernel_init=_normal(0.02), name=name)


class Discriminator(nn.Module):
  """Text-conditional DCGAN discriminator ``(images, emb) -> logits [B]``.

  Attributes:
    resolution: input side ``R`` (32, 64 or 128).
    ndf: width of the first layer (the 4x4 stage has ``8 ndf``).
    proj_dim: size of the projected text embedding.
    minibatch_kernels: 0 = off; else the number of minibatch-discrimination
      kernels applied to the flattened 4x4 joint features before the score.
    minibatch_kernel_dim: dimension of each minibatch-discrimination kernel.
    num_channels: input channels ``C``.
    conditioning: ``'concat'`` (the paper: the projected text tiled over the 4x4
      features) or ``'projection'`` (an inner product of a linear map of ``emb`` with
      the flattened 4x4 features, added to an unconditional score).
  """

  resolution: int = 64
  ndf: int = 64
  proj_dim: int = 128
  minibatch_kernels: int = 0
  minibatch_kernel_dim: int = 5
  num_channels: int = 3
  conditioning: str = "concat"

  @nn.compact
  def __call__(
    self, x: Array, emb: Array, *, train: bool, features: bool = False
  ) -> Array | tuple[Array, Array]:
    """Logits ``[B]``; with ``features=True`` also the flattened 4x4 image
    features before the text is concatenated, ``[B, 16 * 8 ndf]`` (for
    feature matching): ``(logits, feats)``.
    """
    chans = discriminator_channels(self.resolution, self.ndf)
    r = self.resolution
    if x.ndim != 4 or x.shape[1:] != (r, r, self.num_channels):
      raise ValueError(f"x must be [B, {r}, {r}, {self.num_channels}], got shape {x.shape}")
    b = x.shape[0]
    _check_emb(emb, b)
    h = x
    for i, c in enumerate(chans):
      h = self._conv(c, 4, 2, 1, f"conv{i}")(h)
      if i > 0:
        h = _batch_norm(train, f"conv{i}_bn")(h)
      h = nn.leaky_relu(h, _LRELU_SLOPE)
    feats = h.reshape(b, -1)
    if self.conditioning == "projection":
      # The text's whole effect is bilinear in (emb, image features): checking that an
      # attribute the caption names is drawn needs no interaction learned through ReLUs.
      t = nn.Dense(feats.shape[-1], kernel_init=_torch_linear_init, name="text_embed")(emb)
      cond = jnp.sum(t.astype(feats.dtype) * feats, axis=-1)
    else:
      cond = 0.0
      t = _text_projection(emb, self.proj_dim).astype(h.dtype)
      t = jnp.broadcast_to(t[:, None, None, :], (b, 4, 4, self.proj_dim))
      h = jnp.concatenate([h, t], axis=-1)
    h = self._conv(chans[-1], 1, 1, 0, "joint")(h)
    h = nn.leaky_relu(_batch_norm(train, "joint_bn")(h), _LRELU_SLOPE)
    if self.minibatch_kernels > 0:
      h = MinibatchDiscrimination(
        num_kernels=self.minibatch_kernels,
        kernel_dim=self.minibatch_kernel_dim,
        name="minibatch_disc",
      )(h.reshape(b, -1))
      logits = nn.Dense(1, kernel_init=_normal(0.02), name="score")(h)
    else:
      logits = nn.Conv(
        1, (4, 4), padding="VALID", use_bias=False, kernel_init=_normal(0.02), name="score"
      )(h)
    logits = logits.reshape(b) + cond
    if features:
      return logits, feats
    return logits

  @staticmethod
  def _conv(features: int, kernel: int, stride: int, pad: int, name: str) -> nn.Module:
    if (kernel, stride, pad) == (4, 2, 1):  # the downsampling convs, computed as a matmul
      return Conv2xDown(features, use_bias=False, kernel_init=_normal(0.02), name=name)
    return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((pad, pad), (pad, pad)),
      use_bias=False,
      kernel_init=_normal(0.02),
      name=name,
    )


_INT_KEYS = ("ngf", "ndf", "latent_dim", "proj_dim", "num_channels", "minibatch_kernel_dim")
_G_KEYS = ("resolution", "ngf", "latent_dim", "proj_dim", "num_channels")
_D_KEYS = ("resolution", "ndf", "proj_dim", "minibatch_kernels", "minibatch_kernel_dim")
_D_KEYS += ("num_channels", "conditioning")
CONDITIONINGS = ("concat", "projection")


def make_dcgan_cls(model_config: Mapping[str, Any]) -> tuple[Generator, Discriminator]:
  """Build ``(Generator, Discriminator)`` from a model config.

  ``model_config`` (a dict or an ``ml_collections.ConfigDict``) may hold
  ``resolution``, ``ngf``, ``ndf``, ``latent_dim``, ``proj_dim``,
  ``minibatch_kernels``, ``minibatch_kernel_dim``, ``num_channels`` and D's
  ``conditioning`` (:data:`CONDITIONINGS`); missing
  keys take the module defaults. An unknown key or a bad value is a one-line
  :class:`ConfigError`.
  """
  if hasattr(model_config, "to_dict"):
    model_config = model_config.to_dict()
  config = dict(model_config)
  unknown = sorted(set(config) - set(_G_KEYS) - set(_D_KEYS))
  if unknown:
    raise ConfigError(f"unknown DCGAN-CLS model option(s): {', '.join(unknown)}")
  if "resolution" in config:
    num_resamplings(config["resolution"])
  for key in _INT_KEYS:
    v = config.get(key, 1)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
      raise ConfigError(f"model.{key}={v!r} must be a positive integer")
  v = config.get("minibatch_kernels", 0)
  if not isinstance(v, int) or isinstance(v, bool) or v < 0:
    raise ConfigError(f"model.minibatch_kernels={v!r} must be an integer >= 0 (0: off)")
  v = config.get("conditioning", "concat")
  if v not in CONDITIONINGS:
    raise ConfigError(f"model.conditioning={v!r} must be one of {', '.join(CONDITIONINGS)}")
  g = Generator(**{k: v for k, v in config.items() if k in _G_KEYS})
  d = Discriminator(**{k: v for k, v in config.items() if k in _D_KEYS})
  return g, d


def init_variables(
  g: Generator, d: Discriminator, rng: Array, *, text_dim: int, batch: int = 2
) -> tuple[dict, dict]:
  """Initialise both networks on zero inputs.

  Returns ``(g_vars, d_vars)``, each ``{'params': ..., 'batch_stats': ...}``
  (running means 0, variances 1). ``text_dim`` is the embedding size ``E``;
  ``batch`` only sizes the dummy inputs (the variables do not depend on it).
  """
  kg, kd = jax.random.split(rng)
  z = jnp.zeros((batch, g.latent_dim), jnp.float32)
  emb = jnp.zeros((batch, text_dim), jnp.float32)
  x = jnp.zeros((batch, d.resolution, d.resolution, d.num_channels), jnp.float32)
  # Jitted: an eager init dispatches op by op, several times slower on a CPU.
  gv = jax.jit(functools.partial(g.init, train=False))(kg, z, emb)
  dv = jax.jit(functools.partial(d.init, train=False))(kd, x, emb)
  g_vars = {"params": gv["params"], "batch_stats": gv["batch_stats"]}
  d_vars = {"params": dv["params"], "batch_stats": dv["batch_stats"]}
  return g_vars, d_vars
