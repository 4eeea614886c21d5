"""ProGAN networks (zoo.models.progan) and progressive growing (zoo.gan.growth)."""

import itertools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from zoo.errors import ConfigError
from zoo.gan import growth
from zoo.models import progan
from zoo.models.layers import downsample_2x, upsample_2x

# Tiny nets: 16, 16, 16, 8 channels at levels 0..3.
CFG = {"latent_dim": 8, "fmap_base": 128, "fmap_max": 16, "num_channels": 3}
D_KEYS = ("fmap_base", "fmap_max", "num_channels")
B = 4  # one batch size throughout, so eager op kernels compiled by one test serve the others


def _nets(start, stage):
  g = progan.Generator(start=start, stage=stage, **CFG)
  d = progan.Discriminator(start=start, stage=stage, **{k: CFG[k] for k in D_KEYS})
  return g, d


def _random_params(module, seed):
  """Params of ``module`` with every leaf (biases included) drawn from N(0, 0.5^2)."""
  shapes = jax.eval_shape(lambda k: progan.init_variables(module, k), jax.random.key(0))["params"]
  leaves, treedef = jax.tree_util.tree_flatten(shapes)
  rng = np.random.default_rng(seed)
  noisy = [jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype) for x in leaves]
  return jax.tree_util.tree_unflatten(treedef, noisy)


def _apply(module, params, *args):
  # Eager on purpose: op-by-op kernels are cached across stages, while jitting every
  # network would compile each one whole (slower on a CPU).
  return module.apply({"params": params}, *args)


def _leaves(tree):
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _n_params(tree):
  return sum(x.size for x in jax.tree_util.tree_leaves(tree))


# --------------------------------------------------------------------------
# schedule and channels
# --------------------------------------------------------------------------


def test_resolutions():
  assert progan.resolutions((4, 4), 4) == [(4, 4), (8, 8), (16, 16), (32, 32)]
  assert progan.resolutions((4, 2), 3) == [(4, 2), (8, 4), (16, 8)]
  assert progan.resolutions((8, 4), 6)[-1] == (256, 128)
  assert progan.max_stage((4, 4)) == 6 and progan.max_stage((8, 4)) == 5
  assert progan.validate_resolutions([[4, 2], [8, 4]]) == [(4, 2), (8, 4)]


@pytest.mark.parametrize(
  "schedule",
  [
    [],
    [(4, 4), (8, 4)],  # not start * 2**k
    [(4, 4), (16, 16)],  # skips a level
    [(8, 8), (4, 4)],  # shrinks
    [(3, 3), (6, 6)],  # unsupported start
    [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (256, 256), (512, 512)],
    [(4,)],
  ],
)
def test_bad_schedule_raises(schedule):
  with pytest.raises(ConfigError) as e:
    progan.validate_resolutions(schedule)
  assert "\n" not in str(e.value)


def test_bad_config_raises():
  with pytest.raises(ConfigError):
    progan.resolutions((4, 4), 8)  # 512x512
  with pytest.raises(ConfigError):
    progan.resolutions((5, 5), 1)
  with pytest.raises(ConfigError):
    progan.resolutions((4, 4), 0)
  with pytest.raises(ConfigError, match="stage"):
    progan.Generator(stage=7, **CFG).init(jax.random.key(0), jnp.zeros((1, 8)), 1.0)
  with pytest.raises(ConfigError, match="unknown"):
    progan.make_progan({"start": (4, 4), "lr": 1e-3}, stage=0)
  for bad in ({"fmap_max": 0}, {"latent_dim": 2.5}, {"mbstd_group_size": -1}, {"start": (6, 6)}):
    with pytest.raises(ConfigError):
      progan.make_progan(bad, stage=0)
  with pytest.raises(ConfigError, match="stage"):
    progan.make_progan({"start": (8, 4)}, stage=6)  # 512x256
  g, d = progan.make_progan({"start": [4, 2], **CFG}, stage=2)
  assert g.resolution == d.resolution == (16, 8) and d.fmap_max == 16
  g, d = progan.make_progan(ml_collections.ConfigDict({"start": (4, 2), **CFG}), stage=1)
  assert g.resolution == (8, 4) and g.latent_dim == 8 and d.mbstd_group_size == 4


def test_discriminator_widths_apart_from_the_generator():
  """``d_fmap_base`` / ``d_fmap_max`` widen D alone; 0 leaves it at G's widths."""
  g, d = progan.make_progan({**CFG, "d_fmap_base": 4 * CFG["fmap_base"], "d_fmap_max": 64}, 2)
  assert (g.fmap_base, g.fmap_max) == (CFG["fmap_base"], CFG["fmap_max"])
  assert (d.fmap_base, d.fmap_max) == (4 * CFG["fmap_base"], 64)
  dp = progan.init_variables(d, jax.random.key(0))["params"]
  gp = progan.init_variables(g, jax.random.key(0))["params"]
  assert dp["block_16x16"]["conv0"]["kernel"].shape[-1] == 64  # min(512 // 8, 64)
  assert gp["block_16x16"]["conv0"]["kernel"].shape[-1] == 16  # min(128 // 8, 16)
  _, d0 = progan.make_progan({**CFG, "d_fmap_base": 0, "d_fmap_max": 0}, 2)
  assert (d0.fmap_base, d0.fmap_max) == (CFG["fmap_base"], CFG["fmap_max"])
  for bad in (-1, 2.0, True):
    with pytest.raises(ConfigError, match="d_fmap_base"):
      progan.make_progan({**CFG, "d_fmap_base": bad}, 0)


def test_channels_match_reference():
  nf = [progan.channels_at(k, fmap_base=8192, fmap_max=512) for k in range(-1, 7)]
  assert nf == [512, 512, 512, 512, 512, 256, 128, 64]  # 4x4 .. 256x256 after the -1 entry
  assert progan.channels_at(3, fmap_base=128, fmap_max=16) == 8


# --------------------------------------------------------------------------
# shapes and parameter names
# --------------------------------------------------------------------------


@pytest.mark.parametrize("start", [(4, 4), (4, 2)])
def test_shapes_names_and_growth_of_param_count(start):
  counts = []
  z = jax.random.normal(jax.random.key(0), (B, CFG["latent_dim"]))
  for stage in range(4):
    g, d = _nets(start, stage)
    gp, dp = _random_params(g, 1), _random_params(d, 2)
    if stage == 1 and start == (4, 4):
      real = progan.init_variables(g, jax.random.key(0))["params"]
      chex.assert_trees_all_equal_shapes_and_dtypes(real, gp)
      assert not np.any(real["block_8x8"]["conv0"]["bias"])  # biases start at zero
    h, w = progan.resolution_at(start, stage)
    img = _apply(g, gp, z, jnp.float32(0.5))
    chex.assert_shape(img, (B, h, w, 3))
    chex.assert_type(img, jnp.float32)
    score = _apply(d, dp, img, jnp.float32(0.5))
    chex.assert_shape(score, (B,))
    chex.assert_type(score, jnp.float32)

    names = [progan.resolution_name(progan.resolution_at(start, k)) for k in range(stage + 1)]
    rgb = names[-2:] if stage else names
    assert set(gp) == {f"block_{n}" for n in names} | {f"to_rgb_{n}" for n in rgb}
    assert set(dp) == {f"block_{n}" for n in names} | {f"from_rgb_{n}" for n in rgb}
    chex.assert_shape(gp[f"to_rgb_{names[-1]}"]["kernel"], (1, 1, g._nf(stage), 3))
    counts.append(_n_params(gp) + _n_params(dp))
  assert all(a < b for a, b in itertools.pairwise(counts)), counts


def test_minibatch_stddev_any_batch_size():
  _, d = _nets((4, 4), 0)  # stage 0: few ops to compile per new batch shape
  dp = _random_params(d, 0)

  def scores(b, scale_example=None):
    x = jax.random.normal(jax.random.key(b), (b, 4, 4, 3))
    if scale_example is not None:
      x = x.at[scale_example].multiply(3.0)
    s = _apply(d, dp, x, 1.0)
    chex.assert_shape(s, (b,))
    chex.assert_tree_all_finite(s)
    return np.asarray(s)

  scores(1)
  # B=6: the group 4 does not divide it, so one group spans the whole batch.
  assert abs(scores(6)[0] - scores(6, 5)[0]) > 1e-4
  # B=8: strided groups {0,2,4,6} and {1,3,5,7}; example 0 sees 2 but not 1.
  assert scores(8)[0] == scores(8, 1)[0]
  assert abs(scores(8)[0] - scores(8, 2)[0]) > 1e-4


# --------------------------------------------------------------------------
# growth exactness
# --------------------------------------------------------------------------


def _check_growth(start, stage, g_old, d_old, seed):
  """Grow stage -> stage+1 with a fresh random init; check leaves and fade-in outputs."""
  g0, d0 = _nets(start, stage)
  g1, d1 = _nets(start, stage + 1)
  g_fresh, d_fresh = _random_params(g1, seed), _random_params(d1, seed + 1)
  g_new = growth.copy_matching(g_old, g_fresh)
  d_new = growth.copy_matching(d_old, d_fresh)

  # Tree surgery: old leaves bit-identical, only the two-levels-down RGB layers dropped.
  dropped = progan.dropped_rgb_layers(start, stage)
  for old, new, fresh, net in ((g_old, g_new, g_fresh, "g"), (d_old, d_new, d_fresh, "d")):
    chex.assert_trees_all_equal_structs(new, fresh)
    lo, ln = _leaves(old), _leaves(new)
    for path, x in lo.items():
      if path in ln:
        assert np.array_equal(np.asarray(x), np.asarray(ln[path])), path
    gone = {p.split("'")[1] for p in growth.dropped_leaves(old, new)}
    assert gone == set(dropped[net])
    res = progan.resolution_name(progan.resolution_at(start, stage + 1))
    added = {p.split("'")[1] for p in growth.new_leaves(old, new)}
    assert added == {f"block_{res}", f"{'to' if net == 'g' else 'from'}_rgb_{res}"}

  z = jax.random.normal(jax.random.key(seed), (B, CFG["latent_dim"]))
  want = upsample_2x(_apply(g0, g_old, z, jnp.float32(1.0)), kernel=None)
  got = _apply(g1, g_new, z, jnp.float32(0.0))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # The test can fail: the new layers matter at alpha=1, the copied ones at alpha=0.
  assert np.abs(_apply(g1, g_new, z, jnp.float32(1.0)) - want).max() > 1e-2
  assert np.abs(_apply(g1, g_fresh, z, jnp.float32(0.0)) - want).max() > 1e-2

  h, w = progan.resolution_at(start, stage + 1)
  x = jax.random.normal(jax.random.key(seed + 7), (B, h, w, 3))
  want_d = _apply(d0, d_old, downsample_2x(x, kernel=None), jnp.float32(1.0))
  got_d = _apply(d1, d_new, x, jnp.float32(0.0))
  np.testing.assert_allclose(got_d, want_d, rtol=1e-6, atol=1e-6)
  assert np.abs(_apply(d1, d_new, x, jnp.float32(1.0)) - want_d).max() > 1e-3
  assert np.abs(_apply(d1, d_fresh, x, jnp.float32(0.0)) - want_d).max() > 1e-3
  return g_new, d_new


@pytest.mark.parametrize("start,stage", [((4, 4), 0), ((4, 2), 1)])
def test_growth_preserves_function_across_two_growths(start, stage):
  g, d = _nets(start, stage)
  gp, dp = _random_params(g, 10), _random_params(d, 11)
  gp, dp = _check_growth(start, stage, gp, dp, seed=20)
  _check_growth(start, stage + 1, gp, dp, seed=30)


def test_copy_matching_rejects_shape_or_dtype_change():
  old = {"a": {"k": jnp.zeros(2)}, "b": jnp.zeros(())}
  with pytest.raises(ValueError, match=r"\['a'\]\['k'\]"):
    growth.copy_matching(old, {"a": {"k": jnp.zeros(3)}, "b": jnp.zeros(())})
  with pytest.raises(ValueError, match=r"\['b'\]"):
    growth.copy_matching(old, {"a": {"k": jnp.zeros(2)}, "b": jnp.zeros((), jnp.int32)})


# --------------------------------------------------------------------------
# grow_state with Adam
# --------------------------------------------------------------------------


def _train_state(stage, tx, seed, steps):
  g, d = _nets((4, 4), stage)
  state = {"rng": jax.random.key_data(jax.random.key(seed)), "shape_of_stage": jnp.zeros(stage)}
  for name, net in (("g", g), ("d", d)):
    params = _random_params(net, seed + len(name))
    opt = tx.init(params)
    for i in range(steps):  # a few updates so moments and count are non-trivial
      grads = jax.tree.map(lambda p, c=0.1 * (i + 1): p + c, params)
      _, opt = tx.update(grads, opt, params)
    state[name] = {"params": params, "opt_state": opt}
  state["g_ema"] = jax.tree.map(lambda p: p * 0.5, state["g"]["params"])
  return state


@pytest.mark.parametrize("reset", [True, False])
def test_grow_state_with_adam(reset):
  tx = optax.adam(1e-3)
  old = _train_state(0, tx, seed=1, steps=2)
  fresh = _train_state(1, tx, seed=2, steps=0)
  new = growth.grow_state(old, fresh, reset_optimizer=reset)
  chex.assert_trees_all_equal_structs(new, fresh)

  assert new["rng"] is old["rng"]  # same structure: carried
  assert new["shape_of_stage"] is fresh["shape_of_stage"]  # shape changed: fresh
  for net in ("g", "d"):
    p_old, p_new = _leaves(old[net]["params"]), _leaves(new[net]["params"])
    assert set(p_old) <= set(p_new)  # stage 0 -> 1 drops nothing
    for path in p_old:
      assert np.array_equal(p_old[path], p_new[path])
    adam_old, adam_new, adam_fresh = (s[net]["opt_state"][0] for s in (old, new, fresh))
    if reset:
      chex.assert_trees_all_equal(adam_new, adam_fresh)
      assert int(adam_new.count) == 0
    else:
      assert int(adam_new.count) == 2
      for moment in ("mu", "nu"):
        m_old = _leaves(getattr(adam_old, moment))
        for path, x in _leaves(getattr(adam_new, moment)).items():
          if path in m_old:
            assert np.array_equal(x, m_old[path]) and np.abs(x).max() > 0, path
          else:
            assert not np.any(x), path
    # The grown optimizer state drives an update of the grown params.
    grads = jax.tree.map(jnp.ones_like, new[net]["params"])
    updates, _ = tx.update(grads, new[net]["opt_state"], new[net]["params"])
    chex.assert_tree_all_finite(updates)
  g_ema_old = _leaves(old["g_ema"])
  for path, x in _leaves(new["g_ema"]).items():
    ref = g_ema_old.get(path, _leaves(fresh["g_ema"])[path])
    assert np.array_equal(x, ref), path


def test_grow_state_requires_matching_layout():
  tx = optax.adam(1e-3)
  old = _train_state(0, tx, seed=1, steps=0)
  fresh = _train_state(1, tx, seed=2, steps=0)
  del old["g_ema"]
  with pytest.raises(ValueError, match="g_ema"):
    growth.grow_state(old, fresh, reset_optimizer=True)


# --------------------------------------------------------------------------
# jit, fade-in linearity, gradients
# --------------------------------------------------------------------------


def test_jit_fade_and_gradients():
  g, d = _nets((4, 2), 1)
  gp, dp = _random_params(g, 3), _random_params(d, 4)
  z = jax.random.normal(jax.random.key(5), (B, CFG["latent_dim"]))
  g_jit, d_jit = jax.jit(g.apply), jax.jit(d.apply)
  imgs = {}
  for a in (0.0, 0.3, 1.0):
    alpha = jnp.float32(a)
    imgs[a] = g_jit({"params": gp}, z, alpha)
    np.testing.assert_allclose(imgs[a], g.apply({"params": gp}, z, alpha), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
      d_jit({"params": dp}, imgs[a], alpha), d.apply({"params": dp}, imgs[a], alpha), rtol=1e-5
    )
  # G's output is linear in alpha (the faded branches do not depend on it).
  np.testing.assert_allclose(imgs[0.3], 0.7 * imgs[0.0] + 0.3 * imgs[1.0], rtol=1e-5, atol=1e-5)
  assert np.abs(imgs[0.0] - imgs[1.0]).max() > 1e-2

  def loss(gp, dp, alpha):
    return jnp.mean(d.apply({"params": dp}, g.apply({"params": gp}, z, alpha), alpha))

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(gp, dp, jnp.float32(0.5))
  chex.assert_tree_all_finite(grads)
  # Every layer (both RGB branches of the fade included) receives gradient.
  for path, x in {**_leaves(grads[0]), **_leaves(grads[1])}.items():
    assert np.abs(x).max() > 0, path
