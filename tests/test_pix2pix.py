"""pix2pix: networks, losses, schedule, end-to-end training/resume, test and export modes, CLI."""

import functools
import glob
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from launch.configs import pix2pix as config_lib
from zoo.errors import ConfigError
from zoo.losses import gan as gan_lib
from zoo.losses import pix2pix as p2p_losses
from zoo.models import pix2pix as models
from zoo.tasks import pix2pix as task_lib

from tests.conftest import REPO, xla_flags


def _key(i):
  # 'rbg' keys: XLA compiles them much faster than threefry on CPU.
  return jax.random.key(i, impl="rbg")


def _init(net, x, **kw):
  return jax.jit(lambda x: net.init(_key(0), x, **kw))(x)


# ---------------------------------------------------------------------------
# Networks.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(32, 32), (64, 32)])
def test_unet_shapes(hw):
  g = models.make_generator(height=hw[0], width=hw[1], ngf=8)
  assert g.num_downs == 5
  x = jnp.zeros((2, *hw, 3))
  v = jax.eval_shape(lambda: g.init(jax.random.key(0), x, train=False))
  y, upd = jax.eval_shape(
    lambda v: g.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"]
    ),
    v,
  )
  assert y.shape == (2, *hw, 3) and "batch_stats" in upd
  # Skip connections: the innermost decoder layer sees [skip, up] = 2 x 8ngf channels.
  assert v["params"]["up3"]["kernel"].shape[-1] == 2 * 64
  assert v["params"]["up0"]["kernel"].shape[-2:] == (3, 2 * 8)  # outermost: 3 out, [skip, up] in
  assert "bias" not in v["params"]["down4"] and "down4_norm" not in v["params"]  # innermost


def test_unet_256_parameter_count():
  # Same count as the reference UnetGenerator(3, 3, 8, ngf=64, BatchNorm2d).
  g = models.make_generator(height=256, width=256)
  assert g.num_downs == 8 and models.unet_dropout_levels(8) == [4, 5, 6]
  v = jax.eval_shape(
    lambda: g.init({"params": jax.random.key(0)}, jnp.zeros((1, 256, 256, 3)), train=False)
  )
  assert models.param_count(v["params"]) == 54_413_955
  d = models.make_discriminator(netD="basic")
  vd = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros((1, 256, 256, 6))))
  assert models.param_count(vd["params"]) == 2_768_705
  out = jax.eval_shape(lambda v: d.apply(v, jnp.zeros((1, 256, 256, 6)), train=False), vd)
  assert out.shape == (1, 30, 30, 1)


def test_unet_depth_from_size_and_errors():
  assert models.unet_num_downs(128, 128) == 7
  assert models.unet_num_downs(256, 512) == 8
  assert models.unet_num_downs(64, 32) == 5
  assert models.unet_num_downs(256, 256, 7) == 7
  for hw, n in (((48, 64), 0), ((64, 96), 0), ((100, 100), 3)):
    with pytest.raises(ConfigError) as e:
      models.unet_num_downs(*hw, n)
    assert "\n" not in str(e.value) and "power of two" in str(e.value)
  with pytest.raises(ConfigError):
    models.make_generator(netG="resnet_9blocks", height=64, width=64)


def _num_dropout_layers(g, size, **kw):
  x = jnp.zeros((1, size, size, 3))
  v = jax.eval_shape(lambda: g.init(jax.random.key(0), x, train=False))
  jaxpr = jax.make_jaxpr(
    lambda v: g.apply(v, x, train=False, rngs={"dropout": jax.random.key(1)}, **kw)
  )(v)
  return str(jaxpr).count("random_bits")


def test_dropout_layers_and_switch():
  g256 = models.make_generator(height=256, width=256, ngf=8)
  assert _num_dropout_layers(g256, 256, dropout=True) == 3  # the paper's 3 decoder layers
  assert _num_dropout_layers(g256, 256, dropout=False) == 0
  g0 = models.make_generator(height=256, width=256, ngf=8, use_dropout=False)
  assert _num_dropout_layers(g0, 256, dropout=True) == 0
  # Dropout is a noise source: different keys give different outputs.
  g = models.make_generator(height=64, width=64, ngf=4, norm="instance")
  x = jax.random.normal(jax.random.key(2), (1, 64, 64, 3))
  v = _init(g, x, train=False)
  run = jax.jit(lambda v, k: g.apply(v, x, dropout=True, rngs={"dropout": k}))
  assert not np.allclose(run(v, _key(1)), run(v, _key(2)))


def _receptive_field(net, size):
  x = jnp.zeros((1, size, size, 6))
  v = _init(net, x, train=False)
  out = jax.eval_shape(lambda x: net.apply(v, x, train=False), x)
  ci, cj = out.shape[1] // 2, out.shape[2] // 2
  g = jax.jit(jax.grad(lambda x: net.apply(v, x, train=False)[0, ci, cj, 0]))(
    jax.random.normal(jax.random.key(1), x.shape)
  )
  rows, cols = np.nonzero(np.abs(np.asarray(g[0])).sum(-1))
  return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, out.shape


@pytest.mark.parametrize("net_d,n_layers,rf", [("basic", 3, 70), ("n_layers", 1, 16)])
def test_patchgan_receptive_field(net_d, n_layers, rf):
  assert models.patchgan_receptive_field(n_layers) == rf
  d = models.make_discriminator(netD=net_d, n_layers_D=n_layers, ndf=8, norm="none")
  h, w, shape = _receptive_field(d, 96)
  assert (h, w) == (rf, rf)
  assert shape == (
    1,
    models.patchgan_output_size(96, n_layers),
    models.patchgan_output_size(96, n_layers),
    1,
  )


def test_pixel_discriminator():
  d = models.make_discriminator(netD="pixel", ndf=8, norm="none")
  h, w, shape = _receptive_field(d, 16)
  assert (h, w) == (1, 1) and shape == (1, 16, 16, 1)
  with pytest.raises(ConfigError):
    models.make_discriminator(netD="global")


# ---------------------------------------------------------------------------
# Losses and schedule.
# ---------------------------------------------------------------------------


def _sp(x):
  return math.log1p(math.exp(x))


def _d_objective(real, fake, gan_mode):
  return [jnp.mean(x) for x in p2p_losses.d_loss(real, fake, gan_mode=gan_mode)]


def _g_objective(pred, fake_b, real_b, **kw):
  return [jnp.mean(x) for x in p2p_losses.g_loss(pred, fake_b, real_b, **kw)]


def test_loss_composition_by_hand():
  real = jnp.full((2, 3, 3, 1), 2.0)
  fake = jnp.full((2, 3, 3, 1), -1.0)
  d, dr, df = _d_objective(real, fake, "vanilla")
  assert float(dr) == pytest.approx(_sp(-2.0), rel=1e-6)  # -log sigmoid(2)
  assert float(df) == pytest.approx(_sp(-1.0), rel=1e-6)  # -log(1 - sigmoid(-1))
  assert float(d) == pytest.approx(0.5 * (_sp(-2.0) + _sp(-1.0)), rel=1e-6)
  np.testing.assert_allclose(d, 0.5 * gan_lib.d_logistic_loss(real, fake).mean(), rtol=1e-6)

  d, dr, df = _d_objective(jnp.full((1, 2, 2, 1), 0.5), jnp.full((1, 2, 2, 1), 0.25), "lsgan")
  assert (float(dr), float(df), float(d)) == pytest.approx((0.25, 0.0625, 0.15625))

  fake_b = jnp.zeros((1, 4, 4, 3))
  real_b = jnp.full((1, 4, 4, 3), 0.1)
  pred = jnp.full((1, 2, 2, 1), 0.5)
  total, g_gan, g_l1 = _g_objective(pred, fake_b, real_b, gan_mode="vanilla", lambda_l1=100.0)
  assert float(g_gan) == pytest.approx(_sp(-0.5), rel=1e-6)
  assert float(g_l1) == pytest.approx(0.1, rel=1e-5)
  assert float(total) == pytest.approx(_sp(-0.5) + 10.0, rel=1e-5)
  total, g_gan, _ = _g_objective(pred, fake_b, real_b, gan_mode="lsgan", lambda_l1=100.0)
  assert float(g_gan) == pytest.approx(0.25) and float(total) == pytest.approx(10.25, rel=1e-5)


def test_linear_lr_decay_in_steps():
  c = config_lib.get_config()
  c.num_steps, c.n_steps_decay, c.lr = 10, 4, 1.0
  lr = task_lib.learning_rate_schedule(c)
  got = [float(lr(s)) for s in range(10)]
  assert got == pytest.approx([1.0] * 6 + [0.8, 0.6, 0.4, 0.2])
  c.n_steps_decay = -1  # half of num_steps
  assert task_lib.decay_steps(c) == 5
  c.lr_policy = "constant"
  assert float(task_lib.learning_rate_schedule(c)(9)) == 1.0


def test_config_errors_are_one_line():
  for key, value, word in (
    ("netD", "global", "netD"),
    ("gan_mode", "wgan", "gan_mode"),
    ("crop_size", 48, "power of two"),
    ("n_steps_decay", 10**9, "n_steps"),
  ):
    c = config_lib.get_config()
    c[key] = value
    with pytest.raises(ConfigError) as e:
      task_lib.validate_config(c)
    assert "\n" not in str(e.value) and word in str(e.value)
  for variant in ("paper", "facades"):
    task_lib.validate_config(config_lib.get_config(variant))


# ---------------------------------------------------------------------------
# End to end on the embedded edges2faces.
# ---------------------------------------------------------------------------


def tiny_config(**overrides):
  c = config_lib.get_config()
  c.crop_size, c.load_size = 32, 36
  c.ngf = c.ndf = 8
  c.batch_size = 4
  c.num_steps = 2
  c.synthetic_num_train, c.synthetic_num_val, c.synthetic_num_test = 16, 4, 3
  c.eval_batch_size = 4
  c.num_samples = 2
  c.log_every = 1
  c.save_every = 2
  c.eval_every = 0
  c.sample_every = 0
  c.num_workers = 0
  c.async_checkpoints = False
  # The linear decay is laid out over num_steps; a constant lr lets a 2-step run
  # resumed to 4 steps follow the same schedule as a 4-step run.
  c.lr_policy = "constant"
  for k, v in overrides.items():
    c[k] = v
  return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("p2p") / "run")
  result = task_lib.train_and_evaluate(tiny_config(), workdir)
  return workdir, result


def test_train_end_to_end(trained):
  workdir, result = trained
  assert result.step == 2 and len(result.history) == 2
  for h in result.history:
    for k in ("loss", "G_GAN", "G_L1", "D", "D_real", "D_fake"):
      assert np.isfinite(h[k]), (k, h)
  ev = result.eval_history[-1]
  assert np.isfinite(ev["val/L1"]) and np.isfinite(ev["val/PSNR"])
  state = result.state
  assert set(state) == {"g", "d"}
  assert set(state["g"]) == {"params", "opt_state", "batch_stats"}
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))
  assert glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*"))
  grid = np.asarray(Image.open(os.path.join(workdir, "samples", "samples_00000002.png")))
  assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3)  # 2 rows of input | output | target
  assert os.path.exists(os.path.join(workdir, "config.json"))


def _leaves(state):
  return jax.tree.leaves(jax.device_get(state))


def test_resume_matches_uninterrupted(tmp_path):
  # An even smaller net (16x16, 16x16 PatchGAN) keeps the three compilations cheap.
  small = dict(crop_size=16, load_size=18, ngf=4, ndf=4, netD="n_layers", n_layers_D=1)
  resumed_dir = str(tmp_path / "resumed")
  first = task_lib.train_and_evaluate(tiny_config(num_steps=2, **small), resumed_dir)
  assert first.step == 2
  resumed = task_lib.train_and_evaluate(tiny_config(num_steps=4, **small), resumed_dir)
  straight = task_lib.train_and_evaluate(
    tiny_config(num_steps=4, **small), str(tmp_path / "straight")
  )
  assert resumed.step == straight.step == 4
  for a, b in zip(_leaves(resumed.state), _leaves(straight.state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_test_mode_and_export_round_trip(trained, tmp_path):
  workdir, result = trained
  out = task_lib.test(tiny_config(), workdir, log=None)
  assert out["num_images"] == 3 and out["step"] == 2
  page = open(out["index"]).read()
  assert page.count("<tr>") == 4 and "fake_B.png" in page and "real_B.png" in page
  for name in ("test_000000_real_A.png", "test_000000_fake_B.png", "test_000000_real_B.png"):
    assert os.path.exists(os.path.join(out["results_dir"], "images", name))
  assert np.isfinite(out["L1"]) and np.isfinite(out["PSNR"])

  # A folder of A|B files (test_dir) at a non-square size the U-Net accepts.
  d = tmp_path / "pairs"
  d.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(d / "x.png")
  out2 = task_lib.test(
    tiny_config(test_dir=str(d), results_dir=str(tmp_path / "res")), workdir, log=None
  )
  assert out2["num_images"] == 1 and os.path.exists(tmp_path / "res" / "index.html")

  ex = task_lib.export(tiny_config(export_dir=str(tmp_path / "export")), workdir, log=None)
  loaded = task_lib.load_exported(str(tmp_path / "export"))
  g_vars, step = task_lib.restore_generator(tiny_config(), workdir)
  assert step == ex["step"] == 2
  for a, b in zip(jax.tree.leaves(loaded.variables), jax.tree.leaves(jax.device_get(g_vars))):
    np.testing.assert_array_equal(a, b)
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1, maxval=1)
  gen = task_lib.jitted_generate(task_lib.make_generator(tiny_config()), seed=0, eval_mode=False)
  want = gen(g_vars, x, jnp.arange(2))
  np.testing.assert_allclose(loaded(x), want, rtol=1e-5, atol=1e-5)
  assert loaded(x, eval_mode=True).shape == (2, 32, 32, 3)


def test_generate_is_independent_of_batching():
  # 64x64 gives a 6-level U-Net, the smallest with a dropout layer (level 4).
  g = models.UNetGenerator(num_downs=6, ngf=4)
  x = jax.random.uniform(jax.random.key(0), (3, 64, 64, 3), minval=-1, maxval=1)
  init = jax.jit(functools.partial(g.init, train=True))  # eager init is several times slower
  v = init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x)
  assert models.unet_dropout_levels(6) == [4]
  idx = jnp.arange(3)
  gen = task_lib.jitted_generate(g, seed=1, eval_mode=False)
  full, part = gen(v, x, idx), gen(v, x[1:], idx[1:])
  np.testing.assert_allclose(full[1:], part, rtol=1e-5, atol=1e-5)
  assert not np.allclose(full[1:], gen(v, x[1:], idx[1:] + 7))  # another dropout mask
  gen_eval = task_lib.jitted_generate(g, seed=1, eval_mode=True)
  np.testing.assert_allclose(gen_eval(v, x, idx), gen_eval(v, x, idx + 5))


def test_test_mode_without_checkpoint(tmp_path):
  from zoo.errors import CheckpointError

  with pytest.raises(CheckpointError):
    task_lib.test(tiny_config(), str(tmp_path / "empty"), log=None)


def test_restore_generator_errors_are_one_line(trained):
  from zoo.errors import CheckpointError

  workdir, _ = trained
  with pytest.raises(CheckpointError) as e:  # another model size than the one trained
    task_lib.restore_generator(tiny_config(ngf=4), workdir)
  assert "\n" not in str(e.value) and "does not match" in str(e.value)
  with pytest.raises(CheckpointError) as e:
    task_lib.restore_generator(tiny_config(), workdir, step=1)
  assert "\n" not in str(e.value) and "no checkpoint at step 1" in str(e.value)
  _, step = task_lib.restore_generator(tiny_config(), workdir, step=2)
  assert step == 2


def _cli(*args, cwd=REPO):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(1))
  return subprocess.run(
    [sys.executable, "-m", "launch.pix2pix", *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


@pytest.mark.parametrize(
  "args,word",
  [
    (["--config.netD=global"], "netD"),
    (["--mode=bogus"], "--mode"),
    (["--config.dataroot=/no/such/dir"], "dataroot"),
  ],
)
def test_cli_bad_value_exits_2_with_one_error_line(tmp_path, args, word):
  p = _cli("--workdir", str(tmp_path / "w"), *args)
  assert p.returncode == 2, p.stderr[-2000:]
  lines = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and word in lines[0], p.stderr[-2000:]
  assert "Traceback" not in p.stderr
