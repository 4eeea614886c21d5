"""Tests for zoo.losses.gan."""

import functools
import math

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.losses import gan

LOG2 = math.log(2.0)


def _key(i=0):
  return jax.random.PRNGKey(i)


# --------------------------------------------------------------------------
# hand-computed values
# --------------------------------------------------------------------------


def test_logistic_zero_logits_give_log2():
  z = jnp.zeros((3, 4, 4, 1))
  d = gan.d_logistic_loss(z, z)
  g = gan.g_nonsaturating_loss(z)
  mm = gan.g_minimax_loss(z)
  chex.assert_shape([d, g, mm], (3,))
  np.testing.assert_allclose(d, 2 * LOG2, rtol=1e-6)
  np.testing.assert_allclose(g, LOG2, rtol=1e-6)
  np.testing.assert_allclose(mm, -LOG2, rtol=1e-6)


def test_logistic_matches_bce_and_is_stable():
  real = jnp.array([2.0, -1.0, 100.0])
  fake = jnp.array([-3.0, 0.5, -100.0])
  sig = jax.nn.sigmoid
  expect = -np.log(sig(real[:2])) - np.log(1 - sig(fake[:2]))
  d = gan.d_logistic_loss(real, fake)
  np.testing.assert_allclose(d[:2], expect, rtol=1e-5)
  assert np.isfinite(d).all() and d[2] < 1e-6
  np.testing.assert_allclose(gan.g_nonsaturating_loss(fake)[:2], -np.log(sig(fake[:2])), rtol=1e-5)
  np.testing.assert_allclose(gan.g_minimax_loss(fake)[:2], np.log(1 - sig(fake[:2])), rtol=1e-5)


def test_patch_logits_average_over_patches():
  logits = jnp.stack([jnp.zeros((2, 2, 1)), jnp.full((2, 2, 1), 3.0)])
  g = gan.g_nonsaturating_loss(logits)
  np.testing.assert_allclose(g, [LOG2, np.log1p(np.exp(-3.0))], rtol=1e-6)


def test_hinge_values():
  real = jnp.array([2.0, 0.5, -1.0])
  fake = jnp.array([-2.0, 0.0, 1.0])
  np.testing.assert_allclose(gan.d_hinge_loss(real, fake), [0.0, 1.5, 4.0])
  np.testing.assert_allclose(gan.g_hinge_loss(fake), [2.0, 0.0, -1.0])


def test_lsgan_values():
  real = jnp.array([1.0, 0.0])
  fake = jnp.array([0.0, 1.0])
  np.testing.assert_allclose(gan.d_lsgan_loss(real, fake), [0.0, 1.0])
  np.testing.assert_allclose(gan.g_lsgan_loss(fake), [0.5, 0.0])
  # a=-1, b=1, c=0 coding
  np.testing.assert_allclose(gan.d_lsgan_loss(real, fake, a=-1.0, b=1.0), [0.5, 2.5])
  np.testing.assert_allclose(gan.g_lsgan_loss(fake, c=0.0), [0.0, 0.5])


def test_wgan_values_and_drift():
  real = jnp.array([[1.0, 3.0], [0.0, 0.0]])
  fake = jnp.array([[-1.0, -1.0], [2.0, 2.0]])
  np.testing.assert_allclose(gan.d_wgan_loss(real, fake), [-3.0, 2.0])
  np.testing.assert_allclose(gan.g_wgan_loss(fake), [1.0, -2.0])
  np.testing.assert_allclose(gan.drift_penalty(real), [1e-3 * 5.0, 0.0], rtol=1e-6)
  np.testing.assert_allclose(gan.drift_penalty(real, epsilon_drift=1.0), [5.0, 0.0])


def test_l1_and_feature_matching():
  pred = jnp.array([[1.0, -1.0], [0.0, 0.0]])
  tgt = jnp.array([[0.0, 1.0], [0.5, 0.5]])
  np.testing.assert_allclose(gan.l1_loss(pred, tgt), [1.5, 0.5])
  with pytest.raises(ValueError):
    gan.l1_loss(pred, tgt[:, :1])

  real = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # mean [2, 3]
  fake = jnp.array([[0.0, 0.0], [0.0, 2.0], [3.0, 1.0]])  # mean [1, 1]
  np.testing.assert_allclose(gan.feature_matching_loss(real, fake), 1.0 + 4.0)
  np.testing.assert_allclose(gan.feature_matching_loss(real, fake, reduction="mean"), 2.5)
  # pytree of features: terms add up
  tree_r = {"a": real, "b": [real[:, :1, None]]}
  tree_f = {"a": fake, "b": [fake[:, :1, None]]}
  np.testing.assert_allclose(gan.feature_matching_loss(tree_r, tree_f), 5.0 + 1.0)
  assert gan.feature_matching_loss(real, real) == 0.0
  with pytest.raises(ValueError):
    gan.feature_matching_loss([real], [fake, fake])


def test_gan_cls_and_interpolation():
  z = jnp.zeros((2, 1))
  np.testing.assert_allclose(gan.d_gan_cls_loss(z, z, z), 2 * LOG2, rtol=1e-6)
  sr, sw, sf = jnp.array([1.0]), jnp.array([-2.0]), jnp.array([0.5])
  sp = lambda v: np.log1p(np.exp(v))
  expect = sp(-1.0) + 0.5 * (sp(-2.0) + sp(0.5))
  np.testing.assert_allclose(gan.d_gan_cls_loss(sr, sw, sf), [expect], rtol=1e-6)

  t1, t2 = jnp.ones((2, 3)), jnp.zeros((2, 3))
  np.testing.assert_allclose(gan.gan_int_embeddings(t1, t2), 0.5 * np.ones((2, 3)))
  np.testing.assert_allclose(gan.gan_int_embeddings(t1, t2, beta=0.25), 0.25 * np.ones((2, 3)))
  beta = jnp.array([[0.0], [1.0]])
  np.testing.assert_allclose(gan.gan_int_embeddings(t1, t2, beta=beta), [[0.0] * 3, [1.0] * 3])


def test_conditioning_augmentation_kl():
  mu = jnp.zeros((2, 5))
  lv = jnp.zeros((2, 5))
  np.testing.assert_allclose(gan.conditioning_augmentation_kl(mu, lv), [0.0, 0.0], atol=1e-7)
  mu = jnp.array([[1.0, 0.0]])
  lv = jnp.array([[0.0, math.log(2.0)]])
  # 0.5 * [(1 + 1 - 1 - 0) + (2 + 0 - 1 - log 2)]
  expect = 0.5 * (1.0 + 1.0 - LOG2)
  np.testing.assert_allclose(gan.conditioning_augmentation_kl(mu, lv), [expect], rtol=1e-6)


def test_lazy_regularization():
  for step, want in [(0, True), (1, False), (15, False), (16, True), (32, True)]:
    apply, scale = gan.lazy_regularization(step, interval=16)
    assert bool(apply) == want and scale == 16.0
  apply, _ = jax.jit(lambda s: gan.lazy_regularization(s, interval=4))(jnp.arange(6))
  np.testing.assert_array_equal(apply, [True, False, False, False, True, False])
  assert bool(gan.lazy_regularization(7, interval=1)[0])
  with pytest.raises(ValueError):
    gan.lazy_regularization(0, interval=0)


# --------------------------------------------------------------------------
# gradient penalties
# --------------------------------------------------------------------------


def _quad_critic(w):
  # D(x) = sum(w * x^2) per example; grad_x D = 2 w x.
  return lambda x: jnp.sum(w * jnp.square(x), axis=tuple(range(1, x.ndim)))


def test_gradient_penalty_closed_form():
  kr, kf, kw, ke = jax.random.split(_key(1), 4)
  real = jax.random.normal(kr, (3, 4, 4, 2))
  fake = jax.random.normal(kf, (3, 4, 4, 2))
  w = jax.random.uniform(kw, (4, 4, 2), minval=0.1, maxval=1.0)
  gp = gan.gradient_penalty(_quad_critic(w), real, fake, ke, target=1.0)
  chex.assert_shape(gp, (3,))
  chex.assert_type(gp, jnp.float32)
  # reproduce the interpolation coefficients
  eps = jax.random.uniform(ke, (3, 1, 1, 1))
  x_hat = eps * real + (1 - eps) * fake
  norms = jnp.sqrt(jnp.sum(jnp.square(2 * w * x_hat), axis=(1, 2, 3)))
  np.testing.assert_allclose(gp, (norms - 1.0) ** 2, rtol=1e-4)
  gp2 = gan.gradient_penalty(_quad_critic(w), real, fake, ke, target=2.0)
  np.testing.assert_allclose(gp2, (norms - 2.0) ** 2, rtol=1e-4)
  with pytest.raises(ValueError):
    gan.gradient_penalty(_quad_critic(w), real, fake[:2], ke)


def test_gradient_penalty_matches_finite_differences():
  """Input gradient of a non-linear critic vs central differences (float64)."""
  with jax.enable_x64(True):
    k1, k2, k3, k4 = jax.random.split(_key(2), 4)
    w = jax.random.normal(k1, (6,), dtype=jnp.float64)

    def critic(x):  # [B, 6] -> [B], couples features non-linearly
      return jnp.tanh(x @ w) + 0.3 * jnp.sum(jnp.sin(x) * x, axis=-1)

    real = jax.random.normal(k2, (2, 6), dtype=jnp.float64)
    fake = jax.random.normal(k3, (2, 6), dtype=jnp.float64)
    gp = gan.gradient_penalty(critic, real, fake, k4)
    assert gp.dtype == jnp.float64
    eps = jax.random.uniform(k4, (2, 1), dtype=jnp.float64)
    x_hat = np.asarray(eps * real + (1 - eps) * fake)
    h = 1e-6
    fd = np.zeros_like(x_hat)
    for i in range(6):
      e = np.zeros(6)
      e[i] = h
      fd[:, i] = (np.asarray(critic(x_hat + e)) - np.asarray(critic(x_hat - e))) / (2 * h)
    expect = (np.linalg.norm(fd, axis=1) - 1.0) ** 2
    np.testing.assert_allclose(gp, expect, rtol=1e-6, atol=1e-9)


def test_r1_r2_closed_form():
  kx, kw = jax.random.split(_key(3))
  x = jax.random.normal(kx, (4, 3, 3, 2))
  w = jax.random.uniform(kw, (3, 3, 2))
  r1 = gan.r1_penalty(_quad_critic(w), x, gamma=10.0)
  chex.assert_shape(r1, (4,))
  expect = 5.0 * jnp.sum(jnp.square(2 * w * x), axis=(1, 2, 3))
  np.testing.assert_allclose(r1, expect, rtol=1e-5)
  np.testing.assert_allclose(gan.r2_penalty(_quad_critic(w), x, gamma=10.0), expect, rtol=1e-5)


def _mlp_d(params, x):
  """Tiny MLP discriminator on flattened inputs: [B, ...] -> [B, 1]."""
  h = x.reshape(x.shape[0], -1)
  h = jax.nn.softplus(h @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def _mlp_params(key, d_in, hidden, dtype):
  k1, k2 = jax.random.split(key)
  return {
    "w1": jax.random.normal(k1, (d_in, hidden), dtype) / np.sqrt(d_in),
    "b1": jnp.full((hidden,), 0.1, dtype),
    "w2": jax.random.normal(k2, (hidden, 1), dtype) / np.sqrt(hidden),
    "b2": jnp.zeros((1,), dtype),
  }


def test_r1_param_grad_matches_central_differences():
  """grad of the R1 term w.r.t. D params (grad-of-grad) vs numerical derivative."""
  with jax.enable_x64(True):
    kp, kx = jax.random.split(_key(4))
    params = _mlp_params(kp, 4, 3, jnp.float64)
    x = jax.random.normal(kx, (3, 2, 2, 1), dtype=jnp.float64)

    @jax.jit
    def loss(p):
      return gan.r1_penalty(functools.partial(_mlp_d, p), x, gamma=2.0).mean()

    grads = jax.grad(loss)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g_flat, _ = jax.flatten_util.ravel_pytree(grads)
    h = 1e-6
    num = np.zeros(flat.shape[0])
    for i in range(flat.shape[0]):
      e = np.zeros(flat.shape[0])
      e[i] = h
      num[i] = (float(loss(unravel(flat + e))) - float(loss(unravel(flat - e)))) / (2 * h)
    np.testing.assert_allclose(g_flat, num, rtol=1e-6, atol=1e-9)
    # b2 does not affect the input gradient -> zero gradient
    np.testing.assert_allclose(grads["b2"], 0.0, atol=1e-12)
    assert np.abs(g_flat).max() > 1e-3


def test_gradient_penalty_differentiable_wrt_params():
  with jax.enable_x64(True):
    kp, kr, kf, ke = jax.random.split(_key(5), 4)
    params = _mlp_params(kp, 4, 3, jnp.float64)
    real = jax.random.normal(kr, (2, 4), dtype=jnp.float64)
    fake = jax.random.normal(kf, (2, 4), dtype=jnp.float64)

    @jax.jit
    def loss(p):
      return gan.gradient_penalty(functools.partial(_mlp_d, p), real, fake, ke).mean()

    g = jax.grad(loss)(params)["w1"]
    h = 1e-6
    e = jnp.zeros_like(params["w1"]).at[1, 2].set(h)
    num = (loss({**params, "w1": params["w1"] + e}) - loss({**params, "w1": params["w1"] - e})) / (
      2 * h
    )
    np.testing.assert_allclose(g[1, 2], num, rtol=1e-6)


# --------------------------------------------------------------------------
# transformations, shapes and dtypes
# --------------------------------------------------------------------------

_TWO_ARG = [gan.d_logistic_loss, gan.d_hinge_loss, gan.d_lsgan_loss, gan.d_wgan_loss, gan.l1_loss]
_ONE_ARG = [
  gan.g_nonsaturating_loss,
  gan.g_minimax_loss,
  gan.g_hinge_loss,
  gan.g_lsgan_loss,
  gan.g_wgan_loss,
  gan.drift_penalty,
]


@pytest.mark.parametrize("fn", _TWO_ARG)
def test_two_arg_losses_jit_vmap_shape_dtype(fn):
  a = jax.random.normal(_key(6), (5, 3, 3, 1))
  b = jax.random.normal(_key(7), (5, 3, 3, 1))
  out = fn(a, b)
  chex.assert_shape(out, (5,))
  chex.assert_type(out, jnp.float32)
  np.testing.assert_allclose(jax.jit(fn)(a, b), out, rtol=1e-6)
  # vmap over an extra leading axis == a loop
  sa, sb = jnp.stack([a, b]), jnp.stack([b, a])
  vm = jax.vmap(fn)(sa, sb)
  chex.assert_shape(vm, (2, 5))
  np.testing.assert_allclose(vm, jnp.stack([fn(a, b), fn(b, a)]), rtol=1e-6)
  # per-example independence: loss of a sub-batch equals the sub-batch of losses
  np.testing.assert_allclose(fn(a[1:3], b[1:3]), out[1:3], rtol=1e-6)
  out16 = fn(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
  chex.assert_type(out16, jnp.bfloat16)


@pytest.mark.parametrize("fn", _ONE_ARG)
def test_one_arg_losses_jit_vmap_shape_dtype(fn):
  a = jax.random.normal(_key(8), (4, 2, 2, 1))
  out = fn(a)
  chex.assert_shape(out, (4,))
  chex.assert_type(out, jnp.float32)
  np.testing.assert_allclose(jax.jit(fn)(a), out, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(fn)(a[None]), out[None], rtol=1e-6)
  chex.assert_shape(fn(a[:, 0, 0, 0]), (4,))  # plain [B] logits


def test_penalties_jit_vmap():
  w = jnp.linspace(0.1, 1.0, 8).reshape(2, 2, 2)
  critic = _quad_critic(w)
  real = jax.random.normal(_key(9), (3, 2, 2, 2))
  fake = jax.random.normal(_key(10), (3, 2, 2, 2))
  gp = gan.gradient_penalty(critic, real, fake, _key(11))
  gp_jit = jax.jit(lambda r, f, k: gan.gradient_penalty(critic, r, f, k))(real, fake, _key(11))
  np.testing.assert_allclose(gp_jit, gp, rtol=1e-5)
  r1 = jax.jit(lambda x: gan.r1_penalty(critic, x, gamma=1.0))(real)
  r1_vm = jax.vmap(lambda x: gan.r1_penalty(critic, x, gamma=1.0))(jnp.stack([real, fake]))
  np.testing.assert_allclose(r1_vm[0], r1, rtol=1e-5)
  chex.assert_shape(r1_vm, (2, 3))
  kl = jax.jit(gan.conditioning_augmentation_kl)(real, fake)
  chex.assert_shape(kl, (3,))


def test_batch_mismatch_raises():
  with pytest.raises(ValueError):
    gan.d_logistic_loss(jnp.zeros((2,)), jnp.zeros((3,)))
  with pytest.raises(ValueError):
    gan.d_gan_cls_loss(jnp.zeros((2,)), jnp.zeros((2,)), jnp.zeros((3,)))
  with pytest.raises(ValueError):
    gan.g_hinge_loss(jnp.zeros(()))


def test_acgan_class_loss_is_the_sum_of_per_attribute_cross_entropies():
  logits = jnp.asarray([[2.0, 0.0, 1.0, -1.0, 0.5]])
  labels = jnp.asarray([[1.0, 0.0, 0.0, 0.0, 1.0]])
  # groups (2, 3): -log softmax([2, 0])[0] - log softmax([1, -1, 0.5])[2]
  want = -(2.0 - np.log(np.exp(2.0) + 1.0)) - (
    0.5 - np.log(np.exp(1.0) + np.exp(-1.0) + np.exp(0.5))
  )
  got = gan.acgan_class_loss(logits, labels, group_sizes=(2, 3))
  np.testing.assert_allclose(np.asarray(got), [want], rtol=1e-6)
  one = gan.acgan_class_loss(logits, jnp.asarray([[0.0, 0.0, 0.0, 1.0, 0.0]]))
  np.testing.assert_allclose(np.asarray(one), -jax.nn.log_softmax(logits)[:, 3], rtol=1e-6)
  with pytest.raises(ValueError, match="do not sum"):
    gan.acgan_class_loss(logits, labels, group_sizes=(2, 2))
