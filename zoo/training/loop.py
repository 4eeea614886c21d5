"""The generic training loop shared by every system in the zoo.

A *task* bundles one system's model, losses and data (see :class:`Task`). The
loop compiles ``task.train_step`` once with ``jax.jit`` over a 1-D ``data``
mesh (batch sharded, state replicated, state buffers donated), derives the
step's RNG as ``fold_in(key, step)`` and reads batch ``step`` from the task's
deterministic stream, so a run restarted from its workdir resumes exactly where
it stopped: params, optimizer state, step, RNG and data position.

Every ``save_every`` steps, at the end, and on SIGTERM it writes an orbax
checkpoint; a non-finite loss stops the run with :class:`NonFiniteLossError`
before anything bad is saved, keeping the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import NonFiniteLossError
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

  init_fn = jax.jit(task.init_state, out_shardings=repl)
  start = ck.latest_step()
  if start is None:
    state = init_fn(init_key)
    start = 0
  else:
    abstract = jax.eval_shape(task.init_state, init_key)
    abstract = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract
    )
    state, meta = ck.restore(abstract, start)
    start = int(meta["step"])
    say(f"[{task.name}] resumed from step {start} in {workdir}")

  def step_fn(state, batch, step):
    rng = jax.random.fold_in(train_key, step)
    return task.train_step(state, batch, rng, step)

  jstep = jax.jit(
    step_fn, in_shardings=(repl, dsh, repl), out_shardings=(repl, repl), donate_argnums=(0,)
  )

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
        batch = mesh_lib.to_global(next(batches), mesh)
        step_arr = mesh_lib.replicate(np.int32(step), mesh)
        state, metrics = jstep(state, batch, step_arr)
        pending.append((step, metrics))
        step += 1
        progress.update(1)
        last = step == cfg.num_steps
        stop = sig.received is not None
        do_save = every(cfg.save_every, step) or last or stop
        do_eval = every(cfg.eval_every, step) or last
        do_sample = every(cfg.sample_every, step) or last
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
          ck.save(step, state, {"task": task.name})
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
