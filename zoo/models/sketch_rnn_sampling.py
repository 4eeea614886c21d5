"""Compiled sampling from a Sketch-RNN decoder (Ha & Eck 2017, section 3.3).

Temperature follows magenta's ``sample``: the pen-state and mixture-weight
distributions are sharpened as ``softmax(log p / tau)`` and each Gaussian's
standard deviations are scaled by ``tau`` (magenta passes ``sqrt(tau)`` to a
helper that multiplies sigma by its square). ``greedy=True`` takes the most
likely pen state and mixture component and that component's mean (magenta's
``greedy_mode``); as ``tau -> 0`` sampling approaches it.

Randomness is per sketch: ``rng`` may be one key (split into one key per batch
row) or a ``[B]`` array of keys, one per row. Row ``b`` at step ``i`` uses
``fold_in(key_b, i)`` only, so with per-row keys a sketch does not depend on the
batch it is drawn in (sketch ``b`` of a batch of 8 equals the same sketch drawn
alone with the same key).

The whole loop is one ``lax.while_loop`` that stops as soon as every sketch in
the batch has emitted the end-of-sketch state (p3); rows after a sketch's end
are padding ``[0, 0, 0, 0, 1]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from zoo.losses.mdn import split_mixture_params

START_TOKEN = (0.0, 0.0, 1.0, 0.0, 0.0)
END_ROW = (0.0, 0.0, 0.0, 0.0, 1.0)


def _is_key_batch(rng: jax.Array) -> bool:
  """True when ``rng`` holds one key per row (typed ``[B]`` or raw ``[B, 2]``)."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng.ndim == 1
  return rng.ndim == 2


def row_keys(rng: jax.Array, batch_size: int) -> jax.Array:
  """One key per batch row: ``rng`` itself if it already is a batch of keys."""
  if _is_key_batch(rng):
    n = rng.shape[0]
    if n != batch_size:
      raise ValueError(f"got {n} per-row keys for batch_size={batch_size}")
    return rng
  return jax.random.split(rng, batch_size)


def sample_step_outputs(
  raw: jax.Array,
  rng: jax.Array,
  *,
  num_mixture: int,
  temperature: float | jax.Array = 1.0,
  greedy: bool = False,
) -> jax.Array:
  """Draws one stroke-5 row per batch element from decoder outputs ``raw [B, 3+6M]``.

  ``rng``: one key (split per row) or ``[B]`` keys. Returns ``[B, 5]`` float32.
  """
  mp = split_mixture_params(raw.astype(jnp.float32), num_mixture=num_mixture)
  if greedy:
    idx = jnp.argmax(mp.mixture_logits, axis=-1)
    pen = jnp.argmax(mp.pen_logits, axis=-1)
    take = lambda a: jnp.take_along_axis(a, idx[:, None], axis=-1)[:, 0]
    dx, dy = take(mp.mu_x), take(mp.mu_y)
    return jnp.concatenate([dx[:, None], dy[:, None], jax.nn.one_hot(pen, 3)], axis=-1)

  keys = row_keys(rng, raw.shape[0])
  temperature = jnp.asarray(temperature, jnp.float32)

  def one(p, key):
    k_mix, k_pen, k_xy = jax.random.split(key, 3)
    i = jax.random.categorical(k_mix, jax.nn.log_softmax(p.mixture_logits) / temperature)
    pen = jax.random.categorical(k_pen, jax.nn.log_softmax(p.pen_logits) / temperature)
    mu_x, mu_y, rho = p.mu_x[i], p.mu_y[i], p.rho[i]
    s_x = jnp.exp(p.log_sigma_x[i]) * temperature
    s_y = jnp.exp(p.log_sigma_y[i]) * temperature
    e = jax.random.normal(k_xy, (2,))
    dx = mu_x + s_x * e[0]
    dy = mu_y + s_y * (rho * e[0] + jnp.sqrt(jnp.clip(1.0 - rho**2, 0.0, 1.0)) * e[1])
    return jnp.concatenate([jnp.stack([dx, dy]), jax.nn.one_hot(pen, 3)])

  return jax.vmap(one)(mp, keys)


def sample(
  model: Any,
  variables: Any,
  rng: jax.Array,
  *,
  z: jax.Array | None,
  batch_size: int,
  max_len: int,
  temperature: float | jax.Array = 1.0,
  greedy: bool = False,
  prefix: jax.Array | None = None,
  prefix_len: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Samples ``batch_size`` sketches; jit-friendly (``model``, sizes, ``greedy`` static).

  Args:
    model: a :class:`zoo.models.sketch_rnn.SketchRNN`.
    variables: ``{'params': ...}``.
    rng: one PRNG key, or ``[B]`` keys (one per sketch; see the module docstring).
    z: ``[B, z_size]`` latent codes (conditional models), or None (unconditional).
    batch_size: B.
    max_len: maximum number of generated rows T (>= 1).
    temperature: tau > 0 (ignored when ``greedy``).
    greedy: most-likely choices instead of sampling.
    prefix: optional ``[B, P, 5]`` stroke-5 rows (without the start token) that the
      decoder is fed first (sketch completion); sampling continues after them.
    prefix_len: optional ``[B]`` number of valid prefix rows (default: all P); rows
      past a sketch's ``prefix_len`` are ignored, so prefixes can be padded to one
      shape.

  Returns:
    ``(strokes [B, T, 5], lengths [B])``: generated rows (prefix excluded), each
    sketch ending at its first p3 row; ``lengths`` counts rows before it.
  """
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}")
  num_mixture = model.num_mixture
  keys = row_keys(rng, batch_size)
  carry = model.apply(variables, z, batch_size, method=model.initial_carry)
  prev = jnp.broadcast_to(jnp.asarray(START_TOKEN, jnp.float32), (batch_size, 5))
  if prefix is not None and prefix.shape[1] > 0:
    # Teacher-force the prefix; row i's input is row i-1 (start token first).
    plen = prefix.shape[1]
    prefix = prefix.astype(jnp.float32)
    prefix_len = (
      jnp.full((batch_size,), plen, jnp.int32)
      if prefix_len is None
      else jnp.clip(jnp.asarray(prefix_len, jnp.int32), 0, plen)
    )
    inputs = jnp.concatenate([prev[:, None], prefix[:, :-1]], axis=1)

    # Step by step so each sketch's carry is frozen after its own prefix.
    def feed(c, x_t):
      carry, i = c
      _, new = model.apply(
        variables, x_t[:, None], z, carry, deterministic=True, method=model.decode
      )
      keep = i < prefix_len
      carry = jax.tree.map(
        lambda n, o: jnp.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, carry
      )
      return (carry, i + 1), None

    (carry, _), _ = jax.lax.scan(feed, (carry, jnp.int32(0)), jnp.swapaxes(inputs, 0, 1))
    last = jnp.take_along_axis(prefix, jnp.clip(prefix_len - 1, 0)[:, None, None], axis=1)[:, 0]
    prev = jnp.where((prefix_len > 0)[:, None], last, prev)

  end_row = jnp.asarray(END_ROW, jnp.float32)
  out0 = jnp.broadcast_to(end_row, (batch_size, max_len, 5))
  fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))

  def cond(c):
    i, _, _, done, _ = c
    return (i < max_len) & ~jnp.all(done)

  def body(c):
    i, carry, prev, done, out = c
    raw, carry = model.apply(
      variables, prev[:, None], z, carry, deterministic=True, method=model.decode
    )
    row = sample_step_outputs(
      raw[:, 0], fold(keys, i), num_mixture=num_mixture, temperature=temperature, greedy=greedy
    )
    row = jnp.where(done[:, None], end_row, row)
    out = jax.lax.dynamic_update_slice_in_dim(out, row[:, None], i, axis=1)
    done = done | (row[:, 4] > 0.5)
    return i + 1, carry, row, done, out

  init = (jnp.int32(0), carry, prev, jnp.zeros((batch_size,), bool), out0)
  _, _, _, _, out = jax.lax.while_loop(cond, body, init)
  ended = out[:, :, 4] > 0.5
  lengths = jnp.where(jnp.any(ended, axis=1), jnp.argmax(ended, axis=1), max_len)
  return out, lengths.astype(jnp.int32)
