"""Probe: a trained T2F run's caption accuracy over several latent draws, and on test faces
whose caption string training also used against those it did not (README: T2F).

  python benchmarks/t2f_accuracy_draws.py runs/t2f_cls [draws]
  python benchmarks/t2f_accuracy_draws.py runs/t2f_cls seen
  python benchmarks/t2f_accuracy_draws.py runs/t2f_cls psi [1,0.7,0.5,0]
  python benchmarks/t2f_accuracy_draws.py runs/t2f_cls confusion

Needs the face classifier and the caption encoder the run was trained with
($ZOO_FACE_CLASSIFIER, $ZOO_TEXT_ENCODER). ``draws`` (default 4) judges the latest
checkpoint as training's evaluation does (the same held-out captions), draw 0 with the
evaluation's own latents and draw k with that seed + 1000 k. ``seen`` judges up to 1,000
test faces whose first caption is a training caption and 1,000 whose caption is not.
``psi`` judges the evaluation's latents scaled by each factor (0: z = 0 for every caption),
which tells whether the errors follow the latent or the caption. ``confusion`` prints, for
the attributes the generator gets wrong most, the classifier's reading of the samples
against the value the caption names (rows: named, columns: read).
"""

import sys

import numpy as np

from zoo.data import faces
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


def scaled(task, state, step, psis) -> None:
  latents = task.latents
  for psi in psis:
    task.latents = lambda n, seed, psi=psi: latents(n, seed) * psi
    r = task.judge(state, step)
    print(f"{_line(f'step {step} psi {psi:g}', r)} FD {r['eval/FD']:.1f}", flush=True)


def confusion(task, state, step, names=("mouth", "hair_style", "glasses")) -> None:
  held = task.heldout()
  n = min(int(task.config.eval.num_samples), len(held["caption"]))
  text = tuple(a[:n] for a in held["text"])
  fake = task.generate_text(state, text, task.latents(n, task.config.seed + 2), step)
  read = task.classifier.predict(fake)
  for name in names:
    j = faces.ATTRIBUTE_NAMES.index(name)
    values = faces.ATTRIBUTES[name]
    named = held["mentions"][:n, j]
    table = np.zeros((len(values), len(values)), np.int64)
    np.add.at(table, (held["attributes"][:n, j][named], np.asarray(read[name])[named]), 1)
    print(f"step {step} {name} (rows: named, columns: read as {', '.join(values)})")
    for v, row in zip(values, table):
      print(f"  {v:>10s} {' '.join(f'{x:5d}' for x in row)}")


def main(argv) -> None:
  task, state, step = t2f.restore_task(argv[1], classifier=True)
  mode = argv[2] if len(argv) > 2 else "4"
  if mode == "seen":
    seen(task, state, step)
  elif mode == "psi":
    scaled(
      task,
      state,
      step,
      [float(p) for p in (argv[3] if len(argv) > 3 else "1,0.7,0.5,0").split(",")],
    )
  elif mode == "confusion":
    confusion(task, state, step)
  else:
    draws(task, state, step, int(mode))


if __name__ == "__main__":
  main(sys.argv)
