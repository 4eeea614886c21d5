"""Sketch-RNN (Ha & Eck 2017, "A Neural Representation of Sketch Drawings").

A sequence-to-sequence VAE over stroke-5 sequences, written as a pure flax.linen
module (``init`` / ``apply``), following the hyper-parameters and semantics of
magenta's TensorFlow implementation (``magenta/models/sketch_rnn``).

Data conventions
----------------
* stroke-5 rows are ``(dx, dy, p1, p2, p3)``: pen down / pen up / end of sketch.
* ``__call__`` takes the full batch ``strokes [B, T+1, 5]`` including the start
  token ``(0, 0, 1, 0, 0)`` at index 0 (magenta's ``input_data``).  Decoder
  inputs are ``strokes[:, :T]`` and the targets (also the encoder input) are
  ``strokes[:, 1:]``.
* ``seq_len [B]`` is the number of valid target steps of each sketch.

Architecture
------------
* Encoder (conditional model only): a bidirectional RNN (``enc_model`` cells of
  ``enc_rnn_size``).  The forward cell's summary is its output at step
  ``seq_len - 1``; the backward cell runs over each sequence reversed *within
  its own length* (index gather), and its summary is also taken at step
  ``seq_len - 1``.  Padding beyond ``seq_len`` therefore never influences the
  encoding (a sequence with ``seq_len == 0`` gets a zero summary, as TF's
  ``dynamic_rnn`` would).  ``[h_fw, h_bw]`` goes through two Dense layers giving
  ``mu`` and ``presig``; ``sigma = exp(presig / 2)``.
* Latent: ``z = mu + exp(presig / 2) * eps`` with ``eps`` from the ``'latent'``
  rng stream when ``deterministic=False``; ``z = mu`` when deterministic.
* Decoder: ``dec_model`` cell of ``dec_rnn_size``.  Conditional: every input
  step is ``[S_{i-1}, z]`` and the initial state is ``tanh(Dense(z))`` sized to
  the cell's whole flat state (magenta layout, see ``rnn_cells``).
  Unconditional: inputs are the strokes alone and the initial state is zero.
  Optional input dropout (on the full per-step input, ``z`` included, as
  magenta's ``DropoutWrapper``) and output dropout (on the decoder outputs;
  the recurrent state is unaffected).  The output projection
  ``Dense(3 + 6 * num_mixture)`` is applied once to the whole ``[B, T, dec]``
  output tensor after the scan.
* ``raw [B, T, 3 + 6M]`` layout (magenta): ``raw[..., :3]`` pen logits, then six
  chunks of ``M``: mixture logits, ``mu_x``, ``mu_y``, ``log sigma_x``,
  ``log sigma_y``, ``rho`` (pre-tanh).

RNG streams: ``'params'`` (init), ``'dropout'`` (recurrent / input / output
dropout, only with ``deterministic=False``), ``'latent'`` (the VAE noise, only
with ``deterministic=False`` in the conditional model).

All dropout probabilities are *keep* probabilities, as in magenta.

Precision: ``dtype`` is the compute dtype of the recurrent matmuls and of the
output projection (``raw`` comes out in ``dtype``); parameters, recurrent
carries and the small latent heads (``enc_mu``, ``enc_presig``, ``dec_init``,
hence ``mu``, ``presig``, ``z``) stay float32.

Parameter tree
--------------
``U = enc_rnn_size``, ``D = dec_rnn_size``, ``Z = z_size``, ``M = num_mixture``,
for ``enc_model = dec_model = 'lstm'`` (other cells: see ``rnn_cells``)::

    params
    ├── encoder_fw     W_xh [5, 4U]   W_hh [U, 4U]   bias [4U]     (conditional)
    ├── encoder_bw     W_xh [5, 4U]   W_hh [U, 4U]   bias [4U]     (conditional)
    ├── enc_mu         kernel [2U, Z]  bias [Z]                     (conditional)
    ├── enc_presig     kernel [2U, Z]  bias [Z]                     (conditional)
    ├── dec_init       kernel [Z, S]   bias [S]                     (conditional)
    ├── decoder        W_xh [5 (+Z if conditional), 4D]  W_hh [D, 4D]  bias [4D]
    └── output         kernel [D, 3 + 6M]  bias [3 + 6M]

where ``S`` is the decoder cell's flat state size (``2D`` for lstm and
layer_norm, ``2 (D + hyper_num_units)`` for hyper) and ``tanh(z @ kernel +
bias)`` is split in magenta's flat-state order (lstm ``[c, h]``, layer_norm
``[h, c]``, hyper ``[h, hyper_h, c, hyper_c]``).  LSTM kernels use gate order
i, j, f, o, identical to magenta / sketch-rnn-js, so the JS decoder weights map
one-to-one: ``decoder/W_xh`` <- input kernel, ``decoder/W_hh`` <- recurrent
kernel, ``decoder/bias`` <- bias, ``output/kernel`` <- output_w,
``output/bias`` <- output_b.

The unconditional model (``conditional=False``) has no encoder, ``enc_*`` or
``dec_init`` parameters at all; its ``__call__`` returns ``mu = presig = z =
None``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

from zoo.models.rnn_cells import CELL_TYPES, make_cell, make_sequence_layer, scan_cell

Array = jax.Array
Dtype = Any

__all__ = ["SketchRNN", "START_TOKEN", "split_raw", "reverse_within_length", "RNN_IMPLS"]

RNN_IMPLS = ("fused", "hoisted", "scan")

START_TOKEN = (0.0, 0.0, 1.0, 0.0, 0.0)


def split_raw(raw: Array, num_mixture: int):
  """Split ``raw [..., 3 + 6M]`` into (pen_logits, pi_logits, mu_x, mu_y,
  log_sigma_x, log_sigma_y, rho_pre)."""
  if raw.shape[-1] != 3 + 6 * num_mixture:
    raise ValueError(f"raw last dim {raw.shape[-1]} != 3 + 6 * {num_mixture}")
  pen = raw[..., :3]
  chunks = jnp.split(raw[..., 3:], 6, axis=-1)
  return (pen, *chunks)


def _gather_time(x: Array, idx: Array, axis: int = 1) -> Array:
  """``x [B, T, ...]``, ``idx [B]`` -> ``x[b, idx[b]]`` (``axis=0``: ``x [T, B, ...]``)."""
  if axis == 0:
    idx = idx.reshape((1, -1) + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=0)[0]
  idx = idx.reshape((-1, 1) + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)[:, 0]


def reverse_within_length(x: Array, seq_len: Array) -> Array:
  """Reverse each ``x[b, :seq_len[b]]`` in time; padding stays where it is."""
  t = jnp.arange(x.shape[1])[None, :]
  length = seq_len[:, None]
  idx = jnp.where(t < length, length - 1 - t, t)
  return jnp.take_along_axis(x, idx[..., None], axis=1)


class SketchRNN(nn.Module):
  """Sketch-RNN VAE (see module docstring for conventions and parameters)."""

  enc_rnn_size: int = 256
  dec_rnn_size: int = 512
  z_size: int = 128
  num_mixture: int = 20
  enc_model: str = "lstm"
  dec_model: str = "lstm"
  conditional: bool = True
  use_recurrent_dropout: bool = True
  recurrent_dropout_prob: float = 0.90
  use_input_dropout: bool = False
  input_dropout_prob: float = 0.90
  use_output_dropout: bool = False
  output_dropout_prob: float = 0.90
  hyper_num_units: int = 256
  hyper_embedding_size: int = 32
  dtype: Dtype = jnp.float32
  rnn_impl: str = "fused"
  scan_unroll: int = 1

  def __post_init__(self):
    for field in ("enc_model", "dec_model"):
      kind = getattr(self, field)
      if kind not in CELL_TYPES:
        raise ValueError(
          f"SketchRNN.{field}={kind!r} is not a valid cell type; "
          f"expected one of {sorted(CELL_TYPES)}"
        )
    if self.rnn_impl not in RNN_IMPLS:
      raise ValueError(f"SketchRNN.rnn_impl={self.rnn_impl!r}; expected one of {RNN_IMPLS}")
    for field in ("recurrent_dropout_prob", "input_dropout_prob", "output_dropout_prob"):
      p = getattr(self, field)
      if not 0.0 < p <= 1.0:
        raise ValueError(f"SketchRNN.{field} is a keep probability in (0, 1], got {p}")
    super().__post_init__()

  def _cell(self, kind: str, units: int):
    common = dict(
      use_recurrent_dropout=self.use_recurrent_dropout,
      dropout_keep_prob=self.recurrent_dropout_prob,
      hyper_num_units=self.hyper_num_units,
      hyper_embedding_size=self.hyper_embedding_size,
      dtype=self.dtype,
    )
    if self.rnn_impl == "scan":
      return make_cell(kind, units, cls_transform=scan_cell, **common)
    return make_sequence_layer(
      kind, units, fused=self.rnn_impl == "fused", unroll=self.scan_unroll, **common
    )

  def setup(self):
    small = nn.initializers.normal(0.001)  # magenta's 'gaussian', 0.001
    if self.conditional:
      self.encoder_fw = self._cell(self.enc_model, self.enc_rnn_size)
      self.encoder_bw = self._cell(self.enc_model, self.enc_rnn_size)
      # The small latent heads run in float32 whatever the compute dtype.
      self.enc_mu = nn.Dense(self.z_size, kernel_init=small)
      self.enc_presig = nn.Dense(self.z_size, kernel_init=small)
    self.decoder = self._cell(self.dec_model, self.dec_rnn_size)
    if self.conditional:
      self.dec_init = nn.Dense(self.decoder.state_size, kernel_init=small)
    self.output = nn.Dense(3 + 6 * self.num_mixture, dtype=self.dtype, param_dtype=jnp.float32)
    self.input_dropout = nn.Dropout(rate=1.0 - self.input_dropout_prob)
    self.output_dropout = nn.Dropout(rate=1.0 - self.output_dropout_prob)

  # ------------------------------------------------------------------ encoder
  def encode(
    self, strokes: Array, seq_len: Array, *, deterministic: bool = True
  ) -> Tuple[Array, Array]:
    """Encode ``strokes [B, T, 5]`` (no start token) -> ``(mu, presig)``, each
    ``[B, z_size]`` float32."""
    if not self.conditional:
      raise ValueError("encode() is only available for a conditional SketchRNN")
    batch = strokes.shape[0]
    seq_len = jnp.asarray(seq_len, jnp.int32).reshape(batch)
    seq_len = jnp.clip(seq_len, 0, strokes.shape[1])
    last = jnp.maximum(seq_len - 1, 0)
    valid = (seq_len > 0)[:, None]

    reversed_strokes = reverse_within_length(strokes, seq_len)
    if self.rnn_impl == "scan":
      carry = self.encoder_fw.initialize_carry(batch)
      _, h_fw = self.encoder_fw(carry, strokes, deterministic)
      carry = self.encoder_bw.initialize_carry(batch)
      _, h_bw = self.encoder_bw(carry, reversed_strokes, deterministic)
      last_h = jnp.concatenate([_gather_time(h_fw, last), _gather_time(h_bw, last)], -1)
    else:
      h_fw, h_bw = self._bidirectional(strokes, reversed_strokes, deterministic)
      last_h = jnp.concatenate(
        [_gather_time(h_fw, last, axis=0), _gather_time(h_bw, last, axis=0)], axis=-1
      )
    last_h = jnp.where(valid, last_h, 0.0).astype(jnp.float32)
    return self.enc_mu(last_h), self.enc_presig(last_h)

  def _bidirectional(self, strokes: Array, reversed_strokes: Array, deterministic: bool):
    """Both encoder directions (sequence layers) -> time-major ``(h_fw, h_bw)``.

    With ``rnn_impl='fused'`` and the lstm cell (hand-written backward), the
    two directions' parameters, inputs and dropout masks are stacked on a
    leading axis and run as one batched scan (``jax.vmap``): one loop instead
    of two, and batched matmuls.  Otherwise two scans: for the autodiff
    cells (layer_norm, hyper) the batched scan measured slower (BENCHMARKS.md).
    """
    batch, steps, n_x = strokes.shape
    layers = (self.encoder_fw, self.encoder_bw)
    xs = [jnp.swapaxes(x.astype(jnp.float32), 0, 1) for x in (strokes, reversed_strokes)]
    prepared = [l.prepare(n_x, batch, steps, deterministic) for l in layers]
    const, run = self.encoder_fw.const_fn(), self.encoder_fw.run_fn()
    carry = self.encoder_fw.initialize_carry(batch)
    if self.rnn_impl == "fused" and self.enc_model == "lstm":
      stack = lambda *a: jnp.stack(a)
      params = jax.tree.map(stack, prepared[0][0], prepared[1][0])
      keep = jax.tree.map(stack, prepared[0][1], prepared[1][1])
      base = jax.vmap(lambda p: const(p, n_x))(params)
      carry = jax.tree.map(lambda a: jnp.stack([a, a]), carry)
      _, hs = jax.vmap(run)(params, carry, jnp.stack(xs), base, keep)
      return hs[0], hs[1]
    outs = []
    for (params, keep), x in zip(prepared, xs):
      _, hs = run(params, carry, x, const(params, n_x), keep)
      outs.append(hs)
    return outs[0], outs[1]

  def sample_latent(self, mu: Array, presig: Array, rng: Array) -> Array:
    """``z = mu + exp(presig / 2) * eps``, ``eps ~ N(0, I)`` from ``rng``."""
    eps = jax.random.normal(rng, mu.shape, jnp.float32)
    return mu + jnp.exp(presig / 2.0) * eps

  # ------------------------------------------------------------------ decoder
  def initial_carry(self, z: Optional[Array], batch_size: Optional[int] = None):
    """Decoder initial carry: ``tanh(dec_init(z))`` split into the cell's
    carry parts (conditional), or zeros (unconditional)."""
    if self.conditional:
      if z is None:
        raise ValueError("a conditional SketchRNN needs z for its initial carry")
      flat = jnp.tanh(self.dec_init(z.astype(jnp.float32)))
      return self.decoder.carry_from_flat(flat)
    if batch_size is None:
      if z is None:
        raise ValueError("initial_carry needs batch_size when z is None")
      batch_size = z.shape[0]
    return self.decoder.initialize_carry(batch_size)

  def decode(
    self, inputs: Array, z: Optional[Array] = None, carry=None, *, deterministic: bool = True
  ):
    """Run the decoder over ``inputs [B, T, 5]`` (start token then shifted
    strokes) -> ``(raw [B, T, 3 + 6M], final_carry)``.

    ``carry=None`` starts from :meth:`initial_carry`.  Works with ``T = 1``
    and an explicit carry for step-by-step sampling.  ``z`` is required for
    the conditional model (concatenated to every input step) and ignored
    otherwise.
    """
    batch, steps = inputs.shape[0], inputs.shape[1]
    if carry is None:
      carry = self.initial_carry(z, batch)
    x = inputs.astype(jnp.float32)
    if self.conditional and z is None:
      raise ValueError("a conditional SketchRNN needs z to decode")
    if self.rnn_impl != "scan":
      return self._decode_sequence(x, z, carry, deterministic)
    if self.conditional:
      zt = jnp.broadcast_to(z.astype(jnp.float32)[:, None, :], (batch, steps, z.shape[-1]))
      x = jnp.concatenate([x, zt], axis=-1)
    if self.use_input_dropout:
      x = self.input_dropout(x, deterministic=deterministic)
    final_carry, hs = self.decoder(carry, x, deterministic)
    if self.use_output_dropout:
      hs = self.output_dropout(hs, deterministic=deterministic)
    raw = self.output(hs)  # one [B*T, D] x [D, 3+6M] matmul
    return raw, final_carry

  def _decode_sequence(self, x: Array, z: Optional[Array], carry, deterministic: bool):
    """Decoder with a sequence layer, time-major inside.

    ``z`` (and the bias) is projected once per sequence, not once per step,
    unless input dropout is on (that dropout acts on every step's ``[S, z]``
    separately).
    """
    batch, steps = x.shape[0], x.shape[1]
    const_x = None
    if self.conditional:
      z = z.astype(jnp.float32)
      if self.use_input_dropout:
        zt = jnp.broadcast_to(z[:, None, :], (batch, steps, z.shape[-1]))
        x = jnp.concatenate([x, zt], axis=-1)
      else:
        const_x = z
    if self.use_input_dropout:
      x = self.input_dropout(x, deterministic=deterministic)
    in_dim = x.shape[-1] + (0 if const_x is None else const_x.shape[-1])
    params, keep = self.decoder.prepare(in_dim, batch, steps, deterministic)
    base = self.decoder.const_fn()(params, x.shape[-1], const_x)
    final_carry, hs = self.decoder.run_fn()(params, carry, jnp.swapaxes(x, 0, 1), base, keep)
    if self.use_output_dropout:
      hs = self.output_dropout(hs, deterministic=deterministic)
    raw = self.output(hs)  # [T, B, 3+6M]: one [T*B, D] x [D, 3+6M] matmul
    return jnp.swapaxes(raw, 0, 1), final_carry

  # -------------------------------------------------------------------- model
  def __call__(self, strokes: Array, seq_len: Array, *, deterministic: bool = False):
    """``strokes [B, T+1, 5]`` with start token -> dict(raw, mu, presig, z).

    ``raw`` is ``[B, T, 3 + 6M]``; ``mu``, ``presig``, ``z`` are
    ``[B, z_size]`` (``None`` for the unconditional model).
    """
    dec_in = strokes[:, :-1]
    targets = strokes[:, 1:]
    mu = presig = z = None
    if self.conditional:
      mu, presig = self.encode(targets, seq_len, deterministic=deterministic)
      if deterministic:
        z = mu
      else:
        z = self.sample_latent(mu, presig, self.make_rng("latent"))
    raw, _ = self.decode(dec_in, z, None, deterministic=deterministic)
    return dict(raw=raw, mu=mu, presig=presig, z=z)
