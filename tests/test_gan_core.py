"""The adversarial core: state, the alternating step, lazy regularisation, EMA."""

import dataclasses

import flax.linen as nn
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.errors import ConfigError
from zoo.gan import core
from zoo.losses import gan as gan_losses


class _Shift(nn.Module):
  """G(z) = z * s + b: enough to test the plumbing with known gradients."""

  @nn.compact
  def __call__(self, z):
    s = self.param("s", nn.initializers.ones, (1,))
    b = self.param("b", nn.initializers.zeros, (1,))
    return z * s + b


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1, kernel_init=nn.initializers.constant(0.5))(x)[:, 0]


@dataclasses.dataclass(frozen=True)
class _WGAN:
  g: nn.Module
  d: nn.Module

  def generate(self, g_vars, batch, rng, step):
    z = jax.random.normal(rng, batch["x"].shape)
    return self.g.apply(g_vars, z), {}

  def d_loss(self, d_vars, batch, fake, rng, step):
    loss = gan_losses.d_wgan_loss(self.d.apply(d_vars, batch["x"]), self.d.apply(d_vars, fake))
    return jnp.mean(loss), ({"D_wgan": jnp.mean(loss)}, {})

  def g_loss(self, d_vars, batch, fake, rng, step):
    loss = jnp.mean(gan_losses.g_wgan_loss(self.d.apply(d_vars, fake)))
    return loss, ({}, {})


def _setup(lr=0.1, ema=False):
  g, d = _Shift(), _Linear()
  tx = optax.sgd(lr)
  gv = g.init(jax.random.key(0), jnp.zeros((2, 1)))
  dv = d.init(jax.random.key(1), jnp.zeros((2, 1)))
  state = core.init_state(gv, dv, tx_g=tx, tx_d=tx, ema=ema)
  return _WGAN(g, d), tx, state


def _batch(n=8):
  return {"x": jnp.full((n, 1), 3.0)}


def test_one_step_matches_hand_gradients():
  obj, tx, state = _setup()
  rng = jax.random.key(5)
  new, m = core.train_step(state, _batch(), rng, jnp.int32(0), objective=obj, tx_g=tx, tx_d=tx)
  # D(x) = 0.5 x + 0: dL_D/dw = mean(fake) - mean(real), dL_D/db = 0.
  z = jax.random.normal(rng, (8, 1))
  fake = z  # s = 1, b = 0
  w_grad = float(jnp.mean(fake) - 3.0)
  np.testing.assert_allclose(new["d"]["params"]["Dense_0"]["kernel"], 0.5 - 0.1 * w_grad, rtol=1e-6)
  # G against the updated D: L_G = -mean(w' (z s + b)) -> dL/db = -w', dL/ds = -w' mean(z).
  w_new = 0.5 - 0.1 * w_grad
  np.testing.assert_allclose(new["g"]["params"]["b"], 0.1 * w_new, rtol=1e-6)
  np.testing.assert_allclose(new["g"]["params"]["s"], 1 + 0.1 * w_new * jnp.mean(z), rtol=1e-5)
  assert set(m) >= {"loss", "D", "G", "D_grad_norm", "G_grad_norm", "D_wgan"}
  np.testing.assert_allclose(m["loss"], m["G"])


def test_n_critic_updates_d_n_times():
  obj, tx, state = _setup()
  counted = {}
  for n in (1, 3):
    cfg = core.StepConfig(n_critic=n)
    new, _ = core.train_step(
      state, _batch(), jax.random.key(1), jnp.int32(0), objective=obj, tx_g=tx, tx_d=tx, config=cfg
    )
    counted[n] = float(new["d"]["params"]["Dense_0"]["bias"][0])
  # With b_D's gradient 0 under WGAN the bias stays; the kernel moves once per critic step.
  assert counted[1] == counted[3] == 0.0
  adam = optax.adam(1.0)
  state = core.init_state(
    {"params": state["g"]["params"]}, {"params": state["d"]["params"]}, tx_g=adam, tx_d=adam
  )
  for n in (1, 3):
    new, _ = core.train_step(
      state,
      _batch(),
      jax.random.key(1),
      jnp.int32(0),
      objective=obj,
      tx_g=adam,
      tx_d=adam,
      config=core.StepConfig(n_critic=n),
    )
    assert int(new["d"]["opt_state"][0].count) == n
    assert int(new["g"]["opt_state"][0].count) == 1


def test_nonfinite_loss_is_reported_as_nan_loss():
  obj, tx, state = _setup()
  batch = {"x": jnp.full((8, 1), jnp.inf)}
  _, m = core.train_step(
    state, batch, jax.random.key(0), jnp.int32(0), objective=obj, tx_g=tx, tx_d=tx
  )
  assert np.isnan(float(m["loss"]))


def _lazy_step(obj, tx, reg, pattern=None, interval=4):
  """``jit((state, step) -> train_step(...))`` with ``reg`` every ``interval`` D updates,
  decided in the program (``pattern=None``) or fixed when compiling."""
  return jax.jit(
    lambda s, st: core.train_step(
      s,
      _batch(),
      jax.random.key(0),
      st,
      objective=obj,
      tx_g=tx,
      tx_d=tx,
      config=core.StepConfig(reg_interval=interval),
      d_regularizer=reg,
      regularize=pattern,
    )
  )


def test_lazy_regulariser_applied_every_k_steps_and_scaled():
  obj, tx, state = _setup()
  calls = []

  def reg(d_vars, batch, fake, rng, step):
    w = d_vars["params"]["Dense_0"]["kernel"]
    calls.append(1)
    return jnp.sum(w**2), {"reg_raw": jnp.sum(w**2)}

  cfg = core.StepConfig(reg_interval=4)
  step_fn = _lazy_step(obj, tx, reg)
  plain = jax.jit(
    lambda s, st: core.train_step(
      s, _batch(), jax.random.key(0), st, objective=obj, tx_g=tx, tx_d=tx
    )
  )
  # The same step compiled per pattern (what the loop does): only the taken branch.
  static = {pattern: _lazy_step(obj, tx, reg, pattern) for pattern in ((True,), (False,))}
  for step in range(5):
    new, m = step_fn(state, jnp.int32(step))
    ref, _ = plain(state, jnp.int32(step))
    pattern = core.regularization_pattern(step, cfg)
    assert pattern == (step % 4 == 0,)
    s_new, s_m = static[pattern](state, jnp.int32(step))
    chex.assert_trees_all_close(s_new, new, rtol=1e-6)
    assert set(s_m) == set(m) and all(np.allclose(s_m[k], m[k], rtol=1e-6) for k in m)
    dw = new["d"]["params"]["Dense_0"]["kernel"] - ref["d"]["params"]["Dense_0"]["kernel"]
    if step % 4 == 0:
      # 4 * d(w^2)/dw = 8 w = 4.0 at w = 0.5, times -lr.
      np.testing.assert_allclose(dw, -0.1 * 4 * 2 * 0.5, rtol=1e-5)
      np.testing.assert_allclose(m["D_reg"], 4 * 0.25, rtol=1e-6)
      np.testing.assert_allclose(m["reg_raw"], 0.25, rtol=1e-6)
    else:
      np.testing.assert_allclose(dw, 0.0, atol=1e-7)
      assert float(m["D_reg"]) == 0.0


def test_a_step_compiled_without_the_regulariser_does_none_of_its_work():
  obj, tx, state = _setup()

  def reg(d_vars, batch, fake, rng, step):  # a gradient of a gradient, as R1
    x = batch["x"]
    f = lambda x: jnp.sum(jnp.tanh(x @ d_vars["params"]["Dense_0"]["kernel"]) ** 2)  # noqa: E731
    return jnp.sum(jax.grad(f)(x) ** 2), {}

  def flops(pattern):
    fn = _lazy_step(obj, tx, reg, pattern)
    cost = fn.lower(state, jnp.int32(1)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"]

  assert flops((False,)) < flops((True,))


def test_regularization_pattern():
  assert core.regularization_pattern(5, core.StepConfig(reg_interval=1)) is None
  assert core.regularization_pattern(8, core.StepConfig(reg_interval=4)) == (True,)
  assert core.regularization_pattern(9, core.StepConfig(reg_interval=4)) == (False,)
  # n_critic D updates per step: update number step * n_critic + k.
  cfg = core.StepConfig(n_critic=3, reg_interval=4)
  assert [core.regularization_pattern(s, cfg) for s in range(4)] == [
    (True, False, False),
    (False, True, False),
    (False, False, True),
    (False, False, False),
  ]
  obj, tx, state = _setup()
  with pytest.raises(ValueError, match="n_critic"):
    core.train_step(
      state, _batch(), jax.random.key(0), 0, objective=obj, tx_g=tx, tx_d=tx, regularize=(True,) * 2
    )


def test_ema_half_life_and_update():
  beta = core.ema_beta(batch_size=32, half_life_images=10_000)
  assert beta == pytest.approx(0.5 ** (32 / 10_000))
  # After half_life / batch steps toward a constant target, half of the gap remains.
  ema, target = jnp.zeros(()), jnp.ones(())
  for _ in range(10_000 // 32):
    ema = core.ema_update(ema, target, beta)
  assert float(1 - ema) == pytest.approx(0.5 ** (312 * 32 / 10_000), rel=1e-4)
  assert core.ema_beta(batch_size=4, half_life_images=0) == 0.0

  obj, tx, state = _setup(ema=True)
  np.testing.assert_array_equal(state["g_ema"]["b"], state["g"]["params"]["b"])
  cfg = core.StepConfig(ema_beta=0.9)
  new, _ = core.train_step(
    state, _batch(), jax.random.key(0), jnp.int32(0), objective=obj, tx_g=tx, tx_d=tx, config=cfg
  )
  np.testing.assert_allclose(new["g_ema"]["b"], 0.1 * new["g"]["params"]["b"], rtol=1e-6)
  v = core.generator_variables(new)
  np.testing.assert_array_equal(v["params"]["b"], new["g_ema"]["b"])
  v = core.generator_variables(new, ema=False)
  np.testing.assert_array_equal(v["params"]["b"], new["g"]["params"]["b"])


class _ShiftWithStats(nn.Module):
  """``_Shift`` that also tracks the running mean of its output (momentum 1/2), as batch
  norm tracks its batch statistics in training mode."""

  @nn.compact
  def __call__(self, z):
    out = _Shift()(z)
    mean = self.variable("batch_stats", "mean", jnp.zeros, ())
    if not self.is_initializing():
      mean.value = 0.5 * mean.value + 0.5 * jnp.mean(out)
    return out


@dataclasses.dataclass(frozen=True)
class _WGANWithStats(_WGAN):
  def generate(self, g_vars, batch, rng, step):
    z = jax.random.normal(rng, batch["x"].shape)
    return self.g.apply(g_vars, z, mutable=["batch_stats"])


def test_ema_keeps_batch_statistics_of_its_own():
  g, d, tx = _ShiftWithStats(), _Linear(), optax.sgd(0.1)
  gv = g.init(jax.random.key(0), jnp.zeros((2, 1)))
  dv = d.init(jax.random.key(1), jnp.zeros((2, 1)))
  obj = _WGANWithStats(g, d)
  assert "g_ema_collections" not in core.init_state(gv, dv, tx_g=tx, tx_d=tx, ema=True)
  state = core.init_state(gv, dv, tx_g=tx, tx_d=tx, ema=True, ema_collections=True)
  chex.assert_trees_all_equal(state["g_ema_collections"], {"batch_stats": {"mean": 0.0}})
  rng = jax.random.key(3)
  new, _ = core.train_step(
    state,
    _batch(),
    rng,
    jnp.int32(0),
    objective=obj,
    tx_g=tx,
    tx_d=tx,
    config=core.StepConfig(ema_beta=0.9),
  )
  z = jax.random.normal(rng, (8, 1))
  # The raw G's statistics come from its forward pass before the update (s = 1, b = 0) ...
  np.testing.assert_allclose(new["g"]["batch_stats"]["mean"], 0.5 * jnp.mean(z), rtol=1e-6)
  # ... the EMA G's from the EMA params after it, on the same inputs.
  p = new["g"]["params"]["_Shift_0"]
  s_ema, b_ema = p["s"] + (1 - p["s"]) * 0.9, 0.1 * p["b"]
  ema_mean = 0.5 * jnp.mean(z * s_ema + b_ema)
  np.testing.assert_allclose(new["g_ema_collections"]["batch_stats"]["mean"], ema_mean, rtol=1e-5)
  assert abs(float(ema_mean - new["g"]["batch_stats"]["mean"])) > 1e-3
  v = core.generator_variables(new)
  chex.assert_trees_all_equal(v["batch_stats"], new["g_ema_collections"]["batch_stats"])
  chex.assert_trees_all_equal(v["params"], new["g_ema"])
  v = core.generator_variables(new, ema=False)
  chex.assert_trees_all_equal(v["batch_stats"], new["g"]["batch_stats"])


def test_lazy_adam_hyperparameters():
  lr, b1, b2 = core.lazy_adam_hyperparameters(0.002, 0.0, 0.99, interval=16)
  c = 16 / 17
  assert (lr, b1, b2) == pytest.approx((0.002 * c, 0.0, 0.99**c))
  sched, _, _ = core.lazy_adam_hyperparameters(lambda t: 1.0 + t, 0.5, 0.9, interval=4)
  assert sched(1) == pytest.approx(2.0 * 0.8)
  assert core.lazy_adam_hyperparameters(0.1, 0.5, 0.9, interval=1) == (0.1, 0.5, 0.9)


@pytest.mark.parametrize("balanced", [False, True])
def test_matching_aware_d_loss_by_hand(balanced):
  # T2F's D loss with the matching-aware term, against numbers computed here, on a D whose
  # score is sum(x) + w * cond[:, 0] + b (b shifts every score at once).
  from zoo.gan import objectives  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(2, 4, 2, 2, 1)).astype(np.float32)
  cond = rng.normal(size=(4, 3)).astype(np.float32)

  def d_apply(v, x, c, step):
    return x.reshape(x.shape[0], -1).sum(-1) + v["w"] * c[:, 0] + v["b"]

  def loss_of(b, drift):
    obj = objectives.LearnedConditionObjective(
      g_apply=None,
      d_apply=d_apply,
      latent_dim=1,
      losses=objectives.LossConfig(d_loss="wgan", g_loss="wgan", drift=drift),
      mismatch=True,
      balanced_mismatch=balanced,
    )
    d_vars = {"w": jnp.float32(0.7), "b": jnp.float32(b)}
    return obj.d_loss(d_vars, {"image": real}, {"image": fake, "cond": cond}, None, 0)

  loss, (metrics, _) = loss_of(0.3, 1e-3)
  s_real = real.reshape(4, -1).sum(-1) + 0.7 * cond[:, 0] + 0.3
  s_fake = fake.reshape(4, -1).sum(-1) + 0.7 * cond[:, 0] + 0.3
  s_wrong = real.reshape(4, -1).sum(-1) + 0.7 * np.roll(cond, 1, axis=0)[:, 0] + 0.3
  negatives = (s_fake.mean() + s_wrong.mean()) / 2 if balanced else s_fake.mean() + s_wrong.mean()
  want = negatives - s_real.mean() + 1e-3 * (s_real**2).mean()
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["D_wrong_score"], s_wrong.mean(), rtol=1e-5)
  # Without drift, sinking every score by 10 lowers the reference's sum by 10 and leaves
  # the balanced loss where it was.
  shift = float(loss_of(-10.0, 0.0)[0] - loss_of(0.0, 0.0)[0])
  assert shift == pytest.approx(0.0 if balanced else -10.0, abs=1e-4)


def test_matching_aware_logistic_is_gan_cls():
  # With the logistic loss the balanced matching-aware D loss is GAN-CLS (Reed et al.):
  # softplus(-s_real) + softplus(s_fake)/2 + softplus(s_wrong)/2, computed here by hand.
  from zoo.gan import objectives  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(1)
  real, fake = rng.normal(size=(2, 4, 2, 2, 1)).astype(np.float32)
  cond = rng.normal(size=(4, 3)).astype(np.float32)

  def d_apply(v, x, c, step):
    return x.reshape(x.shape[0], -1).sum(-1) * 0.5 + v["w"] * c[:, 0]

  def objective(**kw):
    return objectives.LearnedConditionObjective(
      g_apply=None,
      d_apply=d_apply,
      latent_dim=1,
      losses=objectives.LossConfig(d_loss="logistic", g_loss="nonsaturating"),
      mismatch=True,
      **kw,
    )

  loss, (metrics, _) = objective(balanced_mismatch=True).d_loss(
    {"w": jnp.float32(0.7)}, {"image": real}, {"image": fake, "cond": cond}, None, 0
  )
  s_real = real.reshape(4, -1).sum(-1) * 0.5 + 0.7 * cond[:, 0]
  s_fake = fake.reshape(4, -1).sum(-1) * 0.5 + 0.7 * cond[:, 0]
  s_wrong = real.reshape(4, -1).sum(-1) * 0.5 + 0.7 * np.roll(cond, 1, axis=0)[:, 0]
  softplus = lambda s: np.log1p(np.exp(s))  # noqa: E731
  want = np.mean(softplus(-s_real) + softplus(s_fake) / 2 + softplus(s_wrong) / 2)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["D_wrong_score"], s_wrong.mean(), rtol=1e-5)
  with pytest.raises(ConfigError, match="balanced_mismatch"):
    objective(balanced_mismatch=False)


@pytest.mark.parametrize("pairs", ["near_miss", "other"])
def test_wrong_labels(pairs):
  # Labels are one one-hot per attribute; a near miss changes exactly one attribute with
  # two or more values to another of its values, and over many draws every such attribute
  # and every other value is drawn.
  from zoo.gan import objectives  # pylint: disable=g-import-not-at-top

  sizes = (3, 1, 2, 4)
  rng = np.random.default_rng(0)
  idx = np.stack([rng.integers(0, s, 4000) for s in sizes], 1)
  label = np.concatenate([np.eye(s)[idx[:, i]] for i, s in enumerate(sizes)], 1).astype(np.float32)
  wrong = np.asarray(
    jax.jit(objectives.wrong_labels, static_argnums=(2,), static_argnames="pairs")(
      jax.random.key(1), jnp.asarray(label), sizes, pairs=pairs
    )
  )
  assert wrong.shape == label.shape and wrong.dtype == label.dtype
  if pairs == "other":
    np.testing.assert_array_equal(wrong, np.roll(label, 1, axis=0))
    return
  groups = np.split(wrong, np.cumsum(sizes)[:-1], axis=1)
  assert all(np.all(g.sum(1) == 1) for g in groups)  # still one value per attribute
  new = np.stack([g.argmax(1) for g in groups], 1)
  changed = new != idx
  np.testing.assert_array_equal(changed.sum(1), 1)
  assert not changed[:, 1].any()  # a one-value attribute has no other value
  np.testing.assert_allclose(changed[:, [0, 2, 3]].mean(0), 1 / 3, atol=0.03)
  sel = changed[:, 3] & (idx[:, 3] == 0)  # the 4-value attribute's other values, evenly
  np.testing.assert_allclose(
    np.bincount(new[sel, 3], minlength=4) / sel.sum(), [0] + [1 / 3] * 3, atol=0.08
  )
