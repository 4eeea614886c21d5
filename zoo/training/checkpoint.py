"""Checkpointing with orbax's :class:`CheckpointManager`.

A checkpoint holds two items: ``state`` (the train-state pytree: params,
optimizer state, ...) and ``meta`` (JSON: the step and anything the task needs
to resume; the RNG and data position are pure functions of the seed and step,
so the step is enough to resume both exactly).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from zoo.errors import CheckpointError


class Checkpointer:
  """Thin wrapper: ``save(step, state, meta)``, ``restore(abstract_state)``."""

  def __init__(
    self, directory: str, *, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False
  ):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=not read_only,
      read_only=read_only,
      enable_async_checkpointing=async_save,
    )
    self._mngr = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "meta")
    )

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def damage(self, step: int) -> str | None:
    """Why the step-``step`` folder cannot hold a whole checkpoint (None: it looks whole).

    A cheap look at the files (a run killed while saving, a disk that filled up): an
    empty or missing folder, a missing item, a missing array-metadata file. A truncated
    data file shows only when read (:func:`zoo.training.restore.restore` tries).
    """
    d = os.path.join(self.directory, str(int(step)))
    if not os.path.isdir(d):
      return "its folder is missing"
    if not os.listdir(d):
      return "its folder is empty"
    for item in ("state", "meta"):
      if not os.path.isdir(os.path.join(d, item)):
        return f"its {item}/ folder is missing"
    if not os.path.isfile(os.path.join(d, "state", "_METADATA")):
      return "its metadata file state/_METADATA is missing"
    return None

  def all_steps(self) -> list[int]:
    """The steps of every checkpoint in the directory, ascending."""
    return sorted(int(s) for s in self._mngr.all_steps())

  def read_meta(self, step: int | None = None) -> dict:
    """The ``meta`` JSON of the checkpoint at ``step`` (default: latest), without its state.

    The meta says what the state looks like (e.g. a growing GAN's ``stage``), so a caller
    can build the abstract state before :meth:`restore`. One-line CheckpointError when the
    step is absent or its meta is unreadable.
    """
    step = self._mngr.latest_step() if step is None else int(step)
    if step is None:
      raise CheckpointError(f"no checkpoint found in {self.directory}")
    if step not in self.all_steps():
      raise CheckpointError(f"no checkpoint at step {step} in {self.directory}")
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = out["meta"]
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
      first = (str(e).strip().splitlines() or [""])[0][:200]
      raise CheckpointError(
        f"the meta of the step-{step} checkpoint in {self.directory} is unreadable "
        f"({type(e).__name__}: {first})"
      ) from None
    if not isinstance(meta, dict):
      raise CheckpointError(
        f"the meta of the step-{step} checkpoint in {self.directory} is not a JSON object"
      )
    return dict(meta)

  def save(self, step: int, state: Any, meta: dict | None = None, *, force: bool = True) -> None:
    meta = dict(meta or {}, step=int(step))
    if self._mngr.latest_step() == step:
      return
    self._mngr.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=force,
    )

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores ``state`` (with the shardings/dtypes of ``abstract_state``) and ``meta``."""
    step = self._mngr.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint found in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    out = self._mngr.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
      ),
    )
    return out["state"], dict(out["meta"])

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def list_steps(directory: str) -> list[int]:
  """The step folders in a checkpoint directory, ascending, without opening it (orbax's
  unfinished ``<step>.orbax-checkpoint-tmp-*`` folders are not steps)."""
  try:
    names = os.listdir(directory)
  except (FileNotFoundError, NotADirectoryError):
    return []
  return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def open_for_reading(workdir: str) -> Checkpointer:
  """Opens ``workdir``'s checkpoints read-only with a clear error when there are none."""
  ckdir = checkpoint_dir(workdir)
  if not os.path.isdir(ckdir):
    raise CheckpointError(f"no checkpoint directory in workdir {workdir!r} (expected {ckdir})")
  ck = Checkpointer(ckdir, read_only=True, async_save=False)
  if ck.latest_step() is None:
    raise CheckpointError(f"workdir {workdir!r} has no checkpoint to restore")
  return ck


RUN_CONFIG = "config.json"


def write_run_config(workdir: str, config, **sections) -> None:
  """Writes ``workdir/config.json``: the run's config plus extra sections (process 0 only).

  Other modes (sampling, testing, export) rebuild the model from it. The write is
  atomic, so a killed run never leaves half a file behind. The training loop writes it
  (``loop.train(run_config=...)``) only once a resume is known to succeed.
  """
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  info = dict(config.to_dict() if hasattr(config, "to_dict") else config, **sections)
  path = os.path.join(workdir, RUN_CONFIG)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(info, f, indent=2, default=str)
  os.replace(tmp, path)


def read_run_config(workdir: str) -> dict | None:
  """``workdir/config.json`` as a dict, None when absent; one-line error when unreadable."""
  path = os.path.join(workdir, RUN_CONFIG)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
