"""TFDS builder without TensorFlow + the load_sketch_splits entry point (zoo.data.sketches.tfds)."""

import importlib.util

import numpy as np
import pytest

from zoo.data.sketches.npz import SketchDataError, save_sketch_npz
from zoo.data.sketches.synthetic import make_synthetic_sketches
from zoo.data.sketches.tfds import (
  ZooSketches,
  config_from_spec,
  load_sketch_splits,
  load_tfds_splits,
)
from zoo.errors import ConfigError, ZooError


@pytest.fixture
def tiny():
  return make_synthetic_sketches(seed=5, num_train=12, num_valid=4, num_test=3)


def assert_same(a, b):
  assert list(a) == ["train", "valid", "test"] and list(b) == list(a)
  for k in a:
    assert len(a[k]) == len(b[k])
    for x, y in zip(a[k], b[k]):
      assert x.dtype == np.int16
      np.testing.assert_array_equal(x, y)


def test_tfds_npz_from_manual_dir_as_data_source(tmp_path, tiny):
  manual = tmp_path / "manual"
  save_sketch_npz(manual / "tiny.npz", tiny)
  data_dir = tmp_path / "tfds"
  out = load_sketch_splits("tfds:npz/tiny.npz", data_dir=data_dir, manual_dir=manual)
  assert_same(out, tiny)
  prepared = data_dir / "zoo_sketches" / "npz_tiny" / "1.0.0"
  assert [p.name for p in prepared.glob("*-train.*")] == [
    "zoo_sketches-train.array_record-00000-of-00001"
  ]
  # Reading straight from the prepared files, no TensorFlow involved.
  builder = ZooSketches(
    config=config_from_spec("npz/tiny.npz"), data_dir=str(data_dir), file_format="array_record"
  )
  src = builder.as_data_source()
  assert len(src["valid"]) == 4
  ex = src["valid"][0]
  assert ex["strokes"].dtype == np.int16 and ex["strokes"].shape[1] == 3
  assert int(ex["label"]) == -1
  if importlib.util.find_spec("tensorflow") is None:
    import sys

    assert "tensorflow" not in sys.modules


def test_tfds_npz_by_path_and_quickdraw(tmp_path, tiny):
  npz = save_sketch_npz(tmp_path / "files" / "my sketches.npz", tiny)
  assert_same(load_sketch_splits(f"tfds:{npz}", data_dir=tmp_path / "tfds"), tiny)
  manual = tmp_path / "manual"
  save_sketch_npz(manual / "hot air balloon.npz", tiny)
  out = load_sketch_splits(
    "quickdraw/hot air balloon", data_dir=tmp_path / "tfds", manual_dir=manual
  )
  assert_same(out, tiny)
  assert (tmp_path / "tfds" / "zoo_sketches" / "quickdraw_hot_air_balloon" / "1.0.0").is_dir()


def test_tfds_synthetic_with_labels(tmp_path):
  out, labels = load_tfds_splits("synthetic", data_dir=tmp_path, return_labels=True)
  ref, ref_labels = make_synthetic_sketches(return_labels=True)
  assert_same(out, ref)
  for k in ref_labels:
    np.testing.assert_array_equal(labels[k], ref_labels[k])


def test_quickdraw_missing_file_says_where_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    load_sketch_splits("quickdraw/cat", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual")
  msg = str(e.value)
  assert "https://storage.googleapis.com/quickdraw_dataset/sketchrnn/cat.npz" in msg
  assert str(tmp_path / "manual" / "cat.npz") in msg and "\n" not in msg
  assert isinstance(e.value, ZooError)
  with pytest.raises(FileNotFoundError, match="none.npz"):
    load_sketch_splits(
      "tfds:npz/none.npz", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual"
    )


def test_tfds_reads_npz_through_safe_loader(tmp_path):
  bad = tmp_path / "manual" / "broken.npz"
  bad.parent.mkdir()
  bad.write_bytes(b"not a zip")
  with pytest.raises(SketchDataError, match="broken.npz.*not a zip"):
    load_sketch_splits("tfds:npz/broken.npz", data_dir=tmp_path / "tfds", manual_dir=bad.parent)


def test_load_sketch_splits_fast_paths(tmp_path, tiny):
  assert_same(load_sketch_splits("synthetic", seed=2), make_synthetic_sketches(seed=2))
  p = save_sketch_npz(tmp_path / "direct.npz", tiny)
  assert_same(load_sketch_splits(str(p)), tiny)
  with pytest.raises(FileNotFoundError, match="nothere.npz"):
    load_sketch_splits(str(tmp_path / "nothere.npz"))
  for bad in ("mnist", "tfds:imagenet", "quickdraw/"):
    with pytest.raises(ConfigError):
      load_sketch_splits(bad, data_dir=tmp_path)


def test_config_names():
  assert config_from_spec("synthetic").name == "synthetic"
  assert config_from_spec("synthetic", seed=3).name == "synthetic_seed3"
  assert config_from_spec("npz:/a/b/Aaron_Sheep.npz").name == "npz_aaron_sheep"
  assert config_from_spec("quickdraw/The Eiffel Tower").name == "quickdraw_the_eiffel_tower"
