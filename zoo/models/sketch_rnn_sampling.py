"""Compiled sampling from a Sketch-RNN decoder (Ha & Eck 2017, section 3.3).

Temperature follows magenta's ``sample``: the pen-state and mixture-weight
distributions are sharpened as ``softmax(log p / tau)`` and each Gaussian's
standard deviations are scaled by ``tau`` (magenta passes ``sqrt(tau)`` to a
helper that multiplies sigma by its square). ``greedy=True`` takes the most
likely pen state and mixture component and that component's mean.

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


def sample_step_outputs(raw: jax.Array, rng: jax.Array, *, num_mixture: int,
                        temperature: float | jax.Array = 1.0,
                        greedy: bool = False) -> jax.Array:
  """Draws one stroke-5 row per batch element from decoder outputs ``raw [B, 3+6M]``."""
  mp = split_mixture_params(raw.astype(jnp.float32), num_mixture=num_mixture)
  k_mix, k_pen, k_xy = jax.random.split(rng, 3)
  if greedy:
    idx = jnp.argmax(mp.mixture_logits, axis=-1)
    pen = jnp.argmax(mp.pen_logits, axis=-1)
  else:
    idx = jax.random.categorical(k_mix, jax.nn.log_softmax(mp.mixture_logits) / temperature)
    pen = jax.random.categorical(k_pen, jax.nn.log_softmax(mp.pen_logits) / temperature)
  take = lambda a: jnp.take_along_axis(a, idx[:, None], axis=-1)[:, 0]
  mu_x, mu_y, rho = take(mp.mu_x), take(mp.mu_y), take(mp.rho)
  if greedy:
    dx, dy = mu_x, mu_y
  else:
    s_x = jnp.exp(take(mp.log_sigma_x)) * temperature
    s_y = jnp.exp(take(mp.log_sigma_y)) * temperature
    e = jax.random.normal(k_xy, (2,) + mu_x.shape)
    dx = mu_x + s_x * e[0]
    dy = mu_y + s_y * (rho * e[0] + jnp.sqrt(jnp.clip(1.0 - rho**2, 0.0, 1.0)) * e[1])
  return jnp.concatenate([dx[:, None], dy[:, None], jax.nn.one_hot(pen, 3)], axis=-1)


def sample(model: Any, variables: Any, rng: jax.Array, *, z: jax.Array | None,
           batch_size: int, max_len: int, temperature: float | jax.Array = 1.0,
           greedy: bool = False, prefix: jax.Array | None = None,
           prefix_len: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Samples ``batch_size`` sketches; jit-friendly (``model``, sizes, ``greedy`` static).

  Args:
    model: a :class:`zoo.models.sketch_rnn.SketchRNN`.
    variables: ``{'params': ...}``.
    rng: PRNG key.
    z: ``[B, z_size]`` latent codes (conditional models), or None (unconditional).
    batch_size: B.
    max_len: maximum number of generated rows T.
    temperature: tau > 0.
    greedy: most-likely choices instead of sampling.
    prefix: optional ``[B, P, 5]`` stroke-5 rows (without the start token) that the
      decoder is fed first (sketch completion); sampling continues after them.
    prefix_len: optional ``[B]`` number of valid prefix rows (default: all P).

  Returns:
    ``(strokes [B, T, 5], lengths [B])``: generated rows (prefix excluded), each
    sketch ending at its first p3 row; ``lengths`` counts rows before it.
  """
  num_mixture = model.num_mixture
  carry = model.apply(variables, z, batch_size, method=model.initial_carry)
  prev = jnp.broadcast_to(jnp.asarray(START_TOKEN, jnp.float32), (batch_size, 5))
  if prefix is not None:
    # Teacher-force the prefix; row i's input is row i-1 (start token first).
    plen = prefix.shape[1]
    prefix_len = (jnp.full((batch_size,), plen, jnp.int32) if prefix_len is None
                  else jnp.asarray(prefix_len, jnp.int32))
    inputs = jnp.concatenate([prev[:, None], prefix[:, :-1].astype(jnp.float32)], axis=1)
    # Run step by step so each sketch's carry is frozen after its own prefix.
    def feed(c, xs):
      carry, i = c
      x_t = xs
      _, new = model.apply(variables, x_t[:, None], z, carry, deterministic=True,
                           method=model.decode)
      keep = (i < prefix_len)
      carry = jax.tree.map(lambda n, o: jnp.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)),
                                                  n, o), new, carry)
      return (carry, i + 1), None
    (carry, _), _ = jax.lax.scan(feed, (carry, 0), jnp.swapaxes(inputs, 0, 1))
    last = jnp.take_along_axis(prefix.astype(jnp.float32),
                               jnp.clip(prefix_len - 1, 0)[:, None, None], axis=1)[:, 0]
    prev = jnp.where((prefix_len > 0)[:, None], last, prev)

  end_row = jnp.asarray(END_ROW, jnp.float32)
  out0 = jnp.broadcast_to(end_row, (batch_size, max_len, 5))

  def cond(c):
    i, _, _, done, _ = c
    return (i < max_len) & ~jnp.all(done)

  def body(c):
    i, carry, prev, done, out = c
    raw, carry = model.apply(variables, prev[:, None], z, carry, deterministic=True,
                             method=model.decode)
    row = sample_step_outputs(raw[:, 0], jax.random.fold_in(rng, i), num_mixture=num_mixture,
                              temperature=temperature, greedy=greedy)
    row = jnp.where(done[:, None], end_row, row)
    out = jax.lax.dynamic_update_slice_in_dim(out, row[:, None], i, axis=1)
    done = done | (row[:, 4] > 0.5)
    return i + 1, carry, row, done, out

  init = (jnp.int32(0), carry, prev, jnp.zeros((batch_size,), bool), out0)
  _, _, _, _, out = jax.lax.while_loop(cond, body, init)
  lengths = jnp.argmax(out[:, :, 4] > 0.5, axis=1)
  lengths = jnp.where(jnp.any(out[:, :, 4] > 0.5, axis=1), lengths, max_len)
  return out, lengths.astype(jnp.int32)
