"""How XLA's CPU flags change compile and run time of a small GAN step (the test suite's case).

Each flag set runs in a fresh subprocess (XLA reads ``XLA_FLAGS`` once, at start-up), with
no persistent compilation cache. The program: pix2pix's U-Net generator (5 levels, ngf 8,
32x32, batch 4, the tests' tiny size): ``init`` and the gradient of a loss through a
training-mode forward pass, timed as ``lower().compile()``, then the compiled gradient's
median run time.

  python benchmarks/xla_cpu_compile.py
"""

import os
import subprocess
import sys

FLAG_SETS = {
  "default": "",
  "opt level 0": "--xla_backend_optimization_level=0",
  "opt level 0, old fusion emitters (tests)": (
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
  ),
  "old fusion emitters": "--xla_cpu_use_fusion_emitters=false",
}

_CHILD = r"""
import functools, statistics, time
import jax, jax.numpy as jnp
from zoo.models import pix2pix as m

g = m.UNetGenerator(num_downs=5, ngf=8)
x = jnp.zeros((4, 32, 32, 3))
rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
init = jax.jit(functools.partial(g.init, train=True))
t0 = time.perf_counter()
init_c = init.lower(rngs, x).compile()
t1 = time.perf_counter()
v = init_c(rngs, x)

def loss(p, bs, x):
  y, _ = g.apply({"params": p, "batch_stats": bs}, x, train=True,
                 rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])
  return jnp.mean(y ** 2)

t2 = time.perf_counter()
grad = jax.jit(jax.grad(loss)).lower(v["params"], v["batch_stats"], x).compile()
t3 = time.perf_counter()
times = []
for _ in range(30):
  s = time.perf_counter()
  jax.block_until_ready(grad(v["params"], v["batch_stats"], x))
  times.append(time.perf_counter() - s)
print(f"{t1 - t0:.2f} {t3 - t2:.2f} {1e3 * statistics.median(times[5:]):.2f}")
"""


def main():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  print("| XLA flags | init compile (s) | grad compile (s) | grad run (ms) |")
  print("|---|---|---|---|")
  for name, flags in FLAG_SETS.items():
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
      [sys.executable, "-c", _CHILD], cwd=repo, env=env, capture_output=True, text=True
    )
    if out.returncode:
      print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1]} | | |")
      continue
    init_s, grad_s, run_ms = out.stdout.split()
    print(f"| {name} (`{flags or 'none'}`) | {init_s} | {grad_s} | {run_ms} |", flush=True)


if __name__ == "__main__":
  main()
