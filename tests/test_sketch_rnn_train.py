"""End-to-end Sketch-RNN training: one/few steps per cell, CLI, resume after SIGKILL, 1 vs 4 devices."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from launch.configs import sketch_rnn as cfg_lib
from zoo.errors import ConfigError
from zoo.tasks import sketch_rnn
from zoo.training import mesh as mesh_lib
from tests.conftest import REPO, xla_flags

TINY = dict(
  batch_size=8,
  enc_rnn_size=8,
  dec_rnn_size=16,
  z_size=4,
  num_mixture=2,
  hyper_num_units=8,
  hyper_embedding_size=4,
  log_every=1,
  save_every=2,
  eval_every=2,
  sample_every=2,
  num_samples=4,
  eval_batch_size=8,
  num_steps=2,
)


def tiny_config(**kw):
  c = cfg_lib.get_config()
  c.update(TINY)
  c.update(kw)
  return c


def _read_jsonl(workdir):
  with open(os.path.join(workdir, "tb", "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


# The HyperLSTM compiles slowest; its numerics are covered in test_sketch_rnn_model.
@pytest.mark.parametrize(
  "cell", ["lstm", "layer_norm", pytest.param("hyper", marks=pytest.mark.slow)]
)
def test_few_steps_each_cell(tmp_path, cell):
  res = sketch_rnn.train_and_evaluate(tiny_config(enc_model=cell, dec_model=cell), str(tmp_path))
  assert res.step == 2
  assert all(np.isfinite(h["loss"]) for h in res.history)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  ev = res.eval_history[-1]
  for split in ("valid", "test"):
    for k in ("loss", "r_cost", "kl_cost"):
      assert np.isfinite(ev[f"{split}/{k}"])
  svg = (tmp_path / "samples" / "samples_00000002.svg").read_text()
  assert svg.lstrip().startswith("<") and "<svg" in svg and "</svg>" in svg
  info = json.loads((tmp_path / "config.json").read_text())
  assert info["derived"]["max_seq_len"] > 0 and info["derived"]["scale_factor"] > 0


def test_unconditional_trains(tmp_path):
  res = sketch_rnn.train_and_evaluate(tiny_config(conditional=False), str(tmp_path))
  assert "encoder_fw" not in res.state["params"]
  assert res.eval_history[-1]["valid/kl_cost"] == 0.0


def test_loss_falls_on_embedded_data(tmp_path):
  c = tiny_config(
    num_steps=60,
    batch_size=16,
    enc_rnn_size=16,
    dec_rnn_size=32,
    z_size=8,
    num_mixture=3,
    log_every=10,
    save_every=0,
    eval_every=0,
    sample_every=0,
  )
  res = sketch_rnn.train_and_evaluate(c, str(tmp_path))
  first, last = res.history[0]["r_cost"], res.history[-1]["r_cost"]
  assert last < first - 0.3, (first, last)


def test_metrics_logged(tmp_path):
  sketch_rnn.train_and_evaluate(tiny_config(), str(tmp_path))
  rows = _read_jsonl(tmp_path)
  keys = set().union(*rows)
  for k in (
    "train/loss",
    "train/r_cost",
    "train/kl_cost",
    "train/kl_weight",
    "train/lr",
    "train/grad_norm",
    "train/steps_per_sec",
    "valid/loss",
    "test/r_cost",
  ):
    assert k in keys, k
  kl_w = [r["train/kl_weight"] for r in rows if "train/kl_weight" in r]
  c = tiny_config()
  assert kl_w[0] == pytest.approx(c.kl_weight_start, rel=1e-5)  # step 0 at the first log


def test_four_devices_match_one(tmp_path):
  c = tiny_config(num_steps=2, eval_every=0, sample_every=0, save_every=0)
  one = sketch_rnn.train_and_evaluate(
    c, str(tmp_path / "one"), mesh=mesh_lib.make_mesh(jax.devices()[:1])
  )
  four = sketch_rnn.train_and_evaluate(c, str(tmp_path / "four"), mesh=mesh_lib.make_mesh())
  np.testing.assert_allclose(
    [h["loss"] for h in one.history], [h["loss"] for h in four.history], rtol=1e-5
  )
  chex.assert_trees_all_close(one.state["params"], four.state["params"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
  "key,value,needle",
  [
    ("enc_model", "gru", "enc_model"),
    ("recurrent_dropout_prob", 1.5, "recurrent_dropout_prob"),
    ("batch_size", 6, "divisible"),
    ("data_set", "/nonexistent/sketches.npz", "sketches.npz"),
  ],
)
def test_bad_config_one_line_error(tmp_path, key, value, needle):
  c = tiny_config(**{key: value})
  with pytest.raises(Exception) as e:
    sketch_rnn.train_and_evaluate(c, str(tmp_path))
  from zoo.errors import ZooError

  assert isinstance(e.value, (ZooError, ConfigError)), type(e.value)
  msg = str(e.value)
  assert needle in msg and "\n" not in msg


def _cli(workdir, *overrides, **kw):
  args = [
    sys.executable,
    "-m",
    "launch.sketch_rnn",
    "--config",
    "launch/configs/sketch_rnn.py",
    "--workdir",
    str(workdir),
  ]
  args += [f"--config.{k}={v}" for k, v in TINY.items()] + list(overrides)
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))
  return subprocess.Popen(
    args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
  )


def test_cli_bad_value_prints_one_line(tmp_path):
  p = _cli(tmp_path, "--config.dec_model=gru")
  out, err = p.communicate(timeout=300)
  assert p.returncode == 2
  assert err.strip().splitlines()[-1].startswith("error: bad sketch_rnn config: dec_model")
  assert "Traceback" not in err


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
  common = [
    "--config.num_steps=14",
    "--config.save_every=4",
    "--config.log_every=1",
    "--config.eval_every=0",
    "--config.sample_every=0",
  ]
  full = _cli(tmp_path / "full", *common)
  assert full.wait(timeout=600) == 0, full.stderr.read()[-2000:]
  # Same run, killed with SIGKILL once it has written a checkpoint past step 4.
  victim = _cli(tmp_path / "killed", *common, "--config.max_to_keep=10")
  ckdir = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline:
    done = [d for d in (os.listdir(ckdir) if ckdir.exists() else []) if d.isdigit()]
    if any(int(d) >= 8 for d in done):
      break
    time.sleep(0.05)
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  resumed = _cli(tmp_path / "killed", *common)
  out, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err[-2000:]
  assert "resumed from step" in out
  full_rows = {
    r["step"]: r["train/loss"] for r in _read_jsonl(tmp_path / "full") if "train/loss" in r
  }
  res_rows = {
    r["step"]: r["train/loss"] for r in _read_jsonl(tmp_path / "killed") if "train/loss" in r
  }
  assert res_rows[14] == pytest.approx(full_rows[14], rel=1e-5)
  assert res_rows[13] == pytest.approx(full_rows[13], rel=1e-5)


@pytest.mark.slow
def test_aaron_sheep_magenta_size_few_steps(tmp_path, sheep_path):
  c = cfg_lib.get_config("aaron_sheep")
  c.update(
    dict(
      data_set=str(sheep_path),
      num_steps=2,
      log_every=1,
      save_every=2,
      eval_every=0,
      sample_every=2,
      num_samples=2,
      batch_size=20,
    )
  )
  res = sketch_rnn.train_and_evaluate(c, str(tmp_path))
  assert res.step == 2 and np.isfinite(res.history[-1]["loss"])
  info = json.loads((tmp_path / "config.json").read_text())
  assert info["derived"]["scale_factor"] == pytest.approx(18.52, abs=0.05)
  assert info["derived"]["max_seq_len"] == 250


def test_sigterm_saves_checkpoint_before_exit(tmp_path):
  p = _cli(
    tmp_path,
    "--config.num_steps=100000",
    "--config.save_every=100000",
    "--config.log_every=1",
    "--config.eval_every=0",
    "--config.sample_every=0",
  )
  tb = tmp_path / "tb" / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and not (tb.exists() and tb.read_text().count("\n") >= 3):
    time.sleep(0.05)
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=300)
  assert p.returncode == 0, err[-2000:]
  steps = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert len(steps) == 1 and 3 <= steps[0] < 100000
  assert "received signal" in out + err
