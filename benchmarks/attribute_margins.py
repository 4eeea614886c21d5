"""Probe: how sure is the face classifier of a generator's attributes, against real faces?
(README: StyleGAN, "Why the edits cross other attributes")

  python benchmarks/attribute_margins.py runs/stylegan [runs/progan ...] [--psi 0.7]

An edit keeps an attribute only if the edited face stays on the same side of the
classifier's decision for it. A face the classifier reads as nearly a tie between two
values changes its reading under almost any edit. For 1,000 real validation faces and
1,000 samples of each run's EMA generator at its last step (any latent model of
``zoo.gan_tools``; ``--psi`` truncates StyleGAN samples), prints per attribute the mean
top-class probability and the fraction of *ambiguous* faces, whose top two classes are
less than 0.5 apart in probability.
"""

import argparse

import jax
import numpy as np

from zoo import gan_tools as gt
from zoo.data import faces
from zoo.data.images import unconditional as image_data
from zoo.eval import face_classifier as fc


def margins(clf, images) -> dict[str, tuple[float, float]]:
  """``{attribute: (mean top probability, fraction with top-2 gap < 0.5)}``."""
  logits = clf.logits(images)
  out = {}
  for a in faces.ATTRIBUTES:
    p = np.sort(np.asarray(jax.nn.softmax(np.asarray(logits[a], np.float64), -1)), -1)
    out[a] = (float(p[:, -1].mean()), float(np.mean(p[:, -1] - p[:, -2] < 0.5)))
  return out


def _row(name: str, m) -> str:
  return f"{name:26s} " + "  ".join(f"{a} {t:.2f}/{amb:.2f}" for a, (t, amb) in m.items())


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("runs", nargs="+")
  ap.add_argument("--psi", type=float, default=1.0)
  ap.add_argument("--num", type=int, default=1000)
  args = ap.parse_args()
  clf = fc.load_classifier(fc.default_classifier_workdir())
  print("per attribute: mean top-class probability / fraction ambiguous (top-2 gap < 0.5)")
  models = [gt.LatentModel.load(run) for run in args.runs]
  x = image_data.validation_faces(models[0].resolution, args.num)
  print(_row("real faces", margins(clf, x)), flush=True)
  for run, model in zip(args.runs, models):
    images = model.images(model.sample(args.num, 5), psi=args.psi)
    print(_row(f"{run} (psi {args.psi:g})", margins(clf, images)), flush=True)


if __name__ == "__main__":
  main()
