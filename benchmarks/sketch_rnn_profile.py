"""Where the Sketch-RNN train step's time goes, on CPU: a breakdown by ablation.

XLA CPU's profiler trace needs TensorBoard's profile plugin to read; this script instead
times the pieces of the full-size lstm step as separately jitted programs, interleaved
round by round in one process (median of ``--repeats``), with the same-run 2048^2
``jnp.dot`` as the machine's matmul limit:

* ``step``: the whole jitted train step (``benchmarks/sketch_rnn_step.py``'s JaxStep);
* ``no optimizer``: the same step with an identity optimizer: step - this = Adam + clip;
* ``decoder recurrence``: ``zoo.models.rnn_cells.lstm_recurrence`` forward + backward at
  the decoder's size (T, B, 512 units, 5 inputs, time-constant z part, recurrent dropout),
  as the model calls it;
* ``encoder recurrence``: the same for the two 256-unit encoder directions (vmapped);
* ``recurrent GEMMs only``: the same loops with only the per-step matmuls left
  (forward ``[h, x] @ W``, backward ``dgates @ W^T``) plus the weight gradient's one
  large GEMM after the loop: the recurrences minus this is their elementwise work;
* ``empty loops``: the loops with a trivial body, the while loop's own per-iteration cost;
* the rest of the step (``no optimizer`` - both recurrences): input/output projections,
  the MDN head and its loss, the pen loss, KL, the latent heads, reversal and gathers.

Usage::

  python benchmarks/sketch_rnn_profile.py --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys
import time
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import sketch_rnn_step as srs  # noqa: E402
from benchmarks.bench_common import DotPeak, cpu_model, load, med, tune_malloc, versions  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from zoo.models import rnn_cells  # noqa: E402
from zoo.tasks import sketch_rnn as task_lib  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--size", default="full", choices=tuple(srs.SIZES))
  p.add_argument("--data", default="auto", help="npz path, 'synthetic' or 'auto'")
  p.add_argument("--dot-size", type=int, default=2048)
  return p.parse_args(argv)


class Timed:
  """A jitted function of fixed arguments, timed with ``block_until_ready``."""

  def __init__(self, fn, *args):
    self.fn, self.args = jax.jit(fn), args
    jax.block_until_ready(self.fn(*args))  # compile + warm up

  def __call__(self) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(self.fn(*self.args))
    return time.perf_counter() - t0


def recurrence_inputs(key, t, b, units, n_in, directions=None):
  ks = jax.random.split(key, 6)
  lead = () if directions is None else (directions,)
  xs = jax.random.normal(ks[0], lead + (t, b, n_in))
  base = jax.random.normal(ks[1], lead + (b, 4 * units)) * 0.1
  w = jax.random.normal(ks[2], lead + (units + n_in, 4 * units)) / np.sqrt(units + n_in)
  c0 = jnp.zeros(lead + (b, units))
  h0 = jnp.zeros(lead + (b, units))
  keep = jax.random.bernoulli(ks[3], 0.9, lead + (t, b, units))
  return xs, base, w, c0, h0, keep


def recurrence_fwd_bwd(xs, base, w, c0, h0, keep):
  """Forward + backward of the model's LSTM recurrence (all cotangents one)."""

  def f(xs, base, w, c0, h0):
    (c, h), hs = rnn_cells.lstm_recurrence(xs, base, w, c0, h0, keep, 1.0, 0.9, jnp.float32, 1)
    return jnp.sum(hs) + jnp.sum(c) + jnp.sum(h)

  return jax.grad(f, argnums=(0, 1, 2, 3, 4))(xs, base, w, c0, h0)


def gemms_only(xs, base, w, c0, h0, keep):
  """The recurrence's matmuls and nothing else: T forward ``[h, x] @ W``, T backward
  ``dg @ W^T`` (each step's output feeds the next, as in the LSTM), and the weight
  gradient as one ``[T B, U + n]^T @ [T B, 4U]`` GEMM."""
  del base, c0, keep
  units = h0.shape[-1]

  def fwd(h, x):
    g = jnp.concatenate([h, x], -1) @ w
    return g[:, :units], g

  _, gates = jax.lax.scan(fwd, h0, xs)

  def bwd(dh, g):
    d = jax.lax.dot_general(g, w, (((1,), (1,)), ((), ())))
    return d[:, :units] + dh, d

  _, dhx = jax.lax.scan(bwd, jnp.zeros_like(h0), gates, reverse=True)
  t, b = xs.shape[:2]
  dw = dhx.reshape(t * b, -1).T @ gates.reshape(t * b, -1)
  return jnp.sum(dw)


def empty_loops(xs, base, w, c0, h0, keep):
  """Two loops of T iterations (forward, backward) with a trivial body on [B, U]."""
  del base, w, c0, keep

  def body(h, x):
    return h * 0.5 + x[:, :1], None

  h, _ = jax.lax.scan(body, h0, xs)
  h, _ = jax.lax.scan(body, h, xs, reverse=True)
  return h


def identity_optimizer(c):
  del c
  return optax.GradientTransformation(lambda p: optax.EmptyState(), lambda g, s, p=None: (g, s))


def main(args):
  tune_malloc()
  print(f"# Sketch-RNN step breakdown, {args.size} lstm; {datetime.datetime.now().isoformat()}")
  print(f"- cpu: {cpu_model()}; versions: {versions(None)}; load: {load()}")

  class A:  # the options make_config reads
    max_seq_len, z_size, num_mixture = 250, 128, 20
    hyper_num_units, hyper_embedding_size = 256, 32
    no_recurrent_dropout = False

  c = srs.make_config(args.size, "lstm", A)
  name, splits, msl, scale = srs.load_data(args.data, c.max_seq_len)
  c.max_seq_len = msl
  batch = next(iter(srs.make_stream(splits, c.batch_size, msl, scale).iterate(0)))
  t, b = msl, c.batch_size
  dec, enc, z = c.dec_rnn_size, c.enc_rnn_size, c.z_size
  print(f"- data: {name}; T={t} B={b} enc={enc} dec={dec} z={z} M={c.num_mixture}")

  full = srs.JaxStep(c, batch, "fused")
  with mock.patch.object(task_lib, "make_optimizer", identity_optimizer):
    no_opt = srs.JaxStep(c, batch, "fused")
  key = jax.random.key(0)
  dec_in = recurrence_inputs(key, t, b, dec, 5)
  enc_in = recurrence_inputs(key, t, b, enc, 5, directions=2)
  v = functools.partial(jax.vmap, in_axes=0)
  pieces = {
    "step": full,
    "no optimizer": no_opt,
    "decoder recurrence": Timed(recurrence_fwd_bwd, *dec_in),
    "encoder recurrence": Timed(v(recurrence_fwd_bwd), *enc_in),
    "decoder GEMMs only": Timed(gemms_only, *dec_in),
    "encoder GEMMs only": Timed(v(gemms_only), *enc_in),
    "empty loops (dec)": Timed(empty_loops, *dec_in),
    "empty loops (enc)": Timed(v(empty_loops), *enc_in),
  }
  dot = DotPeak(args.dot_size)
  times = {k: [] for k in pieces}
  dots = []
  for r in range(args.repeats):
    for k, f in pieces.items():
      times[k].append(f())
    dots.append(dot())
    print(f"  round {r}: step {times['step'][-1]:.3f}s dot {dots[-1]:.0f} GF/s load {load()}")
  m = {k: med(v) for k, v in times.items()}
  peak = med(dots)

  def gemm_flops(units, n_in, dirs=1):
    return dirs * 3 * 2 * t * b * (units + n_in) * 4 * units  # fwd, bwd-data, bwd-weight

  rec_flops = gemm_flops(dec, 5) + gemm_flops(enc, 5, 2)
  gemm_s = m["decoder GEMMs only"] + m["encoder GEMMs only"]
  loop_s = m["empty loops (dec)"] + m["empty loops (enc)"]
  rec_s = m["decoder recurrence"] + m["encoder recurrence"]
  rows = [
    ("recurrent GEMMs (fwd, bwd-data, bwd-weight)", gemm_s - loop_s),
    ("loops' own per-iteration cost (4 loops x T)", loop_s),
    ("recurrences' elementwise work (gates, cell, saved factors)", rec_s - gemm_s),
    ("outside the recurrences: projections, MDN head + losses, KL", m["no optimizer"] - rec_s),
    ("optimizer (Adam + clip)", m["step"] - m["no optimizer"]),
  ]
  step = m["step"]
  print(f"\nstep {step:.3f} s; same-run jnp.dot {peak:.0f} GFLOP/s")
  print("\n| part | s/step | share of the step |\n|---|---|---|")
  for label, s in rows:
    print(f"| {label} | {s:.3f} | {100 * s / step:.0f}% |")
  print(f"| **whole step** | **{step:.3f}** | 100% |")
  eff = rec_flops / 1e9 / max(gemm_s - loop_s, 1e-9)
  print(
    f"\nrecurrent GEMMs: {rec_flops / 1e9:.1f} GFLOP in {gemm_s - loop_s:.3f} s = {eff:.0f} "
    f"GFLOP/s ({100 * eff / peak:.0f}% of jnp.dot)"
  )
  print("\nraw medians (s): " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))


if __name__ == "__main__":
  main(parse_args())
