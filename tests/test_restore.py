"""One restore from a workdir (zoo.training.restore) and one export format (zoo.models.export)."""

import functools
import json
import os

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.errors import CheckpointError
from zoo.models import export as export_lib
from zoo.models import face_classifier as fc_models
from zoo.models import pix2pix as p2p_models
from zoo.training import checkpoint as ckpt_lib
from zoo.training import restore as restore_lib


def _one_line(excinfo) -> str:
  msg = str(excinfo.value)
  assert msg and "\n" not in msg, msg
  return msg


def _state(size: int, value: float, stage: int) -> dict:
  w = {"kernel": jnp.full((size, 2), value, jnp.float32)}
  if stage >= 2:
    w["to_rgb"] = jnp.full((3,), value + 0.5, jnp.float32)
  return {"g": {"params": w, "opt_state": {"mu": jnp.zeros((size,), jnp.float32)}}}


def _abstract(config: dict, meta: dict):
  return jax.eval_shape(lambda: _state(config["size"], 0.0, meta.get("stage", 1)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A workdir with config.json and checkpoints at steps 1 (stage 1) and 3 (stage 2)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  ckpt_lib.write_run_config(workdir, {"size": 4, "name": "tiny"})
  ck = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir), async_save=False)
  ck.save(1, _state(4, 1.0, stage=1), {"stage": 1})
  ck.save(3, _state(4, 3.0, stage=2), {"stage": 2})
  ck.close()
  return workdir


def test_restore_latest_and_given_step(run):
  r = restore_lib.restore(run, _abstract)
  assert r.workdir == run and r.step == 3 and r.meta == {"step": 3, "stage": 2}
  assert r.config == {"size": 4, "name": "tiny"}
  want = _state(4, 3.0, stage=2)
  assert jax.tree.structure(r.state) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(r.state), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)
  # The abstract state follows the meta: step 1 is stage 1 (no to_rgb).
  r1 = restore_lib.restore(run, _abstract, step=1)
  assert r1.step == 1 and r1.meta["stage"] == 1 and "to_rgb" not in r1.state["g"]["params"]
  np.testing.assert_array_equal(r1.state["g"]["params"]["kernel"], np.ones((4, 2)))
  # An abstract pytree instead of a function.
  r2 = restore_lib.restore(run, jax.eval_shape(lambda: _state(4, 0.0, 1)), step=1)
  np.testing.assert_array_equal(r2.state["g"]["params"]["kernel"], np.ones((4, 2)))


def test_read_meta_reads_only_the_meta(run):
  ck = ckpt_lib.open_for_reading(run)
  try:
    assert ck.all_steps() == [1, 3]
    assert ck.read_meta() == {"step": 3, "stage": 2}
    assert ck.read_meta(1) == {"step": 1, "stage": 1}
    with pytest.raises(CheckpointError) as e:
      ck.read_meta(2)
    assert "step 2" in _one_line(e)
  finally:
    ck.close()


def test_missing_things_are_one_line_errors(run, tmp_path):
  with pytest.raises(CheckpointError) as e:
    restore_lib.restore(tmp_path / "nope", _abstract)
  assert "does not exist" in _one_line(e)
  with pytest.raises(CheckpointError) as e:
    restore_lib.restore(tmp_path, _abstract)
  assert "config.json" in _one_line(e)
  with pytest.raises(CheckpointError) as e:
    restore_lib.restore(tmp_path, _abstract, require_config=False)
  assert "no checkpoint directory" in _one_line(e)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(CheckpointError) as e:
    restore_lib.restore(tmp_path, _abstract, require_config=False)
  assert "no checkpoint" in _one_line(e)
  with pytest.raises(CheckpointError) as e:
    restore_lib.restore(run, _abstract, step=2)
  assert "no checkpoint at step 2" in _one_line(e) and "1, 3" in str(e.value)


def test_incompatible_state_is_one_line_error(run):
  bigger = lambda config, meta: _abstract({"size": 5}, meta)  # another model size
  with pytest.raises(CheckpointError) as e:
    restore_lib.restore(run, bigger)
  assert "does not match" in _one_line(e) and "step-3" in str(e.value)
  assert "g/params/kernel has shape (4, 2) in the checkpoint, (5, 2) here" in str(e.value)
  with pytest.raises(CheckpointError) as e:  # another structure (stage 1 layout at step 3)
    restore_lib.restore(run, lambda config, meta: _abstract(config, {"stage": 1}))
  assert "does not match" in _one_line(e) and "g/params/to_rgb" in str(e.value)
  with pytest.raises(CheckpointError) as e:  # stage 2 layout at step 1
    restore_lib.restore(run, lambda config, meta: _abstract(config, {"stage": 2}), step=1)
  assert "lacks g/params/to_rgb" in _one_line(e)
  with pytest.raises(CheckpointError) as e:  # the config lacks what the builder needs
    restore_lib.restore(run, lambda config, meta: _abstract({}, meta))
  assert "cannot rebuild" in _one_line(e) and "KeyError" in str(e.value)


def test_generator_variables_ema_vs_raw():
  g = {"params": {"w": 1}, "opt_state": (), "batch_stats": {"m": 2}}
  state = {"g": g, "d": {"params": {"w": 9}}, "g_ema": {"w": 5}}
  assert restore_lib.generator_variables(state) == {"params": {"w": 5}, "batch_stats": {"m": 2}}
  assert restore_lib.generator_variables(state, ema=False) == {
    "params": {"w": 1},
    "batch_stats": {"m": 2},
  }
  no_ema = {"g": {"params": {"w": 1}, "opt_state": ()}, "d": {}}
  assert restore_lib.generator_variables(no_ema) == {"params": {"w": 1}}


# ---------------------------------------------------------------------------- export


def _random_variables(module, *args, **kwargs):
  """Variables of ``module`` drawn with numpy (no XLA compilation of an init)."""
  abstract = jax.eval_shape(functools.partial(module.init, **kwargs), jax.random.key(0), *args)
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype) * 0.2, abstract)


@pytest.fixture(scope="module")
def unet():
  g = p2p_models.UNetGenerator(num_downs=2, ngf=4, output_nc=1, use_dropout=False)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3), minval=-1, maxval=1)
  v = _random_variables(g, x, train=False)
  return g, v, x


def test_export_round_trip_same_outputs(unet, tmp_path):
  g, v, x = unet
  paths = export_lib.save(str(tmp_path), g, v, info={"step": 7, "image_size": [8, 8]})
  assert paths == (str(tmp_path / "generator.msgpack"), str(tmp_path / "generator.json"))
  desc = json.loads((tmp_path / "generator.json").read_text())
  assert desc["format"] == "zoo.generator/1"
  assert desc["module"] == "zoo.models.pix2pix.UNetGenerator"
  assert desc["kwargs"]["num_downs"] == 2 and desc["info"]["step"] == 7
  for path in (tmp_path, tmp_path / "generator.json", tmp_path / "generator.msgpack"):
    ex = export_lib.load(str(path))
    assert ex.module == g and ex.info == {"step": 7, "image_size": [8, 8]}
    assert set(ex.variables) == {"params", "batch_stats"}
  np.testing.assert_allclose(
    ex.module.apply(ex.variables, x, train=False), g.apply(v, x, train=False), atol=1e-6
  )


def test_export_tuple_fields_come_back_as_tuples(tmp_path):
  m = fc_models.AttributeCNN(input_size=8, widths=(4, 8), convs_per_stage=1, feature_dim=4)
  x = jnp.zeros((1, 8, 8, 3))
  v = _random_variables(m, x)
  export_lib.save(str(tmp_path), m, v, name="classifier")
  assert json.loads((tmp_path / "classifier.json").read_text())["kwargs"]["widths"] == [4, 8]
  ex = export_lib.load(str(tmp_path), name="classifier")
  assert ex.module.widths == (4, 8) and ex.module == m
  hash(ex.module)  # usable as a static jit argument
  np.testing.assert_allclose(ex.module.apply(ex.variables, x)[1], m.apply(v, x)[1])


def _write_desc(tmp_path, **changes):
  desc = json.loads((tmp_path / "generator.json").read_text())
  desc.update(changes)
  (tmp_path / "generator.json").write_text(json.dumps(desc))


@pytest.mark.parametrize(
  "module",
  [
    "os.system",
    "builtins.eval",
    "zoo.tasks.pix2pix.Pix2PixTask",
    "zoo.models.pix2pix.os.system",
    "zoo.models.../x.Y",
    "zoo.models",
    None,
  ],
)
def test_export_refuses_modules_outside_zoo_models(unet, tmp_path, module):
  g, v, _ = unet
  export_lib.save(str(tmp_path), g, v)
  _write_desc(tmp_path, module=module)
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "zoo.models" in _one_line(e) or "not a flax module" in str(e.value)


def test_export_refuses_non_module_and_unknown_fields(unet, tmp_path):
  g, v, _ = unet
  export_lib.save(str(tmp_path), g, v)
  _write_desc(tmp_path, module="zoo.models.pix2pix.make_generator")
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "not a flax module" in _one_line(e)
  _write_desc(tmp_path, module="zoo.models.pix2pix.UNetGenerator", kwargs={"bogus": 1})
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "bogus" in _one_line(e)


def test_export_corrupt_or_missing_files_are_one_line_errors(unet, tmp_path):
  g, v, _ = unet
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "no exported model" in _one_line(e)
  export_lib.save(str(tmp_path), g, v)
  params = tmp_path / "generator.msgpack"
  raw = params.read_bytes()
  params.write_bytes(raw[: len(raw) // 2])  # truncated
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "generator.msgpack" in _one_line(e)
  params.write_bytes(b"\xc1 not msgpack at all")
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "corrupt" in _one_line(e)
  # A readable msgpack with other variables than the description lists.
  other = jax.tree.map(lambda a: np.zeros((1,) + a.shape, a.dtype), jax.device_get(v))
  params.write_bytes(flax.serialization.to_bytes(other))
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "does not match" in _one_line(e)
  os.remove(params)
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "cannot read" in _one_line(e)
  (tmp_path / "generator.json").write_text("{not json")
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "unreadable" in _one_line(e)
  (tmp_path / "generator.json").write_text(json.dumps({"format": "other/9"}))
  with pytest.raises(CheckpointError) as e:
    export_lib.load(str(tmp_path))
  assert "format" in _one_line(e)


class _LocalModule(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(x)


def test_export_save_refuses_modules_it_could_not_load(tmp_path):
  with pytest.raises(ValueError, match="zoo.models"):
    export_lib.save(str(tmp_path), _LocalModule(), {"params": {}})
