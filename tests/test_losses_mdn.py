"""Tests for zoo.losses.mdn (Sketch-RNN mixture-density reconstruction loss)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.losses import mdn

LOG_2PI = math.log(2 * math.pi)


def _params(m, shape, *, logits=0.0, mu_x=0.0, mu_y=0.0, lsx=0.0, lsy=0.0, rho=0.0, pen=0.0):
  full = lambda v, s: jnp.broadcast_to(jnp.asarray(v, jnp.float32), s)  # noqa: E731
  ms = tuple(shape) + (m,)
  return mdn.MixtureParams(
    pen_logits=full(pen, tuple(shape) + (3,)),
    mixture_logits=full(logits, ms),
    mu_x=full(mu_x, ms),
    mu_y=full(mu_y, ms),
    log_sigma_x=full(lsx, ms),
    log_sigma_y=full(lsy, ms),
    rho=full(rho, ms),
  )


def _random_params(key, batch_shape, m, dtype=jnp.float32):
  ks = jax.random.split(key, 8)
  s = tuple(batch_shape) + (m,)
  return mdn.MixtureParams(
    pen_logits=jax.random.normal(ks[0], tuple(batch_shape) + (3,), dtype),
    mixture_logits=jax.random.normal(ks[1], s, dtype),
    mu_x=jax.random.normal(ks[2], s, dtype),
    mu_y=jax.random.normal(ks[3], s, dtype),
    log_sigma_x=0.5 * jax.random.normal(ks[4], s, dtype),
    log_sigma_y=0.5 * jax.random.normal(ks[5], s, dtype),
    rho=jnp.tanh(jax.random.normal(ks[6], s, dtype)),
  )


def _naive_nll(x, y, p, eps):
  """Magenta's formula, literally, in numpy float64."""
  f = lambda a: np.asarray(a, np.float64)  # noqa: E731
  x, y = f(x)[..., None], f(y)[..., None]
  logits = f(p.mixture_logits)
  pi = np.exp(logits - logits.max(-1, keepdims=True))
  pi /= pi.sum(-1, keepdims=True)
  s1, s2 = np.exp(f(p.log_sigma_x)), np.exp(f(p.log_sigma_y))
  rho = f(p.rho)
  n1, n2 = x - f(p.mu_x), y - f(p.mu_y)
  z = (n1 / s1) ** 2 + (n2 / s2) ** 2 - 2 * rho * n1 * n2 / (s1 * s2)
  neg_rho = 1 - rho**2
  dens = np.exp(-z / (2 * neg_rho)) / (2 * np.pi * s1 * s2 * np.sqrt(neg_rho))
  return -np.log((pi * dens).sum(-1) + eps)


# --------------------------------------------------------------------------
# split_mixture_params


def test_split_layout_distinct_chunks():
  m = 4
  raw = jnp.concatenate(
    [jnp.array([10.0, 11.0, 12.0])]
    + [jnp.full((m,), float(k + 1)) + 0.01 * jnp.arange(m) for k in range(6)]
  )
  raw = jnp.broadcast_to(raw, (2, 5, 3 + 6 * m))
  p = mdn.split_mixture_params(raw, num_mixture=m)
  ar = 0.01 * np.arange(m)
  np.testing.assert_array_equal(p.pen_logits[1, 2], [10.0, 11.0, 12.0])
  for name, k in [
    ("mixture_logits", 1),
    ("mu_x", 2),
    ("mu_y", 3),
    ("log_sigma_x", 4),
    ("log_sigma_y", 5),
  ]:
    chex.assert_shape(getattr(p, name), (2, 5, m))
    np.testing.assert_allclose(getattr(p, name)[0, 0], k + ar, rtol=1e-6, err_msg=name)
  chex.assert_shape(p.pen_logits, (2, 5, 3))
  np.testing.assert_allclose(p.rho[0, 0], np.tanh(6 + ar), rtol=1e-6)


def test_split_rejects_wrong_last_dim():
  with pytest.raises(ValueError, match="3 \\+ 6 \\* num_mixture"):
    mdn.split_mixture_params(jnp.zeros((2, 3 + 6 * 3)), num_mixture=4)
  with pytest.raises(ValueError):
    mdn.split_mixture_params(jnp.zeros((2, 9)), num_mixture=0)


# --------------------------------------------------------------------------
# bivariate normal


def test_standard_normal_at_mean_is_log_one_over_two_pi():
  lp = mdn.bivariate_normal_log_prob(1.5, -2.0, 1.5, -2.0, 0.0, 0.0, 0.0)
  np.testing.assert_allclose(lp, -LOG_2PI, rtol=1e-6)


def test_bivariate_matches_explicit_covariance_formula():
  x, y, mx, my, sx, sy, r = 0.3, -1.2, -0.5, 0.4, 0.7, 1.9, -0.6
  cov = np.array([[sx * sx, r * sx * sy], [r * sx * sy, sy * sy]])
  d = np.array([x - mx, y - my])
  expected = -LOG_2PI - 0.5 * np.log(np.linalg.det(cov)) - 0.5 * d @ np.linalg.solve(cov, d)
  lp = mdn.bivariate_normal_log_prob(x, y, mx, my, math.log(sx), math.log(sy), r)
  np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_bivariate_rho_floor_only_bites_near_one():
  lp_small = mdn.bivariate_normal_log_prob(0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.999, rho_eps=1e-6)
  lp_exact = mdn.bivariate_normal_log_prob(0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.999, rho_eps=0.0)
  np.testing.assert_allclose(lp_small, lp_exact, rtol=1e-6)
  lp_one = mdn.bivariate_normal_log_prob(0.5, 0.4, 0.0, 0.0, 0.0, 0.0, 1.0, rho_eps=1e-4)
  # With 1 - rho^2 floored at 1e-4: quad = 0.1^2 / 1e-4 + 0.4^2.
  expected = -LOG_2PI - 0.5 * math.log(1e-4) - 0.5 * (100.0 + 0.16)
  np.testing.assert_allclose(lp_one, expected, rtol=1e-5)


# --------------------------------------------------------------------------
# mixture_nll


def test_mixture_nll_single_component_exact_and_eps():
  p = _params(1, (), mu_x=2.0, mu_y=-1.0)
  np.testing.assert_allclose(mdn.mixture_nll(2.0, -1.0, p, eps=0.0), LOG_2PI, rtol=1e-6)
  expected = -math.log(1 / (2 * math.pi) + 1e-6)
  np.testing.assert_allclose(mdn.mixture_nll(2.0, -1.0, p), expected, rtol=1e-6)


def test_mixture_nll_two_components_by_hand():
  # Pi = softmax([0, log 3]) = [1/4, 3/4]; component 0 is N(0, I),
  # component 1 has sigma_x = 2, sigma_y = 0.5, rho = 0, mean (1, 1).
  p = mdn.MixtureParams(
    pen_logits=jnp.zeros(3),
    mixture_logits=jnp.array([0.0, math.log(3.0)]),
    mu_x=jnp.array([0.0, 1.0]),
    mu_y=jnp.array([0.0, 1.0]),
    log_sigma_x=jnp.array([0.0, math.log(2.0)]),
    log_sigma_y=jnp.array([0.0, math.log(0.5)]),
    rho=jnp.zeros(2),
  )
  x, y = 0.5, 0.25
  n0 = math.exp(-0.5 * (x * x + y * y)) / (2 * math.pi)
  n1 = math.exp(-0.5 * (((x - 1) / 2) ** 2 + ((y - 1) / 0.5) ** 2)) / (2 * math.pi * 2 * 0.5)
  expected = -math.log(0.25 * n0 + 0.75 * n1)
  np.testing.assert_allclose(mdn.mixture_nll(x, y, p, eps=0.0), expected, rtol=1e-6)
  # The 6-tuple form gives the same answer.
  np.testing.assert_allclose(mdn.mixture_nll(x, y, tuple(p[1:]), eps=0.0), expected, rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_mixture_nll_matches_naive_float64(eps):
  key = jax.random.PRNGKey(0)
  p = _random_params(key, (4, 7), 5)
  kx, ky = jax.random.split(jax.random.PRNGKey(1))
  x = 1.5 * jax.random.normal(kx, (4, 7))
  y = 1.5 * jax.random.normal(ky, (4, 7))
  got = mdn.mixture_nll(x, y, p, eps=eps)
  chex.assert_shape(got, (4, 7))
  np.testing.assert_allclose(got, _naive_nll(x, y, p, eps), rtol=2e-5, atol=2e-5)


def test_mixture_nll_jit_and_vmap_invariance():
  p = _random_params(jax.random.PRNGKey(2), (3, 6), 4)
  x = jnp.linspace(-2, 2, 18).reshape(3, 6)
  y = jnp.cos(x)
  eager = mdn.mixture_nll(x, y, p)
  jitted = jax.jit(lambda a, b, q: mdn.mixture_nll(a, b, q))(x, y, p)
  vmapped = jax.vmap(lambda a, b, q: mdn.mixture_nll(a, b, q))(x, y, p)
  chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(eager, vmapped, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 1e-6])
@pytest.mark.parametrize(
  "log_sigma, rho_pre, offset",
  [
    (-20.0, 0.0, 0.3),
    (0.0, 20.0, 0.3),
    (0.0, -20.0, 0.3),
    (0.0, 0.0, 1e4),
    (-20.0, 20.0, 1e3),
    (5.0, 0.5, 0.0),
  ],
)
def test_mixture_nll_finite_values_and_grads_at_extremes(eps, log_sigma, rho_pre, offset):
  m = 3

  def loss(raw_rho, log_sig, mu, logits, xy):
    p = mdn.MixtureParams(
      pen_logits=jnp.zeros(3),
      mixture_logits=logits,
      mu_x=mu,
      mu_y=-mu,
      log_sigma_x=log_sig,
      log_sigma_y=log_sig,
      rho=jnp.tanh(raw_rho),
    )
    return mdn.mixture_nll(xy[0], xy[1], p, eps=eps)

  args = (
    jnp.full((m,), rho_pre),
    jnp.full((m,), log_sigma),
    jnp.array([0.0, 0.1, -0.1]),
    jnp.array([0.0, 1.0, -1.0]),
    jnp.array([offset, -0.5 * offset]),
  )
  value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
  assert np.isfinite(value)
  for g in grads:
    assert np.all(np.isfinite(g)), grads
  if eps:
    assert value <= -math.log(eps) + 1e-3


# --------------------------------------------------------------------------
# pen cross-entropy


def test_pen_cross_entropy_by_hand():
  logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
  targets = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
  got = mdn.pen_cross_entropy(logits, targets)
  chex.assert_shape(got, (2,))
  np.testing.assert_allclose(got, [lse - 2.0, math.log(3.0)], rtol=1e-6)


# --------------------------------------------------------------------------
# Reconstruction loss (train vs eval masking)

PAD = [0.0, 0.0, 0.0, 0.0, 1.0]


def _masking_case():
  # Example 0: three real steps; example 1: one real step then two padding
  # rows. Mixture means equal the real targets (so the exact NLL is
  # log(2 pi) there) but sit far from the padding rows, whose unmasked NLL
  # would therefore be huge.
  targets = jnp.array(
    [
      [[1.0, 2.0, 1, 0, 0], [-1.0, 0.5, 0, 1, 0], [0.5, 0.5, 1, 0, 0]],
      [[3.0, -2.0, 0, 1, 0], PAD, PAD],
    ]
  )
  mu_x = jnp.array([[1.0, -1.0, 0.5], [3.0, 50.0, 50.0]])[..., None]
  mu_y = jnp.array([[2.0, 0.5, 0.5], [-2.0, 50.0, 50.0]])[..., None]
  p = _params(1, (2, 3))._replace(mu_x=mu_x, mu_y=mu_y)
  return p, targets


def test_reconstruction_loss_train_masks_offsets_not_pen():
  p, targets = _masking_case()
  total, parts = mdn.sketch_rnn_reconstruction_loss(p, targets, train=True, eps=0.0)
  # 4 real steps out of B*T = 6; pen CE = log 3 everywhere (zero logits).
  np.testing.assert_allclose(parts["offset_loss"], 4 * LOG_2PI / 6, rtol=1e-6)
  np.testing.assert_allclose(parts["pen_loss"], math.log(3.0), rtol=1e-6)
  np.testing.assert_allclose(total, 4 * LOG_2PI / 6 + math.log(3.0), rtol=1e-6)


def test_reconstruction_loss_eval_masks_pen():
  p, targets = _masking_case()
  total, parts = mdn.sketch_rnn_reconstruction_loss(p, targets, train=False, eps=0.0)
  np.testing.assert_allclose(parts["offset_loss"], 4 * LOG_2PI / 6, rtol=1e-6)
  np.testing.assert_allclose(parts["pen_loss"], 4 * math.log(3.0) / 6, rtol=1e-6)
  np.testing.assert_allclose(total, 4 * (LOG_2PI + math.log(3.0)) / 6, rtol=1e-6)


def test_reconstruction_loss_default_eps_matches_magenta():
  p, targets = _masking_case()
  _, parts = mdn.sketch_rnn_reconstruction_loss(p, targets)
  per_step = -math.log(1 / (2 * math.pi) + 1e-6)
  np.testing.assert_allclose(parts["offset_loss"], 4 * per_step / 6, rtol=1e-6)


def test_reconstruction_loss_per_example():
  p, targets = _masking_case()
  for train, pen1 in [(True, math.log(3.0)), (False, math.log(3.0) / 3)]:
    per_ex, parts = mdn.sketch_rnn_reconstruction_loss_per_example(p, targets, train=train, eps=0.0)
    chex.assert_shape(per_ex, (2,))
    np.testing.assert_allclose(parts["offset_loss"], [LOG_2PI, LOG_2PI / 3], rtol=1e-6)
    np.testing.assert_allclose(parts["pen_loss"], [math.log(3.0), pen1], rtol=1e-6)
    scalar, _ = mdn.sketch_rnn_reconstruction_loss(p, targets, train=train, eps=0.0)
    np.testing.assert_allclose(per_ex.mean(), scalar, rtol=1e-6)


def test_reconstruction_loss_padding_gradients():
  p, targets = _masking_case()

  def loss(pen_logits, mu_x, train):
    q = p._replace(pen_logits=pen_logits, mu_x=mu_x)
    return mdn.sketch_rnn_reconstruction_loss(q, targets, train=train)[0]

  for train in (True, False):
    g_pen, g_mu = jax.grad(loss, argnums=(0, 1))(p.pen_logits, p.mu_x, train)
    # Offsets at padding never receive gradient.
    np.testing.assert_array_equal(g_mu[1, 1:], 0.0)
    pad_pen_grad = np.abs(np.asarray(g_pen[1, 1:])).max()
    if train:
      assert pad_pen_grad > 1e-3
    else:
      assert pad_pen_grad == 0.0
    assert np.abs(np.asarray(g_pen[0])).max() > 1e-3


def test_reconstruction_loss_jit_random_matches_naive():
  b, t, m = 3, 5, 4
  raw = jax.random.normal(jax.random.PRNGKey(3), (b, t, 3 + 6 * m))
  p = mdn.split_mixture_params(raw, num_mixture=m)
  xy = jax.random.normal(jax.random.PRNGKey(4), (b, t, 2))
  pen_idx = jax.random.randint(jax.random.PRNGKey(5), (b, t), 0, 2)
  pen = jax.nn.one_hot(pen_idx, 3)
  lengths = jnp.array([5, 3, 1])
  valid = jnp.arange(t)[None, :] < lengths[:, None]
  targets = jnp.where(valid[..., None], jnp.concatenate([xy, pen], -1), jnp.array(PAD))
  fn = jax.jit(mdn.sketch_rnn_reconstruction_loss, static_argnames="train")
  for train in (True, False):
    total, parts = fn(p, targets, train=train)
    eager_total, _ = mdn.sketch_rnn_reconstruction_loss(p, targets, train=train)
    chex.assert_trees_all_close(total, eager_total, rtol=1e-6)
    mask = np.asarray(valid, np.float64)
    nll = _naive_nll(targets[..., 0], targets[..., 1], p, 1e-6)
    logq = np.asarray(jax.nn.log_softmax(p.pen_logits), np.float64)
    ce = -(np.asarray(targets[..., 2:]) * logq).sum(-1)
    exp_pen = (ce if train else ce * mask).sum() / (b * t)
    np.testing.assert_allclose(parts["offset_loss"], (nll * mask).sum() / (b * t), rtol=1e-5)
    np.testing.assert_allclose(parts["pen_loss"], exp_pen, rtol=1e-5)


def test_reconstruction_loss_rejects_bad_targets():
  p = _params(2, (2, 3))
  with pytest.raises(ValueError, match="stroke-5"):
    mdn.sketch_rnn_reconstruction_loss(p, jnp.zeros((2, 3, 3)))
