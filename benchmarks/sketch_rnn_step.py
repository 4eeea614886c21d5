"""Benchmark of the Sketch-RNN training step on CPU: JAX (zoo) vs a PyTorch reference.

Times the jitted ``SketchRNNTask.train_step`` (compiled once, state donated as
in ``zoo.training.loop``; median of ``--repeats`` steps after a warm-up step,
``block_until_ready``) at magenta's full size and a small size for the
``lstm``, ``layer_norm`` and ``hyper`` cells, and in the same process, step by
step interleaved with it, the PyTorch reference of the same model
(``benchmarks/torch_sketch_rnn.py``) and a large ``jnp.dot`` (the machine's
practical matmul peak under the same load).  Also reports compile time, the
data pipeline's batches/s and the achieved FLOP/s.

Usage::

  python benchmarks/sketch_rnn_step.py                       # everything
  python benchmarks/sketch_rnn_step.py --sizes full --cells lstm --repeats 7
  python benchmarks/sketch_rnn_step.py --impls fused,scan    # before/after in one run
  python benchmarks/sketch_rnn_step.py --no-torch --sizes small

FLOPs.  ``model FLOPs`` = 3 x the forward matmul FLOPs of the model as
specified (every step multiplies ``[x_t, z]`` by ``W_xh`` and ``h`` by
``W_hh``; output projection; latent heads), the usual forward + backward
estimate.  ``exec FLOPs`` counts what the ``fused`` implementation actually
multiplies (``z`` projected once per sequence: fewer FLOPs).  The FLOP/s
fraction is ``model FLOPs / step time`` over the contemporaneous ``jnp.dot``
rate; XLA's own ``cost_analysis()`` figure is printed for reference (it counts
a while loop's body once, not once per iteration).

Process settings (before JAX / PyTorch start; see ``--help``):
  * ``OMP_WAIT_POLICY=PASSIVE`` (PyTorch's OpenMP threads sleep instead of
    spinning at barriers; on a shared, oversubscribed CPU the default spinning
    makes PyTorch's 2-thread LSTM several times slower);
  * ``--malloc-tuning`` (default on): glibc ``mallopt`` so that freed large
    buffers are reused instead of returned to the kernel, which makes every
    step page-fault its ~1 GB of fresh temporaries again (both frameworks
    allocate through glibc, so this applies to both).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks.bench_common import (  # noqa: E402
  DotPeak,
  cpu_model,
  git_head,
  load,
  med,
  release_memory,
  tune_malloc,
  versions,
)

SIZES = {
  # magenta's defaults
  "full": dict(batch_size=100, enc_rnn_size=256, dec_rnn_size=512),
  # same model, smaller batch and RNNs
  "small": dict(batch_size=32, enc_rnn_size=64, dec_rnn_size=128),
}
CELLS = ("lstm", "layer_norm", "hyper")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="full,small", help="comma list of: " + ",".join(SIZES))
  p.add_argument("--cells", default=",".join(CELLS), help="comma list of: " + ",".join(CELLS))
  p.add_argument(
    "--impls",
    default="fused",
    help="comma list of JAX variants NAME[:UNROLL][@XLA_OPT=VAL;...]: NAME a "
    "SketchRNN.rnn_impl (fused, hoisted, scan), UNROLL the scan unroll, "
    "XLA_OPT=VAL compiler options of that step only (e.g. "
    "fused@xla_cpu_prefer_vector_width=512)",
  )
  p.add_argument("--repeats", type=int, default=5, help="timed steps per framework (median)")
  p.add_argument("--max-seq-len", type=int, default=250)
  p.add_argument("--z-size", type=int, default=128)
  p.add_argument("--num-mixture", type=int, default=20)
  p.add_argument("--hyper-num-units", type=int, default=256)
  p.add_argument("--hyper-embedding-size", type=int, default=32)
  p.add_argument(
    "--no-recurrent-dropout",
    action="store_true",
    help="turn magenta's recurrent dropout off in the JAX model (torch.nn.LSTM has none)",
  )
  p.add_argument(
    "--jax-threads",
    type=int,
    default=0,
    help="size of XLA's CPU thread pool (0: all cores); the pool is created "
    "under a reduced CPU affinity which is then restored for all threads",
  )
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
  p.add_argument("--torch-threads", type=int, default=2)
  p.add_argument(
    "--torch-encoders",
    default="masked,packed",
    help="lstm encoder(s) of the PyTorch reference, comma list of masked, packed; "
    "the first one is the reference of the speedup column (layer_norm / "
    "hyper have one loop encoder)",
  )
  p.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE", "unset"))
  p.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument(
    "--data",
    default="auto",
    help="'auto' (../shared/data/aaron_sheep.npz if present, else synthetic), "
    "'synthetic' or a .npz path",
  )
  p.add_argument("--pipeline-batches", type=int, default=40)
  p.add_argument("--dot-size", type=int, default=2048)
  p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
  p.add_argument("--json", default="", help="also write all results to this file")
  return p.parse_args(argv)


ARGS = parse_args()
if ARGS.omp_wait_policy != "unset":
  os.environ["OMP_WAIT_POLICY"] = ARGS.omp_wait_policy
if ARGS.xla_flags:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()
MALLOC_TUNED = tune_malloc() if ARGS.malloc_tuning else False
_AFFINITY = os.sched_getaffinity(0)
if ARGS.jax_threads:
  os.sched_setaffinity(0, set(sorted(_AFFINITY)[: ARGS.jax_threads]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_compilation_cache", False)
if ARGS.jax_threads:  # the CPU client (and its thread pool) exists now; undo the pinning
  jnp.zeros(()).block_until_ready()
  for _tid in os.listdir("/proc/self/task"):
    try:
      os.sched_setaffinity(int(_tid), _AFFINITY)
    except OSError:
      pass

from launch.configs.sketch_rnn import get_config  # noqa: E402
from zoo.data.sketches import pipeline as sketch_pipeline  # noqa: E402
from zoo.data.sketches.tfds import load_sketch_splits  # noqa: E402
from zoo.tasks import sketch_rnn as task_lib  # noqa: E402


# ----------------------------------------------------------------------------- data


def load_data(spec: str, max_seq_len: int):
  if spec == "auto":
    sheep = os.path.join(REPO, "..", "shared", "data", "aaron_sheep.npz")
    spec = sheep if os.path.exists(sheep) else "synthetic"
  splits = load_sketch_splits(spec, seed=0)
  splits, msl, scale = sketch_pipeline.prepare_splits(splits, max_seq_len=max_seq_len)
  return os.path.basename(spec), splits, msl, scale


def make_stream(splits, batch_size, max_seq_len, scale):
  return sketch_pipeline.SketchTrainStream(
    splits["train"], batch_size=batch_size, max_seq_len=max_seq_len, scale_factor=scale, seed=0
  )


def pipeline_rate(stream, n: int) -> float:
  it = stream.iterate(0)
  next(it)  # thread start-up and first batch
  t0 = time.perf_counter()
  for _ in range(n):
    next(it)
  return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------- FLOPs


def lstm_like_fwd_flops(batch, steps, n_in, units, hyper=None):
  """Forward matmul FLOPs of ``steps`` steps of one cell (``[x, h] @ W`` per step)."""
  f = 2 * batch * steps * (n_in + units) * 4 * units
  if hyper is not None:  # hyper cell on [x, h] + its embeddings and scalings
    hu, emb = hyper
    f += 2 * batch * steps * (n_in + units + hu) * 4 * hu
    f += 2 * batch * steps * (hu * 12 * emb + 12 * emb * units)
  return f


def model_flops(b, t, enc, dec, z, m, cell, hyper):
  hy = hyper if cell == "hyper" else None
  fwd = 2 * lstm_like_fwd_flops(b, t, 5, enc, hy)  # two encoder directions
  fwd += lstm_like_fwd_flops(b, t, 5 + z, dec, hy)  # decoder, [x_t, z] every step
  fwd += 2 * b * t * dec * (3 + 6 * m)  # output projection
  state = 2 * dec + (2 * hyper[0] if cell == "hyper" else 0)
  fwd += 2 * b * (2 * enc * z * 2 + z * state)  # mu, presig, dec_init
  return 3 * fwd


def exec_flops(b, t, enc, dec, z, m, cell, hyper):
  """What the fused implementation multiplies: z's projection once per sequence."""
  full = model_flops(b, t, enc, dec, z, m, cell, hyper)
  saved = 3 * 2 * b * (t - 1) * z * 4 * dec  # z @ W_z per step -> once
  if cell == "hyper":
    saved += 3 * 2 * b * (t - 1) * z * 4 * hyper[0]
  return full - saved


# ----------------------------------------------------------------------------- JAX


def make_config(size: str, cell: str, args):
  c = get_config("magenta")
  c.max_seq_len = args.max_seq_len
  c.enc_model = c.dec_model = cell
  c.z_size, c.num_mixture = args.z_size, args.num_mixture
  c.hyper_num_units, c.hyper_embedding_size = args.hyper_num_units, args.hyper_embedding_size
  c.use_recurrent_dropout = not args.no_recurrent_dropout
  for k, v in SIZES[size].items():
    c[k] = v
  return c


class JaxStep:
  """The task's train step, jitted like ``zoo.training.loop`` (state donated)."""

  def __init__(self, c, batch, spec: str):
    impl, _, opts = spec.partition("@")
    impl, _, unroll = impl.partition(":")
    copts = {}
    for kv in filter(None, opts.split(";")):
      k, v = kv.split("=", 1)
      copts[k] = {"true": True, "false": False}.get(v, int(v) if v.isdigit() else v)
    model = dataclasses.replace(task_lib.make_model(c), rnn_impl=impl, scan_unroll=int(unroll or 1))
    tx = task_lib.make_optimizer(c)

    class _Task:  # the attributes SketchRNNTask.train_step uses
      pass

    task = _Task()
    task.config, task.model, task.tx = c, model, tx
    task.lr_fn = task_lib.learning_rate_schedule(c)
    key = jax.random.key(0)

    def step_fn(state, batch, step):
      rng = jax.random.fold_in(key, step)
      return task_lib.SketchRNNTask.train_step(task, state, batch, rng, step)

    self.batch = jax.device_put(batch)
    init = jax.jit(
      lambda k: model.init(
        {"params": k}, self.batch["strokes"][:1], self.batch["seq_len"][:1], deterministic=True
      )
    )
    params = init(jax.random.key(1))["params"]
    self.num_params = sum(x.size for x in jax.tree.leaves(params))
    self.state = {"params": params, "opt_state": tx.init(params)}
    jitted = jax.jit(step_fn, donate_argnums=(0,))
    t0 = time.perf_counter()
    lowered = jitted.lower(self.state, self.batch, np.int32(0))
    self.compiled = lowered.compile(compiler_options=copts or None)
    self.compile_s = time.perf_counter() - t0
    try:
      self.temp_gb = self.compiled.memory_analysis().temp_size_in_bytes / 1e9
    except Exception:  # noqa: BLE001
      self.temp_gb = float("nan")
    try:
      ca = self.compiled.cost_analysis()
      ca = ca[0] if isinstance(ca, (list, tuple)) else ca
      self.xla_flops = float(ca.get("flops", float("nan")))
    except Exception:  # noqa: BLE001
      self.xla_flops = float("nan")
    self.step_no = 0
    self.last_loss = None

  def __call__(self) -> float:
    t0 = time.perf_counter()
    self.state, metrics = self.compiled(self.state, self.batch, np.int32(self.step_no))
    jax.block_until_ready((self.state, metrics))
    dt = time.perf_counter() - t0
    self.step_no += 1
    self.last_loss = float(metrics["loss"])
    return dt


# --------------------------------------------------------------------------- PyTorch


class TorchStep:
  def __init__(self, c, batch, encoder, torch_mod, ref):
    torch = torch_mod
    torch.manual_seed(0)
    model = ref.TorchSketchRNN(
      enc_rnn_size=c.enc_rnn_size,
      dec_rnn_size=c.dec_rnn_size,
      z_size=c.z_size,
      num_mixture=c.num_mixture,
      cell=c.dec_model,
      encoder=encoder,
      recurrent_dropout=c.use_recurrent_dropout,
      keep_prob=c.recurrent_dropout_prob,
      hyper_num_units=c.hyper_num_units,
      hyper_embedding_size=c.hyper_embedding_size,
    )
    from benchmarks import torch_gans  # pylint: disable=g-import-not-at-top

    # The GPU when PyTorch sees one, as JAX uses it, so both run on the same device.
    self.device, self.sync = torch_gans.device(), torch_gans.sync
    model.to(self.device)
    self.num_params = sum(p.numel() for p in model.parameters())
    self.trainer = ref.TorchTrainer(
      model,
      learning_rate=c.learning_rate,
      min_learning_rate=c.min_learning_rate,
      decay_rate=c.decay_rate,
      grad_clip=c.grad_clip,
      kl_weight=c.kl_weight,
      kl_weight_start=c.kl_weight_start,
      kl_decay_rate=c.kl_decay_rate,
      kl_tolerance=c.kl_tolerance,
    )
    self.strokes = torch.from_numpy(np.asarray(batch["strokes"])).to(self.device)
    self.seq_len = torch.from_numpy(np.asarray(batch["seq_len"]).astype(np.int64)).to(self.device)
    self.last_loss = None

  def __call__(self) -> float:
    t0 = time.perf_counter()
    self.last_loss = self.trainer.step(self.strokes, self.seq_len)
    self.sync(self.device)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ main


def main(args):
  sizes = [s for s in args.sizes.split(",") if s]
  cells = [c for c in args.cells.split(",") if c]
  impls = [i for i in args.impls.split(",") if i]
  torch_mod = ref = None
  if not args.no_torch:
    import torch as torch_mod  # noqa: F811  (benchmark-only dependency)
    from benchmarks import torch_sketch_rnn as ref

    torch_mod.set_num_threads(args.torch_threads)

  info = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "versions": versions(torch_mod),
    "command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
    "jax_devices": str(jax.devices()),
    "malloc_tuning": MALLOC_TUNED,
    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    "torch_threads": args.torch_threads if torch_mod is not None else None,
    "jax_threads": args.jax_threads or os.cpu_count(),
    "load_start": load(),
    "git": git_head(),
  }
  print("# Sketch-RNN train step benchmark")
  for k, v in info.items():
    print(f"- {k}: {v}")
  sys.stdout.flush()

  data_name, splits, msl, scale = load_data(args.data, args.max_seq_len)
  print(f"- data: {data_name} (max_seq_len {msl}, {len(splits['train'])} train sketches)")
  encoders = [e for e in args.torch_encoders.split(",") if e]
  dot = DotPeak(args.dot_size)
  results, pipeline = [], {}
  for size in sizes:
    bsz = SIZES[size]["batch_size"]
    stream = make_stream(splits, bsz, msl, scale)
    pipeline[size] = (pipeline_rate(stream, args.pipeline_batches), load())
    print(
      f"\n## {size}: data pipeline {pipeline[size][0]:.1f} batches/s "
      f"(batch {bsz}, load {pipeline[size][1]})",
      flush=True,
    )
    batch = stream.batch(0)
    for cell in cells:
      c = make_config(size, cell, args)
      jsteps = {}
      for impl in impls:
        jsteps[impl] = JaxStep(c, batch, impl)
        print(
          f"  {cell}/{impl}: compile {jsteps[impl].compile_s:.1f} s, "
          f"{jsteps[impl].num_params} params, XLA temp buffers "
          f"{jsteps[impl].temp_gb:.2f} GB",
          flush=True,
        )
      tsteps = {}
      if torch_mod is not None:
        for enc in encoders if cell == "lstm" else encoders[:1]:
          name = f"torch-{enc}" if cell == "lstm" else "torch-loop"
          tsteps[name] = TorchStep(c, batch, enc, torch_mod, ref)
      steps = {**{f"jax-{i}": s for i, s in jsteps.items()}, **tsteps}
      for st in steps.values():  # warm-up (first run allocates, pages in, ...)
        st()
      times = {k: [] for k in steps}
      dots, loads = [], []
      for r in range(args.repeats):
        for k, st in steps.items():
          times[k].append(st())
        dots.append(dot())
        loads.append(os.getloadavg()[0])
        print(
          f"    rep {r}: "
          + " ".join(f"{k}={times[k][-1]:.3f}s" for k in steps)
          + f" dot={dots[-1]:.0f}GF/s load={loads[-1]:.2f}",
          flush=True,
        )
      hy = (c.hyper_num_units, c.hyper_embedding_size)
      mf = model_flops(
        c.batch_size, msl, c.enc_rnn_size, c.dec_rnn_size, c.z_size, c.num_mixture, cell, hy
      )
      ef = exec_flops(
        c.batch_size, msl, c.enc_rnn_size, c.dec_rnn_size, c.z_size, c.num_mixture, cell, hy
      )
      tkeys = list(tsteps)
      for impl in impls:
        jt = times[f"jax-{impl}"]
        t = med(jt)
        row = dict(
          size=size,
          cell=cell,
          impl=impl,
          jax_s=t,
          jax_all=[round(x, 4) for x in jt],
          compile_s=jsteps[impl].compile_s,
          temp_gb=jsteps[impl].temp_gb,
          model_gflop=mf / 1e9,
          exec_gflop=ef / 1e9,
          xla_cost_gflop=jsteps[impl].xla_flops / 1e9,
          model_gflops=mf / t / 1e9,
          exec_gflops=ef / t / 1e9,
          dot_gflops=med(dots),
          dot_all=[round(x, 1) for x in dots],
          frac=(mf / t / 1e9) / med(dots),
          load_med=med(loads),
          load_all=[round(x, 2) for x in loads],
          jax_loss=jsteps[impl].last_loss,
          torch={},
        )
        for k in tkeys:
          tt = times[k]
          row["torch"][k] = dict(
            s=med(tt),
            all=[round(x, 4) for x in tt],
            speedup=med(tt) / t,
            speedup_per_rep=med([b / a for a, b in zip(jt, tt)]),
            loss=tsteps[k].last_loss,
          )
        results.append(row)
        msg = ", ".join(f"{k} {v['s']:.3f}s ({v['speedup']:.2f}x)" for k, v in row["torch"].items())
        print(
          f"  => {cell}/jax-{impl}: {t:.3f}s; {msg}; {row['model_gflops']:.1f} model "
          f"GFLOP/s = {100 * row['frac']:.0f}% of jnp.dot {row['dot_gflops']:.0f} "
          f"GFLOP/s; XLA cost_analysis {row['xla_cost_gflop']:.1f} GFLOP",
          flush=True,
        )
      del jsteps, tsteps, steps
      release_memory()

  print("\n## Results\n")
  print(
    "Data pipeline (SketchTrainStream, 2 threads): "
    + ", ".join(
      f"{s} batch {SIZES[s]['batch_size']}: {r:.1f} batches/s (load {l[0]})"
      for s, (r, l) in pipeline.items()
    )
  )
  print()
  print(
    "| size | cell | JAX impl | JAX step (s) | PyTorch step (s) | JAX speedup | compile (s) "
    "| model GFLOP | model GFLOP/s | jnp.dot GFLOP/s | % of dot | load (med) |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in results:
    if r["torch"]:
      tcol = "<br>".join(f"{v['s']:.3f} ({k[6:]})" for k, v in r["torch"].items())
      scol = "<br>".join(f"{v['speedup']:.2f}x ({k[6:]})" for k, v in r["torch"].items())
    else:
      tcol = scol = "-"
    print(
      f"| {r['size']} | {r['cell']} | {r['impl']} | {r['jax_s']:.3f} | {tcol} | {scol} | "
      f"{r['compile_s']:.1f} | {r['model_gflop']:.1f} | {r['model_gflops']:.1f} | "
      f"{r['dot_gflops']:.0f} | {100 * r['frac']:.0f}% | {r['load_med']:.2f} |"
    )
  print(f"\nload at end: {load()}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"info": info, "pipeline": pipeline, "results": results}, f, indent=1)


if __name__ == "__main__":
  main(ARGS)
