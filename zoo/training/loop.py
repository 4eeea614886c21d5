"""The generic training loop shared by every system in the zoo.

A *task* bundles one system's model, losses and data (see :class:`Task`). The
loop compiles ``task.train_step`` once with ``jax.jit`` over a 1-D ``data``
mesh (batch sharded, state replicated, state buffers donated), derives the
step's RNG as ``fold_in(key, step)`` and reads batch ``step`` from the task's
deterministic stream, so a run restarted from its workdir resumes exactly where
it stopped: params, optimizer state, step, RNG and data position.

Stages (progressive growing): a task that defines ``stage_at(step)`` trains in
stages whose state shapes differ. It then provides ``init_state(rng, stage)`` (a
fresh state at that stage), ``grow(state, rng, stage)`` (the state of ``stage - 1``
turned into one of ``stage``, by parameter surgery) and
``train_step(state, batch, rng, step, stage)``. The loop compiles one step per
stage, grows the state when ``stage_at`` moves on (with a key that depends only
on the seed and the stage, so a resumed run grows exactly as an uninterrupted
one), evaluates and writes samples at the end of every stage, and records the
state's stage in each checkpoint, from which a resume rebuilds the abstract state.

Every ``save_every`` steps, at the end, and on SIGTERM it writes an orbax
checkpoint; a non-finite loss stops the run with :class:`NonFiniteLossError`
before anything bad is saved, keeping the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import CheckpointError, NonFiniteLossError
from zoo.training import checkpoint as ckpt_lib
from zoo.training import mesh as mesh_lib
from zoo.training.metrics import MetricWriter, Progress

State = Any
Batch = Any


class Task(Protocol):
  """What the loop needs from a system (Sketch-RNN, pix2pix, ...)."""

  name: str

  def init_state(self, rng: jax.Array) -> State:
    """Fresh train state (params, optimizer state, ...); traced under jit."""

  def train_step(
    self, state: State, batch: Batch, rng: jax.Array, step: jax.Array
  ) -> tuple[State, Mapping[str, jax.Array]]:
    """One pure update; metrics must include ``loss`` (a scalar)."""

  def train_batches(self, start_step: int) -> Iterator[Batch]:
    """This process's rows of global batches ``start_step, start_step+1, ...``."""

  def evaluate(self, state: State, step: int) -> Mapping[str, float]:
    """Host-side evaluation (all processes call it); ``{name: value}``."""

  def write_samples(self, state: State, step: int, workdir: str, writer: MetricWriter) -> None:
    """Writes samples a person would look at (all processes call it)."""


def is_staged(task) -> bool:
  """Whether ``task`` trains in stages of different state shapes (see the module doc)."""
  return callable(getattr(task, "stage_at", None))


@dataclasses.dataclass
class LoopConfig:
  num_steps: int
  seed: int = 0
  log_every: int = 50
  save_every: int = 500
  eval_every: int = 0  # 0: only at the end
  sample_every: int = 0  # 0: only at the end
  max_to_keep: int = 3
  async_checkpoints: bool = True

  @classmethod
  def from_config(cls, config) -> "LoopConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: config[k] for k in fields if k in config})


@dataclasses.dataclass
class TrainResult:
  state: State
  step: int
  history: list[dict]  # logged train metrics, one dict per log point (with 'step')
  eval_history: list[dict]
  stopped_by_signal: bool = False


class _SignalFlag:
  """Turns SIGTERM (and SIGINT) into a flag checked between steps."""

  def __init__(self):
    self.received: int | None = None
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # second Ctrl-C: stop now
    self.received = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _mean_metrics(pending: list[tuple[int, Mapping[str, Any]]]) -> dict[str, float]:
  keys = pending[0][1].keys()
  return {k: float(np.mean([np.asarray(m[k]) for _, m in pending])) for k in keys}


def _check_finite(pending, workdir: str, ck: ckpt_lib.Checkpointer) -> None:
  for step, m in pending:
    loss = float(np.asarray(m["loss"]))
    if not math.isfinite(loss):
      last = ck.latest_step()
      kept = (
        f"the last good checkpoint (step {last}) is kept in {ck.directory}"
        if last is not None
        else "no checkpoint had been written yet"
      )
      raise NonFiniteLossError(
        f"non-finite loss ({loss}) at step {step + 1} in {workdir}; stopped, {kept}. "
        "Try a lower learning_rate or grad_clip."
      )


def train(
  task: Task,
  cfg: LoopConfig,
  workdir: str,
  *,
  mesh=None,
  log_fn: Callable[[str], None] | None = None,
) -> TrainResult:
  """Runs (or resumes) training of ``task`` in ``workdir``; returns the final state."""
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  repl = mesh_lib.replicated(mesh)
  dsh = mesh_lib.data_sharded(mesh)
  os.makedirs(workdir, exist_ok=True)

  key = jax.random.key(cfg.seed)
  init_key, train_key = jax.random.split(key)
  ck = ckpt_lib.Checkpointer(
    ckpt_lib.checkpoint_dir(workdir), max_to_keep=cfg.max_to_keep, async_save=cfg.async_checkpoints
  )
  writer = MetricWriter(os.path.join(workdir, "tb"))
  say = log_fn or (lambda msg: print(msg, flush=True) if jax.process_index() == 0 else None)

  staged = is_staged(task)
  start = ck.latest_step()
  if start is None:
    stage = task.stage_at(0) if staged else None
    init = functools.partial(task.init_state, stage=stage) if staged else task.init_state
    state = jax.jit(init, out_shardings=repl)(init_key)
    start = 0
  else:
    meta = ck.read_meta(start) if staged else {}
    stage = int(meta.get("stage", 0)) if staged else None
    if staged and stage > task.stage_at(int(meta.get("step", start))):
      raise CheckpointError(
        f"the step-{start} checkpoint in {workdir} is at stage {stage}, but this config's "
        f"schedule reaches stage {stage} only later (step {start} is in stage "
        f"{task.stage_at(start)}): the schedule differs from the run's"
      )
    init = functools.partial(task.init_state, stage=stage) if staged else task.init_state
    abstract = jax.eval_shape(init, init_key)
    abstract = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract
    )
    state, meta = ck.restore(abstract, start)
    start = int(meta["step"])
    at = f" (stage {stage})" if staged else ""
    say(f"[{task.name}] resumed from step {start}{at} in {workdir}")

  def step_fn(state, batch, step, stage=None):
    rng = jax.random.fold_in(train_key, step)
    if stage is None:
      return task.train_step(state, batch, rng, step)
    return task.train_step(state, batch, rng, step, stage)

  compiled: dict[Any, Callable] = {}

  def jstep(stage):
    if stage not in compiled:  # one compilation per stage: shapes and networks differ
      compiled[stage] = jax.jit(
        functools.partial(step_fn, stage=stage),
        in_shardings=(repl, dsh, repl),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
      )
    return compiled[stage]

  def grow(state, new_stage):
    rng = jax.random.fold_in(init_key, new_stage)  # same growth on resume
    fn = jax.jit(functools.partial(task.grow, stage=new_stage), out_shardings=repl)
    return fn(state, rng)

  def meta_of(stage):
    return {"task": task.name, **({"stage": int(stage)} if staged else {})}

  history: list[dict] = []
  eval_history: list[dict] = []
  pending: list[tuple[int, Any]] = []
  step = start
  stopped = False

  def every(n: int, s: int) -> bool:
    return n > 0 and s % n == 0

  progress = Progress(total=cfg.num_steps, initial=start, desc=task.name)
  t_last, s_last = time.perf_counter(), start
  batches = task.train_batches(start)
  try:
    with _SignalFlag() as sig:
      while step < cfg.num_steps:
        if staged and task.stage_at(step) != stage:
          new_stage = task.stage_at(step)
          if new_stage != stage + 1:
            raise CheckpointError(
              f"cannot go from stage {stage} to stage {new_stage} at step {step}: "
              "stages must follow each other"
            )
          state, stage = grow(state, new_stage), new_stage
          progress.write(f"[{task.name}] step {step}: grew to stage {stage}")
        batch = mesh_lib.to_global(next(batches), mesh)
        step_arr = mesh_lib.replicate(np.int32(step), mesh)
        state, metrics = jstep(stage)(state, batch, step_arr)
        pending.append((step, metrics))
        step += 1
        progress.update(1)
        last = step == cfg.num_steps
        stop = sig.received is not None
        # The end of a stage is kept, evaluated and drawn like the end of the run.
        stage_end = staged and not last and task.stage_at(step) != stage
        do_save = every(cfg.save_every, step) or last or stop or stage_end
        do_eval = every(cfg.eval_every, step) or last or stage_end
        do_sample = every(cfg.sample_every, step) or last or stage_end
        if every(cfg.log_every, step) or do_save or do_eval or stop:
          pending = jax.device_get(pending)
          _check_finite(pending, workdir, ck)
          now = time.perf_counter()
          logged = _mean_metrics(pending)
          logged["steps_per_sec"] = (step - s_last) / max(now - t_last, 1e-9)
          t_last, s_last = now, step
          writer.scalars(step, {f"train/{k}": v for k, v in logged.items()})
          history.append({"step": step, **logged})
          progress.update(0, loss=logged["loss"])
          pending = []
        if do_save:
          ck.save(step, state, meta_of(stage))
        if do_eval:
          results = dict(task.evaluate(state, step))
          if results:
            writer.scalars(step, results)
            eval_history.append({"step": step, **results})
            progress.write(
              f"[{task.name}] step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items())
            )
        if do_sample:
          task.write_samples(state, step, workdir, writer)
        if stop:
          stopped = True
          progress.write(
            f"[{task.name}] received signal {sig.received}: "
            f"saved checkpoint at step {step}, exiting"
          )
          break
  finally:
    progress.close()
    ck.close()
    writer.close()
  return TrainResult(
    state=state, step=step, history=history, eval_history=eval_history, stopped_by_signal=stopped
  )
