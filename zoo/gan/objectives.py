"""GAN objectives chosen by config from :mod:`zoo.losses.gan`.

``config.loss`` (an ml_collections section or a dict) names the players' losses and
D's regulariser::

  d_loss: logistic | hinge | lsgan | wgan
  g_loss: nonsaturating | minimax | hinge | lsgan | wgan
  reg: none | gp | r1 | r2        reg_weight: λ (gp) or γ (r1/r2)
  reg_interval: 1                  (lazy: every k-th D update, scaled by k)
  drift: 0.0                       (ProGAN's ε_drift · D(x)²)
  n_critic: 1

:class:`LatentObjective` is the unconditional ``G(z)`` vs ``D(x)`` game used by
ProGAN (and the families that condition on nothing but the latent).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from zoo.errors import ConfigError
from zoo.gan import core
from zoo.losses import gan as gan_losses

D_LOSSES = {
  "logistic": gan_losses.d_logistic_loss,
  "hinge": gan_losses.d_hinge_loss,
  "lsgan": gan_losses.d_lsgan_loss,
  "wgan": gan_losses.d_wgan_loss,
}
G_LOSSES = {
  "nonsaturating": gan_losses.g_nonsaturating_loss,
  "minimax": gan_losses.g_minimax_loss,
  "hinge": gan_losses.g_hinge_loss,
  "lsgan": gan_losses.g_lsgan_loss,
  "wgan": gan_losses.g_wgan_loss,
}
REGULARIZERS = ("none", "gp", "r1", "r2")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  d_loss: str = "logistic"
  g_loss: str = "nonsaturating"
  reg: str = "none"
  reg_weight: float = 0.0
  reg_interval: int = 1
  drift: float = 0.0
  n_critic: int = 1

  @classmethod
  def from_config(cls, section: Mapping[str, Any]) -> "LossConfig":
    section = dict(section)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - names)
    if unknown:
      raise ConfigError(f"unknown loss keys {unknown}; expected some of {sorted(names)}")
    out = cls(**section)
    out.validate()
    return out

  def validate(self) -> None:
    def need(ok, msg):
      if not ok:
        raise ConfigError(f"bad loss config: {msg}")

    need(self.d_loss in D_LOSSES, f"d_loss={self.d_loss!r}, expected one of {sorted(D_LOSSES)}")
    need(self.g_loss in G_LOSSES, f"g_loss={self.g_loss!r}, expected one of {sorted(G_LOSSES)}")
    need(self.reg in REGULARIZERS, f"reg={self.reg!r}, expected one of {REGULARIZERS}")
    need(self.reg_weight >= 0, f"reg_weight={self.reg_weight!r} must be >= 0")
    need(
      isinstance(self.reg_interval, int) and self.reg_interval >= 1,
      f"reg_interval={self.reg_interval!r} must be an integer >= 1",
    )
    need(self.drift >= 0, f"drift={self.drift!r} must be >= 0")
    need(
      isinstance(self.n_critic, int) and self.n_critic >= 1,
      f"n_critic={self.n_critic!r} must be an integer >= 1",
    )

  def step_config(self, *, ema_beta: float | None = None) -> core.StepConfig:
    return core.StepConfig(
      n_critic=self.n_critic, reg_interval=self.reg_interval, ema_beta=ema_beta
    )


def d_regularizer(
  cfg: LossConfig,
  score: Callable[[Any, jax.Array, Any, jax.Array], jax.Array],
  real: Callable[[Any], jax.Array],
) -> Callable | None:
  """The core's ``d_regularizer`` for ``cfg.reg``, or None.

  ``score(d_vars, images, batch, step)`` is D's per-example output; ``real(batch)``
  the real images. Returns the batch-mean penalty (already weighted) and metrics.
  """
  if cfg.reg == "none" or cfg.reg_weight == 0:
    return None

  def reg(d_vars, batch, fake, rng, step):
    fn = lambda x: score(d_vars, x, batch, step)  # noqa: E731
    x_real = real(batch)
    if cfg.reg == "gp":
      pen = cfg.reg_weight * gan_losses.gradient_penalty(fn, x_real, fake_images(fake), rng)
    elif cfg.reg == "r1":
      pen = gan_losses.r1_penalty(fn, x_real, gamma=cfg.reg_weight)
    else:
      pen = gan_losses.r2_penalty(fn, fake_images(fake), gamma=cfg.reg_weight)
    pen = jnp.mean(pen)
    return pen, {f"D_{cfg.reg}": pen}

  return reg


def fake_images(fake) -> jax.Array:
  """The images in what ``generate`` returned (an array or a dict with ``'image'``)."""
  return fake["image"] if isinstance(fake, Mapping) else fake


@dataclasses.dataclass(frozen=True)
class LatentObjective:
  """Unconditional ``G(z)``, ``z ~ N(0, I)``, against ``D(x)``: a :class:`core.Objective`.

  Attributes:
    g_apply: ``(g_vars, z, step) -> images``.
    d_apply: ``(d_vars, images, step) -> scores [B]`` (or ``[B, ...]``).
    latent_dim: size of ``z``.
    losses: the :class:`LossConfig`.
    image_key: where the real images are in the batch.
  """

  g_apply: Callable
  d_apply: Callable
  latent_dim: int
  losses: LossConfig
  image_key: str = "image"

  def generate(self, g_vars, batch, rng, step):
    n = batch[self.image_key].shape[0]
    z = jax.random.normal(rng, (n, self.latent_dim), jnp.float32)
    return self.g_apply(g_vars, z, step), {}

  def score(self, d_vars, x, batch, step):
    return self.d_apply(d_vars, x, step)

  def d_loss(self, d_vars, batch, fake, rng, step):
    real_scores = self.d_apply(d_vars, batch[self.image_key], step)
    fake_scores = self.d_apply(d_vars, fake, step)
    loss = D_LOSSES[self.losses.d_loss](real_scores, fake_scores)
    metrics = {"D_real_score": jnp.mean(real_scores), "D_fake_score": jnp.mean(fake_scores)}
    if self.losses.drift:
      drift = gan_losses.drift_penalty(real_scores, epsilon_drift=self.losses.drift)
      loss = loss + drift
      metrics["D_drift"] = jnp.mean(drift)
    return jnp.mean(loss), (metrics, {})

  def g_loss(self, d_vars, batch, fake, rng, step):
    return jnp.mean(G_LOSSES[self.losses.g_loss](self.d_apply(d_vars, fake, step))), ({}, {})

  def regularizer(self):
    return d_regularizer(self.losses, self.score, lambda b: b[self.image_key])
