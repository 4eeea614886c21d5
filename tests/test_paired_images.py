"""Paired A|B image data: splitting, direction, jitter, sharding, errors, edges2faces."""

import numpy as np
import pytest
from PIL import Image

from zoo.data.images import paired as pdata
from zoo.errors import ZooError


def _gradient(h, w, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_pair(path, a, b):
  Image.fromarray(np.concatenate([a, b], axis=1)).save(path)


@pytest.fixture
def folder(tmp_path):
  d = tmp_path / "train"
  d.mkdir()
  pairs = []
  for i in range(3):
    a, b = _gradient(16, 16, i), _gradient(16, 16, 100 + i)
    _write_pair(d / f"{i:02d}.png", a, b)
    pairs.append((a, b))
  return d, pairs


def test_split_halves_and_direction(folder):
  d, pairs = folder
  src = pdata.AlignedFolder(str(d))
  assert len(src) == 3 and src.name(1) == "01"
  a, b = src.read(1)
  np.testing.assert_array_equal(a, pairs[1][0])
  np.testing.assert_array_equal(b, pairs[1][1])
  a2, b2 = pdata.AlignedFolder(str(d), direction="BtoA").read(1)
  np.testing.assert_array_equal(a2, pairs[1][1])
  np.testing.assert_array_equal(b2, pairs[1][0])
  # load() resizes both halves to the requested size (and caches).
  la, lb = src.load(0, 20)
  assert la.shape == lb.shape == (20, 20, 3) and la.dtype == np.uint8
  assert src.load(0, 20)[0] is la


def _one_line(e):
  msg = str(e.value)
  assert "\n" not in msg and isinstance(e.value, ZooError)
  return msg


def test_bad_width_names_the_file(tmp_path):
  Image.fromarray(_gradient(16, 24, 0)).save(tmp_path / "bad.png")
  with pytest.raises(pdata.PairedDataError) as e:
    pdata.AlignedFolder(str(tmp_path))
  msg = _one_line(e)
  assert "bad.png" in msg and "twice" in msg
  # Non-square halves are accepted without the square check, odd widths never.
  assert len(pdata.AlignedFolder(str(tmp_path), check_square=False)) == 1
  Image.fromarray(_gradient(16, 25, 0)).save(tmp_path / "bad.png")
  with pytest.raises(pdata.PairedDataError) as e:
    pdata.AlignedFolder(str(tmp_path), check_square=False)
  assert "even" in _one_line(e)


def test_empty_or_missing_folder(tmp_path):
  (tmp_path / "notes.txt").write_text("no images here")
  with pytest.raises(pdata.PairedDataError) as e:
    pdata.AlignedFolder(str(tmp_path))
  assert "no images" in _one_line(e)
  with pytest.raises(pdata.PairedDataError) as e:
    pdata.AlignedFolder(str(tmp_path / "nope"))
  assert "does not exist" in _one_line(e)
  with pytest.raises(pdata.PairedDataError) as e:
    pdata.open_source(str(tmp_path), "train")
  assert "train" in _one_line(e)
  assert pdata.open_source(str(tmp_path), "val", required=False) is None


def _same_content_folder(tmp_path, n=4, size=16):
  d = tmp_path / "same"
  d.mkdir()
  for i in range(n):
    img = _gradient(size, size, i)
    _write_pair(d / f"{i}.png", img, img)
  return pdata.AlignedFolder(str(d))


def test_jitter_is_deterministic_and_shared_by_a_and_b(tmp_path):
  src = _same_content_folder(tmp_path)
  kw = dict(batch_size=4, load_size=20, crop_size=16, seed=3)
  s1, s2 = pdata.PairedBatches(src, **kw), pdata.PairedBatches(src, num_workers=2, **kw)
  b1, b2 = s1.batch(5), s2.batch(5)
  for k in ("A", "B", "index"):
    np.testing.assert_array_equal(b1[k], b2[k])
  assert b1["A"].shape == (4, 16, 16, 3) and b1["A"].dtype == np.float32
  assert -1.0 <= b1["A"].min() and b1["A"].max() <= 1.0
  # Same crop and flip for A and B (the halves are identical images here).
  np.testing.assert_array_equal(b1["A"], b1["B"])
  # Each epoch visits every example once; a different step gives different jitter.
  assert sorted(s1.batch(0)["index"].tolist()) == [0, 1, 2, 3]
  assert not np.array_equal(s1.batch(6)["A"], b1["A"])
  # iterate() yields batch(start), batch(start + 1), ...
  it = s2.iterate(5)
  np.testing.assert_array_equal(next(it)["A"], b1["A"])
  np.testing.assert_array_equal(next(it)["A"], s1.batch(6)["A"])


def test_crop_positions_and_mirroring(tmp_path):
  src = _same_content_folder(tmp_path, n=2)
  full = {i: src.load(i, 20)[0] for i in range(2)}
  s = pdata.PairedBatches(src, batch_size=2, load_size=20, crop_size=16, seed=0)
  mirrored = plain = 0
  for step in range(10):
    b = s.batch(step)
    for r in range(2):
      pos = step * 2 + r
      top, left, mirror = pdata.jitter_params(0, pos, load_hw=(20, 20), crop_hw=(16, 16), flip=True)
      want = full[int(b["index"][r])][top : top + 16, left : left + 16]
      want = want[:, ::-1] if mirror else want
      np.testing.assert_array_equal(pdata.to_uint8(b["A"][r]), want)
      mirrored += mirror
      plain += not mirror
  assert mirrored > 0 and plain > 0
  no_flip = pdata.PairedBatches(src, batch_size=2, load_size=16, crop_size=16, flip=False)
  for step in range(3):
    b = no_flip.batch(step)
    for r in range(2):
      np.testing.assert_array_equal(pdata.to_uint8(b["A"][r]), src.load(int(b["index"][r]), 16)[0])


def test_process_rows_make_up_the_global_batch(tmp_path):
  src = _same_content_folder(tmp_path)
  kw = dict(batch_size=4, load_size=20, crop_size=16, seed=1)
  full = pdata.PairedBatches(src, **kw).batch(3)
  parts = [
    pdata.PairedBatches(src, process_index=p, process_count=2, **kw).batch(3) for p in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate([p["A"] for p in parts]), full["A"])
  with pytest.raises(pdata.PairedDataError):
    pdata.PairedBatches(src, process_index=0, process_count=3, **kw)


def test_eval_batches_pad_with_mask(tmp_path):
  src = _same_content_folder(tmp_path, n=3)
  batches = list(pdata.eval_batches(src, batch_size=2, size=16))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1]["index"], [2, 2])
  np.testing.assert_array_equal(batches[1]["mask"], [1, 0])
  assert batches[0]["A"].shape == (2, 16, 16, 3)
  gray = next(pdata.eval_batches(src, batch_size=2, size=16, input_nc=1))
  assert gray["A"].shape == (2, 16, 16, 1) and gray["B"].shape == (2, 16, 16, 3)


def test_non_square_halves(tmp_path):
  d = tmp_path / "wide"
  d.mkdir()
  _write_pair(d / "0.png", _gradient(16, 32, 0), _gradient(16, 32, 1))
  src = pdata.AlignedFolder(str(d), check_square=False)
  b = pdata.PairedBatches(src, batch_size=1, load_size=(18, 36), crop_size=(16, 32)).batch(0)
  assert b["A"].shape == (1, 16, 32, 3)


def test_synthetic_edges2faces():
  src = pdata.open_source("", "train", synthetic_sizes={"train": 4}, seed=0)
  assert len(src) == 4
  a, b = src.load(0, 32)
  assert a.shape == b.shape == (32, 32, 3)
  assert set(np.unique(a)) <= {0, 255}  # edge drawing: black lines on white
  assert len(np.unique(b.reshape(-1, 3), axis=0)) > 4  # a colour face
  a2, b2 = pdata.SyntheticEdgesFaces("train", 4, direction="BtoA").load(0, 32)
  np.testing.assert_array_equal(a2, b)
  np.testing.assert_array_equal(b2, a)
  val = pdata.open_source("", "val", synthetic_sizes={"val": 2})
  assert not np.array_equal(val.load(0, 32)[1], b)
  s = pdata.PairedBatches(src, batch_size=2, load_size=36, crop_size=32, seed=0)
  np.testing.assert_array_equal(s.batch(1)["B"], s.batch(1)["B"])
  assert pdata.scaled_load_size(256) == 286 and pdata.scaled_load_size(64) == 72
  # Above the renderer's maximum size the faces are rendered at it and resized.
  assert src.load(1, 286)[1].shape == (286, 286, 3)
