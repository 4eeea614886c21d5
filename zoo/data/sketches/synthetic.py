"""Embedded procedural sketch dataset (no download needed).

``make_synthetic_sketches`` draws simple doodles of a few shape classes
and returns them in the same format as the sketch-rnn ``.npz`` files:
``{"train": [...], "valid": [...], "test": [...]}`` where every sketch is
an int16 stroke-3 array ``[n, 3]`` of ``(dx, dy, pen_lift)``.

Classes (``SYNTHETIC_CLASSES``; label = index in the ``classes`` argument):

* ``circle``   -- a closed loop; 35 % are two concentric circles (2 strokes).
* ``square``   -- a closed square; 40 % also get a cross through the
  diagonals (3 strokes).
* ``triangle`` -- a closed triangle with perturbed corners.
* ``spiral``   -- a 2 to 3.5 turn spiral, clockwise or counter-clockwise.
* ``star``     -- a closed five-pointed star.

Each sketch gets a random size (radius 25-60 units), rotation (any angle
for round shapes, +-0.5 rad for squares/triangles), independent x/y
stretch, position jitter (the first offset from the origin), Gaussian
point noise (sigma 1 unit) and integer rounding of absolute positions;
consecutive duplicate points are removed.  Lengths are about 17-100 points
(offset std about 9 units), so a small Sketch-RNN learns the classes within
minutes on a couple of CPU cores.

Every sketch is drawn from its own generator seeded by ``(seed, split,
index)``, so the output is a pure function of the arguments and e.g. the
validation set does not change when ``num_train`` does.  Generating the
default 2000/200/200 split takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SYNTHETIC_CLASSES", "make_synthetic_sketches", "draw_shape"]

SYNTHETIC_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "spiral", "star")
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}


def _segment(a, b, n: int) -> np.ndarray:
  """``n`` points from ``a`` (inclusive) towards ``b`` (exclusive)."""
  t = np.arange(n, dtype=np.float64)[:, None] / n
  return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def _polygon(vertices: np.ndarray, per_side: Sequence[int]) -> np.ndarray:
  pts = [
    _segment(vertices[i], vertices[(i + 1) % len(vertices)], per_side[i])
    for i in range(len(vertices))
  ]
  return np.concatenate(pts + [vertices[:1]])  # closed: end where we started


def _circle(rng, radius: float, n: int) -> np.ndarray:
  a0 = rng.uniform(0, 2 * np.pi)
  direction = rng.choice([-1.0, 1.0])
  a = a0 + direction * np.linspace(0, 2 * np.pi, n + 1)
  return radius * np.column_stack([np.cos(a), np.sin(a)])


def draw_shape(name: str, rng: np.random.Generator) -> list[np.ndarray]:
  """Unit-size strokes (list of ``[k, 2]`` absolute float polylines) for one shape class."""
  if name == "circle":
    strokes = [_circle(rng, 1.0, int(rng.integers(20, 45)))]
    if rng.random() < 0.35:
      strokes.append(_circle(rng, rng.uniform(0.45, 0.7), int(rng.integers(14, 30))))
    return strokes
  if name == "square":
    v = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    v = np.roll(v, int(rng.integers(4)), axis=0)
    strokes = [_polygon(v, rng.integers(4, 11, size=4))]
    if rng.random() < 0.4:
      for a, b in ((v[0], v[2]), (v[1], v[3])):
        k = int(rng.integers(4, 9))
        strokes.append(np.concatenate([_segment(a, b, k), b[None]]))
    return strokes
  if name == "triangle":
    ang = np.pi / 2 + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.normal(0, 0.12, 3)
    v = np.column_stack([np.cos(ang), np.sin(ang)])
    v = np.roll(v, int(rng.integers(3)), axis=0)
    return [_polygon(v, rng.integers(6, 14, size=3))]
  if name == "spiral":
    turns = rng.uniform(2.0, 3.5)
    n = int(rng.integers(40, 100))
    t = np.linspace(0, 1, n)
    a = rng.uniform(0, 2 * np.pi) + rng.choice([-1.0, 1.0]) * 2 * np.pi * turns * t
    r = 0.08 + 0.92 * t
    pts = np.column_stack([r * np.cos(a), r * np.sin(a)])
    return [pts[::-1] if rng.random() < 0.5 else pts]
  if name == "star":
    inner = rng.uniform(0.36, 0.5)
    ang = rng.uniform(0, 2 * np.pi) + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    v = np.column_stack([rad * np.cos(ang), rad * np.sin(ang)])
    return [_polygon(v, rng.integers(2, 5, size=10))]
  raise ValueError(f"unknown synthetic sketch class {name!r}; choose from {SYNTHETIC_CLASSES}")


def _to_stroke3(strokes: list[np.ndarray]) -> np.ndarray:
  rows = []
  last = np.zeros(2, np.int64)
  for line in strokes:
    pts = np.round(line).astype(np.int64)
    keep = np.ones(len(pts), bool)
    keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)  # drop consecutive duplicates
    pts = pts[keep]
    d = np.diff(np.concatenate([last[None], pts]), axis=0)
    pen = np.zeros((len(pts), 1), np.int64)
    pen[-1] = 1
    rows.append(np.concatenate([d, pen], axis=1))
    last = pts[-1]
  return np.concatenate(rows).astype(np.int16)


def _make_one(name: str, rng: np.random.Generator) -> np.ndarray:
  strokes = draw_shape(name, rng)
  radius = rng.uniform(25.0, 60.0)
  if name in ("square", "triangle"):
    theta = rng.uniform(-0.5, 0.5)
  else:
    theta = rng.uniform(0, 2 * np.pi)
  c, s = np.cos(theta), np.sin(theta)
  rot = np.array([[c, -s], [s, c]])
  stretch = rng.uniform(0.85, 1.15, size=2)
  shift = rng.normal(0.0, 10.0, size=2)
  out = []
  for line in strokes:
    p = (line @ rot.T) * stretch * radius + shift
    p = p + rng.normal(0.0, 1.0, size=p.shape)
    out.append(p)
  return _to_stroke3(out)


def make_synthetic_sketches(
  *,
  seed: int = 0,
  num_train: int = 2000,
  num_valid: int = 200,
  num_test: int = 200,
  classes: Sequence[str] = SYNTHETIC_CLASSES,
  return_labels: bool = False,
):
  """Generate the embedded synthetic dataset.

  Returns ``{"train", "valid", "test"} -> list of int16 [n, 3]`` stroke-3
  arrays; with ``return_labels=True`` returns ``(splits, labels)`` where
  ``labels[split]`` is an int32 array of indices into ``classes``.
  Classes are balanced within each split (round-robin, then shuffled).
  """
  classes = tuple(classes)
  if not classes:
    raise ValueError("classes must not be empty")
  for name in classes:
    if name not in SYNTHETIC_CLASSES:
      raise ValueError(f"unknown synthetic sketch class {name!r}; choose from {SYNTHETIC_CLASSES}")
  splits: dict[str, list[np.ndarray]] = {}
  labels: dict[str, np.ndarray] = {}
  for split, n in (("train", num_train), ("valid", num_valid), ("test", num_test)):
    if n < 0:
      raise ValueError(f"num_{split} must be >= 0")
    sid = _SPLIT_IDS[split]
    lab = np.arange(n, dtype=np.int32) % len(classes)
    np.random.default_rng([seed, sid, 0xC1A55]).shuffle(lab)
    splits[split] = [
      _make_one(classes[lab[i]], np.random.default_rng([seed, sid, i])) for i in range(n)
    ]
    labels[split] = lab
  return (splits, labels) if return_labels else splits
