"""A 2-process localhost run (jax.distributed) agrees with a 1-process run."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(extra):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(k, None)
  env.update(extra)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def run_two_processes(task, tmp_path):
  port = _free_port()
  procs = []
  for pid in range(2):
    env = _env(
      {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": str(pid),
      }
    )
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


def _assert_same(one, two, rtol):
  assert set(one.files) == set(two.files)
  for k in one.files:
    np.testing.assert_allclose(one[k], two[k], rtol=rtol, atol=1e-6, err_msg=k)


def test_two_processes_match_one_toy(tmp_path):
  one, two = run_two_processes("toy", tmp_path)
  _assert_same(one, two, rtol=1e-5)


@pytest.mark.slow
def test_two_processes_match_one_sketch_rnn(tmp_path):
  one, two = run_two_processes("sketch_rnn", tmp_path)
  _assert_same(one, two, rtol=1e-4)
