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
  def from_config(cls, section: Mapping[str, Any], *, family_keys=()) -> "LossConfig":
    """The shared keys of ``section``; ``family_keys`` are a family's own loss keys, which
    its task reads (left out here rather than rejected as unknown)."""
    section = {k: v for k, v in dict(section).items() if k not in family_keys}
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


def adversarial_d_loss(losses: LossConfig, real_scores, fake_scores) -> tuple[jax.Array, dict]:
  """D's mean ``losses.d_loss`` on ``real_scores`` vs ``fake_scores`` (``[B]``), plus
  ``losses.drift`` x the mean squared real score, and the metrics every family logs
  (``D_real_score``, ``D_fake_score``, ``D_drift``)."""
  loss = jnp.mean(D_LOSSES[losses.d_loss](real_scores, fake_scores))
  metrics = {"D_real_score": jnp.mean(real_scores), "D_fake_score": jnp.mean(fake_scores)}
  if losses.drift:
    drift = jnp.mean(gan_losses.drift_penalty(real_scores, epsilon_drift=losses.drift))
    loss = loss + drift
    metrics["D_drift"] = drift
  return loss, metrics


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
    loss, metrics = adversarial_d_loss(self.losses, real_scores, fake_scores)
    return loss, (metrics, {})

  def g_loss(self, d_vars, batch, fake, rng, step):
    return jnp.mean(G_LOSSES[self.losses.g_loss](self.d_apply(d_vars, fake, step))), ({}, {})

  def regularizer(self):
    return d_regularizer(self.losses, self.score, lambda b: b[self.image_key])


@dataclasses.dataclass(frozen=True)
class TextConditionalObjective:
  """``G(z, φ(t))`` against a matching-aware ``D(x, φ(t))``: a :class:`core.Objective`.

  Reed et al. 2016 ("Generative Adversarial Text to Image Synthesis"). The batch holds real
  images and the embeddings ``φ(t)`` of their captions; the *wrong* caption of example i is
  the one of example ``i - 1`` (the batch rolled by one), or the batch's ``wrong_emb``
  when it has one (e.g. :func:`zoo.data.caption_pairs.contradicting_captions`).

  * D: with ``cls`` (GAN-CLS, Alg. 1) :func:`zoo.losses.gan.d_gan_cls_loss` on
    (real, right), (real, wrong), (fake, right); without it the plain conditional GAN loss
    ``losses.d_loss`` on (real, right) vs (fake, right).
  * G: ``losses.g_loss`` on (fake, right) and, with ``int_beta`` (GAN-INT, Eq. 5), also on
    fakes drawn for the interpolated embeddings ``β φ(t_i) + (1 - β) φ(t_{i-1})`` (G runs
    once on the concatenation, so batch norm sees both halves); ``feature_matching`` > 0
    adds that weight times :func:`zoo.losses.gan.feature_matching_loss` on D's image features.

  Attributes:
    g_apply: ``(g_vars, z, emb, step) -> (images, updated_collections)``.
    d_apply: ``(d_vars, images, emb, step) -> ((logits [B], features [B, F]), updated)``.
    latent_dim: size of ``z``.
    losses: the :class:`LossConfig` (its d_loss/g_loss name the players' losses).
    cls, int_beta, feature_matching: as above (``int_beta=None``: no GAN-INT).
  """

  g_apply: Callable
  d_apply: Callable
  latent_dim: int
  losses: LossConfig
  cls: bool = True
  int_beta: float | None = 0.5
  feature_matching: float = 0.0
  image_key: str = "image"
  emb_key: str = "emb"

  def __post_init__(self):
    if self.cls and self.losses.d_loss != "logistic":
      raise ConfigError(f"GAN-CLS is defined for d_loss='logistic', not {self.losses.d_loss!r}")

  def embeddings(self, batch):
    """``(right, other)``: the captions' embeddings and the batch's rolled by one (GAN-INT
    interpolates between those two)."""
    emb = batch[self.emb_key]
    return emb, jnp.roll(emb, 1, axis=0)

  def wrong_embeddings(self, batch):
    """GAN-CLS's wrong captions: the batch's ``wrong_emb``, else the rolled batch."""
    return batch["wrong_emb"] if "wrong_emb" in batch else self.embeddings(batch)[1]

  def generate(self, g_vars, batch, rng, step):
    emb, other = self.embeddings(batch)
    n = emb.shape[0]
    z = jax.random.normal(rng, (n, self.latent_dim), jnp.float32)
    if self.int_beta is None:
      images, updated = self.g_apply(g_vars, z, emb, step)
      return {"image": images}, updated
    z_int = jax.random.normal(jax.random.fold_in(rng, 1), (n, self.latent_dim), jnp.float32)
    emb_int = gan_losses.gan_int_embeddings(emb, other, beta=self.int_beta)
    images, updated = self.g_apply(
      g_vars, jnp.concatenate([z, z_int]), jnp.concatenate([emb, emb_int]), step
    )
    return {"image": images[:n], "image_int": images[n:]}, updated

  def _d(self, d_vars, collections, x, emb, step):
    (logits, feats), updated = self.d_apply({**d_vars, **collections}, x, emb, step)
    return logits, feats, {**collections, **dict(updated)}

  def d_loss(self, d_vars, batch, fake, rng, step):
    emb, wrong = batch[self.emb_key], self.wrong_embeddings(batch)
    real = batch[self.image_key]
    rr, _, col = self._d(d_vars, {}, real, emb, step)
    fr, _, col = self._d(d_vars, col, fake["image"], emb, step)
    metrics = {"D_real_score": jnp.mean(rr), "D_fake_score": jnp.mean(fr)}
    if self.cls:
      rw, _, col = self._d(d_vars, col, real, wrong, step)
      loss = gan_losses.d_gan_cls_loss(rr, rw, fr)
      metrics["D_wrong_score"] = jnp.mean(rw)
    else:
      loss = D_LOSSES[self.losses.d_loss](rr, fr)
    return jnp.mean(loss), (metrics, col)

  def g_loss(self, d_vars, batch, fake, rng, step):
    emb, other = self.embeddings(batch)
    fr, f_feats, col = self._d(d_vars, {}, fake["image"], emb, step)
    losses = [G_LOSSES[self.losses.g_loss](fr)]
    metrics = {}
    if "image_int" in fake:
      emb_int = gan_losses.gan_int_embeddings(emb, other, beta=self.int_beta)
      fi, _, col = self._d(d_vars, col, fake["image_int"], emb_int, step)
      losses.append(G_LOSSES[self.losses.g_loss](fi))
      metrics["G_int"] = jnp.mean(losses[-1])
    loss = jnp.mean(jnp.concatenate(losses))
    if self.feature_matching:
      _, r_feats, col = self._d(d_vars, col, batch[self.image_key], emb, step)
      fm = gan_losses.feature_matching_loss(jax.lax.stop_gradient(r_feats), f_feats)
      loss = loss + self.feature_matching * fm
      metrics["G_feature_matching"] = fm
    return loss, (metrics, col)


#: What :func:`wrong_labels` pairs a real image with.
WRONG_LABEL_PAIRS = ("other", "near_miss")


def wrong_labels(rng, label: jax.Array, group_sizes, *, pairs: str = "near_miss") -> jax.Array:
  """Mismatched labels for D's matching-aware term: ``label`` ``[B, K]`` is one one-hot per
  attribute (``group_sizes`` sum to K). ``pairs='other'``: the previous example's label;
  ``'near_miss'``: the example's own label with exactly one attribute (uniform over those
  with two or more values) changed to another value (uniform), so that D must check
  every attribute, not only those that tell most faces apart."""
  if pairs not in WRONG_LABEL_PAIRS:
    raise ValueError(f"pairs={pairs!r}, expected one of {list(WRONG_LABEL_PAIRS)}")
  if pairs == "other":
    return jnp.roll(label, 1, axis=0)
  sizes = [int(s) for s in group_sizes]
  if sum(sizes) != label.shape[-1]:
    raise ValueError(f"group sizes {sizes} do not sum to the label size {label.shape[-1]}")
  which = [i for i, s in enumerate(sizes) if s > 1]
  k_group, k_value = jax.random.split(rng)
  group = jnp.asarray(which)[jax.random.randint(k_group, label.shape[:1], 0, len(which))]
  parts, start = [], 0
  for i, size in enumerate(sizes):
    part = label[:, start : start + size]
    start += size
    if size > 1:
      shift = jax.random.randint(jax.random.fold_in(k_value, i), label.shape[:1], 1, size)
      changed = jax.nn.one_hot((jnp.argmax(part, -1) + shift) % size, size, dtype=label.dtype)
      part = jnp.where((group == i)[:, None], changed, part)
    parts.append(part)
  return jnp.concatenate(parts, axis=-1)


def balanced_mismatch_term(losses: LossConfig, real_scores, fake_scores, wrong_scores):
  """What turns :func:`adversarial_d_loss` into GAN-CLS's matching-aware D loss (Reed et
  al. 2016) for any separable ``losses.d_loss`` ``L(real, fake) = a(real) + b(fake)``:
  ``mean [L(real, wrong) - L(real, fake)] / 2``, so that the total is
  ``mean [L(real, fake) + L(real, wrong)] / 2`` and D(fake) and D(real, wrong) share one
  weight (for the logistic loss, :func:`zoo.losses.gan.d_gan_cls_loss`)."""
  d_loss = D_LOSSES[losses.d_loss]
  return 0.5 * (
    jnp.mean(d_loss(real_scores, wrong_scores)) - jnp.mean(d_loss(real_scores, fake_scores))
  )


def check_mismatch_term(d_loss: str, *, mismatch: bool, balanced: bool, where: str = "") -> None:
  """One-line ConfigError unless the matching-aware D term is defined for ``d_loss``: the
  reference's unbalanced sum is WGAN's; any other separable loss needs the balanced
  (GAN-CLS) weighting. ``where`` prefixes the message (e.g. ``'bad t2f config: '``)."""
  if mismatch and not balanced and d_loss != "wgan":
    raise ConfigError(
      f"{where}the unbalanced matching-aware term (loss.matching_aware with "
      f"balanced_mismatch=False) needs d_loss='wgan', not {d_loss!r}"
    )


@dataclasses.dataclass(frozen=True)
class LearnedConditionObjective:
  """``G(z, text)`` whose condition encoder is part of G, against ``D(x, cond)``: T2F's game.

  G's parameters include a text encoder and a conditioning augmentation (StackGAN): from
  the batch's captions it computes the condition it is generated from and the one D is
  shown (``cond``: the text embedding or the augmented condition), plus the CA's ``mu``
  and ``logvar``. Both are part of what ``generate`` returns, so

  * D's update sees ``cond`` as a constant (the core stops the gradient of the fakes: D
    never changes the encoder);
  * G's update reaches the encoder and the CA through G's input, through the KL term and,
    with ``cond_grad`` (the reference, whose G loss is not detached from the embedding it
    shows D), through D's conditioning input too.

  Losses: D ``losses.d_loss`` on (real, cond) vs (fake, cond), ``losses.drift`` on the
  real scores, and with ``mismatch`` the matching-aware term of the T2F reference,
  ``+ mean D(real, wrong cond)`` (WGAN only; the wrong condition of example i is example
  ``i - 1``'s; when the batch has ``'wrong_image'``, that image with example i's own
  condition instead, so the wrong pairs' captions are distributed as the right ones').
  With ``balanced_mismatch`` the two negatives share one weight, as in GAN-CLS (Reed et
  al. 2016), for any ``d_loss`` ``L(real, fake) = a(real) + b(fake)``:
  ``mean [L(real, fake) + L(real, wrong)] / 2 = a(real) + b(fake)/2 + b(wrong)/2``, i.e.
  ``mean D(fake)/2 + mean D(real, wrong)/2 - mean D(real)`` for WGAN and
  :func:`zoo.losses.gan.d_gan_cls_loss` for the logistic loss. The reference's sum
  ``D(fake) - D(real) + D(real, wrong)`` falls by one for every unit that all scores fall
  together, so a D that ignores the text minimises it by sinking
  every score to ``-1 / (2 drift)`` (-500 at drift 1e-3), where only the drift holds it;
  balanced, a common shift of the scores changes nothing. D's regulariser
  (``losses.reg``, e.g. WGAN-GP) is taken with respect to the images, the condition
  fixed. G: ``losses.g_loss`` on (fake, cond) plus
  ``kl_weight * mean KL(N(mu, sigma^2) || N(0, I))``.

  Attributes:
    g_apply: ``(g_vars, batch, z, rng, step) -> {'image', 'cond', 'mu', 'logvar'}``
      (``rng``: the CA noise).
    d_apply: ``(d_vars, images, cond, step) -> scores [B]``.
    latent_dim: size of ``z``.
    losses: the :class:`LossConfig`.
    kl_weight: weight of the CA's KL term in G's loss.
    mismatch: add the matching-aware term to D's loss.
    cond_grad: let G's adversarial loss reach the encoder through D's condition input.
    balanced_mismatch: weight D(fake) and D(real, wrong) by 1/2 each (see above).
  """

  g_apply: Callable
  d_apply: Callable
  latent_dim: int
  losses: LossConfig
  kl_weight: float = 1.0
  mismatch: bool = False
  cond_grad: bool = True
  balanced_mismatch: bool = False
  image_key: str = "image"

  def __post_init__(self):
    check_mismatch_term(self.losses.d_loss, mismatch=self.mismatch, balanced=self.balanced_mismatch)
    if self.kl_weight < 0:
      raise ConfigError(f"kl_weight={self.kl_weight!r} must be >= 0")

  def generate(self, g_vars, batch, rng, step):
    n = batch[self.image_key].shape[0]
    r_z, r_ca = jax.random.split(rng)
    z = jax.random.normal(r_z, (n, self.latent_dim), jnp.float32)
    return dict(self.g_apply(g_vars, batch, z, r_ca, step)), {}

  def d_loss(self, d_vars, batch, fake, rng, step):
    cond = fake["cond"]
    real = batch[self.image_key]
    real_scores = self.d_apply(d_vars, real, cond, step)
    fake_scores = self.d_apply(d_vars, fake["image"], cond, step)
    loss, metrics = adversarial_d_loss(self.losses, real_scores, fake_scores)
    if self.mismatch:
      if "wrong_image" in batch:  # the caption's near-miss image
        wrong_scores = self.d_apply(d_vars, batch["wrong_image"], cond, step)
      else:
        wrong_scores = self.d_apply(d_vars, real, jnp.roll(cond, 1, axis=0), step)
      if self.balanced_mismatch:  # (L(real, fake) + L(real, wrong)) / 2, plus the drift
        loss = loss + balanced_mismatch_term(self.losses, real_scores, fake_scores, wrong_scores)
      else:
        loss = loss + jnp.mean(wrong_scores)
      metrics["D_wrong_score"] = jnp.mean(wrong_scores)
    return loss, (metrics, {})

  def g_loss(self, d_vars, batch, fake, rng, step):
    cond = fake["cond"] if self.cond_grad else jax.lax.stop_gradient(fake["cond"])
    adv = jnp.mean(G_LOSSES[self.losses.g_loss](self.d_apply(d_vars, fake["image"], cond, step)))
    kl = jnp.mean(gan_losses.conditioning_augmentation_kl(fake["mu"], fake["logvar"]))
    return adv + self.kl_weight * kl, ({"G_adv": adv, "KL": kl}, {})

  def regularizer(self):
    """``losses.reg`` on D(x, cond) with respect to x, ``cond`` that of the fakes."""
    key = "_d_condition"
    reg = d_regularizer(
      self.losses,
      lambda d_vars, x, batch, step: self.d_apply(d_vars, x, batch[key], step),
      lambda batch: batch[self.image_key],
    )
    if reg is None:
      return None
    return lambda d_vars, batch, fake, rng, step: reg(
      d_vars, {**batch, key: fake["cond"]}, fake, rng, step
    )
