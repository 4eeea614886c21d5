"""Tests for zoo.models.rnn_cells and zoo.models.sketch_rnn (tiny sizes)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.models.rnn_cells import (
  HyperLSTMCell,
  LayerNormLSTMCell,
  LSTMCell,
  make_cell,
  scan_cell,
)
from zoo.models.sketch_rnn import SketchRNN, reverse_within_length, split_raw

B, T, RNN, Z, M = 4, 12, 16, 8, 3
HYPER, EMB = 8, 4
CELLS = ["lstm", "layer_norm", "hyper"]
SEQ_LEN = np.array([12, 5, 1, 0], np.int32)


def small_model(**kw):
  cfg = dict(
    enc_rnn_size=RNN,
    dec_rnn_size=RNN,
    z_size=Z,
    num_mixture=M,
    hyper_num_units=HYPER,
    hyper_embedding_size=EMB,
  )
  cfg.update(kw)
  return SketchRNN(**cfg)


def make_strokes(seed=0, steps=T):
  """[B, steps+1, 5] stroke-5 batch with start token at index 0."""
  rng = np.random.default_rng(seed)
  s = np.zeros((B, steps + 1, 5), np.float32)
  s[:, 1:, :2] = rng.normal(size=(B, steps, 2))
  pen = rng.integers(0, 2, size=(B, steps))
  s[:, 1:, 2] = pen == 0
  s[:, 1:, 3] = pen == 1
  s[:, 0, 2] = 1.0
  return jnp.asarray(s)


def randomize(params, seed=0, scale=0.5):
  """Replace every parameter by N(0, scale^2) noise (numpy: no per-shape compiles)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.normal(size=l.shape), l.dtype), params)


def jit_apply(module):
  return jax.jit(module.apply, static_argnames=("deterministic", "method"))


def init_model(model, strokes=None, seed=0):
  strokes = make_strokes() if strokes is None else strokes
  init = jax.jit(model.init, static_argnames=("deterministic",))
  return init({"params": jax.random.key(seed)}, strokes, SEQ_LEN, deterministic=True)


RNGS = {"dropout": jax.random.key(1), "latent": jax.random.key(2)}

# ----------------------------------------------------------------------------
# numpy references


def sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_ln(x, gamma, beta, eps=1e-3):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_lstm(p, x, c, h, forget_bias=1.0):
  z = x @ p["W_xh"] + h @ p["W_hh"] + p["bias"]
  u = h.shape[-1]
  i, j, f, o = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
  new_c = c * sig(f + forget_bias) + sig(i) * np.tanh(j)
  return new_c, np.tanh(new_c) * sig(o)


def np_ln_lstm(p, x, c, h, forget_bias=1.0):
  z = x @ p["W_xh"] + h @ p["W_hh"]
  u = h.shape[-1]
  gates = []
  for k in range(4):
    sl = slice(k * u, (k + 1) * u)
    gates.append(np_ln(z[:, sl], p["ln_gamma"][sl], p["ln_beta"][sl]))
  i, j, f, o = gates
  new_c = c * sig(f + forget_bias) + sig(i) * np.tanh(j)
  new_h = np.tanh(np_ln(new_c, p["ln_c_gamma"], p["ln_c_beta"])) * sig(o)
  return new_c, new_h


def np_hyper(p, x, c, h, hc, hh, forget_bias=1.0):
  """Per-gate (unfused) HyperLSTM step, written the magenta way."""
  u = h.shape[-1]
  hyper_c, hyper_h = np_ln_lstm(p["hyper_cell"], np.concatenate([x, h], -1), hc, hh)
  pre = []
  for k in range(4):
    sl = slice(k * u, (k + 1) * u)
    a_x = (hyper_h @ p["zw_kernel"][:, k] + p["zw_bias"][k]) @ p["alpha"][k]
    a_h = (hyper_h @ p["zw_kernel"][:, 4 + k] + p["zw_bias"][4 + k]) @ p["alpha"][4 + k]
    b_h = (hyper_h @ p["zb_kernel"][:, k]) @ p["beta"][k]
    g = a_x * (x @ p["W_xh"][:, sl]) + a_h * (h @ p["W_hh"][:, sl]) + b_h + p["bias"][sl]
    pre.append(np_ln(g, p["ln_gamma"][sl], p["ln_beta"][sl]))
  i, j, f, o = pre
  new_c = c * sig(f + forget_bias) + sig(i) * np.tanh(j)
  new_h = np.tanh(np_ln(new_c, p["ln_c_gamma"], p["ln_c_beta"])) * sig(o)
  return new_c, new_h, hyper_c, hyper_h


def to_np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ----------------------------------------------------------------------------
# cells


def _cell_setup(cls, seed=0, **kw):
  cell = cls(num_units=RNN, **kw)
  x = jax.random.normal(jax.random.key(seed + 10), (B, 5))
  carry = tuple(
    jax.random.normal(k, a.shape) * 0.5
    for k, a in zip(jax.random.split(jax.random.key(seed + 20), 4), cell.initialize_carry(B))
  )
  params = jax.jit(cell.init)(jax.random.key(seed), carry, x)
  params = randomize(params, seed + 30)
  return cell, params, carry, x


def test_lstm_cell_matches_numpy_reference():
  cell, params, carry, x = _cell_setup(LSTMCell)
  chex.assert_shape(params["params"]["W_xh"], (5, 4 * RNN))
  chex.assert_shape(params["params"]["W_hh"], (RNN, 4 * RNN))
  chex.assert_shape(params["params"]["bias"], (4 * RNN,))
  (c, h), out = jax.jit(cell.apply)(params, carry, x)
  ref_c, ref_h = np_lstm(to_np(params["params"]), *to_np((x, *carry)))
  np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out, h)


def test_lstm_cell_forget_bias_and_gate_order():
  cell, params, carry, x = _cell_setup(LSTMCell, forget_bias=2.5)
  (c, h), _ = jax.jit(cell.apply)(params, carry, x)
  ref_c, ref_h = np_lstm(to_np(params["params"]), *to_np((x, *carry)), forget_bias=2.5)
  np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-5)
  # a swapped gate order (i, f, j, o) must not match
  p = to_np(params["params"])
  u = RNN
  perm = np.concatenate(
    [np.arange(0, u), np.arange(2 * u, 3 * u), np.arange(u, 2 * u), np.arange(3 * u, 4 * u)]
  )
  p_sw = {k: v[..., perm] for k, v in p.items()}
  wrong_c, _ = np_lstm(p_sw, *to_np((x, *carry)), forget_bias=2.5)
  assert not np.allclose(c, wrong_c, atol=1e-3)


def test_layer_norm_lstm_cell_matches_numpy_reference():
  cell, params, carry, x = _cell_setup(LayerNormLSTMCell)
  assert "bias" not in params["params"]
  (c, h), _ = jax.jit(cell.apply)(params, carry, x)
  ref_c, ref_h = np_ln_lstm(to_np(params["params"]), *to_np((x, *carry)))
  np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-5)


def test_hyper_cell_shapes_reference_and_hyper_dependence():
  cell, params, carry, x = _cell_setup(
    HyperLSTMCell, hyper_num_units=HYPER, hyper_embedding_size=EMB
  )
  p = params["params"]
  chex.assert_shape(p["W_xh"], (5, 4 * RNN))
  chex.assert_shape(p["hyper_cell"]["W_xh"], (5 + RNN, 4 * HYPER))
  chex.assert_shape(p["alpha"], (8, EMB, RNN))
  new_carry, h = jax.jit(cell.apply)(params, carry, x)
  chex.assert_shape(new_carry, [(B, RNN), (B, RNN), (B, HYPER), (B, HYPER)])
  chex.assert_shape(h, (B, RNN))
  ref = np_hyper(to_np(p), *to_np((x, *carry)))
  for got, want in zip(new_carry, ref):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # the main gates depend on the hyper state
  c, hh_, hyper_c, hyper_h = carry
  alt = (c, hh_, hyper_c, hyper_h + 1.0)
  (c2, h2, _, _), _ = jax.jit(cell.apply)(params, alt, x)
  assert np.abs(np.asarray(c2) - np.asarray(new_carry[0])).max() > 1e-3


def test_hyper_cell_without_layer_norm_runs():
  cell, params, carry, x = _cell_setup(
    HyperLSTMCell, hyper_num_units=HYPER, hyper_embedding_size=EMB, use_layer_norm=False
  )
  assert "ln_gamma" not in params["params"]
  assert "bias" in params["params"]["hyper_cell"]  # plain LSTM hyper cell
  _, h = jax.jit(cell.apply)(params, carry, x)
  assert np.all(np.isfinite(h))


@pytest.mark.parametrize("kind", CELLS)
def test_cell_flat_state_roundtrip(kind):
  cell = make_cell(kind, RNN, hyper_num_units=HYPER, hyper_embedding_size=EMB)
  flat = jnp.arange(B * cell.state_size, dtype=jnp.float32).reshape(B, -1)
  carry = cell.carry_from_flat(flat)
  np.testing.assert_array_equal(cell.carry_to_flat(carry), flat)
  # magenta layouts: lstm [c, h]; layer_norm [h, c]; hyper [h, hyper_h, c, hyper_c];
  # carries are (c, h[, hyper_c, hyper_h])
  f = np.asarray(flat)
  c, h = np.asarray(carry[0]), np.asarray(carry[1])
  if kind == "lstm":
    np.testing.assert_array_equal(c, f[:, :RNN])
    np.testing.assert_array_equal(h, f[:, RNN:])
  elif kind == "layer_norm":
    np.testing.assert_array_equal(h, f[:, :RNN])
    np.testing.assert_array_equal(c, f[:, RNN:])
  else:
    half = RNN + HYPER
    np.testing.assert_array_equal(h, f[:, :RNN])
    np.testing.assert_array_equal(carry[3], f[:, RNN:half])
    np.testing.assert_array_equal(c, f[:, half : half + RNN])
    np.testing.assert_array_equal(carry[2], f[:, half + RNN :])


def test_recurrent_dropout_masks_differ_per_step():
  cell = scan_cell(LSTMCell)(num_units=RNN, use_recurrent_dropout=True, dropout_keep_prob=0.5)
  xs = jnp.ones((B, T, 5))
  cell.init(jax.random.key(0), cell.initialize_carry(B), xs, True)
  u = RNN
  # zero weights; i, o saturated open; forget gate closed; j = 1 -> h = tanh(g)
  bias = np.zeros(4 * u, np.float32)
  bias[:u] = 1e4
  bias[u : 2 * u] = 1.0
  bias[2 * u : 3 * u] = -1e4
  bias[3 * u :] = 1e4
  p = {
    "params": {
      "W_xh": jnp.zeros((5, 4 * u)),
      "W_hh": jnp.zeros((u, 4 * u)),
      "bias": jnp.asarray(bias),
    }
  }
  _, hs_det = cell.apply(p, cell.initialize_carry(B), xs, True)
  assert np.all(np.asarray(hs_det) > 0.5)
  _, hs = cell.apply(p, cell.initialize_carry(B), xs, False, rngs={"dropout": jax.random.key(3)})
  dropped = np.asarray(hs) == 0.0
  kept = np.asarray(hs)[~dropped]
  np.testing.assert_allclose(kept, np.tanh(np.tanh(1.0) / 0.5), rtol=1e-5)
  assert 0.3 < dropped.mean() < 0.7
  # a different mask at each step
  assert len({dropped[:, t].tobytes() for t in range(T)}) == T


# ----------------------------------------------------------------------------
# model


def param_shapes(model):
  """Parameter shapes without compiling anything."""
  shapes = jax.eval_shape(
    lambda: model.init({"params": jax.random.key(0)}, make_strokes(), SEQ_LEN, deterministic=True)
  )
  return jax.tree.map(lambda a: a.shape, shapes)["params"]


def init_part(model, method, *args, seed=0):
  """Initialise only the parameters that ``method`` touches."""
  init = jax.jit(model.init, static_argnames=("method",))
  return init({"params": jax.random.key(seed)}, *args, method=method)


@pytest.mark.parametrize(
  "enc,dec,conditional",
  [
    ("hyper", "layer_norm", True),
    ("lstm", "hyper", False),
  ],
)
def test_model_shapes_and_dtypes(enc, dec, conditional):
  model = small_model(enc_model=enc, dec_model=dec, conditional=conditional)
  strokes = make_strokes()
  params = init_model(model, strokes)
  out = jit_apply(model)(params, strokes, SEQ_LEN, rngs=RNGS)
  chex.assert_shape(out["raw"], (B, T, 3 + 6 * M))
  chex.assert_type(out["raw"], jnp.float32)
  chex.assert_tree_all_finite(out["raw"])
  if conditional:
    chex.assert_shape([out["mu"], out["presig"], out["z"]], [(B, Z)] * 3)
    chex.assert_type([out["mu"], out["presig"], out["z"]], jnp.float32)
  else:
    assert out["mu"] is None and out["presig"] is None and out["z"] is None
  chex.assert_type(jax.tree.leaves(params), jnp.float32)


def test_parameter_tree_lstm():
  assert param_shapes(small_model()) == {
    "encoder_fw": {"W_xh": (5, 4 * RNN), "W_hh": (RNN, 4 * RNN), "bias": (4 * RNN,)},
    "encoder_bw": {"W_xh": (5, 4 * RNN), "W_hh": (RNN, 4 * RNN), "bias": (4 * RNN,)},
    "enc_mu": {"kernel": (2 * RNN, Z), "bias": (Z,)},
    "enc_presig": {"kernel": (2 * RNN, Z), "bias": (Z,)},
    "dec_init": {"kernel": (Z, 2 * RNN), "bias": (2 * RNN,)},
    "decoder": {"W_xh": (5 + Z, 4 * RNN), "W_hh": (RNN, 4 * RNN), "bias": (4 * RNN,)},
    "output": {"kernel": (RNN, 3 + 6 * M), "bias": (3 + 6 * M,)},
  }


def test_parameter_tree_hyper_decoder_init_size():
  shapes = param_shapes(small_model(dec_model="hyper"))
  chex.assert_equal(shapes["dec_init"]["kernel"], (Z, 2 * (RNN + HYPER)))
  chex.assert_equal(shapes["decoder"]["hyper_cell"]["W_xh"], (5 + Z + RNN, 4 * HYPER))


@pytest.mark.parametrize("dec", ["lstm", "hyper"])
def test_unconditional_has_no_encoder_params(dec):
  model = small_model(conditional=False, dec_model=dec)
  shapes = param_shapes(model)
  assert set(shapes) == {"decoder", "output"}
  chex.assert_equal(shapes["decoder"]["W_xh"], (5, 4 * RNN))
  with pytest.raises(ValueError):
    model.init(
      {"params": jax.random.key(0)}, make_strokes()[:, 1:], SEQ_LEN, method=SketchRNN.encode
    )


@pytest.mark.parametrize("field", ["enc_model", "dec_model"])
def test_invalid_cell_name(field):
  with pytest.raises(ValueError, match="gru"):
    small_model(**{field: "gru"})
  with pytest.raises(ValueError):
    make_cell("gru", 4)
  with pytest.raises(ValueError):
    small_model(recurrent_dropout_prob=0.0)


def test_bfloat16_compute_dtype():
  model = small_model(dtype=jnp.bfloat16, conditional=False)
  inputs = make_strokes()[:, :-1]
  params = init_part(model, SketchRNN.decode, inputs, None)
  chex.assert_type(jax.tree.leaves(params), jnp.float32)
  raw, carry = jit_apply(model)(params, inputs, None, method=SketchRNN.decode)
  chex.assert_type(raw, jnp.bfloat16)
  chex.assert_type(carry, jnp.float32)
  ref, _ = jit_apply(small_model(conditional=False))(params, inputs, None, method=SketchRNN.decode)
  np.testing.assert_allclose(np.asarray(raw, np.float32), ref, atol=0.1)


def _manual_run(p, xs):
  c = np.zeros((xs.shape[0], RNN))
  h = np.zeros((xs.shape[0], RNN))
  for t in range(xs.shape[1]):
    c, h = np_lstm(p, xs[:, t], c, h)
  return h


@pytest.fixture(scope="module")
def encoder_setup():
  model = small_model()
  targets = make_strokes(3)[:, 1:]
  params = randomize(init_part(model, SketchRNN.encode, targets, SEQ_LEN), 4)
  return model, params, targets, jit_apply(model)


def test_encoder_matches_manual_bidirectional_run(encoder_setup):
  model, params, targets, apply = encoder_setup
  mu, presig = apply(params, targets, SEQ_LEN, method=SketchRNN.encode)
  p = to_np(params["params"])
  tg = np.asarray(targets, np.float64)
  for b, length in enumerate(SEQ_LEN):
    if length == 0:
      last_h = np.zeros(2 * RNN)
    else:
      seq = tg[b : b + 1, :length]
      h_fw = _manual_run(p["encoder_fw"], seq)[0]
      h_bw = _manual_run(p["encoder_bw"], seq[:, ::-1])[0]
      last_h = np.concatenate([h_fw, h_bw])
    want_mu = last_h @ p["enc_mu"]["kernel"] + p["enc_mu"]["bias"]
    want_ps = last_h @ p["enc_presig"]["kernel"] + p["enc_presig"]["bias"]
    np.testing.assert_allclose(mu[b], want_mu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(presig[b], want_ps, rtol=1e-4, atol=1e-5)


def test_encoder_ignores_padding(encoder_setup):
  model, params, targets, apply = encoder_setup
  targets = np.asarray(targets)
  garbage = targets.copy()
  noise = np.random.default_rng(7).normal(size=garbage.shape) * 3
  for b, length in enumerate(SEQ_LEN):
    garbage[b, length:] = noise[b, length:]
  assert not np.allclose(garbage, targets)
  enc = lambda s: apply(params, jnp.asarray(s), SEQ_LEN, method=SketchRNN.encode)
  mu1, ps1 = enc(targets)
  mu2, ps2 = enc(garbage)
  np.testing.assert_allclose(mu1, mu2, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ps1, ps2, rtol=1e-6, atol=1e-6)
  # ...but changing a valid step does change the encoding
  changed = targets.copy()
  changed[0, 3] += 1.0
  mu3, _ = enc(changed)
  assert np.abs(np.asarray(mu3[0]) - np.asarray(mu1[0])).max() > 1e-6


def test_reverse_within_length():
  x = jnp.arange(2 * 5, dtype=jnp.float32).reshape(2, 5, 1)
  r = reverse_within_length(x, jnp.array([3, 5]))
  np.testing.assert_array_equal(r[..., 0], [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])


@pytest.mark.parametrize(
  "kind,conditional", [("lstm", True), ("layer_norm", True), ("hyper", True), ("lstm", False)]
)
def test_decode_step_by_step_matches_full(kind, conditional):
  model = small_model(dec_model=kind, conditional=conditional)
  inputs = make_strokes(8)[:, :-1]
  z = jax.random.normal(jax.random.key(5), (B, Z)) if conditional else None
  params = randomize(init_part(model, SketchRNN.decode, inputs, z), 9, scale=0.3)
  decode = jax.jit(lambda p, x, z, c: model.apply(p, x, z, c, method=SketchRNN.decode))

  carry0 = model.apply(params, z, B, method=SketchRNN.initial_carry)
  raw_full, carry_full = decode(params, inputs, z, carry0)
  carry, raws = carry0, []
  for t in range(T):
    r, carry = decode(params, inputs[:, t : t + 1], z, carry)
    chex.assert_shape(r, (B, 1, 3 + 6 * M))
    raws.append(r)
  np.testing.assert_allclose(jnp.concatenate(raws, 1), raw_full, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(carry, carry_full, rtol=1e-4, atol=1e-5)
  # carry=None starts from initial_carry(z)
  raw_none, _ = model.apply(params, inputs[:, :2], z, None, method=SketchRNN.decode)
  np.testing.assert_allclose(raw_none, raw_full[:, :2], rtol=1e-4, atol=1e-5)
  if conditional:  # z enters both the initial carry and every input step
    other, _ = decode(params, inputs, z + 1.0, carry0)
    assert np.abs(np.asarray(other) - np.asarray(raw_full)).max() > 1e-4


def test_initial_carry_layout():
  model = small_model()
  z = jax.random.normal(jax.random.key(1), (B, Z))
  params = init_part(model, SketchRNN.initial_carry, z)
  assert set(params["params"]) == {"dec_init"}
  c, h = model.apply(params, z, method=SketchRNN.initial_carry)
  p = to_np(params["params"]["dec_init"])
  flat = np.tanh(np.asarray(z, np.float64) @ p["kernel"] + p["bias"])
  np.testing.assert_allclose(c, flat[:, :RNN], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(h, flat[:, RNN:], rtol=1e-5, atol=1e-6)
  unc = small_model(conditional=False)
  carry = unc.apply({}, None, B, method=SketchRNN.initial_carry)
  chex.assert_shape(carry, [(B, RNN), (B, RNN)])
  assert not np.any(np.asarray(carry[0])) and not np.any(np.asarray(carry[1]))


def test_dropout_only_when_not_deterministic_and_reproducible():
  model = small_model(
    use_input_dropout=True, use_output_dropout=True, input_dropout_prob=0.8, output_dropout_prob=0.8
  )
  strokes = make_strokes()
  params = init_model(model, strokes)
  apply = jit_apply(model)
  # deterministic: no rng needed, no randomness
  d1 = apply(params, strokes, SEQ_LEN, deterministic=True)
  d2 = apply(
    params,
    strokes,
    SEQ_LEN,
    deterministic=True,
    rngs={"dropout": jax.random.key(9), "latent": jax.random.key(9)},
  )
  np.testing.assert_array_equal(d1["raw"], d2["raw"])
  np.testing.assert_array_equal(d1["z"], d1["mu"])
  # stochastic: reproducible with the same rngs, different otherwise
  s1 = apply(params, strokes, SEQ_LEN, rngs=RNGS)
  s2 = apply(params, strokes, SEQ_LEN, rngs=RNGS)
  s3 = apply(
    params, strokes, SEQ_LEN, rngs={"dropout": jax.random.key(11), "latent": RNGS["latent"]}
  )
  np.testing.assert_array_equal(s1["raw"], s2["raw"])
  assert np.abs(np.asarray(s1["raw"]) - np.asarray(d1["raw"])).max() > 1e-4
  assert np.abs(np.asarray(s1["raw"]) - np.asarray(s3["raw"])).max() > 1e-4
  # the encoder's recurrent dropout also follows the dropout stream
  assert np.abs(np.asarray(s1["mu"]) - np.asarray(s3["mu"])).max() > 0
  # the latent stream alone: same mu, different z
  s4 = apply(
    params, strokes, SEQ_LEN, rngs={"dropout": RNGS["dropout"], "latent": jax.random.key(12)}
  )
  np.testing.assert_array_equal(s1["mu"], s4["mu"])
  assert np.abs(np.asarray(s1["z"]) - np.asarray(s4["z"])).max() > 1e-3
  with pytest.raises(Exception):  # needs the rngs when stochastic
    apply(params, strokes, SEQ_LEN)


def test_input_and_output_dropout_flags():
  """Only the enabled dropout (no recurrent dropout here) changes the output."""
  inputs = make_strokes()[:, :-1]
  outs = {}
  params = None
  for flag in ["none", "input", "output"]:
    model = small_model(
      conditional=False,
      use_recurrent_dropout=False,
      use_input_dropout=flag == "input",
      use_output_dropout=flag == "output",
    )
    if params is None:
      params = init_part(model, SketchRNN.decode, inputs, None)
    outs[flag] = model.apply(
      params, inputs, None, deterministic=False, method=SketchRNN.decode, rngs=RNGS
    )[0]
  assert np.abs(np.asarray(outs["input"]) - np.asarray(outs["none"])).max() > 1e-4
  assert np.abs(np.asarray(outs["output"]) - np.asarray(outs["none"])).max() > 1e-4
  det = small_model(conditional=False, use_recurrent_dropout=False).apply(
    params, inputs, None, deterministic=True, method=SketchRNN.decode
  )[0]
  np.testing.assert_array_equal(outs["none"], det)


def test_sample_latent():
  model = small_model()
  mu = jnp.ones((B, Z))
  presig = jnp.full((B, Z), 2.0 * np.log(3.0))
  z = model.apply({}, mu, presig, jax.random.key(4), method=SketchRNN.sample_latent)
  eps = jax.random.normal(jax.random.key(4), (B, Z))
  np.testing.assert_allclose(z, 1.0 + 3.0 * eps, rtol=1e-5)


def test_jit_matches_eager():
  model = small_model(conditional=False, use_output_dropout=True)
  strokes = make_strokes()
  params = init_model(model, strokes)
  eager = model.apply(params, strokes, SEQ_LEN, rngs=RNGS)
  jitted = jax.jit(lambda p, s, l, r: model.apply(p, s, l, rngs=r))(params, strokes, SEQ_LEN, RNGS)
  chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-5)


def test_gradients_finite_and_nonzero():
  model = small_model(enc_model="layer_norm", dec_model="hyper")
  strokes = make_strokes()
  params = init_model(model, strokes)

  def loss(p):
    out = model.apply(p, strokes, SEQ_LEN, rngs=RNGS)
    return jnp.mean(out["raw"] ** 2) + jnp.mean(out["mu"] ** 2 + out["presig"] ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  chex.assert_tree_all_finite(grads)
  g = grads["params"]
  for name in ["encoder_fw", "encoder_bw", "decoder", "output", "dec_init", "enc_mu"]:
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g[name])) > 0, name
  # the hyper projections receive gradient too (the hyper cell itself only once
  # zw_kernel / beta move away from their zero init, as in magenta)
  assert float(jnp.abs(g["decoder"]["zw_kernel"]).max()) > 0
  assert float(jnp.abs(g["decoder"]["beta"]).max()) > 0


def test_split_raw():
  raw = jnp.arange(3 + 6 * M, dtype=jnp.float32)[None]
  pen, pi, mx, my, sx, sy, rho = split_raw(raw, M)
  np.testing.assert_array_equal(pen[0], [0, 1, 2])
  np.testing.assert_array_equal(pi[0], [3, 4, 5])
  np.testing.assert_array_equal(rho[0], [18, 19, 20])
  with pytest.raises(ValueError):
    split_raw(raw, M + 1)


@pytest.mark.parametrize("cell", ["lstm"])
def test_hand_written_backward_matches_autodiff(cell):
  """``rnn_impl='fused'`` (``lstm_recurrence``'s hand-written backward) gives the loss
  and every gradient of ``'hoisted'`` (the same step scanned with autodiff), with
  recurrent dropout and a conditional decoder."""
  from zoo.tasks.sketch_rnn import sketch_losses  # pylint: disable=g-import-not-at-top

  strokes = make_strokes()
  batch = {"strokes": strokes, "seq_len": SEQ_LEN}
  models = {
    impl: small_model(enc_model=cell, dec_model=cell, rnn_impl=impl, use_recurrent_dropout=True)
    for impl in ("fused", "hoisted")
  }
  params = randomize(init_model(models["fused"])["params"], scale=0.3)

  def loss(model, p):
    r, kl, _, _ = sketch_losses(
      model, p, batch, rngs=RNGS, deterministic=False, train_pen_loss=True, kl_tolerance=0.0
    )
    return r + kl

  out = {
    impl: jax.jit(jax.value_and_grad(functools.partial(loss, m)))(params)
    for impl, m in models.items()
  }
  np.testing.assert_allclose(out["fused"][0], out["hoisted"][0], rtol=1e-5)
  chex.assert_trees_all_close(out["fused"][1], out["hoisted"][1], rtol=2e-4, atol=2e-5)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(out["fused"][1]["decoder"]))
