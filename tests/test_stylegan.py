"""StyleGAN: the networks (truncation, mixing, growth, R1, edits, conditional heads) and the
staged task end to end (growth, SIGKILL mid-fade and resume, devices, bad input)."""

import functools
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from launch.configs import stylegan as config_lib
from zoo.data import faces
from zoo.errors import ConfigError, ZooError
from zoo.gan import growth
from zoo.losses import gan as gan_losses
from zoo.models import stylegan as sg
from zoo.tasks import stylegan as task_lib
from zoo.training import checkpoint as ckpt_lib
from zoo.training import mesh as mesh_lib
from zoo.training.restore import generator_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(latent_dim=8, w_dim=8, mapping_layers=2, mapping_hidden=8, fmap_base=32, fmap_max=8)


def _noisy(variables, key=0):
  """Random noise scales and w_avg, so that tests see every input of the synthesis."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  keys = jax.random.split(jax.random.key(key), len(leaves))
  out = []
  for (path, x), k in zip(leaves, keys):
    name = jax.tree_util.keystr(path)
    if "scale" in name or "w_avg" in name:
      x = x + 0.5 * jax.random.normal(k, x.shape, x.dtype)
    out.append(x)
  return jax.tree_util.tree_unflatten(treedef, out)


def _pair(stage, start=(4, 4), labels=0, **kw):
  return sg.make_stylegan({**SMALL, "start": start, **kw}, stage, label_dim=labels)


def _z(n, seed=1):
  return jax.random.normal(jax.random.key(seed), (n, SMALL["latent_dim"]))


NOISE = {"noise": jax.random.key(7)}


# ---------------------------------------------------------------------------
# The networks.
# ---------------------------------------------------------------------------


def test_names_shapes_and_layers_per_stage():
  g, d = _pair(2)
  gv = sg.init_variables(g, jax.random.key(0))
  p = gv["params"]
  assert set(p) == {"mapping", "synthesis"}
  assert set(p["synthesis"]) == {
    "block_4x4", "block_8x8", "block_16x16", "to_rgb_8x8", "to_rgb_16x16",
  }  # fmt: skip
  assert len(p["mapping"]) == SMALL["mapping_layers"]
  assert gv["stats"]["w_avg"].shape == (8,) and not gv["stats"]["w_avg"].any()
  assert g.num_ws == sg.num_layers(2) == 6 and sg.layer_resolution((4, 4), 5) == (16, 16)
  img = g.apply(gv, _z(3), 1.0, rngs=NOISE)
  chex.assert_shape(img, (3, 16, 16, 3))
  dv = sg.init_variables(d, jax.random.key(1))
  score, logits = d.apply(dv, img, 1.0)
  chex.assert_shape(score, (3,))
  assert logits is None
  ws = g.apply(gv, _z(3), method=g.styles)
  chex.assert_shape(ws, (3, 6, 8))


def test_psi_zero_gives_the_same_image_for_every_z():
  g, _ = _pair(1)
  gv = _noisy(sg.init_variables(g, jax.random.key(0)))
  same = g.apply(gv, _z(4), 1.0, psi=0.0, noise="zero")
  np.testing.assert_allclose(same, jnp.broadcast_to(same[:1], same.shape), atol=1e-6)
  # With noise: each z alone, the same noise -> the same image.
  one = [g.apply(gv, _z(4)[i : i + 1], 1.0, psi=0.0, rngs=NOISE) for i in range(4)]
  for x in one[1:]:
    np.testing.assert_allclose(x, one[0], atol=1e-6)
  free = g.apply(gv, _z(4), 1.0, psi=1.0, noise="zero")
  assert float(jnp.abs(free - free[:1]).max()) > 1e-3  # without truncation they differ
  # psi = 0 below a cutoff only: the layers above still follow z.
  ws = g.apply(gv, _z(4), method=g.styles, psi=0.0, cutoff=2)
  w_avg = gv["stats"]["w_avg"]
  np.testing.assert_allclose(ws[:, :2], jnp.broadcast_to(w_avg, ws[:, :2].shape), atol=1e-6)
  np.testing.assert_allclose(ws[:, 2:], g.apply(gv, _z(4), method=g.styles)[:, 2:], atol=1e-6)


def test_mixing_after_the_last_layer_is_no_mixing():
  g, _ = _pair(1)
  gv = _noisy(sg.init_variables(g, jax.random.key(0)))
  w1 = g.apply(gv, _z(3, 1), method=g.map)
  w2 = g.apply(gv, _z(3, 2), method=g.map)
  n = g.num_ws
  plain = jnp.broadcast_to(w1[:, None], (3, n, 8))
  np.testing.assert_array_equal(sg.mix_styles(w1, w2, jnp.full((3,), n), n), plain)
  mixed = sg.mix_styles(w1, w2, jnp.asarray([1, 2, 3]), n)
  for b, c in enumerate([1, 2, 3]):
    np.testing.assert_array_equal(mixed[b, :c], jnp.broadcast_to(w1[b], (c, 8)))
    np.testing.assert_array_equal(mixed[b, c:], jnp.broadcast_to(w2[b], (n - c, 8)))

  def image(ws):
    return g.apply(gv, ws, 1.0, method=g.synthesize, rngs=NOISE)

  np.testing.assert_array_equal(image(sg.mix_styles(w1, w2, jnp.full((3,), n), n)), image(plain))
  last = image(sg.mix_styles(w1, w2, jnp.full((3,), n - 1), n))
  assert float(jnp.abs(last - image(plain)).max()) > 1e-4  # the last layer's style matters


@pytest.mark.parametrize("start", [(4, 4), (4, 2)])
def test_growth_keeps_the_function_at_alpha_zero(start):
  for stage in (0, 1):
    g0, d0 = _pair(stage, start)
    g1, d1 = _pair(stage + 1, start)
    old_g = _noisy(sg.init_variables(g0, jax.random.key(0)))
    old_d = sg.init_variables(d0, jax.random.key(1))
    new_g = growth.copy_matching(old_g, sg.init_variables(g1, jax.random.key(2)))
    new_d = growth.copy_matching(old_d, sg.init_variables(d1, jax.random.key(3)))
    for tree, old in ((new_g, old_g), (new_d, old_d)):
      kept = dict(jax.tree_util.tree_flatten_with_path(old)[0])
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if path in kept:
          assert leaf is kept[path]  # carried, bit-identical
    z = _z(4)
    before = g0.apply(old_g, z, 1.0, rngs=NOISE)
    after = g1.apply(new_g, z, 0.0, rngs=NOISE)
    up = jnp.repeat(jnp.repeat(before, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(after, up, atol=1e-6)
    h, w = g1.resolution
    x = jax.random.normal(jax.random.key(4), (4, h, w, 3))
    pooled = x.reshape(4, h // 2, 2, w // 2, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(
      d1.apply(new_d, x, 0.0)[0], d0.apply(old_d, pooled, 1.0)[0], atol=1e-6
    )


def test_r1_and_its_gradient_match_finite_differences():
  with jax.enable_x64(True):
    _, d = _pair(1, mbstd_group_size=2)
    dv = jax.tree.map(lambda a: a.astype(jnp.float64), sg.init_variables(d, jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3), jnp.float64)

    @jax.jit
    def score(params, x):
      return d.apply({"params": params}, x, 1.0)[0]

    @jax.jit
    def r1(params):
      return jnp.mean(gan_losses.r1_penalty(lambda v: score(params, v), x, gamma=10.0))

    # The penalty: gamma / 2 * |grad_x D(x)|^2 per example, grad_x by central differences.
    eps = 1e-5
    grad_x = jax.grad(lambda v: jnp.sum(score(dv["params"], v)))(x)
    for idx in [(0, 1, 2, 0), (1, 7, 0, 2), (0, 4, 4, 1)]:
      e = jnp.zeros_like(x).at[idx].set(eps)
      # R1 differentiates the batch's summed score: the minibatch stddev couples examples.
      fd = jnp.sum(score(dv["params"], x + e) - score(dv["params"], x - e)) / (2 * eps)
      np.testing.assert_allclose(grad_x[idx], fd, rtol=1e-5, atol=1e-9)
    want = 5.0 * jnp.mean(jnp.sum(grad_x**2, axis=(1, 2, 3)))
    np.testing.assert_allclose(r1(dv["params"]), want, rtol=1e-10)
    # Its gradient in D's params (a gradient of a gradient) along a random direction.
    leaves, treedef = jax.tree.flatten(dv["params"])
    keys = jax.random.split(jax.random.key(2), len(leaves))
    v = jax.tree.unflatten(
      treedef, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)]
    )
    analytic = sum(
      jnp.vdot(a, b)
      for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(r1))(dv["params"])), jax.tree.leaves(v))
    )
    shift = lambda s: jax.tree.map(lambda p, q: p + s * q, dv["params"], v)  # noqa: E731
    numeric = (r1(shift(1e-6)) - r1(shift(-1e-6))) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)
    assert abs(float(analytic)) > 1e-6


def test_feature_maps_are_sown_and_edits_act_locally():
  g, _ = _pair(1)
  gv = _noisy(sg.init_variables(g, jax.random.key(0)))
  ws = g.apply(gv, _z(2), method=g.styles)
  img, inter = g.apply(gv, ws, 1.0, method=g.synthesize, noise="zero", mutable=["intermediates"])
  maps = {k: v for k, v in inter["intermediates"]["synthesis"].items() if k.startswith("layer")}
  assert {k: v[0].shape for k, v in maps.items()} == {
    "layer0": (2, 4, 4, 8), "layer1": (2, 4, 4, 8), "layer2": (2, 8, 8, 8), "layer3": (2, 8, 8, 8),
  }  # fmt: skip
  zero = g.apply(gv, ws, 1.0, method=g.synthesize, noise="zero", edits={3: jnp.zeros((8,))})
  np.testing.assert_array_equal(zero, img)
  # A delta on the last layer's top-left 2x2 pixels changes only those pixels (1x1 toRGB).
  delta = jnp.zeros((1, 8, 8, 8)).at[:, :2, :2, :].set(3.0)
  edited = g.apply(gv, ws, 1.0, method=g.synthesize, noise="zero", edits={3: delta})
  changed = np.abs(np.asarray(edited - img)).max(axis=-1) > 1e-6
  assert changed[:, :2, :2].all() and not changed[:, 2:, :].any() and not changed[:, :, 2:].any()
  with pytest.raises(ValueError, match="layers"):
    g.apply(gv, ws, 1.0, method=g.synthesize, noise="zero", edits={4: delta})


def test_style_space_is_sown_and_its_edits_are_adain_scales_and_biases():
  g, _ = _pair(1)
  gv = _noisy(sg.init_variables(g, jax.random.key(0)))
  ws = g.apply(gv, _z(2), method=g.styles)
  run = functools.partial(g.apply, gv, ws, 1.0, method=g.synthesize, noise="zero")
  img, inter = run(mutable=["intermediates"])
  inter = inter["intermediates"]["synthesis"]
  assert {k: v[0].shape for k, v in inter.items() if k.startswith("style")} == {
    f"style{i}": (2, 16) for i in range(4)
  }
  # After AdaIN each channel's spatial mean is its style bias and its std |scale + 1|.
  out, style = np.asarray(inter["layer2"][0]), np.asarray(inter["style2"][0])
  np.testing.assert_allclose(out.mean(axis=(1, 2)), style[:, 8:], atol=1e-4)
  np.testing.assert_allclose(out.std(axis=(1, 2)), np.abs(style[:, :8] + 1), rtol=1e-3)
  # A bias edit is the same constant added to the layer's output...
  bias = jnp.zeros((16,)).at[8 + 3].set(0.7)
  np.testing.assert_allclose(
    run(style_edits={2: bias}), run(edits={2: jnp.zeros((8,)).at[3].set(0.7)}), atol=1e-5
  )
  # ...and a scale edit adds delta times the instance-normalised activations.
  scale = jnp.zeros((16,)).at[5].set(0.5)
  normed = (out[..., 5] - style[:, None, None, 8 + 5]) / (style[:, None, None, 5] + 1)
  by_hand = jnp.zeros_like(out).at[..., 5].set(0.5 * normed)
  np.testing.assert_allclose(run(style_edits={2: scale}), run(edits={2: by_hand}), atol=1e-4)
  assert float(jnp.abs(run(style_edits={2: scale}) - img).max()) > 1e-3
  with pytest.raises(ValueError, match="style_edits name layers"):
    run(style_edits={4: scale})


def test_conditional_heads():
  labels = jax.nn.one_hot(jnp.asarray([0, 1, 2]), 5)
  g, d = _pair(1, condition="projection", labels=5)
  gv = sg.init_variables(g, jax.random.key(0))
  assert "label_embed" in gv["params"]["mapping"]
  z = jnp.broadcast_to(_z(1), (3, 8))
  w = g.apply(gv, z, labels, method=g.map)
  assert float(jnp.abs(w[0] - w[1]).max()) > 1e-4  # same z, other label, other w
  dv = sg.init_variables(d, jax.random.key(1))
  x = jax.random.normal(jax.random.key(2), (3, 8, 8, 3))
  s1, _ = d.apply(dv, x, 1.0, labels)
  s2, _ = d.apply(dv, x, 1.0, labels[::-1])
  assert float(jnp.abs(s1 - s2).max()) > 1e-5
  _, da = _pair(1, condition="acgan", labels=5)
  score, logits = da.apply(sg.init_variables(da, jax.random.key(3)), x, 1.0)
  chex.assert_shape((score, logits), ((3,), (3, 5)))


@pytest.mark.parametrize(
  "cfg, labels, words",
  [
    ({"mapping_depth": 3}, 0, "unknown StyleGAN model option"),
    ({"condition": "classifier"}, 0, "model.condition"),
    ({"condition": "projection"}, 0, "needs labelled data"),
    ({"mapping_lr_multiplier": 0.0}, 0, "mapping_lr_multiplier"),
    ({"w_dim": 0}, 0, "model.w_dim"),
    ({"start": (3, 3)}, 0, "unsupported start"),
    ({"d_fmap_max": -8}, 0, "model.d_fmap_max"),
  ],
)
def test_bad_model_config_is_one_line(cfg, labels, words):
  with pytest.raises(ConfigError, match=words):
    sg.make_stylegan({**SMALL, **cfg}, 0, label_dim=labels)


def test_discriminator_widths_apart_from_the_generator():
  g, d = _pair(1, d_fmap_base=4 * SMALL["fmap_base"], d_fmap_max=4 * SMALL["fmap_max"])
  assert (g.fmap_base, g.fmap_max) == (SMALL["fmap_base"], SMALL["fmap_max"])
  assert (d.fmap_base, d.fmap_max) == (4 * SMALL["fmap_base"], 4 * SMALL["fmap_max"])
  _, d0 = _pair(1, d_fmap_base=0, d_fmap_max=0)
  assert (d0.fmap_base, d0.fmap_max) == (SMALL["fmap_base"], SMALL["fmap_max"])


# ---------------------------------------------------------------------------
# The task.
# ---------------------------------------------------------------------------

# 8x8 -> 16x16 (the embedded faces come from 16 pixels); 4 steps per phase: stage 0 =
# steps 0-3, stage 1 fades in 4-7 and is stable in 8-11.
TINY = {
  **{f"model.{k}": v for k, v in SMALL.items()},
  "model.start": (8, 8),
  "schedule.resolution": (16, 16),
  "schedule.fade_images": 32,
  "schedule.stable_images": 32,
  "schedule.final_stable_images": 32,
  "schedule.batch_sizes": (8, 8),
  "data.num_train": 32,
  "mixing.prob": 0.9,  # the CPU default turns mixing off; keep its path under test
  "eval.num_samples": 16,
  "eval.fd": "off",
  "num_samples": 4,
  "log_every": 1,
  "save_every": 0,
  "sample_every": 0,
  "async_checkpoints": False,
}


def tiny_config(**overrides):
  c = config_lib.get_config()
  for k, v in {**TINY, **overrides}.items():
    section, _, key = k.rpartition(".")
    (c[section] if section else c)[key] = v
  return c


@pytest.fixture
def trained(tiny_stylegan_run):
  return tiny_stylegan_run  # conftest: one tiny run per session (the toolkit tests use it too)


def test_train_grows_tracks_w_avg_and_samples(trained, tmp_path):
  workdir, res = trained
  assert res.step == 12
  g = res.state["g"]
  assert {"block_16x16", "to_rgb_16x16", "to_rgb_8x8"} <= set(g["params"]["synthesis"])
  assert float(jnp.abs(g["stats"]["w_avg"]).max()) > 0  # moved from its zero start
  assert "g_ema" in res.state
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True, async_save=False)
  assert {s: ck.read_meta(s)["stage"] for s in ck.all_steps()} == {4: 0, 12: 1}
  for h in res.history:
    assert np.isfinite(h["loss"]) and np.isfinite(h["D"]) and np.isfinite(h["D_r1"])
  assert {"stage0_8x8_00000004.png", "timelapse.gif"} <= set(os.listdir(f"{workdir}/samples"))
  png = task_lib.sample(workdir, num=4, seed=3, output=str(tmp_path / "s.png"), log=None)
  assert os.path.getsize(png) > 0


def test_export_runs_without_the_zoo(trained, tmp_path):
  workdir, _ = trained
  out = task_lib.export(workdir, output=str(tmp_path / "export"), log=None)
  # What an application does: jax and flax only, no zoo module.
  script = textwrap.dedent(
    """
    import sys, numpy as np, flax.serialization
    from jax import export
    d = sys.argv[1]
    prog = export.deserialize(open(d + "/generator.jaxexport", "rb").read())
    variables = flax.serialization.msgpack_restore(open(d + "/generator.msgpack", "rb").read())
    z = np.load(d + "/z.npy")
    np.save(d + "/out.npy", np.asarray(prog.call(variables, z, np.float32(0.7), np.uint32(5))))
    assert not [m for m in sys.modules if m.startswith("zoo")]
    """
  )
  z = np.asarray(jax.random.normal(jax.random.key(0), (3, SMALL["latent_dim"])), np.float32)
  np.save(os.path.join(out, "z.npy"), z)
  p = subprocess.run(
    [sys.executable, "-c", script, out], cwd=tmp_path, capture_output=True, text=True
  )
  assert p.returncode == 0, p.stderr[-2000:]
  theirs = np.load(os.path.join(out, "out.npy"))
  task, state, step = task_lib.restore_state(workdir)
  g, _ = task.networks(task._state_stage(step))  # pylint: disable=protected-access
  # Compared with the same computation jitted: eagerly, float rounding differs, and instance
  # norm of the nearly constant early feature maps magnifies that to ~1e-2 in a tiny run.
  ours = jax.jit(lambda v, z: g.apply(v, z, 1.0, psi=0.7, rngs={"noise": jax.random.key(5)}))(
    generator_variables(state), z
  )
  chex.assert_shape(theirs, (3, 16, 16, 3))
  np.testing.assert_allclose(theirs, np.clip(ours, -1, 1), rtol=1e-5, atol=1e-5)


_KILLER = textwrap.dedent(
  """
  import os, signal, sys
  sys.path.insert(0, {repo!r})
  from tests.test_stylegan import tiny_config
  from zoo.tasks import stylegan
  from zoo.training import checkpoint as ckpt_lib

  save = ckpt_lib.Checkpointer.save
  def save_then_die(self, step, state, meta=None, **kw):
    save(self, step, state, meta, **kw)
    if step == 6:
      self.wait()
      os.kill(os.getpid(), signal.SIGKILL)
  ckpt_lib.Checkpointer.save = save_then_die
  stylegan.train_and_evaluate(tiny_config(save_every=1), sys.argv[1], log=None)
  """
)


@pytest.mark.slow  # the staged loop's mid-fade resume is ProGAN's test in the default set
def test_sigkill_mid_fade_then_resume_matches_uninterrupted(trained, tmp_path):
  _, straight = trained
  victim = str(tmp_path / "killed")
  p = subprocess.run(
    [sys.executable, "-c", _KILLER.format(repo=REPO), victim], cwd=REPO, capture_output=True
  )
  assert p.returncode == -9, p.stderr.decode()[-2000:]
  resumed = task_lib.train_and_evaluate(tiny_config(save_every=1), victim, log=None)
  assert resumed.step == 12
  chex.assert_trees_all_close(
    jax.device_get(resumed.state), jax.device_get(straight.state), rtol=1e-5, atol=1e-5
  )


@pytest.mark.slow
def test_one_device_matches_four(tmp_path):
  # 4-device reductions sum in another order. The losses agree to 1e-5 and stay close, but
  # Adam (eps 1e-8, moments reset at the fade) turns a gradient element that cancels to
  # ~1e-7 into a +-lr step whose sign is rounding noise, and a dozen steps of the tiny GAN
  # grow the rest to percents. So: the first step's losses to 1e-5 (a sharding bug, such as
  # a statistic over one device's shard, moves them from the first step: they agree to
  # ~1e-7), every step's to 1e-3 up to the first step of stage 1 (step 5, the first after
  # the reset), to 5e-2 after it (1.9e-3 and 2.1e-2 seen at steps 6 and 7), and the
  # params to a few learning-rate steps.
  c = {"schedule.fade_images": 16, "schedule.final_stable_images": 8}
  runs = [
    task_lib.train_and_evaluate(tiny_config(**c), str(tmp_path / name), mesh=mesh, log=None)
    for name, mesh in (("four", None), ("one", mesh_lib.make_mesh(jax.devices()[:1])))
  ]
  assert runs[0].step == 7 and jax.device_count() == 4
  for a, b in zip(*(r.history for r in runs), strict=True):
    rtol = 1e-5 if a["step"] == 1 else 1e-3 if a["step"] <= 5 else 5e-2
    for key in ("D", "G", "D_r1"):
      np.testing.assert_allclose(a[key], b[key], rtol=rtol, err_msg=f"{key} at {a['step']}")
  params = [jax.device_get({n: r.state[n]["params"] for n in ("g", "d")}) for r in runs]
  # Each step moves a parameter by about lr; the most that steps of opposite signs can
  # part them by (5e-3 failed on one Xeon by one bias element at 6.2e-3).
  lr = tiny_config(**c).optim.lr
  chex.assert_trees_all_close(*params, rtol=0, atol=2 * lr * runs[0].step)


@pytest.mark.parametrize(
  "overrides, words",
  [
    ({"mixing.prob": 1.5}, "mixing.prob"),
    ({"model.condition": "projection", "data.source": "/some/folder"}, "needs labelled data"),
    ({"model.condition": "classifier"}, "model.condition"),
    ({"model.mapping_layers": 0}, "model.mapping_layers"),
    ({"loss.reg": "l2"}, "reg="),
    ({"loss.mismatch": "near_misses", "model.condition": "projection"}, "loss.mismatch"),
    ({"loss.mismatch": "near_miss"}, "needs a conditional model"),
  ],
)
def test_bad_config_is_one_line(tmp_path, overrides, words):
  with pytest.raises(ZooError) as e:
    task_lib.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "w"), log=None)
  assert words in str(e.value) and "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "w")


def test_conditional_mismatch_term_by_hand():
  # The matching-aware term on a projection-like D whose score is sum(x) + w . label:
  # GAN-CLS's softplus(-s_real) + softplus(s_fake)/2 + softplus(s_wrong)/2, the wrong
  # labels being near misses of the right ones.
  from zoo.gan import objectives  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(2, 6, 2, 2, 3)).astype(np.float32) * 0.3
  sizes = (2, 3)
  label = np.concatenate([np.eye(2)[[0, 1, 0, 1, 0, 1]], np.eye(3)[[0, 1, 2, 0, 1, 2]]], 1).astype(
    np.float32
  )
  w = jnp.asarray([0.5, -1.0, 2.0, 0.1, -0.7], jnp.float32)

  def d_apply(v, x, lab):
    return x.reshape(x.shape[0], -1).sum(-1) + lab @ v, None

  obj = task_lib.ConditionalStyleMixingObjective(
    g_apply=None,
    d_apply=d_apply,
    latent_dim=1,
    losses=objectives.LossConfig(d_loss="logistic", g_loss="nonsaturating"),
    group_sizes=sizes,
    mismatch="near_miss",
  )
  key = jax.random.key(3)
  loss, (metrics, _) = obj.d_loss(w, {"image": real, "label": label}, fake, key, 0)
  wrong = np.asarray(objectives.wrong_labels(key, jnp.asarray(label), sizes))
  assert (wrong != label).any(1).all()
  score = lambda x, lab: x.reshape(6, -1).sum(-1) + lab @ np.asarray(w)  # noqa: E731
  softplus = lambda s: np.log1p(np.exp(s))  # noqa: E731
  want = softplus(-score(real, label)) + softplus(score(fake, label)) / 2
  want = np.mean(want + softplus(score(real, wrong)) / 2)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["D_wrong_score"], score(real, wrong).mean(), rtol=1e-5)


@pytest.mark.parametrize(
  "condition, mismatch",
  [("projection", "near_miss"), pytest.param("acgan", "none", marks=pytest.mark.slow)],
)
def test_conditional_training_follows_labels(tmp_path, condition, mismatch):
  # One step per phase (8x8, fade to 16x16, 16x16): labels reach G's mapping network
  # and D's head (and D's matching-aware term sees wrong labels).
  c = tiny_config(
    **{
      "model.condition": condition,
      "loss.mismatch": mismatch,
      "schedule.fade_images": 8,
      "schedule.stable_images": 8,
      "schedule.final_stable_images": 8,
    }
  )
  res = task_lib.train_and_evaluate(c, str(tmp_path / "w"), log=None)
  assert res.step == 3
  for h in res.history:
    assert all(np.isfinite(h[k]) for k in ("D", "G", "D_r1"))
    assert ("D_class_real" in h) == (condition == "acgan")
    assert ("D_wrong_score" in h) == (mismatch != "none")
  assert "label_embed" in res.state["g"]["params"]["mapping"]
  task, state, step = task_lib.restore_state(str(tmp_path / "w"))
  z = task.generator_inputs(jax.random.key(0), 3)
  assert z.shape == (3, 8 + 32) and set(np.unique(z[:, 8:])) == {0.0, 1.0}
  assert (z[:, 8:].sum(1) == 8).all()  # one value per attribute
  # Evaluation's label accuracy scores against the very labels the samples are drawn for.
  groups = np.split(z[:, 8:], np.cumsum(faces.ATTRIBUTE_SIZES)[:-1], axis=1)
  drawn = {k: g.argmax(1) for k, g in zip(faces.ATTRIBUTE_NAMES, groups)}
  assert task.label_metrics(drawn, 3)["eval/acc_mean"] == 1.0
  drawn["mouth"] = (drawn["mouth"] + 1) % len(faces.ATTRIBUTES["mouth"])
  acc = task.label_metrics(drawn, 3)
  assert acc["eval/acc_mouth"] == 0.0 and acc["eval/acc_mean"] == pytest.approx(7 / 8)
  imgs = task.generate(state, z, step)
  other = z.copy()
  other[:, 8:] = other[::-1, 8:]  # same z, other labels
  assert np.abs(task.generate(state, other, step) - imgs).max() > 1e-4
  # D's overfitting measure feeds each set its labels: held-out reals as fakes -> 1.
  real = task.generate(state, z[::-1], step)
  assert task.d_overfitting(state, step, imgs, imgs) == pytest.approx(1.0)
  assert np.isfinite(task.d_overfitting(state, step, imgs, real))
  if condition == "projection":  # the latent toolkit on the same run
    from tests.test_gan_tools import check_conditional_model  # pylint: disable=g-import-not-at-top

    check_conditional_model(str(tmp_path / "w"), noise_dim=8)


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "launch.stylegan",
      "--config.mixing.prob=2",
      f"--workdir={tmp_path / 'w'}",
    ],  # fmt: skip
    cwd=REPO,
    capture_output=True,
    text=True,
    check=False,
  )
  assert p.returncode == 2, p.stderr[-2000:]
  errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "mixing.prob" in errors[0] and "Traceback" not in p.stderr
  assert not (tmp_path / "w").exists()
