"""Sketch outputs: SVG, PNG grids, animated GIFs, sketch-rnn-js JSON (no model needed)."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from zoo.data.sketches import export as E
from zoo.errors import ZooError

SQUARE = np.array(
  [[0, 0, 0], [10, 0, 0], [0, 10, 0], [-10, 0, 0], [0, -10, 1], [3, 3, 0], [4, 4, 1]], np.float32
)  # a square, then a diagonal line
TRIANGLE = np.array([[10, 0, 0], [-5, 8, 0], [-5, -8, 1]], np.float32)


def _one_line(e):
  assert isinstance(e.value, ZooError), type(e.value)
  msg = str(e.value)
  assert msg and "\n" not in msg
  return msg


def test_svg_parses(tmp_path):
  p = E.write_svg(SQUARE, tmp_path / "s.svg", size=200)
  root = ET.parse(p).getroot()
  assert root.tag.endswith("svg") and root.get("width") == "200"
  assert len(root.findall(".//{http://www.w3.org/2000/svg}polyline")) == 2  # two strokes
  g = E.write_grid_svg([SQUARE, TRIANGLE, SQUARE], tmp_path / "g.svg", cell_size=64)
  root = ET.parse(g).getroot()
  assert (root.get("width"), root.get("height")) == ("128", "128")  # 2 x 2 layout


def test_png_grid_size_and_ink(tmp_path):
  p = E.write_grid_png(
    [SQUARE, TRIANGLE, SQUARE, TRIANGLE, SQUARE], tmp_path / "g.png", cell_size=50
  )
  with Image.open(p) as im:
    assert im.format == "PNG" and im.size == (150, 100)  # ceil(sqrt(5)) = 3 columns, 2 rows
    a = np.asarray(im.convert("L"))
  assert (a[:50, :50] < 100).sum() > 20  # ink in the first cell
  assert (a[50:, 100:] < 100).sum() == 0  # the sixth cell is empty
  row = E.grid_image([SQUARE] * 4, ncols=4, cell_size=32)
  assert row.size == (128, 32)


def test_highlight_and_colors():
  img = np.asarray(E.render(SQUARE, 64, highlight=5))
  blue = (img[..., 2] > 150) & (img[..., 0] < 100)
  black = img.sum(-1) < 150
  assert blue.sum() > 20 and black.sum() > 3  # prefix in the accent colour, the rest in ink
  img = np.asarray(E.grid_image([SQUARE, SQUARE], ncols=2, cell_size=64, colors=[E.ACCENT, None]))
  assert ((img[:, :64, 2] > 150) & (img[:, :64, 0] < 100)).sum() > 20
  assert ((img[:, 64:, 2] > 150) & (img[:, 64:, 0] < 100)).sum() == 0


def test_empty_and_single_point_sketches(tmp_path):
  E.write_grid_png([np.zeros((0, 3)), np.array([[1, 1, 1]])], tmp_path / "e.png")
  assert E.write_gif(np.array([[1.0, 2.0, 1.0]]), tmp_path / "one.gif") >= 1
  ET.parse(E.write_svg(np.zeros((0, 3)), tmp_path / "e.svg"))


def test_gif_frames(tmp_path):
  n = E.write_gif(SQUARE, tmp_path / "s.gif", size=96, frame_ms=30, hold_ms=500)
  assert n == len(E.gif_frames(SQUARE, size=96))
  assert 2 <= n <= len(SQUARE) + 1  # one frame per point (+ the finished one), repeats dropped
  with Image.open(tmp_path / "s.gif") as im:
    assert im.format == "GIF" and im.size == (96, 96) and im.n_frames == n
    assert im.is_animated and im.info.get("loop") == 0
    im.seek(n - 1)
    assert im.info["duration"] == 500
    last = np.asarray(im.convert("L"))
    im.seek(0)
    first = np.asarray(im.convert("L"))
  assert (last < 128).sum() > (first < 128).sum()  # the drawing grows
  long = np.tile(TRIANGLE, (100, 1))
  assert len(E.gif_frames(long, size=32, max_frames=20)) <= 21


def test_js_format_example():
  # sketch-rnn-js rows: [dx, dy, p0 (pen stays down), p1 (pen lifts), p2 (end)], end row last.
  assert E.to_js_strokes(TRIANGLE) == [
    [10, 0, 1, 0, 0],
    [-5, 8, 1, 0, 0],
    [-5, -8, 0, 1, 0],
    [0, 0, 0, 0, 1],
  ]
  np.testing.assert_array_equal(E.from_js_strokes(E.to_js_strokes(TRIANGLE)), TRIANGLE)
  # stroke-3 rows are accepted too; rows after the end row are ignored.
  np.testing.assert_array_equal(E.from_js_strokes(TRIANGLE.tolist()), TRIANGLE)
  rows = E.to_js_strokes(TRIANGLE) + [[5, 5, 1, 0, 0]]
  np.testing.assert_array_equal(E.from_js_strokes(rows), TRIANGLE)


def test_json_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  floats = np.concatenate([rng.normal(0, 20, (30, 2)), rng.integers(0, 2, (30, 1))], 1)
  floats = floats.astype(np.float32)
  # One sketch -> a list of rows; exact values with decimals=None.
  E.write_json(floats, tmp_path / "one.json", decimals=None)
  data = json.loads((tmp_path / "one.json").read_text())
  assert len(data) == 31 and data[-1] == [0, 0, 0, 0, 1] and all(len(r) == 5 for r in data)
  (back,) = E.read_json(tmp_path / "one.json")
  np.testing.assert_array_equal(back, floats)
  # Several sketches -> a list of lists; default rounding to 3 decimals.
  E.write_json([floats, TRIANGLE, np.zeros((0, 3))], tmp_path / "many.json")
  back = E.read_json(tmp_path / "many.json")
  assert len(back) == 3 and back[2].shape == (0, 3)
  np.testing.assert_allclose(back[0], floats, atol=5e-4)
  np.testing.assert_array_equal(back[1], TRIANGLE)
  # A single sketch given as a list of rows.
  E.write_json(TRIANGLE.tolist(), tmp_path / "rows.json")
  np.testing.assert_array_equal(E.read_json(tmp_path / "rows.json")[0], TRIANGLE)


@pytest.mark.parametrize(
  "text,needle",
  [
    ("not json", "not valid JSON"),
    ("[1, 2, 3]", "expected a list"),
    ("[[1, 2, 3, 4]]", "expected rows of 5"),
    ("[[1, 2, 1, 1, 0]]", "one-hot"),
    ("[[1, 2, 0.5]]", "pen_lift"),
    ('[[1, "a", 0]]', "not a rectangular list of numbers"),
    ("[[1e999, 2, 0]]", "non-finite"),
  ],
)
def test_json_bad_files(tmp_path, text, needle):
  p = tmp_path / "bad.json"
  p.write_text(text)
  with pytest.raises(ZooError) as e:
    E.read_json(p)
  assert needle in _one_line(e)


def test_bad_sketch_for_writers(tmp_path):
  with pytest.raises(ZooError) as e:
    E.write_svg(np.zeros((4, 2)), tmp_path / "x.svg")
  assert "shape" in _one_line(e)
  with pytest.raises(ZooError) as e:
    E.write_gif(np.array([[np.nan, 0, 0]]), tmp_path / "x.gif")
  assert "non-finite" in _one_line(e)
  with pytest.raises(ZooError) as e:
    E.read_json(tmp_path / "missing.json")
  assert "no such file" in _one_line(e)
