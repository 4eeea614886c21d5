"""Stroke-format utilities for Sketch-RNN data (pure numpy + Pillow).

Formats
-------
stroke-3
    ``[n, 3]`` rows ``(dx, dy, pen_lift)``: the offset from the previous
    point and ``pen_lift = 1`` when the pen leaves the paper *after* this
    point (the last point of every stroke, including the last point of the
    sketch).  This is how QuickDraw / sketch-rnn ``.npz`` files store
    drawings (int16).
stroke-5
    ``[max_seq_len + 1, 5]`` rows ``(dx, dy, p1, p2, p3)`` with the one-hot
    pen state ``p1`` = pen stays down, ``p2`` = pen lifts, ``p3`` = end of
    sketch.  Row 0 is the start token ``S0 = (0, 0, 1, 0, 0)``, rows
    ``1..n`` hold the sketch and rows ``n+1..max_seq_len`` are end-padding
    ``(0, 0, 0, 0, 1)``, exactly like magenta's ``DataLoader.pad_batch``.

Randomised helpers take an explicit :class:`numpy.random.Generator` so
results are reproducible under a seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
  "START_TOKEN",
  "PAD_TOKEN",
  "to_stroke5",
  "sketch_to_stroke5",
  "to_stroke3",
  "clean",
  "max_seq_len_of",
  "filter_by_length",
  "normalizing_scale_factor",
  "normalize",
  "random_scale",
  "augment_strokes",
  "to_absolute",
  "bounds",
  "to_svg",
  "grid_svg",
  "to_image",
]

START_TOKEN = np.array([0, 0, 1, 0, 0], dtype=np.float32)
PAD_TOKEN = np.array([0, 0, 0, 0, 1], dtype=np.float32)


def _as_stroke3(sketch, name: str = "sketch") -> np.ndarray:
  arr = np.asarray(sketch)
  if arr.ndim != 2 or arr.shape[1] != 3:
    raise ValueError(f"{name} must be a stroke-3 array of shape [n, 3], got shape {arr.shape}")
  return arr


# ---------------------------------------------------------------------------
# stroke-3 <-> stroke-5
# ---------------------------------------------------------------------------


def sketch_to_stroke5(sketch, max_seq_len: int) -> np.ndarray:
  """One stroke-3 sketch -> ``[max_seq_len + 1, 5]`` float32 (start token + padding)."""
  s = _as_stroke3(sketch)
  n = len(s)
  if n > max_seq_len:
    raise ValueError(f"sketch has {n} points, longer than max_seq_len={max_seq_len}")
  out = np.zeros((max_seq_len + 1, 5), dtype=np.float32)
  out[0] = START_TOKEN
  pen = s[:, 2].astype(np.float32)
  out[1 : n + 1, 0:2] = s[:, 0:2]
  out[1 : n + 1, 2] = 1.0 - pen
  out[1 : n + 1, 3] = pen
  out[n + 1 :, 4] = 1.0
  return out


def to_stroke5(sketches: Sequence[np.ndarray], max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Batch of stroke-3 sketches -> ``(strokes [N, max_seq_len+1, 5] float32, seq_len [N] int32)``.

  ``seq_len`` is the number of sketch points (the start token is not
  counted), as in magenta.  Raises ``ValueError`` if any sketch is longer
  than ``max_seq_len``.
  """
  n = len(sketches)
  out = np.zeros((n, max_seq_len + 1, 5), dtype=np.float32)
  seq_len = np.zeros((n,), dtype=np.int32)
  for i, s in enumerate(sketches):
    try:
      out[i] = sketch_to_stroke5(s, max_seq_len)
    except ValueError as e:
      raise ValueError(f"sketch {i}: {e}") from None
    seq_len[i] = len(s)
  return out, seq_len


def to_stroke3(stroke5_seq, *, has_start_token: bool | None = None) -> np.ndarray:
  """Inverse of :func:`sketch_to_stroke5` for one sequence ``[L, 5]`` -> ``[n, 3]`` float32.

  Stops before the first row whose end flag ``p3`` is set (``> 0.5``).  The
  start token is dropped when ``has_start_token`` is True, or -- with the
  default ``None`` -- when row 0 is exactly ``(0, 0, 1, 0, 0)``.  The pen
  column is ``p2 > 0.5``.
  """
  s = np.asarray(stroke5_seq, dtype=np.float32)
  if s.ndim != 2 or s.shape[1] != 5:
    raise ValueError(f"stroke-5 sequence must have shape [L, 5], got {s.shape}")
  if has_start_token is None:
    has_start_token = len(s) > 0 and bool(np.array_equal(s[0], START_TOKEN))
  if has_start_token:
    s = s[1:]
  ends = np.nonzero(s[:, 4] > 0.5)[0]
  n = int(ends[0]) if len(ends) else len(s)
  out = np.empty((n, 3), dtype=np.float32)
  out[:, 0:2] = s[:n, 0:2]
  out[:, 2] = (s[:n, 3] > 0.5).astype(np.float32)
  return out


# ---------------------------------------------------------------------------
# Preprocessing (magenta DataLoader semantics)
# ---------------------------------------------------------------------------


def clean(sketch, limit: float = 1000) -> np.ndarray:
  """Clamp offsets to ``[-limit, limit]`` (removes huge gaps) and return float32 ``[n, 3]``."""
  s = np.array(_as_stroke3(sketch), dtype=np.float32)
  np.clip(s[:, 0:2], -limit, limit, out=s[:, 0:2])
  return s


def max_seq_len_of(splits) -> int:
  """Longest sketch over all splits (``splits``: a dict of lists or an iterable of lists)."""
  groups = splits.values() if isinstance(splits, dict) else splits
  return max((len(s) for group in groups for s in group), default=0)


def filter_by_length(
  sketches: Iterable[np.ndarray], max_seq_len: int, min_len: int = 1
) -> list[np.ndarray]:
  """Keep sketches with ``min_len <= len <= max_seq_len`` (magenta keeps ``len <= max_seq_len``)."""
  return [s for s in sketches if min_len <= len(s) <= max_seq_len]


def normalizing_scale_factor(train_sketches: Sequence[np.ndarray]) -> float:
  """Standard deviation of every ``dx`` and ``dy`` in the (cleaned) train split.

  Dividing offsets by it gives unit-variance offsets (sketch-rnn paper,
  appendix).  Computed in float64.
  """
  if len(train_sketches) == 0:
    raise ValueError("cannot compute a scale factor from an empty split")
  offsets = np.concatenate(
    [np.asarray(s, dtype=np.float64)[:, 0:2].reshape(-1) for s in train_sketches]
  )
  scale = float(np.std(offsets))
  if not math.isfinite(scale) or scale <= 0:
    raise ValueError(f"degenerate scale factor {scale}: all offsets are identical")
  return scale


def normalize(sketches: Iterable[np.ndarray], scale: float) -> list[np.ndarray]:
  """Return float32 copies with ``dx, dy`` divided by ``scale``."""
  out = []
  for s in sketches:
    t = np.array(s, dtype=np.float32)
    t[:, 0:2] /= scale
    out.append(t)
  return out


# ---------------------------------------------------------------------------
# Augmentation (magenta DataLoader.random_scale / utils.augment_strokes)
# ---------------------------------------------------------------------------


def random_scale(sketch, rng: np.random.Generator, factor: float) -> np.ndarray:
  """Stretch x and y independently by factors drawn uniformly from ``[1 - factor, 1 + factor]``.

  Same draw as magenta: ``(u - 0.5) * 2 * factor + 1`` with ``u ~ U[0, 1)``,
  first for x, then for y.  Returns a float32 copy.
  """
  sx = (rng.random() - 0.5) * 2.0 * factor + 1.0
  sy = (rng.random() - 0.5) * 2.0 * factor + 1.0
  out = np.array(sketch, dtype=np.float32)
  out[:, 0] *= sx
  out[:, 1] *= sy
  return out


def augment_strokes(sketch, prob: float, rng: np.random.Generator) -> np.ndarray:
  """Randomly drop interior pen-down points, preserving the drawing's total offset.

  Reproduces magenta's ``utils.augment_strokes`` rules exactly:

  * a run counter is reset to 0 whenever the current point is a pen-up
    point or the last *kept* point was pen-up (the sketch starts as if
    after a pen-up), and is incremented otherwise;
  * the current point is dropped (with probability ``prob``) only if it is
    pen-down, the last kept point is pen-down and the counter is > 2 --
    so the first three points of the sketch and of every stroke, and every
    pen-up point, are always kept;
  * a dropped point's offset is added to the last kept point (magenta
    mutates the previously appended row), so the sum of offsets -- the
    end position -- is unchanged and later points keep their absolute
    position.

  One uniform number is drawn per point (as magenta does).  Returns a new
  float32 ``[m, 3]`` array (``m <= n``).
  """
  s = np.asarray(_as_stroke3(sketch), dtype=np.float32)
  n = len(s)
  if n == 0:
    return np.zeros((0, 3), dtype=np.float32)
  u = rng.random(n)
  if prob <= 0:
    return s.copy()
  result: list[list[float]] = []
  prev_pen = 1.0  # magenta: prev_stroke = [0, 0, 1]
  count = 0
  for i in range(n):
    dx, dy, pen = float(s[i, 0]), float(s[i, 1]), float(s[i, 2])
    if pen == 1 or prev_pen == 1:
      count = 0
    else:
      count += 1
    if pen == 0 and prev_pen == 0 and count > 2 and u[i] < prob:
      result[-1][0] += dx
      result[-1][1] += dy
    else:
      result.append([dx, dy, pen])
      prev_pen = pen
  return np.asarray(result, dtype=np.float32)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def to_absolute(stroke3) -> list[np.ndarray]:
  """stroke-3 -> list of polylines (float64 ``[k, 2]`` absolute coordinates).

  The pen starts at the origin; each point is drawn at the cumulative sum
  of the offsets up to and including it, and a polyline ends at every
  point with ``pen_lift = 1``.  A trailing stroke without a final pen-up is
  kept.
  """
  s = _as_stroke3(stroke3, "stroke3")
  if len(s) == 0:
    return []
  xy = np.cumsum(np.asarray(s[:, 0:2], dtype=np.float64), axis=0)
  ends = np.nonzero(np.asarray(s[:, 2]) > 0.5)[0]
  lines = []
  start = 0
  for e in ends:
    lines.append(xy[start : e + 1])
    start = int(e) + 1
  if start < len(s):
    lines.append(xy[start:])
  return lines


def bounds(stroke3) -> tuple[float, float, float, float]:
  """``(min_x, max_x, min_y, max_y)`` over the drawn points (zeros for an empty sketch)."""
  lines = to_absolute(stroke3)
  if not lines:
    return (0.0, 0.0, 0.0, 0.0)
  pts = np.concatenate(lines)
  return (
    float(pts[:, 0].min()),
    float(pts[:, 0].max()),
    float(pts[:, 1].min()),
    float(pts[:, 1].max()),
  )


def _fit_lines(stroke3, width: float, height: float, margin: float) -> list[np.ndarray]:
  """Absolute polylines scaled uniformly and centred to fit in a ``width x height`` box."""
  lines = to_absolute(stroke3)
  if not lines:
    return []
  min_x, max_x, min_y, max_y = bounds(stroke3)
  span = max(max_x - min_x, max_y - min_y, 1e-9)
  avail = max(min(width, height) - 2 * margin, 1e-9)
  k = avail / span
  cx, cy = (min_x + max_x) / 2, (min_y + max_y) / 2
  return [
    np.column_stack([(ln[:, 0] - cx) * k + width / 2, (ln[:, 1] - cy) * k + height / 2])
    for ln in lines
  ]


def _svg_group(lines: list[np.ndarray], stroke_width: float, color: str) -> str:
  parts = []
  for ln in lines:
    if len(ln) == 1:  # a dot: zero-length segment drawn with a round cap
      ln = np.concatenate([ln, ln])
    pts = " ".join(f"{x:.2f},{y:.2f}" for x, y in ln)
    parts.append(f'<polyline points="{pts}"/>')
  return (
    f'<g fill="none" stroke="{color}" stroke-width="{stroke_width:g}" '
    f'stroke-linecap="round" stroke-linejoin="round">' + "".join(parts) + "</g>"
  )


def to_svg(
  stroke3,
  path: str | Path | None = None,
  *,
  size: int = 256,
  stroke_width: float = 2.0,
  margin: float | None = None,
  color: str = "black",
  background: str | None = "white",
) -> str:
  """Render one stroke-3 sketch as an SVG document scaled to fit ``size x size``.

  Returns the SVG text and also writes it to ``path`` when given.
  """
  margin = 0.05 * size + stroke_width if margin is None else margin
  lines = _fit_lines(stroke3, size, size, margin)
  body = ""
  if background:
    body += f'<rect width="{size}" height="{size}" fill="{background}"/>'
  body += _svg_group(lines, stroke_width, color)
  svg = (
    f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{size}" height="{size}" '
    f'viewBox="0 0 {size} {size}">{body}</svg>\n'
  )
  if path is not None:
    Path(path).write_text(svg)
  return svg


def grid_svg(
  sketches: Sequence,
  ncols: int = 8,
  path: str | Path | None = None,
  *,
  cell_size: int = 128,
  stroke_width: float = 1.5,
  color: str = "black",
  background: str | None = "white",
) -> str:
  """Lay several stroke-3 sketches out on a grid with ``ncols`` columns; returns SVG text."""
  if ncols < 1:
    raise ValueError("ncols must be >= 1")
  n = len(sketches)
  nrows = max(1, math.ceil(n / ncols))
  w, h = ncols * cell_size, nrows * cell_size
  margin = 0.08 * cell_size + stroke_width
  body = f'<rect width="{w}" height="{h}" fill="{background}"/>' if background else ""
  for i, sk in enumerate(sketches):
    r, c = divmod(i, ncols)
    lines = _fit_lines(sk, cell_size, cell_size, margin)
    body += f'<g transform="translate({c * cell_size},{r * cell_size})">'
    body += _svg_group(lines, stroke_width, color) + "</g>"
  svg = (
    f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" '
    f'viewBox="0 0 {w} {h}">{body}</svg>\n'
  )
  if path is not None:
    Path(path).write_text(svg)
  return svg


def to_image(
  stroke3,
  size: int | tuple[int, int] = 64,
  *,
  stroke_width: int = 1,
  margin: float | None = None,
  invert: bool = False,
) -> np.ndarray:
  """Rasterise one stroke-3 sketch with Pillow -> ``uint8 [H, W]``.

  Black ink (0) on white paper (255); ``invert=True`` gives white ink on
  black.  The drawing is scaled uniformly and centred; ``size`` is an int
  (square) or ``(H, W)``.
  """
  from PIL import Image, ImageDraw

  h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
  margin = 0.05 * min(h, w) + stroke_width if margin is None else margin
  img = Image.new("L", (w, h), 255)
  draw = ImageDraw.Draw(img)
  for ln in _fit_lines(stroke3, w, h, margin):
    pts = [(float(x), float(y)) for x, y in ln]
    if len(pts) == 1:
      x, y = pts[0]
      r = max(stroke_width / 2, 0.5)
      draw.ellipse([x - r, y - r, x + r, y + r], fill=0)
    else:
      draw.line(pts, fill=0, width=stroke_width, joint="curve")
  arr = np.asarray(img, dtype=np.uint8)
  return 255 - arr if invert else arr.copy()
