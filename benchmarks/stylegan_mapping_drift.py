"""Probe: how far did a StyleGAN run's mapping network move from its initialisation?
(README: StyleGAN, "The mapping network's learning rate")

  python benchmarks/stylegan_mapping_drift.py runs/stylegan [runs/other ...]

With ``lr_multiplier`` m, a mapping layer's stored kernel starts at std 1/m and Adam moves
it by about the learning rate per step, so its relative change per step is about m times
that of a synthesis layer. Prints, per run, the relative change ``|theta - theta0| /
|theta0|`` of every mapping kernel (raw G; theta0 re-drawn from the run's init key, as
the training loop draws it) and, for comparison, of the synthesis start block's conv.
"""

import sys

import jax
import numpy as np
from flax import traverse_util

from zoo.tasks import progan as progan_task
from zoo.tasks import stylegan as stylegan_task


def _flat(tree) -> dict[str, np.ndarray]:
  return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def main(runs) -> None:
  for run in runs:
    task, state, step = progan_task.restore_state(run, task_cls=stylegan_task.StyleGANTask)
    init_key, _ = jax.random.split(jax.random.key(task.config.seed))
    init = task.init_state(init_key, stage=0)
    now = _flat(state["g"]["params"])
    then = _flat(init["g"]["params"])
    m = task.config.model.mapping_lr_multiplier
    print(f"{run} (step {step}, mapping lr multiplier {m:g}): relative change of each kernel")
    for name in sorted(then):
      if name.endswith("kernel") and ("mapping" in name or "4x4/conv" in name):
        a, b = now[name], then[name]
        print(f"  {name:40s} {np.linalg.norm(a - b) / np.linalg.norm(b):.4f}")


if __name__ == "__main__":
  main(sys.argv[1:])
