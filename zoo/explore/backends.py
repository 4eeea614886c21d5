"""What the explorer serves: one backend per trained run, numpy in and JSON-able out.

A backend wraps a run loaded through the zoo's one restore (``zoo.sketch.SketchModel``,
``zoo.gan_tools.LatentModel``, pix2pix's ``restore_generator``), compiles its
generation functions once when it is loaded, and answers requests under a lock of its
own (so several tabs can use one run while another run computes). Every argument is
checked here and refused with a one-line :class:`~zoo.errors.ConfigError`; the web layer
turns those into 4xx answers.

No request names a file: runs are found once, when the server starts, from the workdirs
it was given, and requests name a run by the key it was given then.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image

from zoo import gan_tools as gt
from zoo import sketch as sketch_api
from zoo.data.images import paired as image_data
from zoo.errors import ConfigError, ZooError
from zoo.training import mesh as mesh_lib
from zoo.training import pictures
from zoo.training import restore as restore_lib

FAMILIES = ("sketch_rnn", "pix2pix", "progan", "stylegan", "t2f", "dcgan_cls")
MAX_BATCH = 8  # images or sketches per request
MAX_STEPS = 16  # interpolation steps
MAX_FRAMES = 48  # mouth-animation frames
MAX_STROKE_ROWS = 2000
MAX_UPLOAD_SIDE = 2048
MAX_CAPTION = 300
DEFAULT_CAPTION = "a smiling person with black hair and round glasses"


# ---------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------


def detect_family(workdir: str) -> str | None:
  """The family of the run in ``workdir`` (from its ``config.json``), or ``None`` for
  a run the explorer has no page for (the face classifier, the caption encoder)."""
  config = restore_lib.read_config(workdir)
  if "derived" in config and "max_seq_len" in config.get("derived", {}):
    return "sketch_rnn"
  if "netG" in config:
    return "pix2pix"
  if "schedule" in config or "text" in config:
    return gt._family(config, workdir)  # pylint: disable=protected-access
  return None


def find_runs(root: str, *, max_depth: int = 3) -> list[str]:
  """Workdirs under ``root`` (itself included) that hold a ``config.json`` and
  ``checkpoints/`` of a family the explorer serves, sorted."""
  if not os.path.isdir(root):
    raise ConfigError(f"--runs {root!r} is not a directory")
  found = []
  base = os.path.abspath(root).rstrip(os.sep).count(os.sep)
  for dirpath, dirnames, filenames in os.walk(root):
    depth = os.path.abspath(dirpath).count(os.sep) - base
    if "config.json" in filenames and "checkpoints" in dirnames:
      try:
        if detect_family(dirpath):
          found.append(dirpath)
      except ZooError:
        pass
      dirnames[:] = []  # a run's own folders hold no other runs
    elif depth >= max_depth:
      dirnames[:] = []
    dirnames.sort()
  return sorted(found)


def run_names(workdirs: Sequence[str]) -> list[str]:
  """Short unique names (the folder name, with ``-2``, ``-3`` ... on clashes)."""
  names, seen = [], {}
  for w in workdirs:
    base = os.path.basename(os.path.normpath(w)) or "run"
    n = seen.get(base, 0) + 1
    seen[base] = n
    names.append(base if n == 1 else f"{base}-{n}")
  return names


def load_backend(workdir: str, *, log=None):
  """The backend of the run in ``workdir`` (restored and compiled), or ConfigError."""
  if not os.path.isdir(workdir):
    raise ConfigError(f"workdir {workdir!r} does not exist")
  family = detect_family(workdir)
  if family is None:
    raise ConfigError(
      f"{workdir} is not a run the explorer can show (it serves {', '.join(FAMILIES)})"
    )
  cls = {"sketch_rnn": SketchBackend, "pix2pix": Pix2PixBackend}.get(family, GeneratorBackend)
  backend = cls(workdir)
  backend.warm_up()
  if log:
    log(f"[explore] {family} run {workdir} (step {backend.step}) loaded and compiled")
  return backend


# ---------------------------------------------------------------------------
# Checks and encodings shared by the backends
# ---------------------------------------------------------------------------


def _int(name: str, v, lo: int, hi: int) -> int:
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
    raise ConfigError(f"{name}={v!r} must be an integer")
  if not lo <= v <= hi:
    raise ConfigError(f"{name}={v} must be in [{lo}, {hi}]")
  return int(v)


def _float(name: str, v, lo: float, hi: float) -> float:
  if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
    raise ConfigError(f"{name}={v!r} must be a number")
  v = float(v)
  if not (np.isfinite(v) and lo <= v <= hi):
    raise ConfigError(f"{name}={v} must be in [{lo}, {hi}]")
  return v


def png_data_url(image) -> str:
  """``data:image/png;base64,...`` of a uint8 ``[H, W, 3]`` or float ``[-1, 1]`` image."""
  img = np.asarray(image)
  if img.dtype != np.uint8:
    img = pictures.to_uint8(img)
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_data_url(url: str, *, max_side: int = MAX_UPLOAD_SIDE) -> Image.Image:
  """The image of a ``data:image/(png|jpeg);base64,...`` URL; ConfigError when it is not
  one, cannot be decoded or is larger than ``max_side`` pixels on a side."""
  if not isinstance(url, str) or not url.startswith("data:image/"):
    raise ConfigError("image must be a data:image/png;base64,... URL")
  head, _, payload = url.partition(",")
  if ";base64" not in head or head.split(";")[0] not in ("data:image/png", "data:image/jpeg"):
    raise ConfigError(f"image must be a base64 PNG or JPEG data URL, got {head[:40]!r}")
  try:
    raw = base64.b64decode(payload, validate=True)
    img = Image.open(io.BytesIO(raw))
    if max(img.size) > max_side:
      raise ConfigError(f"image is {img.size[0]}x{img.size[1]}; at most {max_side} on a side")
    img.load()
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # any decoder failure is bad input
    raise ConfigError(f"image could not be decoded ({type(e).__name__})") from None
  return img


class Backend:
  """Common part: the run's family, workdir and step, and a lock for its model."""

  family = ""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.lock = threading.Lock()
    self.step = 0

  def describe(self) -> dict[str, Any]:
    return {"family": self.family, "workdir": self.workdir, "step": int(self.step)}

  def warm_up(self) -> None:
    """Compile the main generation function once, before the first request."""


# ---------------------------------------------------------------------------
# Generators: StyleGAN, ProGAN, T2F, DCGAN-CLS
# ---------------------------------------------------------------------------


class GeneratorBackend(Backend):
  """A latent-space generator, through the latent toolkit (:mod:`zoo.gan_tools`)."""

  def __init__(self, workdir: str, model: gt.LatentModel | None = None):
    super().__init__(workdir)
    self.model = model or gt.LatentModel.load(workdir, require_caption=False)
    self.family = self.model.family
    self.step = self.model.step
    self.text = self.model.text_fns is not None
    self.vectors: gt.AttributeVectors | None = None
    self.vectors_source = ""
    csv_path = os.path.join(workdir, "attributes.csv")
    if workdir and os.path.exists(csv_path):
      try:
        self.vectors = gt.AttributeVectors.load_csv(csv_path, self.model)
        self.vectors_source = "attributes.csv"
      except ConfigError:
        self.vectors = None  # of another model (an older step): compute on demand instead
    self._mouth: gt.MouthEdit | None = None
    self._captioned: dict[str, gt.LatentModel] = {}

  # ---- describing -------------------------------------------------------------
  def describe(self) -> dict[str, Any]:
    m = self._for(DEFAULT_CAPTION if self.text else None)
    out = {
      **super().describe(),
      "kind": "generator",
      "space": m.space,
      "latent_size": m.latent_size,
      "resolution": list(m.resolution),
      "truncation": m.space == "w",
      "caption": DEFAULT_CAPTION if self.text else None,
      "attributes": self.vectors.names if self.vectors else [],
      "attributes_source": self.vectors_source,
      "layers": [],
      "mixing": {},
    }
    if m.family == "stylegan":
      out["layers"] = [list(m.layer_shape(l)) for l in range(m.num_layers)]
      out["mixing"] = {k: list(v) for k, v in gt.style_ranges(m).items() if v[0] < v[1]}
    return out

  def warm_up(self) -> None:
    self.image({"seed": 0})
    if self.family == "stylegan":
      self.features({"seed": 0, "layer": 0})

  # ---- requests ------------------------------------------------------------------
  def _for(self, caption) -> gt.LatentModel:
    if not self.text:
      if caption:
        raise ConfigError(f"this {self.family} run takes no caption")
      return self.model
    caption = DEFAULT_CAPTION if caption is None else caption
    if not isinstance(caption, str) or len(caption) > MAX_CAPTION:
      raise ConfigError(f"caption must be text of at most {MAX_CAPTION} characters")
    if caption not in self._captioned:
      if len(self._captioned) >= 64:
        self._captioned.clear()
      self._captioned[caption] = self.model.with_caption(caption)
    return self._captioned[caption]

  def _psi(self, req, m) -> float:
    psi = _float("psi", req.get("psi", 1.0), 0.0, 1.0)
    if psi != 1.0 and m.space != "w":
      raise ConfigError(f"truncation needs a W space (StyleGAN); {self.family} has none")
    return psi

  def _z(self, req, m, key="seed") -> np.ndarray:
    """``[1, latent_dim]``: the request's ``z`` if given, else ``sample_z`` of its seed."""
    if req.get("z") is not None and key == "seed":
      z = np.asarray(req["z"], np.float64) if isinstance(req["z"], list) else None
      if z is None or z.shape != (m.latent_dim,) or not np.all(np.isfinite(z)):
        raise ConfigError(f"z must be a list of {m.latent_dim} finite numbers")
      if np.abs(z).max() > 100:
        raise ConfigError("z has values beyond +-100")
      return z.astype(np.float32)[None]
    seed = _int(key, req.get(key, 0), 0, 2**31 - 1)
    return m.sample_z(1, seed)

  def _strengths(self, req) -> dict[str, float]:
    attrs = req.get("attributes") or {}
    if not isinstance(attrs, Mapping):
      raise ConfigError("attributes must be an object {name: strength}")
    out = {}
    for k, v in attrs.items():
      s = _float(f"attributes[{k!r}]", v, -5.0, 5.0)
      if s == 0.0:
        continue
      if self.vectors is None:
        raise ConfigError("this run has no attribute vectors yet (compute them first)")
      self.vectors[k]  # pylint: disable=pointless-statement  # unknown names: one line
      out[k] = s
    return out

  def _latents(self, req, m, z) -> np.ndarray:
    """The latent of ``z`` in the model's space (``[1, size]``, or per layer with style
    mixing ``[1, layers, size]``), the request's attribute edits applied."""
    lat = m.to_latent(z)
    strengths = self._strengths(req)
    if strengths:
      lat = gt.edit(lat, self.vectors, strengths)
    mix = req.get("mix")
    if mix:
      if m.family != "stylegan":
        raise ConfigError("style mixing needs a StyleGAN run")
      if not isinstance(mix, Mapping):
        raise ConfigError("mix must be an object {seed, lo, hi}")
      L = m.num_layers
      lo, hi = _int("mix.lo", mix.get("lo", 0), 0, L), _int("mix.hi", mix.get("hi", L), 0, L)
      if lo >= hi:
        raise ConfigError(f"mix.lo={lo} must be below mix.hi={hi}")
      other = m.to_latent(m.sample_z(1, _int("mix.seed", mix.get("seed", 0), 0, 2**31 - 1)))
      ws = np.repeat(lat[:, None], L, axis=1)
      ws[:, lo:hi] = other[:, None]
      lat = ws
    return lat

  def _edits(self, req, m) -> dict[int, np.ndarray] | None:
    e = req.get("edit")
    if not e:
      return None
    if not isinstance(e, Mapping):
      raise ConfigError("edit must be an object {layer, channels, region, delta}")
    layer = m.check_layer(e.get("layer"))
    channels = e.get("channels")
    if not isinstance(channels, list) or not 1 <= len(channels) <= 1024:
      raise ConfigError("edit.channels must be a list of channel numbers")
    for c in channels:
      _int("edit.channels[]", c, 0, 1 << 16)
    region = e.get("region")
    if not isinstance(region, list) or len(region) != 4:
      raise ConfigError("edit.region must be [top, left, bottom, right] fractions")
    region = [_float("edit.region[]", r, 0.0, 1.0) for r in region]
    delta = _float("edit.delta", e.get("delta", 0.0), -50.0, 50.0)
    return {layer: gt.local_edit_delta(m, layer, channels, region, delta)}

  def _draw(self, m, lat, psi, edits, noise_seed, *, features: bool = False):
    """``(images, {layer: features})`` of latents. StyleGAN always runs with an edit
    array for every layer (zeros where nothing is edited), so an edit of any layer, or
    none, uses the same compiled program: two in all, with and without feature maps
    (batches are padded to 8 rows, so one image or an interpolation strip share them)."""
    if m.family != "stylegan":
      return m.images(lat), {}
    full = {l: np.zeros(m.layer_shape(l), np.float32) for l in range(m.num_layers)}
    full.update(edits or {})
    if features:
      return m.images_and_features(lat, psi=psi, edits=full, noise_seed=noise_seed)
    return m.images(lat, psi=psi, edits=full, noise_seed=noise_seed), {}

  def image(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """One image: ``seed`` (or ``z``), ``psi``, ``attributes``, ``caption``, ``mix``,
    ``edit``, ``noise_seed``. Returns the PNG and the latent ``z`` it was drawn from."""
    m = self._for(req.get("caption"))
    psi = self._psi(req, m)
    noise_seed = _int("noise_seed", req.get("noise_seed", 0), 0, 2**31 - 1)
    with self.lock:
      z = self._z(req, m)
      imgs, _ = self._draw(m, self._latents(req, m, z), psi, self._edits(req, m), noise_seed)
    return {"image": png_data_url(imgs[0]), "z": [float(x) for x in z[0]]}

  def interpolate(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """``steps`` images from ``seed_a`` to ``seed_b`` (slerp in Z, or lerp in W)."""
    m = self._for(req.get("caption"))
    psi = self._psi(req, m)
    steps = _int("steps", req.get("steps", 8), 2, MAX_STEPS)
    with self.lock:
      za, zb = self._z(req, m, "seed_a")[0], self._z(req, m, "seed_b")[0]
      lat = gt.interpolate(m, za, zb, steps)
      strengths = self._strengths(req)
      if strengths:
        lat = gt.edit(lat, self.vectors, strengths)
      imgs, _ = self._draw(m, lat, psi, None, 0)
    return {"images": [png_data_url(x) for x in imgs]}

  def features(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """One layer's channels as tiles (blue negative, white near zero, red positive),
    with the image they belong to (after any ``edit``)."""
    m = self._for(None)
    m._need_layers("feature maps")  # pylint: disable=protected-access
    layer = m.check_layer(req.get("layer"))
    psi = self._psi(req, m)
    noise_seed = _int("noise_seed", req.get("noise_seed", 0), 0, 2**31 - 1)
    with self.lock:
      lat = self._latents(req, m, self._z(req, m))
      imgs, feats = self._draw(m, lat, psi, self._edits(req, m), noise_seed, features=True)
      img, feats = imgs[0], feats[layer][0]
    scale = float(np.percentile(np.abs(feats), 99) or 1.0)
    tile = max(32, 64 // feats.shape[0] * feats.shape[0])
    tiles = [
      png_data_url(gt.feature_map_view(feats[..., c : c + 1], scale=scale, cols=1, tile=tile))
      for c in range(feats.shape[-1])
    ]
    return {
      "image": png_data_url(img),
      "layer": layer,
      "shape": list(feats.shape),
      "scale": scale,
      "tiles": tiles,
    }

  def compute_attributes(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """Attribute vectors from ``n`` samples labelled by the face classifier, by
    ``method`` (:data:`zoo.gan_tools.VECTOR_METHODS`; kept in memory; ``python -m
    launch.stylegan --mode=attributes`` writes the CSV)."""
    n = _int("n", req.get("n", 2000), 16, 20_000)
    min_count = _int("min_count", req.get("min_count", max(4, n // 20)), 1, n)
    method = gt.check_vector_method(req.get("method", "mean"))
    m = self._for(None if not self.text else req.get("caption"))
    with self.lock:
      self.vectors = gt.attribute_vectors(m, n, min_count=min_count, method=method)
      self.vectors_source = f"computed from {n} samples ({method})"
    return {"attributes": self.vectors.names, "attributes_source": self.vectors_source}

  def mouth(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """Frames of the image's mouth opening and closing (the local mouth edit)."""
    m = self._for(None)
    m._need_layers("the mouth animation")  # pylint: disable=protected-access
    frames = _int("frames", req.get("frames", 16), 2, MAX_FRAMES)
    strength = _float("strength", req.get("strength", 1.0), -5.0, 5.0)
    with self.lock:
      if self._mouth is None:
        self._mouth = gt.find_mouth_edit(m)
      lat = m.to_latent(self._z(req, m))
      out = gt.mouth_animation(m, lat[0], self._mouth, frames=frames, strength=strength)
    return {"frames": [png_data_url(x) for x in out], "layer": self._mouth.layer}


# ---------------------------------------------------------------------------
# pix2pix
# ---------------------------------------------------------------------------


class Pix2PixBackend(Backend):
  """A trained pix2pix generator: an uploaded picture in, its translation out."""

  family = "pix2pix"

  def __init__(self, workdir: str):
    super().__init__(workdir)
    from zoo.tasks import pix2pix  # pylint: disable=g-import-not-at-top

    c = ml_collections.ConfigDict(restore_lib.read_config(workdir))  # the run's whole config
    pix2pix.validate_config(c)
    mesh = mesh_lib.make_mesh(jax.devices()[:1])
    self.g_vars, self.step = pix2pix.restore_generator(c, workdir, mesh)
    self.size = pix2pix.image_size(c)
    self.input_nc, self.output_nc = int(c.input_nc), int(c.output_nc)
    self.direction = c.direction
    self._gen = pix2pix.jitted_generate(
      pix2pix.make_generator(c), seed=int(c.seed), eval_mode=bool(c.eval_mode)
    )

  def describe(self) -> dict[str, Any]:
    h, w = self.size
    return {
      **super().describe(),
      "kind": "translate",
      "size": [h, w],
      "input_nc": self.input_nc,
      "direction": self.direction,
    }

  def warm_up(self) -> None:
    h, w = self.size
    self._run(np.full((h, w, 3), 255, np.uint8))

  def _run(self, rgb: np.ndarray) -> np.ndarray:
    h, w = self.size
    img = Image.fromarray(rgb).resize((w, h), Image.BILINEAR)
    x = image_data.to_float(np.asarray(img))
    x = x.mean(-1, keepdims=True) if self.input_nc == 1 else x
    with self.lock:
      y = np.asarray(self._gen(self.g_vars, x[None], np.zeros((1,), np.int32)))[0]
    return np.repeat(y, 3, -1) if y.shape[-1] == 1 else y

  def translate(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """``image``: a PNG/JPEG data URL (any size up to 2048 px; resized to the model's).
    Transparent pixels count as white (a canvas drawing)."""
    img = decode_data_url(req.get("image"))
    if img.mode in ("RGBA", "LA", "P"):
      rgba = img.convert("RGBA")
      white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
      img = Image.alpha_composite(white, rgba)
    rgb = np.asarray(img.convert("RGB"))
    return {"image": png_data_url(self._run(rgb)), "size": list(self.size)}


# ---------------------------------------------------------------------------
# Sketch-RNN
# ---------------------------------------------------------------------------


def _strokes(rows, where: str) -> np.ndarray:
  """stroke-3 ``[n, 3]`` from request rows (stroke-3 or sketch-rnn-js stroke-5)."""
  from zoo.data.sketches import export as sketch_export  # pylint: disable=g-import-not-at-top

  if not isinstance(rows, list) or not rows:
    raise ConfigError(f"{where} must be a non-empty list of [dx, dy, pen] rows")
  if len(rows) > MAX_STROKE_ROWS:
    raise ConfigError(f"{where} has {len(rows)} rows; at most {MAX_STROKE_ROWS}")
  s = sketch_export.from_js_strokes(rows, where)
  if len(s) == 0:
    raise ConfigError(f"{where} has no points")
  if np.abs(s[:, :2]).max() > sketch_api.CLIP_LIMIT:
    raise ConfigError(f"{where} has offsets beyond +-{sketch_api.CLIP_LIMIT:g}")
  return s


def _rows(sketch: np.ndarray) -> list[list[float]]:
  return [[round(float(a), 3), round(float(b), 3), int(p > 0.5)] for a, b, p in sketch]


class SketchBackend(Backend):
  """A trained Sketch-RNN: sample, complete a drawing, interpolate."""

  family = "sketch_rnn"

  def __init__(self, workdir: str):
    super().__init__(workdir)
    self.model = sketch_api.SketchModel.load(workdir)
    self.step = self.model.step or 0
    self.extent = self._extent()
    self.temperature = float(self.model.config.get("sample_temperature", 0.5))

  def _extent(self) -> float | None:
    """Median bounding-box side of some test sketches: how large a drawing the model
    knows, in its data's units (``None`` when the data is not at hand)."""
    try:
      sk = self.model.dataset_sketches("test", list(range(16)))
    except (ZooError, OSError, IndexError, ValueError):
      return None
    sides = []
    for s in sk:
      xy = np.cumsum(s[:, :2], axis=0)
      sides.append(float(np.max(xy.max(0) - xy.min(0))))
    return float(np.median(sides)) if sides else None

  def describe(self) -> dict[str, Any]:
    return {
      **super().describe(),
      "kind": "sketch",
      "conditional": self.model.conditional,
      "temperature": self.temperature,
      "max_seq_len": self.model.max_seq_len,
      "extent": self.extent,
    }

  def warm_up(self) -> None:
    self.sample({"n": 1})

  def _common(self, req) -> tuple[float, int]:
    t = _float("temperature", req.get("temperature", self.temperature), 0.01, 2.0)
    return t, _int("seed", req.get("seed", 0), 0, 2**31 - 1)

  def sample(self, req: Mapping[str, Any]) -> dict[str, Any]:
    n = _int("n", req.get("n", 4), 1, MAX_BATCH)
    t, seed = self._common(req)
    with self.lock:
      out = self.model.sample(n, temperature=t, seed=seed)
    return {"sketches": [_rows(s) for s in out]}

  def complete(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """``strokes``: the drawing so far; ``n`` completions that start with it."""
    prefix = _strokes(req.get("strokes"), "strokes")
    n = _int("n", req.get("n", 4), 1, MAX_BATCH)
    t, seed = self._common(req)
    with self.lock:
      out = self.model.complete(prefix, n, temperature=t, seed=seed)
    return {"sketches": [_rows(s) for s in out], "prefix_rows": len(prefix)}

  def interpolate(self, req: Mapping[str, Any]) -> dict[str, Any]:
    """From sketch ``a`` (default: a sample of ``seed``) to ``b`` (a sample of ``seed + 1``)."""
    if not self.model.conditional:
      raise ConfigError("interpolation needs a conditional (VAE) Sketch-RNN run")
    steps = _int("steps", req.get("steps", 6), 2, MAX_STEPS)
    t, seed = self._common(req)
    with self.lock:
      a = _strokes(req["a"], "a") if req.get("a") else self.model.sample(1, seed=seed)[0]
      b = _strokes(req["b"], "b") if req.get("b") else self.model.sample(1, seed=seed + 1)[0]
      out = self.model.interpolate(a, b, steps, temperature=t, seed=seed)
    return {"sketches": [_rows(s) for s in out.sketches]}
