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


def _recurrent_dropout(module: nn.Module, g: Array, keep_prob: float, enabled: bool,
                       deterministic: bool) -> Array:
    if not enabled or deterministic or keep_prob >= 1.0:
        return g
    if keep_prob <= 0.0:
        return jnp.zeros_like(g)
    keep = jax.random.bernoulli(module.make_rng("dropout"), keep_prob, g.shape)
    return jnp.where(keep, g / keep_prob, jnp.zeros_like(g))


def _matmul(x: Array, w: Array, dtype: Dtype) -> Array:
    return jnp.dot(x.astype(dtype), w.astype(dtype)).astype(jnp.float32)


def _lstm_update(c: Array, gates: Array, forget_bias: float,
                 drop_fn: Callable[[Array], Array]) -> Tuple[Array, Array]:
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
        w_xh = self.param("W_xh", nn.initializers.glorot_uniform(),
                          (x.shape[-1], 4 * units), self.param_dtype)
        w_hh = self.param("W_hh", lstm_ortho_init(), (units, 4 * units), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (4 * units,), self.param_dtype)
        gates = _matmul(x, w_xh, self.dtype) + _matmul(h, w_hh, self.dtype) + bias
        drop = lambda g: _recurrent_dropout(self, g, self.dropout_keep_prob,
                                            self.use_recurrent_dropout, deterministic)
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
        w_xh = self.param("W_xh", nn.initializers.glorot_uniform(),
                          (x.shape[-1], 4 * units), self.param_dtype)
        w_hh = self.param("W_hh", lstm_ortho_init(), (units, 4 * units), self.param_dtype)
        ln_gamma = self.param("ln_gamma", nn.initializers.ones, (4 * units,), self.param_dtype)
        ln_beta = self.param("ln_beta", nn.initializers.zeros, (4 * units,), self.param_dtype)
        ln_c_gamma = self.param("ln_c_gamma", nn.initializers.ones, (units,), self.param_dtype)
        ln_c_beta = self.param("ln_c_beta", nn.initializers.zeros, (units,), self.param_dtype)

        pre = _matmul(x, w_xh, self.dtype) + _matmul(h, w_hh, self.dtype)
        batch_shape = pre.shape[:-1]
        pre = _layer_norm(pre.reshape(batch_shape + (4, units)),
                          ln_gamma.reshape(4, units), ln_beta.reshape(4, units))
        gates = pre.reshape(batch_shape + (4 * units,))
        drop = lambda g: _recurrent_dropout(self, g, self.dropout_keep_prob,
                                            self.use_recurrent_dropout, deterministic)
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
        return (total_c[..., :u], total_h[..., :u], total_c[..., u:u + hu], total_h[..., u:u + hu])

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
        (new_hyper_c, new_hyper_h), hyper_out = hyper_cell(
            (hyper_c, hyper_h), hyper_in, deterministic)

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

        drop = lambda g: _recurrent_dropout(self, g, self.dropout_keep_prob,
                                            self.use_recurrent_dropout, deterministic)
        new_c, o = _lstm_update(c.astype(f32), gates, self.forget_bias, drop)
        new_h = jnp.tanh(_layer_norm(new_c, ln_c_gamma, ln_c_beta)) * o
        return (new_c, new_h, new_hyper_c, new_hyper_h), new_h


CELL_TYPES = {
    "lstm": LSTMCell,
    "layer_norm": LayerNormLSTMCell,
    "hyper": HyperLSTMCell,
}


def make_cell(kind: str, num_units: int, *, use_recurrent_dropout: bool = False,
              dropout_keep_prob: float = 0.9, hyper_num_units: int = 256,
              hyper_embedding_size: int = 32, dtype: Dtype = jnp.float32,
              cls_transform: Callable | None = None, **kwargs) -> nn.Module:
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
    return cls(num_units=num_units, use_recurrent_dropout=use_recurrent_dropout,
               dropout_keep_prob=dropout_keep_prob, dtype=dtype, **extra, **kwargs)


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
