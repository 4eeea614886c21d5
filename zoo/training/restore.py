"""One way to reload a run: ``restore(workdir, abstract)`` -> config, step, meta, state.

Every consumer of a workdir (the Sketch-RNN API, pix2pix test/export, GAN samplers)
goes through :func:`restore`::

  r = restore(workdir, lambda config, meta: abstract_state(config, meta), step=None)
  r.config  # workdir/config.json as a dict
  r.step    # the restored step (latest unless given)
  r.meta    # that checkpoint's meta JSON (e.g. {"step": 1200, "stage": 2})
  r.state   # the restored train-state pytree

The abstract state is built by the caller from the run's config and the checkpoint's
meta (a growing GAN's parameter shapes depend on its ``stage``), or passed as a pytree.
Every failure (no workdir, no ``config.json``, no checkpoint, an absent step, a
checkpoint that does not fit the abstract state, e.g. another model size) is a one-line
:class:`zoo.errors.CheckpointError`, never an orbax traceback.

Damaged checkpoints (a run killed while saving: an empty step folder, a missing metadata
file, a truncated data file): without ``step``, :func:`restore` skips each damaged newest
checkpoint with one warning line naming it and why, and restores the newest intact one
(``Restored.skipped`` lists what it skipped); when every checkpoint is damaged, or the
given ``step`` is, it is a one-line error. The training loop resumes through it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from typing import Any, Callable, Mapping

import jax
import orbax.checkpoint as ocp

from zoo.errors import CheckpointError, ZooError
from zoo.training import checkpoint as ckpt_lib
from zoo.training import workdir as workdir_lib

#: ``(config, meta) -> abstract state pytree`` (leaves: anything with shape and dtype).
AbstractFn = Callable[[dict, dict], Any]


@dataclasses.dataclass(frozen=True)
class Restored:
  """What :func:`restore` read from a workdir."""

  workdir: str
  config: dict  # workdir/config.json ({} when absent and not required)
  step: int
  meta: dict  # the checkpoint's meta JSON (always has "step")
  state: Any  # the restored pytree, with the abstract state's structure
  skipped: tuple[tuple[int, str], ...] = ()  # (step, why) of damaged newer checkpoints


@contextlib.contextmanager
def quiet_absl():
  """Silences absl INFO/WARNING (orbax logs a warning on every read-only open)."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


@contextlib.contextmanager
def _quiet_stderr():
  """Silences file descriptor 2 and asyncio's logger for the block: reading a damaged
  checkpoint makes tensorstore's callbacks print ``RuntimeError: Event loop is closed``
  tracebacks and "Task exception was never retrieved" there; the caller reports the
  damage in one line instead."""
  logger = logging.getLogger("asyncio")
  level = logger.level
  logger.setLevel(logging.CRITICAL + 1)
  saved = None
  try:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
  except (OSError, ValueError):  # no fd 2 (embedded interpreters): stay as is
    saved = None
  try:
    yield
  finally:
    if saved is not None:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
    logger.setLevel(level)


class _EventLoopNoiseFilter:
  """Wraps ``sys.stderr``, dropping the ``RuntimeError: Event loop is closed`` tracebacks
  that tensorstore's callbacks print (from other threads, for a while after a read of a
  damaged checkpoint failed). Everything else passes through unchanged."""

  _NOISE = (
    "asyncio/base_events.py",
    "self._check_closed()",
    "raise RuntimeError('Event loop is closed')",
    "RuntimeError: Event loop is closed",
  )

  def __init__(self, stream):
    self._stream = stream
    self._held = ""  # a "Traceback" header waiting to see what follows it

  def write(self, text):
    out = []
    for line in text.splitlines(keepends=True):
      if any(n in line for n in self._NOISE):
        self._held = ""
        continue
      if line.startswith("Traceback (most recent call last)"):
        if self._held:
          out.append(self._held)
        self._held = line
        continue
      if self._held and line.startswith(" "):  # a real traceback's first frame
        out.append(self._held)
        self._held = ""
      out.append(line)  # (a header interleaved with other lines stays held)
    if out:
      self._stream.write("".join(out))
    return len(text)

  def flush(self):
    self._stream.flush()

  def __getattr__(self, name):
    return getattr(self._stream, name)


class _NeverRetrieved(logging.Filter):
  """Drops asyncio's "Task exception was never retrieved" records (the failed reads)."""

  def filter(self, record):
    return not str(record.msg).startswith("Task exception was never retrieved")


def _filter_event_loop_noise() -> None:
  """Installed once a damaged checkpoint was read: keeps tensorstore's leftovers off stderr."""
  if not isinstance(sys.stderr, _EventLoopNoiseFilter):
    sys.stderr = _EventLoopNoiseFilter(sys.stderr)
  logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _NeverRetrieved) for f in logger.filters):
    logger.addFilter(_NeverRetrieved())


def _check_workdir(workdir: str) -> str:
  workdir = workdir_lib.check_local(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir!r} is a file, not a directory")
  if not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir!r} does not exist")
  return workdir


def read_config(workdir: str, *, required: bool = True) -> dict:
  """``workdir/config.json`` as a dict; ``{}`` when absent and not ``required``.

  One-line CheckpointError when the workdir does not exist, or the file is required and
  absent, or it is unreadable.
  """
  workdir = _check_workdir(workdir)
  info = ckpt_lib.read_run_config(workdir)
  if info is None:
    if required:
      raise CheckpointError(
        f"workdir {workdir!r} has no {ckpt_lib.RUN_CONFIG} (written when training starts)"
      )
    return {}
  if not isinstance(info, dict):
    raise CheckpointError(f"{os.path.join(workdir, ckpt_lib.RUN_CONFIG)} is not a JSON object")
  return info


def _summary(e: BaseException, limit: int = 240) -> str:
  """``Type: first line`` of an exception (with the next line when the first ends in ':')."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  text = lines[0] if lines else ""
  if text.endswith(":") and len(lines) > 1:
    text = f"{text} {lines[1]}"
  if len(text) > limit:
    text = text[: limit - 3] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _with_sharding(abstract: Any, sharding) -> Any:
  """Leaves as ShapeDtypeStructs, each with its own sharding, else ``sharding``."""

  def leaf(x):
    s = getattr(x, "sharding", None)
    if not isinstance(s, jax.sharding.Sharding):
      s = sharding
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

  return jax.tree.map(leaf, abstract)


def _leaf_shapes(tree) -> dict[str, tuple]:
  """``{'g/params/kernel': shape}``: leaves by path (dict keys, attribute names, indices)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    out[key] = tuple(getattr(leaf, "shape", ()))
  return out


def _compare(ck: ckpt_lib.Checkpointer, step: int, abstract_state) -> tuple[str | None, str | None]:
  """``(shape problem, structure problem)`` between the stored state and ``abstract_state``.

  Read from the checkpoint's array metadata (no data is read); ``(None, None)`` when
  they agree or the metadata cannot be read (the restore itself then decides).
  """
  try:
    with quiet_absl():
      md = ocp.StandardCheckpointer().metadata(os.path.join(ck.directory, str(step), "state"))
    stored = _leaf_shapes(getattr(md, "item_metadata", md).tree)
  except Exception:  # pylint: disable=broad-except  # best effort: orbax's own check follows
    return None, None
  wanted = _leaf_shapes(abstract_state)
  # Parameters before optimizer state: they say more about what differs.
  differ = sorted(
    (k for k in set(stored) & set(wanted) if stored[k] != wanted[k]),
    key=lambda k: ("opt_state" in k, k),
  )
  if differ:
    k = differ[0]
    more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
    return f"{k} has shape {stored[k]} in the checkpoint, {wanted[k]} here{more}", None
  extra, missing = sorted(set(stored) - set(wanted)), sorted(set(wanted) - set(stored))
  if missing:
    return None, f"the checkpoint lacks {missing[0]}" + (
      f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    )
  if extra:
    return None, f"the checkpoint has {extra[0]} not in the expected state" + (
      f" and {len(extra) - 1} more" if len(extra) > 1 else ""
    )
  return None, None


class _Damaged(Exception):
  """A checkpoint that cannot be read (``args[0]``: why, one line)."""


def _warn(step: int, why: str, workdir: str, using: int | None) -> None:
  then = f"; using step {using}" if using is not None else ""
  print(f"warning: skipped the step-{step} checkpoint in {workdir}: {why}{then}", file=sys.stderr)


def _restore_step(ck, workdir, config, abstract, step, sharding):
  """``(state, meta)`` of one step; raises _Damaged, or CheckpointError for a mismatch."""
  why = ck.damage(step)
  if why:
    raise _Damaged(why)
  try:
    meta = ck.read_meta(step)
  except CheckpointError:
    raise _Damaged("its meta item is unreadable") from None
  if callable(abstract):
    try:
      abstract_state = abstract(config, meta)
    except ZooError:
      raise
    except (KeyError, AttributeError, TypeError, ValueError) as e:
      raise CheckpointError(
        f"cannot rebuild the state of the step-{step} checkpoint in {workdir!r} from its "
        f"config ({_summary(e)})"
      ) from None
  else:
    abstract_state = abstract
  try:
    abstract_state = _with_sharding(abstract_state, sharding)
  except (AttributeError, TypeError) as e:
    raise TypeError(f"the abstract state must have array-like leaves ({e})") from None
  mismatch = (
    f"the step-{step} checkpoint in {workdir!r} does not match the state built from its "
    "config (another model size or configuration?)"
  )
  shape_problem, structure_problem = _compare(ck, step, abstract_state)
  if shape_problem:
    raise CheckpointError(f"{mismatch}: {shape_problem}")
  try:
    with quiet_absl(), _quiet_stderr():
      return ck.restore(abstract_state, step)
  except ZooError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
    _filter_event_loop_noise()
    if structure_problem:
      raise CheckpointError(f"{mismatch}: {structure_problem}") from None
    raise _Damaged(f"its data is unreadable, e.g. a truncated file ({_summary(e, 120)})") from None


def restore(
  workdir: str | os.PathLike,
  abstract: AbstractFn | Any,
  *,
  step: int | None = None,
  sharding: jax.sharding.Sharding | None = None,
  require_config: bool = True,
  on_damaged: Callable[[int, str, int | None], None] | None = None,
) -> Restored:
  """Restores the latest intact (or the ``step``) checkpoint of ``workdir``.

  Args:
    workdir: a training workdir (``config.json`` + ``checkpoints/``).
    abstract: ``(config, meta) -> abstract state`` (called with the run's config dict and
      the checkpoint's meta), or the abstract state itself. Leaves need ``shape`` and
      ``dtype`` (``jax.eval_shape`` output, ShapeDtypeStructs, arrays).
    step: the checkpoint step; default: the newest intact one.
    sharding: for leaves without one; default: the first local device.
    require_config: whether a missing ``config.json`` is an error (otherwise ``config``
      is ``{}``).
    on_damaged: ``(step, why, next step or None)`` for each damaged checkpoint skipped
      (default: one ``warning:`` line on stderr).

  Raises:
    CheckpointError: one line naming the problem.
  """
  workdir = _check_workdir(os.fspath(workdir))
  config = read_config(workdir, required=require_config)
  with quiet_absl():  # orbax warns about read-only managers on every open
    ck = ckpt_lib.open_for_reading(workdir)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  warn = on_damaged or (lambda s, why, using: _warn(s, why, workdir, using))
  skipped = []
  try:
    steps = ck.all_steps()
    if step is not None:
      step = int(step)
      if step not in steps:
        raise CheckpointError(
          f"workdir {workdir!r} has no checkpoint at step {step} "
          f"(it has {', '.join(map(str, steps)) or 'none'})"
        )
      try:
        state, meta = _restore_step(ck, workdir, config, abstract, step, sharding)
      except _Damaged as e:
        raise CheckpointError(
          f"the step-{step} checkpoint in {workdir!r} is damaged: {e}"
        ) from None
    else:
      for i, s in enumerate(reversed(steps)):
        try:
          state, meta = _restore_step(ck, workdir, config, abstract, s, sharding)
          step = s
          break
        except _Damaged as e:
          skipped.append((s, str(e)))
          older = steps[: len(steps) - 1 - i]
          warn(s, str(e), older[-1] if older else None)
      else:
        listed = "; ".join(f"step {s}: {why}" for s, why in skipped)
        raise CheckpointError(
          f"every checkpoint in {ck.directory} is damaged ({listed}); move that folder away "
          "to start the run over"
        )
  finally:
    ck.close()
  return Restored(
    workdir=workdir,
    config=config,
    step=int(meta.get("step", step)),
    meta=meta,
    state=state,
    skipped=tuple(skipped),
  )


def generator_variables(state: Mapping[str, Any], *, ema: bool = True) -> dict:
  """The generator's flax variables (``{'params'[, 'batch_stats', 'stats', ...]}``) from a
  GAN train state.

  ``state``: ``{'g': {'params', 'opt_state'[, other collections]}, 'd': {...}[, 'g_ema':
  params]}``. With ``ema`` (default) the moving-average params ``g_ema`` when the state has
  them, else (or with ``ema=False``) the raw ``g`` params; G's other collections (batch
  statistics, StyleGAN's ``w_avg``) as they are, except that the EMA params take the
  collections kept for them (``g_ema_collections``) when the state has those.
  """
  g = state["g"]
  g_ema = state.get("g_ema") if ema else None
  out = {"params": g["params"] if g_ema is None else g_ema}
  out.update({k: v for k, v in g.items() if k not in ("params", "opt_state")})
  if g_ema is not None:
    out.update(state.get("g_ema_collections", {}))
  return out
