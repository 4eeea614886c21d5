"""Worker for the 2-process localhost test: trains a task and dumps its final params.

Run as ``python -m tests.multiprocess_worker TASK WORKDIR OUT.npz`` with
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set (or none of
them for the single-process reference).
"""

import os
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from zoo.training import mesh as mesh_lib  # noqa: E402

mesh_lib.maybe_initialize_distributed()

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402


def main(task_name, workdir, out=None):
  expected = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
  local = int(os.environ.get("ZOO_TEST_LOCAL_DEVICES", "1"))
  assert jax.process_count() == expected, (jax.process_count(), expected)
  assert jax.device_count() == expected * local, (jax.device_count(), expected, local)
  if task_name == "toy":
    from tests.toy_task import ToyTask
    from zoo.training import loop

    task = ToyTask(process_index=jax.process_index(), process_count=jax.process_count())
    res = loop.train(
      task,
      loop.LoopConfig(
        num_steps=12, log_every=4, save_every=6, eval_every=0, async_checkpoints=False
      ),
      workdir,
    )
  elif task_name == "toy_forever":  # trains until killed (the failure test kills a peer)
    from tests.toy_task import ToyTask
    from zoo.training import loop

    task = ToyTask(process_index=jax.process_index(), process_count=jax.process_count())
    loop.train(
      task,
      loop.LoopConfig(
        num_steps=10**7, log_every=10**6, save_every=10**7, eval_every=0, async_checkpoints=False
      ),
      workdir,
    )
    return
  else:
    raise SystemExit(f"unknown task {task_name}")
  params = multihost_utils.process_allgather(res.state["params"], tiled=True)
  flat = {
    jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)
  }
  losses = np.array([h["loss"] for h in res.history])
  if jax.process_index() == 0:
    np.savez(out, losses=losses, **flat)


if __name__ == "__main__":
  main(*sys.argv[1:4])
