"""Stroke-format utilities (zoo.data.sketches.strokes) and the embedded synthetic dataset."""

import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from zoo.data.sketches import strokes as S
from zoo.data.sketches.npz import load_sketch_npz
from zoo.data.sketches.synthetic import SYNTHETIC_CLASSES, make_synthetic_sketches


def random_sketch(rng, n=60, p_lift=0.15):
  s = np.zeros((n, 3), np.float32)
  s[:, :2] = rng.integers(-20, 21, size=(n, 2))
  s[:, 2] = rng.random(n) < p_lift
  s[-1, 2] = 1
  return s


# ---- stroke-3 <-> stroke-5 ---------------------------------------------------


def test_to_stroke5_start_token_and_padding():
  a = np.array([[1, 2, 0], [3, 4, 1], [5, 6, 0], [7, 8, 1]], np.int16)
  b = np.array([[9, 9, 1]], np.int16)
  x, n = S.to_stroke5([a, b], max_seq_len=6)
  assert x.shape == (2, 7, 5) and x.dtype == np.float32
  assert n.dtype == np.int32 and n.tolist() == [4, 1]
  np.testing.assert_array_equal(x[:, 0], [[0, 0, 1, 0, 0]] * 2)
  np.testing.assert_array_equal(
    x[0, 1:5], [[1, 2, 1, 0, 0], [3, 4, 0, 1, 0], [5, 6, 1, 0, 0], [7, 8, 0, 1, 0]]
  )
  np.testing.assert_array_equal(x[0, 5:], [[0, 0, 0, 0, 1]] * 2)
  np.testing.assert_array_equal(x[1, 1], [9, 9, 0, 1, 0])
  np.testing.assert_array_equal(x[1, 2:], [[0, 0, 0, 0, 1]] * 5)


def test_to_stroke5_rejects_too_long():
  with pytest.raises(ValueError, match="max_seq_len=3"):
    S.to_stroke5([np.zeros((4, 3))], max_seq_len=3)


def test_stroke5_stroke3_round_trip():
  rng = np.random.default_rng(0)
  sketches = [random_sketch(rng, n) for n in (1, 7, 30)]
  x, n = S.to_stroke5(sketches, max_seq_len=30)
  for s, row, k in zip(sketches, x, n):
    back = S.to_stroke3(row)
    assert back.dtype == np.float32 and len(back) == k
    np.testing.assert_array_equal(back, s)
    # Without the start token (e.g. model samples) the same result.
    np.testing.assert_array_equal(S.to_stroke3(row[1:], has_start_token=False), s)


def test_to_stroke3_stops_at_first_end_flag():
  seq = np.array([[1, 1, 1, 0, 0], [2, 2, 0, 1, 0], [0, 0, 0, 0, 1], [5, 5, 1, 0, 0]], np.float32)
  np.testing.assert_array_equal(S.to_stroke3(seq, has_start_token=False), [[1, 1, 0], [2, 2, 1]])


# ---- preprocessing -------------------------------------------------------------


def test_clean_clamps_offsets_only():
  s = np.array([[1500, -2000, 0], [3, -4, 1]], np.int16)
  c = S.clean(s)
  assert c.dtype == np.float32
  np.testing.assert_array_equal(c, [[1000, -1000, 0], [3, -4, 1]])
  np.testing.assert_array_equal(S.clean(s, limit=2), [[2, -2, 0], [2, -2, 1]])
  assert s[0, 0] == 1500  # input untouched


def test_max_seq_len_and_filter():
  splits = {"train": [np.zeros((3, 3)), np.zeros((9, 3))], "valid": [np.zeros((12, 3))], "test": []}
  assert S.max_seq_len_of(splits) == 12
  assert [len(s) for s in S.filter_by_length(splits["train"] + splits["valid"], 9)] == [3, 9]


def test_scale_factor_and_normalize():
  sk = [np.array([[3, 4, 0], [-3, -4, 1]], np.float32)]
  f = S.normalizing_scale_factor(sk)
  assert f == pytest.approx(np.sqrt(12.5))
  out = S.normalize(sk, f)
  np.testing.assert_allclose(out[0][:, :2], sk[0][:, :2] / f, rtol=1e-6)
  np.testing.assert_array_equal(out[0][:, 2], [0, 1])


def test_scale_factor_aaron_sheep(sheep_path):
  splits = load_sketch_npz(sheep_path)
  assert [len(splits[k]) for k in ("train", "valid", "test")] == [7400, 300, 300]
  f = S.normalizing_scale_factor([S.clean(s) for s in splits["train"]])
  assert f == pytest.approx(18.52, abs=0.01)


# ---- augmentation --------------------------------------------------------------


def test_random_scale_range_and_determinism():
  s = np.array([[10, 10, 0], [20, -20, 1]], np.float32)
  sx, sy = [], []
  for seed in range(300):
    out = S.random_scale(s, np.random.default_rng(seed), 0.15)
    sx.append(out[0, 0] / 10)
    sy.append(out[0, 1] / 10)
    np.testing.assert_array_equal(out[:, 2], s[:, 2])
  sx, sy = np.array(sx), np.array(sy)
  for v in (sx, sy):
    assert v.min() >= 0.85 - 1e-6 and v.max() <= 1.15 + 1e-6
    assert v.min() < 0.87 and v.max() > 1.13  # spans the range
  assert not np.allclose(sx, sy)  # x and y drawn independently
  a = S.random_scale(s, np.random.default_rng(7), 0.15)
  np.testing.assert_array_equal(a, S.random_scale(s, np.random.default_rng(7), 0.15))
  np.testing.assert_array_equal(S.random_scale(s, np.random.default_rng(7), 0.0), s)


def magenta_augment_reference(strokes, prob, rng):
  """Literal transcription of magenta's utils.augment_strokes (rng instead of np.random)."""
  result = []
  prev_stroke = [0, 0, 1]
  count = 0
  stroke = [0, 0, 1]
  for i in range(len(strokes)):
    candidate = [strokes[i][0], strokes[i][1], strokes[i][2]]
    if candidate[2] == 1 or prev_stroke[2] == 1:
      count = 0
    else:
      count += 1
    urnd = rng.random()
    if candidate[2] == 0 and prev_stroke[2] == 0 and count > 2 and urnd < prob:
      stroke[0] += candidate[0]
      stroke[1] += candidate[1]
    else:
      stroke = candidate
      prev_stroke = stroke
      result.append(stroke)
  return np.array(result, np.float32)


def stroke_starts(pen):
  return np.concatenate([[0], np.nonzero(pen[:-1] == 1)[0] + 1])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("prob", [0.1, 0.5, 1.0])
def test_augment_strokes_rules(seed, prob):
  rng = np.random.default_rng(100 + seed)
  s = random_sketch(rng, n=80)
  out = S.augment_strokes(s, prob, np.random.default_rng(seed))
  # Same as magenta's loop fed with the same uniform numbers.
  np.testing.assert_allclose(
    out, magenta_augment_reference(s, prob, np.random.default_rng(seed)), atol=1e-5
  )
  # Pen-up points are never dropped, the end point is unchanged.
  assert out[:, 2].sum() == s[:, 2].sum()
  np.testing.assert_allclose(out[:, :2].sum(0), s[:, :2].sum(0), atol=1e-4)
  # The first two points of every stroke are kept untouched.
  for a, b in zip(stroke_starts(s[:, 2]), stroke_starts(out[:, 2])):
    k = min(2, int(np.argmax(s[a:, 2] == 1)) + 1)
    np.testing.assert_array_equal(out[b : b + k], s[a : a + k])
  # Every output point lies on an original point (a dropped offset is merged,
  # not lost), and all pen-up positions survive.
  orig = np.cumsum(s[:, :2], 0)
  new = np.cumsum(out[:, :2], 0)
  j = 0
  for p in new:
    while j < len(orig) and not np.allclose(orig[j], p, atol=1e-3):
      j += 1
    assert j < len(orig), "output point is not on the original path"
    j += 1
  np.testing.assert_allclose(new[out[:, 2] == 1], orig[s[:, 2] == 1], atol=1e-3)


def test_augment_strokes_drop_counts():
  # One 10-point stroke: with prob 1 all droppable points (count > 2) go:
  # points 0, 1, 2 and the final pen-up point remain.
  s = np.ones((10, 3), np.float32)
  s[:, 2] = 0
  s[-1, 2] = 1
  out = S.augment_strokes(s, 1.0, np.random.default_rng(0))
  np.testing.assert_array_equal(out, [[1, 1, 0], [1, 1, 0], [7, 7, 0], [1, 1, 1]])
  np.testing.assert_array_equal(S.augment_strokes(s, 0.0, np.random.default_rng(0)), s)
  assert len(S.augment_strokes(s, 0.5, np.random.default_rng(3))) < 10


# ---- rendering ---------------------------------------------------------------------

SQUARE_X = np.array(
  [[0, 0, 0], [10, 0, 0], [0, 10, 0], [-10, 0, 0], [0, -10, 1], [10, 10, 1]], np.float32
)


def test_to_absolute_polylines():
  lines = S.to_absolute(SQUARE_X)
  assert len(lines) == 2
  np.testing.assert_array_equal(lines[0], [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]])
  np.testing.assert_array_equal(lines[1], [[10, 10]])
  # trailing stroke without pen-up is kept
  assert len(S.to_absolute(np.array([[1, 1, 0], [2, 2, 0]]))) == 1


def test_to_svg_valid_and_fits(tmp_path):
  path = tmp_path / "s.svg"
  svg = S.to_svg(SQUARE_X, path, size=100, stroke_width=2)
  assert path.read_text() == svg
  root = ET.fromstring(svg)
  assert root.tag.endswith("svg") and root.get("width") == "100"
  polys = [e for e in root.iter() if e.tag.endswith("polyline")]
  assert len(polys) == 2
  pts = np.array([[float(v) for v in p.split(",")] for e in polys for p in e.get("points").split()])
  assert pts.min() >= 0 and pts.max() <= 100
  assert pts.max() - pts.min() > 60  # scaled up to fill the canvas


def test_grid_svg():
  svg = S.grid_svg([SQUARE_X] * 5, ncols=2, cell_size=50)
  root = ET.fromstring(svg)
  assert (root.get("width"), root.get("height")) == ("100", "150")
  assert sum(e.tag.endswith("polyline") for e in root.iter()) == 10


def test_to_image():
  img = S.to_image(SQUARE_X, 32)
  assert img.shape == (32, 32) and img.dtype == np.uint8
  assert (img < 128).sum() > 40 and img[16, 16] > 128 and img[0, 0] == 255
  line = np.array([[0, 0, 0], [100, 0, 1]], np.float32)
  img2 = S.to_image(line, (20, 40), stroke_width=1)
  assert img2.shape == (20, 40)
  ink_rows = np.nonzero((img2 < 128).any(1))[0]
  assert ink_rows.min() >= 8 and ink_rows.max() <= 11  # horizontal line, centred
  assert (S.to_image(line, 20, invert=True) > 128).sum() > 0


# ---- synthetic dataset ---------------------------------------------------------------


def test_synthetic_sizes_format_and_determinism():
  t = time.perf_counter()
  a, la = make_synthetic_sketches(seed=3, return_labels=True)
  elapsed = time.perf_counter() - t
  assert elapsed < 10, f"synthetic generation too slow: {elapsed:.1f}s"
  assert {k: len(v) for k, v in a.items()} == {"train": 2000, "valid": 200, "test": 200}
  for k, v in a.items():
    assert la[k].dtype == np.int32 and len(la[k]) == len(v)
    for s in v:
      assert s.dtype == np.int16 and s.ndim == 2 and s.shape[1] == 3
      assert 10 <= len(s) <= 150 and s[-1, 2] == 1
      assert set(np.unique(s[:, 2])) <= {0, 1}
  assert np.bincount(la["train"]).tolist() == [400] * 5
  multi = sum(int(s[:, 2].sum()) > 1 for s in a["train"])
  assert 100 < multi < 1500  # some multi-stroke sketches (pen-up matters)
  b, lb = make_synthetic_sketches(seed=3, return_labels=True)
  assert all(np.array_equal(x, y) for k in a for x, y in zip(a[k], b[k]))
  assert all(np.array_equal(la[k], lb[k]) for k in a)
  c = make_synthetic_sketches(seed=4)
  assert not all(np.array_equal(x, y) for x, y in zip(a["train"][:20], c["train"][:20]))


def test_synthetic_options():
  a, la = make_synthetic_sketches(
    num_train=10, num_valid=3, num_test=0, classes=("star", "spiral"), return_labels=True
  )
  assert [len(a[k]) for k in ("train", "valid", "test")] == [10, 3, 0]
  assert set(la["train"].tolist()) == {0, 1}
  # valid split does not depend on num_train
  b = make_synthetic_sketches(num_train=2, num_valid=3, num_test=0, classes=("star", "spiral"))
  assert all(np.array_equal(x, y) for x, y in zip(a["valid"], b["valid"]))
  with pytest.raises(ValueError, match="hexagon"):
    make_synthetic_sketches(classes=("hexagon",))
  assert SYNTHETIC_CLASSES == ("circle", "square", "triangle", "spiral", "star")
