"""zoo.sketch (the Python API) and the launcher's modes, on a tiny checkpoint trained here."""

import functools
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, xla_flags
from tests.test_sketch_rnn_train import TINY, tiny_config
from zoo import sketch as api
from zoo.data.sketches import export as E
from zoo.data.sketches.npz import save_sketch_npz
from zoo.errors import CheckpointError, ConfigError, ZooError
from zoo.models import sketch_rnn_sampling as sampling
from zoo.tasks import sketch_rnn as task_lib

MAX_LEN = 12  # generated points in the semantic tests


def _one_line(excinfo, cls=ZooError):
  assert isinstance(excinfo.value, cls), type(excinfo.value)
  msg = str(excinfo.value)
  assert msg and "\n" not in msg
  return msg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sketch_run")
  c = tiny_config(num_steps=2, save_every=2, eval_every=0, sample_every=0)
  task_lib.train_and_evaluate(c, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def model(run_dir):
  return api.SketchModel.load(run_dir)


@pytest.fixture(scope="module")
def forced(model):
  """The trained model with its pen logits biased towards 'pen down' (p3 nearly never).

  After two training steps the model ends sketches at once; this variant keeps drawing,
  so the sampling semantics can be checked on whole sequences.
  """
  params = jax.tree.map(lambda x: x, model.params)
  bias = params["output"]["bias"].at[:3].set(jnp.array([3.0, 0.5, -12.0]))
  params = {**params, "output": {**params["output"], "bias": bias}}
  return api.SketchModel(
    model.model,
    params,
    model.config,
    max_seq_len=model.max_seq_len,
    scale_factor=model.scale_factor,
  )


@pytest.fixture(scope="module")
def data(model):
  return model.dataset_sketches("test", [0, 1, 2])


def _same(xs, ys):
  return len(xs) == len(ys) and all(
    x.shape == y.shape and np.array_equal(x, y) for x, y in zip(xs, ys)
  )


# ---------------------------------------------------------------------------- loading


def test_load(model, run_dir):
  info = json.loads((run_dir / "config.json").read_text())
  assert model.step == 2 and model.conditional and model.z_size == TINY["z_size"]
  assert model.max_seq_len == info["derived"]["max_seq_len"]
  assert model.scale_factor == pytest.approx(info["derived"]["scale_factor"])
  assert model.model.num_mixture == TINY["num_mixture"]


def test_load_errors(tmp_path, run_dir):
  with pytest.raises(CheckpointError) as e:
    api.SketchModel.load(tmp_path / "nope")
  assert "does not exist" in _one_line(e)
  with pytest.raises(CheckpointError) as e:
    api.SketchModel.load(tmp_path)
  assert "config.json" in _one_line(e)
  shutil.copy(run_dir / "config.json", tmp_path / "config.json")
  with pytest.raises(CheckpointError) as e:
    api.SketchModel.load(tmp_path)
  assert "checkpoint" in _one_line(e)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(CheckpointError) as e:
    api.SketchModel.load(tmp_path)
  assert "no checkpoint" in _one_line(e)


# ---------------------------------------------------------------------------- sampling


def test_sample_reproducible_per_seed_and_batch_independent(forced):
  a = forced.sample(4, seed=0, temperature=0.8, max_len=MAX_LEN)
  assert len(a) == 4 and all(s.ndim == 2 and s.shape[1] == 3 for s in a)
  assert all(1 <= len(s) <= MAX_LEN for s in a)
  assert all(np.isin(s[:, 2], (0, 1)).all() for s in a)
  assert _same(a, forced.sample(4, seed=0, temperature=0.8, max_len=MAX_LEN))
  # Row i's randomness is its own: a smaller batch gives the same first sketches.
  assert _same(a[:3], forced.sample(3, seed=0, temperature=0.8, max_len=MAX_LEN))
  b = forced.sample(4, seed=1, temperature=0.8, max_len=MAX_LEN)
  assert not any(x.shape == y.shape and np.allclose(x, y) for x, y in zip(a, b))
  assert not np.allclose(a[0][:2], a[1][:2])  # sketches of one batch differ


def test_greedy_is_deterministic_and_low_temperature_approaches_it(forced):
  z = np.random.default_rng(0).normal(size=(4, forced.z_size)).astype(np.float32)
  g0 = forced.decode(z, greedy=True, seed=0, max_len=MAX_LEN)
  assert _same(g0, forced.decode(z, greedy=True, seed=7, max_len=MAX_LEN))
  assert all(len(s) == MAX_LEN and (s[:, 2] == 0).all() for s in g0)  # argmax pen: down
  cold = forced.decode(z, temperature=1e-4, seed=3, max_len=MAX_LEN)
  for c, g in zip(cold, g0):
    assert c.shape == g.shape
    np.testing.assert_allclose(c, g, atol=0.05)
  warm = forced.decode(z, temperature=1.0, seed=3, max_len=MAX_LEN)
  assert max(np.abs(w[:3, :2] - g[:3, :2]).max() for w, g in zip(warm, g0)) > 0.05


def test_temperature_semantics_of_one_step():
  """magenta: categorical probabilities ~ p**(1/tau), Gaussian sigmas * tau."""
  m, n, tau = 2, 4000, 0.5
  pi = np.log([0.7, 0.3])
  pen = np.log([0.6, 0.3, 0.1])
  raw = np.concatenate(
    [pen, pi, [1.0, -2.0], [0.5, 0.5], np.log([0.4, 0.4]), np.log([0.2, 0.2]), [0.0, 0.0]]
  ).astype(np.float32)
  raw = jnp.broadcast_to(raw, (n, 3 + 6 * m))
  keys = jax.random.split(jax.random.key(0), n)
  draw = jax.jit(
    functools.partial(sampling.sample_step_outputs, num_mixture=m), static_argnames="greedy"
  )
  rows = np.asarray(draw(raw, keys, temperature=tau))
  p_pen = np.array([0.6, 0.3, 0.1]) ** (1 / tau)
  np.testing.assert_allclose(rows[:, 2:].mean(0), p_pen / p_pen.sum(), atol=0.03)
  first = rows[:, 0] > -0.5  # component 0 has mu_x = 1, component 1 has mu_x = -2
  p_pi = np.array([0.7, 0.3]) ** (1 / tau)
  assert first.mean() == pytest.approx(p_pi[0] / p_pi.sum(), abs=0.03)
  assert rows[first, 0].std() == pytest.approx(0.4 * tau, rel=0.1)
  assert rows[:, 1].std() == pytest.approx(0.2 * tau, rel=0.1)
  greedy = np.asarray(draw(raw[:2], keys[:2], greedy=True))
  np.testing.assert_allclose(greedy, [[1.0, 0.5, 1, 0, 0]] * 2)
  # One key for the batch is split per row; per-row keys make rows independent of the batch.
  one = draw(raw[:3], keys[:3], temperature=tau)
  np.testing.assert_array_equal(one, rows[:3])


@pytest.mark.parametrize(
  "kw,needle",
  [
    (dict(temperature=0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(n=0), "number of samples"),
    (dict(seed=-1), "seed"),
    (dict(max_len=0), "max_len"),
  ],
)
def test_sample_bad_arguments(model, kw, needle):
  kw = {"n": 2, **kw}
  with pytest.raises(ConfigError) as e:
    model.sample(**kw)
  assert needle in _one_line(e)


# ---------------------------------------------------------------------------- encoder


def test_encode(model, data):
  z = model.encode(data[:2])
  assert z.shape == (2, model.z_size) and z.dtype == np.float32 and np.isfinite(z).all()
  np.testing.assert_allclose(model.encode(data[0])[0], z[0], rtol=1e-5, atol=1e-7)
  assert not np.allclose(z[0], z[1])
  zs = model.encode(data[:2], sample=True, seed=0)
  np.testing.assert_array_equal(zs, model.encode(data[:2], sample=True, seed=0))
  assert not np.allclose(zs, z) and not np.allclose(zs, model.encode(data[:2], sample=True, seed=1))
  # The scale factor is applied: a sketch in pixels is not the same as its normalised copy.
  norm = data[0].copy()
  norm[:, :2] /= model.scale_factor
  assert not np.allclose(model.encode(norm)[0], z[0])


@pytest.mark.parametrize(
  "bad,needle",
  [
    (np.zeros((5, 2)), "shape"),
    (np.zeros((2, 5, 4)), "shape"),
    (np.array([[1.0, np.nan, 0.0]]), "non-finite"),
    (np.array([[1.0, np.inf, 0.0]]), "non-finite"),
    (np.zeros((0, 3)), "empty"),
    (np.array([[1.0, 1.0, 2.0]]), "pen_lift"),
    ([], "no sketches"),
    ("abc", "dtype"),
  ],
)
def test_encode_bad_sketches(model, bad, needle):
  with pytest.raises(ZooError) as e:
    model.encode(bad)
  assert needle in _one_line(e)


def test_decode_bad_z(model):
  with pytest.raises(ZooError) as e:
    model.decode(np.zeros((2, model.z_size + 1)))
  assert "shape" in _one_line(e)
  with pytest.raises(ZooError) as e:
    model.decode(np.full((model.z_size,), np.nan))
  assert "non-finite" in _one_line(e)
  with pytest.raises(ConfigError) as e:
    model.decode(np.zeros((model.z_size,)), temperature=0.0)
  assert "temperature" in _one_line(e)


def test_reconstruct(model, data):
  out = model.reconstruct(data[:3], seed=0)
  assert len(out) == 3 and all(s.shape[1] == 3 and np.isfinite(s).all() for s in out)
  assert _same(out, model.reconstruct(data[:3], seed=0))


# ---------------------------------------------------------------------------- interpolation


def test_slerp_math():
  a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 3.0, 0.0])
  t = np.linspace(0, 1, 7)
  z = api.slerp(a, b, t)
  np.testing.assert_allclose(z[0], a, atol=1e-12)
  np.testing.assert_allclose(z[-1], b, atol=1e-12)
  norms = np.linalg.norm(z, axis=1)
  assert np.all(np.diff(norms) > 0) and norms.min() >= 1 - 1e-9 and norms.max() <= 3 + 1e-9
  c = np.array([0.0, 0.6, 0.8])
  np.testing.assert_allclose(np.linalg.norm(api.slerp(a, c, t), axis=1), 1.0)  # stays on the sphere
  angles = np.arccos(np.clip(api.slerp(a, c, t) @ a, -1, 1))
  np.testing.assert_allclose(np.diff(angles), np.diff(angles)[0])  # constant angular speed
  np.testing.assert_allclose(api.slerp(a, 2 * a, t), api.lerp(a, 2 * a, t))  # parallel: linear
  np.testing.assert_allclose(api.slerp(np.zeros(3), b, t), api.lerp(np.zeros(3), b, t))


def test_interpolate(model, data):
  z0, z1 = model.encode(data[:2])
  res = model.interpolate(data[0], data[1], 4, seed=0)
  assert res.mode == "slerp" and res.z.shape == (4, model.z_size) and len(res.sketches) == 4
  np.testing.assert_array_equal(res.z[0], z0)
  np.testing.assert_array_equal(res.z[-1], z1)
  np.testing.assert_allclose(res.z, api.slerp(z0, z1, res.t), rtol=1e-5, atol=1e-7)
  norms = np.linalg.norm(res.z, axis=1)
  lo, hi = sorted(np.linalg.norm([z0, z1], axis=1))
  assert np.all(norms >= lo * 0.7) and np.all(norms <= hi * 1.3)
  lin = model.interpolate(data[0], data[1], 4, mode="linear", seed=0)
  np.testing.assert_allclose(lin.z[1], (2 * z0 + z1) / 3, rtol=1e-5, atol=1e-7)
  with pytest.raises(ConfigError) as e:
    model.interpolate(data[0], data[1], 4, mode="cubic")
  assert "mode" in _one_line(e)
  with pytest.raises(ConfigError) as e:
    model.interpolate(data[0], data[1], 1)
  assert "steps" in _one_line(e)


# ---------------------------------------------------------------------------- completion


def test_complete_keeps_prefix(forced, data):
  prefix = data[0][:5]
  cands = forced.complete(prefix, 4, seed=0, temperature=0.8, max_len=MAX_LEN)
  assert len(cands) == 4
  for c in cands:
    assert len(prefix) < len(c) <= len(prefix) + MAX_LEN
    np.testing.assert_array_equal(c[: len(prefix)], prefix)
  assert len({c[len(prefix) :].tobytes() for c in cands}) == 4  # different candidates
  assert _same(cands, forced.complete(prefix, 4, seed=0, temperature=0.8, max_len=MAX_LEN))
  # The prefix matters: another prefix (same length) gives other continuations.
  other = forced.complete(data[1][:5], 4, seed=0, temperature=0.8, max_len=MAX_LEN)
  assert not np.allclose(other[0][5:7], cands[0][5:7])
  for latent in ("posterior", "prior"):
    out = forced.complete(prefix, 4, seed=0, latent=latent, max_len=MAX_LEN)
    assert all(np.array_equal(c[:5], prefix) for c in out)
  out = forced.complete(prefix, 4, z=np.zeros(forced.z_size), max_len=MAX_LEN)
  assert len(out) == 4
  with pytest.raises(ConfigError) as e:
    forced.complete(prefix, 2, latent="nope")
  assert "latent" in _one_line(e)
  with pytest.raises(ZooError) as e:
    forced.complete(np.array([[0.0, np.nan, 1.0]]), 2)
  assert "non-finite" in _one_line(e)


def test_unconditional_model(model):
  c = tiny_config(conditional=False)
  m = task_lib.make_model(c)
  params = jax.jit(functools.partial(m.init, deterministic=True))(
    {"params": jax.random.key(0)}, jnp.zeros((1, 3, 5)), jnp.ones((1,), jnp.int32)
  )["params"]
  um = api.SketchModel(m, params, c, max_seq_len=model.max_seq_len, scale_factor=3.0)
  with pytest.raises(ConfigError) as e:
    um.encode(np.zeros((3, 3)))
  assert "conditional" in _one_line(e)
  with pytest.raises(ConfigError):
    um.decode(np.zeros((1, 4)))
  out = um.sample(2, seed=0, max_len=3)
  assert len(out) == 2 and all(len(s) <= 3 for s in out)


# ---------------------------------------------------------------------------- inputs


def test_load_sketch_input(tmp_path, data):
  save_sketch_npz(tmp_path / "d.npz", {"train": data, "valid": data, "test": data[:2]})
  (one,) = api.load_sketch_input(f"{tmp_path}/d.npz:test:1")
  np.testing.assert_array_equal(one, data[1])
  assert len(api.load_sketch_input(f"{tmp_path}/d.npz")) == 2
  assert len(api.load_sketch_input(f"{tmp_path}/d.npz:valid")) == 3
  E.write_json(data[2], tmp_path / "s.json", decimals=None)
  np.testing.assert_array_equal(api.load_sketch_input(str(tmp_path / "s.json"))[0], data[2])
  for spec, needle in [
    (f"{tmp_path}/d.npz:test:5", "out of range"),
    (f"{tmp_path}/d.npz:test:x", "not an integer"),
    (f"{tmp_path}/d.npz:nope", "missing split"),
    (f"{tmp_path}/x.png", "expected a .json"),
    (f"{tmp_path}/none.json", "no such file"),
  ]:
    with pytest.raises(ZooError) as e:
      api.load_sketch_input(spec)
    assert needle in _one_line(e), spec


# ---------------------------------------------------------------------------- launcher


def _cli(workdir, *args):
  cmd = [sys.executable, "-m", "launch.sketch_rnn", "--workdir", str(workdir), *args]
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))
  return subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )


def _finish(p, timeout=300):
  out, err = p.communicate(timeout=timeout)
  return p.returncode, out, err


def _png(path):
  with Image.open(path) as im:
    im.load()
    return im.format, im.size


def test_cli_modes(run_dir, model, tmp_path, data):
  E.write_json(data[0][:6], tmp_path / "prefix.json")
  save_sketch_npz(tmp_path / "two.npz", {"train": data, "valid": data, "test": data[:2]})
  procs = {
    "sample": _cli(
      run_dir, "--mode=sample", "--num=4", "--seed=3", "--temperature=0.6", f"--output={tmp_path}/s"
    ),
    "eval": _cli(run_dir, "--mode=eval"),
    "interpolate": _cli(
      run_dir,
      "--mode=interpolate",
      "--steps=3",
      f"--input={tmp_path}/two.npz:test:0",
      f"--input={tmp_path}/two.npz:test:1",
      f"--output={tmp_path}/i",
    ),
    "complete": _cli(
      run_dir, "--mode=complete", f"--input={tmp_path}/prefix.json", "--num=3", "--greedy"
    ),
  }
  res = {k: _finish(p) for k, p in procs.items()}
  for k, (rc, out, err) in res.items():
    assert rc == 0, (k, err[-3000:])

  s = tmp_path / "s"
  for i in range(4):
    ET.parse(s / f"sample_{i:03d}.svg")
    with Image.open(s / f"sample_{i:03d}.gif") as im:
      assert im.format == "GIF" and im.size == (256, 256) and im.n_frames >= 1
    assert len(E.read_json(s / f"sample_{i:03d}.json")) == 1
  assert _png(s / "samples.png") == ("PNG", (256, 256))
  sk = E.read_json(s / "samples.json")
  assert len(sk) == 4
  # The CLI draws what the API draws with the same seed (up to JSON rounding).
  ref = model.sample(4, seed=3, temperature=0.6)
  for a, b in zip(sk, ref):
    np.testing.assert_allclose(a, b, atol=1e-3)

  rc, out, err = res["eval"]
  lines = [l for l in out.splitlines() if l.startswith("step 2 ")]
  assert len(lines) == 2 and "valid:" in lines[0] and "test:" in lines[1]
  for l in lines:
    for k in ("r_cost=", "kl_cost=", "loss="):
      assert k in l
  tb = run_dir / "tb_eval"
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tb))
  row = json.loads((tb / "metrics.jsonl").read_text().splitlines()[-1])
  assert row["step"] == 2 and np.isfinite(row["valid/r_cost"]) and "test/loss" in row
  # The same numbers as training's own evaluation at its last step (4 devices there, 1 here).
  trained = [json.loads(l) for l in (run_dir / "tb" / "metrics.jsonl").read_text().splitlines()]
  trained = [r for r in trained if "valid/r_cost" in r][-1]
  assert trained["step"] == 2
  for k in ("valid/r_cost", "valid/kl_cost", "valid/loss", "test/r_cost"):
    assert row[k] == pytest.approx(trained[k], rel=1e-4), k

  i = tmp_path / "i"
  assert _png(i / "interpolation.png") == ("PNG", (5 * 128, 128))  # A, 3 steps, B
  for k in range(3):
    ET.parse(i / f"interp_{k:03d}.svg")
  info = json.loads((i / "interpolation.json").read_text())
  assert np.asarray(info["z"]).shape == (3, TINY["z_size"]) and info["mode"] == "slerp"

  c = run_dir / "complete"
  assert _png(c / "completions.png") == ("PNG", (256, 256))  # prefix + 3 candidates, 2 x 2
  for k in range(3):
    (cand,) = E.read_json(c / f"completion_{k:03d}.json")
    np.testing.assert_allclose(cand[:6], data[0][:6], atol=1e-3)
    with Image.open(c / f"completion_{k:03d}.gif") as im:
      assert im.n_frames >= 2


def test_cli_errors(run_dir, tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text("[[1, NaN, 0]]")
  procs = [
    (_cli(run_dir, "--mode=bogus"), "--mode"),
    (_cli(tmp_path / "missing", "--mode=sample"), "does not exist"),
    (_cli(run_dir, "--mode=sample", "--temperature=0"), "temperature"),
    (_cli(run_dir, "--mode=complete", f"--input={bad}"), "non-finite"),
  ]
  for p, needle in procs:
    rc, out, err = _finish(p)
    lines = err.strip().splitlines()
    assert rc == 2, err[-2000:]
    assert lines[-1].startswith("error: ") and needle in lines[-1], lines[-3:]
    assert sum(l.startswith("error:") for l in lines) == 1 and "Traceback" not in err
