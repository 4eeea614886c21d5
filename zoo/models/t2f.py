"""T2F networks (akanimax/T2F, "Text to Face"): a caption encoder and conditioning
augmentation in front of ProGAN's progressive generator, and a ProGAN discriminator that
also sees the text, flax.linen, NHWC.

Generator (:class:`TextConditionalGenerator`), one module per growth stage like
:class:`zoo.models.progan.Generator`::

  tokens [B, L], lengths [B] --LSTMEncoder--> emb [B, hidden_dim]
  emb --EqualizedDense(2 ca_dim)--> mu, logvar            (conditioning augmentation)
  c = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)          (StackGAN's reparameterisation)
  [c, z] (ca_dim + latent_dim) --ProGAN Generator(stage)--> images

Parameter tree: ``encoder`` (:class:`zoo.models.text.LSTMEncoder`: ``embed``, ``lstm<i>``)
and ``ca`` do not depend on the stage; ``generator`` is a
:class:`zoo.models.progan.Generator` whose names depend on the resolution only
(``block_4x4``, ``block_8x8``, ``to_rgb_8x8`` ...). So growth is the same parameter
surgery as ProGAN's (:func:`zoo.gan.growth.grow_state`): every leaf of stage ``s``,
encoder and CA included, is carried to stage ``s + 1`` unchanged.

Discriminator (:class:`ConditionalDiscriminator`): ProGAN's, except its last (start
resolution) block, which takes the condition as the reference's ``ConDisFinalBlock``
does: minibatch stddev -> 3x3 conv -> concatenate the condition, compressed by a linear
layer to ``cond_dim`` and replicated over the ``h0 x w0`` positions -> 1x1 conv ->
dense (the reference's 4x4 conv) -> dense(1). Its names stay resolution-based
(``from_rgb_<res>``, ``block_<res>``; the last block adds ``compress`` and ``conv_cond``).

How D reads the condition (``model.conditioning``, a name the text-conditional DCGAN
shares): ``'concat'`` (the reference, above) or ``'projection'`` (Miyato & Koyama 2018;
not the reference's): the last block has no ``compress`` and its 1x1 conv sees the image
features alone, and the score adds ``<EqualizedDense(hidden)(cond), phi>``, where ``phi``
is the block's last hidden features (``dense0``'s output); ``'projection_map'`` projects
onto the flattened ``h0 x w0`` map of the 1x1 conv instead (``h0 w0 features`` numbers,
as the text-conditional DCGAN's projection D).

What D is conditioned on (``model.d_condition``): ``'embedding'`` (the reference: the
encoder's output, ``cond_features = hidden_dim``) or ``'ca'`` (the augmented condition c,
``cond_features = ca_dim``).

A pretrained caption encoder instead of the LSTM (``model.text_encoder='pretrained'``,
the reference's ``use_pretrained_encoder``): the generator has no ``encoder`` subtree and
takes the frozen encoder's embeddings ``[B, text_dim]`` where the LSTM's output would be;
:func:`generate_images` and :func:`text_embedding` take either kind of text input (a tuple:
``(tokens, lengths)`` or ``(embeddings,)``).

Deliberate differences from the reference: equalized-learning-rate layers throughout
(the reference's ``use_eql`` default); ``logvar`` for the CA's spread as StackGAN (the
reference takes ``sigma = relu(.) + 1e-12``); ProGAN's generator of :mod:`zoo.models.progan`
(dense start block, no tanh) and its grouped minibatch stddev.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.errors import ConfigError
from zoo.models import progan
from zoo.models.layers import EqualizedConv, EqualizedDense, MinibatchStdDev, downsample_2x
from zoo.models.text import LSTMEncoder

Array = jax.Array

__all__ = [
  "CONDITIONINGS",
  "D_CONDITIONS",
  "TEXT_ENCODERS",
  "ConditionalDiscriminator",
  "TextConditionalGenerator",
  "dummy_inputs",
  "generate_images",
  "init_variables",
  "make_t2f",
  "text_embedding",
]

#: ``model.d_condition`` -> the entry of the generator's ``aux`` dict D is conditioned on.
D_CONDITIONS = {"embedding": "emb", "ca": "c"}
#: ``model.text_encoder``: the jointly trained word LSTM (reference) or a frozen pretrained
#: caption encoder whose embeddings come in with the batch.
TEXT_ENCODERS = ("lstm", "pretrained")
#: ``model.conditioning``: how D's last block reads the condition.
CONDITIONINGS = ("concat", "projection", "projection_map")

_lrelu = progan._lrelu  # pylint: disable=protected-access


# --------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------


class TextConditionalGenerator(nn.Module):
  """Caption encoder + conditioning augmentation + ProGAN generator, for one stage.

  Attributes:
    vocab_size: token ids (``len(vocabulary)``).
    embed_dim, hidden_dim, num_layers: the :class:`LSTMEncoder` (word embedding size,
      LSTM units = text embedding size, stacked layers).
    ca_dim: size of the augmented condition ``c``.
    latent_dim: size of the noise ``z``; the ProGAN generator's input is
      ``ca_dim + latent_dim``.
    start, stage, fmap_base, fmap_max, num_channels, normalize_latents, use_pixelnorm:
      the :class:`zoo.models.progan.Generator`.
    text_dim: 0 (the LSTM); > 0: no encoder, the inputs are a pretrained encoder's
      embeddings ``[B, text_dim]`` (use :meth:`synthesize`, or :func:`generate_images`).

  ``__call__(tokens, lengths, z, alpha=1.0, *, eps=None, rng_ca=None)``: ``tokens``
  int32 ``[B, L]``, ``lengths`` int32 ``[B]``, ``z`` ``[B, latent_dim]``, the fade-in
  weight ``alpha``; the CA noise is ``eps`` ``[B, ca_dim]`` when given, else drawn from
  ``rng_ca``, else zero (``c = mu``). Returns ``(images [B, H, W, num_channels],
  aux)`` with ``aux = {'emb', 'mu', 'logvar', 'c'}``.

  Other entry points (``module.apply(..., method=...)``): :meth:`embed` (tokens -> emb),
  :meth:`condition` (emb -> c, mu, logvar), :meth:`synthesize` (emb, z -> images, aux),
  e.g. to interpolate between captions in the embedding space.
  """

  vocab_size: int
  embed_dim: int = 128
  hidden_dim: int = 256
  num_layers: int = 1
  ca_dim: int = 128
  latent_dim: int = 128
  start: tuple[int, int] = (4, 4)
  stage: int = 0
  fmap_base: int = 8192
  fmap_max: int = 512
  num_channels: int = 3
  normalize_latents: bool = False
  use_pixelnorm: bool = True
  text_dim: int = 0

  @property
  def resolution(self) -> tuple[int, int]:
    return progan.resolution_at(self.start, self.stage)

  @property
  def emb_dim(self) -> int:
    """Size of the text embedding the CA (and D, by default) see."""
    return self.text_dim or self.hidden_dim

  def setup(self):
    if not self.text_dim:
      self.encoder = LSTMEncoder(
        self.vocab_size,
        embed_dim_in=self.embed_dim,
        hidden_dim=self.hidden_dim,
        num_layers=self.num_layers,
      )
    # The CA's linear layer: gain 1 (linear output), as the reference's equalized linear.
    self.ca = EqualizedDense(2 * self.ca_dim, gain=1.0)
    self.generator = progan.Generator(
      start=tuple(self.start),
      stage=self.stage,
      latent_dim=self.ca_dim + self.latent_dim,
      fmap_base=self.fmap_base,
      fmap_max=self.fmap_max,
      num_channels=self.num_channels,
      normalize_latents=self.normalize_latents,
      use_pixelnorm=self.use_pixelnorm,
    )

  def embed(self, tokens: Array, lengths: Array) -> Array:
    """``[B, L]``, ``[B]`` -> the text embedding ``[B, hidden_dim]``."""
    if self.text_dim:
      raise ValueError("this generator takes a pretrained encoder's embeddings, not tokens")
    return self.encoder(tokens, lengths)

  def condition(self, emb: Array, eps: Array | None = None) -> tuple[Array, Array, Array]:
    """``(c, mu, logvar)``, each ``[B, ca_dim]``; ``c = mu`` without ``eps``."""
    h = self.ca(emb)
    mu, logvar = h[:, : self.ca_dim], h[:, self.ca_dim :]
    if eps is None:
      return mu, mu, logvar
    if eps.shape != mu.shape:
      raise ValueError(f"eps must be [B, {self.ca_dim}], got shape {eps.shape}")
    return mu + jnp.exp(0.5 * logvar) * eps, mu, logvar

  def synthesize(
    self,
    emb: Array,
    z: Array,
    alpha: Any = 1.0,
    *,
    eps: Array | None = None,
    rng_ca: Array | None = None,
  ) -> tuple[Array, dict]:
    """Images from a text embedding (see the class docstring; the CA noise as there)."""
    if z.ndim != 2 or z.shape[-1] != self.latent_dim or z.shape[0] != emb.shape[0]:
      raise ValueError(f"z must be [{emb.shape[0]}, {self.latent_dim}], got shape {z.shape}")
    if eps is None and rng_ca is not None:
      eps = jax.random.normal(rng_ca, (emb.shape[0], self.ca_dim), emb.dtype)
    c, mu, logvar = self.condition(emb, eps)
    images = self.generator(jnp.concatenate([c, z.astype(c.dtype)], axis=-1), alpha)
    return images, {"emb": emb, "mu": mu, "logvar": logvar, "c": c}

  def __call__(
    self,
    tokens: Array,
    lengths: Array,
    z: Array,
    alpha: Any = 1.0,
    *,
    eps: Array | None = None,
    rng_ca: Array | None = None,
  ) -> tuple[Array, dict]:
    return self.synthesize(self.embed(tokens, lengths), z, alpha, eps=eps, rng_ca=rng_ca)


# --------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------


class _CondFinalBlock(nn.Module):
  """``[B, h0, w0, *]``, condition ``[B, F]`` -> scores ``[B]`` (see the module docstring)."""

  features: int
  hidden: int
  mbstd_group_size: int
  cond_dim: int
  conditioning: str = "concat"

  @nn.compact
  def __call__(self, x: Array, cond: Array) -> Array:
    if self.mbstd_group_size > 1:
      b = x.shape[0]
      g = min(self.mbstd_group_size, b)
      if b % g:
        g = b  # as zoo.models.progan: one group over the whole batch
      x = MinibatchStdDev(group_size=g, num_new_features=1)(x)
    x = _lrelu(EqualizedConv(self.features, 3, name="conv")(x))
    if self.conditioning == "concat":
      # The reference's compressor: a linear layer, no activation.
      y = EqualizedDense(self.cond_dim, gain=1.0, name="compress")(cond.astype(x.dtype))
      y = jnp.broadcast_to(y[:, None, None, :], (*x.shape[:3], self.cond_dim))
      x = jnp.concatenate([x, y], axis=-1)
    x = _lrelu(EqualizedConv(self.features, 1, name="conv_cond")(x))
    x = x.reshape(x.shape[0], -1)
    phi = _lrelu(EqualizedDense(self.hidden, name="dense0")(x))
    score = EqualizedDense(1, gain=1.0, name="dense1")(phi)[:, 0]
    if self.conditioning != "concat":
      # 'projection': onto dense0's summary; 'projection_map': onto every number of the
      # h0 x w0 map, as the text-conditional DCGAN's projection D.
      feats = phi if self.conditioning == "projection" else x
      t = EqualizedDense(feats.shape[-1], gain=1.0, name="text_embed")(cond.astype(x.dtype))
      score = score + jnp.sum(t * feats, axis=-1)
    return score


class ConditionalDiscriminator(progan.Discriminator):
  """ProGAN's discriminator with the condition entering its last block.

  Attributes (besides :class:`zoo.models.progan.Discriminator`'s):
    cond_features: size of the condition vector given to ``__call__``.
    cond_dim: the condition's size after the compressing linear layer.

  ``__call__(x, cond, alpha=1.0)``: images ``[B, H, W, num_channels]`` at the stage's
  resolution, ``cond [B, cond_features]``, fade-in weight ``alpha`` -> scores ``[B]``.
  """

  cond_features: int = 256
  cond_dim: int = 128
  conditioning: str = "concat"

  @nn.compact
  def __call__(self, x: Array, cond: Array, alpha: Any = 1.0) -> Array:  # pylint: disable=arguments-renamed
    start = progan._check_stage(self.start, self.stage)  # pylint: disable=protected-access
    want = (*self.resolution, self.num_channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
      raise ValueError(f"x must be [B, {want[0]}, {want[1]}, {want[2]}], got shape {x.shape}")
    if cond.ndim != 2 or cond.shape != (x.shape[0], self.cond_features):
      raise ValueError(f"cond must be [{x.shape[0]}, {self.cond_features}], got {cond.shape}")
    s = self.stage
    h = self._from_rgb(s, x)
    if s >= 1:  # the fade-in, exactly as zoo.models.progan.Discriminator
      h = self._block(s, h)
      old = self._from_rgb(s - 1, downsample_2x(x, kernel=None))
      h = progan.lerp(old, h, progan._alpha(alpha, h))  # pylint: disable=protected-access
      for k in range(s - 1, 0, -1):
        h = self._block(k, h)
    return _CondFinalBlock(
      self._nf(0),
      self._nf(-1),
      self.mbstd_group_size,
      self.cond_dim,
      self.conditioning,
      name=f"block_{progan.resolution_name(start)}",
    )(h, cond)


# --------------------------------------------------------------------------
# construction helpers
# --------------------------------------------------------------------------

_TEXT_KEYS = (
  "embed_dim",
  "hidden_dim",
  "num_layers",
  "ca_dim",
  "cond_dim",
  "d_condition",
  "text_encoder",
  "conditioning",
)
_PROGAN_KEYS = progan._G_KEYS + tuple(k for k in progan._D_KEYS if k not in progan._G_KEYS)  # pylint: disable=protected-access
_PROGAN_KEYS += progan.D_WIDTH_KEYS


def _positive(config: Mapping[str, Any], key: str, default: int) -> int:
  v = config.get(key, default)
  if not isinstance(v, int) or isinstance(v, bool) or v < 1:
    raise ConfigError(f"model.{key}={v!r} must be a positive integer")
  return v


def make_t2f(
  config: Mapping[str, Any], stage: int, vocab_size: int, *, text_dim: int | None = None
) -> tuple[TextConditionalGenerator, ConditionalDiscriminator]:
  """The ``(generator, discriminator)`` of ``stage`` from a model config.

  ``config`` (dict or ConfigDict) may hold the ProGAN keys of
  :func:`zoo.models.progan.make_progan` (``latent_dim`` is the noise size here) and
  ``embed_dim``, ``hidden_dim``, ``num_layers``, ``ca_dim``, ``cond_dim``,
  ``d_condition`` (``'embedding'`` | ``'ca'``), ``conditioning`` (:data:`CONDITIONINGS`),
  ``text_encoder`` (``'lstm'`` |
  ``'pretrained'``: then ``text_dim``, the pretrained encoder's embedding size, is
  required); missing keys take the module defaults. An unknown key or a bad value is a
  one-line ConfigError.
  """
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  config = dict(config)
  unknown = sorted(set(config) - set(_TEXT_KEYS) - set(_PROGAN_KEYS))
  if unknown:
    raise ConfigError(f"unknown T2F model option(s): {', '.join(unknown)}")
  if not isinstance(vocab_size, int) or vocab_size < 3:
    raise ConfigError(f"vocab_size={vocab_size!r} must be an integer >= 3")
  defaults = TextConditionalGenerator.__dataclass_fields__
  text = {k: _positive(config, k, defaults[k].default) for k in _TEXT_KEYS[:4]}
  cond_dim = _positive(config, "cond_dim", ConditionalDiscriminator.cond_dim)
  d_condition = config.get("d_condition", "embedding")
  if d_condition not in D_CONDITIONS:
    raise ConfigError(f"model.d_condition={d_condition!r}, expected one of {list(D_CONDITIONS)}")
  conditioning = config.get("conditioning", "concat")
  if conditioning not in CONDITIONINGS:
    raise ConfigError(f"model.conditioning={conditioning!r}, expected one of {list(CONDITIONINGS)}")
  text_encoder = config.get("text_encoder", "lstm")
  if text_encoder not in TEXT_ENCODERS:
    raise ConfigError(f"model.text_encoder={text_encoder!r}, expected one of {list(TEXT_ENCODERS)}")
  if text_encoder == "lstm":
    text_dim = 0
  elif not isinstance(text_dim, int) or text_dim < 1:
    raise ConfigError("model.text_encoder='pretrained' needs the encoder's embedding size")
  pg = {k: v for k, v in config.items() if k in _PROGAN_KEYS}
  latent_dim = _positive(pg, "latent_dim", defaults["latent_dim"].default)
  pg["latent_dim"] = text["ca_dim"] + latent_dim
  pg.setdefault("normalize_latents", defaults["normalize_latents"].default)
  g0, d0 = progan.make_progan(pg, stage)  # validates the ProGAN part and the stage
  g = TextConditionalGenerator(
    vocab_size=vocab_size,
    **text,
    latent_dim=latent_dim,
    start=tuple(g0.start),
    stage=stage,
    fmap_base=g0.fmap_base,
    fmap_max=g0.fmap_max,
    num_channels=g0.num_channels,
    normalize_latents=g0.normalize_latents,
    use_pixelnorm=g0.use_pixelnorm,
    text_dim=text_dim,
  )
  cond_features = g.emb_dim if d_condition == "embedding" else text["ca_dim"]
  d = ConditionalDiscriminator(
    start=tuple(d0.start),
    stage=stage,
    fmap_base=d0.fmap_base,
    fmap_max=d0.fmap_max,
    num_channels=d0.num_channels,
    mbstd_group_size=d0.mbstd_group_size,
    cond_features=cond_features,
    cond_dim=cond_dim,
    conditioning=conditioning,
  )
  return g, d


def dummy_inputs(module, batch_size: int = 1) -> tuple:
  """Zero inputs of the right shapes for ``module.init`` (positional arguments)."""
  alpha = jnp.float32(0.0)
  if isinstance(module, TextConditionalGenerator) and module.text_dim:
    emb = jnp.zeros((batch_size, module.text_dim), jnp.float32)
    return emb, jnp.zeros((batch_size, module.latent_dim), jnp.float32), alpha
  if isinstance(module, TextConditionalGenerator):
    tokens = jnp.zeros((batch_size, 1), jnp.int32)
    lengths = jnp.ones((batch_size,), jnp.int32)
    return tokens, lengths, jnp.zeros((batch_size, module.latent_dim), jnp.float32), alpha
  if isinstance(module, ConditionalDiscriminator):
    h, w = module.resolution
    x = jnp.zeros((batch_size, h, w, module.num_channels), jnp.float32)
    return x, jnp.zeros((batch_size, module.cond_features), jnp.float32), alpha
  raise TypeError(f"expected a T2F generator or discriminator, got {type(module).__name__}")


def init_variables(module, key: Array) -> dict:
  """``module.init`` on :func:`dummy_inputs` (the generator with zero CA noise), as one
  compiled program (an eager ``init`` dispatches op by op)."""
  return jax.jit(functools.partial(_init_variables, module))(key)


def _init_variables(module, key: Array) -> dict:
  if isinstance(module, TextConditionalGenerator):
    eps = jnp.zeros((1, module.ca_dim), jnp.float32)
    method = "synthesize" if module.text_dim else None
    return module.init(key, *dummy_inputs(module), eps=eps, method=method)
  return module.init(key, *dummy_inputs(module))


def text_embedding(g: TextConditionalGenerator, variables, text: tuple) -> Array:
  """The embedding ``[B, emb_dim]`` of a text input: ``(tokens, lengths)`` through G's
  LSTM, or ``(embeddings,)`` of a pretrained encoder as they are."""
  if g.text_dim:
    (emb,) = text
    return emb
  return g.apply(variables, *text, method="embed")


def generate_images(
  g: TextConditionalGenerator,
  variables,
  text: tuple,
  z: Array,
  alpha: Any = 1.0,
  *,
  eps: Array | None = None,
  rng_ca: Array | None = None,
) -> tuple[Array, dict]:
  """``g``'s ``(images, aux)`` for either kind of text input (see :func:`text_embedding`);
  the CA noise is ``eps``, else drawn from ``rng_ca``, else zero."""
  method = "synthesize" if g.text_dim else None  # (emb,) or (tokens, lengths)
  return g.apply(variables, *text, z, alpha, eps=eps, rng_ca=rng_ca, method=method)
