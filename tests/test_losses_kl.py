"""Tests for zoo.losses.kl (Sketch-RNN KL loss and annealing)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.losses import kl

HPS = dict(kl_weight=0.5, kl_weight_start=0.01, kl_decay_rate=0.99995)


def _textbook_kl(mu, sigma):
  # KL(N(mu, sigma^2) || N(0, 1)) = log(1/sigma) + (sigma^2 + mu^2)/2 - 1/2
  return -math.log(sigma) + 0.5 * (sigma**2 + mu**2) - 0.5


def test_gaussian_kl_hand_values():
  mu = jnp.array([[0.0, 1.0, 0.0, -2.0]])
  sigma = np.array([1.0, 1.0, math.sqrt(2.0), 0.5])
  logvar = jnp.log(jnp.asarray(sigma**2, jnp.float32))[None]
  got = kl.gaussian_kl(mu, logvar)
  chex.assert_shape(got, (1, 4))
  expected = [_textbook_kl(m, s) for m, s in zip([0.0, 1.0, 0.0, -2.0], sigma)]
  np.testing.assert_allclose(got[0], expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got[0, :3], [0.0, 0.5, 0.5 * (1 - math.log(2))], rtol=1e-6, atol=1e-7)


def test_gaussian_kl_small_logvar_precision():
  # For tiny logvar, KL = lv^2/4 + lv^3/12 + ...; the naive
  # 1 + lv - exp(lv) form loses essentially all digits in float32 here.
  lv = jnp.float32(1e-4)
  np.testing.assert_allclose(kl.gaussian_kl(jnp.float32(0.0), lv), 0.25 * 1e-8, rtol=1e-2)


def test_kl_loss_is_mean_over_batch_and_latent_dims():
  mu = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  presig = jnp.zeros((2, 2))
  loss, raw = kl.sketch_rnn_kl_loss(mu, presig, kl_tolerance=0.1)
  # Elementwise KL [[0.5, 0], [0, 0]] -> mean 0.125 (a sum over dims would
  # give 0.25).
  np.testing.assert_allclose(raw, 0.125, rtol=1e-6)
  np.testing.assert_allclose(loss, 0.125, rtol=1e-6)
  g = jax.grad(lambda m: kl.sketch_rnn_kl_loss(m, presig, kl_tolerance=0.1)[0])(mu)
  # d/dmu of mean(mu^2/2) = mu / (B*Z).
  np.testing.assert_allclose(g, mu / 4.0, rtol=1e-6)


def test_kl_loss_tolerance_floor_value_and_zero_grad():
  mu = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  presig = jnp.array([[0.0, 0.1], [-0.1, 0.0]])

  def f(m, p):
    return kl.sketch_rnn_kl_loss(m, p, kl_tolerance=0.2)

  (loss, raw) = f(mu, presig)
  assert raw < 0.2
  np.testing.assert_allclose(loss, 0.2, rtol=1e-6)
  g_mu, g_p = jax.grad(lambda m, p: f(m, p)[0], argnums=(0, 1))(mu, presig)
  np.testing.assert_array_equal(g_mu, 0.0)
  np.testing.assert_array_equal(g_p, 0.0)
  # The raw KL still has gradient (useful for logging/diagnostics).
  g_raw = jax.grad(lambda m: f(m, presig)[1])(mu)
  assert np.abs(np.asarray(g_raw)).max() > 0.1


def test_kl_loss_jit_and_vmap():
  mu = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 8))
  presig = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 8))
  f = lambda m, p: kl.sketch_rnn_kl_loss(m, p, kl_tolerance=0.2)  # noqa: E731
  eager = jnp.stack([jnp.stack(f(mu[i], presig[i])) for i in range(3)])
  vm = jnp.stack(jax.vmap(f)(mu, presig), axis=-1)
  jt = jnp.stack(jax.jit(jax.vmap(f))(mu, presig), axis=-1)
  chex.assert_shape(vm, (3, 2))
  chex.assert_trees_all_close(eager, vm, rtol=1e-6)
  chex.assert_trees_all_close(eager, jt, rtol=1e-6)


def _magenta_weight(step):
  w, s, r = HPS["kl_weight"], HPS["kl_weight_start"], HPS["kl_decay_rate"]
  return w - (w - s) * r**step


def test_annealing_weight_endpoints():
  np.testing.assert_allclose(kl.kl_annealing_weight(0, **HPS), 0.01, rtol=1e-7)
  np.testing.assert_allclose(kl.kl_annealing_weight(10_000_000, **HPS), 0.5, rtol=1e-7)
  np.testing.assert_allclose(kl.kl_annealing_weight(1, **HPS), 0.01 + 0.49 * 5e-5, rtol=1e-5)


def test_annealing_weight_matches_magenta_formula():
  steps = np.array([0, 1, 10, 1000, 20_000, 100_000, 500_000])
  got = kl.kl_annealing_weight(jnp.asarray(steps, jnp.int32), **HPS)
  chex.assert_shape(got, (7,))
  np.testing.assert_allclose(got, [_magenta_weight(int(s)) for s in steps], rtol=1e-6)
  assert np.all(np.diff(np.asarray(got)) > 0)


def test_annealing_weight_under_jit_with_int32_step():
  f = jax.jit(lambda s: kl.kl_annealing_weight(s, **HPS))
  for step in (0, 7, 12_345):
    got = f(jnp.int32(step))
    np.testing.assert_allclose(got, _magenta_weight(step), rtol=1e-6)
    chex.assert_trees_all_close(got, kl.kl_annealing_weight(step, **HPS), rtol=1e-6)


def test_annealing_weight_rejects_bad_rate():
  with pytest.raises(ValueError):
    kl.kl_annealing_weight(3, kl_weight=1.0, kl_weight_start=0.0, kl_decay_rate=1.5)
