"""The pix2pix objective (Isola et al. 2017) as pure per-example functions.

``G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G)`` (Eq. 4), with the conditional
GAN term of Eq. 1 written through the reference's ``GANLoss``: binary cross-entropy
on logits (``'vanilla'``) or least squares (``'lsgan'``), each averaged over the
PatchGAN's patches. The discriminator's loss is halved, as in the reference, which
"slows down the rate at which D learns relative to G".

Every function returns ``[B]`` values; callers average over the batch.
"""

from __future__ import annotations

import jax

from zoo.losses import gan as gan_lib

Array = jax.Array
GAN_MODES = ("vanilla", "lsgan")

__all__ = ["GAN_MODES", "gan_criterion", "d_loss", "g_loss"]


def gan_criterion(logits: Array, *, target_is_real: bool, gan_mode: str = "vanilla") -> Array:
  """The reference's ``GANLoss`` against a constant target, per example.

  vanilla: ``-log σ(l)`` against "real", ``-log(1 - σ(l))`` against "fake";
  lsgan: ``(l - 1)^2`` against "real", ``l^2`` against "fake".

  Args:
    logits: ``[B, ...]`` discriminator outputs (e.g. PatchGAN ``[B, h, w, 1]``).
    target_is_real: which constant target to score against.
    gan_mode: ``'vanilla'`` or ``'lsgan'``.

  Returns:
    ``[B]``: the loss averaged over every non-batch axis.
  """
  if gan_mode == "vanilla":
    if target_is_real:
      return gan_lib.g_nonsaturating_loss(logits)
    return -gan_lib.g_minimax_loss(logits)
  if gan_mode == "lsgan":
    return 2.0 * gan_lib.g_lsgan_loss(logits, c=1.0 if target_is_real else 0.0)
  raise ValueError(f"gan_mode={gan_mode!r}, expected one of {GAN_MODES}")


def d_loss(
  real_logits: Array, fake_logits: Array, *, gan_mode: str = "vanilla"
) -> tuple[Array, Array, Array]:
  """Discriminator loss ``0.5 (L(D(A, B), real) + L(D(A, G(A)), fake))``.

  Args:
    real_logits: ``[B, ...]`` D's outputs on real pairs ``[A, B]``.
    fake_logits: ``[B, ...]`` D's outputs on generated pairs ``[A, G(A)]``.
    gan_mode: ``'vanilla'`` or ``'lsgan'``.

  Returns:
    ``(loss, real_term, fake_term)``, each ``[B]``.
  """
  real = gan_criterion(real_logits, target_is_real=True, gan_mode=gan_mode)
  fake = gan_criterion(fake_logits, target_is_real=False, gan_mode=gan_mode)
  return 0.5 * (real + fake), real, fake


def g_loss(
  fake_logits: Array,
  fake_b: Array,
  real_b: Array,
  *,
  gan_mode: str = "vanilla",
  lambda_l1: float = 100.0,
) -> tuple[Array, Array, Array]:
  """Generator loss ``L(D(A, G(A)), real) + λ |G(A) - B|_1`` (Eq. 4).

  Args:
    fake_logits: ``[B, ...]`` D's outputs on generated pairs.
    fake_b: ``[B, H, W, C]`` generated images; ``real_b``: targets, same shape.
    gan_mode: ``'vanilla'`` or ``'lsgan'``.
    lambda_l1: weight λ of the L1 term (100 in the paper).

  Returns:
    ``(loss, gan_term, l1_term)``, each ``[B]`` (L1 is the per-pixel mean).
  """
  gan = gan_criterion(fake_logits, target_is_real=True, gan_mode=gan_mode)
  l1 = gan_lib.l1_loss(fake_b, real_b)
  return gan + lambda_l1 * l1, gan, l1
