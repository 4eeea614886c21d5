"""Tests for zoo.models.layers."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.models import layers as L


def _key(i=0):
  return jax.random.PRNGKey(i)


# --------------------------------------------------------------------------
# equalized learning rate
# --------------------------------------------------------------------------


@pytest.mark.parametrize("lr_mult", [1.0, 0.01])
def test_equalized_dense_effective_std(lr_mult):
  fan_in, out = 256, 128
  layer = L.EqualizedDense(out, lr_multiplier=lr_mult, gain=math.sqrt(2.0))
  params = layer.init(_key(0), jnp.zeros((1, fan_in)))["params"]
  chex.assert_shape(params["kernel"], (fan_in, out))
  np.testing.assert_allclose(np.std(params["kernel"]) * lr_mult, 1.0, rtol=0.03)
  np.testing.assert_allclose(np.mean(params["kernel"]) * lr_mult, 0.0, atol=0.02)
  # applying to the identity reveals the effective weight matrix
  w_eff = layer.apply({"params": params}, jnp.eye(fan_in))
  np.testing.assert_allclose(np.std(w_eff), math.sqrt(2.0) / math.sqrt(fan_in), rtol=0.03)
  np.testing.assert_allclose(
    w_eff, params["kernel"] * math.sqrt(2.0 / fan_in) * lr_mult, rtol=1e-5, atol=1e-7
  )


def test_equalized_dense_bias_and_leading_dims():
  layer = L.EqualizedDense(3, lr_multiplier=0.1, bias_init=1.0, gain=1.0)
  x = jnp.zeros((2, 5, 4))
  params = layer.init(_key(1), x)["params"]
  np.testing.assert_allclose(params["bias"], 10.0)  # stored / lr_mult
  y = layer.apply({"params": params}, x)
  chex.assert_shape(y, (2, 5, 3))
  np.testing.assert_allclose(y, 1.0, rtol=1e-6)  # effective bias
  no_bias = L.EqualizedDense(3, use_bias=False)
  assert "bias" not in no_bias.init(_key(1), x)["params"]


def test_lr_multiplier_scales_stored_param_gradient():
  """Equal effective weights, grad wrt stored params scales by lr_mult."""
  x = jax.random.normal(_key(2), (4, 6))
  target = jax.random.normal(_key(3), (4, 5))
  base = L.EqualizedDense(5, lr_multiplier=1.0)
  slow = L.EqualizedDense(5, lr_multiplier=0.1)
  p1 = base.init(_key(4), x)["params"]
  p1 = {"kernel": p1["kernel"], "bias": jnp.linspace(-1, 1, 5)}
  p2 = jax.tree_util.tree_map(lambda a: a / 0.1, p1)

  def loss(module, p):
    return jnp.mean(jnp.square(module.apply({"params": p}, x) - target))

  np.testing.assert_allclose(loss(base, p1), loss(slow, p2), rtol=1e-5)
  g1 = jax.grad(lambda p: loss(base, p))(p1)
  g2 = jax.grad(lambda p: loss(slow, p))(p2)
  for k in ("kernel", "bias"):
    np.testing.assert_allclose(g2[k], 0.1 * g1[k], rtol=1e-4, atol=1e-7)


def test_equalized_conv_matches_scaled_conv():
  x = jax.random.normal(_key(5), (2, 8, 8, 3))
  layer = L.EqualizedConv(16, kernel_size=3, lr_multiplier=0.5, bias_init=0.25)
  params = layer.init(_key(6), x)["params"]
  chex.assert_shape(params["kernel"], (3, 3, 3, 16))
  np.testing.assert_allclose(np.std(params["kernel"]), 2.0, rtol=0.1)
  y = layer.apply({"params": params}, x)
  chex.assert_shape(y, (2, 8, 8, 16))
  fan_in = 3 * 3 * 3
  w = params["kernel"] * math.sqrt(2.0) / math.sqrt(fan_in) * 0.5
  ref = nn.Conv(16, (3, 3), padding="SAME").apply(
    {"params": {"kernel": w, "bias": params["bias"] * 0.5}}, x
  )
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
  # stride / padding variants
  y2 = L.EqualizedConv(4, kernel_size=(4, 4), strides=2, padding=1).init_with_output(_key(7), x)[0]
  chex.assert_shape(y2, (2, 4, 4, 4))
  y3 = L.EqualizedConv(4, kernel_size=1, padding="VALID").init_with_output(_key(7), x)[0]
  chex.assert_shape(y3, (2, 8, 8, 4))


# --------------------------------------------------------------------------
# normalisation layers
# --------------------------------------------------------------------------


def test_pixel_norm_unit_mean_square():
  x = 5.0 * jax.random.normal(_key(8), (2, 4, 4, 7))
  y = L.pixel_norm(x)
  chex.assert_shape(y, x.shape)
  np.testing.assert_allclose(jnp.mean(jnp.square(y), axis=-1), 1.0, rtol=1e-5)
  z = L.pixel_norm(jax.random.normal(_key(9), (3, 16)))  # latents
  np.testing.assert_allclose(jnp.mean(jnp.square(z), axis=-1), 1.0, rtol=1e-5)
  assert np.all(np.isfinite(L.pixel_norm(jnp.zeros((1, 2, 2, 3)))))


def test_minibatch_stddev_hand_made():
  # B=4, group_size=2 -> M=2 groups {0, 2} and {1, 3} (strided like the reference).
  x = np.zeros((4, 2, 2, 2), np.float32)
  x[0] = 1.0
  x[2] = 3.0  # group 0: values 1 and 3 -> std 1 everywhere
  x[1] = 0.0
  x[3, ..., 0] = 4.0  # group 1: channel 0 std 2, channel 1 std 0 -> mean 1 ... over c
  layer = L.MinibatchStdDev(group_size=2)
  y = layer.apply({}, jnp.asarray(x))
  chex.assert_shape(y, (4, 2, 2, 3))
  np.testing.assert_allclose(y[..., :2], x)
  np.testing.assert_allclose(y[0, ..., 2], 1.0, rtol=1e-5)
  np.testing.assert_allclose(y[2, ..., 2], 1.0, rtol=1e-5)
  # channel 1 std is sqrt(0 + 1e-8) = 1e-4
  np.testing.assert_allclose(y[1, ..., 2], (2.0 + 1e-4) / 2, rtol=1e-5)
  np.testing.assert_allclose(y[3, ..., 2], (2.0 + 1e-4) / 2, rtol=1e-5)

  # two new features: each averages its own channel slice
  y2 = L.MinibatchStdDev(group_size=2, num_new_features=2).apply({}, jnp.asarray(x))
  chex.assert_shape(y2, (4, 2, 2, 4))
  np.testing.assert_allclose(y2[1, 0, 0, 2:], [2.0, 1e-4], rtol=1e-4)


def test_minibatch_stddev_group_size_rules():
  x = jax.random.normal(_key(10), (3, 4, 4, 8))
  # group_size larger than batch -> G = B
  y = L.MinibatchStdDev(group_size=4).apply({}, x)
  expect = jnp.mean(jnp.sqrt(jnp.var(x, axis=0) + 1e-8))
  np.testing.assert_allclose(y[..., -1], expect, rtol=1e-5)
  with pytest.raises(ValueError, match="divisible"):
    L.MinibatchStdDev(group_size=2).apply({}, x)
  with pytest.raises(ValueError, match="num_new_features"):
    L.MinibatchStdDev(group_size=3, num_new_features=3).apply({}, x)


def test_instance_norm():
  x = 3.0 + 2.0 * jax.random.normal(_key(11), (2, 5, 5, 3))
  y = L.instance_norm(x)
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(y, axis=(1, 2)), 1.0, rtol=1e-4)


# --------------------------------------------------------------------------
# blurred resampling
# --------------------------------------------------------------------------


def test_blur_kernel():
  k = L.blur_kernel_2d()
  np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(k, np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
  np.testing.assert_allclose(L.blur_kernel_2d((1, 3, 3, 1)).sum(), 1.0, rtol=1e-6)


def test_constant_image_preserved_by_resampling():
  x = jnp.full((2, 8, 8, 3), 0.7)
  for mode in ("zero", "edge", "reflect"):
    b = L.blur(x, padding_mode=mode)
    u = L.upsample_2x(x, padding_mode=mode)
    d = L.downsample_2x(x, padding_mode=mode)
    ds = L.downsample_2x(x, padding_mode=mode, method="stride")
    chex.assert_shape([b, u, d, ds], [(2, 8, 8, 3), (2, 16, 16, 3), (2, 4, 4, 3), (2, 4, 4, 3)])
    if mode == "zero":  # exact away from the borders
      np.testing.assert_allclose(b[:, 1:-1, 1:-1], 0.7, rtol=1e-6)
      np.testing.assert_allclose(u[:, 1:-1, 1:-1], 0.7, rtol=1e-6)
      np.testing.assert_allclose(d[:, 1:-1, 1:-1], 0.7, rtol=1e-6)
      assert float(b[0, 0, 0, 0]) < 0.7  # zero padding darkens the corner
    else:  # exact everywhere
      for a in (b, u, d, ds):
        np.testing.assert_allclose(a, 0.7, rtol=1e-6)


def test_blur_impulse_and_resampling_values():
  x = np.zeros((1, 5, 5, 2), np.float32)
  x[0, 2, 2, 1] = 16.0
  y = L.blur(jnp.asarray(x))
  np.testing.assert_allclose(y[0, 1:4, 1:4, 1], np.outer([1, 2, 1], [1, 2, 1]), rtol=1e-6)
  np.testing.assert_allclose(y[..., 0], 0.0)
  # no-blur variants are plain nearest / average pooling
  z = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_allclose(L.upsample_2x(z, kernel=None)[0, :2, :2, 0], 0.0)
  np.testing.assert_allclose(L.downsample_2x(z, kernel=None)[0, 0, 0, 0], (0 + 1 + 4 + 5) / 4)
  with pytest.raises(ValueError):
    L.downsample_2x(jnp.zeros((1, 5, 4, 1)))
  with pytest.raises(ValueError):
    L.blur(z, padding_mode="circular")
  # jit works and preserves dtype
  out = jax.jit(L.upsample_2x)(z.astype(jnp.bfloat16))
  chex.assert_type(out, jnp.bfloat16)


@pytest.mark.parametrize("mode", ["zero", "edge", "reflect"])
@pytest.mark.parametrize("taps", [(1, 2, 1), (1, 3, 3, 1)])
def test_blur_equals_the_depthwise_convolution_with_gradients(mode, taps):
  """The separable shifted adds against the 2-D filter as a depthwise convolution of the
  2-D-padded input: values, first and second derivatives (R1 differentiates twice)."""
  k2 = L.blur_kernel_2d(taps)
  kh = k2.shape[0]
  pads = ((0, 0), ((kh - 1) // 2, kh // 2), ((kh - 1) // 2, kh // 2), (0, 0))

  def ref(x):
    xp = jnp.pad(x, pads, mode={"zero": "constant"}.get(mode, mode))
    w = jnp.asarray(np.tile(k2[:, :, None, None], (1, 1, 1, x.shape[-1])))
    return jax.lax.conv_general_dilated(
      xp,
      w,
      (1, 1),
      "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=x.shape[-1],
    )

  def ours(x):
    return L.blur(x, kernel=taps, padding_mode=mode)

  def grad(f):
    return jax.grad(lambda x: jnp.sum(jnp.sin(f(x)) * x))

  def grad_of_grad(f):
    return jax.grad(lambda x: jnp.sum(grad(f)(x) ** 2))

  x = jax.random.normal(jax.random.key(0), (2, 7, 5, 3))
  np.testing.assert_allclose(ours(x), ref(x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grad(ours)(x), grad(ref)(x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad_of_grad(ours)(x), grad_of_grad(ref)(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# StyleGAN modules
# --------------------------------------------------------------------------


def test_adain_output_statistics_equal_style():
  x = 2.0 + 3.0 * jax.random.normal(_key(12), (2, 8, 8, 4))
  w = jax.random.normal(_key(13), (2, 16))
  mod = L.AdaIN()
  variables = mod.init(_key(14), x, w)
  chex.assert_shape(variables["params"]["style"]["kernel"], (16, 8))
  y = mod.apply(variables, x, w)
  chex.assert_shape(y, x.shape)
  style = L.EqualizedDense(8, gain=1.0).apply({"params": variables["params"]["style"]}, w)
  ys, yb = style[:, :4], style[:, 4:]
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2)), yb, atol=1e-4)
  np.testing.assert_allclose(jnp.std(y, axis=(1, 2)), jnp.abs(ys + 1.0), rtol=1e-3, atol=1e-4)
  # zero style -> plain instance norm
  zero = jax.tree_util.tree_map(jnp.zeros_like, variables)
  np.testing.assert_allclose(mod.apply(zero, x, w), L.instance_norm(x), atol=1e-5)
  with pytest.raises(ValueError):
    mod.apply(variables, x, w[:1])


def test_noise_injection():
  x = jax.random.normal(_key(15), (2, 4, 4, 3))
  mod = L.NoiseInjection()
  variables = mod.init({"params": _key(16), "noise": _key(17)}, x)
  np.testing.assert_allclose(variables["params"]["scale"], 0.0)
  y = mod.apply(variables, x, rngs={"noise": _key(18)})
  np.testing.assert_allclose(y, x)  # identity at init
  scale = jnp.array([1.0, 0.0, -2.0])
  v2 = {"params": {"scale": scale}}
  y2 = mod.apply(v2, x, rngs={"noise": _key(18)})
  diff = y2 - x
  assert float(jnp.abs(diff[..., 0]).max()) > 0.1
  np.testing.assert_allclose(diff[..., 1], 0.0)
  np.testing.assert_allclose(diff[..., 2], -2.0 * diff[..., 0], rtol=1e-5, atol=1e-6)
  # explicit noise, shared across channels
  noise = jnp.ones((2, 4, 4, 1))
  np.testing.assert_allclose(
    mod.apply(v2, x, noise) - x, jnp.broadcast_to(scale, x.shape), atol=1e-6
  )
  # gradient reaches the scale
  g = jax.grad(lambda p: jnp.sum(mod.apply({"params": p}, x, noise)))(v2["params"])
  np.testing.assert_allclose(g["scale"], 32.0)


# --------------------------------------------------------------------------
# make_norm
# --------------------------------------------------------------------------


class _NormNet(nn.Module):
  kind: str
  train: bool = True

  @nn.compact
  def __call__(self, x):
    return L.make_norm(
      self.kind, use_running_average=not self.train if self.kind == "batch" else None
    )(x)


def test_make_norm_choices():
  x = 4.0 + 2.0 * jax.random.normal(_key(19), (4, 6, 6, 3))

  # batch norm: batch statistics while training, running stats updated
  v = _NormNet("batch").init(_key(20), x)
  assert set(v) == {"params", "batch_stats"}
  y, upd = _NormNet("batch").apply(v, x, mutable=["batch_stats"])
  np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, rtol=1e-3)
  np.testing.assert_allclose(
    upd["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * jnp.mean(x, axis=(0, 1, 2)), rtol=1e-4
  )
  y_eval = _NormNet("batch", train=False).apply(v, x)  # running stats = (0, 1)
  np.testing.assert_allclose(y_eval, x / jnp.sqrt(1.0 + 1e-5), rtol=1e-5)

  # instance norm: per example and channel, no params by default
  v = _NormNet("instance").init(_key(21), x)
  assert not jax.tree_util.tree_leaves(v)
  y = _NormNet("instance").apply(v, x)
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(jnp.std(y, axis=(1, 2)), 1.0, rtol=1e-3)
  v_aff = L.make_norm("instance", affine=True).init(_key(22), x)
  assert set(v_aff["params"]) == {"scale", "bias"}

  # none: identity
  assert isinstance(L.make_norm("none"), L.Identity)
  np.testing.assert_array_equal(_NormNet("none").apply({}, x), x)

  with pytest.raises(ValueError):
    L.make_norm("group")


@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose_2x_equals_flax_conv_transpose(bias):
  from zoo.models.layers import ConvTranspose2x

  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 6))
  ref = nn.ConvTranspose(
    4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=bias, transpose_kernel=True
  )
  v = ref.init(jax.random.key(1), x)
  if bias:
    v = {"params": {**v["params"], "bias": jnp.arange(4.0)}}
  ours = ConvTranspose2x(4, use_bias=bias)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, v)
  np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)
  g_ref = jax.grad(lambda v, x: jnp.sum(jnp.sin(ref.apply(v, x))), argnums=(0, 1))(v, x)
  g_ours = jax.grad(lambda v, x: jnp.sum(jnp.sin(ours.apply(v, x))), argnums=(0, 1))(v, x)
  for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_ours)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_conv_2x_down_equals_flax_conv():
  from zoo.models.layers import Conv2xDown

  x = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
  ref = nn.Conv(5, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
  v = ref.init(jax.random.key(1), x)
  v = {"params": {**v["params"], "bias": jnp.arange(5.0)}}
  ours = Conv2xDown(5)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, v)
  np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)
  g_ref = jax.grad(lambda v, x: jnp.sum(jnp.sin(ref.apply(v, x))), argnums=(0, 1))(v, x)
  g_ours = jax.grad(lambda v, x: jnp.sum(jnp.sin(ours.apply(v, x))), argnums=(0, 1))(v, x)
  for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_ours)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
