"""Files a person looks at: SVG, PNG grids, animated GIFs and sketch-rnn-js JSON.

All functions take stroke-3 sketches (``[n, 3]`` rows ``(dx, dy, pen_lift)``, see
:mod:`zoo.data.sketches.strokes`) in any units: drawings are scaled to fit their cell.

* :func:`write_svg` / :func:`write_grid_svg`: vector images (``strokes.to_svg`` /
  ``strokes.grid_svg``).
* :func:`render` / :func:`grid_image` / :func:`write_grid_png`: Pillow rasters;
  a grid lays sketches out row by row (samples, interpolation rows, completion
  candidates) and can draw the first ``highlight[i]`` points of sketch ``i`` in
  an accent colour (e.g. the user's prefix in a completion) and colour whole
  cells (e.g. the two inputs of an interpolation).
* :func:`write_gif`: an animated GIF of the sketch being drawn, one frame per
  point (subsampled to ``max_frames``) with a red pen tip, then the finished
  drawing held for ``hold_ms``.
* :func:`to_js_strokes` / :func:`write_json` / :func:`read_json`: the stroke-5
  JSON rows that sketch-rnn-js (``@magenta/sketch``) uses, ``[dx, dy, p0, p1,
  p2]`` without a start token and ending with the end row ``[0, 0, 0, 0, 1]``
  (what its ``linesToStrokes`` returns); ``p0`` = pen stays down after this
  point, ``p1`` = pen lifts after it, ``p2`` = drawing finished. A file holds
  one sketch (a list of rows) or several (a list of such lists).
  :func:`read_json` also accepts stroke-3 rows ``[dx, dy, pen_lift]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.data.sketches import strokes as S
from zoo.errors import ZooError

__all__ = [
  "SketchFormatError",
  "write_svg",
  "write_grid_svg",
  "render",
  "grid_image",
  "write_grid_png",
  "gif_frames",
  "write_gif",
  "to_js_strokes",
  "from_js_strokes",
  "write_json",
  "read_json",
]

INK = (0, 0, 0)
ACCENT = (30, 90, 220)
PEN_TIP = (220, 30, 30)
GRID_LINE = (215, 215, 215)
PAPER = (255, 255, 255)


class SketchFormatError(ZooError, ValueError):
  """A sketch or sketch file has the wrong structure (one-line message)."""


def _stroke3(sketch, where: str = "sketch") -> np.ndarray:
  try:
    arr = np.asarray(sketch, dtype=np.float64)
  except (TypeError, ValueError):
    raise SketchFormatError(f"{where} is not a numeric [n, 3] array") from None
  if arr.ndim != 2 or arr.shape[1] != 3:
    raise SketchFormatError(f"{where} has shape {arr.shape}, expected a stroke-3 array [n, 3]")
  if not np.isfinite(arr).all():
    raise SketchFormatError(f"{where} contains non-finite values (NaN or inf)")
  return arr


# ---------------------------------------------------------------------------
# SVG
# ---------------------------------------------------------------------------


def write_svg(sketch, path: str | Path, *, size: int = 256, stroke_width: float = 2.0) -> Path:
  """One sketch as an SVG file (``size x size``); returns the path."""
  S.to_svg(_stroke3(sketch), path, size=size, stroke_width=stroke_width)
  return Path(path)


def write_grid_svg(
  sketches: Sequence, path: str | Path, *, ncols: int | None = None, cell_size: int = 128
) -> Path:
  """Several sketches on one SVG grid (``ncols`` default: a square-ish layout)."""
  sketches = [_stroke3(s, f"sketch {i}") for i, s in enumerate(sketches)]
  ncols = ncols or max(1, math.ceil(math.sqrt(len(sketches))))
  S.grid_svg(sketches, ncols=ncols, path=path, cell_size=cell_size)
  return Path(path)


# ---------------------------------------------------------------------------
# Raster (Pillow)
# ---------------------------------------------------------------------------


class _Frame:
  """Maps a sketch's absolute coordinates into a ``size x size`` cell (fixed for all frames)."""

  def __init__(self, sketch: np.ndarray, size: int, margin: float):
    self.size = size
    if len(sketch):
      min_x, max_x, min_y, max_y = S.bounds(sketch)
    else:
      min_x = max_x = min_y = max_y = 0.0
    span = max(max_x - min_x, max_y - min_y, 1e-9)
    self.k = max(size - 2 * margin, 1e-9) / span
    self.cx, self.cy = (min_x + max_x) / 2, (min_y + max_y) / 2

  def __call__(self, x: float, y: float) -> tuple[float, float]:
    return ((x - self.cx) * self.k + self.size / 2, (y - self.cy) * self.k + self.size / 2)


def _points(sketch: np.ndarray) -> np.ndarray:
  """Absolute positions of every point (the pen starts at the origin)."""
  return np.cumsum(sketch[:, :2], axis=0) if len(sketch) else np.zeros((0, 2))


def _draw_points(
  draw,
  sketch: np.ndarray,
  frame: _Frame,
  start: int,
  stop: int,
  *,
  width: int,
  highlight: int = 0,
  color=INK,
  accent=ACCENT,
) -> None:
  """Draws points ``start .. stop-1`` (their segments); points ``< highlight`` in ``accent``.

  Point ``j`` connects to point ``j-1`` unless the pen lifted after ``j-1``; a
  stroke of one point is drawn as a dot.
  """
  pts = _points(sketch)
  r = max(width / 2.0, 0.75)
  for j in range(max(start, 0), min(stop, len(sketch))):
    col = accent if j < highlight else color
    x1, y1 = frame(*pts[j])
    if j > 0 and sketch[j - 1, 2] <= 0.5:  # continues a stroke
      x0, y0 = frame(*pts[j - 1])
      draw.line([(x0, y0), (x1, y1)], fill=col, width=width)
      if width > 2:  # round joints
        draw.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], fill=col)
    elif width > 2 or sketch[j, 2] > 0.5 or j == len(sketch) - 1:
      draw.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], fill=col)  # stroke start / lone dot


def render(
  sketch,
  size: int = 128,
  *,
  stroke_width: int = 2,
  highlight: int = 0,
  color=INK,
  accent=ACCENT,
  background=PAPER,
  margin: float | None = None,
):
  """One sketch -> ``PIL.Image`` (RGB, ``size x size``), scaled to fit and centred."""
  from PIL import Image, ImageDraw

  sk = _stroke3(sketch)
  margin = 0.08 * size + stroke_width if margin is None else margin
  img = Image.new("RGB", (size, size), background)
  _draw_points(
    ImageDraw.Draw(img),
    sk,
    _Frame(sk, size, margin),
    0,
    len(sk),
    width=stroke_width,
    highlight=highlight,
    color=color,
    accent=accent,
  )
  return img


def grid_image(
  sketches: Sequence,
  *,
  ncols: int | None = None,
  cell_size: int = 128,
  stroke_width: int = 2,
  highlight: Sequence[int] | None = None,
  colors: Sequence | None = None,
):
  """Sketches on a grid -> ``PIL.Image`` of ``(ncols * cell, nrows * cell)`` pixels.

  ``ncols`` defaults to a square-ish layout; pass ``ncols=len(sketches)`` for one
  row. ``highlight[i]``: leading points of sketch ``i`` drawn in the accent
  colour; ``colors[i]``: ink colour of sketch ``i`` (RGB tuple or None).
  """
  from PIL import Image, ImageDraw

  n = len(sketches)
  ncols = ncols or max(1, math.ceil(math.sqrt(max(n, 1))))
  nrows = max(1, math.ceil(n / ncols))
  img = Image.new("RGB", (ncols * cell_size, nrows * cell_size), PAPER)
  for i, sk in enumerate(sketches):
    r, c = divmod(i, ncols)
    cell = render(
      sk,
      cell_size,
      stroke_width=stroke_width,
      highlight=int(highlight[i]) if highlight is not None else 0,
      color=(colors[i] if colors is not None and colors[i] is not None else INK),
    )
    img.paste(cell, (c * cell_size, r * cell_size))
  draw = ImageDraw.Draw(img)
  for c in range(1, ncols):
    draw.line([(c * cell_size, 0), (c * cell_size, nrows * cell_size)], fill=GRID_LINE)
  for r in range(1, nrows):
    draw.line([(0, r * cell_size), (ncols * cell_size, r * cell_size)], fill=GRID_LINE)
  return img


def write_grid_png(sketches: Sequence, path: str | Path, **kw) -> Path:
  """:func:`grid_image` saved as PNG; returns the path."""
  grid_image(sketches, **kw).save(path, format="PNG")
  return Path(path)


def gif_frames(
  sketch, *, size: int = 256, stroke_width: int = 3, max_frames: int = 100, highlight: int = 0
) -> list:
  """Frames of ``sketch`` being drawn: first ``k`` points for increasing ``k``, pen tip in red.

  ``k`` runs over at most ``max_frames`` values spread evenly over ``1..n``; the
  last frame is the finished drawing without the pen tip. Frames identical to
  the one before (e.g. the pen moving with zero offset) are dropped, so every
  frame differs from the previous one.
  """
  from PIL import Image, ImageDraw

  sk = _stroke3(sketch)
  margin = 0.06 * size + stroke_width
  frame = _Frame(sk, size, margin)
  pts = _points(sk)
  n = len(sk)
  ks = np.unique(np.round(np.linspace(1, n, min(max_frames, n))).astype(int)).tolist() if n else []
  base = Image.new("RGB", (size, size), PAPER)
  base_draw = ImageDraw.Draw(base)
  frames, prev, drawn = [], None, 0
  r = max(stroke_width, 2)
  for k in ks + [None]:  # None: the finished drawing
    stop = n if k is None else k
    _draw_points(base_draw, sk, frame, drawn, stop, width=stroke_width, highlight=highlight)
    drawn = stop
    img = base.copy()
    if k is not None:
      x, y = frame(*pts[k - 1])
      ImageDraw.Draw(img).ellipse([x - r, y - r, x + r, y + r], fill=PEN_TIP)
    data = img.tobytes()
    if data != prev:
      frames.append(img)
      prev = data
  return frames


def write_gif(
  sketch,
  path: str | Path,
  *,
  size: int = 256,
  stroke_width: int = 3,
  max_frames: int = 100,
  frame_ms: int = 40,
  hold_ms: int = 1500,
  loop: int = 0,
  highlight: int = 0,
) -> int:
  """Animated GIF of ``sketch`` being drawn (see :func:`gif_frames`); returns the frame count."""
  frames = gif_frames(
    sketch, size=size, stroke_width=stroke_width, max_frames=max_frames, highlight=highlight
  )
  durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
  frames[0].save(
    path,
    format="GIF",
    save_all=True,
    append_images=frames[1:],
    duration=durations,
    loop=loop,
    disposal=1,
    optimize=False,
  )
  return len(frames)


# ---------------------------------------------------------------------------
# JSON (sketch-rnn-js stroke-5)
# ---------------------------------------------------------------------------


def _num(v: float, decimals: int | None):
  v = float(v)
  if decimals is not None:
    v = round(v, decimals)
  return int(v) if v.is_integer() else v


def to_js_strokes(sketch, *, decimals: int | None = 3) -> list[list]:
  """stroke-3 -> sketch-rnn-js stroke-5 rows ``[[dx, dy, p0, p1, p2], ..., [0, 0, 0, 0, 1]]``.

  No start token; the last row is the end-of-drawing row. Offsets are rounded
  to ``decimals`` (``None``: exact float values); integral values are written as
  JSON integers.
  """
  sk = _stroke3(sketch)
  rows = [
    [_num(dx, decimals), _num(dy, decimals), 0 if p > 0.5 else 1, 1 if p > 0.5 else 0, 0]
    for dx, dy, p in sk
  ]
  rows.append([0, 0, 0, 0, 1])
  return rows


def from_js_strokes(rows, where: str = "sketch") -> np.ndarray:
  """sketch-rnn-js stroke-5 rows (or stroke-3 rows) -> stroke-3 ``float32 [n, 3]``.

  stroke-5 rows stop at the first row with ``p2 = 1``; each row's pen state must
  be one-hot. stroke-3 rows need ``pen_lift`` in {0, 1}.
  """
  try:
    arr = np.asarray(rows, dtype=np.float64)
  except (TypeError, ValueError):
    raise SketchFormatError(f"{where}: rows are not a rectangular list of numbers") from None
  if arr.ndim != 2 or arr.shape[1] not in (3, 5):
    raise SketchFormatError(
      f"{where}: expected rows of 5 ([dx, dy, p0, p1, p2]) or 3 ([dx, dy, pen_lift]) numbers, "
      f"got shape {arr.shape}"
    )
  if not np.isfinite(arr).all():
    raise SketchFormatError(f"{where}: contains non-finite values")
  if arr.shape[1] == 3:
    if not np.all((arr[:, 2] == 0) | (arr[:, 2] == 1)):
      raise SketchFormatError(f"{where}: pen_lift values must be 0 or 1")
    return arr.astype(np.float32)
  pen = arr[:, 2:]
  if not (np.all((pen == 0) | (pen == 1)) and np.all(pen.sum(axis=1) == 1)):
    raise SketchFormatError(f"{where}: pen states [p0, p1, p2] must be one-hot")
  return S.to_stroke3(arr.astype(np.float32), has_start_token=False)


def write_json(sketches, path: str | Path, *, decimals: int | None = 3) -> Path:
  """Writes one sketch (a stroke-3 array) or a list of sketches as sketch-rnn-js JSON.

  A single array gives a list of rows; a list of arrays gives a list of lists.
  """
  single = (isinstance(sketches, np.ndarray) and sketches.ndim == 2) or (
    isinstance(sketches, (list, tuple)) and len(sketches) > 0 and np.ndim(sketches[0]) == 1
  )
  data = (
    to_js_strokes(sketches, decimals=decimals)
    if single
    else [to_js_strokes(s, decimals=decimals) for s in sketches]
  )
  Path(path).write_text(json.dumps(data, separators=(",", ":")) + "\n")
  return Path(path)


def _depth(x) -> int:
  d = 0
  while isinstance(x, list):
    if not x:
      return d + 1
    x = x[0]
    d += 1
  return d


def read_json(path: str | Path) -> list[np.ndarray]:
  """Reads a file written by :func:`write_json` (or hand-made) -> list of stroke-3 arrays.

  Accepts one sketch (a list of stroke-5 or stroke-3 rows) or a list of sketches.
  """
  path = Path(path)
  if not path.is_file():
    raise SketchFormatError(f"{path}: no such file")
  try:
    data = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise SketchFormatError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
  depth = _depth(data)
  if depth == 2:
    return [from_js_strokes(data, str(path))]
  if depth == 3:
    if not data:
      raise SketchFormatError(f"{path}: no sketches")
    return [from_js_strokes(s, f"{path} sketch {i}") for i, s in enumerate(data)]
  raise SketchFormatError(
    f"{path}: expected a list of [dx, dy, p0, p1, p2] (or [dx, dy, pen_lift]) rows, "
    "or a list of such lists"
  )
