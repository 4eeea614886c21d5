"""Synthetic, labelled cartoon faces: a measurable offline stand-in for face datasets.

Every example is rendered procedurally (numpy + Pillow) from a small set of
categorical attributes (:data:`ATTRIBUTES`) plus a little seeded *jitter*
(position, size, eye spacing, colour noise).  Because the generating factors are
known, generated images can be scored offline: an attribute classifier trained on
this data measures whether a conditional generator obeys its conditioning, and the
label map / edge views give paired data for image-to-image translation.

Views of one example are pixel-aligned by construction: the face is drawn once,
at ``ss``-times the output resolution, into a canvas of *part* ids (sclera, pupil,
teeth, ...).  The RGB image is the box-filtered (anti-aliased) down-sample of the
part colours, the label map is the per-block majority of the part labels and the
edge map marks boundaries between down-sampled parts.

Layout: the face lives in the centred square whose side is ``min(height, width)``;
the background colour fills the rest (the shirt extends to the bottom edge).

Public API
----------
- :data:`ATTRIBUTES`, :data:`ATTRIBUTE_NAMES`, :data:`LABELS`, :data:`LABEL_PALETTE`
- :func:`sample_attributes`, :func:`sample_jitter`
- :func:`render_face`, :func:`render_label_map`, :func:`render_example`
- :func:`edge_map`, :func:`colorize_label_map`, :func:`caption`, :func:`describe`
- :func:`make_faces`, :func:`face_split`, :func:`make_example`
- :func:`one_hot_attributes`, :func:`attribute_names_of`

The schema is documented in ``docs/faces.md``.

This package is the renderer; beside it live :mod:`zoo.data.faces.pipeline` (grain
source and :class:`~zoo.data.faces.pipeline.FacesBatches`, the training stream) and
:mod:`zoo.data.faces.tfds` (the TFDS builder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from zoo.errors import ConfigError

# ---------------------------------------------------------------------------
# Schema.
# ---------------------------------------------------------------------------

#: Attribute name -> vocabulary.  Integer codes index the vocabulary.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
  "face_shape": ("round", "oval", "square"),
  "skin_tone": ("pale", "light", "tan", "brown", "dark"),
  "hair_style": ("bald", "short", "long", "bun", "curly"),
  "hair_color": ("black", "brown", "blond", "red", "grey"),
  "eyes": ("open", "closed"),
  "mouth": ("closed", "smiling", "open"),
  "glasses": ("none", "round", "square"),
  "background_color": ("blue", "green", "pink", "yellow", "purple", "white"),
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)
ATTRIBUTE_SIZES: tuple[int, ...] = tuple(len(v) for v in ATTRIBUTES.values())

#: Segmentation label ids (index = id).
LABELS: tuple[str, ...] = (
  "background",
  "skin",
  "hair",
  "eyebrows",
  "eyes",
  "nose",
  "mouth",
  "glasses",
  "clothes",
)
LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
#: Colour for each label id, for visualising label maps.
LABEL_PALETTE = np.array(
  [
    [0, 0, 0],  # background
    [255, 200, 150],  # skin
    [140, 70, 20],  # hair
    [90, 40, 140],  # eyebrows
    [40, 120, 255],  # eyes
    [255, 120, 40],  # nose
    [220, 20, 60],  # mouth
    [0, 200, 80],  # glasses
    [120, 120, 120],  # clothes
  ],
  dtype=np.uint8,
)

SKIN_TONES = np.array(
  [[255, 226, 206], [238, 194, 156], [204, 148, 100], [148, 96, 60], [84, 52, 40]], np.float32
)
HAIR_COLORS = np.array(
  [[28, 26, 32], [128, 72, 30], [238, 198, 80], [205, 68, 28], [172, 172, 176]], np.float32
)
BACKGROUND_COLORS = np.array(
  [
    [145, 190, 240],  # blue
    [150, 220, 150],  # green
    [245, 175, 200],  # pink
    [246, 232, 135],  # yellow
    [190, 165, 235],  # purple
    [246, 246, 246],  # white
  ],
  np.float32,
)
SHIRT_COLORS = np.array(
  [[40, 130, 140], [45, 60, 120], [130, 40, 60], [95, 110, 45], [215, 115, 40], [70, 70, 82]],
  np.float32,
)

# Parts: fine-grained ids drawn into the super-sampled canvas.  Each part has a
# segmentation label and an (example-dependent) colour.
_P_BG, _P_SKIN, _P_NOSE, _P_HAIR, _P_BROW, _P_SCLERA, _P_PUPIL, _P_LID = range(8)
_P_LIP, _P_MOUTH, _P_TEETH, _P_TONGUE, _P_GLASSES, _P_SHIRT, _P_EAR = range(8, 15)
NUM_PARTS = 15
_PART_LABEL = np.array(
  [
    LABEL_IDS["background"],
    LABEL_IDS["skin"],
    LABEL_IDS["nose"],
    LABEL_IDS["hair"],
    LABEL_IDS["eyebrows"],
    LABEL_IDS["eyes"],
    LABEL_IDS["eyes"],
    LABEL_IDS["eyes"],
    LABEL_IDS["mouth"],
    LABEL_IDS["mouth"],
    LABEL_IDS["mouth"],
    LABEL_IDS["mouth"],
    LABEL_IDS["glasses"],
    LABEL_IDS["clothes"],
    LABEL_IDS["skin"],
  ],
  np.uint8,
)

SPLITS = ("train", "valid", "test")
_SPLIT_IDS = {None: 0, "train": 1, "valid": 2, "test": 3}
_MAGIC = 0xFACE5

MIN_SIZE, MAX_SIZE = 16, 256


# ---------------------------------------------------------------------------
# Sampling.
# ---------------------------------------------------------------------------


def sample_attributes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  """``n`` independent draws, uniform over each vocabulary: ``{name: int64[n]}``."""
  return {name: rng.integers(0, len(vocab), size=n) for name, vocab in ATTRIBUTES.items()}


@dataclasses.dataclass(frozen=True)
class Jitter:
  """Small nuisance variation that does not change any attribute."""

  dx: float = 0.0  # head translation (fraction of the face square)
  dy: float = 0.0
  scale: float = 1.0  # head scale
  eye_sep: float = 0.105  # half distance between eye centres
  eye_dy: float = 0.0
  mouth_dy: float = 0.0
  mouth_w: float = 1.0
  brow_dy: float = 0.0
  gaze: float = 0.0  # horizontal pupil offset
  hair_volume: float = 1.0
  shirt: int = 0  # index into SHIRT_COLORS
  skin_noise: tuple[float, float, float] = (0.0, 0.0, 0.0)
  hair_noise: tuple[float, float, float] = (0.0, 0.0, 0.0)
  bg_noise: tuple[float, float, float] = (0.0, 0.0, 0.0)
  shirt_noise: tuple[float, float, float] = (0.0, 0.0, 0.0)


def sample_jitter(rng: np.random.Generator | int | None) -> Jitter:
  """Draw a :class:`Jitter`.  ``None`` -> canonical face (no jitter).

  The number and order of draws never depends on the attributes, so the same
  rng state gives the same geometry for every attribute combination.
  """
  if rng is None:
    return Jitter()
  if isinstance(rng, Jitter):
    return rng
  if not isinstance(rng, np.random.Generator):
    rng = np.random.default_rng(rng)
  u = rng.uniform(-1.0, 1.0, size=10)
  noise = rng.uniform(-8.0, 8.0, size=(4, 3))
  shirt = int(rng.integers(0, len(SHIRT_COLORS)))
  return Jitter(
    dx=0.025 * u[0],
    dy=0.02 * u[1],
    scale=1.0 + 0.06 * u[2],
    eye_sep=0.105 + 0.008 * u[3],
    eye_dy=0.01 * u[4],
    mouth_dy=0.01 * u[5],
    mouth_w=1.0 + 0.1 * u[6],
    brow_dy=0.008 * u[7],
    gaze=0.012 * u[8],
    hair_volume=1.0 + 0.08 * u[9],
    shirt=shirt,
    skin_noise=tuple(noise[0].tolist()),
    hair_noise=tuple(noise[1].tolist()),
    bg_noise=tuple(noise[2].tolist()),
    shirt_noise=tuple(noise[3].tolist()),
  )


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------


def _check_size(height: int, width: int) -> None:
  for v in (height, width):
    if not (MIN_SIZE <= int(v) <= MAX_SIZE):
      raise ConfigError(
        f"the synthetic faces come {MIN_SIZE} to {MAX_SIZE} pixels high and wide, not "
        f"{height}x{width}"
      )


def _attr_codes(attrs: Mapping[str, Any]) -> dict[str, int]:
  out = {}
  for name, vocab in ATTRIBUTES.items():
    if name not in attrs:
      raise KeyError(f"missing attribute {name!r}")
    v = attrs[name]
    if isinstance(v, str):
      v = vocab.index(v)
    v = int(np.asarray(v).reshape(()))
    if not 0 <= v < len(vocab):
      raise ValueError(f"attribute {name}={v} out of range [0, {len(vocab)})")
    out[name] = v
  return out


def _default_supersample(height: int, width: int) -> int:
  return 4 if min(height, width) <= 128 else 2


class _Canvas:
  """Part-id canvas at super-sampled resolution with unit-square coordinates."""

  def __init__(self, height: int, width: int, ss: int, jit: Jitter):
    self.H, self.W, self.ss = height * ss, width * ss, ss
    self.side = min(height, width) * ss
    self.ox = (self.W - self.side) / 2.0
    self.oy = (self.H - self.side) / 2.0
    self.img = Image.new("L", (self.W, self.H), _P_BG)
    self.draw = ImageDraw.Draw(self.img)
    self.j = jit

  # Head-relative coordinates: (0.5, 0.5) is the centre of the face square;
  # the jitter translation/scale is applied around it.
  def x(self, u: float) -> float:
    return self.ox + (0.5 + self.j.dx + (u - 0.5) * self.j.scale) * self.side

  def y(self, v: float) -> float:
    return self.oy + (0.5 + self.j.dy + (v - 0.5) * self.j.scale) * self.side

  def d(self, r: float) -> float:
    return r * self.j.scale * self.side

  def box(self, cx: float, cy: float, rx: float, ry: float) -> list[float]:
    x0, x1 = self.x(cx - rx), self.x(cx + rx)
    y0, y1 = self.y(cy - ry), self.y(cy + ry)
    return [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)]

  def width(self, w: float) -> int:
    return max(1, int(round(self.d(w))))

  def mask(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    m = Image.new("L", (self.W, self.H), 0)
    return m, ImageDraw.Draw(m)

  def paste(self, part: int, mask: Image.Image) -> None:
    self.img.paste(part, (0, 0), mask)


def _head(shape: int) -> tuple[float, float, float, float]:
  """(cx, cy, half-width, half-height) of the head for each face shape."""
  cx, cy = 0.5, 0.46
  if shape == 0:  # round
    return cx, cy, 0.245, 0.245
  if shape == 1:  # oval
    return cx, cy, 0.195, 0.295
  return cx, cy, 0.235, 0.265  # square


def _draw_head_shape(
  c: _Canvas, draw: ImageDraw.ImageDraw, shape: int, fill: int, grow: float = 0.0, dy: float = 0.0
) -> None:
  cx, cy, a, b = _head(shape)
  box = c.box(cx, cy + dy, a + grow, b + grow)
  if shape == 2:
    draw.rounded_rectangle(box, radius=c.d(0.07 + grow), fill=fill)
  else:
    draw.ellipse(box, fill=fill)


def _draw_parts(a: dict[str, int], c: _Canvas) -> None:
  """Draw every part of the face into ``c`` (part ids, no colours)."""
  j, dr = c.j, c.draw
  shape, style = a["face_shape"], a["hair_style"]
  cx, cy, ha, hb = _head(shape)
  vol = j.hair_volume
  top = cy - hb

  # --- hair behind the head --------------------------------------------------
  if style == 2:  # long: a curtain down to the shoulders
    w = ha + 0.075 * vol
    dr.rounded_rectangle(
      c.box(cx, top + 0.30, w, 0.33 + 0.03 * vol), radius=c.d(w * 0.9), fill=_P_HAIR
    )
  elif style == 3:  # bun on top
    dr.ellipse(c.box(cx, top - 0.055 * vol, 0.085 * vol, 0.075 * vol), fill=_P_HAIR)
  elif style == 4:  # curly: ring of curls around the top and sides
    r = 0.055 * vol
    for ang in np.linspace(-200.0, 20.0, 11):
      t = np.deg2rad(ang)
      px = cx + (ha + 0.02) * np.cos(t)
      py = cy - 0.02 + (hb + 0.02) * np.sin(t)
      dr.ellipse(c.box(px, py, r, r), fill=_P_HAIR)

  # --- neck and shirt -------------------------------------------------------
  dr.rectangle(c.box(cx, cy + hb * 0.5 + 0.1, 0.075, hb * 0.5 + 0.1), fill=_P_SKIN)
  sw, sy = 0.36, 0.83
  dr.ellipse(c.box(cx, sy + 0.2, sw, 0.2), fill=_P_SHIRT)
  y_mid = c.y(sy + 0.2)
  if y_mid < c.H:
    dr.rectangle([c.x(cx - sw), y_mid, c.x(cx + sw), c.H], fill=_P_SHIRT)
  # collar notch (skin V)
  dr.polygon(
    [
      (c.x(cx - 0.075), c.y(sy - 0.01)),
      (c.x(cx + 0.075), c.y(sy - 0.01)),
      (c.x(cx), c.y(sy + 0.08)),
    ],
    fill=_P_SKIN,
  )

  # --- ears and head --------------------------------------------------------
  if style != 2:
    for s in (-1, 1):
      dr.ellipse(c.box(cx + s * ha, cy + 0.03, 0.045, 0.055), fill=_P_EAR)
  _draw_head_shape(c, dr, shape, _P_SKIN)

  # --- hair in front of the head ----------------------------------------------
  if style == 0:  # bald: horseshoe of hair on the sides, above the ears
    m, md = c.mask()
    md.ellipse(c.box(cx, cy - 0.03, ha + 0.035, hb * 0.62), fill=255)
    hole, hd = c.mask()
    hd.rectangle(c.box(cx, cy - 0.03, ha - 0.06, hb), fill=255)
    hd.rectangle(c.box(cx, cy + 0.5, 1.0, 0.5 - 0.01), fill=255)
    c.paste(_P_HAIR, ImageChops.subtract(m, hole))
  else:
    m, md = c.mask()
    g = 0.03 * vol if style != 4 else 0.015
    if style == 3:
      g = 0.02
    _draw_head_shape(c, md, shape, 255, grow=g, dy=-0.015)
    md.rectangle(c.box(cx, cy + 0.5 + 0.035, 1.0, 0.5), fill=0)  # stop at ear level
    window, wd = c.mask()
    # face window below the hairline; long hair frames the face lower down
    if style == 2:
      wd.ellipse(c.box(cx, cy + 0.10, ha - 0.035, hb - 0.05 + 0.04), fill=255)
    else:
      wd.ellipse(c.box(cx, cy + 0.10, ha - 0.02, hb - 0.035 + 0.04), fill=255)
      wd.rectangle(c.box(cx, cy + 0.5 + 0.04, 1.0, 0.5), fill=255)
    c.paste(_P_HAIR, ImageChops.subtract(m, window))

  # --- eyebrows -------------------------------------------------------------
  ey = cy - 0.015 + j.eye_dy
  by = ey - 0.105 + j.brow_dy
  for s in (-1, 1):
    dr.rounded_rectangle(
      c.box(cx + s * j.eye_sep, by, 0.055, 0.017), radius=c.d(0.012), fill=_P_BROW
    )

  # --- eyes -----------------------------------------------------------------
  for s in (-1, 1):
    ex = cx + s * j.eye_sep
    if a["eyes"] == 0:  # open: white sclera with a big dark pupil
      dr.ellipse(c.box(ex, ey, 0.058, 0.044), fill=_P_SCLERA)
      dr.ellipse(c.box(ex + j.gaze, ey + 0.004, 0.028, 0.03), fill=_P_PUPIL)
    else:  # closed: thick downward arc (lid line)
      dr.arc(c.box(ex, ey - 0.02, 0.055, 0.04), 15, 165, fill=_P_LID, width=c.width(0.02))

  # --- nose -----------------------------------------------------------------
  dr.ellipse(c.box(cx, cy + 0.075, 0.024, 0.03), fill=_P_NOSE)

  # --- mouth ----------------------------------------------------------------
  my = cy + 0.165 + j.mouth_dy
  mw = j.mouth_w
  if a["mouth"] == 0:  # closed: a straight lip line
    dr.rounded_rectangle(c.box(cx, my, 0.075 * mw, 0.021), radius=c.d(0.015), fill=_P_LIP)
  elif a["mouth"] == 1:  # smiling: wide "D" grin with a row of teeth
    box = c.box(cx, my - 0.035, 0.09 * mw, 0.085)
    dr.chord(box, 0, 180, fill=_P_MOUTH)
    m, md = c.mask()
    md.chord(box, 0, 180, fill=255)
    band, bd = c.mask()
    bd.rectangle(c.box(cx, my - 0.01, 1.0, 0.022), fill=255)
    c.paste(_P_TEETH, ImageChops.multiply(m, band))
  else:  # open: tall dark oval with a tongue
    box = c.box(cx, my + 0.01, 0.048 * mw, 0.058)
    dr.ellipse(box, fill=_P_MOUTH)
    m, md = c.mask()
    md.ellipse(box, fill=255)
    tg, td = c.mask()
    td.ellipse(c.box(cx, my + 0.062, 0.04 * mw, 0.035), fill=255)
    c.paste(_P_TONGUE, ImageChops.multiply(m, tg))

  # --- glasses: thick dark frames -------------------------------------------
  if a["glasses"]:
    fw = c.width(0.028)
    lens = []
    for s in (-1, 1):
      ex = cx + s * j.eye_sep
      if a["glasses"] == 1:  # round
        b = c.box(ex, ey, 0.082, 0.082)
        dr.ellipse(b, outline=_P_GLASSES, width=fw)
        lens.append((ex, 0.082))
      else:  # square: wide rectangles
        b = c.box(ex, ey + 0.005, 0.092, 0.066)
        dr.rectangle(b, outline=_P_GLASSES, width=fw)
        lens.append((ex, 0.092))
    # bridge and temples
    (lx, lr), (rx, rr) = lens
    dr.line(
      [(c.x(lx + lr - 0.01), c.y(ey - 0.01)), (c.x(rx - rr + 0.01), c.y(ey - 0.01))],
      fill=_P_GLASSES,
      width=fw,
    )
    for xe, xo in ((lx - lr, cx - ha - 0.01), (rx + rr, cx + ha + 0.01)):
      if abs(xo - cx) > abs(xe - cx):
        dr.line([(c.x(xe), c.y(ey - 0.02)), (c.x(xo), c.y(ey - 0.02))], fill=_P_GLASSES, width=fw)


def _part_colors(a: dict[str, int], j: Jitter) -> np.ndarray:
  skin = np.clip(SKIN_TONES[a["skin_tone"]] + np.asarray(j.skin_noise), 0, 255)
  hair = np.clip(HAIR_COLORS[a["hair_color"]] + np.asarray(j.hair_noise), 0, 255)
  bg = np.clip(BACKGROUND_COLORS[a["background_color"]] + np.asarray(j.bg_noise), 0, 255)
  shirt = np.clip(SHIRT_COLORS[j.shirt] + np.asarray(j.shirt_noise), 0, 255)
  col = np.zeros((NUM_PARTS, 3), np.float32)
  col[_P_BG] = bg
  col[_P_SKIN] = skin
  col[_P_EAR] = skin * 0.93
  col[_P_NOSE] = skin * 0.8
  col[_P_HAIR] = hair
  col[_P_BROW] = hair * 0.85
  col[_P_SCLERA] = (250, 250, 250)
  col[_P_PUPIL] = (30, 26, 36)
  col[_P_LID] = (45, 30, 30)
  col[_P_LIP] = (150, 45, 60)
  col[_P_MOUTH] = (85, 20, 32)
  col[_P_TEETH] = (252, 252, 246)
  col[_P_TONGUE] = (225, 95, 110)
  col[_P_GLASSES] = (18, 18, 24)
  col[_P_SHIRT] = shirt
  return np.round(col).astype(np.uint8)


def _block_mode(img: Image.Image, ss: int, ids: Sequence[int]) -> np.ndarray:
  """Per ``ss x ss`` block majority of the ids in an 'L' image -> uint8 [h, w]; values
  outside ``ids`` do not vote and ties go to the smaller id.

  Most blocks hold one id; only the mixed ones (along part boundaries) are counted.
  """
  a = np.asarray(img)
  h, w = a.shape[0] // ss, a.shape[1] // ss
  blocks = a.reshape(h, ss, w, ss).swapaxes(1, 2).reshape(h * w, ss * ss)
  out = blocks[:, 0].copy()
  voter = np.zeros(256, bool)
  voter[np.fromiter(ids, np.intp)] = True
  rows = np.flatnonzero((blocks != out[:, None]).any(axis=1) | ~voter[out])
  if len(rows):
    sub = blocks[rows]
    present = np.flatnonzero(np.bincount(sub.ravel(), minlength=256).astype(bool) & voter)
    slot = np.full(256, len(present), np.intp)  # non-voters count in a last, dropped slot
    slot[present] = np.arange(len(present))
    k = len(present) + 1
    counts = np.bincount(
      (slot[sub] + k * np.arange(len(rows))[:, None]).ravel(), minlength=k * len(rows)
    ).reshape(len(rows), k)[:, :-1]
    out[rows] = present.astype(np.uint8)[np.argmax(counts, axis=1)]
  return out.reshape(h, w)


_LABEL_LUT = _PART_LABEL.tolist() + [0] * (256 - NUM_PARTS)


def _render(
  attrs, height, width, rng, supersample, *, label_map: bool = True, part_map: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
  """``(image, label_map, part_map)``, a map ``None`` where not asked for: each map's
  block majority costs about as much as the image itself."""
  height, width = int(height), int(width)
  _check_size(height, width)
  a = _attr_codes(attrs)
  j = sample_jitter(rng)
  ss = int(supersample or _default_supersample(height, width))
  c = _Canvas(height, width, ss, j)
  _draw_parts(a, c)
  parts = c.img
  pal = c.img.copy()
  pal.putpalette(_part_colors(a, j).tobytes())
  image = np.asarray(pal.convert("RGB").reduce(ss))
  labels = _block_mode(parts.point(_LABEL_LUT), ss, range(len(LABELS))) if label_map else None
  part_ids = _block_mode(parts, ss, range(NUM_PARTS)) if part_map else None
  return image, labels, part_ids


def render_example(
  attrs: Mapping[str, Any],
  *,
  height: int = 64,
  width: int = 64,
  rng: np.random.Generator | int | Jitter | None = None,
  supersample: int | None = None,
) -> dict[str, np.ndarray]:
  """Render the aligned views of one face.

  Args:
    attrs: ``{name: code}`` (int or vocabulary string) for every attribute.
    height, width: output size in pixels, each in [16, 256].
    rng: jitter source (Generator, int seed, a :class:`Jitter`, or None for none).
    supersample: drawing resolution factor (default 4, or 2 above 128 px).

  Returns:
    ``image`` uint8 [H,W,3], ``label_map`` uint8 [H,W] (ids in :data:`LABELS`),
    ``edges`` uint8 [H,W] (255 background, 0 lines).
  """
  image, label_map, part_map = _render(attrs, height, width, rng, supersample)
  return {"image": image, "label_map": label_map, "edges": edge_map(part_map)}


def render_face(
  attrs: Mapping[str, Any],
  *,
  height: int = 64,
  width: int = 64,
  rng: np.random.Generator | int | Jitter | None = None,
  supersample: int | None = None,
) -> np.ndarray:
  """Render one face: uint8 [height, width, 3]."""
  return _render(attrs, height, width, rng, supersample, label_map=False, part_map=False)[0]


def render_label_map(
  attrs: Mapping[str, Any],
  *,
  height: int = 64,
  width: int = 64,
  rng: np.random.Generator | int | Jitter | None = None,
  supersample: int | None = None,
) -> np.ndarray:
  """Segmentation of the face rendered with the same arguments: uint8 [H, W].

  Label ids index :data:`LABELS`; colourise with :func:`colorize_label_map`.
  Pass an equal ``rng`` (same seed / same Generator state / same :class:`Jitter`)
  as to :func:`render_face` to get a pixel-aligned map.
  """
  return _render(attrs, height, width, rng, supersample, part_map=False)[1]


def colorize_label_map(label_map: np.ndarray) -> np.ndarray:
  """Label ids [...] -> RGB uint8 [..., 3] using :data:`LABEL_PALETTE`."""
  return LABEL_PALETTE[np.asarray(label_map)]


def edge_map(x: np.ndarray, *, rgb: bool = False, threshold: float = 40.0) -> np.ndarray:
  """Edge drawing: white (255) background, black (0) one-pixel lines.

  ``x`` is either an integer label/part map [H, W] (lines at label boundaries) or an
  RGB image [H, W, 3] (lines where the colour jumps by more than ``threshold``,
  sum of absolute channel differences).  A pixel is an edge if it differs from its
  right or lower neighbour.  Returns uint8 [H, W], or [H, W, 3] when ``rgb``.
  """
  x = np.asarray(x)
  if x.ndim == 2:
    dx = x[:, 1:] != x[:, :-1]
    dy = x[1:, :] != x[:-1, :]
  elif x.ndim == 3:
    f = x.astype(np.float32)
    dx = np.abs(f[:, 1:] - f[:, :-1]).sum(-1) > threshold
    dy = np.abs(f[1:, :] - f[:-1, :]).sum(-1) > threshold
  else:
    raise ValueError(f"expected [H,W] or [H,W,3], got shape {x.shape}")
  edge = np.zeros(x.shape[:2], bool)
  edge[:, :-1] |= dx
  edge[:-1, :] |= dy
  out = np.where(edge, 0, 255).astype(np.uint8)
  return np.repeat(out[..., None], 3, axis=-1) if rgb else out


# ---------------------------------------------------------------------------
# Captions.
# ---------------------------------------------------------------------------

_HAIR_PHRASES = {
  0: ("a bald head with {c} hair on the sides", "a bald head and a little {c} hair above the ears"),
  1: ("short {c} hair", "{c} hair cut short"),
  2: ("long {c} hair", "{c} hair down to the shoulders"),
  3: ("{c} hair in a bun", "{c} hair tied up in a bun"),
  4: ("curly {c} hair", "a mop of curly {c} hair"),
}
_PHRASES = {
  "face_shape": (
    ("a round face", "a round-shaped face"),
    ("an oval face", "an oval-shaped face"),
    ("a square face", "a square jaw and a square face"),
  ),
  "skin_tone": tuple((f"{t} skin", f"a {t} skin tone") for t in ATTRIBUTES["skin_tone"]),
  "eyes": (("open eyes", "eyes wide open"), ("closed eyes", "eyes closed")),
  "mouth": (
    ("a closed mouth", "mouth closed"),
    ("a big smile", "a smiling mouth"),
    ("an open mouth", "mouth wide open"),
  ),
  "glasses": (
    ("no glasses", "no glasses on"),
    ("round glasses", "round-rimmed glasses"),
    ("square glasses", "square-framed glasses"),
  ),
}
_NOUNS = ("person", "character", "cartoon person", "figure")
_BG_TAILS = (" on a {c} background", " against a {c} background", " in front of a {c} backdrop")


def _join(items: Sequence[str]) -> str:
  items = list(items)
  if len(items) == 1:
    return items[0]
  return ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def caption(
  attrs: Mapping[str, Any],
  rng: np.random.Generator | int | None = None,
  *,
  all_attributes: bool = True,
) -> str:
  """English description of ``attrs`` with varied templates and word order.

  With ``all_attributes`` (default) every attribute is mentioned; otherwise a
  random non-empty subset is.  Deterministic for a given ``rng`` state.
  """
  return describe(attrs, rng, all_attributes=all_attributes)[0]


def describe(
  attrs: Mapping[str, Any],
  rng: np.random.Generator | int | None = None,
  *,
  all_attributes: bool = True,
) -> tuple[str, tuple[str, ...]]:
  """:func:`caption` and the names of the attributes it mentions (schema order)."""
  a = _attr_codes(attrs)
  if not isinstance(rng, np.random.Generator):
    rng = np.random.default_rng(0 if rng is None else rng)
  names = list(ATTRIBUTE_NAMES)
  if not all_attributes:
    k = int(rng.integers(1, len(names) + 1))
    names = [names[i] for i in sorted(rng.choice(len(names), size=k, replace=False))]

  def pick(options):
    return options[int(rng.integers(len(options)))]

  hair_c = ATTRIBUTES["hair_color"][a["hair_color"]]
  bg_c = ATTRIBUTES["background_color"][a["background_color"]]
  adjectives, phrases, bg = [], [], None
  want_hair = "hair_style" in names or "hair_color" in names
  for name in names:
    v = a[name]
    if name == "background_color":
      bg = bg_c
    elif name in ("hair_style", "hair_color"):
      continue
    elif name == "mouth" and v == 1 and rng.random() < 0.5:
      adjectives.append("smiling")
    else:
      phrases.append(pick(_PHRASES[name][v]))
  if want_hair:
    if "hair_style" in names:
      if a["hair_style"] == 0 and "hair_color" not in names:
        if rng.random() < 0.5:
          adjectives.append("bald")
        else:
          phrases.append("a bald head")
      else:
        p = pick(_HAIR_PHRASES[a["hair_style"]])
        if "hair_color" not in names:
          p = p.replace(" {c}", "").replace("{c} ", "")
        phrases.append(p.format(c=hair_c))
    else:
      phrases.append(f"{hair_c} hair")
  order = rng.permutation(len(phrases))
  phrases = [phrases[i] for i in order]
  noun = pick(_NOUNS)
  subject = " ".join(adjectives + [noun])
  template = int(rng.integers(4))
  bg_tail = pick(_BG_TAILS).format(c=bg) if bg else ""
  if template == 0 or not phrases:
    text = f"{_article(subject)} {subject}"
    if phrases:
      text += f" with {_join(phrases)}"
    text += bg_tail + "."
  elif template == 1:
    text = f"This {subject} has {_join(phrases)}."
    if bg:
      text += f" The background is {bg}."
  elif template == 2:
    text = f"A portrait of {_article(subject)} {subject} with {_join(phrases)}{bg_tail}."
  else:
    lead = f"On a {bg} background, " if bg and rng.random() < 0.5 else ""
    text = f"{lead}{_article(subject)} {subject} with {_join(phrases)}."
    if bg and not lead:
      text = text[:-1] + bg_tail + "."
  return text[0].upper() + text[1:], tuple(n for n in ATTRIBUTE_NAMES if n in names)


# ---------------------------------------------------------------------------
# Datasets.
# ---------------------------------------------------------------------------


def _example_rngs(seed: int, split: str | None, index: int) -> tuple[np.random.Generator, ...]:
  if split not in _SPLIT_IDS:
    raise ValueError(f"split must be one of {SPLITS} (or None), got {split!r}")
  if seed < 0 or index < 0:
    raise ValueError("seed and index must be non-negative")
  ss = np.random.SeedSequence([_MAGIC, int(seed), _SPLIT_IDS[split], int(index)])
  return tuple(np.random.default_rng(s) for s in ss.spawn(3))


def example_attributes(index: int, *, seed: int = 0, split: str | None = None) -> dict[str, int]:
  """The ``attributes`` of :func:`make_example` without drawing the face."""
  r_attr = _example_rngs(seed, split, index)[0]
  return {k: int(v[0]) for k, v in sample_attributes(r_attr, 1).items()}


#: What :func:`make_example` can make besides the attributes.
VIEWS = ("image", "label_map", "edges", "caption")


def make_example(
  index: int,
  *,
  seed: int = 0,
  split: str | None = None,
  height: int = 64,
  width: int = 64,
  all_attributes: bool = True,
  views: Sequence[str] = ("image", "label_map", "edges", "caption"),
) -> dict[str, Any]:
  """Example ``index`` of the stream ``(seed, split)``: a pure function of its arguments.

  Returns ``image`` uint8 [H,W,3], ``label_map`` uint8 [H,W], ``edges`` uint8 [H,W,3],
  ``caption`` str and ``attributes`` ``{name: int}``. ``views`` picks which of the first
  four to make (each map costs about as much as the image, the caption a tenth of it);
  ``attributes`` always come. A view is the same whichever others are made with it.
  """
  unknown = set(views) - set(VIEWS)
  if unknown:
    raise ValueError(f"unknown views {sorted(unknown)}: choose from {', '.join(VIEWS)}")
  r_attr, r_jit, r_cap = _example_rngs(seed, split, index)
  attrs = {k: int(v[0]) for k, v in sample_attributes(r_attr, 1).items()}
  ex: dict[str, Any] = {}
  if {"image", "label_map", "edges"} & set(views):
    image, label_map, part_map = _render(
      attrs, height, width, r_jit, None, label_map="label_map" in views, part_map="edges" in views
    )
    if "image" in views:
      ex["image"] = image
    if label_map is not None:
      ex["label_map"] = label_map
    if part_map is not None:
      ex["edges"] = np.repeat(edge_map(part_map)[..., None], 3, axis=-1)
  if "caption" in views:
    ex["caption"] = caption(attrs, r_cap, all_attributes=all_attributes)
  ex["attributes"] = attrs
  return ex


def face_image(
  index: int, *, seed: int = 0, split: str | None = None, height: int = 64, width: int = 64
) -> np.ndarray:
  """``make_example(...)['image']`` alone: uint8 ``[height, width, 3]``. A module-level
  function, so worker processes can draw with it (:class:`zoo.data.stream.Memo`)."""
  return make_example(
    int(index), seed=seed, split=split, height=height, width=width, views=("image",)
  )["image"]


def make_faces(
  n: int,
  *,
  seed: int = 0,
  height: int = 64,
  width: int = 64,
  start: int = 0,
  split: str | None = None,
  all_attributes: bool = True,
) -> dict[str, Any]:
  """Examples ``start .. start+n-1`` of the stream ``(seed, split)``, stacked.

  Returns ``image`` uint8 [n,H,W,3], ``label_map`` uint8 [n,H,W], ``edges`` uint8
  [n,H,W,3] (white background, black lines), ``attributes`` ``{name: int64[n]}``,
  ``captions`` list[str].
  """
  _check_size(height, width)
  image = np.empty((n, height, width, 3), np.uint8)
  label_map = np.empty((n, height, width), np.uint8)
  edges = np.empty((n, height, width, 3), np.uint8)
  attributes = {name: np.empty((n,), np.int64) for name in ATTRIBUTE_NAMES}
  captions = []
  for i in range(n):
    ex = make_example(
      start + i, seed=seed, split=split, height=height, width=width, all_attributes=all_attributes
    )
    image[i], label_map[i], edges[i] = ex["image"], ex["label_map"], ex["edges"]
    for name in ATTRIBUTE_NAMES:
      attributes[name][i] = ex["attributes"][name]
    captions.append(ex["caption"])
  return {
    "image": image,
    "label_map": label_map,
    "edges": edges,
    "attributes": attributes,
    "captions": captions,
  }


def face_split(
  split: str,
  n: int,
  seed: int = 0,
  *,
  height: int = 64,
  width: int = 64,
  start: int = 0,
  all_attributes: bool = True,
) -> dict[str, Any]:
  """First ``n`` (from ``start``) faces of ``split`` in {'train', 'valid', 'test'}.

  Splits use disjoint seed streams (``SeedSequence([magic, seed, split_id, index])``),
  so they never share an example stream.  Same layout as :func:`make_faces`.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  return make_faces(
    n,
    seed=seed,
    height=height,
    width=width,
    start=start,
    split=split,
    all_attributes=all_attributes,
  )


def one_hot_attributes(attrs: Mapping[str, Any]) -> np.ndarray:
  """``{name: int[...]}`` -> float32 [..., sum(ATTRIBUTE_SIZES)] concatenated one-hots."""
  parts = []
  for name, vocab in ATTRIBUTES.items():
    v = np.asarray(attrs[name])
    parts.append(np.eye(len(vocab), dtype=np.float32)[v])
  return np.concatenate(parts, axis=-1)


def attribute_names_of(attrs: Mapping[str, Any]) -> dict[str, str]:
  """``{name: code}`` -> ``{name: vocabulary word}`` for one example."""
  return {name: ATTRIBUTES[name][int(np.asarray(attrs[name]))] for name in ATTRIBUTE_NAMES}


def image_grid(images: np.ndarray, cols: int = 8, pad: int = 0) -> np.ndarray:
  """Tile uint8 images [n,H,W] or [n,H,W,C] into one [rows*H, cols*W(, C)] array."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, ch = images.shape
  rows = -(-n // cols)
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, ch), 255, np.uint8)
  for i in range(n):
    r, c = divmod(i, cols)
    y, x = pad + r * (h + pad), pad + c * (w + pad)
    out[y : y + h, x : x + w] = images[i]
  return out[..., 0] if ch == 1 else out


def save_preview(
  path: str,
  *,
  n: int = 64,
  height: int = 64,
  width: int = 64,
  seed: int = 0,
  cols: int = 8,
  upscale: int = 1,
) -> None:
  """Write an image / label-map / edges contact sheet PNG and ``<path>.txt`` captions."""
  d = make_faces(n, seed=seed, height=height, width=width)
  sheets = [
    image_grid(d["image"], cols, pad=2),
    image_grid(colorize_label_map(d["label_map"]), cols, pad=2),
    image_grid(d["edges"], cols, pad=2),
  ]
  grid = np.concatenate(sheets, axis=0)
  img = Image.fromarray(grid)
  if upscale > 1:
    img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
  img.save(path)
  with open(str(path) + ".txt", "w") as f:
    for i, text in enumerate(d["captions"]):
      names = attribute_names_of({k: v[i] for k, v in d["attributes"].items()})
      f.write(f"[{i // cols},{i % cols}] {text}\n    {names}\n")
