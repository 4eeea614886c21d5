"""Text-conditional DCGAN (Reed et al. 2016) networks and minibatch discrimination."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.models import dcgan_cls as M
from zoo.models.layers import MinibatchDiscrimination

TEXT_DIM = 12
BATCH = 4
BS = ("batch_stats",)


def _key(i):
  # 'rbg' keys: XLA compiles them much faster than threefry on CPU.
  return jax.random.key(i, impl="rbg")


def _small(resolution, minibatch_kernels=0, conditioning="concat"):
  cfg = dict(
    conditioning=conditioning,
    resolution=resolution,
    ngf=8,
    ndf=8,
    latent_dim=10,
    proj_dim=6,
    minibatch_kernels=minibatch_kernels,
    num_channels=3,
  )
  return M.make_dcgan_cls(cfg)


def _inputs(resolution, seed=0, batch=BATCH):
  rng = np.random.default_rng(seed)
  z = jnp.asarray(rng.standard_normal((batch, 10)), jnp.float32)
  emb = jnp.asarray(rng.standard_normal((batch, TEXT_DIM)), jnp.float32)
  x = jnp.asarray(rng.uniform(-1.0, 1.0, (batch, resolution, resolution, 3)), jnp.float32)
  return z, emb, x


def _np_variables(g, d, seed=0):
  """Variables of the shapes ``init_variables`` gives, drawn with numpy.

  XLA on CPU compiles every random-number site separately (slowly), so most
  tests skip the real initialisation. Kernels get He-like ``1/sqrt(fan_in)``
  scales (healthier activations than DCGAN's 0.02 in eval mode), BN scales
  ``1 + N(0, 0.02)``, biases 0, running mean 0 / variance 1.
  """
  shapes = jax.eval_shape(lambda k: M.init_variables(g, d, k, text_dim=TEXT_DIM), _key(0))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    names = [getattr(p, "key", None) for p in path]
    shape, kind = leaf.shape, names[-1]
    if "batch_stats" in names:
      v = np.zeros(shape) if kind == "mean" else np.ones(shape)
    elif kind == "kernel":
      v = rng.standard_normal(shape) / math.sqrt(math.prod(shape[:-1]))
    elif kind == "scale":
      v = 1.0 + 0.02 * rng.standard_normal(shape)
    else:
      v = np.zeros(shape)
    return jnp.asarray(v, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _jit_apply(module):
  # Whole-network compiles are much cheaper on CPU than eager op-by-op dispatch.
  static = ("train", "features", "mutable", "capture_intermediates")
  return jax.jit(module.apply, static_argnames=static)


@functools.lru_cache(maxsize=None)
def _nets(res):
  g, d = _small(res)
  g_vars, d_vars = _np_variables(g, d)
  return res, _jit_apply(g), _jit_apply(d), g_vars, d_vars


# --------------------------------------------------------------------------
# layout helpers and config
# --------------------------------------------------------------------------


def test_channels_per_resolution():
  assert M.generator_channels(64, 64) == [512, 256, 128, 64]
  assert M.discriminator_channels(64, 64) == [64, 128, 256, 512]
  assert M.generator_channels(32, 8) == [64, 32, 16]
  assert M.discriminator_channels(32, 8) == [16, 32, 64]
  assert M.generator_channels(128, 8) == [64, 32, 16, 8, 8]
  assert M.discriminator_channels(128, 8) == [8, 8, 16, 32, 64]
  assert [M.num_resamplings(r) for r in (32, 64, 128)] == [3, 4, 5]


@pytest.mark.parametrize("res", [48, 16, 256, 0, "64", True])
def test_bad_resolution_is_config_error(res):
  with pytest.raises(ConfigError) as e:
    M.make_dcgan_cls({"resolution": res})
  assert "\n" not in str(e.value)
  with pytest.raises(ConfigError):
    M.num_resamplings(res)


def test_bad_resolution_on_module_call():
  g = M.Generator(resolution=48, ngf=4, latent_dim=3)
  with pytest.raises(ConfigError):
    jax.eval_shape(lambda: g.init(_key(0), jnp.zeros((1, 3)), jnp.zeros((1, 5)), train=False))


@pytest.mark.parametrize(
  "cfg",
  [
    {"ngf": 0},
    {"ndf": -1},
    {"latent_dim": 2.5},
    {"minibatch_kernels": -1},
    {"bogus": 1},
    {"conditioning": "sum"},
  ],
)
def test_bad_config_values(cfg):
  with pytest.raises(ConfigError) as e:
    M.make_dcgan_cls(cfg)
  assert "\n" not in str(e.value)


def test_make_dcgan_cls_defaults_and_keys():
  g, d = M.make_dcgan_cls({})
  assert (g.resolution, g.ngf, g.latent_dim, g.proj_dim, g.num_channels) == (64, 64, 100, 128, 3)
  assert (d.resolution, d.ndf, d.proj_dim, d.minibatch_kernels) == (64, 64, 128, 0)
  g, d = M.make_dcgan_cls(
    {"resolution": 128, "ngf": 16, "ndf": 32, "minibatch_kernels": 7, "num_channels": 1}
  )
  assert (g.resolution, g.ngf, g.num_channels) == (128, 16, 1)
  assert (d.resolution, d.ndf, d.minibatch_kernels, d.num_channels) == (128, 32, 7, 1)


def test_128_shapes_abstract():
  g, d = _small(128)
  z, emb, x = (jax.ShapeDtypeStruct(s.shape, s.dtype) for s in _inputs(128, batch=2))
  gv, dv = jax.eval_shape(lambda k: M.init_variables(g, d, k, text_dim=TEXT_DIM), _key(0))
  out = jax.eval_shape(lambda v, z, e: g.apply(v, z, e, train=False), gv, z, emb)
  assert out.shape == (2, 128, 128, 3)
  logits = jax.eval_shape(lambda v, x, e: d.apply(v, x, e, train=False), dv, x, emb)
  assert logits.shape == (2,)


# --------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------


def test_init_variables():
  g, d = _small(32)
  g_vars, d_vars = jax.jit(lambda k: M.init_variables(g, d, k, text_dim=TEXT_DIM))(_key(1))
  for v in (g_vars, d_vars):
    assert set(v) == {"params", "batch_stats"}
  gp, dp = g_vars["params"], d_vars["params"]
  chans = M.generator_channels(32, 8)
  assert gp["project"]["kernel"].shape == (10 + 6, 16 * chans[0])
  assert "bias" not in gp["project"] and "bias" not in gp["to_rgb"]  # bias-free convs
  assert gp["text_proj"]["kernel"].shape == (TEXT_DIM, 6)
  g_layers = "text_proj project project_bn deconv1 deconv1_bn deconv2 deconv2_bn to_rgb"
  assert set(gp) == set(g_layers.split())
  d_layers = "conv0 conv1 conv1_bn conv2 conv2_bn text_proj joint joint_bn score"
  assert set(dp) == set(d_layers.split())  # no BN on D's first layer
  assert dp["joint"]["kernel"].shape == (1, 1, 8 * 8 + 6, 8 * 8)
  assert dp["score"]["kernel"].shape == (4, 4, 8 * 8, 1)
  # DCGAN init: kernels N(0, 0.02), BN scales N(1, 0.02), text projection U(+-1/sqrt(E))
  np.testing.assert_allclose(np.std(gp["project"]["kernel"]), 0.02, rtol=0.1)
  np.testing.assert_allclose(np.std(dp["conv1"]["kernel"]), 0.02, rtol=0.1)
  np.testing.assert_allclose(np.mean(gp["project_bn"]["scale"]), 1.0, atol=0.02)
  assert float(np.max(np.abs(gp["text_proj"]["kernel"]))) <= 1 / math.sqrt(TEXT_DIM)
  np.testing.assert_array_equal(gp["text_proj"]["bias"], 0.0)
  np.testing.assert_array_equal(g_vars["batch_stats"]["project_bn"]["mean"], 0.0)
  np.testing.assert_array_equal(d_vars["batch_stats"]["joint_bn"]["var"], 1.0)
  # 64x64 has one more layer on each side
  g64, d64 = _small(64)
  gv, dv = jax.eval_shape(lambda k: M.init_variables(g64, d64, k, text_dim=5), _key(0))
  assert "deconv3" in gv["params"] and "conv3_bn" in dv["params"]
  assert dv["params"]["text_proj"]["kernel"].shape == (5, 6)


@pytest.mark.parametrize("res", [32, pytest.param(64, marks=pytest.mark.slow)])
def test_shapes_range_and_features(res):
  res, g, d, g_vars, d_vars = _nets(res)
  z, emb, x = _inputs(res)
  for train in (False, True):
    out = g(g_vars, z, emb, train=train, mutable=BS if train else False)
    img = out[0] if train else out
    assert img.shape == (BATCH, res, res, 3) and img.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(img))) <= 1.0
    assert float(jnp.std(img)) > 0
  logits = d(d_vars, x, emb, train=False)
  assert logits.shape == (BATCH,) and logits.dtype == jnp.float32
  logits2, feats = d(d_vars, x, emb, train=False, features=True)
  np.testing.assert_allclose(logits2, logits, rtol=1e-6)
  assert feats.shape == (BATCH, 4 * 4 * 8 * 8)
  # feats = LeakyReLU(0.2) of the last image-path BN output
  _, inter = d(d_vars, x, emb, train=False, capture_intermediates=True)
  last_bn = inter["intermediates"][f"conv{len(M.discriminator_channels(res, 8)) - 1}_bn"]
  expected = jax.nn.leaky_relu(last_bn["__call__"][0], 0.2).reshape(BATCH, -1)
  np.testing.assert_allclose(feats, expected, rtol=1e-6, atol=1e-7)


def test_batch_stats_train_vs_eval():
  res, g, d, g_vars, d_vars = _nets(32)
  z, emb, x = _inputs(res)
  # train: batch statistics, running averages updated
  _, g_new = g(g_vars, z, emb, train=True, mutable=BS)
  _, d_new = d(d_vars, x, emb, train=True, mutable=BS)
  for old, new in ((g_vars, g_new), (d_vars, d_new)):
    changed = jax.tree_util.tree_map(
      lambda a, b: bool(jnp.any(a != b)), old["batch_stats"], new["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(changed))
  # momentum 0.9: new mean = 0.1 * batch mean (old mean is 0)
  tp = g_vars["params"]["text_proj"]
  h = jnp.concatenate([z, jax.nn.leaky_relu(emb @ tp["kernel"] + tp["bias"], 0.2)], 1)
  pre = (h @ g_vars["params"]["project"]["kernel"]).reshape(BATCH, 4, 4, -1)
  np.testing.assert_allclose(
    g_new["batch_stats"]["project_bn"]["mean"], 0.1 * pre.mean((0, 1, 2)), rtol=1e-4, atol=1e-6
  )
  # eval: nothing mutable, running averages used -> per-example outputs
  img = g(g_vars, z, emb, train=False)
  img1 = g(g_vars, z[:1], emb[:1], train=False)
  np.testing.assert_allclose(img1[0], img[0], rtol=1e-5, atol=1e-6)
  _, unchanged = d(d_vars, x, emb, train=False, mutable=BS)
  jax.tree_util.tree_map(
    np.testing.assert_array_equal, unchanged, {"batch_stats": d_vars["batch_stats"]}
  )
  # ... and the stored statistics do matter
  lg_old = d(d_vars, x, emb, train=False)
  lg_new = d({"params": d_vars["params"], **d_new}, x, emb, train=False)
  assert not np.allclose(lg_old, lg_new)
  # train mode: outputs depend on the batch
  lg_train, _ = d(d_vars, x, emb, train=True, mutable=BS)
  lg_train1, _ = d(d_vars, x[:2], emb[:2], train=True, mutable=BS)
  assert not np.allclose(lg_train[:2], lg_train1)


def test_text_reaches_outputs():
  res, g, d, g_vars, d_vars = _nets(32)
  z, emb, x = _inputs(res)
  emb2 = emb.at[0].set(-emb[0])
  img_a = g(g_vars, z, emb, train=False)
  img_b = g(g_vars, z, emb2, train=False)
  # only example 0 changes (compared relative to the image scale)
  assert float(jnp.max(jnp.abs(img_a[0] - img_b[0]))) > 1e-2 * float(jnp.max(jnp.abs(img_a[0])))
  np.testing.assert_allclose(img_a[1:], img_b[1:], rtol=1e-5, atol=1e-6)
  lg_a = d(d_vars, x, emb, train=False)
  lg_b = d(d_vars, x, emb2, train=False)
  assert abs(float(lg_a[0] - lg_b[0])) > 1e-6
  np.testing.assert_allclose(lg_a[1:], lg_b[1:], rtol=1e-5, atol=1e-7)
  # image features do not depend on the text
  _, fa = d(d_vars, x, emb, train=False, features=True)
  _, fb = d(d_vars, x, emb2, train=False, features=True)
  np.testing.assert_array_equal(fa, fb)


def test_projection_discriminator_is_bilinear_in_the_text():
  """conditioning='projection': D(x, e) = head(x) + <e W + b, feats(x)>, so the change
  a caption makes is the inner product computed by hand, and D without the text term
  (W = b = 0) ignores the caption."""
  g, d = _small(32, conditioning="projection")
  _, d_vars = _np_variables(g, d, seed=4)
  p = d_vars["params"]
  feat_dim = 4 * 4 * 8 * 8
  assert "text_proj" not in p and p["text_embed"]["kernel"].shape == (TEXT_DIM, feat_dim)
  assert p["joint"]["kernel"].shape == (1, 1, 8 * 8, 8 * 8)  # no text channels
  da = _jit_apply(d)
  _, emb, x = _inputs(32, seed=5)
  emb2 = jnp.asarray(np.random.default_rng(6).standard_normal(emb.shape), jnp.float32)
  rng = np.random.default_rng(7)
  te = {
    "kernel": jnp.asarray(rng.standard_normal((TEXT_DIM, feat_dim)) * 0.05, jnp.float32),
    "bias": jnp.asarray(rng.standard_normal(feat_dim) * 0.05, jnp.float32),
  }
  v = {**d_vars, "params": {**p, "text_embed": te}}
  lg_a, feats = da(v, x, emb, train=False, features=True)
  lg_b, feats_b = da(v, x, emb2, train=False, features=True)
  np.testing.assert_array_equal(feats, feats_b)
  f, k = np.asarray(feats, np.float64), np.asarray(te["kernel"], np.float64)
  want = np.sum(((np.asarray(emb) - np.asarray(emb2)) @ k) * f, axis=1)
  np.testing.assert_allclose(lg_a - lg_b, want, rtol=1e-4, atol=1e-4)
  assert np.abs(want).min() > 1e-2  # the check is not vacuous
  zero = {**d_vars, "params": {**p, "text_embed": jax.tree_util.tree_map(jnp.zeros_like, te)}}
  np.testing.assert_array_equal(da(zero, x, emb, train=False), da(zero, x, emb2, train=False))
  # the unconditional head is the concat D's without the text: same 4x4 VALID score
  head = da(zero, x, emb, train=False)
  _, inter = da(zero, x, emb, train=False, capture_intermediates=True)
  joint = jax.nn.leaky_relu(inter["intermediates"]["joint_bn"]["__call__"][0], 0.2)
  score = jnp.einsum("bhwc,hwc->b", joint, p["score"]["kernel"][..., 0])
  np.testing.assert_allclose(head, score, rtol=1e-4, atol=1e-5)


def test_jit_matches_eager():
  g, d = _small(32)
  g_vars, d_vars = _np_variables(g, d, seed=1)
  z, emb, x = _inputs(32, seed=3)

  def g_step(v, z, emb):
    return g.apply(v, z, emb, train=True, mutable=["batch_stats"])

  def d_step(v, x, emb):
    return d.apply(v, x, emb, train=True, features=True, mutable=["batch_stats"])

  for fn, args in ((g_step, (g_vars, z, emb)), (d_step, (d_vars, x, emb))):
    eager = fn(*args)
    jitted = jax.jit(fn)(*args)
    jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), eager, jitted
    )


def test_discriminator_with_minibatch_discrimination():
  g, d = _small(32, minibatch_kernels=5)
  assert d.minibatch_kernels == 5
  z, emb, x = _inputs(32)
  _, d_vars = _np_variables(g, d, seed=2)
  da = _jit_apply(d)
  p = d_vars["params"]
  assert p["minibatch_disc"]["kernel"].shape == (4 * 4 * 8 * 8, 5 * 5)
  assert p["score"]["kernel"].shape == (4 * 4 * 8 * 8 + 5, 1)
  (logits, feats), _ = da(d_vars, x, emb, train=True, features=True, mutable=BS)
  assert logits.shape == (BATCH,) and feats.shape == (BATCH, 4 * 4 * 8 * 8)
  assert bool(jnp.all(jnp.isfinite(logits)))
  # the batch now influences each logit even in eval mode
  lg = da(d_vars, x, emb, train=False)
  lg1 = da(d_vars, x[:1], emb[:1], train=False)
  assert not np.allclose(lg[0], lg1[0])

  def loss(params):
    out, _ = da(
      {"params": params, "batch_stats": d_vars["batch_stats"]},
      x,
      emb,
      train=True,
      mutable=BS,
    )
    return jnp.mean(out)

  grads = jax.jit(jax.grad(loss))(p)
  gk = grads["minibatch_disc"]["kernel"]
  assert bool(jnp.all(jnp.isfinite(gk))) and float(jnp.max(jnp.abs(gk))) > 0


# --------------------------------------------------------------------------
# minibatch discrimination layer
# --------------------------------------------------------------------------


def test_minibatch_discrimination_hand_computed():
  layer = MinibatchDiscrimination(num_kernels=1, kernel_dim=2)
  t = jnp.array([[1.0, 0.0], [0.0, 2.0]])  # [A=2, B*C=1*2]
  x = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # N=3
  # M_i = x_i @ T: (0, 0), (1, 0), (0, 2); L1 distances d01=1, d02=2, d12=3
  e = math.exp
  expected_o = np.array([[e(-1) + e(-2)], [e(-1) + e(-3)], [e(-2) + e(-3)]])
  out = jax.jit(layer.apply)({"params": {"kernel": t}}, x)
  assert out.shape == (3, 3)
  np.testing.assert_allclose(out[:, :2], x)
  np.testing.assert_allclose(out[:, 2:], expected_o, rtol=1e-6)


def test_minibatch_discrimination_shapes_and_identical_rows():
  layer = MinibatchDiscrimination(num_kernels=7, kernel_dim=3)
  x = jnp.asarray(np.random.default_rng(5).standard_normal((6, 11)), jnp.float32)
  params = jax.jit(layer.init)(_key(6), x)
  assert params["params"]["kernel"].shape == (11, 21)
  np.testing.assert_allclose(np.std(params["params"]["kernel"]), 0.05, rtol=0.3)
  apply = jax.jit(layer.apply)
  out = apply(params, x)
  assert out.shape == (6, 18) and out.dtype == x.dtype
  np.testing.assert_array_equal(out[:, :11], x)
  o = out[:, 11:]
  assert bool(jnp.all((o >= 0) & (o <= 5)))
  same = jnp.tile(x[:1], (5, 1))
  np.testing.assert_allclose(apply(params, same)[:, 11:], 4.0, rtol=1e-6)
  np.testing.assert_allclose(apply(params, x[:1])[:, 11:], 0.0, atol=1e-7)
  with pytest.raises(ValueError):
    layer.apply(params, x[None])


@pytest.mark.parametrize("procs", [-1, True])
def test_bad_render_processes_is_config_error(procs):
  from launch.configs import dcgan_cls as config_lib  # pylint: disable=g-import-not-at-top
  from zoo.tasks import dcgan_cls as task_lib  # pylint: disable=g-import-not-at-top

  c = config_lib.get_config()
  task_lib.validate_config(c)
  c.data.render_processes = procs
  with pytest.raises(ConfigError) as e:
    task_lib.validate_config(c)
  assert "data.render_processes" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("half_life", [-1, "10k", True])
def test_bad_ema_half_life_is_config_error(half_life):
  from launch.configs import dcgan_cls as config_lib  # pylint: disable=g-import-not-at-top
  from zoo.tasks import dcgan_cls as task_lib  # pylint: disable=g-import-not-at-top

  c = config_lib.get_config()
  c.ema.half_life_images = 20_000
  task_lib.validate_config(c)
  with c.unlocked():
    c.ema = {"half_life_images": half_life}
  with pytest.raises(ConfigError) as e:
    task_lib.validate_config(c)
  assert "ema.half_life_images" in str(e.value) and "\n" not in str(e.value)
