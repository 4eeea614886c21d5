"""PyTorch references of the zoo's pix2pix and text-conditional DCGAN, for benchmarks only.

Written for ``benchmarks/gan_step.py`` from the papers and the zoo's own modules
(``zoo/models/pix2pix.py``, ``zoo/tasks/pix2pix.py``, ``zoo/losses/pix2pix.py``;
``zoo/models/dcgan_cls.py``, ``zoo/gan/objectives.py``, ``zoo/losses/gan.py``), so that
layer for layer the networks, the losses and the order of the updates are the zoo's:

* :func:`pix2pix_step` (Isola et al. 2017): U-Net generator with skip connections and
  dropout 0.5 in the decoder, the n-layer PatchGAN (70x70 for ``n_layers_D=3``), the
  conditional GAN loss on logits (``vanilla``: binary cross-entropy; ``lsgan``) with D's
  loss halved, ``lambda_L1`` (100) x L1 for G, Adam(2e-4, b1 0.5). One step is the
  reference's ``optimize_parameters``: ``fake_B = G(A)`` once; D updated on ``[A, B]`` vs
  ``[A, fake_B.detach()]``; G updated against the *updated* D.
* :func:`dcgan_cls_step` (Reed et al. 2016, GAN-INT-CLS): G = ``LeakyReLU(Linear(emb ->
  proj))`` concatenated after ``z``, a bias-free linear layer to ``4x4x8ngf`` (the
  reference's 4x4 full convolution of a 1x1 input), BN-ReLU, 4x4 stride-2 transposed
  convolutions with BN-ReLU, a last one to RGB and tanh; D = 4x4 stride-2 convolutions
  (BN from the second on) with LeakyReLU(0.2) down to 4x4, the projected embedding
  replicated over 4x4 and concatenated, a 1x1 convolution with BN-LeakyReLU and a 4x4
  valid convolution to one logit. D's loss is GAN-CLS (real/right, real/wrong, fake/right;
  the wrong caption of example i is example i-1's); G's loss is the non-saturating one
  on its fakes and, with ``int_beta``, on fakes drawn for the interpolated embeddings
  ``b e_i + (1 - b) e_{i-1}`` (G runs once on both halves, as in the zoo).

Each factory builds the networks, their optimizers and one batch of random inputs (the
data pipeline is not timed) and returns a zero-argument function that runs one full
training step (D update, then G update, optimizer steps included). The function carries
``g_params`` and ``d_params`` (trainable parameter counts, batch-norm running statistics
excluded as in the zoo's ``params`` collection) and ``describe`` (a one-line summary).

Layout: NCHW (PyTorch's default, what the reference implementations use).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["dcgan_cls_step", "device", "param_count", "pix2pix_step", "sync"]


def device() -> torch.device:
  """Where the references run: the GPU when PyTorch sees one (as JAX would), else the CPU."""
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
  """Waits for the device's queued work, so that wall-clock timing of a step is honest."""
  if dev.type == "cuda":
    torch.cuda.synchronize(dev)


def _adam(params, lr: float, b1: float, b2: float) -> torch.optim.Optimizer:
  params = list(params)
  fused = bool(params) and params[0].is_cuda
  return torch.optim.Adam(params, lr=lr, betas=(b1, b2), fused=fused or None)


def param_count(module: nn.Module) -> int:
  return int(sum(p.numel() for p in module.parameters()))


def _init_normal(module: nn.Module) -> None:
  """The reference's ``init_type='normal'``: conv/linear weights N(0, 0.02), biases 0,
  batch-norm scales N(1, 0.02) (the zoo's initialisers)."""
  for m in module.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.normal_(m.weight, 0.0, 0.02)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
  for p in module.parameters():
    p.requires_grad_(flag)


# ---------------------------------------------------------------------------
# pix2pix.
# ---------------------------------------------------------------------------


def _norm2d(kind: str, channels: int) -> nn.Module:
  if kind == "batch":
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1, affine=True)
  if kind == "instance":
    return nn.InstanceNorm2d(channels, affine=False)  # the zoo's (and reference's) default
  if kind == "none":
    return nn.Identity()
  raise ValueError(f"norm={kind!r}, expected batch | instance | none")


class UNetGenerator(nn.Module):
  """``zoo.models.pix2pix.UNetGenerator``: ``num_downs`` levels, channels ngf, 2ngf, 4ngf,
  8ngf, 8ngf, ...; encoder LeakyReLU -> conv -> norm (no activation before the first
  conv, no norm after the first and the innermost); decoder ReLU -> transposed conv ->
  norm (-> dropout on levels 4 .. num_downs-2); skip ``[skip, up]`` concatenations;
  tanh. Convolutions carry a bias unless followed by batch norm (the outermost
  transposed convolution always has one)."""

  def __init__(
    self,
    input_nc: int,
    output_nc: int,
    num_downs: int,
    ngf: int,
    norm: str,
    use_dropout: bool,
  ):
    super().__init__()
    self.n = n = num_downs
    bias = norm != "batch"
    chans = [ngf * min(2**i, 8) for i in range(n)]
    drop = set(range(4, n - 1)) if use_dropout else set()
    self.down = nn.ModuleList()
    self.down_norm = nn.ModuleList()
    c_in = input_nc
    for i in range(n):
      self.down.append(nn.Conv2d(c_in, chans[i], 4, 2, 1, bias=bias))
      self.down_norm.append(_norm2d(norm, chans[i]) if 0 < i < n - 1 else nn.Identity())
      c_in = chans[i]
    self.up = nn.ModuleList()
    self.up_post = nn.ModuleList()
    for i in range(n):  # index i = level i (applied from n-1 down to 0)
      c_in = chans[i] if i == n - 1 else 2 * chans[i]
      if i == 0:
        self.up.append(nn.ConvTranspose2d(c_in, output_nc, 4, 2, 1, bias=True))
        self.up_post.append(nn.Tanh())
      else:
        self.up.append(nn.ConvTranspose2d(c_in, chans[i - 1], 4, 2, 1, bias=bias))
        post = [_norm2d(norm, chans[i - 1])]
        if i in drop:
          post.append(nn.Dropout(0.5))
        self.up_post.append(nn.Sequential(*post))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    skips = []
    h = x
    for i in range(self.n):
      if i > 0:
        h = F.leaky_relu(h, 0.2)
      h = self.down_norm[i](self.down[i](h))
      skips.append(h)
    h = skips[-1]
    for i in reversed(range(self.n)):
      if i < self.n - 1:
        h = torch.cat([skips[i], h], dim=1)
      h = self.up_post[i](self.up[i](F.relu(h)))
    return h


class NLayerDiscriminator(nn.Module):
  """``zoo.models.pix2pix.NLayerDiscriminator`` (the PatchGAN): conv(ndf, s2) + LeakyReLU;
  ``n_layers`` convs with norm + LeakyReLU (stride 2 but the last, stride 1), widths
  ``ndf * min(2^n, 8)``; a stride-1 4x4 conv to one logit per patch."""

  def __init__(self, input_nc: int, ndf: int, n_layers: int, norm: str):
    super().__init__()
    bias = norm != "batch"
    layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1, bias=True), nn.LeakyReLU(0.2)]
    c_in = ndf
    for n in range(1, n_layers + 1):
      stride = 2 if n < n_layers else 1
      c = ndf * min(2**n, 8)
      layers += [nn.Conv2d(c_in, c, 4, stride, 1, bias=bias), _norm2d(norm, c), nn.LeakyReLU(0.2)]
      c_in = c
    layers.append(nn.Conv2d(c_in, 1, 4, 1, 1, bias=True))
    self.net = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.net(x)


def _gan_criterion(logits: torch.Tensor, real: bool, gan_mode: str) -> torch.Tensor:
  if gan_mode == "vanilla":
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
  if gan_mode == "lsgan":
    return torch.mean(torch.square(logits - (1.0 if real else 0.0)))
  raise ValueError(f"gan_mode={gan_mode!r}")


def pix2pix_step(
  size: int,
  batch: int,
  *,
  ngf: int,
  ndf: int,
  n_layers_D: int,
  norm: str,
  input_nc: int = 3,
  output_nc: int = 3,
  use_dropout: bool = True,
  gan_mode: str = "vanilla",
  lambda_l1: float = 100.0,
  lr: float = 2e-4,
  b1: float = 0.5,
  b2: float = 0.999,
  seed: int = 0,
) -> Callable[[], None]:
  """One pix2pix training step on ``batch`` random ``size x size`` pairs (see the module
  docstring). The U-Net depth is ``log2(size)`` (the zoo's ``netG='unet'``, e.g. 8 for
  256, 6 for 64); the discriminator is the zoo's ``netD='n_layers'`` with ``n_layers_D``
  (3 = ``'basic'``, the 70x70 PatchGAN)."""
  if size & (size - 1) or size < 2:
    raise ValueError(f"size={size} must be a power of two")
  torch.manual_seed(seed)
  num_downs = size.bit_length() - 1
  dev = device()
  g = UNetGenerator(input_nc, output_nc, num_downs, ngf, norm, use_dropout)
  d = NLayerDiscriminator(input_nc + output_nc, ndf, n_layers_D, norm)
  _init_normal(g)
  _init_normal(d)
  g.to(dev).train()
  d.to(dev).train()
  opt_g = _adam(g.parameters(), lr, b1, b2)
  opt_d = _adam(d.parameters(), lr, b1, b2)
  a = torch.rand(batch, input_nc, size, size, device=dev) * 2 - 1
  b = torch.rand(batch, output_nc, size, size, device=dev) * 2 - 1

  def step() -> None:
    fake = g(a)
    # D: 0.5 (L(D(A, B), real) + L(D(A, G(A)), fake)); no gradient to G.
    _set_requires_grad(d, True)
    opt_d.zero_grad(set_to_none=True)
    pred_fake = d(torch.cat([a, fake.detach()], dim=1))
    pred_real = d(torch.cat([a, b], dim=1))
    loss_d = 0.5 * (
      _gan_criterion(pred_real, True, gan_mode) + _gan_criterion(pred_fake, False, gan_mode)
    )
    loss_d.backward()
    opt_d.step()
    # G against the updated D: L(D(A, G(A)), real) + lambda |G(A) - B|_1.
    _set_requires_grad(d, False)
    opt_g.zero_grad(set_to_none=True)
    pred = d(torch.cat([a, fake], dim=1))
    loss_g = _gan_criterion(pred, True, gan_mode) + lambda_l1 * F.l1_loss(fake, b)
    loss_g.backward()
    opt_g.step()
    sync(dev)

  step.g_params = param_count(g)
  step.d_params = param_count(d)
  step.describe = (
    f"pix2pix torch: U-Net {num_downs} levels ngf {ngf}, PatchGAN n_layers {n_layers_D} "
    f"ndf {ndf}, norm {norm}, {gan_mode} + {lambda_l1:g} L1"
  )
  step.modules = (g, d)
  return step


# ---------------------------------------------------------------------------
# Text-conditional DCGAN (GAN-INT-CLS).
# ---------------------------------------------------------------------------


def _channels(resolution: int, width: int) -> list[int]:
  """``zoo.models.dcgan_cls.generator_channels``: 8w at 4x4, halving per level, floor w."""
  if resolution not in (32, 64, 128):
    raise ValueError(f"resolution={resolution} must be 32, 64 or 128")
  n = resolution.bit_length() - 3
  return [width * max(8 >> k, 1) for k in range(n)]


def _text_projection(embed_dim: int, proj_dim: int) -> nn.Linear:
  lin = nn.Linear(embed_dim, proj_dim, bias=True)
  bound = 1.0 / math.sqrt(embed_dim)  # torch's default weight init, bias 0 (the zoo's)
  nn.init.uniform_(lin.weight, -bound, bound)
  nn.init.zeros_(lin.bias)
  return lin


class DCGANCLSGenerator(nn.Module):
  """``zoo.models.dcgan_cls.Generator``."""

  def __init__(
    self, resolution: int, ngf: int, latent_dim: int, embed_dim: int, proj_dim: int, nc: int
  ):
    super().__init__()
    self.chans = chans = _channels(resolution, ngf)
    self.text_proj = _text_projection(embed_dim, proj_dim)
    self.project = nn.Linear(latent_dim + proj_dim, 16 * chans[0], bias=False)
    self.project_bn = nn.BatchNorm2d(chans[0], eps=1e-5, momentum=0.1)
    layers: list[nn.Module] = []
    for c_in, c in itertools.pairwise(chans):
      layers += [nn.ConvTranspose2d(c_in, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    layers += [nn.ConvTranspose2d(chans[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
    self.body = nn.Sequential(*layers)
    for m in self.modules():
      if isinstance(m, nn.ConvTranspose2d) or m is self.project:
        nn.init.normal_(m.weight, 0.0, 0.02)
      elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)

  def forward(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    t = F.leaky_relu(self.text_proj(emb), 0.2)
    h = self.project(torch.cat([z, t], dim=1)).view(z.shape[0], self.chans[0], 4, 4)
    h = F.relu(self.project_bn(h))
    return self.body(h)


class DCGANCLSDiscriminator(nn.Module):
  """``zoo.models.dcgan_cls.Discriminator`` (without minibatch discrimination)."""

  def __init__(self, resolution: int, ndf: int, embed_dim: int, proj_dim: int, nc: int):
    super().__init__()
    chans = _channels(resolution, ndf)[::-1]
    layers: list[nn.Module] = []
    c_in = nc
    for i, c in enumerate(chans):
      layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=False))
      if i > 0:
        layers.append(nn.BatchNorm2d(c))
      layers.append(nn.LeakyReLU(0.2))
      c_in = c
    self.body = nn.Sequential(*layers)
    self.proj_dim = proj_dim
    self.text_proj = _text_projection(embed_dim, proj_dim)
    self.joint = nn.Conv2d(chans[-1] + proj_dim, chans[-1], 1, 1, 0, bias=False)
    self.joint_bn = nn.BatchNorm2d(chans[-1])
    self.score = nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
      elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)

  def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    h = self.body(x)
    t = F.leaky_relu(self.text_proj(emb), 0.2)
    t = t[:, :, None, None].expand(-1, -1, 4, 4)
    h = torch.cat([h, t], dim=1)
    h = F.leaky_relu(self.joint_bn(self.joint(h)), 0.2)
    return self.score(h).view(x.shape[0])


def dcgan_cls_step(
  resolution: int,
  batch: int,
  *,
  ngf: int,
  ndf: int,
  latent_dim: int,
  embed_dim: int,
  proj_dim: int,
  num_channels: int = 3,
  cls: bool = True,
  int_beta: float = 0.5,
  lr: float = 2e-4,
  b1: float = 0.5,
  b2: float = 0.999,
  seed: int = 0,
) -> Callable[[], None]:
  """One GAN-INT-CLS training step (``cls`` / ``int_beta`` as the zoo's ``objective``
  section; ``int_beta=0`` turns GAN-INT off) on ``batch`` random images and caption
  embeddings of size ``embed_dim`` (see the module docstring)."""
  torch.manual_seed(seed)
  dev = device()
  g = DCGANCLSGenerator(resolution, ngf, latent_dim, embed_dim, proj_dim, num_channels)
  d = DCGANCLSDiscriminator(resolution, ndf, embed_dim, proj_dim, num_channels)
  g.to(dev).train()
  d.to(dev).train()
  opt_g = _adam(g.parameters(), lr, b1, b2)
  opt_d = _adam(d.parameters(), lr, b1, b2)
  real = torch.rand(batch, num_channels, resolution, resolution, device=dev) * 2 - 1
  emb = torch.randn(batch, embed_dim, device=dev)
  wrong = torch.roll(emb, 1, dims=0)
  emb_int = int_beta * emb + (1.0 - int_beta) * wrong

  def step() -> None:
    z = torch.randn(batch, latent_dim, device=dev)
    if int_beta:
      z_int = torch.randn(batch, latent_dim, device=dev)
      images = g(torch.cat([z, z_int]), torch.cat([emb, emb_int]))
      fake, fake_int = images[:batch], images[batch:]
    else:
      fake, fake_int = g(z, emb), None
    # D: GAN-CLS (or the plain conditional GAN loss), fakes without gradient to G.
    _set_requires_grad(d, True)
    opt_d.zero_grad(set_to_none=True)
    rr = d(real, emb)
    fr = d(fake.detach(), emb)
    if cls:
      rw = d(real, wrong)
      loss_d = torch.mean(F.softplus(-rr) + 0.5 * (F.softplus(rw) + F.softplus(fr)))
    else:
      loss_d = torch.mean(F.softplus(-rr) + F.softplus(fr))
    loss_d.backward()
    opt_d.step()
    # G: non-saturating loss on (fake, right) and (fake_int, interpolated).
    _set_requires_grad(d, False)
    opt_g.zero_grad(set_to_none=True)
    terms = [F.softplus(-d(fake, emb))]
    if fake_int is not None:
      terms.append(F.softplus(-d(fake_int, emb_int)))
    loss_g = torch.mean(torch.cat(terms))
    loss_g.backward()
    opt_g.step()
    sync(dev)

  step.g_params = param_count(g)
  step.d_params = param_count(d)
  step.describe = (
    f"dcgan_cls torch: {resolution}x{resolution}, ngf {ngf}, ndf {ndf}, z {latent_dim}, "
    f"emb {embed_dim} -> {proj_dim}, cls={cls}, int_beta={int_beta}"
  )
  step.modules = (g, d)
  return step
