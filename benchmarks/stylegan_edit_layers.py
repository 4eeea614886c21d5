"""Probe: can an attribute vector of a trained StyleGAN flip its attribute while keeping
the others, if it is added to some layers only, or decorrelated from every other
attribute's vector? (README: StyleGAN, the default run judged)

  python benchmarks/stylegan_edit_layers.py runs/stylegan [n]

Needs a trained face classifier (runs/face_classifier or $ZOO_FACE_CLASSIFIER). Prints,
for each of the toolkit's judged edits, the flip rate and the least-kept other attribute
for every contiguous style range of 2, 4 or 6 layers and all layers, at strengths 1 and
2, for the mean-difference vector, for its part orthogonal to the other attributes'
vectors and for the regression vector (``attribute_vectors(method="regression")``).
Then the baseline for any edit: how often a random step in W as long as the
mean-difference or the regression vector keeps every attribute's prediction (isotropic,
and drawn from the latents' covariance; three draws).
"""

import sys

import numpy as np

from zoo import gan_tools as gt
from zoo.data import faces


def main(run: str, n: int) -> None:
  m = gt.LatentModel.load(run)
  clf = gt._default_classifier(None)  # pylint: disable=protected-access
  vecs = gt.attribute_vectors(m, 10_000, classifier=clf)
  reg = gt.attribute_vectors(m, 10_000, classifier=clf, method="regression")
  rng = np.random.default_rng(0)
  cov = np.cov(m.sample(5000, 7).T)
  layers = m.num_layers
  ranges = {"all": (0, layers)}
  for lo in range(layers):
    for hi in range(lo + 2, layers + 1, 2):
      if hi - lo < layers:
        ranges[f"{lo}-{hi - 1}"] = (lo, hi)
  for attr, a, b in gt.JUDGED_EDITS:
    vocab = faces.ATTRIBUTES[attr]
    d = vecs[f"{attr}={b}"] - vecs[f"{attr}={a}"]
    others = [vecs[k] for k in vecs.names if not k.startswith(attr + "=")]
    q, _ = np.linalg.qr(np.stack(others, 1))
    own = d - q @ (q.T @ d)
    w, before, _ = gt._sources(m, clf, attr, vocab.index(a), n, 100, 1.0)  # pylint: disable=protected-access
    print(
      f"== {attr} {a}->{b}: {len(others)} other vectors; the part orthogonal to them is "
      f"{np.linalg.norm(own) / np.linalg.norm(d):.2f} of the vector's norm",
      flush=True,
    )
    d_reg = reg[f"{attr}={b}"] - reg[f"{attr}={a}"]
    for name, length in (("mean", np.linalg.norm(d)), ("regression", np.linalg.norm(d_reg))):
      for kind in ("isotropic", "covariance"):
        kept = []
        for _ in range(3):
          r = (
            rng.normal(size=d.shape) if kind == "isotropic" else rng.multivariate_normal(0 * d, cov)
          )
          after = clf.predict(m.images(w + r * (length / np.linalg.norm(r))))
          kept.append(min(float(np.mean(after[k] == before[k])) for k in after))
        print(
          f"random step as long as the {name} vector ({length:.2f}), {kind}: every attribute "
          f"kept in {', '.join(f'{k:.2f}' for k in kept)}",
          flush=True,
        )
    for name, direction in (("vector", d), ("own part", own), ("regression", d_reg)):
      for strength in (1.0, 2.0):
        for rname, (lo, hi) in ranges.items():
          ws = gt.edit(w, None, [(direction, strength)], layers=(lo, hi), num_layers=layers)
          after = clf.predict(m.images(ws))
          keep = {k: float(np.mean(after[k] == before[k])) for k in after if k != attr}
          worst = min(keep, key=keep.get)
          print(
            f"{name:8s} strength {strength:g} layers {rname:5s} "
            f"flip {np.mean(after[attr] == vocab.index(b)):.2f} "
            f"keep_min {keep[worst]:.2f} ({worst})",
            flush=True,
          )


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300)
