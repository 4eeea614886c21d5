"""ProGAN networks (Karras et al., "Progressive Growing of GANs for Improved
Quality, Stability, and Variation", ICLR 2018), flax.linen, NHWC.

Unlike the reference implementation, which builds the full-resolution network
once and selects the level of detail with a ``lod`` input, every training
stage here is its own module: ``Generator(stage=s)`` outputs images at
``start * 2**s`` and holds only the layers that stage uses. Growing to the
next stage is then parameter-tree surgery (:mod:`zoo.gan.growth`): build the
stage ``s + 1`` modules, initialise them and copy every leaf the stage ``s``
tree already had. For that to work, **parameter names depend on the
resolution, not on the stage**:

* Generator: ``block_{h}x{w}`` for every resolution up to the stage's
  (``block_4x4`` holds ``dense``/``bias``/``conv``, later blocks ``conv0``,
  ``conv1``) and ``to_rgb_{h}x{w}`` for the stage's resolution and, for
  ``stage >= 1``, the previous one (used by the fade-in).
* Discriminator: ``from_rgb_{h}x{w}`` for the stage's resolution and, for
  ``stage >= 1``, the previous one, ``block_{h}x{w}`` for every resolution
  (``block_4x4`` is the final block with ``conv``, ``dense0``, ``dense1``).

toRGB / fromRGB layers two or more resolutions below the current one are no
longer used by the network, so they are *dropped* from the tree: growing
stage ``s -> s + 1`` keeps every leaf of the old tree except
``to_rgb``/``from_rgb`` of resolution ``s - 1`` (see :func:`dropped_rgb_layers`).

Fade-in (``alpha`` in ``[0, 1]``, a traced scalar; ``lerp(a, b, t) = a + (b -
a) * t``, see :func:`lerp`):

* G: ``lerp(upsample2x(toRGB_{s-1}(h_{s-1})), toRGB_s(h_s), alpha)``;
* D: ``h = lerp(fromRGB_{s-1}(avgpool2x(x)), block_s(fromRGB_s(x)), alpha)``
  followed by the older blocks.

With ``alpha = 0`` a freshly grown network computes what the previous stage
computed at ``alpha = 1`` (G: nearest-2x-upsampled; D: on the 2x2
average-pooled input), so growth does not perturb training.

Resolutions are ``(height, width)``; the start may be rectangular (e.g.
``(4, 2)`` for 2:1 portraits, see :data:`SUPPORTED_STARTS`) and the long side
of any stage is at most :data:`MAX_SIDE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import ConfigError
from zoo.models.layers import (
  EqualizedConv,
  EqualizedDense,
  MinibatchStdDev,
  downsample_2x,
  pixel_norm,
  upsample_2x,
)

Array = jax.Array

__all__ = [
  "MAX_SIDE",
  "SUPPORTED_STARTS",
  "Discriminator",
  "Generator",
  "channels_at",
  "check_start",
  "dropped_rgb_layers",
  "dummy_inputs",
  "init_variables",
  "lerp",
  "make_progan",
  "max_stage",
  "minibatch_stddev",
  "resolution_at",
  "resolution_name",
  "resolutions",
  "validate_resolutions",
]

# Starting resolutions (height, width): square, or 2:1 / 1:2 with sides 2-8.
SUPPORTED_STARTS: tuple[tuple[int, int], ...] = ((4, 4), (4, 2), (2, 4), (8, 8), (8, 4), (4, 8))
MAX_SIDE = 256
LRELU_SLOPE = 0.2


# --------------------------------------------------------------------------
# resolution schedule
# --------------------------------------------------------------------------


def _as_hw(res: Any, what: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in res)
  except (TypeError, ValueError):
    raise ConfigError(f"{what} must be a (height, width) pair, got {res!r}") from None
  return h, w


def check_start(start: Sequence[int]) -> tuple[int, int]:
  """Return ``start`` as an ``(h, w)`` tuple; ConfigError unless it is supported."""
  hw = _as_hw(start, "start resolution")
  if hw not in SUPPORTED_STARTS:
    raise ConfigError(f"unsupported start resolution {hw}; supported: {list(SUPPORTED_STARTS)}")
  return hw


def resolution_at(start: Sequence[int], stage: int) -> tuple[int, int]:
  """``start * 2**stage`` as ``(h, w)`` (no validation)."""
  h, w = (int(v) for v in start)
  return h << stage, w << stage


def resolution_name(res: Sequence[int]) -> str:
  """``(8, 4) -> '8x4'``, the suffix of the per-resolution parameter names."""
  h, w = (int(v) for v in res)
  return f"{h}x{w}"


def max_stage(start: Sequence[int] = (4, 4)) -> int:
  """Largest stage whose long side is at most :data:`MAX_SIDE`."""
  h, w = check_start(start)
  return int(math.log2(MAX_SIDE // max(h, w)))


def _check_stage(start: Sequence[int], stage: int) -> tuple[int, int]:
  hw = check_start(start)
  if not isinstance(stage, int) or stage < 0 or stage > max_stage(hw):
    raise ConfigError(
      f"stage must be an integer in [0, {max_stage(hw)}] for start {hw} "
      f"(long side <= {MAX_SIDE}), got {stage!r}"
    )
  return hw


def resolutions(start: Sequence[int] = (4, 4), num_stages: int = 1) -> list[tuple[int, int]]:
  """The first ``num_stages`` resolutions ``start * 2**k``, ``k = 0 .. num_stages-1``.

  ``resolutions((4, 2), 3) == [(4, 2), (8, 4), (16, 8)]``. Raises ConfigError
  for an unsupported start, ``num_stages < 1`` or a long side above
  :data:`MAX_SIDE`.
  """
  hw = check_start(start)
  if not isinstance(num_stages, int) or num_stages < 1:
    raise ConfigError(f"num_stages must be a positive integer, got {num_stages!r}")
  if num_stages - 1 > max_stage(hw):
    last = resolution_at(hw, num_stages - 1)
    raise ConfigError(
      f"{num_stages} stages from {hw} reach {last}, above the maximum side {MAX_SIDE}"
    )
  return [resolution_at(hw, k) for k in range(num_stages)]


def validate_resolutions(res: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
  """Check a user-given schedule; return it as a list of ``(h, w)`` tuples.

  The schedule must be non-empty, start at a supported resolution, double
  both sides at every step and keep the long side at most :data:`MAX_SIDE`;
  otherwise a one-line ConfigError is raised.
  """
  res = [_as_hw(r, "resolution") for r in res]
  if not res:
    raise ConfigError("the resolution schedule is empty")
  start = check_start(res[0])
  for k, r in enumerate(res):
    if max(r) > MAX_SIDE:
      raise ConfigError(f"resolution {r} exceeds the maximum side {MAX_SIDE}")
    if r != resolution_at(start, k):
      raise ConfigError(
        f"resolution schedule must be start * 2**k; entry {k} is {r}, "
        f"expected {resolution_at(start, k)}"
      )
  return res


def channels_at(level: int, *, fmap_base: int, fmap_max: int) -> int:
  """Feature maps at ``level`` (0 = start resolution): ``min(fmap_base // 2**(level+1), fmap_max)``.

  This is the reference ``nf(res - 1)`` with ``res = log2(resolution)`` for a
  4x4 start (e.g. ``fmap_base=8192, fmap_max=512``: 512 up to 32x32, then
  256, 128, 64 at 256x256); rectangular starts use the level, not the pixel
  count. ``level = -1`` gives ``min(fmap_base, fmap_max)``, the width of the
  discriminator's hidden dense layer. At least 1.
  """
  if level < -1:
    raise ValueError(f"level must be >= -1, got {level}")
  return max(1, min(int(fmap_base // 2 ** (level + 1)), int(fmap_max)))


def lerp(a: Array, b: Array, t: Array) -> Array:
  """Linear interpolation ``a + (b - a) * t``, evaluated as ``a * (1 - t) + b * t``.

  Same value as the reference's form, but exact at both ends (``a`` for
  ``t = 0``, ``b`` for ``t = 1``, finite inputs), so a stage at ``alpha = 1``
  and the grown stage at ``alpha = 0`` agree to the last bit.
  """
  return a * (1 - t) + b * t


def _lrelu(x: Array) -> Array:
  return jax.nn.leaky_relu(x, LRELU_SLOPE)


def _alpha(alpha: Any, like: Array) -> Array:
  alpha = jnp.asarray(alpha, dtype=like.dtype)
  if alpha.ndim != 0:
    raise ValueError(f"alpha must be a scalar, got shape {alpha.shape}")
  return alpha


# --------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------


class _GStartBlock(nn.Module):
  """Latent ``[B, Z]`` -> features ``[B, h0, w0, C]`` at the start resolution."""

  start: tuple[int, int]
  features: int
  use_pixelnorm: bool

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h0, w0 = self.start
    pn = pixel_norm if self.use_pixelnorm else (lambda v: v)
    # The reference's dense gain sqrt(2)/4 (i.e. /sqrt(16) for 4x4); pixel norm
    # right after makes the scale immaterial apart from the zero-init bias.
    x = EqualizedDense(
      h0 * w0 * self.features, gain=math.sqrt(2.0) / 4, use_bias=False, name="dense"
    )(z)
    x = x.reshape(z.shape[0], h0, w0, self.features)
    # One bias per channel (not per pixel), added after the reshape as in the reference.
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x = pn(_lrelu(x + bias.astype(x.dtype)))
    x = pn(_lrelu(EqualizedConv(self.features, 3, name="conv")(x)))
    return x


class _GUpBlock(nn.Module):
  """Nearest 2x upsample, then two 3x3 convs (lrelu, pixel norm): ``[B,h,w,*] -> [B,2h,2w,C]``."""

  features: int
  use_pixelnorm: bool

  @nn.compact
  def __call__(self, x: Array) -> Array:
    pn = pixel_norm if self.use_pixelnorm else (lambda v: v)
    x = upsample_2x(x, kernel=None)
    x = pn(_lrelu(EqualizedConv(self.features, 3, name="conv0")(x)))
    x = pn(_lrelu(EqualizedConv(self.features, 3, name="conv1")(x)))
    return x


class Generator(nn.Module):
  """ProGAN generator for one training stage.

  Attributes:
    start: start resolution ``(h0, w0)``, one of :data:`SUPPORTED_STARTS`.
    stage: 0 outputs ``start``; stage ``s`` outputs ``start * 2**s``.
    latent_dim: size of ``z``.
    fmap_base, fmap_max: feature maps per level, see :func:`channels_at`.
    num_channels: image channels.
    normalize_latents: pixel-normalise ``z`` first (reference default).
    use_pixelnorm: pixel norm after every conv activation.

  ``__call__(z, alpha=1.0)``: ``z [B, latent_dim]`` and the fade-in weight
  ``alpha`` (a float32 scalar, may be traced; ignored at stage 0) ->
  images ``[B, H, W, num_channels]``, float32, linear (no tanh; the
  reference trains on data in ``[-1, 1]`` and clips only for display).
  """

  start: tuple[int, int] = (4, 4)
  stage: int = 0
  latent_dim: int = 512
  fmap_base: int = 8192
  fmap_max: int = 512
  num_channels: int = 3
  normalize_latents: bool = True
  use_pixelnorm: bool = True

  @property
  def resolution(self) -> tuple[int, int]:
    """Output ``(H, W)``."""
    return resolution_at(self.start, self.stage)

  def _nf(self, level: int) -> int:
    return channels_at(level, fmap_base=self.fmap_base, fmap_max=self.fmap_max)

  def _to_rgb(self, level: int) -> nn.Module:
    name = f"to_rgb_{resolution_name(resolution_at(self.start, level))}"
    return EqualizedConv(self.num_channels, 1, gain=1.0, name=name)

  @nn.compact
  def __call__(self, z: Array, alpha: Any = 1.0) -> Array:
    start = _check_stage(self.start, self.stage)
    if z.ndim != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(f"z must be [B, {self.latent_dim}], got shape {z.shape}")
    x = pixel_norm(z) if self.normalize_latents else z
    h = _GStartBlock(
      start, self._nf(0), self.use_pixelnorm, name=f"block_{resolution_name(start)}"
    )(x)
    prev = h
    for k in range(1, self.stage + 1):
      prev = h
      name = f"block_{resolution_name(resolution_at(start, k))}"
      h = _GUpBlock(self._nf(k), self.use_pixelnorm, name=name)(h)
    img = self._to_rgb(self.stage)(h)
    if self.stage == 0:
      return img
    old = upsample_2x(self._to_rgb(self.stage - 1)(prev), kernel=None)
    return lerp(old, img, _alpha(alpha, img))


# --------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------


class _DDownBlock(nn.Module):
  """Two 3x3 convs (lrelu) then 2x2 average pooling: ``[B,h,w,*] -> [B,h/2,w/2,features_out]``."""

  features: int
  features_out: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = _lrelu(EqualizedConv(self.features, 3, name="conv0")(x))
    x = _lrelu(EqualizedConv(self.features_out, 3, name="conv1")(x))
    return downsample_2x(x, kernel=None)


def minibatch_stddev(x: Array, group_size: int) -> Array:
  """The minibatch-stddev feature appended to ``x`` (``group_size <= 1``: ``x`` unchanged);
  the group is ``min(group_size, B)``, or the whole batch when that does not divide it."""
  if group_size <= 1:
    return x
  b = x.shape[0]
  g = min(group_size, b)
  if b % g:
    g = b
  return MinibatchStdDev(group_size=g, num_new_features=1)(x)


class _DFinalBlock(nn.Module):
  """Minibatch stddev -> 3x3 conv -> dense -> dense(1): ``[B, h0, w0, *] -> [B]``."""

  features: int
  hidden: int
  mbstd_group_size: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = minibatch_stddev(x, self.mbstd_group_size)
    x = _lrelu(EqualizedConv(self.features, 3, name="conv")(x))
    x = x.reshape(x.shape[0], -1)
    x = _lrelu(EqualizedDense(self.hidden, name="dense0")(x))
    return EqualizedDense(1, gain=1.0, name="dense1")(x)[:, 0]


class Discriminator(nn.Module):
  """ProGAN discriminator for one training stage (mirror of :class:`Generator`).

  Attributes:
    start, stage, fmap_base, fmap_max, num_channels: as in :class:`Generator`.
    mbstd_group_size: minibatch-stddev group size (reference 4); the group is
      ``min(mbstd_group_size, B)``, or the whole batch when that does not
      divide ``B``; ``<= 1`` disables the layer (changes the parameter shapes).

  ``__call__(x, alpha=1.0)``: images ``[B, H, W, num_channels]`` at the
  stage's resolution and the fade-in weight ``alpha`` (float32 scalar) ->
  scores ``[B]`` (float32, unbounded logits / critic values).
  """

  start: tuple[int, int] = (4, 4)
  stage: int = 0
  fmap_base: int = 8192
  fmap_max: int = 512
  num_channels: int = 3
  mbstd_group_size: int = 4

  @property
  def resolution(self) -> tuple[int, int]:
    """Input ``(H, W)``."""
    return resolution_at(self.start, self.stage)

  def _nf(self, level: int) -> int:
    return channels_at(level, fmap_base=self.fmap_base, fmap_max=self.fmap_max)

  def _from_rgb(self, level: int, x: Array) -> Array:
    name = f"from_rgb_{resolution_name(resolution_at(self.start, level))}"
    return _lrelu(EqualizedConv(self._nf(level), 1, name=name)(x))

  def _block(self, level: int, x: Array) -> Array:
    name = f"block_{resolution_name(resolution_at(self.start, level))}"
    return _DDownBlock(self._nf(level), self._nf(level - 1), name=name)(x)

  def _trunk(self, x: Array, alpha: Any) -> Array:
    """fromRGB, the faded-in newest block and the older ones: features at the start
    resolution (called from a compact ``__call__``; a subclass may change ``_block``)."""
    _check_stage(self.start, self.stage)
    want = (*self.resolution, self.num_channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
      raise ValueError(f"x must be [B, {want[0]}, {want[1]}, {want[2]}], got shape {x.shape}")
    s = self.stage
    h = self._from_rgb(s, x)
    if s >= 1:
      h = self._block(s, h)
      old = self._from_rgb(s - 1, downsample_2x(x, kernel=None))
      h = lerp(old, h, _alpha(alpha, h))
      for k in range(s - 1, 0, -1):
        h = self._block(k, h)
    return h

  @nn.compact
  def __call__(self, x: Array, alpha: Any = 1.0) -> Array:
    h = self._trunk(x, alpha)
    name = f"block_{resolution_name(self.start)}"
    return _DFinalBlock(self._nf(0), self._nf(-1), self.mbstd_group_size, name=name)(h)


# --------------------------------------------------------------------------
# construction helpers
# --------------------------------------------------------------------------

_G_KEYS = ("start", "latent_dim", "fmap_base", "fmap_max", "num_channels")
_G_KEYS += ("normalize_latents", "use_pixelnorm")
_D_KEYS = ("start", "fmap_base", "fmap_max", "num_channels", "mbstd_group_size")
#: The discriminator's own widths, for a D wider or narrower than G; 0 (or absent) gives
#: it the generator's ``fmap_base`` / ``fmap_max``.
D_WIDTH_KEYS = ("d_fmap_base", "d_fmap_max")


def discriminator_widths(config: Mapping[str, Any]) -> dict[str, int]:
  """``{'fmap_base': ..., 'fmap_max': ...}`` for D from ``d_fmap_base`` / ``d_fmap_max``
  (only the keys set to a positive value). One-line ConfigError for a bad value."""
  out = {}
  for key in D_WIDTH_KEYS:
    v = config.get(key, 0)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
      raise ConfigError(f"model.{key}={v!r} must be an integer >= 0 (0: the generator's)")
    if v:
      out[key.removeprefix("d_")] = v
  return out


def make_progan(config: Mapping[str, Any], stage: int) -> tuple[Generator, Discriminator]:
  """Build the ``(Generator, Discriminator)`` pair of ``stage`` from a model config.

  ``config`` (a dict or an ``ml_collections.ConfigDict``) may hold ``start``,
  ``latent_dim``, ``fmap_base``, ``fmap_max``, ``num_channels``,
  ``normalize_latents``, ``use_pixelnorm``, ``mbstd_group_size`` and D's own widths
  ``d_fmap_base`` / ``d_fmap_max`` (0: G's); missing keys take the module defaults. An
  unknown key or a bad value is a one-line ConfigError.
  """
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  config = dict(config)
  unknown = sorted(set(config) - set(_G_KEYS) - set(_D_KEYS) - set(D_WIDTH_KEYS))
  if unknown:
    raise ConfigError(f"unknown ProGAN model option(s): {', '.join(unknown)}")
  if "start" in config:
    config["start"] = check_start(config["start"])
  for key in ("latent_dim", "fmap_base", "fmap_max", "num_channels"):
    v = config.get(key, 1)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
      raise ConfigError(f"model.{key}={v!r} must be a positive integer")
  v = config.get("mbstd_group_size", 0)
  if not isinstance(v, int) or isinstance(v, bool) or v < 0:
    raise ConfigError(f"model.mbstd_group_size={v!r} must be an integer >= 0 (<= 1: off)")
  for key in ("normalize_latents", "use_pixelnorm"):
    if not isinstance(config.get(key, True), bool):
      raise ConfigError(f"model.{key}={config[key]!r} must be a bool")
  _check_stage(config.get("start", (4, 4)), stage)
  g = Generator(stage=stage, **{k: v for k, v in config.items() if k in _G_KEYS})
  d_config = {k: v for k, v in config.items() if k in _D_KEYS} | discriminator_widths(config)
  d = Discriminator(stage=stage, **d_config)
  return g, d


def dummy_inputs(module: Generator | Discriminator, batch_size: int = 1) -> tuple[Array, Array]:
  """Zero inputs ``(z or x, alpha)`` of the right shapes for ``module.init``."""
  alpha = jnp.float32(0.0)
  if isinstance(module, Generator):
    return jnp.zeros((batch_size, module.latent_dim), jnp.float32), alpha
  if isinstance(module, Discriminator):
    h, w = module.resolution
    return jnp.zeros((batch_size, h, w, module.num_channels), jnp.float32), alpha
  raise TypeError(f"expected a ProGAN Generator or Discriminator, got {type(module).__name__}")


def init_variables(module: Generator | Discriminator, key: Array) -> dict:
  """``module.init`` on :func:`dummy_inputs`; returns ``{'params': ...}``.

  Jitted: an eager ``init`` dispatches op by op, several times slower on a CPU."""
  return jax.jit(lambda k: module.init(k, *dummy_inputs(module)))(key)


def dropped_rgb_layers(start: Sequence[int], stage: int) -> dict[str, tuple[str, ...]]:
  """Top-level names dropped from the trees when growing ``stage -> stage + 1``.

  ``{'g': ('to_rgb_<res_{s-1}>',), 'd': ('from_rgb_<res_{s-1}>',)}``; empty
  tuples for ``stage == 0``.
  """
  if stage < 1:
    return {"g": (), "d": ()}
  name = resolution_name(resolution_at(start, stage - 1))
  return {"g": (f"to_rgb_{name}",), "d": (f"from_rgb_{name}",)}
