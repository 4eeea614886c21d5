"""Tests for zoo.models.sketch_rnn_magenta: sketch-rnn-js model files.

The interop test runs magenta's own client (``@magenta/sketch``, installed in
``tests/node`` by ``.ci/install_node_deps.sh``) in node on an exported model and
compares its mixture / pen parameters with zoo's decoder on the same strokes.
"""

import base64
import json
import pathlib
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.losses.mdn import split_mixture_params
from zoo.models import sketch_rnn_magenta as sm
from zoo.models.sketch_rnn import START_TOKEN, SketchRNN
from zoo.models.sketch_rnn_sampling import sample

U, M = 16, 20
SCALE = 3.0
NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"
QUANT_ERR = sm.MAX_WEIGHT / sm.QUANT_LEVELS / 2


def gen_model(**kw):
  cfg = dict(conditional=False, dec_model="lstm", dec_rnn_size=U, num_mixture=M)
  cfg.update(kw)
  return SketchRNN(**cfg)


def shapes_of(model):
  """Param tree of ``model`` from eval_shape (no compile)."""
  x = jnp.zeros((1, 3, 5))
  return jax.eval_shape(
    lambda: model.init(jax.random.key(0), x, jnp.array([2]), deterministic=True)
  )["params"]


def random_params(model=None, seed=0, scale=0.5):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda s: (scale * rng.normal(size=s.shape)).astype(np.float32), shapes_of(model or gen_model())
  )


def strokes_seq(steps=7, seed=1):
  """Stroke-5 rows in model units (no start token), ending with an end-of-sketch row."""
  rng = np.random.default_rng(seed)
  s = np.zeros((steps, 5), np.float32)
  s[:, :2] = rng.normal(size=(steps, 2))
  s[np.arange(steps), 2 + rng.integers(0, 2, steps)] = 1.0
  s[-1] = (0, 0, 0, 0, 1)
  return s


def export(params, **kw):
  args = dict(name="test", scale_factor=SCALE, max_seq_len=50)
  args.update(kw)
  return sm.export_magenta_json(params, **args)


def assert_one_line_error(excinfo, *words):
  msg = str(excinfo.value)
  assert "\n" not in msg and msg
  for w in words:
    assert w in msg, msg


# ------------------------------------------------------------------- round trip
def test_round_trip_within_quantisation(tmp_path):
  params = random_params(scale=2.0)
  params["decoder"]["bias"][:4] = [10.0, -10.0, 9.99991, -0.00015]
  path = tmp_path / "m.json"
  obj = export(params, model=gen_model(), path=path, extra_info={"training_size": 7})
  info, shapes, weights = obj
  assert info == dict(
    mode=2, version=6, max_seq_len=50, name="test", scale_factor=SCALE, training_size=7
  )
  assert shapes == [[U, 3 + 6 * M], [3 + 6 * M], [5, 4 * U], [U, 4 * U], [4 * U]]
  assert all(isinstance(w, str) for w in weights)
  assert json.loads(path.read_text()) == obj

  for source in (path, str(path), obj, json.dumps(obj)):
    back, binfo = sm.import_magenta_json(source)
    assert binfo["model_kwargs"] == dict(
      conditional=False, dec_model="lstm", dec_rnn_size=U, num_mixture=M
    )
    assert binfo["scale_factor"] == SCALE and binfo["max_seq_len"] == 50
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
      assert a.shape == b.shape and b.dtype == np.float32
      np.testing.assert_array_less(np.abs(a - b), QUANT_ERR + 1e-6)
  # Export of the imported params reproduces the file bit for bit.
  assert export(back, extra_info={"training_size": 7}) == obj
  # Little-endian int16, round(w / 10 * 32767): bias[0] = 10 -> 32767, bias[1] -> -32767.
  q = np.frombuffer(base64.b64decode(weights[4]), "<i2")
  assert q[0] == 32767 and q[1] == -32767 and q[3] == -0  # -0.00015 rounds to 0


def test_imported_params_sample_and_evaluate():
  params, info = sm.import_magenta_json(export(random_params()))
  model = SketchRNN(**info["model_kwargs"])
  out, lengths = sample(
    model, {"params": params}, jax.random.key(0), z=None, batch_size=2, max_len=6, temperature=0.5
  )
  assert out.shape == (2, 6, 5) and lengths.shape == (2,)
  assert np.all(np.isfinite(np.asarray(out)))


# ---------------------------------------------------------------- export errors
def test_export_rejects_conditional_and_non_lstm():
  cond = gen_model(conditional=True, enc_rnn_size=8, z_size=4)
  with pytest.raises(ZooError) as e:
    export(random_params(cond), model=cond)
  assert_one_line_error(e, "conditional")
  with pytest.raises(ZooError) as e:  # params alone reveal the encoder
    export(random_params(cond))
  assert_one_line_error(e, "conditional")
  ln = gen_model(dec_model="layer_norm")
  with pytest.raises(ZooError) as e:
    export(
      random_params(ln),
      config=dict(conditional=False, dec_model="layer_norm", dec_rnn_size=U, num_mixture=M),
    )
  assert_one_line_error(e, "lstm")
  with pytest.raises(ZooError) as e:
    export(random_params(ln))
  assert_one_line_error(e, "lstm")


def test_export_rejects_out_of_range_weights_unless_clipping():
  params = random_params()
  params["output"]["kernel"][0, 0] = 10.5
  with pytest.raises(ZooError) as e:
    export(params)
  assert_one_line_error(e, "output/kernel", "10.5", "clip")
  back, _ = sm.import_magenta_json(export(params, clip=True))
  assert back["output"]["kernel"][0, 0] == pytest.approx(10.0)
  params["output"]["kernel"][0, 0] = np.nan
  with pytest.raises(ZooError, match="non-finite"):
    export(params, clip=True)


def test_export_rejects_other_mixture_counts_and_bad_info():
  five = gen_model(num_mixture=5)
  with pytest.raises(ZooError) as e:
    export(random_params(five), model=five)
  assert_one_line_error(e, "num_mixture=5", "20")
  params = random_params()
  with pytest.raises(ZooError, match="dec_rnn_size=32"):
    export(params, model=gen_model(dec_rnn_size=32))
  for kw, word in (
    (dict(scale_factor=0.0), "scale_factor"),
    (dict(scale_factor=float("nan")), "scale_factor"),
    (dict(max_seq_len=0), "max_seq_len"),
    (dict(extra_info={"mode": 1}), "mode"),
  ):
    with pytest.raises(ZooError) as e:
      export(params, **kw)
    assert_one_line_error(e, word)


# ------------------------------------------------------------- malformed files
@pytest.fixture(scope="module")
def good():
  return export(random_params())


def _mutate(good, fn):
  obj = json.loads(json.dumps(good))
  fn(obj)
  return obj


@pytest.mark.parametrize(
  "fn, words",
  [
    (lambda o: o.pop(), ["[info, shapes, weights]", "length 2"]),
    (lambda o: o.append({}), ["length 4"]),
    (lambda o: o[0].update(mode=0), ["conditional"]),
    (lambda o: o[0].update(mode="sketch"), ["unknown mode"]),
    (lambda o: o[0].pop("scale_factor"), ["scale_factor"]),
    (lambda o: o[0].update(max_seq_len=-3), ["max_seq_len"]),
    (lambda o: o.__setitem__(0, [1]), ["info"]),
    (lambda o: o[1].pop(), ["5 tensors"]),
    (lambda o: o[1].__setitem__(2, [6, 4 * U]), ["lstm input kernel", "[6, 64]", "[5, 64]"]),
    (lambda o: o[1].__setitem__(0, [U, 100]), ["output kernel", "3 + 6M"]),
    (lambda o: o[1].__setitem__(3, [U, "x"]), ["lstm recurrent kernel", "positive integers"]),
    (lambda o: o[2].__setitem__(1, "@@not base64@@"), ["output bias", "base64"]),
    (lambda o: o[2].__setitem__(4, o[2][4][:-8]), ["lstm bias"]),
    (lambda o: o[2].__setitem__(4, base64.b64encode(b"\0" * 6).decode()), ["6 bytes", "128"]),
    (lambda o: o[2].__setitem__(0, 12), ["base64 string"]),
  ],
)
def test_import_rejects_malformed(good, fn, words):
  with pytest.raises(ZooError) as e:
    sm.import_magenta_json(_mutate(good, fn))
  assert_one_line_error(e, *words)


def test_import_rejects_unreadable_files(tmp_path):
  with pytest.raises(ZooError) as e:
    sm.import_magenta_json(tmp_path / "missing.json")
  assert_one_line_error(e, "cannot read", "missing.json")
  bad = tmp_path / "bad.json"
  bad.write_text('[{"mode": 2}, [')
  with pytest.raises(ZooError) as e:
    sm.import_magenta_json(bad)
  assert_one_line_error(e, "not valid JSON", "bad.json")
  bad.write_text('{"a": 1}')
  with pytest.raises(ZooError) as e:
    sm.import_magenta_json(bad)
  assert_one_line_error(e, "[info, shapes, weights]", "dict")


# ------------------------------------------------- the real @magenta/sketch client
def _node_or_skip():
  node = shutil.which("node")
  if node is None:
    pytest.skip("node not found; install node >= 16 and run .ci/install_node_deps.sh")
  if not (NODE_DIR / "node_modules" / "@magenta" / "sketch" / "package.json").exists():
    pytest.skip(
      f"@magenta/sketch is not installed in {NODE_DIR}; "
      "run .ci/install_node_deps.sh (npm ci in tests/node)"
    )
  return node


def test_matches_magenta_sketch_js_client(tmp_path):
  node = _node_or_skip()
  model = gen_model()
  exported = export(random_params(seed=3), model=model, path=tmp_path / "model.json")
  params, info = sm.import_magenta_json(exported)  # our side uses the quantised weights
  strokes = strokes_seq()
  # The client works in pixels: model units * scale_factor / pixel_factor (2).
  pixels = strokes.astype(np.float64) * np.array([SCALE / 2, SCALE / 2, 1, 1, 1])
  (tmp_path / "strokes.json").write_text(json.dumps(pixels.tolist()))
  res = subprocess.run(
    [
      node,
      str(NODE_DIR / "run_sketch.js"),
      str(tmp_path / "model.json"),
      str(tmp_path / "strokes.json"),
      str(tmp_path / "out.json"),
      "1,0.65",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=NODE_DIR,
  )
  assert res.returncode == 0, res.stderr[-3000:]
  js = json.loads((tmp_path / "out.json").read_text())
  assert js["package_version"] == "0.2.0" and js["nmixture"] == M
  assert js["num_units"] == U and js["scale_factor"] == pytest.approx(SCALE / 2)
  assert js["zero_input"] == list(START_TOKEN)
  assert len(js["steps"]) == len(strokes)

  # Ours: decoder over [start token, strokes[:-1]] from the zero state.
  inputs = np.concatenate([np.asarray([START_TOKEN], np.float32), strokes[:-1]])[None]
  decode = jax.jit(
    lambda p, x: model.apply({"params": p}, x, None, None, deterministic=True, method=model.decode)
  )
  raw, (c, h) = decode(params, jnp.asarray(inputs))
  raw = np.asarray(raw[0], np.float64)

  def js_field(temp, key):
    return np.array([step[temp][key] for step in js["steps"]])

  tol = dict(rtol=1e-4, atol=1e-5)
  # Temperature 1: exactly zoo's mixture parameters (split_mixture_params).
  mp = split_mixture_params(jnp.asarray(raw, jnp.float32), num_mixture=M)
  ours = dict(
    pi=jax.nn.softmax(mp.mixture_logits),
    muX=mp.mu_x,
    muY=mp.mu_y,
    sigmaX=jnp.exp(mp.log_sigma_x),
    sigmaY=jnp.exp(mp.log_sigma_y),
    corr=mp.rho,
    pen=jax.nn.softmax(mp.pen_logits),
  )
  for key, value in ours.items():
    np.testing.assert_allclose(js_field("1", key), np.asarray(value), **tol, err_msg=key)
  # Another temperature: the client's own rule, as magenta_js_pdf documents it.
  ours = sm.magenta_js_pdf(raw, num_mixture=M, temperature=0.65)
  for key, value in ours.items():
    np.testing.assert_allclose(js_field("0.65", key), value, **tol, err_msg=key)
  # The LSTM state after the last input (update() and updateStrokes() alike).
  for state in (js["final_state"], js["update_strokes_state"]):
    np.testing.assert_allclose(state["c"], np.asarray(c[0]), **tol)
    np.testing.assert_allclose(state["h"], np.asarray(h[0]), **tol)

  # The comparison is sensitive: swapping the i and f gate blocks changes the output.
  swapped = jax.tree.map(lambda a: a, params)
  w = params["decoder"]["W_hh"].reshape(U, 4, U)
  swapped["decoder"]["W_hh"] = w[:, [2, 1, 0, 3]].reshape(U, 4 * U)
  raw_swapped, _ = decode(swapped, jnp.asarray(inputs))
  assert np.max(np.abs(np.asarray(raw_swapped[0]) - raw)) > 1e-2
