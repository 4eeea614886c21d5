"""Safe reading of sketch-rnn .npz files (zoo.data.sketches.npz)."""

import io
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

from zoo.data.sketches import npz as sketch_npz
from zoo.data.sketches.npz import SketchDataError, load_sketch_npz, save_sketch_npz
from zoo.errors import ZooError


def sketches(n, rng, dtype=np.int16):
  out = []
  for _ in range(n):
    k = int(rng.integers(3, 12))
    s = np.zeros((k, 3), dtype)
    s[:, :2] = rng.integers(-50, 50, size=(k, 2))
    s[-1, 2] = 1
    out.append(s)
  return out


def obj_array(items):
  a = np.empty(len(items), dtype=object)
  for i, x in enumerate(items):
    a[i] = x
  return a


def write_npz(path, **arrays):
  with open(path, "wb") as f:
    np.savez(f, **arrays)
  return path


@pytest.fixture
def good_splits():
  rng = np.random.default_rng(0)
  return {"train": sketches(7, rng), "valid": sketches(3, rng), "test": sketches(2, rng)}


def test_round_trip(tmp_path, good_splits):
  path = save_sketch_npz(tmp_path / "sk.npz", good_splits)
  assert path == tmp_path / "sk.npz" and path.exists()
  out = load_sketch_npz(path)
  assert list(out) == ["train", "valid", "test"]
  for k in good_splits:
    assert len(out[k]) == len(good_splits[k])
    for a, b in zip(out[k], good_splits[k]):
      assert a.dtype == np.int16
      np.testing.assert_array_equal(a, b)
  # The file is in the standard format: numpy (with pickles enabled) reads it too.
  with np.load(path, **{"allow_" + "pickle": True}) as z:
    assert z["train"].dtype == object and z["train"][0].dtype == np.int16
  only = load_sketch_npz(path, splits=("test",))
  assert list(only) == ["test"]


def test_reads_python2_style_file(tmp_path, good_splits):
  """Protocol-2 pickles (the published files were written by Python 2; Python 3 spells bytes via _codecs.encode)."""
  path = tmp_path / "py2.npz"
  with zipfile.ZipFile(path, "w") as zf:
    for k, v in good_splits.items():
      buf = io.BytesIO()
      arr = obj_array(v)
      np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
      pickle.dump(arr, buf, protocol=2)
      zf.writestr(f"{k}.npy", buf.getvalue())
  out = load_sketch_npz(path)
  np.testing.assert_array_equal(out["valid"][2], good_splits["valid"][2])


def test_real_file(sheep_path):
  out = load_sketch_npz(sheep_path)
  assert [len(out[k]) for k in ("train", "valid", "test")] == [7400, 300, 300]
  assert all(s.dtype == np.int16 and s.shape[1] == 3 for s in out["train"][:50])


def test_numeric_non_object_arrays(tmp_path):
  a = np.zeros((4, 6, 3), np.int16)
  a[:, -1, 2] = 1
  path = write_npz(tmp_path / "num.npz", train=a, valid=a[:2].astype(np.float32), test=a[:1])
  out = load_sketch_npz(path)
  assert [len(out[k]) for k in ("train", "valid", "test")] == [4, 2, 1]
  assert out["valid"][0].dtype == np.float32 and out["train"][0].shape == (6, 3)


class Evil:
  """Unpickling this calls ``fn(*args)``."""

  def __init__(self, fn, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


@pytest.mark.parametrize(
  "make",
  [
    lambda marker: Evil(open, str(marker), "w"),
    lambda marker: Evil(os.system, f"touch '{marker}'"),
    lambda marker: Evil(pathlib.Path.touch, pathlib.Path(marker)),
  ],
  ids=["builtins.open", "os.system", "pathlib.touch"],
)
def test_malicious_pickle_refused_without_running(tmp_path, good_splits, make):
  # The payload is live: unrestricted unpickling creates the marker file.
  probe = tmp_path / "probe"
  obj = pickle.loads(pickle.dumps(make(probe)))
  if hasattr(obj, "close"):
    obj.close()
  assert probe.exists(), "test payload does not work"

  marker = tmp_path / "pwned"
  train = obj_array(good_splits["train"] + [make(marker)])
  path = write_npz(
    tmp_path / "evil.npz",
    train=train,
    valid=obj_array(good_splits["valid"]),
    test=obj_array(good_splits["test"]),
  )
  with pytest.raises(SketchDataError) as e:
    load_sketch_npz(path)
  msg = str(e.value)
  assert "evil.npz" in msg and "refused" in msg and "\n" not in msg
  assert not marker.exists(), "malicious pickle was executed"


def test_unpickler_allows_only_numpy_reconstruction():
  up = sketch_npz.RestrictedUnpickler(io.BytesIO(b""))
  assert up.find_class("numpy", "ndarray") is np.ndarray
  assert up.find_class("numpy.core.multiarray", "_reconstruct") is up.find_class(
    "numpy._core.multiarray", "_reconstruct"
  )
  enc = up.find_class("_codecs", "encode")
  assert enc("\xff", "latin1") == b"\xff"
  with pytest.raises(pickle.UnpicklingError, match="refused"):
    enc("x", "rot13")
  for mod, name in [
    ("os", "system"),
    ("builtins", "eval"),
    ("numpy", "load"),
    ("subprocess", "Popen"),
  ]:
    with pytest.raises(pickle.UnpicklingError, match=f"{mod}.{name}"):
      up.find_class(mod, name)


def test_source_has_no_unrestricted_unpickling():
  text = pathlib.Path(sketch_npz.__file__).read_text()
  for bad in ("allow_pickle=True", "pickle.load(", "pickle.loads("):
    assert bad not in text


def assert_one_line_error(path, needle, **kw):
  with pytest.raises(SketchDataError) as e:
    load_sketch_npz(path, **kw)
  msg = str(e.value)
  assert path.name in msg, msg
  assert "\n" not in msg, msg
  assert needle in msg, msg
  assert isinstance(e.value, (ValueError, ZooError))
  return msg


def test_not_a_zip(tmp_path):
  p = tmp_path / "plain.npz"
  p.write_bytes(b"this is not a zip file at all")
  assert_one_line_error(p, "not a zip")
  q = tmp_path / "single.npy"
  np.save(q, np.zeros((3, 3)))
  assert_one_line_error(q, "not a zip")


def test_truncated(tmp_path, good_splits):
  p = save_sketch_npz(tmp_path / "cut.npz", good_splits)
  data = p.read_bytes()
  p.write_bytes(data[: len(data) // 2])
  assert_one_line_error(p, "truncated")


def test_corrupt_member(tmp_path, good_splits):
  p = save_sketch_npz(tmp_path / "crc.npz", good_splits, compressed=False)
  data = bytearray(p.read_bytes())
  i = data.index(b"NUMPY") + 200  # inside the first member's pickled payload
  data[i] ^= 0xFF
  p.write_bytes(bytes(data))
  assert_one_line_error(p, "crc.npz")


def test_missing_split(tmp_path, good_splits):
  p = save_sketch_npz(
    tmp_path / "nosplit.npz", {"train": good_splits["train"], "test": good_splits["test"]}
  )
  assert_one_line_error(p, "missing split 'valid'")
  assert len(load_sketch_npz(p, splits=("train", "test"))["test"]) == 2


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="absent.npz"):
    load_sketch_npz(tmp_path / "absent.npz")


@pytest.mark.parametrize(
  "bad,needle",
  [
    (np.zeros((5, 2), np.int16), "shape (5, 2)"),
    (np.zeros((5,), np.int16), "shape (5,)"),
    (np.zeros((2, 5, 3), np.int16), "shape (2, 5, 3)"),
    (np.zeros((0, 3), np.int16), "empty"),
    (np.array([[1.0, np.nan, 0.0]], np.float32), "non-finite"),
    (np.array([[1.0, np.inf, 1.0]], np.float64), "non-finite"),
    (np.array([["a", "b", "c"]]), "dtype"),
    (np.array([[1, 2, 5]], np.int16), "pen_lift"),
  ],
)
def test_bad_element(tmp_path, good_splits, bad, needle):
  p = write_npz(
    tmp_path / "badelem.npz",
    train=obj_array(good_splits["train"] + [bad]),
    valid=obj_array(good_splits["valid"]),
    test=obj_array(good_splits["test"]),
  )
  msg = assert_one_line_error(p, needle)
  assert "'train' element 7" in msg


def test_empty_split(tmp_path, good_splits):
  p = write_npz(
    tmp_path / "emptysplit.npz",
    train=obj_array(good_splits["train"]),
    valid=np.empty(0, object),
    test=obj_array(good_splits["test"]),
  )
  assert_one_line_error(p, "split 'valid' is empty")


def test_save_stores_floats_when_needed(tmp_path):
  s = np.array([[0.5, 1.0, 1.0]], np.float32)
  p = save_sketch_npz(tmp_path / "f.npz", {"train": [s], "valid": [s], "test": [s]})
  assert load_sketch_npz(p)["train"][0].dtype == np.float32
  with pytest.raises(ValueError, match="empty"):
    save_sketch_npz(tmp_path / "g.npz", {"train": []})
