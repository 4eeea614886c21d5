"""Recurrent cells used by Sketch-RNN (Ha & Eck 2017), in flax.linen.

The three cells follow the semantics of the cells shipped with the original
TensorFlow implementation of Sketch-RNN (magenta ``sketch_rnn/rnn.py``):

* :class:`LSTMCell` -- a vanilla LSTM with one fused gate matmul, a constant
  forget-gate bias and "recurrent dropout without memory loss"
  (Semeniuta et al. 2016): dropout is applied to the candidate
  ``g = tanh(j)`` only, never to the cell state itself.
* :class:`LayerNormLSTMCell` -- the same LSTM with layer normalisation of
  each gate's pre-activation (no separate bias; the layer-norm shift plays
  that role) and of the new cell state before the output ``tanh``.
* :class:`HyperLSTMCell` -- a HyperLSTM (Ha et al. 2016, "HyperNetworks"):
  a small auxiliary LSTM reads ``[x, h]`` and emits, per gate, embeddings
  that rescale the input-to-hidden and hidden-to-hidden contributions and
  produce a dynamic bias (weight-scaling variant).

Conventions shared by all cells
-------------------------------
* Call signature ``cell(carry, x, deterministic=True) -> (new_carry, h)``,
  the usual flax cell convention, so a cell can be wrapped by ``nn.scan``
  (see :func:`scan_cell`).
* Gates are laid out in the order ``i, j, f, o`` along the ``4 * num_units``
  axis (``i`` input gate, ``j`` candidate, ``f`` forget gate, ``o`` output
  gate), the TensorFlow / magenta order.  Gate pre-activations are
  ``x @ W_xh + h @ W_hh + bias`` with

  - ``W_xh``: ``[input_dim, 4 * num_units]``
  - ``W_hh``: ``[num_units, 4 * num_units]`` (orthogonal init per gate block)
  - ``bias``: ``[4 * num_units]`` (zeros; not present in the layer-norm cell)

  which is exactly the layout of magenta's TF variables and of the
  sketch-rnn-js weight files, so those can be copied in without reordering.
* ``new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * dropout(tanh(j))``.
* Recurrent dropout draws a fresh mask from the ``'dropout'`` rng stream at
  every call (inside ``nn.scan`` with ``split_rngs={'dropout': True}`` that is
  one mask per time step) and only when ``deterministic=False``.  The kept
  units are scaled by ``1 / dropout_keep_prob`` (inverted dropout, as
  ``tf.nn.dropout``).
* Mixed precision: parameters are stored in ``param_dtype`` (float32); the
  matmuls run in ``dtype``; gate nonlinearities, layer norm and the carry are
  kept in float32.  Outputs ``h`` are float32.

Carry helpers
-------------
Each cell provides ``initialize_carry(batch_size)`` (zeros), ``state_size``
(the size of magenta's flat state vector) and ``carry_from_flat`` /
``carry_to_flat`` converting between the carry tuple and magenta's flat state
layout (used for the decoder's initial state ``tanh(Dense(z))``):

* ``LSTMCell``:          carry ``(c, h)``, flat ``[c, h]``
* ``LayerNormLSTMCell``: carry ``(c, h)``, flat ``[h, c]``
* ``HyperLSTMCell``:     carry ``(c, h, hyper_c, hyper_h)``,
  flat ``[h, hyper_h, c, hyper_c]``
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

Array = jax.Array
Dtype = Any

__all__ = [
  "LSTMCell",
  "LayerNormLSTMCell",
  "HyperLSTMCell",
  "CELL_TYPES",
  "make_cell",
  "scan_cell",
  "lstm_ortho_init",
]

LN_EPSILON = 1e-3  # magenta's layer-norm epsilon


def lstm_ortho_init(scale: float = 1.0) -> Callable:
  """Initialiser for a ``[n, 4 * units]`` kernel: each gate block orthogonal."""

  def init(key, shape, dtype=jnp.float32):
    rows, cols = shape
    if cols % 4:
      raise ValueError(f"lstm_ortho_init needs a multiple of 4 columns, got {shape}")
    ortho = nn.initializers.orthogonal(scale=scale)
    blocks = [ortho(k, (rows, cols // 4), dtype) for k in jax.random.split(key, 4)]
    return jnp.concatenate(blocks, axis=-1)

  return init


def _layer_norm(x: Array, gamma: Array, beta: Array, axis: int = -1) -> Array:
  """Layer norm over ``axis`` with magenta's epsilon (computed in float32)."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=axis, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + LN_EPSILON) * gamma + beta


def _recurrent_dropout(
  module: nn.Module, g: Array, keep_prob: float, enabled: bool, deterministic: bool
) -> Array:
  if not enabled or deterministic or keep_prob >= 1.0:
    return g
  if keep_prob <= 0.0:
    return jnp.zeros_like(g)
  keep = jax.random.bernoulli(module.make_rng("dropout"), keep_prob, g.shape)
  return jnp.where(keep, g / keep_prob, jnp.zeros_like(g))


def _matmul(x: Array, w: Array, dtype: Dtype) -> Array:
  return jnp.dot(x.astype(dtype), w.astype(dtype)).astype(jnp.float32)


def _lstm_update(
  c: Array, gates: Array, forget_bias: float, drop_fn: Callable[[Array], Array]
) -> Tuple[Array, Array]:
  """Return ``(new_c, sigmoid(o))`` from ``[B, 4U]`` gates in i, j, f, o order."""
  i, j, f, o = jnp.split(gates, 4, axis=-1)
  g = drop_fn(jnp.tanh(j))
  new_c = c * jax.nn.sigmoid(f + forget_bias) + jax.nn.sigmoid(i) * g
  return new_c, jax.nn.sigmoid(o)


class _CellBase(nn.Module):
  """Shared carry helpers for the two-part (c, h) LSTM carries."""

  num_units: int

  @property
  def state_size(self) -> int:
    return 2 * self.num_units

  def initialize_carry(self, batch_size: int) -> Tuple[Array, ...]:
    z = jnp.zeros((batch_size, self.num_units), jnp.float32)
    return (z, z)

  def carry_from_flat(self, flat: Array) -> Tuple[Array, ...]:
    c, h = jnp.split(flat.astype(jnp.float32), 2, axis=-1)
    return (c, h)

  def carry_to_flat(self, carry: Sequence[Array]) -> Array:
    c, h = carry
    return jnp.concatenate([c, h], axis=-1)

  @staticmethod
  def output_from_carry(carry: Sequence[Array]) -> Array:
    """The hidden output ``h`` contained in a carry."""
    return carry[1]


class LSTMCell(_CellBase):
  """Vanilla LSTM (magenta ``LSTMCell``).

  Params: ``W_xh [in, 4U]`` (glorot uniform, TF's default), ``W_hh [U, 4U]``
  (orthogonal per gate), ``bias [4U]`` (zeros); gate order i, j, f, o.
  Carry ``(c, h)``; magenta's flat state is ``[c, h]``.
  """

  forget_bias: float = 1.0
  use_recurrent_dropout: bool = False
  dropout_keep_prob: float = 0.9
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, x, deterministic: bool = True):
    c, h = carry
    units = self.num_units
    w_xh = self.param(
      "W_xh", nn.initializers.glorot_uniform(), (x.shape[-1], 4 * units), self.param_dtype
    )
    w_hh = self.param("W_hh", lstm_ortho_init(), (units, 4 * units), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (4 * units,), self.param_dtype)
    gates = _matmul(x, w_xh, self.dtype) + _matmul(h, w_hh, self.dtype) + bias
    drop = lambda g: _recurrent_dropout(
      self, g, self.dropout_keep_prob, self.use_recurrent_dropout, deterministic
    )
    new_c, o = _lstm_update(c.astype(jnp.float32), gates, self.forget_bias, drop)
    new_h = jnp.tanh(new_c) * o
    return (new_c, new_h), new_h


class LayerNormLSTMCell(_CellBase):
  """LSTM with layer-normalised gates (magenta ``LayerNormLSTMCell``).

  Params: ``W_xh [in, 4U]``, ``W_hh [U, 4U]`` (no bias), ``ln_gamma [4U]``
  (ones) / ``ln_beta [4U]`` (zeros) for the per-gate layer norm of the
  pre-activations (each of the four gate blocks normalised separately) and
  ``ln_c_gamma [U]`` / ``ln_c_beta [U]`` for the layer norm of the new cell
  state: ``h = tanh(LN(new_c)) * sigmoid(o)``.  The forget bias is added
  after normalisation.  Carry ``(c, h)``; magenta's flat state is ``[h, c]``.
  """

  forget_bias: float = 1.0
  use_recurrent_dropout: bool = False
  dropout_keep_prob: float = 0.9
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def carry_from_flat(self, flat: Array) -> Tuple[Array, ...]:
    h, c = jnp.split(flat.astype(jnp.float32), 2, axis=-1)
    return (c, h)

  def carry_to_flat(self, carry: Sequence[Array]) -> Array:
    c, h = carry
    return jnp.concatenate([h, c], axis=-1)

  @nn.compact
  def __call__(self, carry, x, deterministic: bool = True):
    c, h = carry
    units = self.num_units
    w_xh = self.param(
      "W_xh", nn.initializers.glorot_uniform(), (x.shape[-1], 4 * units), self.param_dtype
    )
    w_hh = self.param("W_hh", lstm_ortho_init(), (units, 4 * units), self.param_dtype)
    ln_gamma = self.param("ln_gamma", nn.initializers.ones, (4 * units,), self.param_dtype)
    ln_beta = self.param("ln_beta", nn.initializers.zeros, (4 * units,), self.param_dtype)
    ln_c_gamma = self.param("ln_c_gamma", nn.initializers.ones, (units,), self.param_dtype)
    ln_c_beta = self.param("ln_c_beta", nn.initializers.zeros, (units,), self.param_dtype)

    pre = _matmul(x, w_xh, self.dtype) + _matmul(h, w_hh, self.dtype)
    batch_shape = pre.shape[:-1]
    pre = _layer_norm(
      pre.reshape(batch_shape + (4, units)), ln_gamma.reshape(4, units), ln_beta.reshape(4, units)
    )
    gates = pre.reshape(batch_shape + (4 * units,))
    drop = lambda g: _recurrent_dropout(
      self, g, self.dropout_keep_prob, self.use_recurrent_dropout, deterministic
    )
    new_c, o = _lstm_update(c.astype(jnp.float32), gates, self.forget_bias, drop)
    new_h = jnp.tanh(_layer_norm(new_c, ln_c_gamma, ln_c_beta)) * o
    return (new_c, new_h), new_h


class HyperLSTMCell(nn.Module):
  """HyperLSTM (magenta ``HyperLSTMCell``; Ha et al. 2016).

  Per step, with ``x`` the input and ``(c, h)`` the main state:

  1. the hyper cell (a ``LayerNormLSTMCell`` if ``use_layer_norm`` else an
     ``LSTMCell``, ``hyper_num_units`` wide, submodule ``hyper_cell``) reads
     ``[x, h]`` and advances ``(hyper_c, hyper_h)``; its new output ``hh_out``
     drives the modulation;
  2. with ``xh = x @ W_xh`` and ``hh = h @ W_hh`` split per gate k in
     (i, j, f, o), every gate block is rescaled elementwise::

         zw_k  = hh_out @ zw_kernel[:, k] + zw_bias[k]        # [E]
         a_k   = zw_k @ alpha[k]                               # [U]
         pre_k = a_x_k * xh_k + a_h_k * hh_k + beta_term_k + bias_k

     There are eight scalings: ``a_x_k`` uses rows ``k`` (0..3) and ``a_h_k``
     rows ``4 + k`` of ``zw_kernel`` / ``zw_bias`` / ``alpha``.  Only the
     ``hh`` blocks get a dynamic bias, ``beta_term_k = (hh_out @
     zb_kernel[:, k]) @ beta[k]`` (magenta uses ``use_bias=False`` for the
     ``xh`` terms);
  3. if ``use_layer_norm``, the pre-activations are layer-normalised per gate
     (``ln_gamma``/``ln_beta``); then the usual LSTM update with recurrent
     dropout on ``tanh(j)`` and ``h = tanh(LN_c(new_c)) * sigmoid(o)``
     (magenta normalises the cell state here even without
     ``use_layer_norm``; we do the same).

  Params (``U = num_units``, ``H = hyper_num_units``, ``E =
  hyper_embedding_size``): ``W_xh [in, 4U]``, ``W_hh [U, 4U]``, ``bias [4U]``,
  ``hyper_cell/...`` (input ``in + U``), ``zw_kernel [H, 8, E]`` (zeros),
  ``zw_bias [8, E]`` (ones), ``alpha [8, E, U]`` (constant ``0.1 / E``, the
  recurrent-batch-norm gamma trick), ``zb_kernel [H, 4, E]`` (N(0, 0.01)),
  ``beta [4, E, U]`` (zeros), ``ln_gamma/ln_beta [4U]`` (if layer norm),
  ``ln_c_gamma/ln_c_beta [U]``.  The eight per-gate projections of magenta
  are fused into these stacked tensors for speed.  Note that with the default
  (magenta) initialisation ``zw_kernel`` is zero, so at init the modulation
  is a constant 0.1 and only becomes state dependent through training.

  Carry ``(c, h, hyper_c, hyper_h)``; magenta's flat state is
  ``[h, hyper_h, c, hyper_c]``.  Output: ``h``.
  """

  num_units: int
  forget_bias: float = 1.0
  use_recurrent_dropout: bool = False
  dropout_keep_prob: float = 0.9
  use_layer_norm: bool = True
  hyper_num_units: int = 256
  hyper_embedding_size: int = 32
  hyper_use_recurrent_dropout: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @property
  def state_size(self) -> int:
    return 2 * (self.num_units + self.hyper_num_units)

  def initialize_carry(self, batch_size: int) -> Tuple[Array, ...]:
    z = jnp.zeros((batch_size, self.num_units), jnp.float32)
    zh = jnp.zeros((batch_size, self.hyper_num_units), jnp.float32)
    return (z, z, zh, zh)

  def carry_from_flat(self, flat: Array) -> Tuple[Array, ...]:
    u, hu = self.num_units, self.hyper_num_units
    flat = flat.astype(jnp.float32)
    total_h, total_c = jnp.split(flat, 2, axis=-1)
    return (total_c[..., :u], total_h[..., :u], total_c[..., u : u + hu], total_h[..., u : u + hu])

  def carry_to_flat(self, carry: Sequence[Array]) -> Array:
    c, h, hc, hh = carry
    return jnp.concatenate([h, hh, c, hc], axis=-1)

  @staticmethod
  def output_from_carry(carry: Sequence[Array]) -> Array:
    return carry[1]

  @nn.compact
  def __call__(self, carry, x, deterministic: bool = True):
    c, h, hyper_c, hyper_h = carry
    units, emb, hunits = self.num_units, self.hyper_embedding_size, self.hyper_num_units
    pd = self.param_dtype
    w_xh = self.param("W_xh", nn.initializers.glorot_uniform(), (x.shape[-1], 4 * units), pd)
    w_hh = self.param("W_hh", lstm_ortho_init(), (units, 4 * units), pd)
    bias = self.param("bias", nn.initializers.zeros, (4 * units,), pd)

    hyper_cls = LayerNormLSTMCell if self.use_layer_norm else LSTMCell
    hyper_cell = hyper_cls(
      num_units=hunits,
      use_recurrent_dropout=self.hyper_use_recurrent_dropout,
      dropout_keep_prob=self.dropout_keep_prob,
      dtype=self.dtype,
      param_dtype=pd,
      name="hyper_cell",
    )
    hyper_in = jnp.concatenate([x.astype(jnp.float32), h.astype(jnp.float32)], axis=-1)
    (new_hyper_c, new_hyper_h), hyper_out = hyper_cell((hyper_c, hyper_h), hyper_in, deterministic)

    zw_kernel = self.param("zw_kernel", nn.initializers.zeros, (hunits, 8, emb), pd)
    zw_bias = self.param("zw_bias", nn.initializers.ones, (8, emb), pd)
    alpha = self.param("alpha", nn.initializers.constant(0.1 / emb), (8, emb, units), pd)
    zb_kernel = self.param("zb_kernel", nn.initializers.normal(0.01), (hunits, 4, emb), pd)
    beta = self.param("beta", nn.initializers.zeros, (4, emb, units), pd)

    f32 = jnp.float32
    zw = jnp.einsum("bh,hke->bke", hyper_out, zw_kernel.astype(f32)) + zw_bias
    scales = jnp.einsum("bke,keu->bku", zw, alpha.astype(f32))  # [B, 8, U]
    zb = jnp.einsum("bh,hke->bke", hyper_out, zb_kernel.astype(f32))
    dyn_bias = jnp.einsum("bke,keu->bku", zb, beta.astype(f32))  # [B, 4, U]

    batch_shape = x.shape[:-1]
    xh = _matmul(x, w_xh, self.dtype).reshape(batch_shape + (4, units))
    hh = _matmul(h, w_hh, self.dtype).reshape(batch_shape + (4, units))
    pre = scales[..., :4, :] * xh + scales[..., 4:, :] * hh + dyn_bias
    pre = pre + bias.reshape(4, units)
    ln_c_gamma = self.param("ln_c_gamma", nn.initializers.ones, (units,), pd)
    ln_c_beta = self.param("ln_c_beta", nn.initializers.zeros, (units,), pd)
    if self.use_layer_norm:
      ln_gamma = self.param("ln_gamma", nn.initializers.ones, (4 * units,), pd)
      ln_beta = self.param("ln_beta", nn.initializers.zeros, (4 * units,), pd)
      pre = _layer_norm(pre, ln_gamma.reshape(4, units), ln_beta.reshape(4, units))
    gates = pre.reshape(batch_shape + (4 * units,))

    drop = lambda g: _recurrent_dropout(
      self, g, self.dropout_keep_prob, self.use_recurrent_dropout, deterministic
    )
    new_c, o = _lstm_update(c.astype(f32), gates, self.forget_bias, drop)
    new_h = jnp.tanh(_layer_norm(new_c, ln_c_gamma, ln_c_beta)) * o
    return (new_c, new_h, new_hyper_c, new_hyper_h), new_h


CELL_TYPES = {
  "lstm": LSTMCell,
  "layer_norm": LayerNormLSTMCell,
  "hyper": HyperLSTMCell,
}


def make_cell(
  kind: str,
  num_units: int,
  *,
  use_recurrent_dropout: bool = False,
  dropout_keep_prob: float = 0.9,
  hyper_num_units: int = 256,
  hyper_embedding_size: int = 32,
  dtype: Dtype = jnp.float32,
  cls_transform: Callable | None = None,
  **kwargs,
) -> nn.Module:
  """Build a cell by magenta name ('lstm' | 'layer_norm' | 'hyper').

  ``cls_transform`` (e.g. :func:`scan_cell`) is applied to the class before
  instantiation; ``kwargs`` (such as ``name``) are passed to the constructor.
  """
  if kind not in CELL_TYPES:
    raise ValueError(f"unknown cell type {kind!r}; expected one of {sorted(CELL_TYPES)}")
  cls = CELL_TYPES[kind]
  extra = {}
  if kind == "hyper":
    extra = dict(hyper_num_units=hyper_num_units, hyper_embedding_size=hyper_embedding_size)
  if cls_transform is not None:
    cls = cls_transform(cls)
  return cls(
    num_units=num_units,
    use_recurrent_dropout=use_recurrent_dropout,
    dropout_keep_prob=dropout_keep_prob,
    dtype=dtype,
    **extra,
    **kwargs,
  )


def scan_cell(cell_cls, time_axis: int = 1):
  """Wrap a cell class with ``nn.scan`` over ``time_axis`` of the inputs.

  The scanned module is called as ``scanned(carry, xs, deterministic)`` (the
  flag positionally) and returns ``(final_carry, outputs)`` with outputs
  stacked on ``time_axis``.  Params are shared across steps; the 'dropout'
  rng is split per step so each step gets its own recurrent-dropout mask.
  """
  return nn.scan(
    cell_cls,
    variable_broadcast="params",
    split_rngs={"params": False, "dropout": True},
    in_axes=(time_axis, nn.broadcast),
    out_axes=time_axis,
  )


# ---------------------------------------------------------------------------
# Whole-sequence layers (the fast path used by SketchRNN)
#
# ``scan_cell`` runs a cell step by step: every step multiplies the whole input
# ``[S_t, z]`` by ``W_xh`` although ``z`` (128 of the decoder's 133 input
# features) is the same at every step, draws its own dropout mask, and lets
# autodiff transpose the scan.  The sequence layers below compute the same
# function with the same parameters (names, shapes, initialisers and
# declaration order), but
#
# * an input that is constant over time (the decoder's ``z``) is projected
#   once per sequence, together with the bias (``base = z @ W_xh[z rows] +
#   bias``); inside the recurrence only ``[h, x_t] @ [W_hh; W_xh[x rows]]``
#   remains (one matmul, ``K = U + 5``);
# * the recurrent-dropout masks of all steps come from one RNG call;
# * for the plain LSTM (``fused=True``) the backward pass is written by hand
#   (``jax.custom_vjp``): one reverse scan propagates ``dh`` / ``dc``, emits
#   ``dx_t`` and accumulates ``dW`` and ``d base`` in its carry; the forward
#   saves only the gate activations and the cell states (``tanh(c)`` is
#   recomputed).  That is less memory traffic than autodiff's residuals and no
#   big ``[T, B, 4U]`` tensors besides the activations.
#
# (Hoisting the *per-step* input projection ``x_t @ W_xh`` out of the loop as
# one big ``[T*B, 5] x [5, 4U]`` matmul was measured too: with only 5 stroke
# features it is a memory-bound 200 MB write + re-read, slower than the
# ``K = 5`` rows folded into the recurrent matmul; see BENCHMARKS.md.)
#
# Sequences are time-major inside (``[T, B, ...]``).  ``const_fn`` /
# ``run_fn`` return pure closures over the layer's static config, so the two
# directions of a bidirectional encoder can be stacked and run as one batched
# scan with ``jax.vmap`` (``SketchRNN.encode``).  Dropout masks are drawn
# differently from ``scan_cell`` (one draw for all steps), so stochastic outputs
# differ in realisation, not in distribution; deterministic outputs and
# gradients agree with ``scan_cell`` up to float rounding.
# ---------------------------------------------------------------------------


def _dropout_keep_mask(
  module: nn.Module, enabled: bool, keep_prob: float, deterministic: bool, shape
) -> Array | None:
  """Boolean keep-mask ``[T, B, U]`` for all steps (None when no dropout)."""
  if not enabled or deterministic or keep_prob >= 1.0:
    return None
  if keep_prob <= 0.0:
    return jnp.zeros(shape, jnp.bool_)
  return jax.random.bernoulli(module.make_rng("dropout"), keep_prob, shape)


def _apply_keep(g: Array, keep: Array | None, keep_prob: float) -> Array:
  if keep is None:
    return g
  return jnp.where(keep, g / keep_prob, jnp.zeros_like(g))


def _const_projection(
  w_xh: Array, n_x: int, const_x: Array | None, dtype: Dtype, bias: Array | None = None
) -> Array | None:
  """``const_x @ W_xh[n_x : n_x + m] (+ bias)``: the time-constant part of the gates."""
  base = None
  if const_x is not None:
    base = _matmul(const_x, w_xh[n_x : n_x + const_x.shape[-1]], dtype)
  if bias is not None:
    base = bias.astype(jnp.float32) if base is None else base + bias
  return base


def _add(a: Array, b: Array | None) -> Array:
  return a if b is None else a + b


def _scan(body, carry, xs, unroll: int, reverse: bool = False):
  return jax.lax.scan(body, carry, xs, unroll=unroll, reverse=reverse)


# -- plain LSTM: autodiff and hand-written backward --------------------------------


def _lstm_step(w_cat, base, carry, x, keep, *, forget_bias, keep_prob, dtype):
  """One LSTM step; ``w_cat = [W_hh; W_xh[x rows]]``, ``base`` = const part + bias."""
  c, h = carry
  gates = _add(_matmul(jnp.concatenate([h, x], axis=-1), w_cat, dtype), base)
  drop = lambda g: _apply_keep(g, keep, keep_prob)
  new_c, o = _lstm_update(c, gates, forget_bias, drop)
  new_h = jnp.tanh(new_c) * o
  return (new_c, new_h), new_h


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9))
def lstm_recurrence(xs, base, w_cat, c0, h0, keep, forget_bias, keep_prob, dtype, unroll):
  """LSTM recurrence over time-major inputs with a hand-written backward pass.

  ``xs [T, B, n]`` per-step inputs, ``base`` (``[B, 4U]``, ``[4U]`` or None)
  the time-constant part of the gate pre-activations (bias and the
  projection of constant inputs), ``w_cat [U + n, 4U] = [W_hh; W_xh[:n]]``
  (gate order i, j, f, o), ``c0, h0 [B, U]``, ``keep`` an optional boolean
  recurrent-dropout keep mask ``[T, B, U]`` (applied to ``tanh(j)``, kept
  units scaled by ``1 / keep_prob``).  Returns ``((c_T, h_T), hs [T, B,
  U])``, the values of scanning :class:`LSTMCell`.
  """
  step = functools.partial(
    _lstm_step, w_cat, base, forget_bias=forget_bias, keep_prob=keep_prob, dtype=dtype
  )
  return _scan(lambda carry, inp: step(carry, *inp), (c0, h0), (xs, keep), unroll)


def _lstm_recurrence_fwd(xs, base, w_cat, c0, h0, keep, forget_bias, keep_prob, dtype, unroll):
  """Forward pass saving, per step, the factors that turn ``(dh, dc)`` into gate gradients.

  With ``gd = dropout(g)`` and ``tc = tanh(c_t)``, the step's backward is::

      dc     = dc_next + dh * so * (1 - tc^2)
      dgates = [dc * gd * si (1 - si), dc * si * keep / kp * (1 - g^2),
                dc * c_{t-1} * sf (1 - sf), dh * tc * so (1 - so)]
      dc_{t-1} = dc * sf

  so the forward stores ``F = [gd si (1-si), si keep/kp (1-g^2), c_{t-1} sf (1-sf),
  tc so (1-so)]`` and ``[so (1 - tc^2), sf]``: the reverse scan is then one
  multiply per gate, no transcendental functions and no dropout masks.
  """

  def body(carry, inp):
    c, h = carry
    x, k = inp
    gates = _add(_matmul(jnp.concatenate([h, x], axis=-1), w_cat, dtype), base)
    i, j, f, o = jnp.split(gates, 4, axis=-1)
    si, g, sf, so = (
      jax.nn.sigmoid(i),
      jnp.tanh(j),
      jax.nn.sigmoid(f + forget_bias),
      jax.nn.sigmoid(o),
    )
    gd = _apply_keep(g, k, keep_prob)
    new_c = c * sf + si * gd
    tc = jnp.tanh(new_c)
    new_h = tc * so
    sj = si if k is None else jnp.where(k, si / keep_prob, jnp.zeros_like(si))
    factors = jnp.concatenate(
      [gd * (si * (1.0 - si)), sj * (1.0 - g * g), c * (sf * (1.0 - sf)), tc * (so * (1.0 - so))],
      axis=-1,
    )
    return (new_c, new_h), (new_h, factors, jnp.concatenate([so * (1.0 - tc * tc), sf], -1))

  (c_t, h_t), (hs, factors, fc_sf) = _scan(body, (c0, h0), (xs, keep), unroll)
  res = (xs, base, w_cat, h0, hs, factors, fc_sf)
  return ((c_t, h_t), hs), res


def _lstm_recurrence_bwd(forget_bias, keep_prob, dtype, unroll, res, cts):
  xs, base, w_cat, h0, hs, factors, fc_sf = res
  (dc_t, dh_t), dhs = cts
  f32 = jnp.float32
  n_h = h0.shape[-1]

  def body(carry, inp):
    dc, dh, dbase = carry
    dh_out, fac, fcsf = inp
    dh = dh + dh_out
    fc, sf = jnp.split(fcsf, 2, axis=-1)
    dc = dc + dh * fc
    dgates = fac * jnp.concatenate([dc, dc, dc, dh], axis=-1)
    # [dh_{t-1}, dx_t] = dgates @ w_cat^T (contract the 4U axes, no explicit transpose)
    dhx = jax.lax.dot_general(
      dgates.astype(dtype), w_cat.astype(dtype), (((1,), (1,)), ((), ()))
    ).astype(f32)
    return (dc * sf, dhx[:, :n_h], dbase + dgates), (dgates, dhx[:, n_h:])

  (dc0, dh0, dbase_b), (dgates, dxs) = _scan(
    body,
    (dc_t.astype(f32), dh_t.astype(f32), jnp.zeros(dhs.shape[1:2] + w_cat.shape[-1:], f32)),
    (dhs, factors, fc_sf),
    unroll,
    reverse=True,
  )
  # weight gradient of all steps at once: [h_{t-1}, x_t]^T dgates_t summed over t and b
  hx = jnp.concatenate([jnp.concatenate([h0[None].astype(hs.dtype), hs[:-1]], axis=0), xs], axis=-1)
  dw = jnp.einsum(
    "tbk,tbg->kg", hx.astype(dtype), dgates.astype(dtype), preferred_element_type=f32
  ).astype(w_cat.dtype)
  dbase = None
  if base is not None:
    dbase = (dbase_b if base.ndim == 2 else jnp.sum(dbase_b, axis=0)).astype(base.dtype)
  return dxs.astype(xs.dtype), dbase, dw, dc0, dh0, None


lstm_recurrence.defvjp(_lstm_recurrence_fwd, _lstm_recurrence_bwd)


# -- sequence layers ---------------------------------------------------------------


def _run_sequence(layer, carry, xs, deterministic, const_x):
  """Batch-major convenience wrapper: ``xs [B, T, n] -> (carry, hs [B, T, U])``."""
  in_dim = xs.shape[-1] + (0 if const_x is None else const_x.shape[-1])
  params, keep = layer.prepare(in_dim, xs.shape[0], xs.shape[1], deterministic)
  xs_tm = jnp.swapaxes(xs.astype(jnp.float32), 0, 1)
  base = layer.const_fn()(params, xs.shape[-1], const_x)
  carry, hs = layer.run_fn()(params, carry, xs_tm, base, keep)
  return carry, jnp.swapaxes(hs, 0, 1)


class LSTMSequence(LSTMCell):
  """:class:`LSTMCell` run over whole sequences (same parameters).

  ``layer(carry, xs, deterministic, const_x=None) -> (final_carry, hs)`` with
  ``xs [B, T, n]`` and ``hs [B, T, U]``; ``const_x [B, m]`` is an input that
  is the same at every step (``W_xh`` has ``n + m`` rows, the ``xs`` rows
  first).  The pieces, for callers that stay time-major or batch several
  layers: ``prepare`` (declares the parameters, draws the dropout masks),
  ``const_fn()`` and ``run_fn()`` (pure functions).  ``fused=True`` uses
  :func:`lstm_recurrence` (hand-written backward); ``fused=False`` scans the
  step with autodiff.
  """

  fused: bool = True
  unroll: int = 1
  extra_in: int = 0  # rows of W_xh fed from inside a recurrence (hyper cell's h)

  @nn.compact
  def prepare(self, in_dim: int, batch: int, steps: int, deterministic: bool = True):
    """Declares the parameters; returns ``(params, keep_mask or None)``."""
    units = self.num_units
    w_xh = self.param(
      "W_xh",
      nn.initializers.glorot_uniform(),
      (in_dim + self.extra_in, 4 * units),
      self.param_dtype,
    )
    w_hh = self.param("W_hh", lstm_ortho_init(), (units, 4 * units), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (4 * units,), self.param_dtype)
    keep = _dropout_keep_mask(
      self, self.use_recurrent_dropout, self.dropout_keep_prob, deterministic, (steps, batch, units)
    )
    return {"W_xh": w_xh, "W_hh": w_hh, "bias": bias}, keep

  def const_fn(self):
    """``f(params, n_x, const_x) -> base``: bias + projection of the constant input."""
    dtype = self.dtype
    return lambda p, n_x, const_x=None: _const_projection(p["W_xh"], n_x, const_x, dtype, p["bias"])

  def run_fn(self):
    """``run(params, carry, xs [T, B, n], base, keep) -> (carry, hs [T, B, U])``."""
    fb, kp, dtype, unroll, fused = (
      self.forget_bias,
      self.dropout_keep_prob,
      self.dtype,
      self.unroll,
      self.fused,
    )

    def run(p, carry, xs, base, keep):
      w_cat = jnp.concatenate([p["W_hh"], p["W_xh"][: xs.shape[-1]]], axis=0)
      c, h = (a.astype(jnp.float32) for a in carry)
      if fused:
        return lstm_recurrence(xs, base, w_cat, c, h, keep, fb, kp, dtype, unroll)
      step = functools.partial(_lstm_step, w_cat, base, forget_bias=fb, keep_prob=kp, dtype=dtype)
      return _scan(lambda cr, inp: step(cr, *inp), (c, h), (xs, keep), unroll)

    return run

  def __call__(self, carry, xs, deterministic: bool = True, const_x=None):
    return _run_sequence(self, carry, xs, deterministic, const_x)


def _ln_lstm_step(p, w_cat, base, carry, x, keep, *, units, forget_bias, keep_prob, dtype):
  c, h = carry
  pre = _add(_matmul(jnp.concatenate([h, x], axis=-1), w_cat, dtype), base)
  batch_shape = pre.shape[:-1]
  pre = _layer_norm(
    pre.reshape(batch_shape + (4, units)),
    p["ln_gamma"].reshape(4, units),
    p["ln_beta"].reshape(4, units),
  )
  gates = pre.reshape(batch_shape + (4 * units,))
  new_c, o = _lstm_update(c, gates, forget_bias, lambda g: _apply_keep(g, keep, keep_prob))
  new_h = jnp.tanh(_layer_norm(new_c, p["ln_c_gamma"], p["ln_c_beta"])) * o
  return (new_c, new_h), new_h


class LayerNormLSTMSequence(LayerNormLSTMCell):
  """:class:`LayerNormLSTMCell` run over whole sequences (same parameters).

  Same interface as :class:`LSTMSequence`; autodiff backward (``fused`` is
  accepted for a uniform interface).
  """

  fused: bool = True
  unroll: int = 1
  extra_in: int = 0

  @nn.compact
  def prepare(self, in_dim: int, batch: int, steps: int, deterministic: bool = True):
    units, pd = self.num_units, self.param_dtype
    p = {
      "W_xh": self.param(
        "W_xh", nn.initializers.glorot_uniform(), (in_dim + self.extra_in, 4 * units), pd
      ),
      "W_hh": self.param("W_hh", lstm_ortho_init(), (units, 4 * units), pd),
      "ln_gamma": self.param("ln_gamma", nn.initializers.ones, (4 * units,), pd),
      "ln_beta": self.param("ln_beta", nn.initializers.zeros, (4 * units,), pd),
      "ln_c_gamma": self.param("ln_c_gamma", nn.initializers.ones, (units,), pd),
      "ln_c_beta": self.param("ln_c_beta", nn.initializers.zeros, (units,), pd),
    }
    keep = _dropout_keep_mask(
      self, self.use_recurrent_dropout, self.dropout_keep_prob, deterministic, (steps, batch, units)
    )
    return p, keep

  def const_fn(self):
    dtype = self.dtype
    return lambda p, n_x, const_x=None: _const_projection(p["W_xh"], n_x, const_x, dtype)

  def step_fn(self):
    return functools.partial(
      _ln_lstm_step,
      units=self.num_units,
      forget_bias=self.forget_bias,
      keep_prob=self.dropout_keep_prob,
      dtype=self.dtype,
    )

  def run_fn(self):
    step, unroll = self.step_fn(), self.unroll

    def run(p, carry, xs, base, keep):
      w_cat = jnp.concatenate([p["W_hh"], p["W_xh"][: xs.shape[-1]]], axis=0)
      carry = tuple(a.astype(jnp.float32) for a in carry)
      return _scan(lambda cr, inp: step(p, w_cat, base, cr, *inp), carry, (xs, keep), unroll)

    return run

  def __call__(self, carry, xs, deterministic: bool = True, const_x=None):
    return _run_sequence(self, carry, xs, deterministic, const_x)


class HyperLSTMSequence(HyperLSTMCell):
  """:class:`HyperLSTMCell` run over whole sequences (same parameters).

  Constant inputs are projected once (for the main gates and for the hyper
  cell); the step is otherwise the cell's, with autodiff backward.  (Fusing
  the step's matmuls further -- ``h @ [W_hh | hyper rows]``, ``hyper_h @
  [zw_kernel | zb_kernel]`` -- measured 40% slower at magenta's size.)
  """

  fused: bool = True
  unroll: int = 1

  @nn.compact
  def prepare(self, in_dim: int, batch: int, steps: int, deterministic: bool = True):
    units, emb, hunits = self.num_units, self.hyper_embedding_size, self.hyper_num_units
    pd = self.param_dtype
    p = {
      "W_xh": self.param("W_xh", nn.initializers.glorot_uniform(), (in_dim, 4 * units), pd),
      "W_hh": self.param("W_hh", lstm_ortho_init(), (units, 4 * units), pd),
      "bias": self.param("bias", nn.initializers.zeros, (4 * units,), pd),
    }
    hyper_cls = LayerNormLSTMSequence if self.use_layer_norm else LSTMSequence
    hyper = hyper_cls(
      num_units=hunits,
      use_recurrent_dropout=self.hyper_use_recurrent_dropout,
      dropout_keep_prob=self.dropout_keep_prob,
      dtype=self.dtype,
      param_dtype=pd,
      extra_in=units,
      name="hyper_cell",
    )
    p["hyper_cell"], hyper_keep = hyper.prepare(in_dim, batch, steps, deterministic)
    p["zw_kernel"] = self.param("zw_kernel", nn.initializers.zeros, (hunits, 8, emb), pd)
    p["zw_bias"] = self.param("zw_bias", nn.initializers.ones, (8, emb), pd)
    p["alpha"] = self.param("alpha", nn.initializers.constant(0.1 / emb), (8, emb, units), pd)
    p["zb_kernel"] = self.param("zb_kernel", nn.initializers.normal(0.01), (hunits, 4, emb), pd)
    p["beta"] = self.param("beta", nn.initializers.zeros, (4, emb, units), pd)
    p["ln_c_gamma"] = self.param("ln_c_gamma", nn.initializers.ones, (units,), pd)
    p["ln_c_beta"] = self.param("ln_c_beta", nn.initializers.zeros, (units,), pd)
    if self.use_layer_norm:
      p["ln_gamma"] = self.param("ln_gamma", nn.initializers.ones, (4 * units,), pd)
      p["ln_beta"] = self.param("ln_beta", nn.initializers.zeros, (4 * units,), pd)
    keep = _dropout_keep_mask(
      self, self.use_recurrent_dropout, self.dropout_keep_prob, deterministic, (steps, batch, units)
    )
    return p, (keep, hyper_keep)

  def const_fn(self):
    dtype, ln = self.dtype, self.use_layer_norm

    def const(p, n_x, const_x=None):
      hp = p["hyper_cell"]
      return (
        _const_projection(p["W_xh"], n_x, const_x, dtype),
        _const_projection(hp["W_xh"], n_x, const_x, dtype, None if ln else hp["bias"]),
      )

    return const

  def run_fn(self):
    units, hunits = self.num_units, self.hyper_num_units
    fb, kp, dtype, unroll, ln = (
      self.forget_bias,
      self.dropout_keep_prob,
      self.dtype,
      self.unroll,
      self.use_layer_norm,
    )
    f32 = jnp.float32
    if ln:
      hyper_step = functools.partial(
        _ln_lstm_step, units=hunits, forget_bias=1.0, keep_prob=kp, dtype=dtype
      )
    else:

      def hyper_step(hp, w_hh, pre, carry, x, keep):
        # ``pre`` already holds everything but hyper_h @ W_hh (bias included)
        return _lstm_step(w_hh, pre, carry, x, keep, forget_bias=1.0, keep_prob=kp, dtype=dtype)

    def run(p, carry, xs, base, keep):
      hp = p["hyper_cell"]
      n_x = xs.shape[-1]
      base_x, hyper_base = base
      # the hyper cell reads [x_t, h] (its rows for constant inputs are in hyper_base)
      w_hyper = jnp.concatenate([hp["W_xh"][:n_x], hp["W_xh"][-units:]], axis=0)
      w_x = p["W_xh"][:n_x]
      bias = p["bias"].reshape(4, units)

      def body(cr, inp):
        c, h, hyper_c, hyper_h = cr
        x, (k, hk) = inp
        hyper_pre = _add(_matmul(jnp.concatenate([x, h], axis=-1), w_hyper, dtype), hyper_base)
        (new_hc, new_hh), hyper_out = hyper_step(
          hp, hp["W_hh"], hyper_pre, (hyper_c, hyper_h), empty_like(x), hk
        )
        zw = jnp.einsum("bh,hke->bke", hyper_out, p["zw_kernel"].astype(f32)) + p["zw_bias"]
        scales = jnp.einsum("bke,keu->bku", zw, p["alpha"].astype(f32))
        zb = jnp.einsum("bh,hke->bke", hyper_out, p["zb_kernel"].astype(f32))
        dyn_bias = jnp.einsum("bke,keu->bku", zb, p["beta"].astype(f32))
        b = h.shape[0]
        xh = _add(_matmul(x, w_x, dtype), base_x).reshape(b, 4, units)
        hh = _matmul(h, p["W_hh"], dtype).reshape(b, 4, units)
        pre = scales[:, :4] * xh + scales[:, 4:] * hh + dyn_bias
        pre = pre + bias
        if ln:
          pre = _layer_norm(pre, p["ln_gamma"].reshape(4, units), p["ln_beta"].reshape(4, units))
        gates = pre.reshape(b, 4 * units)
        new_c, o = _lstm_update(c, gates, fb, lambda g: _apply_keep(g, k, kp))
        new_h = jnp.tanh(_layer_norm(new_c, p["ln_c_gamma"], p["ln_c_beta"])) * o
        return (new_c, new_h, new_hc, new_hh), new_h

      carry = tuple(a.astype(f32) for a in carry)
      return _scan(body, carry, (xs, keep), unroll)

    return run

  def __call__(self, carry, xs, deterministic: bool = True, const_x=None):
    return _run_sequence(self, carry, xs, deterministic, const_x)


def empty_like(x: Array) -> Array:
  """A ``[..., 0]`` array (the hyper cell's own input is already in its pre-activation)."""
  return jnp.zeros(x.shape[:-1] + (0,), jnp.float32)


SEQUENCE_TYPES = {
  "lstm": LSTMSequence,
  "layer_norm": LayerNormLSTMSequence,
  "hyper": HyperLSTMSequence,
}


def make_sequence_layer(
  kind: str,
  num_units: int,
  *,
  fused: bool = True,
  unroll: int = 1,
  use_recurrent_dropout: bool = False,
  dropout_keep_prob: float = 0.9,
  hyper_num_units: int = 256,
  hyper_embedding_size: int = 32,
  dtype: Dtype = jnp.float32,
  **kwargs,
) -> nn.Module:
  """Build a whole-sequence layer by magenta cell name (see ``SEQUENCE_TYPES``)."""
  if kind not in SEQUENCE_TYPES:
    raise ValueError(f"unknown cell type {kind!r}; expected one of {sorted(SEQUENCE_TYPES)}")
  extra = {}
  if kind == "hyper":
    extra = dict(hyper_num_units=hyper_num_units, hyper_embedding_size=hyper_embedding_size)
  return SEQUENCE_TYPES[kind](
    num_units=num_units,
    fused=fused,
    unroll=unroll,
    use_recurrent_dropout=use_recurrent_dropout,
    dropout_keep_prob=dropout_keep_prob,
    dtype=dtype,
    **extra,
    **kwargs,
  )
