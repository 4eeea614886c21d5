"""Adversarial losses and regularisers shared by the GAN models of the zoo.

Everything here is a pure function of arrays in the style of ``optax.losses``:
hyper-parameters are keyword-only, nothing is averaged over the batch, and the
result has one value per example (shape ``[B]``) unless noted otherwise. The
caller decides how to reduce (usually ``.mean()``).

Discriminator / critic outputs are *logits* (pre-sigmoid scores) of any shape
``[B, ...]``: a global discriminator gives ``[B]`` or ``[B, 1]``, a PatchGAN
gives ``[B, h, w, 1]``. The per-example loss is the mean over every non-batch
axis, which for PatchGAN is the usual "average over patches".

Conventions: ``D(x) = sigmoid(l)`` for logistic losses, so

    -log D(x)       = softplus(-l)
    -log(1 - D(x))  = softplus(l)

which is the numerically stable way to write the original GAN objective.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any

__all__ = [
  "d_logistic_loss",
  "g_nonsaturating_loss",
  "g_minimax_loss",
  "d_hinge_loss",
  "g_hinge_loss",
  "d_lsgan_loss",
  "g_lsgan_loss",
  "d_wgan_loss",
  "g_wgan_loss",
  "gradient_penalty",
  "drift_penalty",
  "r1_penalty",
  "r2_penalty",
  "lazy_regularization",
  "feature_matching_loss",
  "l1_loss",
  "d_gan_cls_loss",
  "gan_int_embeddings",
  "conditioning_augmentation_kl",
  "acgan_class_loss",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _per_example_mean(x: Array) -> Array:
  """Mean over every axis but the first: ``[B, ...] -> [B]``."""
  x = jnp.asarray(x)
  if x.ndim == 0:
    raise ValueError("expected an array with a leading batch axis, got a scalar")
  if x.ndim == 1:
    return x
  return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def _per_example_sum(x: Array) -> Array:
  """Sum over every axis but the first: ``[B, ...] -> [B]``."""
  x = jnp.asarray(x)
  if x.ndim == 0:
    raise ValueError("expected an array with a leading batch axis, got a scalar")
  if x.ndim == 1:
    return x
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def _check_same_batch(*arrays: Array) -> None:
  sizes = {jnp.shape(a)[0] if jnp.ndim(a) else None for a in arrays}
  if len(sizes) != 1 or None in sizes:
    shapes = [jnp.shape(a) for a in arrays]
    raise ValueError(f"all inputs need the same leading batch size, got shapes {shapes}")


def _input_grad(fn: Callable[[Array], Array], x: Array) -> Array:
  """d(sum fn(x)) / dx, i.e. each example's gradient of its own output.

  Summing over the batch is exact per example as long as ``fn`` treats the
  examples independently (no batch norm / minibatch-stddev across the batch).
  The result stays differentiable, so an outer ``jax.grad`` w.r.t. whatever
  ``fn`` closes over (the discriminator parameters) works.
  """
  return jax.grad(lambda y: jnp.sum(fn(y)))(x)


def _grad_sq_norm(grads: Array) -> Array:
  return _per_example_sum(jnp.square(grads))


# --------------------------------------------------------------------------
# logistic (original GAN, Goodfellow et al. 2014)
# --------------------------------------------------------------------------


def d_logistic_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the original GAN (binary cross-entropy).

  ``L_D = -log D(x) - log(1 - D(G(z))) = softplus(-l_real) + softplus(l_fake)``

  Goodfellow et al., "Generative Adversarial Nets", 2014.

  Args:
    real_logits: ``[B, ...]`` logits on real data.
    fake_logits: ``[B, ...]`` logits on generated data.

  Returns:
    ``[B]`` loss per example (each term averaged over non-batch axes).
  """
  _check_same_batch(real_logits, fake_logits)
  return _per_example_mean(jax.nn.softplus(-real_logits)) + _per_example_mean(
    jax.nn.softplus(fake_logits)
  )


def g_nonsaturating_loss(fake_logits: Array) -> Array:
  """Non-saturating generator loss ``-log D(G(z)) = softplus(-l_fake)``.

  The "-log D trick" of Goodfellow et al. 2014, Sec. 3: same fixed point as
  the minimax loss but strong gradients early in training.

  Args:
    fake_logits: ``[B, ...]`` discriminator logits on generated data.

  Returns:
    ``[B]`` loss per example.
  """
  return _per_example_mean(jax.nn.softplus(-fake_logits))


def g_minimax_loss(fake_logits: Array) -> Array:
  """Saturating (minimax) generator loss ``log(1 - D(G(z))) = -softplus(l_fake)``.

  The generator minimises the very objective the discriminator maximises
  (Goodfellow et al. 2014, Eq. 1). It saturates when D confidently rejects
  the samples; mostly useful for comparison.

  Args:
    fake_logits: ``[B, ...]`` discriminator logits on generated data.

  Returns:
    ``[B]`` loss per example (always <= 0).
  """
  return -_per_example_mean(jax.nn.softplus(fake_logits))


# --------------------------------------------------------------------------
# hinge (Lim & Ye 2017, Miyato et al. 2018)
# --------------------------------------------------------------------------


def d_hinge_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Hinge discriminator loss ``relu(1 - l_real) + relu(1 + l_fake)``.

  Lim & Ye, "Geometric GAN", 2017; Miyato et al., "Spectral Normalization for
  GANs", 2018.

  Args:
    real_logits: ``[B, ...]`` critic outputs on real data.
    fake_logits: ``[B, ...]`` critic outputs on generated data.

  Returns:
    ``[B]`` loss per example.
  """
  _check_same_batch(real_logits, fake_logits)
  return _per_example_mean(jax.nn.relu(1.0 - real_logits)) + _per_example_mean(
    jax.nn.relu(1.0 + fake_logits)
  )


def g_hinge_loss(fake_logits: Array) -> Array:
  """Hinge generator loss ``-l_fake``.

  Args:
    fake_logits: ``[B, ...]`` critic outputs on generated data.

  Returns:
    ``[B]`` loss per example.
  """
  return -_per_example_mean(fake_logits)


# --------------------------------------------------------------------------
# least squares (Mao et al. 2017)
# --------------------------------------------------------------------------


def d_lsgan_loss(
  real_logits: Array, fake_logits: Array, *, a: float = 0.0, b: float = 1.0
) -> Array:
  """Least-squares discriminator loss ``1/2 (D(x) - b)^2 + 1/2 (D(G(z)) - a)^2``.

  Mao et al., "Least Squares Generative Adversarial Networks", 2017, Eq. 2.
  ``a`` is the target for fakes, ``b`` the target for reals; the raw
  (un-squashed) discriminator outputs are regressed onto them. The defaults
  ``a=0, b=1`` (with ``c=1`` for G) are the 0-1 coding used by pix2pix/CycleGAN;
  ``a=-1, b=1, c=0`` minimises the Pearson chi^2 divergence.

  Args:
    real_logits: ``[B, ...]`` outputs on real data.
    fake_logits: ``[B, ...]`` outputs on generated data.
    a: target for generated data.
    b: target for real data.

  Returns:
    ``[B]`` loss per example.
  """
  _check_same_batch(real_logits, fake_logits)
  return 0.5 * _per_example_mean(jnp.square(real_logits - b)) + 0.5 * _per_example_mean(
    jnp.square(fake_logits - a)
  )


def g_lsgan_loss(fake_logits: Array, *, c: float = 1.0) -> Array:
  """Least-squares generator loss ``1/2 (D(G(z)) - c)^2`` (Mao et al. 2017, Eq. 2).

  Args:
    fake_logits: ``[B, ...]`` discriminator outputs on generated data.
    c: the value G wants D to believe for fake data.

  Returns:
    ``[B]`` loss per example.
  """
  return 0.5 * _per_example_mean(jnp.square(fake_logits - c))


# --------------------------------------------------------------------------
# Wasserstein (Arjovsky et al. 2017, Gulrajani et al. 2017)
# --------------------------------------------------------------------------


def d_wgan_loss(real_logits: Array, fake_logits: Array) -> Array:
  """WGAN critic loss ``D(G(z)) - D(x)`` (Arjovsky et al., "Wasserstein GAN", 2017).

  Minimising it maximises the critic's estimate of the Wasserstein-1
  distance; it needs a Lipschitz constraint, usually :func:`gradient_penalty`
  and, for ProGAN, :func:`drift_penalty`.

  Args:
    real_logits: ``[B, ...]`` critic outputs on real data.
    fake_logits: ``[B, ...]`` critic outputs on generated data.

  Returns:
    ``[B]`` loss per example.
  """
  _check_same_batch(real_logits, fake_logits)
  return _per_example_mean(fake_logits) - _per_example_mean(real_logits)


def g_wgan_loss(fake_logits: Array) -> Array:
  """WGAN generator loss ``-D(G(z))``.

  Args:
    fake_logits: ``[B, ...]`` critic outputs on generated data.

  Returns:
    ``[B]`` loss per example.
  """
  return -_per_example_mean(fake_logits)


def gradient_penalty(
  critic_fn: Callable[[Array], Array],
  real: Array,
  fake: Array,
  rng: Array,
  *,
  target: float = 1.0,
  norm_eps: float = 1e-12,
) -> Array:
  """WGAN-GP gradient penalty ``(||grad_x D(x_hat)||_2 - target)^2``.

  Gulrajani et al., "Improved Training of Wasserstein GANs", 2017, Eq. 3.
  ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per
  example. The gradient norm is taken over all non-batch axes of the input.
  Multiply the result by ``lambda`` yourself (10 in the paper; ProGAN's code
  uses ``lambda / target**2`` so that other targets keep the same scale).

  The input gradient is obtained with ``jax.grad`` of the *sum* of the critic
  outputs, which equals each example's own gradient as long as the critic
  treats examples independently; note that a critic with minibatch-stddev
  breaks this slightly (ProGAN accepts that). The penalty is differentiable
  w.r.t. whatever ``critic_fn`` closes over, so write ``critic_fn`` as a
  closure over the discriminator parameters inside your D loss.

  Args:
    critic_fn: maps a batch ``[B, ...]`` (same shape as ``real``) to logits
      ``[B, ...]``. Conditioning inputs go into the closure.
    real: ``[B, ...]`` real samples.
    fake: ``[B, ...]`` generated samples (same shape as ``real``).
    rng: PRNG key for the interpolation coefficients.
    target: desired gradient norm.
    norm_eps: added under the square root so the norm stays differentiable
      when the gradient is exactly zero.

  Returns:
    ``[B]`` penalty per example.
  """
  real = jnp.asarray(real)
  fake = jnp.asarray(fake)
  if real.shape != fake.shape:
    raise ValueError(f"real and fake must have the same shape, got {real.shape} vs {fake.shape}")
  eps_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
  dtype = jnp.result_type(real, fake)
  eps = jax.random.uniform(rng, eps_shape, dtype=dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  grads = _input_grad(critic_fn, x_hat)
  norm = jnp.sqrt(_grad_sq_norm(grads) + norm_eps)
  return jnp.square(norm - target)


def drift_penalty(real_logits: Array, *, epsilon_drift: float = 1e-3) -> Array:
  """ProGAN's drift term ``epsilon_drift * D(x)^2`` on real data.

  Karras et al., "Progressive Growing of GANs", 2018, Appendix A.1: keeps the
  WGAN-GP critic output from drifting away from zero. Add it to the critic loss.

  Args:
    real_logits: ``[B, ...]`` critic outputs on real data.
    epsilon_drift: weight (1e-3 in the paper).

  Returns:
    ``[B]`` penalty per example (mean of squares over non-batch axes).
  """
  return epsilon_drift * _per_example_mean(jnp.square(real_logits))


# --------------------------------------------------------------------------
# zero-centred gradient penalties (Mescheder et al. 2018)
# --------------------------------------------------------------------------


def r1_penalty(d_fn: Callable[[Array], Array], real: Array, *, gamma: float) -> Array:
  """R1 regulariser ``gamma/2 * ||grad_x D(x)||^2`` on real data.

  Mescheder et al., "Which Training Methods for GANs do actually Converge?",
  2018, Eq. 9; used by StyleGAN (gamma=10 on FFHQ) with the non-saturating
  logistic loss.

  ``d_fn`` must be a function of the input only; bind the parameters with a
  closure or :func:`functools.partial` *inside* the function you
  differentiate, so the outer gradient flows through the input gradient
  (a gradient of a gradient)::

      def d_loss(d_params):
          d = functools.partial(discriminator.apply, d_params)  # d(x) -> logits
          loss = d_logistic_loss(d(real), d(fake))
          return (loss + r1_penalty(d, real, gamma=10.0)).mean()
      jax.grad(d_loss)(d_params)

  Per-example gradients come from ``jax.grad`` of the summed outputs, exact
  when ``d_fn`` treats examples independently.

  Args:
    d_fn: maps ``[B, ...]`` inputs to ``[B, ...]`` logits.
    real: ``[B, ...]`` real samples.
    gamma: regularisation weight.

  Returns:
    ``[B]`` penalty per example.
  """
  grads = _input_grad(d_fn, jnp.asarray(real))
  return 0.5 * gamma * _grad_sq_norm(grads)


def r2_penalty(d_fn: Callable[[Array], Array], fake: Array, *, gamma: float) -> Array:
  """R2 regulariser ``gamma/2 * ||grad_x D(x)||^2`` on generated data.

  Mescheder et al. 2018, Eq. 10. Same calling convention as :func:`r1_penalty`;
  pass ``jax.lax.stop_gradient(fake)`` if the generator should not be trained
  through it.

  Args:
    d_fn: maps ``[B, ...]`` inputs to ``[B, ...]`` logits.
    fake: ``[B, ...]`` generated samples.
    gamma: regularisation weight.

  Returns:
    ``[B]`` penalty per example.
  """
  grads = _input_grad(d_fn, jnp.asarray(fake))
  return 0.5 * gamma * _grad_sq_norm(grads)


def lazy_regularization(step: Array | int, *, interval: int) -> tuple[Array, float]:
  """Schedule for lazy regularisation (Karras et al., StyleGAN2, 2020, Sec. 3.1).

  StyleGAN2 evaluates expensive regularisers (R1 for D, path-length for G)
  only once every ``interval`` minibatches (16 for R1, 8 for path length) and
  multiplies the penalty by ``interval`` on the steps where it is applied, so
  that its expected contribution to the gradient matches computing it every
  step. (StyleGAN2 also rescales Adam's ``lr`` and ``beta``s by
  ``c = interval / (interval + 1)`` to compensate for the extra update; that
  is an optimiser concern and left to the caller.)

  Typical use inside a jitted step::

      apply, scale = lazy_regularization(step, interval=16)
      reg = jax.lax.cond(apply, lambda: scale * r1_penalty(d, real, gamma=g).mean(),
                         lambda: 0.0)

  or run two separately jitted update functions and branch in Python.

  Args:
    step: current training step (python int or integer array; step 0 applies).
    interval: regularise every ``interval`` steps; ``1`` means every step.

  Returns:
    ``(apply, scale)``: a boolean scalar array, true when ``step % interval == 0``,
    and the multiplier ``float(interval)`` to apply to the penalty on those steps.
  """
  if int(interval) < 1:
    raise ValueError(f"interval must be a positive integer, got {interval}")
  apply = jnp.asarray(jnp.asarray(step) % int(interval) == 0, dtype=bool)
  return apply, float(interval)


# --------------------------------------------------------------------------
# auxiliary losses
# --------------------------------------------------------------------------


def feature_matching_loss(
  real_features: PyTree, fake_features: PyTree, *, reduction: str = "sum"
) -> Array:
  """Feature matching ``|| E_x f(x) - E_z f(G(z)) ||_2^2`` (Salimans et al. 2016).

  "Improved Techniques for Training GANs", Sec. 3.1: the generator matches
  the batch mean of intermediate discriminator features on real data. The
  means over the batch axis (axis 0) are taken separately for real and fake,
  so the two batches may have different sizes. Usually the real features are
  wrapped in ``jax.lax.stop_gradient``.

  Args:
    real_features: an array ``[B_r, ...]`` or any pytree (list, dict, ...) of
      such arrays, e.g. one per discriminator layer.
    fake_features: same structure, arrays ``[B_f, ...]`` with the same
      trailing shapes.
    reduction: ``"sum"`` gives the squared L2 norm of the difference of the
      means for each leaf; ``"mean"`` divides each leaf's term by its number
      of features (a mean squared error). Leaves are summed.

  Returns:
    scalar loss (a batch statistic, so there is no per-example value).
  """
  if reduction not in ("sum", "mean"):
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
  real_leaves, real_def = jax.tree_util.tree_flatten(real_features)
  fake_leaves, fake_def = jax.tree_util.tree_flatten(fake_features)
  if real_def != fake_def:
    raise ValueError(f"feature trees differ: {real_def} vs {fake_def}")
  if not real_leaves:
    raise ValueError("no features given")
  total = 0.0
  for r, f in zip(real_leaves, fake_leaves):
    r = jnp.asarray(r)
    f = jnp.asarray(f)
    if r.shape[1:] != f.shape[1:]:
      raise ValueError(f"feature shapes differ beyond the batch axis: {r.shape} vs {f.shape}")
    sq = jnp.square(jnp.mean(r, axis=0) - jnp.mean(f, axis=0))
    total = total + (jnp.sum(sq) if reduction == "sum" else jnp.mean(sq))
  return jnp.asarray(total)


def l1_loss(pred: Array, target: Array) -> Array:
  """Per-example mean absolute error ``mean |pred - target|``.

  pix2pix adds ``lambda * L1`` (lambda=100) to the conditional GAN loss
  (Isola et al., "Image-to-Image Translation with Conditional Adversarial
  Networks", 2017, Eq. 3-4).

  Args:
    pred: ``[B, ...]`` predictions.
    target: ``[B, ...]`` targets, same shape.

  Returns:
    ``[B]`` mean absolute error per example.
  """
  pred = jnp.asarray(pred)
  target = jnp.asarray(target)
  if pred.shape != target.shape:
    raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
  return _per_example_mean(jnp.abs(pred - target))


# --------------------------------------------------------------------------
# text-to-image (Reed et al. 2016, Zhang et al. 2017)
# --------------------------------------------------------------------------


def d_gan_cls_loss(
  real_right_logits: Array, real_wrong_logits: Array, fake_right_logits: Array
) -> Array:
  """Matching-aware discriminator loss of GAN-CLS (Reed et al. 2016, Alg. 1).

  ``L_D = -log D(x, h) - 1/2 [log(1 - D(x, h_wrong)) + log(1 - D(G(z, h), h))]``
        ``= softplus(-s_r) + 1/2 [softplus(s_w) + softplus(s_f)]``

  Reed et al., "Generative Adversarial Text to Image Synthesis", ICML 2016.
  The discriminator must reject both real images paired with a mismatched
  description and generated images paired with their own description.

  Args:
    real_right_logits: ``[B, ...]`` logits for (real image, matching text).
    real_wrong_logits: ``[B, ...]`` logits for (real image, mismatching text).
    fake_right_logits: ``[B, ...]`` logits for (generated image, its text).

  Returns:
    ``[B]`` loss per example.
  """
  _check_same_batch(real_right_logits, real_wrong_logits, fake_right_logits)
  return _per_example_mean(jax.nn.softplus(-real_right_logits)) + 0.5 * (
    _per_example_mean(jax.nn.softplus(real_wrong_logits))
    + _per_example_mean(jax.nn.softplus(fake_right_logits))
  )


def gan_int_embeddings(emb1: Array, emb2: Array, *, beta: float | Array = 0.5) -> Array:
  """GAN-INT text-embedding interpolation ``beta * t1 + (1 - beta) * t2``.

  Reed et al. 2016, Sec. 4.3 (Eq. 5): the generator is additionally trained
  on interpolations between the embeddings of two captions, for which there
  is no real image; ``beta=0.5`` worked well in the paper. Usually ``emb2``
  is ``emb1`` rolled along the batch axis. The generator loss on such inputs
  is the ordinary one (e.g. :func:`g_nonsaturating_loss`).

  Args:
    emb1: ``[B, D]`` (or any shape) embeddings t1.
    emb2: embeddings t2 of the same shape.
    beta: interpolation weight; scalar or an array broadcastable to the
      embeddings (e.g. ``[B, 1]`` for per-example weights).

  Returns:
    interpolated embeddings, same shape as the inputs.
  """
  emb1 = jnp.asarray(emb1)
  emb2 = jnp.asarray(emb2)
  if emb1.shape != emb2.shape:
    raise ValueError(f"embedding shapes differ: {emb1.shape} vs {emb2.shape}")
  return beta * emb1 + (1.0 - beta) * emb2


def conditioning_augmentation_kl(mu: Array, logvar: Array) -> Array:
  """KL(N(mu, diag(sigma^2)) || N(0, I)) of conditioning augmentation.

  ``KL = 1/2 * sum_d (sigma_d^2 + mu_d^2 - 1 - log sigma_d^2)`` with
  ``logvar = log sigma^2``.

  Zhang et al., "StackGAN", 2017, Sec. 3.1 (weight rho=1 there); also used by
  T2F for its text conditioning.

  Args:
    mu: ``[B, D]`` means (any ``[B, ...]`` shape; summed over non-batch axes).
    logvar: log-variances, same shape.

  Returns:
    ``[B]`` KL per example.
  """
  mu = jnp.asarray(mu)
  logvar = jnp.asarray(logvar)
  if mu.shape != logvar.shape:
    raise ValueError(f"mu and logvar shapes differ: {mu.shape} vs {logvar.shape}")
  return 0.5 * _per_example_sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar)


# --------------------------------------------------------------------------
# class-conditional (Odena et al. 2017)
# --------------------------------------------------------------------------


def acgan_class_loss(
  logits: Array, labels: Array, *, group_sizes: tuple[int, ...] | None = None
) -> Array:
  """Auxiliary-classifier loss of ACGAN (Odena et al. 2017, Eq. 2, ``L_C``).

  ``L_C = -log P(C = c | X)``: the cross-entropy of the discriminator's class logits
  against the true (for reals) or requested (for fakes) class. Both players minimise it
  on the images they are responsible for (D on reals and fakes, G on fakes).

  Several categorical attributes at once: ``labels`` concatenates one one-hot per
  attribute and ``group_sizes`` gives their sizes; the loss is the sum of the
  per-attribute cross-entropies (softmax within each group).

  Odena et al., "Conditional Image Synthesis with Auxiliary Classifier GANs", ICML 2017.

  Args:
    logits: ``[B, K]`` class logits.
    labels: ``[B, K]`` one-hot (or soft) targets, one distribution per group.
    group_sizes: sizes summing to ``K`` (default: one group of ``K``).

  Returns:
    ``[B]`` loss per example.
  """
  _check_same_batch(logits, labels)
  if logits.shape != labels.shape or logits.ndim != 2:
    raise ValueError(f"logits and labels must be [B, K] alike, got {logits.shape}, {labels.shape}")
  sizes = tuple(group_sizes or (logits.shape[-1],))
  if sum(sizes) != logits.shape[-1]:
    raise ValueError(f"group_sizes {sizes} do not sum to the {logits.shape[-1]} classes")
  out, start = 0.0, 0
  for k in sizes:
    lg, lb = logits[:, start : start + k], labels[:, start : start + k]
    out = out - jnp.sum(lb * jax.nn.log_softmax(lg, axis=-1), axis=-1)
    start += k
  return out
