"""How long the explorer takes to answer, end to end (JSON in, PNG data URL out).

Loads each run the way ``python -m launch.explore`` does (restore + compile, timed), then
times its main requests through the FastAPI app in process (``fastapi.testclient``):
median and 90th percentile of ``--repeats`` requests after one warm-up each.
``--stylegan64`` adds an untrained StyleGAN of the default CPU config grown to 64x64
(latency does not depend on training).

  python benchmarks/explore_latency.py --workdir runs/stylegan --workdir runs/p2p \\
      --workdir runs/sketch_rnn --stylegan64 --repeats 30
"""

import argparse
import time

import jax
import numpy as np

from zoo.explore import backends as B
from zoo.explore import server as S

REQUESTS = {
  "generator": [
    ("image", lambda i: {"seed": i}),
    ("image+edit", lambda i: {"seed": i, "edit": "auto"}),
    ("features", lambda i: {"seed": i, "layer": 0}),
    ("interpolate", lambda i: {"seed_a": i, "seed_b": i + 1, "steps": 8}),
  ],
  "translate": [("translate", lambda i: {"image": "auto"})],
  "sketch": [
    ("sample", lambda i: {"n": 1, "seed": i}),
    ("complete", lambda i: {"strokes": [[0, 0, 0], [20, 5, 0], [10, 10, 1]], "n": 4, "seed": i}),
  ],
}


def stylegan64():
  from launch.configs import stylegan as cfg
  from zoo import gan_tools as gt
  from zoo.gan import core
  from zoo.tasks import stylegan
  from zoo.training import mesh as mesh_lib

  c = cfg.get_config()
  c.schedule.resolution = (64, 64)
  c.eval.fd = "off"
  task = stylegan.StyleGANTask(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  stage = task.schedule.num_stages - 1
  state = jax.jit(lambda k: task.init_state(k, stage=stage))(jax.random.key(0))
  g, _ = task.networks(stage)
  m = gt.LatentModel(
    "stylegan",
    "",
    0,
    stage,
    g,
    jax.device_get(core.generator_variables(state)),
    1.0,
    int(c.model.latent_dim),
  )
  return B.GeneratorBackend("", model=m)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", action="append", default=[])
  p.add_argument("--stylegan64", action="store_true")
  p.add_argument("--repeats", type=int, default=30)
  a = p.parse_args()
  loaded, load_s = {}, {}
  for name, w in zip(B.run_names(a.workdir), a.workdir):
    t = time.perf_counter()
    loaded[name] = B.load_backend(w)
    load_s[name] = time.perf_counter() - t
  if a.stylegan64:
    t = time.perf_counter()
    loaded["stylegan64 (untrained)"] = b = stylegan64()
    b.warm_up()
    load_s["stylegan64 (untrained)"] = time.perf_counter() - t
  from fastapi.testclient import TestClient

  client = TestClient(S.create_app(loaded))
  print("| run | family | resolution | load + compile (s) | request | median (ms) | p90 (ms) |")
  print("|---|---|---|---|---|---|---|")
  for name, b in loaded.items():
    d = b.describe()
    res = d.get("resolution") or d.get("size") or ["-"]
    res = "x".join(map(str, res[:2]))
    for label, make in REQUESTS[d["kind"]]:
      if label == "features" or label == "image+edit":
        if not d.get("layers"):
          continue
      times = []
      for i in range(a.repeats + 1):
        body = make(i)
        if body.get("edit") == "auto":
          l = len(d["layers"]) - 2
          body["edit"] = {"layer": l, "channels": [0], "region": [0.5, 0.3, 0.8, 0.7], "delta": 4}
        if body.get("image") == "auto":
          h, w = d["size"]
          body["image"] = B.png_data_url(np.full((h, w, 3), 255, np.uint8))
        t = time.perf_counter()
        r = client.post(f"/api/runs/{name}/{label.split('+')[0]}", json=body)
        dt = time.perf_counter() - t
        assert r.status_code == 200, r.text
        if i:
          times.append(dt * 1000)
      print(
        f"| {name} | {d['family']} | {res} | {load_s[name]:.1f} | {label} | "
        f"{np.median(times):.0f} | {np.percentile(times, 90):.0f} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
