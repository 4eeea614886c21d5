"""pix2pix networks (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017): a U-Net generator and PatchGAN discriminators.

flax.linen, NHWC, pure ``init`` / ``apply``. Layout and defaults follow the
authors' PyTorch implementation (``pytorch-CycleGAN-and-pix2pix``):

* :class:`UNetGenerator`: ``num_downs`` stride-2 4x4 convolutions down to a
  bottleneck, mirrored by stride-2 4x4 transposed convolutions, with the
  encoder activation of every level concatenated onto the decoder input
  (``[skip, up]``). Encoder: LeakyReLU(0.2) -> conv -> norm (no activation before
  the first conv, no norm after the first and the innermost conv). Decoder:
  ReLU -> transposed conv -> norm (-> dropout 0.5 on the ngf*8 levels between the
  4th level and the innermost one, i.e. 3 layers for 256x256) and tanh on the
  output. Channels: ngf, 2ngf, 4ngf, 8ngf, 8ngf, ...
* :class:`NLayerDiscriminator`: the PatchGAN (``n_layers=3``: 70x70 patches,
  ``n_layers=1``: 16x16), one logit per overlapping patch.
* :class:`PixelDiscriminator`: the 1x1 PixelGAN.

The discriminators are conditional: the caller feeds ``concat([A, B], -1)``.
Weights are drawn from N(0, 0.02), biases are 0, batch-norm scales N(1, 0.02)
(the reference's ``init_type='normal'``). Convolutions have a bias unless they
are followed by batch norm (the reference drops it for every conv but the
outermost ones when the norm is batch norm).

The number of U-Net levels is derived from the image size by
:func:`unet_num_downs` (``log2`` of the short side: 8 for 256x256 and 256x512,
7 for 128, 5 for 64x32), so non-square images whose sides are a power of two
times the bottleneck work too.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import ConfigError
from zoo.models.layers import Conv2xDown, ConvTranspose2x, make_norm

Array = jax.Array

NORMS = ("batch", "instance", "none")


def normal_init(stddev: float = 0.02, mean: float = 0.0):
  """``N(mean, stddev^2)`` initialiser (the reference's ``init_type='normal'``)."""

  def init(key, shape, dtype=jnp.float32):
    return mean + stddev * jax.random.normal(key, shape, dtype)

  return init


def unet_num_downs(height: int, width: int, num_downs: int = 0) -> int:
  """Number of U-Net down-samplings for an ``height x width`` image.

  ``num_downs=0`` derives it as ``log2(min(height, width))`` (a 1-pixel
  bottleneck on the short side; the short side must be a power of two); a
  positive value is checked. Both sides must be divisible by ``2**num_downs``.
  Raises :class:`ConfigError` (one line) otherwise.
  """
  h, w = int(height), int(width)
  if h < 2 or w < 2:
    raise ConfigError(f"image size {h}x{w} is too small for a U-Net (each side must be >= 2)")
  if num_downs <= 0:
    short = min(h, w)
    if short & (short - 1):
      raise ConfigError(
        f"image size {h}x{w}: the short side {short} must be a power of two for the U-Net "
        "(its bottleneck is 1 pixel on the short side), or set num_downs explicitly"
      )
    num_downs = short.bit_length() - 1
  f = 2**num_downs
  if h % f or w % f:
    raise ConfigError(
      f"image size {h}x{w}: each side must be a power of two times the U-Net bottleneck "
      f"(divisible by 2**num_downs = {f}); use e.g. {f}x{f} or {f}x{2 * f}"
    )
  return num_downs


def unet_channels(num_downs: int, ngf: int) -> list[int]:
  """Encoder output channels per level: ngf, 2ngf, 4ngf, 8ngf, 8ngf, ..."""
  return [ngf * min(2**i, 8) for i in range(num_downs)]


def unet_dropout_levels(num_downs: int) -> list[int]:
  """Levels (0 = outermost) whose decoder layer ends with dropout: ``4 .. num_downs-2``."""
  return list(range(4, num_downs - 1))


# The reference's init_type='normal': weights N(0, 0.02), biases 0.
_INIT = dict(kernel_init=normal_init(0.02), bias_init=nn.initializers.zeros)


def _conv(features, kernel, stride, pad, bias, name, x=None):
  if (
    (kernel, stride, pad) == (4, 2, 1)
    and x is not None
    and x.shape[1] % 2 == 0
    and x.shape[2] % 2 == 0
  ):
    # The same parameters and function as the nn.Conv below, as one matmul: XLA:CPU's
    # strided-convolution gradients are far slower (see layers.conv_4x4_s2).
    return Conv2xDown(features, use_bias=bias, name=name, **_INIT)
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    use_bias=bias,
    name=name,
    **_INIT,
  )


def _deconv(features, bias, name):
  # PyTorch ConvTranspose2d(k=4, s=2, p=1) doubles the size; ConvTranspose2x is that
  # layer (nn.ConvTranspose with padding k - 1 - p = 2, transpose_kernel=True) as matmuls.
  return ConvTranspose2x(features, use_bias=bias, name=name, **_INIT)


def _norm(kind: str, train: bool, name: str):
  if kind == "batch":
    return make_norm(
      "batch", use_running_average=not train, scale_init=normal_init(0.02, 1.0), name=name
    )
  return make_norm(kind, name=name)


class UNetGenerator(nn.Module):
  """U-Net generator ``[B, H, W, input_nc] -> [B, H, W, output_nc]`` in [-1, 1].

  Attributes:
    output_nc: output channels.
    num_downs: number of levels; see :func:`unet_num_downs`.
    ngf: filters of the outermost level.
    norm: 'batch' | 'instance' | 'none'.
    use_dropout: dropout 0.5 in the decoder (see :func:`unet_dropout_levels`).
    dropout_rate: the dropout probability.

  Call with ``train`` (batch statistics and running-average updates for batch
  norm) and ``dropout`` (whether dropout is active; needs the ``'dropout'``
  rng). pix2pix keeps both on at test time.
  """

  output_nc: int = 3
  num_downs: int = 8
  ngf: int = 64
  norm: str = "batch"
  use_dropout: bool = True
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: Array, *, train: bool = True, dropout: Optional[bool] = None) -> Array:
    dropout = train if dropout is None else dropout
    n = self.num_downs
    if n < 1:
      raise ConfigError(f"num_downs={n} must be >= 1")
    f = 2**n
    if x.shape[1] % f or x.shape[2] % f:
      raise ConfigError(f"input {x.shape[1]}x{x.shape[2]} is not divisible by 2**num_downs={f}")
    bias = self.norm != "batch"
    chans = unet_channels(n, self.ngf)
    drop_levels = set(unet_dropout_levels(n)) if self.use_dropout else set()

    skips = []
    h = x
    for i in range(n):
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      h = _conv(chans[i], 4, 2, 1, bias, f"down{i}", h)(h)
      if 0 < i < n - 1:
        h = _norm(self.norm, train, f"down{i}_norm")(h)
      skips.append(h)

    h = skips[-1]
    for i in reversed(range(n)):
      if i < n - 1:
        h = jnp.concatenate([skips[i], h], axis=-1)
      h = nn.relu(h)
      if i == 0:
        h = _deconv(self.output_nc, True, "up0")(h)
        h = jnp.tanh(h)
      else:
        h = _deconv(chans[i - 1], bias, f"up{i}")(h)
        h = _norm(self.norm, train, f"up{i}_norm")(h)
        if i in drop_levels:
          h = nn.Dropout(self.dropout_rate, deterministic=not dropout)(h)
    return h


class NLayerDiscriminator(nn.Module):
  """PatchGAN: ``[B, H, W, C] -> [B, h, w, 1]`` logits, one per patch.

  ``n_layers`` stride-2 4x4 convolutions (the first without norm), then a
  stride-1 4x4 convolution with norm and a stride-1 4x4 convolution to one
  channel; receptive field :func:`patchgan_receptive_field` (70 for
  ``n_layers=3``, 16 for 1).
  """

  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"

  @nn.compact
  def __call__(self, x: Array, *, train: bool = True) -> Array:
    bias = self.norm != "batch"
    h = _conv(self.ndf, 4, 2, 1, True, "conv0", x)(x)
    h = nn.leaky_relu(h, 0.2)
    for n in range(1, self.n_layers + 1):
      stride = 2 if n < self.n_layers else 1
      h = _conv(self.ndf * min(2**n, 8), 4, stride, 1, bias, f"conv{n}", h)(h)
      h = _norm(self.norm, train, f"norm{n}")(h)
      h = nn.leaky_relu(h, 0.2)
    return _conv(1, 4, 1, 1, True, f"conv{self.n_layers + 1}")(h)


class PixelDiscriminator(nn.Module):
  """1x1 PixelGAN: ``[B, H, W, C] -> [B, H, W, 1]`` logits, one per pixel."""

  ndf: int = 64
  norm: str = "batch"

  @nn.compact
  def __call__(self, x: Array, *, train: bool = True) -> Array:
    bias = self.norm != "batch"
    h = nn.leaky_relu(_conv(self.ndf, 1, 1, 0, True, "conv0")(x), 0.2)
    h = _conv(self.ndf * 2, 1, 1, 0, bias, "conv1")(h)
    h = nn.leaky_relu(_norm(self.norm, train, "norm1")(h), 0.2)
    return _conv(1, 1, 1, 0, bias, "conv2")(h)


def patchgan_receptive_field(n_layers: int) -> int:
  """Input patch side seen by one output of :class:`NLayerDiscriminator` (70 for 3)."""
  # Layers (kernel, stride), innermost last: n_layers stride-2 convs, 2 stride-1 convs.
  layers = [(4, 2)] * n_layers + [(4, 1), (4, 1)]
  rf = 1
  for k, s in reversed(layers):
    rf = rf * s + (k - s)
  return rf


def patchgan_output_size(size: int, n_layers: int) -> int:
  """Output side of :class:`NLayerDiscriminator` for an input side ``size`` (30 for 256)."""
  for _ in range(n_layers):
    size = (size + 2 - 4) // 2 + 1
  for _ in range(2):
    size = size + 2 - 4 + 1
  return size


def make_generator(
  *,
  netG: str = "unet",
  height: int,
  width: int,
  output_nc: int = 3,
  ngf: int = 64,
  norm: str = "batch",
  use_dropout: bool = True,
  num_downs: int = 0,
) -> UNetGenerator:
  """Generator by the reference's names: 'unet' (levels from the size), 'unet_128', 'unet_256'."""
  if norm not in NORMS:
    raise ConfigError(f"norm={norm!r}, expected one of {NORMS}")
  fixed = {"unet": num_downs, "unet_128": 7, "unet_256": 8}
  if netG not in fixed:
    raise ConfigError(f"netG={netG!r}, expected one of {tuple(fixed)}")
  n = unet_num_downs(height, width, fixed[netG])
  return UNetGenerator(
    output_nc=output_nc, num_downs=n, ngf=ngf, norm=norm, use_dropout=use_dropout
  )


def make_discriminator(
  *, netD: str = "basic", ndf: int = 64, n_layers_D: int = 3, norm: str = "batch"
) -> nn.Module:
  """Discriminator by the reference's names: 'basic' (70x70), 'n_layers', 'pixel'."""
  if norm not in NORMS:
    raise ConfigError(f"norm={norm!r}, expected one of {NORMS}")
  if netD == "basic":
    return NLayerDiscriminator(ndf=ndf, n_layers=3, norm=norm)
  if netD == "n_layers":
    if n_layers_D < 1:
      raise ConfigError(f"n_layers_D={n_layers_D} must be >= 1")
    return NLayerDiscriminator(ndf=ndf, n_layers=n_layers_D, norm=norm)
  if netD == "pixel":
    return PixelDiscriminator(ndf=ndf, norm=norm)
  raise ConfigError(f"netD={netD!r}, expected one of ('basic', 'n_layers', 'pixel')")


def generate(
  generator: UNetGenerator,
  variables: Any,
  a: Array,
  index: Array,
  *,
  seed: int = 0,
  eval_mode: bool = False,
) -> Array:
  """Runs the generator at test time; ``a`` ``[B, H, W, C]``, ``index`` int ``[B]``.

  ``eval_mode=False`` is the paper's protocol (Sec. 3.3; the reference's default
  without ``--eval``): the net runs exactly as in training, with dropout as the
  noise source and batch norm using the statistics of the test batch. The
  reference tests with batch size 1, so every example is normalised with its own
  statistics (``vmap`` over batches of one) and gets its own dropout mask from
  ``fold_in(key(seed), index)``: outputs do not depend on how examples are batched.
  ``eval_mode=True`` is deterministic: no dropout, running averages for batch norm.
  """
  has_bs = "batch_stats" in variables
  if eval_mode:
    return generator.apply(variables, a, train=False, dropout=False)
  base = jax.random.key(seed)

  def one(x, i):
    out = generator.apply(
      variables,
      x[None],
      train=True,
      dropout=True,
      rngs={"dropout": jax.random.fold_in(base, i)},
      mutable=["batch_stats"] if has_bs else False,
    )
    y = out[0] if has_bs else out
    return y[0]

  return jax.vmap(one)(a, index)


def param_count(params: Any) -> int:
  return int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))


__all__ = [
  "UNetGenerator",
  "NLayerDiscriminator",
  "PixelDiscriminator",
  "unet_num_downs",
  "unet_channels",
  "unet_dropout_levels",
  "patchgan_receptive_field",
  "patchgan_output_size",
  "make_generator",
  "make_discriminator",
  "normal_init",
  "param_count",
  "generate",
  "NORMS",
]
