"""The generic loop: training, resume, SIGTERM, non-finite stop, multi-device equivalence."""

import os
import signal
import time

import chex
import jax
import numpy as np
import pytest

from zoo.errors import NonFiniteLossError
from zoo.training import loop, mesh as mesh_lib
from tests.toy_task import ToyStagedTask, ToyTask


def _cfg(**kw):
  base = dict(
    num_steps=40,
    seed=0,
    log_every=10,
    save_every=20,
    eval_every=20,
    sample_every=0,
    async_checkpoints=False,
  )
  base.update(kw)
  return loop.LoopConfig(**base)


def test_loss_falls_and_outputs_written(tmp_path):
  task = ToyTask()
  res = loop.train(task, _cfg(), str(tmp_path))
  assert res.step == 40
  assert res.history[-1]["loss"] < 0.2 * res.history[0]["loss"]
  assert task.evaluated == [20, 40]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "40"]
  tb = os.listdir(tmp_path / "tb")
  assert any(f.startswith("events.out.tfevents") for f in tb)
  assert "metrics.jsonl" in tb


def test_resume_matches_uninterrupted(tmp_path):
  full = loop.train(ToyTask(), _cfg(), str(tmp_path / "full"))
  # Stop after 20 steps (as a killed run leaves its last checkpoint), then rerun to 40.
  loop.train(ToyTask(), _cfg(num_steps=20), str(tmp_path / "split"))
  task = ToyTask()
  resumed = loop.train(task, _cfg(), str(tmp_path / "split"))
  assert resumed.history[0]["step"] == 30  # resumed at 20, first log at 30
  chex.assert_trees_all_close(resumed.state["params"], full.state["params"], rtol=1e-6)
  chex.assert_trees_all_close(resumed.state["opt_state"], full.state["opt_state"], rtol=1e-6)


def test_sigterm_saves_and_exits(tmp_path):
  task = ToyTask()
  orig = task.train_step
  calls = {"n": 0}

  class Once:
    sent = False

  def batches(start):
    step = start
    while True:
      if step == start + 7 and not Once.sent:
        Once.sent = True
        os.kill(os.getpid(), signal.SIGTERM)
      yield task.batch(step)
      step += 1

  task.train_batches = batches
  del orig, calls
  res = loop.train(task, _cfg(num_steps=1000, save_every=500), str(tmp_path))
  assert res.stopped_by_signal
  assert res.step == 8
  assert os.listdir(tmp_path / "checkpoints") == ["8"]


def test_the_host_runs_at_most_two_steps_ahead_of_the_device(tmp_path):
  # A slow device step (a host callback that sleeps) and a fast host: with asynchronous
  # dispatch unchecked, the loop would queue up to log_every steps, and a SIGTERM would
  # wait for all of them.
  task = ToyTask()
  done, lag = [], []
  step_fn = task.train_step

  def slow_step(state, batch, rng, step):
    new_state, metrics = step_fn(state, batch, rng, step)

    def finished(s):
      time.sleep(0.02)
      done.append(int(s))

    jax.debug.callback(finished, step, ordered=False)
    return new_state, metrics

  def batches(start):
    step = start
    while True:
      lag.append(step - len(done))  # steps asked for but not finished on the device
      yield task.batch(step)
      step += 1

  task.train_step, task.train_batches = slow_step, batches
  res = loop.train(
    task, _cfg(num_steps=60, log_every=50, save_every=0, eval_every=0), str(tmp_path)
  )
  assert res.step == 60 and sorted(done) == list(range(60))
  assert max(lag) <= 3, lag


def test_non_finite_loss_stops_and_keeps_good_checkpoint(tmp_path):
  with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* step 26.*step 20"):
    loop.train(ToyTask(nan_at=25), _cfg(), str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints") == ["20"]


def test_four_devices_match_one_device(tmp_path):
  assert jax.device_count() == 4, "conftest forces 4 CPU devices"
  one = loop.train(
    ToyTask(),
    _cfg(num_steps=15, save_every=0, eval_every=0),
    str(tmp_path / "one"),
    mesh=mesh_lib.make_mesh(jax.devices()[:1]),
  )
  four = loop.train(
    ToyTask(),
    _cfg(num_steps=15, save_every=0, eval_every=0),
    str(tmp_path / "four"),
    mesh=mesh_lib.make_mesh(),
  )
  chex.assert_trees_all_close(one.state["params"], four.state["params"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    [h["loss"] for h in one.history], [h["loss"] for h in four.history], rtol=1e-5
  )
  # The state really is replicated over 4 devices and the loop used all of them.
  assert len(four.state["params"]["w"].sharding.device_set) == 4


# ---------------------------------------------------------------------------
# Stages (progressive growing).
# ---------------------------------------------------------------------------


def _staged_cfg(**kw):
  return _cfg(**dict(dict(num_steps=15, log_every=1, save_every=0, eval_every=0), **kw))


def test_stages_grow_and_are_recorded(tmp_path):
  from zoo.training import checkpoint as ckpt_lib

  task = ToyStagedTask()
  res = loop.train(task, _staged_cfg(), str(tmp_path))
  assert res.step == 15 and task.grown == [1, 2]
  assert set(res.state["params"]) == {"w_0", "w_1", "w_2", "b"}
  # Each stage's end is checkpointed, evaluated and drawn.
  assert task.evaluated == [5, 10, 15] and task.sampled == [5, 10, 15]
  ck = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), read_only=True, async_save=False)
  assert [ck.read_meta(s)["stage"] for s in (5, 10, 15)] == [0, 1, 2]


@pytest.mark.parametrize("first_stop", [3, 5, 7])  # mid-stage, at a boundary, after growing
def test_staged_resume_matches_uninterrupted(tmp_path, first_stop):
  straight = loop.train(ToyStagedTask(), _staged_cfg(), str(tmp_path / "straight"))
  loop.train(ToyStagedTask(), _staged_cfg(num_steps=first_stop), str(tmp_path / "resumed"))
  task = ToyStagedTask()
  resumed = loop.train(task, _staged_cfg(), str(tmp_path / "resumed"))
  assert task.grown == [s for s in (1, 2) if 5 * s >= first_stop]
  chex.assert_trees_all_close(resumed.state, straight.state, rtol=1e-6, atol=1e-7)


def test_staged_resume_with_a_different_schedule_is_one_line_error(tmp_path):
  from zoo.errors import CheckpointError

  loop.train(ToyStagedTask(), _staged_cfg(num_steps=7), str(tmp_path))
  with pytest.raises(CheckpointError, match="stage 1"):
    loop.train(ToyStagedTask(stage_steps=10), _staged_cfg(), str(tmp_path))


def test_staged_four_devices_match_one_device(tmp_path):
  one = loop.train(
    ToyStagedTask(),
    _staged_cfg(),
    str(tmp_path / "one"),
    mesh=mesh_lib.make_mesh(jax.devices()[:1]),
  )
  four = loop.train(ToyStagedTask(), _staged_cfg(), str(tmp_path / "four"))
  chex.assert_trees_all_close(one.state, four.state, rtol=1e-5, atol=1e-6)
  assert len(four.state["params"]["w_2"].sharding.device_set) == 4
