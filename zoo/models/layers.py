"""Building blocks shared by the GAN models (flax.linen, NHWC everywhere).

* Equalized learning rate layers (:class:`EqualizedDense`, :class:`EqualizedConv`)
  and :func:`pixel_norm`, :class:`MinibatchStdDev` from ProGAN
  (Karras et al., "Progressive Growing of GANs", 2018, Sec. 4).
* Blurred resampling (:func:`blur`, :func:`upsample_2x`, :func:`downsample_2x`)
  with the binomial ``[1, 2, 1]`` filter, :class:`AdaIN` and
  :class:`NoiseInjection` from StyleGAN (Karras et al., "A Style-Based
  Generator Architecture for GANs", 2019).
* :func:`make_norm` choosing batch / instance / no normalisation (pix2pix).
* :class:`MinibatchDiscrimination` (Salimans et al., "Improved Techniques for
  Training GANs", 2016, Sec. 3.2).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
from flax.linen.dtypes import promote_dtype

Array = jax.Array
Dtype = Any
PaddingLike = Union[str, int, Sequence[int], Sequence[tuple[int, int]]]

__all__ = [
  "EqualizedDense",
  "EqualizedConv",
  "pixel_norm",
  "instance_norm",
  "MinibatchStdDev",
  "blur_kernel_2d",
  "blur",
  "upsample_2x",
  "downsample_2x",
  "AdaIN",
  "NoiseInjection",
  "Identity",
  "make_norm",
  "MinibatchDiscrimination",
  "conv_transpose_4x4_s2",
  "ConvTranspose2x",
  "conv_4x4_s2",
  "Conv2xDown",
]


# --------------------------------------------------------------------------
# equalized learning rate
# --------------------------------------------------------------------------


def _normal_init(stddev: float) -> Callable[..., Array]:
  def init(key, shape, dtype=jnp.float32):
    return stddev * jax.random.normal(key, shape, dtype)

  return init


class EqualizedDense(nn.Module):
  """Fully connected layer with ProGAN's equalized learning rate.

  The stored kernel is drawn from ``N(0, 1 / lr_multiplier^2)`` and scaled at
  run time by ``gain / sqrt(fan_in) * lr_multiplier``, so the effective
  weights have He-style std ``gain / sqrt(fan_in)`` while the optimiser sees
  parameters of unit scale; with Adam every layer then learns at the same
  speed (ProGAN Sec. 4.1). ``lr_multiplier`` (StyleGAN's mapping network uses
  0.01) further scales the gradient of the stored parameters, i.e. the
  effective learning rate. The bias is stored divided by ``lr_multiplier``
  and multiplied back at run time, so ``bias_init`` is the *effective* initial
  bias.

  Attributes:
    features: number of output features.
    lr_multiplier: learning-rate multiplier for this layer.
    use_bias: whether to add a bias.
    gain: He gain; ``sqrt(2)`` for layers followed by (leaky) ReLU, ``1`` for
      linear outputs.
    bias_init: effective initial value of the bias (a constant).
    dtype: computation dtype (inferred from inputs and params when ``None``).
    param_dtype: dtype of the stored parameters.

  Input ``[..., fan_in]`` -> output ``[..., features]``.
  """

  features: int
  lr_multiplier: float = 1.0
  use_bias: bool = True
  gain: float = math.sqrt(2.0)
  bias_init: float = 0.0
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    fan_in = x.shape[-1]
    lr = self.lr_multiplier
    kernel = self.param("kernel", _normal_init(1.0 / lr), (fan_in, self.features), self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param(
        "bias",
        nn.initializers.constant(self.bias_init / lr),
        (self.features,),
        self.param_dtype,
      )
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    w = kernel * (self.gain / math.sqrt(fan_in) * lr)
    y = jnp.dot(x, w)
    if bias is not None:
      y = y + bias * lr
    return y


def _conv_padding(padding: PaddingLike, kernel_size: tuple[int, int]):
  if isinstance(padding, str):
    p = padding.upper()
    if p not in ("SAME", "VALID"):
      raise ValueError(f"padding string must be 'SAME' or 'VALID', got {padding!r}")
    return p
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  padding = tuple(padding)
  if len(padding) == 2 and all(isinstance(p, int) for p in padding):
    return tuple((int(p), int(p)) for p in padding)
  if len(padding) == 2 and all(len(p) == 2 for p in padding):
    return tuple((int(a), int(b)) for a, b in padding)
  raise ValueError(f"unsupported padding {padding!r}")


class EqualizedConv(nn.Module):
  """2-D convolution (NHWC) with ProGAN's equalized learning rate.

  Like :class:`EqualizedDense` with ``fan_in = kh * kw * C_in``: the HWIO
  kernel is stored ``~ N(0, 1 / lr_multiplier^2)`` and multiplied at run time
  by ``gain / sqrt(fan_in) * lr_multiplier``.

  Attributes:
    features: output channels.
    kernel_size: int or ``(kh, kw)``.
    strides: int or ``(sh, sw)``.
    padding: ``'SAME'``, ``'VALID'``, an int, ``(ph, pw)`` or
      ``((top, bottom), (left, right))`` (zero padding).
    lr_multiplier, use_bias, gain, bias_init, dtype, param_dtype: as in
      :class:`EqualizedDense`.

  Input ``[B, H, W, C_in]`` -> output ``[B, H', W', features]``.
  """

  features: int
  kernel_size: Union[int, Sequence[int]] = 3
  strides: Union[int, Sequence[int]] = 1
  padding: PaddingLike = "SAME"
  lr_multiplier: float = 1.0
  use_bias: bool = True
  gain: float = math.sqrt(2.0)
  bias_init: float = 0.0
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.ndim != 4:
      raise ValueError(f"EqualizedConv expects NHWC input, got shape {x.shape}")
    ks = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    st = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    c_in = x.shape[-1]
    fan_in = ks[0] * ks[1] * c_in
    lr = self.lr_multiplier
    kernel = self.param(
      "kernel", _normal_init(1.0 / lr), (*ks, c_in, self.features), self.param_dtype
    )
    bias = None
    if self.use_bias:
      bias = self.param(
        "bias",
        nn.initializers.constant(self.bias_init / lr),
        (self.features,),
        self.param_dtype,
      )
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    w = kernel * (self.gain / math.sqrt(fan_in) * lr)
    y = jax.lax.conv_general_dilated(
      x,
      w,
      window_strides=st,
      padding=_conv_padding(self.padding, ks),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    if bias is not None:
      y = y + bias * lr
    return y


# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------


def pixel_norm(x: Array, eps: float = 1e-8) -> Array:
  """ProGAN pixelwise feature normalisation (Sec. 4.2).

  ``b_{x,y} = a_{x,y} / sqrt(mean_c a_{x,y,c}^2 + eps)`` over the channel
  (last) axis, so every feature vector has unit mean square. Works for any
  ``[..., C]`` input (also for latents ``[B, Z]``).
  """
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def instance_norm(x: Array, eps: float = 1e-8) -> Array:
  """Parameter-free instance normalisation over the spatial axes of ``[B, ..., C]``.

  Each channel of each example is shifted to zero mean and scaled to unit
  variance (StyleGAN uses ``eps = 1e-8``). Reductions run in at least float32.
  """
  if x.ndim < 3:
    raise ValueError(f"instance_norm expects [B, spatial..., C], got shape {x.shape}")
  axes = tuple(range(1, x.ndim - 1))
  xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  xf = xf - jnp.mean(xf, axis=axes, keepdims=True)
  xf = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=axes, keepdims=True) + eps)
  return xf.astype(x.dtype)


class MinibatchStdDev(nn.Module):
  """Minibatch standard deviation layer (ProGAN Sec. 3, StyleGAN variant).

  The batch ``[B, H, W, C]`` is split into ``B / G`` groups of
  ``G = min(group_size, B)`` examples. As in the reference implementation the
  groups are strided: example ``b`` belongs to group ``b mod (B / G)``. The
  channels are split into ``num_new_features`` slices. For every group and
  slice the standard deviation over the group members (biased, plus 1e-8
  inside the square root) is computed per feature and pixel, then averaged
  over the pixels and the slice's channels. The resulting ``num_new_features``
  scalars per group are broadcast over ``H x W`` and appended as channels.

  ``G`` must divide ``B`` and ``num_new_features`` must divide ``C``; a
  ``ValueError`` is raised otherwise.

  Input ``[B, H, W, C]`` -> output ``[B, H, W, C + num_new_features]``.
  """

  group_size: int = 4
  num_new_features: int = 1
  eps: float = 1e-8

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.ndim != 4:
      raise ValueError(f"MinibatchStdDev expects NHWC input, got shape {x.shape}")
    b, h, w, c = x.shape
    g = min(self.group_size, b)
    if g < 1 or b % g != 0:
      raise ValueError(
        f"batch size {b} must be divisible by the group size min({self.group_size}, {b}) = {g}"
      )
    n = self.num_new_features
    if n < 1 or c % n != 0:
      raise ValueError(f"channels {c} must be divisible by num_new_features {n}")
    m = b // g
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    y = y.reshape(g, m, h, w, n, c // n)
    y = y - jnp.mean(y, axis=0, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + self.eps)  # [M, H, W, n, c/n]
    y = jnp.mean(y, axis=(1, 2, 4))  # [M, n]
    y = jnp.tile(y, (g, 1))  # [B, n]; row b is group b mod M
    y = jnp.broadcast_to(y[:, None, None, :], (b, h, w, n)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


# --------------------------------------------------------------------------
# blurred resampling
# --------------------------------------------------------------------------


def _blur_taps(taps: Sequence[float]) -> np.ndarray:
  """The 1-D taps normalised to sum to one (float64); the 2-D filter is their outer
  product, which then sums to one too."""
  k = np.asarray(taps, dtype=np.float64)
  if k.ndim != 1 or k.size == 0:
    raise ValueError(f"taps must be a non-empty 1-D sequence, got {taps!r}")
  if k.sum() == 0:
    raise ValueError("filter taps sum to zero")
  return k / k.sum()


def blur_kernel_2d(taps: Sequence[float] = (1, 2, 1)) -> np.ndarray:
  """Separable 2-D filter ``outer(taps, taps)`` normalised to sum to one."""
  k = _blur_taps(taps)
  return np.outer(k, k).astype(np.float32)


_PAD_MODES = {"zero": "constant", "edge": "edge", "reflect": "reflect"}


def blur(x: Array, *, kernel: Sequence[float] = (1, 2, 1), padding_mode: str = "zero") -> Array:
  """Low-pass filter each channel of ``[B, H, W, C]`` (same output size).

  The filter is the normalised outer product of ``kernel`` (binomial
  ``[1, 2, 1]`` -> ``[[1,2,1],[2,4,2],[1,2,1]] / 16``, as in StyleGAN, which
  applies it around every resampling step to reduce aliasing; Zhang 2019).

  Args:
    x: ``[B, H, W, C]``.
    kernel: 1-D filter taps.
    padding_mode: ``'zero'`` (StyleGAN's choice; constants fade near the
      border), ``'edge'`` (replicate, keeps constant images exactly constant)
      or ``'reflect'``.
  """
  if x.ndim != 4:
    raise ValueError(f"blur expects NHWC input, got shape {x.shape}")
  if padding_mode not in _PAD_MODES:
    raise ValueError(f"padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
  taps = _blur_taps(kernel)
  # The filter is separable: one pass of shifted, weighted adds along H, then along W.
  # XLA CPU runs the equivalent depthwise convolution (and its first and second
  # derivatives, which R1 takes) an order of magnitude slower than these fused adds.
  # Padding each axis in turn equals padding both first, for every padding mode.
  n = taps.size
  lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (lo, hi)
    xp = jnp.pad(x, pad, mode=_PAD_MODES[padding_mode])
    size = x.shape[axis]
    x = sum(
      jnp.asarray(t, x.dtype) * jax.lax.slice_in_dim(xp, i, i + size, axis=axis)
      for i, t in enumerate(taps)
    )
  return x


def upsample_2x(
  x: Array, *, kernel: Optional[Sequence[float]] = (1, 2, 1), padding_mode: str = "zero"
) -> Array:
  """Nearest-neighbour 2x upsampling followed by :func:`blur`.

  ``[B, H, W, C] -> [B, 2H, 2W, C]``; ``kernel=None`` skips the blur (plain
  nearest-neighbour, as in ProGAN).
  """
  if x.ndim != 4:
    raise ValueError(f"upsample_2x expects NHWC input, got shape {x.shape}")
  y = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  if kernel is not None:
    y = blur(y, kernel=kernel, padding_mode=padding_mode)
  return y


def downsample_2x(
  x: Array,
  *,
  kernel: Optional[Sequence[float]] = (1, 2, 1),
  method: str = "avg_pool",
  padding_mode: str = "zero",
) -> Array:
  """:func:`blur` followed by 2x decimation.

  ``[B, H, W, C] -> [B, H/2, W/2, C]`` (H, W even).

  Args:
    x: ``[B, H, W, C]``.
    kernel: 1-D blur taps, or ``None`` for no blur (ProGAN's plain 2x2
      average pooling).
    method: ``'avg_pool'`` (2x2 mean, StyleGAN's ``downscale2d``) or
      ``'stride'`` (keep every second pixel, like a strided conv after blur).
    padding_mode: see :func:`blur`.
  """
  if x.ndim != 4:
    raise ValueError(f"downsample_2x expects NHWC input, got shape {x.shape}")
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"downsample_2x needs even height and width, got {h}x{w}")
  if kernel is not None:
    x = blur(x, kernel=kernel, padding_mode=padding_mode)
  if method == "avg_pool":
    return jnp.mean(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))
  if method == "stride":
    return x[:, ::2, ::2, :]
  raise ValueError(f"method must be 'avg_pool' or 'stride', got {method!r}")


# --------------------------------------------------------------------------
# StyleGAN style modulation and noise
# --------------------------------------------------------------------------


class AdaIN(nn.Module):
  """Adaptive instance normalisation driven by a latent ``w`` (StyleGAN1).

  ``(y_s, y_b) = EqualizedDense(2C, gain=1)(w)`` and

      ``AdaIN(x, w) = instance_norm(x) * (y_s + 1) + y_b``

  (StyleGAN, Eq. 1; the ``+ 1`` is added explicitly as in the reference
  ``style_mod``, so a zero style leaves the normalised features unchanged).
  The first ``C`` outputs of the dense layer are the scales, the last ``C``
  the biases. After the layer every channel of every example has spatial mean
  ``y_b`` and std ``|y_s + 1|``.

  Attributes:
    epsilon: instance-norm epsilon.
    lr_multiplier: for the style dense layer.
    normalize: set ``False`` to only apply the style modulation.

  ``x: [B, H, W, C]``, ``w: [B, D]`` -> ``[B, H, W, C]``. ``style_fn``, when given, maps
  the style ``[B, 2C]`` (scales then biases) before it is used: StyleGAN's tools read and
  edit it there (the "style space" of Wu et al. 2021).
  """

  epsilon: float = 1e-8
  lr_multiplier: float = 1.0
  normalize: bool = True
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, w: Array, style_fn=None) -> Array:
    c = x.shape[-1]
    if w.ndim != 2 or w.shape[0] != x.shape[0]:
      raise ValueError(f"w must be [B, D] with B = {x.shape[0]}, got shape {w.shape}")
    style = EqualizedDense(
      2 * c,
      gain=1.0,
      lr_multiplier=self.lr_multiplier,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="style",
    )(w)
    if style_fn is not None:
      style = style_fn(style)
    bshape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
    scale = style[:, :c].reshape(bshape)
    shift = style[:, c:].reshape(bshape)
    if self.normalize:
      x = instance_norm(x, self.epsilon)
    return x * (scale + 1.0) + shift


class NoiseInjection(nn.Module):
  """StyleGAN per-pixel noise: ``x + noise * scale``.

  ``noise`` is one map ``[B, H, W, 1]`` shared by all channels, either passed
  in (e.g. fixed noise for evaluation, or zeros) or drawn from
  ``N(0, 1)`` with the ``'noise'`` RNG stream (``apply(..., rngs={'noise':
  key})``). ``scale`` is a learned per-channel weight ``[C]`` initialised to
  zero, so the layer starts as the identity (StyleGAN Sec. 3.2).

  ``x: [B, H, W, C]`` -> ``[B, H, W, C]``.
  """

  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, noise: Optional[Array] = None) -> Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.zeros_init(), (c,), self.param_dtype)
    if noise is None:
      noise = jax.random.normal(self.make_rng("noise"), x.shape[:-1] + (1,), x.dtype)
    noise = jnp.asarray(noise)
    if noise.ndim != x.ndim:
      raise ValueError(f"noise must be [B, H, W, 1], got shape {noise.shape}")
    return x + (noise * scale).astype(x.dtype)


# --------------------------------------------------------------------------
# normalisation choice
# --------------------------------------------------------------------------


class Identity(nn.Module):
  """No-op module: returns its first argument (``make_norm('none')``)."""

  @nn.compact
  def __call__(self, x: Array, *args, **kwargs) -> Array:
    del args, kwargs
    return x


def make_norm(
  kind: str,
  *,
  use_running_average: Optional[bool] = None,
  momentum: float = 0.9,
  epsilon: float = 1e-5,
  affine: Optional[bool] = None,
  scale_init: Optional[Callable[..., Array]] = None,
  axis_name: Optional[str] = None,
  dtype: Optional[Dtype] = None,
  param_dtype: Dtype = jnp.float32,
  name: Optional[str] = None,
) -> nn.Module:
  """Build a normalisation layer by name (pix2pix's ``--norm`` option).

  Call it inside a ``@nn.compact`` method and apply it as ``norm(x)``.

  * ``'batch'``: ``nn.BatchNorm`` over ``[B, H, W]`` per channel. The defaults
    (``momentum=0.9``, ``epsilon=1e-5``, affine) match PyTorch's
    ``BatchNorm2d`` used by pix2pix. ``use_running_average`` may be fixed
    here or passed per call, ``norm(x, use_running_average=...)``; statistics
    live in the ``'batch_stats'`` collection (make it mutable when training).
    pix2pix by default keeps using batch statistics at test time.
  * ``'instance'``: ``nn.InstanceNorm`` (per example and channel over H, W);
    non-affine by default, like pix2pix/CycleGAN's ``InstanceNorm2d``.
  * ``'none'``: :class:`Identity`.

  Args:
    kind: ``'batch'``, ``'instance'`` or ``'none'``.
    use_running_average: batch norm only.
    momentum: batch norm running-average decay.
    epsilon: numerical epsilon.
    affine: learn scale and bias; default ``True`` for batch, ``False`` for
      instance norm.
    scale_init: optional initialiser of the scale (pix2pix draws it from
      ``N(1, 0.02)``).
    axis_name: batch norm cross-device axis name (under ``pmap``/``shard_map``).
    dtype, param_dtype: forwarded to the flax module.
    name: module name.
  """
  kind = kind.lower()
  extra = {} if scale_init is None else {"scale_init": scale_init}
  if kind == "batch":
    a = True if affine is None else affine
    return nn.BatchNorm(
      use_running_average=use_running_average,
      momentum=momentum,
      epsilon=epsilon,
      use_scale=a,
      use_bias=a,
      axis_name=axis_name,
      dtype=dtype,
      param_dtype=param_dtype,
      name=name,
      **extra,
    )
  if kind == "instance":
    a = False if affine is None else affine
    return nn.InstanceNorm(
      epsilon=epsilon,
      use_scale=a,
      use_bias=a,
      dtype=dtype,
      param_dtype=param_dtype,
      name=name,
      **extra,
    )
  if kind == "none":
    return Identity(name=name)
  raise ValueError(f"norm kind must be 'batch', 'instance' or 'none', got {kind!r}")


# --------------------------------------------------------------------------
# minibatch discrimination
# --------------------------------------------------------------------------


def conv_transpose_4x4_s2(x: Array, kernel: Array) -> Array:
  """``nn.ConvTranspose(C, (4, 4), strides=2, padding=((2, 2), (2, 2)), transpose_kernel=True)``
  (Torch's ``SpatialFullConvolution(4, 4, 2, 2, 1, 1)``) as one matmul and sixteen
  shifted adds (col2im).

  XLA:CPU runs the gradient of a strided transposed convolution as a slow generic loop
  (seconds per layer at DCGAN sizes). Here every input pixel is multiplied by all sixteen
  taps at once (``[B*H*W, C_in] @ [C_in, 16*C_out]``, one wide matmul), and tap
  ``(ky, kx)`` of input pixel ``(m, n)`` lands on output pixel
  ``(2m - 1 + ky, 2n - 1 + kx)``. The backward pass is slices and one matmul too.
  ``x`` [B, H, W, C_in], ``kernel`` [4, 4, C_out, C_in] (flax's transposed-kernel layout)
  -> [B, 2H, 2W, C_out].
  """
  b, h, w, c_in = x.shape
  c_out = kernel.shape[2]
  k = kernel.transpose(3, 0, 1, 2).reshape(c_in, 16 * c_out)
  taps = (x.reshape(-1, c_in) @ k).reshape(b, h, w, 4, 4, c_out)
  # Output row 2m - 1 + ky, shifted by one, is row 2 * (m + ky // 2) + ky % 2 of a
  # (2H + 2)-row canvas: block m + ky // 2, phase ky % 2. The same for columns.
  out = jnp.zeros((b, h + 1, 2, w + 1, 2, c_out), x.dtype)
  for ky in range(4):
    for kx in range(4):
      out = out.at[:, ky // 2 : ky // 2 + h, ky % 2, kx // 2 : kx // 2 + w, kx % 2].add(
        taps[:, :, :, ky, kx]
      )
  return out.reshape(b, 2 * h + 2, 2 * w + 2, c_out)[:, 1:-1, 1:-1]


class ConvTranspose2x(nn.Module):
  """4x4 stride-2 transposed convolution doubling H and W (:func:`conv_transpose_4x4_s2`);
  the same ``kernel`` [4, 4, features, C_in] and ``bias`` parameters as the equivalent
  ``nn.ConvTranspose(..., transpose_kernel=True)``."""

  features: int
  use_bias: bool = True
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", self.kernel_init, (4, 4, self.features, x.shape[-1]))
    y = conv_transpose_4x4_s2(x, kernel.astype(x.dtype))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(x.dtype)
    return y


def conv_4x4_s2(x: Array, kernel: Array) -> Array:
  """``nn.Conv(C, (4, 4), strides=2, padding=((1, 1), (1, 1)))`` (DCGAN's downsampling
  convolution) as one matmul over the gathered 4x4 patches (im2col), for the same reason
  as :func:`conv_transpose_4x4_s2`. ``x`` [B, H, W, C_in] (H, W even), ``kernel``
  [4, 4, C_in, C_out] -> [B, H/2, W/2, C_out]."""
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  cols = jnp.concatenate(
    [xp[:, i : i + h : 2, j : j + w : 2] for i in range(4) for j in range(4)], axis=-1
  )
  return cols @ kernel.reshape(16 * c, -1)


class Conv2xDown(nn.Module):
  """4x4 stride-2 convolution halving H and W (:func:`conv_4x4_s2`); the same ``kernel``
  [4, 4, C_in, features] and ``bias`` parameters as the equivalent ``nn.Conv``."""

  features: int
  use_bias: bool = True
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
    y = conv_4x4_s2(x, kernel.astype(x.dtype))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(x.dtype)
    return y


class MinibatchDiscrimination(nn.Module):
  """Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for Training GANs").

  With a learned tensor ``T`` of shape ``[A, B * C]`` (``B = num_kernels``,
  ``C = kernel_dim``) every example's features ``x_i`` give a matrix
  ``M_i = reshape(x_i @ T, [B, C])`` and

      ``c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_L1)``

      ``o(x_i)_b = sum_{j != i} c_b(x_i, x_j)``

  The self term ``c_b(x_i, x_i) = exp(0) = 1`` is excluded by summing over all
  ``j`` and subtracting 1 (exact in floating point). The output is
  ``concat([x_i, o(x_i)])``; for a batch of ``N`` identical rows every
  ``o(x_i)_b`` equals ``N - 1``, for a single example it is 0. Unlike the
  paper's Theano code there is no per-kernel bias. The statistics are
  computed in at least float32 and cast back to the input dtype.

  Attributes:
    num_kernels: ``B``, number of closeness features appended.
    kernel_dim: ``C``, dimension of each kernel's projection.
    kernel_init: initialiser of ``T`` (``N(0, 0.05^2)`` like the paper's code).
    param_dtype: dtype of ``T``.

  Input ``[N, A]`` -> output ``[N, A + num_kernels]``.
  """

  num_kernels: int = 32
  kernel_dim: int = 5
  kernel_init: Callable[..., Array] = nn.initializers.normal(0.05)
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.ndim != 2:
      raise ValueError(f"MinibatchDiscrimination expects [N, A] input, got shape {x.shape}")
    n, a = x.shape
    b, c = self.num_kernels, self.kernel_dim
    if b < 1 or c < 1:
      raise ValueError(f"num_kernels={b} and kernel_dim={c} must be >= 1")
    t = self.param("kernel", self.kernel_init, (a, b * c), self.param_dtype)
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    m = jnp.dot(xf, t.astype(xf.dtype)).reshape(n, b, c)  # [N, B, C]
    l1 = jnp.sum(jnp.abs(m[:, None, :, :] - m[None, :, :, :]), axis=-1)  # [N, N, B]
    o = jnp.sum(jnp.exp(-l1), axis=1) - 1.0  # [N, B], self term exp(0) = 1 removed
    return jnp.concatenate([x, o.astype(x.dtype)], axis=-1)
