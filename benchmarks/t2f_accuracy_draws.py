"""Probe: a trained T2F run's caption accuracy over several latent draws, and on test faces
whose caption string training also used against those it did not (README: T2F).

  python benchmarks/t2f_accuracy_draws.py runs/t2f_cls [draws]
  python benchmarks/t2f_accuracy_draws.py runs/t2f_cls seen

Needs the face classifier and the caption encoder the run was trained with
($ZOO_FACE_CLASSIFIER, $ZOO_TEXT_ENCODER). ``draws`` (default 4) judges the latest
checkpoint as training's evaluation does (the same held-out captions), draw 0 with the
evaluation's own latents and draw k with that seed + 1000 k. ``seen`` judges up to 1,000
test faces whose first caption is a training caption and 1,000 whose caption is not.
"""

import sys

import numpy as np

from zoo.data.faces import captioned
from zoo.tasks import t2f


def _line(label, r) -> str:
  per = {a[len("eval/acc/") :]: round(v, 3) for a, v in r.items() if a.startswith("eval/acc/")}
  return f"{label}: accuracy {r['eval/acc_mentioned']:.4f} {per}"


def draws(task, state, step, num: int) -> None:
  latents = task.latents
  for d in range(num):
    task.latents = lambda n, seed, d=d: latents(n, seed + 1000 * d)
    print(_line(f"step {step} draw {d}", task.judge(state, step)), flush=True)


def seen(task, state, step) -> None:
  train = set(task.train_captions)
  pool = captioned.heldout_pairs(4000, exclude=set(), seed=task.config.data.seed, size=task.final)
  is_seen = np.array([t in train for t in pool["caption"]])
  for label, sel in (("seen", is_seen), ("unseen", ~is_seen)):
    idx = np.flatnonzero(sel)[:1000]
    held = {k: pool[k][idx] for k in ("attributes", "mentions", "face", "image")}
    held["caption"] = [pool["caption"][i] for i in idx]
    held["text"] = task.encode(held["caption"])
    task._held = held  # pylint: disable=protected-access
    print(_line(f"step {step} {label} ({len(idx)} faces)", task.judge(state, step)), flush=True)


def main(argv) -> None:
  task, state, step = t2f.restore_task(argv[1], classifier=True)
  if len(argv) > 2 and argv[2] == "seen":
    seen(task, state, step)
  else:
    draws(task, state, step, int(argv[2]) if len(argv) > 2 else 4)


if __name__ == "__main__":
  main(sys.argv)
