"""Device mesh and batch sharding helpers (`jax.jit` over a `Mesh`, no pmap).

The whole zoo uses one 1-D mesh with a ``data`` axis spanning every device of
every process: batches are sharded on their leading axis, parameters and
optimizer state are replicated.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from zoo.errors import ConfigError

DATA_AXIS = "data"


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


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (global) devices with axis name ``data``."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


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
