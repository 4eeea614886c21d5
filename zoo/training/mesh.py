"""Device mesh and sharding helpers (`jax.jit` over a `Mesh`, no pmap).

By default the zoo uses a 1-D mesh with a ``data`` axis spanning every device of every
process: batches are sharded on their leading axis, parameters and optimizer state are
replicated. With a model axis of ``m`` devices (``make_mesh(model=m)``, the launchers'
``--mesh_model``) the mesh is ``data x model``: batches are still split over every
device, and each large leaf of the train state (params and optimizer moments) is split
``m`` ways along one of its dimensions, so that every device holds ``1/m`` of it (fully
sharded data parallelism; XLA gathers a layer's weights where they are used).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from zoo.errors import ConfigError

DATA_AXIS = "data"
MODEL_AXIS = "model"

#: Leaves with fewer elements stay replicated: splitting them saves little memory and
#: costs a collective each.
MIN_SHARDED_ELEMENTS = 2**14

_default_model = 1


def _check_model_axis(model) -> int:
  if not isinstance(model, int) or isinstance(model, bool) or model < 1:
    raise ConfigError(f"the model axis must be a positive integer, got {model!r}")
  return model


def set_default_model_axis(model: int) -> None:
  """The model-axis size :func:`make_mesh` uses when not given one (``--mesh_model``)."""
  global _default_model
  _default_model = _check_model_axis(model)


def maybe_initialize_distributed() -> None:
  """Calls ``jax.distributed.initialize()`` when a multi-process run is configured.

  Multi-host pods (TPU, SLURM, ...) are detected by JAX itself when
  ``ZOO_DISTRIBUTED_AUTO=1``; on plain machines set ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (used by our 2-process localhost tests).
  ``ZOO_HEARTBEAT_TIMEOUT`` (seconds, default JAX's 100) bounds how long the other
  processes wait for one that died before they stop (docs/multihost.md).
  """
  if getattr(maybe_initialize_distributed, "_done", False):
    return
  addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
  nproc = os.environ.get("JAX_NUM_PROCESSES")
  kw = {}
  if os.environ.get("ZOO_HEARTBEAT_TIMEOUT"):
    kw["heartbeat_timeout_seconds"] = int(os.environ["ZOO_HEARTBEAT_TIMEOUT"])
  if addr and nproc and int(nproc) > 1:
    jax.distributed.initialize(
      coordinator_address=addr,
      num_processes=int(nproc),
      process_id=int(os.environ["JAX_PROCESS_ID"]),
      **kw,
    )
  elif os.environ.get("ZOO_DISTRIBUTED_AUTO"):
    jax.distributed.initialize(**kw)  # cluster auto-detection (TPU pods, SLURM)
  maybe_initialize_distributed._done = True  # type: ignore[attr-defined]


def make_mesh(devices=None, *, model: int | None = None) -> Mesh:
  """A mesh over ``devices`` (default: every device of every process): 1-D ``data``, or
  ``data x model`` with ``model`` devices per model group (default: the launcher's
  ``--mesh_model``, else 1). Consecutive devices form a model group, so on a multi-host
  job a group stays inside one host when ``model`` divides its device count."""
  devices = list(jax.devices() if devices is None else devices)
  model = _default_model if model is None else _check_model_axis(model)
  if model == 1:
    return Mesh(np.asarray(devices), (DATA_AXIS,))
  if len(devices) % model:
    raise ConfigError(f"a model axis of {model} devices does not divide the {len(devices)} devices")
  grid = np.asarray(devices).reshape(len(devices) // model, model)
  return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def model_axis_size(mesh: Mesh) -> int:
  return int(mesh.shape[MODEL_AXIS]) if MODEL_AXIS in mesh.axis_names else 1


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis split over every device of the mesh."""
  return NamedSharding(mesh, P(tuple(mesh.axis_names)))


def leaf_sharding(mesh: Mesh, shape: tuple[int, ...]) -> NamedSharding:
  """Where one train-state leaf lives: split along its largest dimension that the model
  axis divides (FSDP), or replicated (a 1-D mesh, a small leaf, no such dimension)."""
  m = model_axis_size(mesh)
  if m == 1 or int(np.prod(shape, dtype=np.int64)) < MIN_SHARDED_ELEMENTS:
    return replicated(mesh)
  for d in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[d] % m == 0:
      spec = [None] * len(shape)
      spec[d] = MODEL_AXIS
      return NamedSharding(mesh, P(*spec))
  return replicated(mesh)


def state_sharding(mesh: Mesh, abstract_state: Any) -> Any:
  """:func:`leaf_sharding` for every leaf of a (possibly abstract) train state."""
  return jax.tree.map(lambda x: leaf_sharding(mesh, tuple(x.shape)), abstract_state)


def check_batch_size(global_batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
  n = mesh.devices.size
  if global_batch_size % n:
    raise ConfigError(
      f"{name}={global_batch_size} must be divisible by the number of devices ({n})"
    )


def to_global(local_batch: Any, mesh: Mesh) -> Any:
  """Assembles per-process numpy batches into globally sharded jax Arrays.

  Each process passes the rows it loaded (its slice of the global batch);
  leaves are sharded on their leading axis along ``data``.
  """
  sharding = data_sharded(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
  )


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a host pytree (identical on every process) replicated on the mesh."""
  sharding = replicated(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
  )
