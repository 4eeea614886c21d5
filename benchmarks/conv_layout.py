"""Where XLA CPU's convolutions stand against oneDNN's, layer by layer, and what layout
and batch shape change.

pix2pix is the family furthest behind PyTorch on this CPU (BENCHMARKS.md), and its step
is almost all 4x4 stride-2 convolutions and transposed convolutions. This script times
those layers alone, forward + backward (gradients of input and kernel, what a train step
pays), interleaved in one process, median of ``--repeats`` after compiling:

* JAX, ``lax`` convolutions on NHWC activations with HWIO kernels (what ``flax.linen.Conv``
  and ``ConvTranspose`` run);
* JAX, ``lax`` convolutions on NCHW with OIHW (PyTorch's layout, handed to XLA as such);
* JAX, the zoo's layers (``zoo.models.layers.conv_4x4_s2`` / ``conv_transpose_4x4_s2``:
  the same operations as matmuls over gathered taps, NHWC), which pix2pix and DCGAN-CLS use;
* PyTorch, NCHW contiguous, and PyTorch channels_last (NHWC in memory).

Rows: the U-Net's encoder and decoder layers at 256x256 batch 1 (the reference setting)
and at 64x64 batch 8, plus one layer at batch 1, 8 and 32 for the batch-shape question.
GFLOP/s count 2 * MACs of the forward convolution times 3 (forward, input gradient,
kernel gradient), against the same-run 2048^2 ``jnp.dot``. JAX's transposed convolution
is ``lax.conv_transpose`` without the kernel flip: the same shapes and work as PyTorch's.

  python benchmarks/conv_layout.py --repeats 20
  python benchmarks/conv_layout.py --preset dcgan --repeats 10   # DCGAN-CLS's layers
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import bench_common  # noqa: E402

bench_common.tune_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from zoo.models import layers  # noqa: E402

#: (name, kind, batch, size, c_in, c_out): kind "down" is Conv 4x4 s2 p1 (size -> size/2),
#: "up" is ConvTranspose 4x4 s2 p1 (size -> 2*size).
LAYERS = [
  ("enc 256->128, 3->64", "down", 1, 256, 3, 64),
  ("enc 128->64, 64->128", "down", 1, 128, 64, 128),
  ("enc 64->32, 128->256", "down", 1, 64, 128, 256),
  ("enc 32->16, 256->512", "down", 1, 32, 256, 512),
  ("dec 16->32, 1024->256", "up", 1, 16, 1024, 256),
  ("dec 32->64, 512->128", "up", 1, 32, 512, 128),
  ("dec 64->128, 256->64", "up", 1, 64, 256, 64),
  ("dec 128->256, 128->3", "up", 1, 128, 128, 3),
  ("enc 64->32, 16->32 (64px b8)", "down", 8, 64, 16, 32),
  ("dec 32->64, 64->16 (64px b8)", "up", 8, 32, 64, 16),
  ("enc 64->32, 128->256 b1", "down", 1, 64, 128, 256),
  ("enc 64->32, 128->256 b8", "down", 8, 64, 128, 256),
  ("enc 64->32, 128->256 b32", "down", 32, 64, 128, 256),
]


#: DCGAN-CLS at 64x64 (ngf = ndf = 64): D at batch 64, G at 128 (GAN-INT doubles it).
DCGAN_LAYERS = [
  ("D 64->32, 3->64", "down", 64, 64, 3, 64),
  ("D 32->16, 64->128", "down", 64, 32, 64, 128),
  ("D 16->8, 128->256", "down", 64, 16, 128, 256),
  ("D 8->4, 256->512", "down", 64, 8, 256, 512),
  ("G 4->8, 512->256", "up", 128, 4, 512, 256),
  ("G 8->16, 256->128", "up", 128, 8, 256, 128),
  ("G 16->32, 128->64", "up", 128, 16, 128, 64),
  ("G 32->64, 64->3", "up", 128, 32, 64, 3),
]


def flops(kind, b, s, ci, co) -> float:
  out = s // 2 if kind == "down" else s * 2
  # A transposed conv does the MACs of the conv it transposes: per input pixel k*k*ci*co.
  macs = b * (out * out if kind == "down" else s * s) * 16 * ci * co
  return 3 * 2 * macs


def jax_fn(kind, layout):
  dn = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")

  def layer(x, w):
    if layout == "zoo":
      if kind == "down":
        return layers.conv_4x4_s2(x, w)
      return layers.conv_transpose_4x4_s2(x, jnp.swapaxes(w, 2, 3))  # [4, 4, out, in]
    if kind == "down":
      return jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)
    # torch's ConvTranspose2d(k=4, s=2, p=1): pad k - 1 - p = 2 on each side.
    return jax.lax.conv_transpose(x, w, (2, 2), ((2, 2), (2, 2)), dimension_numbers=dn)

  def loss(x, w, ct):
    return jnp.vdot(layer(x, w), ct)

  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def jax_case(kind, b, s, ci, co, layout):
  rng = np.random.default_rng(0)
  out = s // 2 if kind == "down" else s * 2
  if layout in ("NHWC", "zoo"):
    x = rng.standard_normal((b, s, s, ci), np.float32)
    w = rng.standard_normal((4, 4, ci, co), np.float32) * 0.05
    ct = rng.standard_normal((b, out, out, co), np.float32)
  else:
    x = rng.standard_normal((b, ci, s, s), np.float32)
    w = rng.standard_normal((co, ci, 4, 4), np.float32) * 0.05
    ct = rng.standard_normal((b, co, out, out), np.float32)
  f = jax_fn(kind, layout)
  args = [jnp.asarray(a) for a in (x, w, ct)]
  t0 = time.perf_counter()
  jax.block_until_ready(f(*args))
  compile_s = time.perf_counter() - t0

  def run():
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t

  return run, compile_s


def torch_case(torch, kind, b, s, ci, co, channels_last):
  g = torch.Generator().manual_seed(0)
  x = torch.randn(b, ci, s, s, generator=g)
  if kind == "down":
    w = torch.randn(co, ci, 4, 4, generator=g) * 0.05
  else:
    w = torch.randn(ci, co, 4, 4, generator=g) * 0.05  # ConvTranspose2d's (in, out, k, k)
  if channels_last:
    x = x.contiguous(memory_format=torch.channels_last)
    w = w.contiguous(memory_format=torch.channels_last)
  x.requires_grad_(True)
  w.requires_grad_(True)
  op = torch.nn.functional.conv2d if kind == "down" else torch.nn.functional.conv_transpose2d
  ct = None

  def run():
    nonlocal ct
    t = time.perf_counter()
    y = op(x, w, stride=2, padding=1)
    if ct is None:
      ct = torch.randn(y.shape, generator=g)
      if channels_last:
        ct = ct.contiguous(memory_format=torch.channels_last)
    gx, gw = torch.autograd.grad(y, (x, w), ct)
    return time.perf_counter() - t

  return run


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--layers", default="", help="comma-separated row numbers (default all)")
  p.add_argument("--preset", default="pix2pix", choices=("pix2pix", "dcgan"))
  a = p.parse_args()
  import torch  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  dot = bench_common.DotPeak(2048)
  print(
    f"# {bench_common.cpu_model()}, {os.cpu_count()} cores, torch threads "
    f"{torch.get_num_threads()}, {bench_common.versions(torch)}, load {bench_common.load()}, "
    f"git {bench_common.git_head()}"
  )
  table = LAYERS if a.preset == "pix2pix" else DCGAN_LAYERS
  rows = [table[int(i)] for i in a.layers.split(",")] if a.layers else table
  print(
    "| layer | batch | JAX lax NHWC (ms) | JAX lax NCHW (ms) | JAX zoo layer (ms) | "
    "torch NCHW (ms) | torch channels_last (ms) | zoo speedup (best torch / zoo) | "
    "zoo GFLOP/s | dot GFLOP/s |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|")
  for name, kind, b, s, ci, co in rows:
    runs = {
      "jnhwc": jax_case(kind, b, s, ci, co, "NHWC")[0],
      "jnchw": jax_case(kind, b, s, ci, co, "NCHW")[0],
      "jzoo": jax_case(kind, b, s, ci, co, "zoo")[0],
      "tnchw": torch_case(torch, kind, b, s, ci, co, False),
      "tcl": torch_case(torch, kind, b, s, ci, co, True),
    }
    for r in runs.values():  # warm-up
      r()
    times = {k: [] for k in runs}
    for _ in range(a.repeats):
      for k, r in runs.items():  # interleaved
        times[k].append(r())
    t = {k: bench_common.med(v) for k, v in times.items()}
    peak = dot()
    best_torch = min(t["tnchw"], t["tcl"])
    gf = flops(kind, b, s, ci, co) / t["jzoo"] / 1e9
    ms = " | ".join(f"{t[k] * 1e3:.2f}" for k in ("jnhwc", "jnchw", "jzoo", "tnchw", "tcl"))
    print(
      f"| {name} | {b} | {ms} | {best_torch / t['jzoo']:.2f}x | {gf:.0f} | {peak:.0f} |",
      flush=True,
    )


if __name__ == "__main__":
  main()
