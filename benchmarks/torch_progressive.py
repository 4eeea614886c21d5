"""PyTorch reference of the ProGAN / StyleGAN / T2F training step at the last stage (benchmark only).

Used by ``benchmarks/gan_step.py`` to time the zoo's progressive GANs against the same
networks, losses and optimiser written in PyTorch. Not imported by the ``zoo`` package or
its tests; needs ``torch`` (the ``bench`` extra).

Networks (same layers, widths and parameter shapes as ``zoo.models.progan`` /
``zoo.models.stylegan`` at the stage whose output is ``resolution``, start 4x4, alpha = 1;
NCHW here, NHWC in the zoo):

* equalized learning rate: weights stored ``N(0, 1 / lr_mul^2)`` and scaled at run time by
  ``gain / sqrt(fan_in) * lr_mul``, biases stored ``/ lr_mul`` and multiplied back;
* channels ``channels_at(level) = min(fmap_base // 2**(level + 1), fmap_max)``;
* ProGAN G: pixel-normalised ``z``, dense (gain sqrt(2)/4, no bias) to 4x4 + per-channel
  bias, 3x3 conv, then per resolution nearest 2x upsampling and two 3x3 convs, leaky ReLU
  (0.2) and pixel norm after every layer, 1x1 toRGB (gain 1);
* ProGAN D: 1x1 fromRGB, per resolution two 3x3 convs and 2x2 average pooling, then
  minibatch stddev (group ``min(4, B)``), 3x3 conv, dense, dense(1);
* StyleGAN G: mapping of 8 equalized dense layers (lr multiplier 0.01, width ``w_dim``)
  on pixel-normalised ``z``; synthesis from a learned constant, two layers per
  resolution, each ``conv -> noise -> leaky ReLU -> AdaIN(w_i)``, the first of each
  resolution above 4x4 being nearest 2x upsampling, 3x3 conv and the ``[1, 2, 1]`` blur;
* StyleGAN D: ProGAN's with the blur between the two convs of each block (before the
  average pooling, leaky ReLU after the pooling).
* T2F (``zoo.models.t2f``, LSTM encoder, ``d_condition='embedding'``): G is a word
  embedding and stacked LSTM over the padded caption (the top layer's output at the last
  word), the conditioning augmentation (equalized linear to ``mu, logvar``,
  ``c = mu + exp(logvar / 2) eps``) and ProGAN's G on ``[c, z]`` (no latent pixel norm);
  D is ProGAN's with the text embedding, compressed by a linear layer and replicated over
  4x4, concatenated after the last block's 3x3 conv and merged by a 1x1 conv. See
  :func:`t2f_step` for its losses and update order.

As in the zoo, a network of stage ``s >= 1`` also holds (and runs) the toRGB / fromRGB of
the previous resolution and blends it in with ``lerp(old, new, alpha)``; with ``alpha = 1``
the old branch is multiplied by zero but still computed (the zoo's alpha is a traced
scalar), and it is counted by :func:`param_counts` as it is in the zoo's parameter trees.

Step (``zoo.gan.core.train_step`` with ``n_critic = 1``): G generates the fakes once (its
graph is kept for its own update); D is updated on the detached fakes and the reals, with
the regulariser on the D steps where ``step % reg_interval == 0``, scaled by
``reg_interval``; G is then updated against the updated D (D's parameters frozen, as the
zoo only differentiates G's loss with respect to the fakes); finally G's EMA moves toward
G's parameters (``beta = 0.5 ** (batch / 10_000)``, the configs' 10k-image half-life).
Adam(1e-3, betas (0, 0.99), eps 1e-8) for both players (fused on CUDA).

* ProGAN (``reg='gp'``): WGAN losses, gradient penalty (lambda 10, norm over
  ``eps real + (1 - eps) fake``) and drift 1e-3 D(real)^2.
* ``reg='r1'`` and StyleGAN: non-saturating logistic losses, R1 (gamma 10) on reals, a
  gradient of a gradient (``create_graph=True``). The penalty runs its own D forward on the
  reals, as the zoo's step does (a PyTorch-only implementation could reuse the loss's
  forward and save one D forward on regularised steps).
* StyleGAN fakes use style mixing with probability 0.9 (two latents, the second's ``w``
  from a crossover layer uniform in ``[1, num_ws)``) and update ``w_avg`` (decay 0.995)
  from the first latents' ``w``. The two latents go through the mapping network as one
  batch (the zoo maps them in two calls; every layer is per example, so the result is
  the same).

Each step closure synchronises the device at its end (so wall-clock timing of a call is
the step's time), leaves its losses, as detached tensors, in ``closure.metrics`` and
carries ``g``, ``d`` (the modules), ``ema`` (G's EMA tensors) and ``describe`` (one line).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch_gans import device as _device
from benchmarks.torch_gans import sync

__all__ = ["channels_at", "param_counts", "progan_step", "stylegan_step", "t2f_step"]

LRELU_SLOPE = 0.2
SQRT2 = math.sqrt(2.0)
START = 4
LR, BETAS, EPS = 1e-3, (0.0, 0.99), 1e-8
EMA_HALF_LIFE_IMAGES = 10_000
MBSTD_GROUP = 4
GP_LAMBDA, DRIFT, R1_GAMMA = 10.0, 1e-3, 10.0
MIXING_PROB, W_AVG_BETA = 0.9, 0.995


def channels_at(level: int, *, fmap_base: int, fmap_max: int) -> int:
  """``zoo.models.progan.channels_at``: feature maps at ``level`` (0 = 4x4, -1 = D's dense)."""
  return max(1, min(int(fmap_base // 2 ** (level + 1)), int(fmap_max)))


def _stage(resolution: int) -> int:
  s = round(math.log2(resolution / START))
  if s < 0 or START << s != resolution:
    raise ValueError(f"resolution must be 4 * 2**k, got {resolution}")
  return s


def _lrelu(x: torch.Tensor) -> torch.Tensor:
  return F.leaky_relu(x, LRELU_SLOPE)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
  """Unit mean square over the channel axis (dim 1, also for ``[B, Z]`` latents)."""
  return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def upsample_2x(x: torch.Tensor) -> torch.Tensor:
  return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample_2x(x: torch.Tensor) -> torch.Tensor:
  return F.avg_pool2d(x, 2)


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
  """``zoo.models.progan.lerp``: ``a (1 - t) + b t``."""
  return a * (1.0 - t) + b * t


# --------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------


class EqDense(nn.Module):
  """Equalized-learning-rate dense layer (``zoo.models.layers.EqualizedDense``)."""

  def __init__(self, fan_in: int, features: int, *, gain=SQRT2, lr_mul=1.0, bias=True):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(features, fan_in) / lr_mul)
    self.bias = nn.Parameter(torch.zeros(features)) if bias else None
    self.scale = gain / math.sqrt(fan_in) * lr_mul
    self.lr_mul = lr_mul

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b = self.bias
    if b is not None and self.lr_mul != 1.0:
      b = b * self.lr_mul
    return F.linear(x, self.weight * self.scale, b)


class EqConv(nn.Module):
  """Equalized-learning-rate ``k x k`` convolution, 'SAME' zero padding
  (``zoo.models.layers.EqualizedConv``)."""

  def __init__(self, c_in: int, c_out: int, k: int, *, gain=SQRT2):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
    self.bias = nn.Parameter(torch.zeros(c_out))
    self.scale = gain / math.sqrt(c_in * k * k)
    self.pad = k // 2

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


class Blur(nn.Module):
  """``[1, 2, 1] x [1, 2, 1] / 16`` filter of every channel, zero padding
  (``zoo.models.layers.blur``).

  Run as one single-channel convolution over ``[B * C, 1, H, W]`` rather than a depthwise
  one (``groups=C``): PyTorch's double backward of a grouped convolution (R1 and the
  gradient penalty differentiate D's input gradient) loops over the groups, one small
  convolution per channel, which made the depthwise form several times slower on a CPU.
  """

  def __init__(self):
    super().__init__()
    k = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(k, k)
    self.register_buffer("kernel", (k / k.sum())[None, None], persistent=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return F.conv2d(x.reshape(b * c, 1, h, w), self.kernel, padding=1).view(b, c, h, w)


def minibatch_stddev(x: torch.Tensor, group_size: int = MBSTD_GROUP, eps: float = 1e-8):
  """One stddev feature appended (``zoo.models.progan.minibatch_stddev``, one new feature):
  strided groups of ``G = min(group_size, B)`` (whole batch when that does not divide B)."""
  b, c, h, w = x.shape
  g = min(group_size, b)
  if b % g:
    g = b
  m = b // g
  y = x.reshape(g, m, c, h, w)
  y = y - y.mean(dim=0, keepdim=True)
  y = torch.sqrt(y.square().mean(dim=0) + eps)  # [M, C, H, W]
  y = y.mean(dim=(1, 2, 3))  # [M]
  y = y.repeat(g)  # [B]; row b is group b mod M
  return torch.cat([x, y.view(b, 1, 1, 1).expand(b, 1, h, w)], dim=1)


# --------------------------------------------------------------------------
# ProGAN
# --------------------------------------------------------------------------


class ProGANGenerator(nn.Module):
  def __init__(
    self,
    stage: int,
    latent_dim: int,
    fmap_base: int,
    fmap_max: int,
    channels=3,
    *,
    normalize_latents: bool = True,
  ):
    super().__init__()

    def nf(level):
      return channels_at(level, fmap_base=fmap_base, fmap_max=fmap_max)

    self.stage = stage
    self.normalize_latents = normalize_latents
    c0 = nf(0)
    self.c0 = c0
    self.dense = EqDense(latent_dim, START * START * c0, gain=math.sqrt(2.0) / 4, bias=False)
    self.bias = nn.Parameter(torch.zeros(c0))
    self.conv = EqConv(c0, c0, 3)
    self.blocks = nn.ModuleList()
    for k in range(1, stage + 1):
      self.blocks.append(nn.ModuleList([EqConv(nf(k - 1), nf(k), 3), EqConv(nf(k), nf(k), 3)]))
    self.to_rgb = EqConv(nf(stage), channels, 1, gain=1.0)
    self.to_rgb_prev = EqConv(nf(stage - 1), channels, 1, gain=1.0) if stage else None

  def forward(self, z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    x = self.dense(pixel_norm(z) if self.normalize_latents else z)
    x = x.view(z.shape[0], self.c0, START, START)
    x = pixel_norm(_lrelu(x + self.bias.view(1, -1, 1, 1)))
    h = pixel_norm(_lrelu(self.conv(x)))
    prev = h
    for conv0, conv1 in self.blocks:
      prev = h
      h = upsample_2x(h)
      h = pixel_norm(_lrelu(conv0(h)))
      h = pixel_norm(_lrelu(conv1(h)))
    img = self.to_rgb(h)
    if self.to_rgb_prev is None:
      return img
    return _lerp(upsample_2x(self.to_rgb_prev(prev)), img, alpha)


class _DBlock(nn.Module):
  """ProGAN: conv, lrelu, conv, lrelu, avg pool. StyleGAN (``blur``): conv, lrelu, blur,
  conv, avg pool, lrelu."""

  def __init__(self, c: int, c_out: int, blur: bool):
    super().__init__()
    self.conv0 = EqConv(c, c, 3)
    self.conv1 = EqConv(c, c_out, 3)
    self.blur = Blur() if blur else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = _lrelu(self.conv0(x))
    if self.blur is None:
      return downsample_2x(_lrelu(self.conv1(x)))
    return _lrelu(downsample_2x(self.conv1(self.blur(x))))


class Discriminator(nn.Module):
  """ProGAN's D (``blur=False``) or StyleGAN's (``blur=True``); ``[B, 3, R, R] -> [B]``."""

  def __init__(self, stage: int, fmap_base: int, fmap_max: int, *, blur: bool, channels=3):
    super().__init__()

    def nf(level):
      return channels_at(level, fmap_base=fmap_base, fmap_max=fmap_max)

    self.from_rgb = EqConv(channels, nf(stage), 1)
    self.from_rgb_prev = EqConv(channels, nf(stage - 1), 1) if stage else None
    self.blocks = nn.ModuleList([_DBlock(nf(k), nf(k - 1), blur) for k in range(stage, 0, -1)])
    self.conv = EqConv(nf(0) + 1, nf(0), 3)
    self.dense0 = EqDense(nf(0) * START * START, nf(-1))
    self.dense1 = EqDense(nf(-1), 1, gain=1.0)

  def trunk(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """fromRGB and the blocks down to the start resolution (the fade included)."""
    h = _lrelu(self.from_rgb(x))
    if self.from_rgb_prev is not None:
      h = self.blocks[0](h)
      old = _lrelu(self.from_rgb_prev(downsample_2x(x)))
      h = _lerp(old, h, alpha)
      for block in self.blocks[1:]:
        h = block(h)
    return h

  def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    h = _lrelu(self.conv(minibatch_stddev(self.trunk(x, alpha))))
    h = _lrelu(self.dense0(h.flatten(1)))
    return self.dense1(h)[:, 0]


# --------------------------------------------------------------------------
# StyleGAN
# --------------------------------------------------------------------------


class Mapping(nn.Module):
  def __init__(self, latent_dim: int, w_dim: int, hidden: int, layers: int = 8, lr_mul=0.01):
    super().__init__()
    widths = [latent_dim] + [hidden] * (layers - 1) + [w_dim]
    self.layers = nn.ModuleList(
      [EqDense(widths[i], widths[i + 1], lr_mul=lr_mul) for i in range(layers)]
    )

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = pixel_norm(z)
    for layer in self.layers:
      x = _lrelu(layer(x))
    return x


class _Epilogue(nn.Module):
  """noise (one ``N(0, 1)`` map per example, learned per-channel scale) -> leaky ReLU ->
  AdaIN(w): ``instance_norm(x) * (1 + y_s) + y_b``, ``(y_s, y_b) = EqDense(2C, gain 1)(w)``.
  The conv bias before it is the conv's own (the zoo adds it before the noise too)."""

  def __init__(self, channels: int, w_dim: int):
    super().__init__()
    self.noise_scale = nn.Parameter(torch.zeros(channels))
    self.style = EqDense(w_dim, 2 * channels, gain=1.0)
    self.channels = channels

  def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    b, c, h, wd = x.shape
    noise = torch.randn(b, 1, h, wd, device=x.device, dtype=x.dtype)
    x = _lrelu(x + noise * self.noise_scale.view(1, c, 1, 1))
    style = self.style(w).view(b, 2 * c, 1, 1)
    x = F.instance_norm(x, eps=1e-8)
    return x * (style[:, :c] + 1.0) + style[:, c:]


class Synthesis(nn.Module):
  def __init__(self, stage: int, w_dim: int, fmap_base: int, fmap_max: int, channels=3):
    super().__init__()

    def nf(level):
      return channels_at(level, fmap_base=fmap_base, fmap_max=fmap_max)

    c0 = nf(0)
    self.const = nn.Parameter(torch.ones(1, c0, START, START))
    self.bias = nn.Parameter(torch.zeros(c0))
    self.epi0 = _Epilogue(c0, w_dim)
    self.conv = EqConv(c0, c0, 3)
    self.epi1 = _Epilogue(c0, w_dim)
    self.blocks = nn.ModuleList()
    for k in range(1, stage + 1):
      self.blocks.append(
        nn.ModuleDict(
          {
            "conv0": EqConv(nf(k - 1), nf(k), 3),
            "blur": Blur(),
            "epi0": _Epilogue(nf(k), w_dim),
            "conv1": EqConv(nf(k), nf(k), 3),
            "epi1": _Epilogue(nf(k), w_dim),
          }
        )
      )
    self.to_rgb = EqConv(nf(stage), channels, 1, gain=1.0)
    self.to_rgb_prev = EqConv(nf(stage - 1), channels, 1, gain=1.0) if stage else None

  def forward(self, ws: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    b = ws.shape[0]
    x = self.const.expand(b, -1, -1, -1) + self.bias.view(1, -1, 1, 1)
    h = self.epi1(self.conv(self.epi0(x, ws[:, 0])), ws[:, 1])
    prev = h
    for k, blk in enumerate(self.blocks, start=1):
      prev = h
      h = blk["blur"](blk["conv0"](upsample_2x(h)))
      h = blk["epi0"](h, ws[:, 2 * k])
      h = blk["epi1"](blk["conv1"](h), ws[:, 2 * k + 1])
    img = self.to_rgb(h)
    if self.to_rgb_prev is None:
      return img
    return _lerp(upsample_2x(self.to_rgb_prev(prev)), img, alpha)


class StyleGANGenerator(nn.Module):
  def __init__(
    self, stage: int, latent_dim: int, w_dim: int, fmap_base: int, fmap_max: int, channels=3
  ):
    super().__init__()
    # The configs' mapping_hidden equals w_dim (128 in the CPU variant, 512 in the paper's).
    self.mapping = Mapping(latent_dim, w_dim, hidden=w_dim)
    self.synthesis = Synthesis(stage, w_dim, fmap_base, fmap_max, channels)
    self.register_buffer("w_avg", torch.zeros(w_dim))  # 'stats', not a parameter
    self.num_ws = 2 * (stage + 1)
    self.latent_dim = latent_dim

  def mixed(self, n: int, device) -> torch.Tensor:
    """Fakes of one training step: two latents per image, styles mixed at a random
    crossover with probability 0.9, ``w_avg`` updated from the first latents' ``w``."""
    z = torch.randn(2 * n, self.latent_dim, device=device)
    w = self.mapping(z)
    w1, w2 = w[:n], w[n:]
    with torch.no_grad():
      mean = w1.mean(dim=0)
      self.w_avg.copy_(mean + (self.w_avg - mean) * W_AVG_BETA)
    mixed = torch.rand(n, device=device) < MIXING_PROB
    cross = torch.randint(1, max(self.num_ws, 2), (n,), device=device)
    cross = torch.where(mixed, cross, torch.full_like(cross, self.num_ws))
    idx = torch.arange(self.num_ws, device=device)
    ws = torch.where((idx[None, :] < cross[:, None])[..., None], w1[:, None], w2[:, None])
    return self.synthesis(ws)


# --------------------------------------------------------------------------
# T2F
# --------------------------------------------------------------------------


class LSTMEncoder(nn.Module):
  """``zoo.models.text.LSTMEncoder``: word embedding -> ``num_layers`` stacked LSTMs over
  all ``L`` padded steps -> the top layer's output at ``lengths - 1`` (zeros for length 0).

  flax's ``OptimizedLSTMCell`` has one bias per gate (on its hidden-to-hidden kernels);
  ``nn.LSTM`` has two that are only ever summed, ``bias_ih`` and ``bias_hh``. The second
  is held at zero and frozen (``requires_grad=False``), so the function and the trainable
  parameters are those of the zoo's cell while the fused LSTM kernel is still used.
  """

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, embed_dim)
    self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True)
    for name, p in self.lstm.named_parameters():
      if name.startswith("bias_hh"):
        with torch.no_grad():
          p.zero_()
        p.requires_grad_(False)

  def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    b, steps = tokens.shape
    x, _ = self.lstm(self.embed(tokens))
    lengths = lengths.clamp(0, steps)
    h = x[torch.arange(b, device=x.device), (lengths - 1).clamp(0, steps - 1)]
    return torch.where(lengths[:, None] > 0, h, torch.zeros_like(h))


class T2FGenerator(nn.Module):
  """``zoo.models.t2f.TextConditionalGenerator`` (the LSTM variant): encoder -> CA
  (``EqDense(2 ca_dim, gain 1)`` -> mu, logvar; ``c = mu + exp(logvar / 2) eps``) ->
  ProGAN's generator on ``[c, z]`` (not pixel-normalised, the T2F config's
  ``normalize_latents=False``). Returns ``(images, emb, mu, logvar)``."""

  def __init__(
    self,
    stage: int,
    *,
    vocab_size: int,
    embed_dim: int,
    hidden_dim: int,
    num_layers: int,
    ca_dim: int,
    latent_dim: int,
    fmap_base: int,
    fmap_max: int,
    channels=3,
  ):
    super().__init__()
    self.encoder = LSTMEncoder(vocab_size, embed_dim, hidden_dim, num_layers)
    self.ca = EqDense(hidden_dim, 2 * ca_dim, gain=1.0)
    self.generator = ProGANGenerator(
      stage, ca_dim + latent_dim, fmap_base, fmap_max, channels, normalize_latents=False
    )
    self.ca_dim = ca_dim

  def forward(self, tokens, lengths, z, eps, alpha: float = 1.0):
    emb = self.encoder(tokens, lengths)
    h = self.ca(emb)
    mu, logvar = h[:, : self.ca_dim], h[:, self.ca_dim :]
    c = mu + torch.exp(0.5 * logvar) * eps
    return self.generator(torch.cat([c, z], dim=1), alpha), emb, mu, logvar


class ConditionalDiscriminator(Discriminator):
  """``zoo.models.t2f.ConditionalDiscriminator``: ProGAN's D whose last block is
  minibatch stddev -> 3x3 conv -> concat(``compress(cond)`` (linear, gain 1) replicated
  over 4x4) -> 1x1 conv -> dense -> dense(1); ``(x, cond) -> [B]``."""

  def __init__(
    self, stage: int, fmap_base: int, fmap_max: int, *, cond_features: int, cond_dim: int
  ):
    super().__init__(stage, fmap_base, fmap_max, blur=False)
    c0 = channels_at(0, fmap_base=fmap_base, fmap_max=fmap_max)
    self.compress = EqDense(cond_features, cond_dim, gain=1.0)
    self.conv_cond = EqConv(c0 + cond_dim, c0, 1)

  def forward(self, x: torch.Tensor, cond: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:  # pylint: disable=arguments-differ
    h = _lrelu(self.conv(minibatch_stddev(self.trunk(x, alpha))))
    y = self.compress(cond)
    y = y[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    h = _lrelu(self.conv_cond(torch.cat([h, y], dim=1)))
    h = _lrelu(self.dense0(h.flatten(1)))
    return self.dense1(h)[:, 0]


# --------------------------------------------------------------------------
# the training step
# --------------------------------------------------------------------------


def _adam(params) -> torch.optim.Optimizer:
  params = list(params)
  if params and params[0].is_cuda:
    return torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, fused=True)
  return torch.optim.Adam(params, lr=LR, betas=BETAS, eps=EPS, foreach=True)


def _g_update(opt_g, d_params, objective) -> torch.Tensor:
  """One G step against a frozen D: ``objective()`` builds G's loss with D's parameters
  out of the graph; returns the loss."""
  for p in d_params:
    p.requires_grad_(False)
  loss = objective()
  opt_g.zero_grad(set_to_none=True)
  loss.backward()
  opt_g.step()
  for p in d_params:
    p.requires_grad_(True)
  return loss


def _input_grad(d: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
  """``(D(x), d sum D(x) / dx)`` with the graph kept for the outer gradient."""
  x = x.detach().requires_grad_(True)
  scores = d(x)
  (g,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
  return scores, g


def _make_step(
  g: nn.Module,
  d: nn.Module,
  generate: Callable[[int], torch.Tensor],
  *,
  resolution: int,
  batch: int,
  reg: str,
  reg_interval: int,
  device: torch.device,
  name: str,
) -> Callable[[], None]:
  if reg not in ("gp", "r1"):
    raise ValueError(f"reg must be 'gp' or 'r1', got {reg!r}")
  if reg_interval < 1:
    raise ValueError(f"reg_interval must be >= 1, got {reg_interval}")
  opt_g, opt_d = _adam(g.parameters()), _adam(d.parameters())
  g_params = list(g.parameters())
  d_params = list(d.parameters())
  ema = [p.detach().clone() for p in g_params]
  ema_weight = 1.0 - 0.5 ** (batch / EMA_HALF_LIFE_IMAGES)  # lerp(p, ema, beta)
  real = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
  state = {"step": 0}

  def step() -> None:
    k = state["step"]
    fake = generate(batch)  # G's graph is kept for its update
    fake_d = fake.detach()

    # ---- D ----
    real_s, fake_s = d(real), d(fake_d)
    metrics = {}
    if reg == "gp":
      d_loss = fake_s.mean() - real_s.mean() + DRIFT * real_s.square().mean()
    else:
      d_loss = F.softplus(-real_s).mean() + F.softplus(fake_s).mean()
    if k % reg_interval == 0:
      if reg == "gp":
        eps = torch.rand(batch, 1, 1, 1, device=device)
        _, grad = _input_grad(d, eps * real + (1.0 - eps) * fake_d)
        norm = torch.sqrt(grad.square().sum(dim=(1, 2, 3)) + 1e-12)
        pen = GP_LAMBDA * (norm - 1.0).square().mean()
      else:
        _, grad = _input_grad(d, real)
        pen = 0.5 * R1_GAMMA * grad.square().sum(dim=(1, 2, 3)).mean()
      d_loss = d_loss + reg_interval * pen
      metrics["D_reg"] = pen.detach()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    # ---- G, against the updated D ----
    def g_objective():
      s = d(fake)
      return -s.mean() if reg == "gp" else F.softplus(-s).mean()

    g_loss = _g_update(opt_g, d_params, g_objective)

    # ---- EMA of G ----
    with torch.no_grad():
      torch._foreach_lerp_(ema, g_params, ema_weight)

    state["step"] = k + 1
    metrics.update(D=d_loss.detach(), G=g_loss.detach())
    step.metrics = metrics
    sync(device)

  step.metrics = {}
  step.g, step.d, step.ema = g, d, ema
  loss = (
    "WGAN-GP (10) + drift 1e-3" if reg == "gp" else f"NS logistic + R1 (10) every {reg_interval}"
  )
  adam = "fused" if device.type == "cuda" else "foreach"
  step.describe = (
    f"{name} torch {torch.__version__} eager NCHW on {device}: {resolution}x{resolution} b{batch}, "
    f"{loss}, Adam ({adam}), EMA of G"
  )
  return step


def progan_step(
  resolution: int,
  batch: int,
  *,
  reg: str = "gp",
  reg_interval: int = 1,
  fmap_base: int = 256,
  fmap_max: int = 128,
  latent_dim: int = 128,
) -> Callable[[], None]:
  """One ProGAN training step at ``resolution`` (the last stage, alpha 1): ``reg='gp'`` is
  the ProGAN recipe (WGAN-GP + drift), ``reg='r1'`` the logistic loss with lazy R1."""
  device = _device()
  stage = _stage(resolution)
  g = ProGANGenerator(stage, latent_dim, fmap_base, fmap_max).to(device)
  d = Discriminator(stage, fmap_base, fmap_max, blur=False).to(device)

  def generate(n):
    return g(torch.randn(n, latent_dim, device=device))

  return _make_step(
    g,
    d,
    generate,
    resolution=resolution,
    batch=batch,
    reg=reg,
    reg_interval=reg_interval,
    device=device,
    name="ProGAN",
  )


def stylegan_step(
  resolution: int,
  batch: int,
  *,
  reg_interval: int = 1,
  fmap_base: int = 256,
  fmap_max: int = 128,
  latent_dim: int = 128,
  w_dim: int = 128,
) -> Callable[[], None]:
  """One StyleGAN training step at ``resolution`` (the last stage, alpha 1): style-mixed
  fakes, logistic losses, R1 every ``reg_interval`` D steps scaled by it, G's EMA."""
  device = _device()
  stage = _stage(resolution)
  g = StyleGANGenerator(stage, latent_dim, w_dim, fmap_base, fmap_max).to(device)
  d = Discriminator(stage, fmap_base, fmap_max, blur=True).to(device)
  return _make_step(
    g,
    d,
    lambda n: g.mixed(n, device),
    resolution=resolution,
    batch=batch,
    reg="r1",
    reg_interval=reg_interval,
    device=device,
    name="StyleGAN (mixing 0.9)",
  )


def _trainable(module: nn.Module) -> list[torch.Tensor]:
  return [p for p in module.parameters() if p.requires_grad]


def t2f_step(
  resolution: int,
  batch: int,
  *,
  vocab_size: int,
  tokens=None,
  lengths=None,
  max_len: int = 64,
  latent_dim: int = 64,
  ca_dim: int = 64,
  embed_dim: int = 64,
  hidden_dim: int = 128,
  num_layers: int = 1,
  cond_dim: int = 32,
  fmap_base: int = 256,
  fmap_max: int = 128,
  kl_weight: float = 1.0,
  balanced_mismatch: bool = True,
  cond_grad: bool = True,
) -> Callable[[], None]:
  """One T2F training step at ``resolution`` (the last stage, alpha 1), as
  ``zoo.tasks.t2f`` with its default ``'embedding'`` condition and the LSTM encoder.

  ``tokens`` ``[batch, max_len]`` / ``lengths`` ``[batch]`` (numpy or tensors): the
  batch's encoded captions; None draws random word ids and lengths.

  Step (``zoo.gan.core.train_step`` with ``zoo.gan.objectives.LearnedConditionObjective``):
  G (encoder, CA, ProGAN G) runs once on ``z`` and the CA noise, its graph kept; D is
  updated with the fakes and the text embedding detached (D never changes the encoder):
  ``mean D(fake) - mean D(real) + 1e-3 mean D(real)^2`` plus the matching-aware term
  ``mean D(real, wrong)`` (wrong = the embedding rolled by one), weighted 1/2 with
  ``D(fake)``'s 1/2 when ``balanced_mismatch``, plus WGAN-GP (lambda 10) on
  ``eps real + (1 - eps) fake`` with the condition fixed; then G (D frozen) on
  ``-mean D(fake, emb) + kl_weight mean KL(N(mu, sigma^2) || N(0, I))``, the adversarial
  term reaching the encoder through D's condition input too when ``cond_grad``; G's
  optimizer owns the encoder and the CA. Finally G's EMA (all of G's trainable tensors).
  """
  device = _device()
  stage = _stage(resolution)
  g = T2FGenerator(
    stage,
    vocab_size=vocab_size,
    embed_dim=embed_dim,
    hidden_dim=hidden_dim,
    num_layers=num_layers,
    ca_dim=ca_dim,
    latent_dim=latent_dim,
    fmap_base=fmap_base,
    fmap_max=fmap_max,
  ).to(device)
  d = ConditionalDiscriminator(
    stage, fmap_base, fmap_max, cond_features=hidden_dim, cond_dim=cond_dim
  ).to(device)
  g_params, d_params = _trainable(g), _trainable(d)
  opt_g, opt_d = _adam(g_params), _adam(d_params)
  ema = [p.detach().clone() for p in g_params]
  ema_weight = 1.0 - 0.5 ** (batch / EMA_HALF_LIFE_IMAGES)
  real = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1
  if tokens is None:
    lengths = torch.randint(1, max_len + 1, (batch,))
    tokens = torch.randint(2, vocab_size, (batch, max_len))
    tokens = torch.where(torch.arange(max_len)[None] < lengths[:, None], tokens, 0)
  tokens = torch.as_tensor(tokens, dtype=torch.long, device=device)
  lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
  if tokens.shape[0] != batch or lengths.shape != (batch,):
    raise ValueError(f"tokens / lengths must be [{batch}, L] / [{batch}]")

  def step() -> None:
    z = torch.randn(batch, latent_dim, device=device)
    eps_ca = torch.randn(batch, ca_dim, device=device)
    fake, emb, mu, logvar = g(tokens, lengths, z, eps_ca)  # G's graph is kept for its update
    fake_d, cond_d = fake.detach(), emb.detach()

    # ---- D ----
    real_s, fake_s = d(real, cond_d), d(fake_d, cond_d)
    d_loss = fake_s.mean() - real_s.mean() + DRIFT * real_s.square().mean()
    wrong_s = d(real, torch.roll(cond_d, 1, dims=0))
    if balanced_mismatch:
      d_loss = d_loss + 0.5 * (wrong_s.mean() - fake_s.mean())
    else:
      d_loss = d_loss + wrong_s.mean()
    eps = torch.rand(batch, 1, 1, 1, device=device)
    _, grad = _input_grad(lambda x: d(x, cond_d), eps * real + (1.0 - eps) * fake_d)
    norm = torch.sqrt(grad.square().sum(dim=(1, 2, 3)) + 1e-12)
    pen = GP_LAMBDA * (norm - 1.0).square().mean()
    d_loss = d_loss + pen
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    # ---- G (encoder and CA included), against the updated D ----
    def g_objective():
      adv = -d(fake, emb if cond_grad else cond_d).mean()
      kl = 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).sum(dim=1).mean()
      return adv + kl_weight * kl

    g_loss = _g_update(opt_g, d_params, g_objective)

    # ---- EMA of G ----
    with torch.no_grad():
      torch._foreach_lerp_(ema, g_params, ema_weight)

    step.metrics = {"D": d_loss.detach(), "G": g_loss.detach(), "D_reg": pen.detach()}
    sync(device)

  step.metrics = {}
  step.g, step.d, step.ema = g, d, ema
  adam = "fused" if device.type == "cuda" else "foreach"
  mismatch = "D(wrong)/2" if balanced_mismatch else "D(wrong)"
  step.describe = (
    f"T2F torch {torch.__version__} eager NCHW on {device}: {resolution}x{resolution} "
    f"b{batch}, LSTM {num_layers}x{hidden_dim} over {tokens.shape[1]} steps, WGAN-GP (10) + "
    f"drift 1e-3 + {mismatch}, KL x{kl_weight:g}, Adam ({adam}), EMA of G"
  )
  return step


def param_counts(kind: str, resolution: int, **kwargs) -> tuple[int, int]:
  """``(G parameters, D parameters)`` of ``kind`` ('progan' or 'stylegan') at
  ``resolution``; ``kwargs`` as :func:`progan_step` / :func:`stylegan_step` (the loss
  options are ignored). StyleGAN's ``w_avg`` is a buffer, not counted (a 'stats'
  variable in the zoo)."""
  fmap_base = kwargs.get("fmap_base", 256)
  fmap_max = kwargs.get("fmap_max", 128)
  latent_dim = kwargs.get("latent_dim", 128)
  stage = _stage(resolution)
  if kind == "progan":
    g = ProGANGenerator(stage, latent_dim, fmap_base, fmap_max)
    d = Discriminator(stage, fmap_base, fmap_max, blur=False)
  elif kind == "stylegan":
    g = StyleGANGenerator(stage, latent_dim, kwargs.get("w_dim", 128), fmap_base, fmap_max)
    d = Discriminator(stage, fmap_base, fmap_max, blur=True)
  else:
    raise ValueError(f"kind must be 'progan' or 'stylegan', got {kind!r}")
  return sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())
