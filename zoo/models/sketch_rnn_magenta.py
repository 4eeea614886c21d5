"""Import / export of magenta's sketch-rnn-js model files (decoder-only LSTM).

The browser runtimes of Sketch-RNN -- ``@magenta/sketch`` (magenta-js, file
``sketch/src/sketch_rnn/model.ts``) and the older ``sketch-rnn-js`` by David Ha
-- load a model from one JSON document ``[info, shapes, weights]``:

``info``
    a dict.  The fields written by magenta's converter and read by the clients:

    * ``mode``: ``2`` (or ``"gen"``) for an unconditional, decoder-only model;
      ``0`` / ``1`` are VAE (conditional) files with 17 tensors (the encoder,
      ``mu`` / ``presig`` heads and the decoder's initial-state layer first).
      ``@magenta/sketch`` ignores it and always reads a decoder-only file.
    * ``version``: the converter's format version.  ``sketch-rnn-js`` only
      uses it for VAE files (``version < 6``: ``z`` is passed through ``tanh``
      before the initial-state layer); we write ``6``.
    * ``max_seq_len``: longest sketch the model was trained on (the cap of
      ``sketch-rnn-js``'s ``generate``; unused by ``@magenta/sketch``).
    * ``name``: the class name (e.g. ``"cat"``), only logged.
    * ``scale_factor``: the data normalising factor (std of the training
      offsets: ``zoo.data.sketches.strokes.normalizing_scale_factor``).  The clients
      work in "pixels": ``pixel = model_unit * scale_factor / pixel_factor``
      with ``pixel_factor = 2`` by default (``setPixelFactor``).  ``update``
      divides dx, dy by ``scale_factor / 2``; ``sample`` multiplies by it.
    * magenta's own files also carry ``r_loss``, ``kl_loss`` and
      ``training_size`` (only logged); pass them through ``extra_info``.

``shapes``
    the tensor shapes, in the order the weights are read (``U`` =
    ``dec_rnn_size``, ``M`` = ``num_mixture``)::

        [U, 3 + 6M]   output kernel      -> params['output']['kernel']
        [3 + 6M]      output bias        -> params['output']['bias']
        [5, 4U]       LSTM input kernel  -> params['decoder']['W_xh']
        [U, 4U]       LSTM recurrent     -> params['decoder']['W_hh']
        [4U]          LSTM bias          -> params['decoder']['bias']

    ``@magenta/sketch`` takes ``U`` from ``shapes[0][0]``.

``weights``
    one base64 string per tensor: little-endian ``int16`` values, row-major,
    quantised as ``q = round(w / 10 * 32767)`` and read back as
    ``w = 10 * q / 32767`` (so ``|w| <= 10`` and the round-off is at most
    ``10 / 32767 / 2 ~= 1.5e-4`` per weight).

Semantics of the clients (checked against ``@magenta/sketch`` 0.2.0 running on
tfjs-core 1.7.4 in node, see ``tests/test_sketch_rnn_magenta.py``):

* LSTM: ``tf.basicLSTMCell(forgetBias=1.0, [W_xh; W_hh], bias, x, c, h)``:
  gates ``[x, h] @ [W_xh; W_hh] + bias`` in the order i, j, f, o,
  ``c' = sigmoid(i) * tanh(j) + c * sigmoid(f + 1.0)``,
  ``h' = tanh(c') * sigmoid(o)``.  That is exactly
  :class:`zoo.models.rnn_cells.LSTMCell` (forget bias 1.0 added at run time,
  not stored in the file) with recurrent dropout off.
* The state starts at zero and the first input is ``zeroInput() = [0, 0, 1, 0,
  0]``, zoo's start token (the older ``sketch-rnn-js`` feeds ``[0, 0, 0, 0, 0]``
  instead).
* The output layer is ``h @ kernel + bias`` in magenta's layout: 3 pen logits,
  then ``M`` each of mixture logits, ``mu_x``, ``mu_y``, ``log sigma_x``,
  ``log sigma_y`` and pre-``tanh`` correlations -- zoo's layout too.
* The number of mixtures is hard-coded to 20 in both clients, so
  :func:`export_magenta_json` only writes ``num_mixture == 20`` models.
* ``getPDF(state, temperature)``: ``pen = softmax(logits / t_d)``,
  ``pi = softmax(logits / t_d)`` with ``t_d = 0.5 + 0.5 * temperature`` (or
  an explicit ``softmaxTemperature``), ``sigma = exp(log sigma) *
  sqrt(temperature)``, ``corr = tanh(.)``.  This differs from magenta's Python
  sampler (and :mod:`zoo.models.sketch_rnn_sampling`, which scales sigma by
  ``temperature`` and both softmaxes by ``temperature``) except at
  temperature 1; :func:`magenta_js_pdf` reproduces the JS version.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from zoo.errors import ZooError

__all__ = [
  "MagentaFormatError",
  "MAX_WEIGHT",
  "QUANT_LEVELS",
  "JS_NUM_MIXTURE",
  "FORMAT_VERSION",
  "GEN_MODE",
  "PIXEL_FACTOR",
  "quantize",
  "dequantize",
  "export_magenta_json",
  "import_magenta_json",
  "magenta_js_pdf",
]

MAX_WEIGHT = 10.0
QUANT_LEVELS = 32767
JS_NUM_MIXTURE = 20
FORMAT_VERSION = 6
GEN_MODE = 2
PIXEL_FACTOR = 2.0  # the clients' default: pixel = model unit * scale_factor / 2
_STROKE_DIM = 5


class MagentaFormatError(ZooError, ValueError):
  """A model cannot be written as, or a file is not, a sketch-rnn-js model."""


def _fail(msg: str):
  raise MagentaFormatError(" ".join(str(msg).split()))


# ----------------------------------------------------------------- quantisation
def quantize(w, *, clip: bool = False, what: str = "weight") -> np.ndarray:
  """``round(w / 10 * 32767)`` as int16; ``|w| > 10`` is an error unless ``clip``."""
  w = np.asarray(w, np.float64)
  if not np.all(np.isfinite(w)):
    _fail(f"{what} has non-finite values; cannot export")
  peak = float(np.max(np.abs(w))) if w.size else 0.0
  if peak > MAX_WEIGHT:
    if not clip:
      _fail(
        f"{what} has a weight of magnitude {peak:.4g} > {MAX_WEIGHT:g}, the largest "
        f"value the sketch-rnn-js format stores; pass clip=True to clip weights to "
        f"[-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}] (this changes the model)"
      )
    w = np.clip(w, -MAX_WEIGHT, MAX_WEIGHT)
  return np.round(w / MAX_WEIGHT * QUANT_LEVELS).astype(np.int16)


def dequantize(q) -> np.ndarray:
  """``10 * q / 32767`` as float32 (what the JS clients compute)."""
  q = np.asarray(q, np.int16).astype(np.float32)
  return (np.float32(MAX_WEIGHT) * q / np.float32(QUANT_LEVELS)).astype(np.float32)


def _encode(q: np.ndarray) -> str:
  return base64.b64encode(np.ascontiguousarray(q, "<i2").tobytes()).decode("ascii")


def _decode(s: Any, shape: Tuple[int, ...], what: str) -> np.ndarray:
  if not isinstance(s, str):
    _fail(f"{what}: expected a base64 string, got {type(s).__name__}")
  try:
    raw = base64.b64decode(s.encode("ascii"), validate=True)
  except (binascii.Error, ValueError, UnicodeEncodeError) as e:
    _fail(f"{what}: invalid base64 ({e})")
  n = int(np.prod(shape))
  if len(raw) != 2 * n:
    _fail(f"{what}: {len(raw)} bytes, expected {2 * n} (int16 values for shape {list(shape)})")
  return dequantize(np.frombuffer(raw, "<i2").reshape(shape))


# ----------------------------------------------------------------------- export
def _get(cfg: Any, key: str):
  if isinstance(cfg, Mapping):
    return cfg[key]
  return getattr(cfg, key)


def _unwrap(params: Any) -> Mapping:
  if isinstance(params, Mapping) and set(params) == {"params"}:
    params = params["params"]
  if not isinstance(params, Mapping):
    _fail(f"params must be a SketchRNN parameter dict, got {type(params).__name__}")
  return params


def _model_settings(params: Mapping, model: Any, config: Any) -> Tuple[int, int]:
  """Checks the model is an unconditional lstm SketchRNN; returns (dec_rnn_size, M)."""
  cfg = model if model is not None else config
  if cfg is not None:
    try:
      conditional = bool(_get(cfg, "conditional"))
      dec_model = _get(cfg, "dec_model")
    except (KeyError, AttributeError) as e:
      _fail(f"model/config lacks {e}; need conditional, dec_model, dec_rnn_size, num_mixture")
    if conditional:
      _fail(
        "only unconditional (decoder-only, conditional=False) Sketch-RNN models can "
        "be exported to the sketch-rnn-js format; this one is conditional (a VAE)"
      )
    if dec_model != "lstm":
      _fail(f"only dec_model='lstm' can be exported to the sketch-rnn-js format, got {dec_model!r}")
  encoder = sorted(
    k for k in params if k in ("encoder_fw", "encoder_bw", "enc_mu", "enc_presig", "dec_init")
  )
  if encoder:
    _fail(
      f"params hold {encoder}: a conditional (VAE) model; only unconditional "
      f"Sketch-RNN models can be exported to the sketch-rnn-js format"
    )
  for key in ("decoder", "output"):
    if key not in params:
      _fail(f"params lack {key!r}; expected a SketchRNN parameter tree")
  dec = params["decoder"]
  if set(dec) != {"W_xh", "W_hh", "bias"}:
    _fail(
      f"decoder params {sorted(dec)} are not an lstm cell's (W_xh, W_hh, bias); only "
      f"dec_model='lstm' can be exported to the sketch-rnn-js format"
    )
  extra = sorted(set(params) - {"decoder", "output"})
  if extra:
    _fail(f"unexpected params {extra} for an unconditional lstm SketchRNN")
  w_xh, w_hh, bias = (np.shape(dec[k]) for k in ("W_xh", "W_hh", "bias"))
  kernel, obias = np.shape(params["output"]["kernel"]), np.shape(params["output"]["bias"])
  units = w_hh[0] if len(w_hh) == 2 else -1
  if (
    len(w_hh) != 2
    or w_hh[1] != 4 * units
    or w_xh != (_STROKE_DIM, 4 * units)
    or bias != (4 * units,)
  ):
    _fail(
      f"decoder shapes W_xh {w_xh}, W_hh {w_hh}, bias {bias} are not an unconditional "
      f"lstm's ([5, 4U], [U, 4U], [4U])"
    )
  if (
    len(kernel) != 2
    or kernel[0] != units
    or (kernel[1] - 3) % 6
    or kernel[1] < 9
    or obias != (kernel[1],)
  ):
    _fail(f"output shapes kernel {kernel}, bias {obias} do not match [{units}, 3 + 6M]")
  num_mixture = (kernel[1] - 3) // 6
  if cfg is not None:
    for key, have in (("dec_rnn_size", units), ("num_mixture", num_mixture)):
      want = _get(cfg, key)
      if want != have:
        _fail(f"model/config {key}={want} but the params have {have}")
  return units, num_mixture


def export_magenta_json(
  params: Any,
  *,
  model: Any = None,
  config: Any = None,
  name: str,
  scale_factor: float,
  max_seq_len: int,
  path: Union[str, os.PathLike, None] = None,
  clip: bool = False,
  extra_info: Optional[Mapping[str, Any]] = None,
) -> list:
  """Writes an unconditional lstm SketchRNN as a sketch-rnn-js model.

  Args:
    params: the SketchRNN ``params`` tree (or ``{'params': ...}``).
    model: the :class:`~zoo.models.sketch_rnn.SketchRNN` (or ``config``: a
      mapping / ConfigDict with ``conditional``, ``dec_model``,
      ``dec_rnn_size``, ``num_mixture``).  Optional: the params are checked on
      their own as well.
    name: class name stored in ``info``.
    scale_factor: the data normalising scale factor the model was trained with.
    max_seq_len: the longest training sketch.
    path: if given, the JSON is written there.
    clip: clip weights to [-10, 10] instead of raising.
    extra_info: additional ``info`` fields (e.g. ``r_loss``, ``training_size``).

  Returns:
    The JSON-ready list ``[info, shapes, weights]``.

  Raises:
    MagentaFormatError (a :class:`~zoo.errors.ZooError`): conditional or
    non-lstm model, ``num_mixture != 20``, weights beyond +-10 (unless
    ``clip``), bad info values.
  """
  params = _unwrap(params)
  units, num_mixture = _model_settings(params, model, config)
  if num_mixture != JS_NUM_MIXTURE:
    _fail(
      f"num_mixture={num_mixture}: the sketch-rnn-js clients hard-code "
      f"{JS_NUM_MIXTURE} mixture components"
    )
  if not isinstance(name, str):
    _fail(f"name must be a string, got {type(name).__name__}")
  try:
    scale_factor = float(scale_factor)
  except (TypeError, ValueError):
    _fail(f"scale_factor={scale_factor!r} must be a number")
  if not (math.isfinite(scale_factor) and scale_factor > 0):
    _fail(f"scale_factor={scale_factor!r} must be a finite number > 0")
  if (
    isinstance(max_seq_len, bool)
    or not isinstance(max_seq_len, (int, np.integer))
    or max_seq_len <= 0
  ):
    _fail(f"max_seq_len={max_seq_len!r} must be a positive integer")
  info = dict(
    mode=GEN_MODE,
    version=FORMAT_VERSION,
    max_seq_len=int(max_seq_len),
    name=name,
    scale_factor=scale_factor,
  )
  for key, value in dict(extra_info or {}).items():
    if key in info:
      _fail(f"extra_info may not set {key!r}; it is an argument or fixed by the format")
    info[key] = value

  tensors = [
    ("output/kernel", params["output"]["kernel"]),
    ("output/bias", params["output"]["bias"]),
    ("decoder/W_xh", params["decoder"]["W_xh"]),
    ("decoder/W_hh", params["decoder"]["W_hh"]),
    ("decoder/bias", params["decoder"]["bias"]),
  ]
  shapes, weights = [], []
  for what, value in tensors:
    value = np.asarray(value, np.float32)
    shapes.append([int(d) for d in value.shape])
    weights.append(_encode(quantize(value, clip=clip, what=what)))
  obj = [info, shapes, weights]
  if path is not None:
    try:
      text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
      _fail(f"info is not JSON-serialisable: {e}")
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
  return obj


# ----------------------------------------------------------------------- import
def _shape(value: Any, what: str) -> Tuple[int, ...]:
  if (
    not isinstance(value, (list, tuple))
    or not value
    or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)
  ):
    _fail(f"{what}: shape {value!r} is not a list of positive integers")
  return tuple(value)


def import_magenta_json(path_or_obj: Any) -> Tuple[dict, dict]:
  """Reads a sketch-rnn-js decoder-only model (a path, JSON text or the parsed list).

  Returns:
    ``(params, info)``: ``params`` is a SketchRNN parameter tree
    (``decoder/{W_xh, W_hh, bias}``, ``output/{kernel, bias}``, float32 numpy)
    for ``SketchRNN(**info['model_kwargs'])``; ``info`` is the file's info
    dict plus ``model_kwargs = dict(conditional=False, dec_model='lstm',
    dec_rnn_size=U, num_mixture=M)``.  A missing ``mode`` is read as
    decoder-only (``@magenta/sketch`` ignores the field); ``scale_factor``
    is required (the clients divide every input offset by it).

  Raises:
    MagentaFormatError (a :class:`~zoo.errors.ZooError`) with a one-line
    message for unreadable or malformed files.
  """
  obj = path_or_obj
  source = "model"
  if isinstance(obj, (str, os.PathLike)) and not (
    isinstance(obj, str) and obj.lstrip().startswith("[")
  ):
    source = os.fspath(obj)
    try:
      with open(source, "r", encoding="utf-8") as f:
        text = f.read()
    except OSError as e:
      _fail(f"cannot read sketch-rnn-js model {source}: {e.strerror or e}")
    except UnicodeDecodeError:
      _fail(f"{source}: not a UTF-8 JSON file")
    obj = text
  if isinstance(obj, bytes):
    obj = obj.decode("utf-8", errors="replace")
  if isinstance(obj, str):
    try:
      obj = json.loads(obj)
    except json.JSONDecodeError as e:
      _fail(f"{source}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})")
  if not isinstance(obj, (list, tuple)) or len(obj) != 3:
    got = f"a list of length {len(obj)}" if isinstance(obj, (list, tuple)) else type(obj).__name__
    _fail(f"{source}: expected a JSON list [info, shapes, weights], got {got}")
  info, shapes, weights = obj
  if not isinstance(info, Mapping):
    _fail(f"{source}: info (element 0) must be a JSON object, got {type(info).__name__}")
  if not isinstance(shapes, (list, tuple)) or not isinstance(weights, (list, tuple)):
    _fail(f"{source}: shapes and weights (elements 1, 2) must be lists")
  mode = info.get("mode", GEN_MODE)
  if mode in (0, 1, "vae") or len(shapes) == 17:
    _fail(
      f"{source}: a conditional (VAE, mode={mode!r}) sketch-rnn-js model; only "
      f"decoder-only (mode 2 / 'gen') models can be imported"
    )
  if mode not in (GEN_MODE, "gen"):
    _fail(f"{source}: unknown mode {mode!r}; expected 2 or 'gen' (decoder-only)")
  if len(shapes) != 5 or len(weights) != 5:
    _fail(
      f"{source}: a decoder-only model has 5 tensors, got {len(shapes)} shapes and "
      f"{len(weights)} weight strings"
    )
  scale = info.get("scale_factor")
  if (
    isinstance(scale, bool)
    or not isinstance(scale, (int, float))
    or not math.isfinite(scale)
    or scale <= 0
  ):
    _fail(f"{source}: info.scale_factor={scale!r} must be a number > 0")
  max_len = info.get("max_seq_len")
  if max_len is not None and (
    isinstance(max_len, bool) or not isinstance(max_len, int) or max_len <= 0
  ):
    _fail(f"{source}: info.max_seq_len={max_len!r} must be a positive integer")

  names = [
    "output kernel",
    "output bias",
    "lstm input kernel",
    "lstm recurrent kernel",
    "lstm bias",
  ]
  dims = [_shape(s, f"{source}: {n} (tensor {i})") for i, (s, n) in enumerate(zip(shapes, names))]
  units = dims[0][0]
  outs = dims[0][1] if len(dims[0]) == 2 else -1
  expect = [(units, outs), (outs,), (_STROKE_DIM, 4 * units), (units, 4 * units), (4 * units,)]
  if len(dims[0]) != 2 or outs < 9 or (outs - 3) % 6:
    _fail(f"{source}: output kernel shape {list(dims[0])} is not [U, 3 + 6M]")
  for i, (have, want) in enumerate(zip(dims, expect)):
    if have != want:
      _fail(
        f"{source}: {names[i]} (tensor {i}) has shape {list(have)}, expected "
        f"{list(want)} for U={units}, M={(outs - 3) // 6}"
      )
  arrays = [
    _decode(w, d, f"{source}: {n} (tensor {i})")
    for i, (w, d, n) in enumerate(zip(weights, dims, names))
  ]
  params = {
    "decoder": {"W_xh": arrays[2], "W_hh": arrays[3], "bias": arrays[4]},
    "output": {"kernel": arrays[0], "bias": arrays[1]},
  }
  out_info = dict(info)
  out_info["model_kwargs"] = dict(
    conditional=False, dec_model="lstm", dec_rnn_size=units, num_mixture=(outs - 3) // 6
  )
  return params, out_info


# ------------------------------------------------------------------ JS semantics
def magenta_js_pdf(
  raw, *, num_mixture: int, temperature: float = 0.65, softmax_temperature: Optional[float] = None
) -> dict:
  """``@magenta/sketch``'s ``getPDF`` on zoo decoder outputs ``raw [..., 3 + 6M]``.

  Returns numpy arrays ``pi, muX, muY, sigmaX, sigmaY, corr`` (``[..., M]``) and
  ``pen`` (``[..., 3]``), in model units (multiply ``mu`` / ``sigma`` by
  ``scale_factor / 2`` for the client's pixels).
  """
  raw = np.asarray(raw, np.float64)
  if raw.shape[-1] != 3 + 6 * num_mixture:
    raise ValueError(f"raw last dim {raw.shape[-1]} != 3 + 6 * {num_mixture}")
  t_d = 0.5 + 0.5 * temperature if not softmax_temperature else softmax_temperature

  def softmax(x):
    x = x / t_d
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

  pen, rest = raw[..., :3], raw[..., 3:]
  pi, mu_x, mu_y, ls_x, ls_y, corr = np.split(rest, 6, axis=-1)
  root = math.sqrt(temperature)
  return dict(
    pi=softmax(pi),
    muX=mu_x,
    muY=mu_y,
    sigmaX=np.exp(ls_x) * root,
    sigmaY=np.exp(ls_y) * root,
    corr=np.tanh(corr),
    pen=softmax(pen),
  )
