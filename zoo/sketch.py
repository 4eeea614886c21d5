"""Sketch-RNN for its users: load a trained workdir, then encode, draw, complete, interpolate.

Example::

    from zoo.sketch import SketchModel
    from zoo.data.sketches import export as sketch_export

    m = SketchModel.load("runs/sketch_rnn")          # config.json + latest checkpoint
    drawings = m.sample(8, temperature=0.4, seed=1)  # list of stroke-3 arrays, in pixels
    sketch_export.write_grid_png(drawings, "samples.png")
    a, b = m.dataset_sketches("test", [0, 1])
    z = m.encode([a, b])                             # posterior means [2, z_size]
    again = m.reconstruct([a, b], greedy=True)
    path = m.interpolate(a, b, steps=8)              # .z [8, z_size], .sketches
    more = m.complete(a[:10], n_candidates=4, seed=0)

Conventions
-----------
* Sketches in and out are stroke-3 arrays ``[n, 3]`` of ``(dx, dy, pen_lift)`` in
  the data's original units (pixels); the stored scale factor (``config.json``)
  normalises them for the model and back.
* ``temperature`` (default: the run's ``sample_temperature``) follows magenta:
  pen-state and mixture probabilities are sharpened as ``p**(1/tau)`` and the
  Gaussians' standard deviations are multiplied by ``tau``; ``greedy=True``
  takes the most likely pen state, mixture component and its mean.
* Randomness comes only from ``seed``; every sketch of a batch has its own key,
  ``fold_in(key(seed), i)``, so the same seed gives the same sketches and sketch
  ``i`` does not depend on how many are drawn (``sample(8, seed=s)[:4] ==
  sample(4, seed=s)``). Sampling is one compiled ``lax.while_loop`` per batch
  shape; batches are padded to powers of two so few shapes are compiled.
* Conditional models: :meth:`SketchModel.sample` draws ``z ~ N(0, I)``;
  :meth:`~SketchModel.encode` returns the posterior mean (``sample=True`` draws
  from the posterior). Unconditional models have no encoder: ``encode``,
  ``decode``, ``reconstruct`` and ``interpolate`` raise a ConfigError.
* Bad input (wrong shape, NaN/inf, temperature <= 0, ...) raises a
  :class:`~zoo.errors.ZooError` subclass with a one-line message.

The ``run_*`` functions at the bottom are what ``python -m launch.sketch_rnn
--mode=...`` calls: they write SVG/PNG/GIF/JSON files (:mod:`zoo.data.sketches.export`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from zoo.data.sketches import export as export
from zoo.data.sketches import strokes as S
from zoo.errors import CheckpointError, ConfigError, ZooError
from zoo.models import sketch_rnn_sampling as sampling
from zoo.training import checkpoint as ckpt_lib
from zoo.training import restore as restore_lib

__all__ = [
  "SketchInputError",
  "SketchModel",
  "Interpolation",
  "slerp",
  "lerp",
  "load_sketch_input",
  "evaluate",
  "run_sample",
  "run_eval",
  "run_interpolate",
  "run_complete",
  "MODES",
]

MODES = ("train", "sample", "eval", "interpolate", "complete")
LATENTS = ("prefix", "posterior", "prior")
CLIP_LIMIT = 1000.0  # offsets are clamped like the training data (strokes.clean)


class SketchInputError(ZooError, ValueError):
  """A sketch or latent given to the API is malformed (one-line message)."""


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _check_sketch(sketch, where: str = "sketch") -> np.ndarray:
  try:
    arr = np.asarray(sketch)
  except (TypeError, ValueError):
    raise SketchInputError(f"{where} is not a numeric [n, 3] array") from None
  if arr.dtype == object or arr.dtype.kind not in "iuf":
    raise SketchInputError(f"{where} has dtype {arr.dtype}, expected a numeric [n, 3] array")
  if arr.ndim != 2 or arr.shape[1] != 3:
    raise SketchInputError(f"{where} has shape {arr.shape}, expected a stroke-3 array [n, 3]")
  if arr.shape[0] == 0:
    raise SketchInputError(f"{where} is empty (0 points)")
  if not np.isfinite(arr).all():
    raise SketchInputError(f"{where} contains non-finite values (NaN or inf)")
  if not np.all((arr[:, 2] == 0) | (arr[:, 2] == 1)):
    raise SketchInputError(f"{where} has pen_lift values other than 0 and 1")
  return arr.astype(np.float32)


def _check_sketches(sketches) -> list[np.ndarray]:
  """One sketch (``[n, 3]``) or a sequence of sketches -> list of float32 arrays."""
  if isinstance(sketches, np.ndarray):
    if sketches.ndim == 2:
      return [_check_sketch(sketches)]
    if sketches.ndim == 3:
      return [_check_sketch(s, f"sketch {i}") for i, s in enumerate(sketches)]
    if sketches.dtype != object:
      raise SketchInputError(
        f"sketch has shape {sketches.shape}, expected a stroke-3 array [n, 3] or a list of them"
      )
  try:
    items = list(sketches)
  except TypeError:
    raise SketchInputError(
      f"expected a stroke-3 array [n, 3] or a list of them, got {type(sketches).__name__}"
    ) from None
  if not items:
    raise SketchInputError("no sketches given")
  try:
    single = np.ndim(items[0]) <= 1
  except ValueError:  # a ragged first item
    single = False
  if single:
    return [_check_sketch(items)]  # one sketch given as a list of rows
  return [_check_sketch(s, f"sketch {i}") for i, s in enumerate(items)]


def _check_temperature(t) -> float:
  if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or t <= 0:
    raise ConfigError(f"temperature must be a finite number > 0, got {t!r}")
  return float(t)


def _check_int(name: str, v, lo: int) -> int:
  if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
    raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
  return int(v)


def _bucket(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


def _pad_rows(x, size: int):
  """Pads axis 0 to ``size`` with copies of row 0 (results of padded rows are dropped)."""
  n = x.shape[0]
  if n == size:
    return x
  return jnp.concatenate([x, jnp.repeat(x[:1], size - n, axis=0)], axis=0)


def _row_keys(key, n: int, start: int = 0):
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(start, start + n))


# ---------------------------------------------------------------------------
# Interpolation helpers
# ---------------------------------------------------------------------------


def lerp(z0, z1, t) -> np.ndarray:
  """Linear interpolation ``(1 - t) z0 + t z1`` for each ``t`` -> ``[len(t), Z]``."""
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  t = np.atleast_1d(np.asarray(t, np.float64))[:, None]
  return (1.0 - t) * z0 + t * z1


def slerp(z0, z1, t, *, eps: float = 1e-6) -> np.ndarray:
  """Spherical interpolation (Ha & Eck 2017, as in magenta's ``slerp``) -> ``[len(t), Z]``.

  ``sin((1-t) w) / sin(w) z0 + sin(t w) / sin(w) z1`` with ``w`` the angle between
  ``z0`` and ``z1``. Equal-norm endpoints keep their norm along the path. Falls
  back to :func:`lerp` when the vectors are (anti)parallel (``sin w < eps``) or
  one of them is zero.
  """
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
  if n0 == 0 or n1 == 0:
    return lerp(z0, z1, t)
  omega = np.arccos(np.clip(np.dot(z0 / n0, z1 / n1), -1.0, 1.0))
  so = np.sin(omega)
  if so < eps:
    return lerp(z0, z1, t)
  t = np.atleast_1d(np.asarray(t, np.float64))[:, None]
  return np.sin((1.0 - t) * omega) / so * z0 + np.sin(t * omega) / so * z1


@dataclasses.dataclass
class Interpolation:
  """Result of :meth:`SketchModel.interpolate`."""

  t: np.ndarray  # [steps] in [0, 1]
  z: np.ndarray  # [steps, z_size]; z[0], z[-1] are the two encodings
  sketches: list  # decoded stroke-3 sketches, one per step
  mode: str


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def _parse_run_info(workdir: str, info: dict) -> tuple[ml_collections.ConfigDict, dict]:
  """``(config, derived)`` from a run's ``config.json`` dict (its ``derived`` section split off)."""
  info = dict(info)
  path = os.path.join(workdir, ckpt_lib.RUN_CONFIG)
  try:
    derived = info.pop("derived")
    derived = {
      "max_seq_len": int(derived["max_seq_len"]),
      "scale_factor": float(derived["scale_factor"]),
    }
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"{path} is unreadable or incomplete ({type(e).__name__}: {e})") from None
  return ml_collections.ConfigDict(info), derived


class SketchModel:
  """A trained Sketch-RNN with its data scale; see the module docstring.

  Build with :meth:`load`; or directly from a ``SketchRNN`` module, its params and
  the training config (needs ``sample_temperature``; ``data_set`` etc. only for
  :meth:`dataset_sketches`).
  """

  def __init__(
    self,
    model,
    params,
    config,
    *,
    max_seq_len: int,
    scale_factor: float,
    step: int | None = None,
    workdir: str | None = None,
  ):
    self.model = model
    self.params = params
    self.config = config
    self.max_seq_len = int(max_seq_len)
    self.scale_factor = float(scale_factor)
    self.step = step
    self.workdir = workdir
    self._splits = None
    self._sample_fn = jax.jit(
      functools.partial(sampling.sample, model), static_argnames=("batch_size", "max_len", "greedy")
    )
    if model.conditional:
      self._encode_fn = jax.jit(
        lambda params, x, n: model.apply({"params": params}, x, n, method=model.encode)
      )

  # ------------------------------------------------------------------ loading
  @classmethod
  def load(cls, workdir: str | os.PathLike, *, step: int | None = None) -> "SketchModel":
    """Rebuilds the model from ``workdir/config.json`` and restores the latest
    (or ``step``) checkpoint's params. Raises CheckpointError (one line) when the
    workdir, its config or its checkpoints are missing."""
    from zoo.tasks import sketch_rnn as task_lib  # pylint: disable=g-import-not-at-top

    workdir = os.fspath(workdir)
    built = {}

    def abstract(info, meta):
      del meta  # a Sketch-RNN state does not change shape during training
      config, derived = _parse_run_info(workdir, info)
      try:
        task_lib.validate_config(config)
      except (KeyError, AttributeError) as e:
        raise CheckpointError(f"{workdir}/config.json lacks a setting ({e})") from None
      model = task_lib.make_model(config)
      tx = task_lib.make_optimizer(config)

      def init_state(rng):
        dummy = jnp.zeros((1, 2, 5), jnp.float32)
        params = model.init(
          {"params": rng, "dropout": rng, "latent": rng},
          dummy,
          jnp.ones((1,), jnp.int32),
          deterministic=True,
        )["params"]
        return {"params": params, "opt_state": tx.init(params)}

      built.update(config=config, derived=derived, model=model)
      return jax.eval_shape(init_state, jax.random.key(0))

    r = restore_lib.restore(workdir, abstract, step=step)
    config, derived, model, state = built["config"], built["derived"], built["model"], r.state
    return cls(
      model,
      state["params"],
      config,
      max_seq_len=derived["max_seq_len"],
      scale_factor=derived["scale_factor"],
      step=r.step,
      workdir=workdir,
    )

  @property
  def conditional(self) -> bool:
    return bool(self.model.conditional)

  @property
  def z_size(self) -> int:
    return int(self.model.z_size)

  def _need_conditional(self, what: str) -> None:
    if not self.conditional:
      raise ConfigError(
        f"{what} needs a conditional model (an encoder and z); this run was "
        "trained with conditional=False"
      )

  def _temperature(self, temperature) -> float:
    return _check_temperature(
      self.config.sample_temperature if temperature is None else temperature
    )

  # ----------------------------------------------------------- data helpers
  def _normalise(self, sketch: np.ndarray) -> np.ndarray:
    s = S.clean(sketch, CLIP_LIMIT)
    s[:, :2] /= self.scale_factor
    return s

  def _to_pixels(self, strokes5: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    out = []
    for s, n in zip(strokes5, lengths):
      s3 = S.to_stroke3(s[: int(n)], has_start_token=False)
      s3[:, :2] *= self.scale_factor
      out.append(s3)
    return out

  def dataset_sketches(self, split: str = "test", indices: Sequence[int] = (0,)) -> list:
    """Sketches (stroke-3, pixels, cleaned as in training) from the run's data set."""
    if self._splits is None:
      from zoo.tasks import sketch_rnn as task_lib  # pylint: disable=g-import-not-at-top

      self._splits = task_lib.load_data(self.config)[0]
    if split not in self._splits:
      raise ConfigError(f"unknown split {split!r}; the data set has {sorted(self._splits)}")
    items = self._splits[split]
    out = []
    for i in indices:
      i = _check_int("sketch index", i, 0)
      if i >= len(items):
        raise SketchInputError(
          f"sketch index {i} is out of range: split {split!r} has {len(items)} sketches"
        )
      out.append(np.asarray(items[i], np.float32))
    return out

  # ------------------------------------------------------------------ encoder
  def encode(self, sketches, *, sample: bool = False, seed: int = 0) -> np.ndarray:
    """stroke-3 sketch(es) in pixels -> latent codes ``[N, z_size]``.

    The posterior mean ``mu`` by default; ``sample=True`` draws ``z = mu +
    sigma * eps`` with one key per sketch from ``seed``. Sketches longer than the
    run's ``max_seq_len`` are accepted (the encoder is an RNN) but were never seen
    in training.
    """
    self._need_conditional("encode")
    sk = [self._normalise(s) for s in _check_sketches(sketches)]
    seed = _check_int("seed", seed, 0)
    n = len(sk)
    length = max(self.max_seq_len, max(len(s) for s in sk))
    strokes5, seq_len = S.to_stroke5(sk, length)
    b = _bucket(n)
    x = _pad_rows(jnp.asarray(strokes5[:, 1:]), b)
    lens = _pad_rows(jnp.asarray(seq_len), b)
    mu, presig = self._encode_fn(self.params, x, lens)
    mu, presig = mu[:n], presig[:n]
    if sample:
      keys = _row_keys(jax.random.fold_in(jax.random.key(seed), 3), n)
      eps = jax.vmap(lambda k: jax.random.normal(k, (self.z_size,)))(keys)
      mu = mu + jnp.exp(presig / 2.0) * eps
    return np.asarray(mu, np.float32)

  # ------------------------------------------------------------------ decoder
  def _check_z(self, z, n: int | None = None) -> np.ndarray:
    try:
      arr = np.asarray(z, np.float32)
    except (TypeError, ValueError):
      raise SketchInputError("z is not a numeric array") from None
    if arr.ndim == 1:
      arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != self.z_size or arr.shape[0] < 1:
      raise SketchInputError(
        f"z has shape {np.shape(z)}, expected [{self.z_size}] or [N, {self.z_size}]"
      )
    if not np.isfinite(arr).all():
      raise SketchInputError("z contains non-finite values (NaN or inf)")
    if n is not None and arr.shape[0] not in (1, n):
      raise SketchInputError(f"z has {arr.shape[0]} rows, expected 1 or {n}")
    return arr if n is None else np.broadcast_to(arr, (n, self.z_size))

  def _run(
    self,
    z,
    keys,
    *,
    n: int,
    temperature: float,
    greedy: bool,
    max_len: int,
    prefix=None,
    prefix_len=None,
  ):
    """Runs the compiled sampler on ``n`` rows (padded to a power of two)."""
    b = _bucket(n)
    kw = {}
    if prefix is not None:
      kw = dict(
        prefix=_pad_rows(jnp.asarray(prefix), b),
        prefix_len=_pad_rows(jnp.asarray(prefix_len, jnp.int32), b),
      )
    zz = None if z is None else _pad_rows(jnp.asarray(z, jnp.float32), b)
    strokes5, lengths = self._sample_fn(
      {"params": self.params},
      _pad_rows(keys, b),
      z=zz,
      batch_size=b,
      max_len=max_len,
      temperature=jnp.float32(temperature),
      greedy=bool(greedy),
      **kw,
    )
    strokes5, lengths = jax.device_get((strokes5, lengths))
    return np.asarray(strokes5)[:n], np.asarray(lengths)[:n]

  def _max_len(self, max_len) -> int:
    return self.max_seq_len if max_len is None else _check_int("max_len", max_len, 1)

  def decode(
    self,
    z,
    *,
    temperature: float | None = None,
    greedy: bool = False,
    seed: int = 0,
    max_len: int | None = None,
  ) -> list[np.ndarray]:
    """Latent codes ``[N, z_size]`` (or one ``[z_size]``) -> N stroke-3 sketches in pixels."""
    self._need_conditional("decode")
    z = self._check_z(z)
    t = self._temperature(temperature)
    seed = _check_int("seed", seed, 0)
    keys = _row_keys(jax.random.fold_in(jax.random.key(seed), 2), len(z))
    out = self._run(z, keys, n=len(z), temperature=t, greedy=greedy, max_len=self._max_len(max_len))
    return self._to_pixels(*out)

  def sample(
    self,
    n: int = 1,
    *,
    temperature: float | None = None,
    greedy: bool = False,
    seed: int = 0,
    max_len: int | None = None,
  ) -> list[np.ndarray]:
    """``n`` new sketches: conditional models decode ``z ~ N(0, I)``, unconditional ones
    run the decoder from its zero state."""
    n = _check_int("number of samples", n, 1)
    t = self._temperature(temperature)
    seed = _check_int("seed", seed, 0)
    key = jax.random.key(seed)
    z = None
    if self.conditional:
      zkeys = _row_keys(jax.random.fold_in(key, 1), n)
      z = jax.vmap(lambda k: jax.random.normal(k, (self.z_size,)))(zkeys)
    keys = _row_keys(jax.random.fold_in(key, 2), n)
    return self._to_pixels(
      *self._run(z, keys, n=n, temperature=t, greedy=greedy, max_len=self._max_len(max_len))
    )

  def reconstruct(
    self,
    sketches,
    *,
    temperature: float | None = None,
    greedy: bool = False,
    seed: int = 0,
    sample_z: bool = False,
    max_len: int | None = None,
  ) -> list[np.ndarray]:
    """Encode then decode (``sample_z``: decode a posterior sample, not the mean)."""
    z = self.encode(sketches, sample=sample_z, seed=seed)
    return self.decode(z, temperature=temperature, greedy=greedy, seed=seed, max_len=max_len)

  def complete(
    self,
    prefix,
    n_candidates: int = 4,
    *,
    temperature: float | None = None,
    greedy: bool = False,
    seed: int = 0,
    latent: str = "prefix",
    z=None,
    max_len: int | None = None,
  ) -> list[np.ndarray]:
    """Continues a user's drawing: ``n_candidates`` full sketches that start with ``prefix``.

    The prefix (stroke-3, pixels) is fed through the decoder, then sampling goes
    on from the decoder state it leaves (up to ``max_len`` new points, default the
    run's ``max_seq_len``). Each candidate's first ``len(prefix)`` rows are the
    prefix itself, unchanged. Conditional models also need a ``z``:

    * ``latent="prefix"`` (default): the posterior mean of the *encoded prefix*
      (the model's reading of the partial drawing), shared by all candidates;
    * ``latent="posterior"``: one draw from ``q(z | prefix)`` per candidate (more
      varied);
    * ``latent="prior"``: ``z ~ N(0, I)`` per candidate (ignores what the prefix
      looks like, except through the decoder's state);
    * or pass ``z`` (``[z_size]`` or ``[n_candidates, z_size]``) yourself.

    Unconditional models ignore ``latent`` and ``z``.
    """
    pre = _check_sketches(prefix)
    if len(pre) != 1:
      raise SketchInputError(f"complete() takes one prefix sketch, got {len(pre)}")
    pre = pre[0]
    n = _check_int("n_candidates", n_candidates, 1)
    t = self._temperature(temperature)
    seed = _check_int("seed", seed, 0)
    key = jax.random.key(seed)
    zz = None
    if self.conditional:
      if z is not None:
        zz = self._check_z(z, n)
      elif latent == "prefix":
        zz = np.repeat(self.encode(pre), n, axis=0)
      elif latent == "posterior":
        zz = self.encode([pre] * n, sample=True, seed=seed)  # one key per candidate
      elif latent == "prior":
        zz = jax.vmap(lambda k: jax.random.normal(k, (self.z_size,)))(
          _row_keys(jax.random.fold_in(key, 1), n)
        )
      else:
        raise ConfigError(f"latent={latent!r}, expected one of {LATENTS}")
    p = len(pre)
    rows = S.sketch_to_stroke5(self._normalise(pre), max(p, self.max_seq_len))[1:]
    prefix5 = np.broadcast_to(rows, (n,) + rows.shape)
    keys = _row_keys(jax.random.fold_in(key, 2), n)
    cont = self._to_pixels(
      *self._run(
        zz,
        keys,
        n=n,
        temperature=t,
        greedy=greedy,
        max_len=self._max_len(max_len),
        prefix=prefix5,
        prefix_len=np.full((n,), p, np.int32),
      )
    )
    return [np.concatenate([pre, c], axis=0) for c in cont]

  def interpolate(
    self,
    sketch_a,
    sketch_b,
    steps: int = 8,
    *,
    mode: str = "slerp",
    temperature: float | None = None,
    greedy: bool = False,
    seed: int = 0,
    max_len: int | None = None,
  ) -> Interpolation:
    """Decodes ``steps`` latent codes from ``encode(a)`` to ``encode(b)`` (posterior means).

    ``mode="slerp"`` (the paper's spherical interpolation, linear fallback for
    parallel codes) or ``"linear"``. Every step uses the same random key, so the
    sketches differ only through ``z``.
    """
    self._need_conditional("interpolate")
    if mode not in ("slerp", "linear"):
      raise ConfigError(f"interpolation mode={mode!r}, expected 'slerp' or 'linear'")
    steps = _check_int("steps", steps, 2)
    t = self._temperature(temperature)
    seed = _check_int("seed", seed, 0)
    a = _check_sketches(sketch_a)
    b = _check_sketches(sketch_b)
    if len(a) != 1 or len(b) != 1:
      raise SketchInputError("interpolate() takes two single sketches")
    z0, z1 = self.encode([a[0], b[0]])
    ts = np.linspace(0.0, 1.0, steps)
    zs = (slerp if mode == "slerp" else lerp)(z0, z1, ts).astype(np.float32)
    zs[0], zs[-1] = z0, z1
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 2), 0)
    keys = jnp.stack([key] * steps)
    out = self._run(zs, keys, n=steps, temperature=t, greedy=greedy, max_len=self._max_len(max_len))
    return Interpolation(t=ts, z=zs, sketches=self._to_pixels(*out), mode=mode)


# ---------------------------------------------------------------------------
# Inputs from files
# ---------------------------------------------------------------------------


def load_sketch_input(spec: str) -> list[np.ndarray]:
  """Sketches from a file: ``drawing.json`` (sketch-rnn-js stroke-5 rows or stroke-3 rows,
  one sketch or a list; see :func:`zoo.data.sketches.export.read_json`) or
  ``data.npz[:split[:index]]`` (split default ``test``; without an index, all of it)."""
  from zoo.data.sketches.npz import load_sketch_npz  # pylint: disable=g-import-not-at-top

  spec = str(spec)
  if spec.lower().endswith(".json"):
    return [_check_sketch(s, f"{spec} sketch {i}") for i, s in enumerate(export.read_json(spec))]
  path, sep, rest = spec.rpartition(".npz")
  if not sep:
    raise SketchInputError(
      f"--input {spec!r}: expected a .json file or a .npz[:split[:index]] spec"
    )
  path += ".npz"
  parts = [p for p in rest.split(":") if p] if rest else []
  if rest and not rest.startswith(":") or len(parts) > 2:
    raise SketchInputError(
      f"--input {spec!r}: expected FILE.npz, FILE.npz:split or FILE.npz:split:index"
    )
  split = parts[0] if parts else "test"
  items = load_sketch_npz(path, splits=(split,))[split]
  if len(parts) < 2:
    return [np.asarray(s, np.float32) for s in items]
  try:
    i = int(parts[1])
  except ValueError:
    raise SketchInputError(f"--input {spec!r}: index {parts[1]!r} is not an integer") from None
  if not 0 <= i < len(items):
    raise SketchInputError(
      f"--input {spec!r}: index {i} out of range (split {split!r} has {len(items)} sketches)"
    )
  return [np.asarray(items[i], np.float32)]


# ---------------------------------------------------------------------------
# Modes (what the launcher runs)
# ---------------------------------------------------------------------------


def evaluate(
  workdir: str, *, splits: Sequence[str] = ("valid", "test"), tb: bool = True
) -> tuple[int, dict[str, dict[str, float]]]:
  """Restores the latest checkpoint and evaluates it as training does
  (``SketchRNNTask.evaluate_split``: r_cost, r_cost_masked, kl_cost, kl_raw, loss).

  Returns ``(step, {split: metrics})``; with ``tb`` also writes the scalars
  (``<split>/<name>``) to TensorBoard under ``workdir/tb_eval``.
  """
  from zoo.tasks import sketch_rnn as task_lib  # pylint: disable=g-import-not-at-top
  from zoo.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from zoo.training.metrics import MetricWriter  # pylint: disable=g-import-not-at-top

  sm = SketchModel.load(workdir)
  config = ml_collections.ConfigDict(sm.config.to_dict())
  config.max_seq_len = sm.max_seq_len
  task = task_lib.build_task(config)
  if not math.isclose(task.scale_factor, sm.scale_factor, rel_tol=1e-5):
    print(
      f"warning: the data's scale factor {task.scale_factor:.6g} differs from the run's "
      f"{sm.scale_factor:.6g}; evaluating with the run's",
      file=sys.stderr,
    )
    task.scale_factor = sm.scale_factor
  state = {"params": jax.device_put(sm.params, mesh_lib.replicated(task.mesh))}
  results = {}
  for split in splits:
    if task.splits.get(split):
      results[split] = task.evaluate_split(state, split)
  results = {k: v for k, v in results.items() if v}
  if not results:
    raise ConfigError(
      f"nothing to evaluate: data set {config.data_set!r} has no {' or '.join(splits)} "
      f"sketches of at most max_seq_len={sm.max_seq_len} points"
    )
  if tb:
    writer = MetricWriter(os.path.join(workdir, "tb_eval"))
    writer.scalars(sm.step, {f"{s}/{k}": v for s, m in results.items() for k, v in m.items()})
    writer.close()
  return sm.step, results


def _output_dir(workdir: str, output: str | None, mode: str) -> Path:
  out = Path(output) if output else Path(workdir) / mode
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"cannot create output directory {str(out)!r}: {e.strerror}") from None
  return out


def _write_each(sketches, out: Path, stem: str, *, gif: bool = True, highlight: int = 0) -> None:
  for i, s in enumerate(sketches):
    export.write_svg(s, out / f"{stem}_{i:03d}.svg")
    export.write_json(s, out / f"{stem}_{i:03d}.json")
    if gif:
      export.write_gif(s, out / f"{stem}_{i:03d}.gif", highlight=highlight)


def run_sample(
  workdir: str,
  *,
  output: str | None = None,
  num: int = 16,
  temperature: float | None = None,
  greedy: bool = False,
  seed: int = 0,
) -> dict[str, Any]:
  """``num`` samples -> ``sample_NNN.{svg,gif,json}``, ``samples.png`` (grid), ``samples.json``."""
  m = SketchModel.load(workdir)
  sketches = m.sample(num, temperature=temperature, greedy=greedy, seed=seed)
  out = _output_dir(workdir, output, "sample")
  _write_each(sketches, out, "sample")
  export.write_grid_png(sketches, out / "samples.png")
  export.write_json(list(sketches), out / "samples.json")
  return {"output": str(out), "step": m.step, "sketches": sketches}


def run_eval(workdir: str) -> dict[str, Any]:
  step, results = evaluate(workdir)
  return {"step": step, "results": results, "tb": os.path.join(workdir, "tb_eval")}


def _from_inputs(inputs: Sequence[str], count: int) -> list[np.ndarray] | None:
  """The first ``count`` sketches of the ``--input`` files (checked before any model loads)."""
  if not inputs:
    return None
  sketches = [
    _check_sketch(s, f"{spec} sketch {i}")
    for spec in inputs
    for i, s in enumerate(load_sketch_input(spec))
  ]
  if len(sketches) < count:
    raise SketchInputError(f"--input gave {len(sketches)} sketch(es); this mode needs {count}")
  return sketches[:count]


def _from_dataset(
  m: SketchModel, split: str, indices: Sequence[int], count: int
) -> list[np.ndarray]:
  indices = list(indices)
  if len(indices) < count:
    raise ConfigError(f"give {count} data-set indices (--index), got {len(indices)}")
  return m.dataset_sketches(split, indices[:count])


def run_interpolate(
  workdir: str,
  *,
  inputs: Sequence[str] = (),
  split: str = "test",
  indices: Sequence[int] = (0, 1),
  steps: int = 8,
  mode: str = "slerp",
  output: str | None = None,
  temperature: float | None = None,
  greedy: bool = False,
  seed: int = 0,
) -> dict[str, Any]:
  """Two sketches (``inputs`` files, else dataset ``split[indices]``) -> ``interpolation.png``
  (one row: A, the ``steps`` decoded sketches, B; inputs in blue), ``interp_NNN.svg``,
  ``interpolation.json`` (``t``, ``z``, the sketches in sketch-rnn-js rows)."""
  given = _from_inputs(inputs, 2)
  m = SketchModel.load(workdir)
  a, b = given or _from_dataset(m, split, indices, 2)
  res = m.interpolate(a, b, steps, mode=mode, temperature=temperature, greedy=greedy, seed=seed)
  out = _output_dir(workdir, output, "interpolate")
  row = [a] + res.sketches + [b]
  colors = [export.ACCENT] + [None] * len(res.sketches) + [export.ACCENT]
  export.write_grid_png(row, out / "interpolation.png", ncols=len(row), colors=colors)
  for i, s in enumerate(res.sketches):
    export.write_svg(s, out / f"interp_{i:03d}.svg")
  (out / "interpolation.json").write_text(
    json.dumps(
      {
        "mode": res.mode,
        "t": res.t.tolist(),
        "z": res.z.tolist(),
        "inputs": [export.to_js_strokes(a), export.to_js_strokes(b)],
        "sketches": [export.to_js_strokes(s) for s in res.sketches],
      }
    )
    + "\n"
  )
  return {"output": str(out), "step": m.step, "interpolation": res}


def run_complete(
  workdir: str,
  *,
  inputs: Sequence[str] = (),
  split: str = "test",
  index: int = 0,
  prefix_points: int = 0,
  num: int = 8,
  latent: str = "prefix",
  output: str | None = None,
  temperature: float | None = None,
  greedy: bool = False,
  seed: int = 0,
) -> dict[str, Any]:
  """A prefix (the first ``--input`` sketch, else dataset ``split[index]``) -> ``num``
  completions: ``completions.png`` (the prefix alone, then the candidates with the
  prefix in blue), ``completion_NNN.{svg,gif,json}``.

  ``prefix_points``: keep only the first k points of the sketch (0: all of an
  ``--input`` sketch, half of a dataset sketch).
  """
  prefix_points = _check_int("prefix_points", prefix_points, 0)
  given = _from_inputs(inputs, 1)
  m = SketchModel.load(workdir)
  sketch = (given or _from_dataset(m, split, [index], 1))[0]
  k = prefix_points or (len(sketch) if inputs else max(1, len(sketch) // 2))
  prefix = sketch[:k]
  cands = m.complete(prefix, num, latent=latent, temperature=temperature, greedy=greedy, seed=seed)
  out = _output_dir(workdir, output, "complete")
  _write_each(cands, out, "completion", highlight=len(prefix))
  export.write_json(prefix, out / "prefix.json")
  cells = [prefix] + cands
  export.write_grid_png(cells, out / "completions.png", highlight=[len(prefix)] * len(cells))
  return {"output": str(out), "step": m.step, "prefix": prefix, "candidates": cands}
