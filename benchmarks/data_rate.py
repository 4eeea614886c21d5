"""How fast the image streams deliver batches, against the train steps that consume them.

Every stream is the zoo's own (``zoo.data.stream.ShardedStream`` under each task), built as
training builds it, iterated from step 0 with its prefetching reader threads; the rate is
batches per second over ``--batches`` batches after 3 warm-up batches.

  python benchmarks/data_rate.py --batches 40

Rows: the embedded faces at 64 / 128 / 256 (ProGAN's stream, batch 16), an image folder of
JPEGs resized on the fly (ProGAN, 64, batch 16), and pix2pix's A|B pairs (edges2faces at 64,
batch 8, and at 256, batch 1, with jitter). Compare with BENCHMARKS.md's step times: the
goal is >= 20x the batches per second the step consumes.
"""

import argparse
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


def progan_stream(resolution: int, source: str = ""):
  c = progan_cfg.get_config()
  c.schedule.resolution = (resolution, resolution)
  c.data.source = source
  c.eval.fd = "off"
  task = progan_task.ProGANTask(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  stage = task.schedule.num_stages - 1
  return task.stream(stage).iterate(0), task.schedule.batch_sizes[stage]


def pix2pix_stream(variant: str | None):
  c = p2p_cfg.get_config(variant)
  task = p2p_task.build_task(c, mesh_lib.make_mesh(jax.devices()[:1]))
  return task.train_batches(0), c.batch_size, p2p_task.image_size(c)[0]


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batches", type=int, default=40)
  a = p.parse_args()
  rows = []
  for res in (64, 128, 256):
    it, bs = progan_stream(res)
    rows.append((f"faces {res}x{res} (ProGAN stream)", bs, rate(it, a.batches)))
  with tempfile.TemporaryDirectory() as d:
    rng = np.random.default_rng(0)
    for i in range(200):
      Image.fromarray(rng.integers(0, 256, (300, 240, 3), np.uint8)).save(f"{d}/{i}.jpg")
    it, bs = progan_stream(64, d)
    rows.append(("image folder, 200 JPEGs 300x240 -> 64x64", bs, rate(it, a.batches)))
  for variant in (None, "paper"):
    it, bs, size = pix2pix_stream(variant)
    rows.append((f"A|B pairs edges2faces {size}x{size} (pix2pix)", bs, rate(it, a.batches)))
  print("| stream | batch | batches/s | images/s |\n|---|---|---|---|")
  for name, bs, r in rows:
    print(f"| {name} | {bs} | {r:.1f} | {r * bs:.0f} |")


if __name__ == "__main__":
  main()
