"""Probe: does the caption encoder learn under DS-SJE variants? (BENCHMARKS.md)

  python benchmarks/text_encoder_sje.py sum norm   # summed violations, cosine
  python benchmarks/text_encoder_sje.py max raw    # the paper's max, dot product

Needs a trained face classifier (runs/face_classifier or $ZOO_FACE_CLASSIFIER).
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.training import mesh as mesh_lib
from zoo.tasks import text_encoder as te
from zoo.eval import face_classifier as fc
from zoo.losses import embedding as E

mode = sys.argv[1]
norm = sys.argv[2] == "norm"
c = te.default_config()
c.data.num_faces = 2000
clf = fc.load_classifier()
task = te.TextEncoderTask(c, mesh_lib.make_mesh(jax.devices()[:1]), clf, print)
print("feat stats", task.features.mean(), task.features.std(), np.abs(task.features).max())
state = task.init_state(jax.random.key(0))
tx = optax.adam(1e-3)
state["opt_state"] = tx.init(state["params"])


def loss_fn(p, b):
  t, v = task.joint.apply({"params": p}, b["tokens"], b["lengths"], b["features"])
  if norm:
    t = t / jnp.linalg.norm(t, axis=1, keepdims=True)
    v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
  if mode == "max":
    l = E.ds_sje_loss(v, t, match=b["match"], margin=0.2 if norm else 1.0, aggregate="max").mean()
  else:
    m = 0.2 if norm else 1.0
    l = E.ds_sje_loss(v, t, match=b["match"], margin=m, aggregate="sum").mean()
  return l, E.retrieval_accuracy(t, v, match=b["match"])


@jax.jit
def step(state, b):
  (l, acc), g = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], b)
  u, o = tx.update(g, state["opt_state"], state["params"])
  return {"params": optax.apply_updates(state["params"], u), "opt_state": o}, l, acc


it = task.train_batches(0)
accs = []
t0 = time.time()
for i in range(400):
  b = next(it)
  state, l, acc = step(state, b)
  accs.append(float(acc))
  if i % 100 == 99:
    print(
      mode,
      norm,
      i + 1,
      "loss",
      float(l),
      "batch acc",
      np.mean(accs[-100:]),
      f"{time.time() - t0:.0f}s",
      flush=True,
    )
