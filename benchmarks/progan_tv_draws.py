"""Probe: how far a trained ProGAN run's attribute balance is from the issue's 0.1 TV
goal, over several latent draws (README: the adversarial core and ProGAN).

  python benchmarks/progan_tv_draws.py runs/progan [draws]
  python benchmarks/progan_tv_draws.py runs/progan values    # which values lean, 4,000 samples
  python benchmarks/progan_tv_draws.py runs/progan pooled [STEP ...]  # 8,000 samples per step

Needs a trained face classifier (runs/face_classifier or $ZOO_FACE_CLASSIFIER). For each
draw of ``eval.num_samples`` latents of the EMA generator at the latest step, prints the
classifier FD and per-attribute total-variation distances against the run's real faces,
as training's evaluation computes them; draw 0 is the latents that evaluation uses.

``values`` prints, per attribute, each value's share of the real faces' and of 4,000
samples' predictions, then the same for the real faces degraded (blurred, or down- and
up-sampled through 16x16): whether the classifier reads a plainer value into a less
sharp face, as it may into a sample.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from zoo.data import faces
from zoo.data.images import unconditional as image_data
from zoo.eval import metrics as em
from zoo.tasks import face_classifier as fc_task
from zoo.tasks import progan


def draws(workdir: str, num: int) -> None:
  task, state, step = progan.restore_state(workdir, fd="train")
  clf, real_feats, real_pred, _ = task._fd_judge()  # pylint: disable=protected-access
  n = task.config.eval.num_samples
  for d in range(num):
    z = task.generator_inputs(jax.random.key(task.config.seed + 2 + 1000 * d), n)
    fake = task.generate(state, z, step)
    tv = em.attribute_tv_distance(clf.predict(fake), real_pred)
    fd = float(em.frechet_distance(clf.features(fake), real_feats))
    worst = max((k for k in tv if k != "max"), key=tv.get)
    print(
      f"step {step} draw {d}: FD {fd:.0f}, max TV {tv[worst]:.3f} ({worst}); "
      + ", ".join(f"{k} {v:.3f}" for k, v in tv.items() if k != "max"),
      flush=True,
    )


def pooled(workdir: str, steps) -> None:
  """Per-attribute TV of 8,000 samples (the same latents) at each kept checkpoint in
  ``steps`` (default: the latest), where a 1,000-sample draw's own noise is small: does
  the balance lean, and does it move from one checkpoint to the next?"""
  judge = None
  for step in steps or [None]:
    task, state, at = progan.restore_state(workdir, step=step, fd="train")
    judge = judge or task._fd_judge()  # pylint: disable=protected-access
    clf, _, real_pred, _ = judge
    z = task.generator_inputs(jax.random.key(777), 8000)
    fake = task.generate(state, z, at)  # batches of 64 inside
    tv = em.attribute_tv_distance(clf.predict(fake), real_pred)
    print(
      f"step {at}, 8,000 samples: " + ", ".join(f"{k} {v:.3f}" for k, v in tv.items()), flush=True
    )


def _shares(pred, other) -> None:
  """One line per attribute: TV, then ``value: share in other / share in pred``."""
  tv = em.attribute_tv_distance(pred, other)
  for a, values in faces.ATTRIBUTES.items():
    a_share = np.bincount(other[a], minlength=len(values)) / len(other[a])
    b_share = np.bincount(pred[a], minlength=len(values)) / len(pred[a])
    cells = "  ".join(f"{v} {x:.2f}/{y:.2f}" for v, x, y in zip(values, a_share, b_share))
    print(f"  {a:16s} TV {tv[a]:.3f}  {cells}", flush=True)


def _blur(x, sigma):
  k = jnp.asarray(em.gaussian_window(5, sigma), jnp.float32)
  x = jnp.asarray(x)
  c = x.shape[-1]
  kh = jnp.tile(k[:, None, None, None], (1, 1, 1, c))  # HWIO, depthwise
  dn = ("NHWC", "HWIO", "NHWC")

  def same(y, w):
    return jax.lax.conv_general_dilated(
      y, w, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=c
    )

  return np.asarray(same(same(x, kh), jnp.transpose(kh, (1, 0, 2, 3))))


def values(workdir: str) -> None:
  task, state, step = progan.restore_state(workdir, fd="train")
  clf = fc_task.get_or_train_classifier()
  c = task.config
  # the real faces whose predictions evaluation compares with (ProGANTask._fd_judge),
  # kept here because the degraded copies are made from them
  num_real = max(c.eval.num_samples, c.eval.num_real)
  x = image_data.validation_faces(task.final, num_real, seed=c.data.seed)
  base = clf.predict(x)
  z = task.generator_inputs(jax.random.key(123), 4000)
  fake = task.generate(state, z, step)
  print(f"step {step}: value share among real faces / among 4,000 samples", flush=True)
  _shares(clf.predict(fake), base)
  h, w = x.shape[1:3]
  small = jax.image.resize(jnp.asarray(x), (len(x), h // 2, w // 2, 3), "linear")
  degraded = {
    "blurred (sigma 0.8 px)": _blur(x, 0.8),
    f"through {h // 2}x{w // 2}": np.asarray(jax.image.resize(small, x.shape, "linear")),
  }
  for name, y in degraded.items():
    print(f"real faces / the same {name}", flush=True)
    _shares(clf.predict(y.astype(np.float32)), base)


if __name__ == "__main__":
  if len(sys.argv) > 2 and sys.argv[2] == "values":
    values(sys.argv[1])
  elif len(sys.argv) > 2 and sys.argv[2] == "pooled":
    pooled(sys.argv[1], [int(s) for s in sys.argv[3:]])
  else:
    draws(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
