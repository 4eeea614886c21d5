"""What the benchmark scripts share: process tuning, the matmul limit, machine facts.

Nothing here imports JAX at module level: the scripts set ``XLA_FLAGS`` and the malloc
tuning before JAX starts.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tune_malloc() -> bool:
  """glibc: one arena, no mmap for big blocks, never trim -> freed blocks get reused."""
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return False
  m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
  ok = libc.mallopt(m_arena_max, 1) and libc.mallopt(m_mmap_max, 0)
  ok = ok and libc.mallopt(m_trim_threshold, 2**31 - 1)
  return bool(ok)


def release_memory() -> None:
  """Give freed heap memory back to the kernel (the tuned malloc never trims by itself)."""
  gc.collect()
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass


def load():
  return tuple(round(x, 2) for x in os.getloadavg())


def med(xs):
  return statistics.median(xs) if xs else float("nan")


def cpu_model() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
      if line.startswith("Model name:"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def versions(torch_mod) -> dict[str, str]:
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top

  v = {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "flax": flax.__version__,
  }
  if torch_mod is not None:
    v["torch"] = torch_mod.__version__
  return v


def git_head() -> str:
  """Short HEAD, ``+dirty`` when zoo/ or benchmarks/ have uncommitted changes."""
  try:
    out = subprocess.run(
      ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
      capture_output=True,
      text=True,
      check=False,
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "-C", REPO, "status", "--porcelain", "--", "zoo", "benchmarks"],
      capture_output=True,
      text=True,
      check=False,
    ).stdout.strip()
    return out + ("+dirty" if dirty else "")
  except OSError:
    return ""


class DotPeak:
  """GFLOP/s of one ``n x n x n`` float32 ``jnp.dot`` (best of 3): the matmul limit."""

  def __init__(self, n: int):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    self.n = n
    k1, k2 = jax.random.split(jax.random.key(0))
    self.a = jax.random.normal(k1, (n, n), jnp.float32)
    self.b = jax.random.normal(k2, (n, n), jnp.float32)
    self.f = jax.jit(jnp.dot)
    self.f(self.a, self.b).block_until_ready()

  def __call__(self) -> float:
    best = float("inf")
    for _ in range(3):
      t0 = time.perf_counter()
      self.f(self.a, self.b).block_until_ready()
      best = min(best, time.perf_counter() - t0)
    return 2 * self.n**3 / best / 1e9
