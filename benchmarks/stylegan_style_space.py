"""Probe: are a trained StyleGAN's attributes separate in its style space S (every layer's
AdaIN scales and biases, Wu et al. 2021 "StyleSpace Analysis")? (README: StyleGAN, the
default run judged)

  python benchmarks/stylegan_style_space.py runs/stylegan [n]

Needs a trained face classifier (runs/face_classifier or $ZOO_FACE_CLASSIFIER). Labels
10,000 samples and, for each of the toolkit's judged edits (source -> target value),
ranks the style channels by the standardized mean difference between the samples that
show the target and those that show the source (|mean_t - mean_s| over the pooled
within-class std). Then edits ``n`` source samples by that mean difference on the top k
channels only (``LatentModel.images(..., style_edits=...)``), at strengths 1 and 2, and
prints the flip rate and the least-kept other attribute, as ``--mode judge`` does.
"""

import sys

import numpy as np

from zoo import gan_tools as gt
from zoo.data import faces


def main(run: str, n: int) -> None:
  m = gt.LatentModel.load(run)
  clf = gt._default_classifier(None)  # pylint: disable=protected-access
  codes, preds = [], []
  for seed in range(10):
    imgs, s = m.style_codes(m.sample(1000, 1000 + seed))
    codes.append(s)
    preds.append(clf.predict(imgs))
  codes = np.concatenate(codes)
  labels = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
  layer_of = np.concatenate([[i] * (s.stop - s.start) for i, s in enumerate(m.style_slices())])
  print(f"{run}: style space of {m.style_size} channels, {len(codes)} labelled samples")
  for attr, a, b in gt.JUDGED_EDITS:
    vocab = faces.ATTRIBUTES[attr]
    src, dst = vocab.index(a), vocab.index(b)
    s_src, s_dst = codes[labels[attr] == src], codes[labels[attr] == dst]
    diff = s_dst.mean(0) - s_src.mean(0)
    effect = np.abs(diff) / (np.sqrt(0.5 * (s_dst.var(0) + s_src.var(0))) + 1e-6)
    order = np.argsort(-effect)
    top = ", ".join(f"{effect[i]:.2f} (layer {layer_of[i]})" for i in order[:5])
    print(f"{attr} {a}->{b}: largest standardized differences {top}")
    w, before, imgs0 = gt._sources(m, clf, attr, src, n, 100, 1.0)  # pylint: disable=protected-access
    for k in (1, 2, 4, 8, 16, 32, 64, m.style_size):
      for strength in (1.0, 2.0):
        delta = np.zeros_like(diff)
        delta[order[:k]] = strength * diff[order[:k]]
        after = m.images(w, style_edits=m.style_edit_of(delta))
        r = gt._outcome(clf, attr, dst, before, imgs0, after)  # pylint: disable=protected-access
        worst = min((v, key[5:]) for key, v in r.items() if key.startswith("keep/"))
        print(
          f"  top {k:4d} x{strength:g}: flip {r['flip']:.3f}, least kept {worst[0]:.3f} "
          f"({worst[1]}), pixel change {r['pixel_change']:.3f}",
          flush=True,
        )


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300)
