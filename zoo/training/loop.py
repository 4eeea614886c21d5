"""The generic training loop shared by every system in the zoo.

A *task* bundles one system's model, losses and data (see :class:`Task`). The
loop compiles ``task.train_step`` once with ``jax.jit`` over the device mesh
(batch sharded; state replicated, or split over a ``model`` axis, see
:mod:`zoo.training.mesh`; state buffers donated), derives the
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

Step variants: a task that defines ``step_variant(step)`` (a hashable known in Python,
such as which updates of a lazily regularised GAN step apply the regulariser) gets one
compiled step per (stage, variant), called as ``train_step(..., variant=v)``: each
program holds only the work its steps do.

Every ``save_every`` steps, at the end, and on SIGTERM it writes an orbax
checkpoint; a non-finite loss stops the run with :class:`NonFiniteLossError`
before anything bad is saved, keeping the last good checkpoint.

The workdir (:mod:`zoo.training.workdir`): the loop holds ``<workdir>/.lock`` while it
runs (a second process refuses in one line). Before anything in the workdir changes it
checks the new config against the run's ``config.json`` (``run_config``, ``resume_keys``,
``allow_config_change``), restores the newest intact checkpoint through
:func:`zoo.training.restore.restore` (damaged newer ones are moved to
``checkpoints_damaged/`` with a message) and refuses ``num_steps`` below the run's step;
only then does it write ``config.json`` and record accepted changes in ``history.jsonl``.
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
import numpy as np

from zoo.errors import CheckpointError, ConfigError, NonFiniteLossError
from zoo.training import checkpoint as ckpt_lib
from zoo.training import mesh as mesh_lib
from zoo.training import restore as restore_lib
from zoo.training import workdir as workdir_lib
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

  def __post_init__(self):
    def need(ok, msg):
      if not ok:
        raise ConfigError(f"bad loop config: {msg}")

    def is_int(v):
      return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    need(
      is_int(self.num_steps) and self.num_steps >= 1, f"num_steps={self.num_steps!r} must be >= 1"
    )
    for key in ("log_every", "save_every", "eval_every", "sample_every"):
      v = getattr(self, key)
      need(is_int(v) and v >= 0, f"{key}={v!r} must be an integer >= 0")
    need(
      is_int(self.max_to_keep) and self.max_to_keep >= 1,
      f"max_to_keep={self.max_to_keep!r} must be an integer >= 1 (the checkpoints kept; "
      "0 would delete every checkpoint of the run)",
    )
    need(is_int(self.seed), f"seed={self.seed!r} must be an integer")

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


# Steps dispatched but not finished: two keep the device busy while the host prepares the
# next batch.
_MAX_IN_FLIGHT = 2


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
  run_config: Mapping[str, Any] | None = None,
  resume_keys: workdir_lib.ResumeKeys | None = None,
  allow_config_change: bool = False,
) -> TrainResult:
  """Runs (or resumes) training of ``task`` in ``workdir``; returns the final state.

  ``run_config``: what ``config.json`` holds (the config plus derived sections); when
  given, a resume is checked against the run's saved one with ``resume_keys`` (see
  :mod:`zoo.training.workdir`) and the file is written only once the resume is known to
  succeed. ``allow_config_change``: continue with changed data/optimisation keys
  (recorded in ``history.jsonl``) instead of refusing.
  """
  workdir = workdir_lib.check_usable(workdir)
  say = log_fn or (lambda msg: print(msg, flush=True) if jax.process_index() == 0 else None)
  with workdir_lib.lock(workdir, say=say):
    return _train(
      task,
      cfg,
      workdir,
      mesh=mesh,
      say=say,
      run_config=run_config,
      resume_keys=resume_keys or workdir_lib.ResumeKeys(free=workdir_lib.LOOP_FREE),
      allow_config_change=allow_config_change,
    )


def _train(task, cfg, workdir, *, mesh, say, run_config, resume_keys, allow_config_change):
  mesh = mesh if mesh is not None else mesh_lib.make_mesh()
  repl = mesh_lib.replicated(mesh)
  dsh = mesh_lib.data_sharded(mesh)

  key = jax.random.key(cfg.seed)
  init_key, train_key = jax.random.split(key)
  staged = is_staged(task)
  ckdir = ckpt_lib.checkpoint_dir(workdir)
  lead = jax.process_index() == 0

  def init_fn(stage):
    return functools.partial(task.init_state, stage=stage) if staged else task.init_state

  @functools.cache
  def abstract_state(stage):
    """The state at ``stage`` as ShapeDtypeStructs carrying their shardings (replicated,
    or split over the model axis)."""
    shapes = jax.eval_shape(init_fn(stage), init_key)
    return jax.tree.map(
      lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
      shapes,
      mesh_lib.state_sharding(mesh, shapes),
    )

  def state_sh(stage):
    return jax.tree.map(lambda x: x.sharding, abstract_state(stage))

  # 1. Everything that may refuse, before anything in the workdir changes.
  changes, skipped = [], ()
  if ckpt_lib.list_steps(ckdir):
    if run_config is not None:
      saved = ckpt_lib.read_run_config(workdir)
      if saved is None:
        say(
          f"[{task.name}] warning: {workdir} has checkpoints but no config.json; "
          "the config cannot be checked against the run's"
        )
      changes = workdir_lib.check_resume(
        workdir, saved, run_config, resume_keys, allow_change=allow_config_change
      )

    def abstract(config, meta):
      del config
      stage = int(meta.get("stage", 0)) if staged else None
      if staged:
        at = int(meta.get("step", 0))
        if stage > task.stage_at(at):
          raise CheckpointError(
            f"the step-{at} checkpoint in {workdir} is at stage {stage}, but this config's "
            f"schedule reaches stage {stage} only later (step {at} is in stage "
            f"{task.stage_at(at)}): the schedule differs from the run's"
          )
      return abstract_state(stage)

    def damaged(step, why, using):
      then = f", resuming from step {using}" if using is not None else ""
      say(f"[{task.name}] warning: skipped the damaged step-{step} checkpoint ({why}){then}")

    r = restore_lib.restore(
      workdir, abstract, sharding=repl, require_config=False, on_damaged=damaged
    )
    state, start, skipped = r.state, r.step, r.skipped
    stage = int(r.meta.get("stage", 0)) if staged else None
    workdir_lib.check_num_steps(workdir, start, cfg.num_steps)
    at = f" (stage {stage})" if staged else ""
    say(f"[{task.name}] resumed from step {start}{at} in {workdir}")
  else:
    stage = task.stage_at(0) if staged else None
    state = jax.jit(init_fn(stage), out_shardings=state_sh(stage))(init_key)
    start = 0

  # 2. The resume is good: now the workdir changes.
  if lead:
    for s, why in skipped:
      dest = workdir_lib.set_aside(workdir, ckdir, s)
      say(f"[{task.name}] moved the damaged step-{s} checkpoint to {dest}")
      workdir_lib.record(workdir, "damaged_checkpoint", step=s, reason=why, moved_to=dest)
    if run_config is not None:
      ckpt_lib.write_run_config(workdir, run_config)
    if changes:
      overridden = [c for c in changes if c.kind != "free"]
      workdir_lib.record(
        workdir,
        "config_change",
        step=start,
        changes=workdir_lib.changes_json(changes),
        allowed_by=workdir_lib.OVERRIDE_FLAG if overridden else None,
      )
      if overridden:
        say(
          f"[{task.name}] continuing with changed settings ({workdir_lib.OVERRIDE_FLAG}): "
          + ", ".join(c.key for c in overridden)
          + f"; recorded in {os.path.join(workdir, workdir_lib.HISTORY_FILE)}"
        )
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices("zoo_loop_resume")
  ck = ckpt_lib.Checkpointer(ckdir, max_to_keep=cfg.max_to_keep, async_save=cfg.async_checkpoints)
  writer = MetricWriter(os.path.join(workdir, "tb"))

  variant_of = getattr(task, "step_variant", None)

  def step_fn(state, batch, step, stage=None, variant=None):
    rng = jax.random.fold_in(train_key, step)
    args = (state, batch, rng, step) if stage is None else (state, batch, rng, step, stage)
    return task.train_step(*args, **({} if variant_of is None else {"variant": variant}))

  compiled: dict[Any, Callable] = {}

  def jstep(stage, step):
    # One compilation per stage (shapes and networks differ) and step variant.
    key = (stage, None if variant_of is None else variant_of(step))
    if key not in compiled:
      compiled[key] = jax.jit(
        functools.partial(step_fn, stage=stage, variant=key[1]),
        in_shardings=(state_sh(stage), dsh, repl),
        out_shardings=(state_sh(stage), repl),
        donate_argnums=(0,),
      )
    return compiled[key]

  def grow(state, new_stage):
    rng = jax.random.fold_in(init_key, new_stage)  # same growth on resume
    fn = jax.jit(functools.partial(task.grow, stage=new_stage), out_shardings=state_sh(new_stage))
    return fn(state, rng)

  def for_host(state):
    # Evaluation and samples read the state on every process: gather what FSDP split
    # across hosts (within one process every shard is addressable as it is).
    if mesh_lib.model_axis_size(mesh) > 1 and jax.process_count() > 1:
      return jax.jit(lambda s: s, out_shardings=repl)(state)
    return state

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
        state, metrics = jstep(stage, step)(state, batch, step_arr)
        pending.append((step, metrics))
        if len(pending) > _MAX_IN_FLIGHT:
          # Dispatch is asynchronous: unchecked, the host runs up to log_every steps ahead
          # of the device, so a SIGTERM would wait for all of them before the save.
          jax.block_until_ready(pending[-_MAX_IN_FLIGHT - 1][1])
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
          results = dict(task.evaluate(for_host(state), step))
          if results:
            writer.scalars(step, results)
            eval_history.append({"step": step, **results})
            progress.write(
              f"[{task.name}] step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items())
            )
        if do_sample:
          task.write_samples(for_host(state), step, workdir, writer)
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


def write_final_eval(workdir: str, result: "TrainResult", metrics) -> None:
  """``<workdir>/eval.json``: the step and the last evaluation of a run that finished
  (nothing for a run stopped by a signal, or on processes other than 0)."""
  if metrics and jax.process_index() == 0 and not result.stopped_by_signal:
    workdir_lib.write_json(
      os.path.join(workdir, "eval.json"), {"step": int(result.step), **metrics}
    )
