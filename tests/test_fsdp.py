"""The data x model mesh: train-state leaves split over the model axis (FSDP).

4 CPU devices as 2 (data) x 2 (model) give the step of 1 device, for pix2pix and for
StyleGAN across a growth boundary; the launchers' ``--mesh_model`` flag.
"""

import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tests.conftest import REPO, xla_flags
from tests.test_pix2pix import tiny_config as pix2pix_config
from tests.test_stylegan import tiny_config as stylegan_config
from zoo.errors import ConfigError
from zoo.tasks import pix2pix as pix2pix_task
from zoo.tasks import stylegan as stylegan_task
from zoo.training import mesh as mesh_lib


def test_mesh_and_leaf_shardings():
  one_d = mesh_lib.make_mesh(jax.devices()[:4])
  assert one_d.axis_names == ("data",) and mesh_lib.model_axis_size(one_d) == 1
  mesh = mesh_lib.make_mesh(jax.devices()[:4], model=2)
  assert dict(mesh.shape) == {"data": 2, "model": 2}
  # Consecutive devices form a model group.
  assert [d.id for d in mesh.devices[0]] == [d.id for d in jax.devices()[:2]]
  assert mesh_lib.data_sharded(mesh).spec == P(("data", "model"))
  big = mesh_lib.MIN_SHARDED_ELEMENTS
  # Split along the largest dimension the model axis divides.
  assert mesh_lib.leaf_sharding(mesh, (3, 3, 64, big)).spec == P(None, None, None, "model")
  assert mesh_lib.leaf_sharding(mesh, (big + 1, 64)).spec == P(None, "model")
  # Small leaves, odd shapes and a 1-D mesh: replicated.
  for m, shape in ((mesh, (big // 2,)), (mesh, (big + 1,)), (mesh, ()), (one_d, (big, 4))):
    assert mesh_lib.leaf_sharding(m, shape).spec == P()
  with pytest.raises(ConfigError, match="does not divide"):
    mesh_lib.make_mesh(jax.devices()[:4], model=3)
  for bad in (0, -2, 1.5, True):
    with pytest.raises(ConfigError, match="positive integer"):
      mesh_lib.make_mesh(jax.devices()[:4], model=bad)


def _sharded_leaves(state):
  """Paths of the leaves split over the model axis, with the fraction one device holds."""
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(state):
    if "model" in jax.tree.leaves(tuple(x.sharding.spec)):
      out[jax.tree_util.keystr(path)] = x.addressable_shards[0].data.size / x.size
  return out


@pytest.fixture
def small_leaves_shard(monkeypatch):
  # The tiny test nets have no leaf of the production threshold's size.
  monkeypatch.setattr(mesh_lib, "MIN_SHARDED_ELEMENTS", 256)


def test_pix2pix_two_by_two_matches_one_device(small_leaves_shard, tmp_path):
  c = pix2pix_config(num_steps=3, save_every=0)
  runs = {
    name: pix2pix_task.train_and_evaluate(c, str(tmp_path / name), mesh=mesh)
    for name, mesh in (
      ("fsdp", mesh_lib.make_mesh(jax.devices()[:4], model=2)),
      ("one", mesh_lib.make_mesh(jax.devices()[:1])),
    )
  }
  split = _sharded_leaves(runs["fsdp"].state)
  # Every conv kernel of G and D is split; each device holds half of it.
  assert any("['g']['params']" in k and "kernel" in k for k in split)
  assert any("['d']['opt_state']" in k for k in split)
  assert set(split.values()) == {0.5}
  for a, b in zip(runs["fsdp"].history, runs["one"].history, strict=True):
    for k in ("G_GAN", "G_L1", "D"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, err_msg=f"{k} at {a['step']}")
  # Adam scales every element's step to about lr (2e-4): where a gradient is near zero,
  # summation-order noise alone can move a weight by a fraction of that step.
  chex.assert_trees_all_close(
    jax.device_get(runs["fsdp"].state), jax.device_get(runs["one"].state), rtol=1e-4, atol=1e-4
  )
  # The checkpoint holds the whole state: a 1-device resume reads it back.
  resumed = pix2pix_task.train_and_evaluate(
    pix2pix_config(num_steps=4, save_every=0),
    str(tmp_path / "fsdp"),
    mesh=mesh_lib.make_mesh(jax.devices()[:1]),
  )
  assert resumed.step == 4


@pytest.mark.slow
def test_stylegan_two_by_two_matches_one_device_across_growth(small_leaves_shard, tmp_path):
  c = stylegan_config(
    **{"schedule.fade_images": 16, "schedule.stable_images": 16, "schedule.final_stable_images": 0}
  )
  runs = {
    name: stylegan_task.train_and_evaluate(c, str(tmp_path / name), mesh=mesh, log=None)
    for name, mesh in (
      ("fsdp", mesh_lib.make_mesh(jax.devices()[:4], model=2)),
      ("one", mesh_lib.make_mesh(jax.devices()[:1])),
    )
  }
  assert runs["one"].step == 4 and "block_16x16" in runs["one"].state["g"]["params"]["synthesis"]
  assert any("block_16x16" in k for k in _sharded_leaves(runs["fsdp"].state))
  for a, b in zip(runs["fsdp"].history, runs["one"].history, strict=True):
    for k in ("D", "G", "D_r1"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, err_msg=f"{k} at {a['step']}")
  # As tests/test_multiprocess.py: StyleGAN's first-layer gradients are rounding noise that
  # Adam turns into +-lr steps, so its params agree to a few learning-rate steps.
  params = [jax.device_get({n: r.state[n]["params"] for n in ("g", "d")}) for r in runs.values()]
  chex.assert_trees_all_close(*params, rtol=0, atol=5e-3)


def test_launcher_mesh_model_flag(tmp_path):
  def launch(*args):
    return subprocess.run(
      [sys.executable, "-m", "launch.pix2pix", f"--workdir={tmp_path / 'w'}", *args],
      cwd=REPO,
      env={**os.environ, "XLA_FLAGS": xla_flags(4)},
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )

  for value, words in (("3", "does not divide the 4 devices"), ("0", "positive integer")):
    p = launch(f"--mesh_model={value}")
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("error:") and words in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "w").exists()
