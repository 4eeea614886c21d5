"""How fast the image streams deliver batches, against the train steps that consume them.

Every stream is the zoo's own (``zoo.data.stream.ShardedStream`` under each task), built as
training builds it, iterated from step 0 with its prefetching reader threads; the rate is
batches per second over ``--batches`` batches after 3 warm-up batches. With ``--steps``
(the default) the same run also times the jitted train step each stream feeds (median
of ``--step_repeats`` after compiling, the benchmark's ``JaxStep``), so the ratio
stream / step compares numbers taken minutes apart, not days. The embedded faces are
drawn once per example and then held in memory, so their rate is given twice: the first
epoch (drawing) and a later one (``--cached``).

  python benchmarks/data_rate.py --batches 40

Rows: the embedded faces at 32 / 64 / 128 / 256 (ProGAN's stream at the last stage of the
CPU config grown to that size, its batch 16), an image folder of JPEGs resized on the fly
(ProGAN, 64), and pix2pix's A|B pairs (edges2faces at 64, batch 8, and at 256, batch 1,
with jitter). The drawn sources (faces, pairs) are timed for each ``--render_processes``
count: 0 draws in the reader threads, N > 0 in N worker processes. The goal is >= 20x the
batches per second the step consumes.
"""

import argparse
import functools
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.bench_common import med  # noqa: E402
from benchmarks.gan_step import last_stage_step, pix2pix_step  # noqa: E402
from launch.configs import pix2pix as p2p_cfg  # noqa: E402
from launch.configs import progan as progan_cfg  # noqa: E402
from zoo.tasks import pix2pix as p2p_task  # noqa: E402
from zoo.tasks import progan as progan_task  # noqa: E402
from zoo.training import mesh as mesh_lib  # noqa: E402


def rate(it, n: int) -> float:
  for _ in range(3):
    next(it)
  t0 = time.perf_counter()
  for _ in range(n):
    next(it)
  return n / (time.perf_counter() - t0)


def progan_task_at(resolution: int, source: str = "", processes: int = 0):
  c = progan_cfg.get_config()
  c.schedule.resolution = (resolution, resolution)
  c.data.source = source
  c.data.render_processes = processes
  c.eval.fd = "off"
  task = progan_task.ProGANTask(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  stage = task.schedule.num_stages - 1
  return task, stage, task.schedule.batch_sizes[stage]


def pix2pix_task(variant: str | None, processes: int = 0):
  c = p2p_cfg.get_config(variant)
  c.render_processes = processes
  task = p2p_task.build_task(c, mesh_lib.make_mesh(jax.devices()[:1]))
  return task, c.batch_size, p2p_task.image_size(c)[0]


def cached_rate(st, a) -> float | None:
  """The rate in the second epoch, once the drawn faces (or pairs) are held in memory:
  they are drawn once per example and kept."""
  if not a.cached:
    return None
  for step in range(st.steps_per_epoch):  # draw every example once
    st.batch(step)
  return rate(st.iterate(st.steps_per_epoch), a.batches)


def _drawers(n: int) -> str:
  return f"{n} processes" if n else "the reader threads"


def step_seconds(make, repeats: int) -> float:
  step = make()
  step()  # the first call after compiling
  return med([step() for _ in range(repeats)])


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batches", type=int, default=40)
  p.add_argument("--steps", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--step_repeats", type=int, default=5)
  p.add_argument("--cached", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--render_processes", default="0,2", help="comma-separated counts")
  a = p.parse_args()
  procs = [int(n) for n in a.render_processes.split(",")]
  rows = []  # (name, batch, batches/s, batches/s from the cache or None, make_step or None)
  for res in (32, 64, 128, 256):
    for n in procs:
      task, stage, bs = progan_task_at(res, processes=n)
      st = task.stream(stage)
      r = rate(st.iterate(0), a.batches)
      make = functools.partial(last_stage_step, task, seed=0)
      name = f"faces {res}x{res} (ProGAN stream), drawn by {_drawers(n)}"
      rows.append((name, bs, r, cached_rate(st, a), make))
      task.source.close()
  with tempfile.TemporaryDirectory() as d:
    rng = np.random.default_rng(0)
    for i in range(200):
      Image.fromarray(rng.integers(0, 256, (300, 240, 3), np.uint8)).save(f"{d}/{i}.jpg")
    task, stage, bs = progan_task_at(64, d)
    st = task.stream(stage)
    r = rate(st.iterate(0), a.batches)
    make = functools.partial(last_stage_step, task, seed=0)
    rows.append(("image folder, 200 JPEGs 300x240 -> 64x64 (ProGAN)", bs, r, None, make))
  for variant in (None, "paper"):
    for n in procs:
      task, bs, size = pix2pix_task(variant, n)
      r = rate(task.train_batches(0), a.batches)
      make = functools.partial(pix2pix_step, task, seed=0)
      name = f"A|B pairs edges2faces {size}x{size} (pix2pix), drawn by {_drawers(n)}"
      rows.append((name, bs, r, cached_rate(task.stream, a), make))
      task.sources["train"].close()
  print(
    "| stream | batch | batches/s | images/s | step (s) | stream / step "
    "| later epochs: batches/s | stream / step |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for name, bs, r, rc, make in rows:
    step = step_seconds(make, a.step_repeats) if a.steps and make is not None else None
    cells = [f"{r:.1f}", f"{r * bs:.0f}", "-", "-", "-", "-"]
    if step is not None:
      cells[2:4] = f"{step:.3f}", f"{r * step:.0f}x"
    if rc is not None:
      cells[4:6] = f"{rc:.0f}", ("-" if step is None else f"{rc * step:.0f}x")
    print(f"| {name} | {bs} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  main()
