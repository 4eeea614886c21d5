"""ProGAN end to end: staged training, SIGKILL mid-fade and resume, devices, modes, bad input."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from launch.configs import progan as config_lib
from zoo.errors import ZooError
from zoo.models import export as export_lib
from zoo.data.images import unconditional as image_data
from zoo.gan import core, progressive
from zoo.tasks import progan as task_lib
from zoo.training import checkpoint as ckpt_lib
from zoo.training import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 4x4 -> 8x8 -> 16x16; 4 steps per phase: stage 0 = steps 0-3, stage 1 fades in steps
# 4-7 and is stable in 8-11, stage 2 fades in 12-15 and is stable in 16-19.
TINY = {
  "model.latent_dim": 8,
  "model.fmap_base": 32,
  "model.fmap_max": 8,
  "schedule.resolution": (16, 16),
  "schedule.fade_images": 32,
  "schedule.stable_images": 32,
  "schedule.final_stable_images": 32,
  "schedule.batch_sizes": (8, 8, 8),
  "data.num_train": 32,
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


def _state(res):
  return jax.device_get(res.state)


def test_schedule_in_steps():
  s = task_lib.make_schedule(tiny_config())
  assert s.starts == (0, 4, 12) and s.fades == (0, 4, 4) and s.total == 20
  assert [s.stage_at(k) for k in (0, 3, 4, 11, 12, 19)] == [0, 0, 1, 1, 2, 2]
  np.testing.assert_allclose([float(s.alpha(k, 1)) for k in (4, 6, 8, 11)], [0, 0.5, 1, 1])
  assert float(s.alpha(2, 0)) == 1.0
  assert s.images_seen(20) == 160
  paper = task_lib.make_schedule(config_lib.get_config("paper"))
  assert paper.num_stages == 7 and paper.resolution(6) == (256, 256)
  assert paper.fades[1] == 600_000 // 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("progan") / "run")
  return workdir, task_lib.train_and_evaluate(tiny_config(), workdir, log=None)


def test_train_grows_and_writes_what_a_person_looks_at(trained):
  workdir, res = trained
  assert res.step == 20
  g = res.state["g"]["params"]
  assert {"block_16x16", "to_rgb_16x16", "to_rgb_8x8"} <= set(g)
  assert "to_rgb_4x4" not in g  # two levels down: dropped by the growth
  assert "g_ema" in res.state
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True, async_save=False)
  assert {s: ck.read_meta(s)["stage"] for s in ck.all_steps()} == {4: 0, 12: 1, 20: 2}
  samples = sorted(os.listdir(os.path.join(workdir, "samples")))
  for name in ("stage0_4x4_00000004.png", "stage1_8x8_00000012.png", "timelapse.gif"):
    assert name in samples
  gif = Image.open(os.path.join(workdir, "samples", "timelapse.gif"))
  assert gif.n_frames == 3
  for h in res.history:
    assert np.isfinite(h["loss"]) and np.isfinite(h["D"])
  assert [h["alpha"] for h in res.history if h["step"] in (5, 7)] == pytest.approx([0.0, 0.5])


def test_d_overfitting_compares_training_heldout_and_fake_scores(trained):
  _, res = trained
  task = task_lib.ProGANTask(tiny_config(), mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  n = 8
  idx = np.linspace(0, len(task.source) - 1, n).astype(int)
  train = image_data.to_float(np.stack([task.source[int(i)] for i in idx]))
  held, fake = np.random.default_rng(0).uniform(-1, 1, (2, n, 16, 16, 3)).astype(np.float32)
  assert task.d_overfitting(res.state, 20, fake, train) == 0.0  # held-out = training reals
  assert task.d_overfitting(res.state, 20, held, held) == 1.0  # held-out reals = fakes
  # By hand: step 20 ends stage 2 (16x16, alpha 1), D on each whole set.
  _, d = task.networks(2)
  d_vars = core.net_variables(res.state["d"])
  s = {k: float(np.mean(d.apply(d_vars, x, 1.0))) for k, x in dict(t=train, h=held, f=fake).items()}
  r = task.d_overfitting(res.state, 20, fake, held)
  assert r == pytest.approx((s["t"] - s["h"]) / (s["t"] - s["f"]), rel=1e-5)


def test_d_scores_blend_reals_but_not_samples_during_a_fade(trained):
  _, res = trained
  task = task_lib.ProGANTask(tiny_config(), mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  x = np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  step = 14  # stage 2, in its fade: alpha 0.25
  alpha = float(task.schedule.alpha(step - 1, 2))
  assert 0 < alpha < 1
  _, d = task.networks(2)
  d_vars = core.net_variables(res.state["d"])
  blended = progressive.lod_blend(jnp.asarray(x), alpha, 2)
  real = task.d_scores(res.state, x, step, {})
  fake = task.d_scores(res.state, x, step, {}, real=False)
  np.testing.assert_allclose(
    real, d.apply(d_vars, blended, alpha).reshape(-1), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(fake, d.apply(d_vars, x, alpha).reshape(-1), rtol=1e-5, atol=1e-6)
  assert np.abs(real - fake).max() > 1e-4


def test_sample_and_export_round_trip(trained, tmp_path):
  workdir, res = trained
  png = task_lib.sample(workdir, num=4, seed=3, output=str(tmp_path / "s.png"), log=None)
  assert Image.open(png).size[0] > 0
  out = task_lib.export(workdir, output=str(tmp_path / "export"), log=None)
  exp = export_lib.load(out)
  assert exp.info["resolution"] == [16, 16] and exp.info["stage"] == 2
  z = np.asarray(jax.random.normal(jax.random.key(0), (3, 8)))
  task, state, step = task_lib.restore_state(workdir)
  ours = task.generate(state, z, step)
  theirs = np.clip(exp.module.apply(exp.variables, z, exp.info["alpha"]), -1, 1)
  np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)


_KILLER = textwrap.dedent(
  """
  import os, signal, sys
  sys.path.insert(0, {repo!r})
  from tests.test_progan_task import tiny_config
  from zoo.tasks import progan
  from zoo.training import checkpoint as ckpt_lib

  save = ckpt_lib.Checkpointer.save
  def save_then_die(self, step, state, meta=None, **kw):
    save(self, step, state, meta, **kw)
    if step == {kill_at}:
      self.wait()
      os.kill(os.getpid(), signal.SIGKILL)
  ckpt_lib.Checkpointer.save = save_then_die
  progan.train_and_evaluate(tiny_config(save_every=1), sys.argv[1], log=None)
  """
)


def test_sigkill_mid_fade_then_resume_matches_uninterrupted(trained, tmp_path):
  workdir, straight = trained
  victim = str(tmp_path / "killed")
  script = _KILLER.format(repo=REPO, kill_at=6)  # stage 1, alpha = 0.5
  p = subprocess.run([sys.executable, "-c", script, victim], cwd=REPO, capture_output=True)
  assert p.returncode == -9, p.stderr.decode()[-2000:]
  ck = ckpt_lib.Checkpointer(os.path.join(victim, "checkpoints"), read_only=True, async_save=False)
  assert ck.latest_step() == 6 and ck.read_meta(6)["stage"] == 1
  # The resumed run finishes the fade, grows to stage 2 and ends where the straight one did.
  resumed = task_lib.train_and_evaluate(tiny_config(save_every=1), victim, log=None)
  assert resumed.step == 20
  chex.assert_trees_all_close(_state(resumed), _state(straight), rtol=1e-5, atol=1e-5)


def test_lazy_regularisation_compiled_per_pattern_matches_one_program(tmp_path, monkeypatch):
  """The loop compiles one step per lazy-regularisation pattern (the regulariser only where
  it runs); the run equals the single program that decides inside (lax.cond)."""
  c = tiny_config(**{"loss.reg_interval": 3, "schedule.final_stable_images": 0})
  c.model.start, c.schedule.batch_sizes = (8, 8), (8, 8)  # 8x8 -> 16x16
  task = task_lib.ProGANTask(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  assert [task.step_variant(s) for s in range(4)] == [(True,), (False,), (False,), (True,)]
  per_pattern = task_lib.train_and_evaluate(c, str(tmp_path / "a"), log=None)
  monkeypatch.setattr(progressive.StagedGANTask, "step_variant", lambda self, step: None)
  one_program = task_lib.train_and_evaluate(c, str(tmp_path / "b"), log=None)
  assert per_pattern.step == one_program.step == 8
  for a, b in zip(per_pattern.history, one_program.history, strict=True):
    np.testing.assert_allclose(a["D_reg"], b["D_reg"], rtol=1e-5, err_msg=str(a["step"]))
  chex.assert_trees_all_close(
    jax.device_get(per_pattern.state), jax.device_get(one_program.state), rtol=1e-5, atol=1e-6
  )


@pytest.mark.slow
def test_one_device_matches_four(trained, tmp_path):
  _, four = trained
  one = task_lib.train_and_evaluate(
    tiny_config(), str(tmp_path / "one"), mesh=mesh_lib.make_mesh(jax.devices()[:1]), log=None
  )
  chex.assert_trees_all_close(_state(one), _state(four), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# Data and bad input.
# ---------------------------------------------------------------------------


def _folder(tmp_path, n=8, size=(40, 24)):
  d = tmp_path / "imgs"
  (d / "sub").mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    img = rng.integers(0, 255, (size[0], size[1], 3), dtype=np.uint8)
    Image.fromarray(img).save(d / ("sub" if i % 2 else "") / f"{i}.{'png' if i % 3 else 'jpg'}")
  return d


def test_folder_data_trains_rectangular(tmp_path):
  d = _folder(tmp_path)
  c = tiny_config(
    **{
      "model.start": (4, 2),
      "schedule.resolution": (8, 4),
      "data.source": str(d),
      "data.num_train": 0,
    }
  )
  res = task_lib.train_and_evaluate(c, str(tmp_path / "run"), log=None)
  assert res.step == 12  # 4 + 4 fade + 4 stable... of a 2-stage schedule
  assert np.isfinite(res.history[-1]["loss"])


def _one_line(excinfo):
  msg = str(excinfo.value)
  assert "\n" not in msg and msg
  return msg


@pytest.mark.parametrize(
  "overrides, words",
  [
    ({"schedule.resolution": (24, 24)}, "not model.start"),
    ({"schedule.resolution": (512, 512)}, "256"),
    ({"model.start": (3, 3)}, "start"),
    ({"schedule.batch_sizes": (0,)}, "batch_sizes"),
    ({"schedule.fade_images": -1}, "fade_images"),
    ({"loss.d_loss": "wasserstein"}, "d_loss"),
    ({"loss.reg": "r3"}, "reg"),
    ({"optim.lr": 0.0}, "lr"),
    ({"eval.num_real": 0}, "eval.num_real"),
    ({"data.render_processes": -1}, "data.render_processes"),
    ({"data.source": "/no/such/folder"}, "does not exist"),
    ({"data.source": "tfds:no_such_dataset_xyz"}, "not prepared"),
  ],
)
def test_bad_config_is_one_line(tmp_path, overrides, words):
  with pytest.raises(ZooError) as e:
    task_lib.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "w"), log=None)
  assert words in _one_line(e)
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_bad_folders_are_one_line(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ZooError) as e:
    task_lib.train_and_evaluate(tiny_config(**{"data.source": str(empty)}), str(tmp_path / "a"))
  assert "no .jpg" in _one_line(e)
  d = _folder(tmp_path)
  (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
  with pytest.raises(ZooError) as e:
    task_lib.train_and_evaluate(tiny_config(**{"data.source": str(d)}), str(tmp_path / "b"))
  assert "broken.png" in _one_line(e)


def test_render_processes_may_change_on_resume():
  # They draw the same faces as the reader threads (tests/test_stream.py).
  assert task_lib.RESUME_KEYS.kind("data.render_processes") == "free"
  assert task_lib.RESUME_KEYS.kind("data.num_train") == "data"


def test_resume_with_other_channels_or_schedule_refused(trained, tmp_path):
  workdir, _ = trained
  before = open(os.path.join(workdir, "config.json")).read()
  for overrides, key in (
    ({"model.fmap_max": 16}, "model.fmap_max"),
    ({"schedule.fade_images": 64}, "schedule.fade_images"),
  ):
    with pytest.raises(ZooError) as e:
      task_lib.train_and_evaluate(tiny_config(**overrides), workdir, log=None)
    assert key in _one_line(e)
  assert open(os.path.join(workdir, "config.json")).read() == before


def test_lengthening_the_final_stage_on_resume_equals_a_longer_run(trained, tmp_path):
  # Only the end moves, so a finished run trained on equals one planned that long.
  workdir, _ = trained
  cont = str(tmp_path / "continued")
  shutil.copytree(workdir, cont)
  longer = {"schedule.final_stable_images": 64}
  resumed = task_lib.train_and_evaluate(tiny_config(**longer), cont, log=None)
  straight = task_lib.train_and_evaluate(tiny_config(**longer), str(tmp_path / "long"), log=None)
  assert resumed.step == straight.step == 24
  chex.assert_trees_all_close(_state(resumed), _state(straight), rtol=1e-5, atol=1e-5)


def test_cli_bad_schedule_exits_2_with_one_line(tmp_path):
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "launch.progan",
      "--workdir",
      str(tmp_path / "w"),
      "--config.schedule.resolution=(20,20)",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode == 2, p.stderr[-2000:]
  lines = p.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and "Traceback" not in p.stderr
  assert not os.path.exists(tmp_path / "w")


def test_center_crop_resize_keeps_the_middle():
  from zoo.data.images import unconditional as images

  img = np.zeros((10, 30, 3), np.uint8)
  img[:, 10:20] = 255  # the middle third is white
  out = images.center_crop_resize(Image.fromarray(img), (4, 4))
  assert out.shape == (4, 4, 3) and out.min() > 200
  x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
  np.testing.assert_allclose(images.downsample(x, 2)[0, 0, 0, 0], np.mean([0, 1, 4, 5]))
  assert json.dumps(task_lib.shape_sections(tiny_config()))  # JSON-friendly


def test_validation_faces_are_the_validation_split_as_floats():
  x = image_data.validation_faces((16, 16), 3, seed=0)
  faces = image_data.open_images("", "valid", (16, 16), num_examples=3, seed=0)
  chex.assert_shape(x, (3, 16, 16, 3))
  assert x.dtype == np.float32
  np.testing.assert_array_equal(x[2], image_data.to_float(faces[2]))


def test_adam_is_reset_where_each_fade_starts_and_ends(trained):
  import jax.numpy as jnp

  _, res = trained
  c = tiny_config()
  task = task_lib.ProGANTask(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  state = jax.tree.map(jnp.asarray, jax.device_get(res.state))
  assert int(state["d"]["opt_state"][0].count) > 0

  def reset_at_fade_end(state, step, stage):
    return progressive.reset_optimizers_at_fade_end(
      state,
      step,
      stage,
      schedule=task.schedule,
      optimizers={"g": task.tx_g, "d": task.tx_d},
      enabled=True,
    )

  kept = reset_at_fade_end(state, 15, 2)
  assert int(kept["d"]["opt_state"][0].count) == int(state["d"]["opt_state"][0].count)
  reset = reset_at_fade_end(state, 16, 2)
  assert int(reset["d"]["opt_state"][0].count) == 0
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(reset["g"]["opt_state"][0].mu))
  # The straight run reset at step 16: its count is the 4 steps since.
  assert int(state["g"]["opt_state"][0].count) == 4
