"""A 2-process localhost run (jax.distributed) agrees with a 1-process run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, free_port


def _env(extra):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(k, None)
  env.update(extra)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def run_two_processes(task, tmp_path, local_devices: int = 1):
  """``(one, two)``: the npz of ``task`` trained by 1 process x 1 device and by
  2 processes x ``local_devices`` devices each."""
  port = free_port()
  procs = []
  for pid in range(2):
    extra = {
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": str(pid),
      "ZOO_TEST_LOCAL_DEVICES": str(local_devices),
    }
    if local_devices > 1:
      extra["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
    env = _env(extra)
    procs.append(
      subprocess.Popen(
        [
          sys.executable,
          "-m",
          "tests.multiprocess_worker",
          task,
          str(tmp_path / "two"),
          str(tmp_path / "two.npz"),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, o in zip(procs, outs):
    assert p.returncode == 0, o[-3000:]
  single = subprocess.run(
    [
      sys.executable,
      "-m",
      "tests.multiprocess_worker",
      task,
      str(tmp_path / "one"),
      str(tmp_path / "one.npz"),
    ],
    env=_env({}),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-3000:]
  return np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")


def _assert_same(one, two, rtol, atol=1e-6):
  assert set(one.files) == set(two.files)
  for k in one.files:
    np.testing.assert_allclose(one[k], two[k], rtol=rtol, atol=atol, err_msg=k)


def test_two_processes_match_one_toy(tmp_path):
  one, two = run_two_processes("toy", tmp_path)
  _assert_same(one, two, rtol=1e-5)


@pytest.mark.slow
def test_two_processes_of_two_devices_match_one_progan(tmp_path):
  # 4 devices over 2 processes against 1 device: two growth boundaries (4 -> 8 -> 16).
  one, two = run_two_processes("progan", tmp_path, local_devices=2)
  # As test_progan_task's 1-vs-4-device test: sums over 4 shards round differently.
  _assert_same(one, two, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_two_processes_match_one_sketch_rnn(tmp_path):
  one, two = run_two_processes("sketch_rnn", tmp_path)
  _assert_same(one, two, rtol=1e-4)


def test_a_killed_process_stops_the_other(tmp_path):
  """A peer that dies (SIGKILL) makes the survivor exit, non-zero and naming the cause,
  within a bounded time (ZOO_HEARTBEAT_TIMEOUT), instead of hanging in a collective."""
  port = free_port()
  procs = []
  for pid in range(2):
    env = _env(
      {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": str(pid),
        "ZOO_HEARTBEAT_TIMEOUT": "5",
      }
    )
    procs.append(
      subprocess.Popen(
        [sys.executable, "-m", "tests.multiprocess_worker", "toy_forever", str(tmp_path / "w")],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  try:
    # Wait until both train (the loop's first checkpoint dir appears), then kill process 1.
    deadline = time.time() + 300
    while not (tmp_path / "w" / "checkpoints").exists():
      assert time.time() < deadline and all(p.poll() is None for p in procs)
      time.sleep(0.5)
    time.sleep(3)
    assert procs[0].poll() is None
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    out = procs[0].communicate(timeout=120)[0]
    waited = time.time() - t0
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert procs[0].returncode != 0
  assert waited < 90, waited
  assert "another task died" in out or "heartbeat" in out, out[-2000:]
