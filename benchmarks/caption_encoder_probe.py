"""Probe: does the frozen caption encoder say every attribute a caption names? (README: T2F)

  python benchmarks/caption_encoder_probe.py [ENCODER_WORKDIR]   # default $ZOO_TEXT_ENCODER

Fits one linear softmax classifier per attribute on the embeddings of 20,000 training
captions that name it (Adam, 500 full-batch steps, a small L2 penalty) and reads the
attribute off the embeddings of 1,000 held-out test captions, the strings T2F and the
DCGAN are judged on. Accuracy near 1 means a generator conditioned on the embedding has
all it needs; the gap to the generator's caption accuracy is the generator's.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data import faces
from zoo.data.faces import captioned
from zoo.tasks import text_encoder


def _pairs(source, idx):
  rows = [source.caption(int(i)) for i in idx]
  codes = np.stack([[r[2][a] for a in faces.ATTRIBUTE_NAMES] for r in rows])
  return [r[0] for r in rows], codes, np.stack([r[1] for r in rows])


def linear_probe(x, y, classes: int, steps: int = 500, l2: float = 1e-4):
  """Softmax regression ``x [n, d] -> y [n]``; returns ``predict(x) -> [n]``."""
  params = (jnp.zeros((x.shape[1], classes)), jnp.zeros(classes))
  opt = optax.adam(1e-2)

  def loss(p):
    logits = x @ p[0] + p[1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + l2 * jnp.sum(
      p[0] ** 2
    )

  @jax.jit
  def step(p, s):
    g = jax.grad(loss)(p)
    u, s = opt.update(g, s)
    return optax.apply_updates(p, u), s

  state = opt.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return lambda v: np.asarray(jnp.argmax(v @ params[0] + params[1], -1))


def main(argv) -> None:
  enc = text_encoder.load_text_encoder(argv[1] if len(argv) > 1 else None)
  train = captioned.CaptionedFaces("train", (32, 32), num_faces=10_000, captions_per_face=5, seed=0)
  idx = np.random.default_rng(0).choice(len(train), 20_000, replace=False)
  caps, codes, named = _pairs(train, idx)
  x = jnp.asarray(enc.embed(caps))
  held = captioned.heldout_pairs(1000, exclude=train.all_captions(), with_images=False)
  xt = enc.embed(held["caption"])
  accs = []
  for j, name in enumerate(faces.ATTRIBUTE_NAMES):
    sel, sel_t = named[:, j], held["mentions"][:, j]
    predict = linear_probe(x[sel], jnp.asarray(codes[sel, j]), faces.ATTRIBUTE_SIZES[j])
    acc = float((predict(xt[sel_t]) == held["attributes"][sel_t, j]).mean())
    accs.append(acc)
    print(f"{name:18s} held-out accuracy {acc:.3f} ({int(sel_t.sum())} captions)", flush=True)
  print(f"mean {np.mean(accs):.4f}")


if __name__ == "__main__":
  main(sys.argv)
