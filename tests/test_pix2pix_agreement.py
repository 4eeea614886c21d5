"""pix2pix attribute agreement: the metric, the synthetic source's labels and the wiring.

None of these needs a trained face classifier: a stub stands in for it.
"""

import numpy as np
import pytest

from launch.configs import pix2pix as config_lib
from zoo.data import faces
from zoo.data.images import paired as pdata
from zoo.errors import CheckpointError
from zoo.eval import face_classifier as fc
from zoo.eval import metrics as em
from zoo.tasks import pix2pix as task_lib

EDGE = ("face_shape", "hair_style", "eyes", "mouth", "glasses")


def test_attribute_agreement_hand_values():
  pred = {"a": [0, 1, 2, 2], "b": [1, 1, 0, 0], "c": [5, 5, 5, 5]}
  target = {"a": np.array([0, 1, 2, 0]), "b": [1, 0, 0, 1], "c": [0, 0, 0, 0]}
  out = em.attribute_agreement(pred, target, ["a", "b"])
  assert list(out) == ["a", "b", "mean"]
  assert out == {"a": 0.75, "b": 0.5, "mean": 0.625}
  # Default: every attribute of target.
  assert em.attribute_agreement(pred, target) == pytest.approx(
    {"a": 0.75, "b": 0.5, "c": 0.0, "mean": 1.25 / 3}
  )


def test_attribute_agreement_errors():
  with pytest.raises(KeyError, match="target has no labels"):
    em.attribute_agreement({"a": [0]}, {"a": [0]}, ["a", "z"])
  with pytest.raises(KeyError, match="pred has no predictions"):
    em.attribute_agreement({"a": [0]}, {"a": [0], "b": [1]}, ["b"])
  with pytest.raises(ValueError, match="at least one"):
    em.attribute_agreement({"a": [0]}, {"a": [0]}, [])


@pytest.mark.parametrize("split,seed", [("test", 0), ("val", 3), ("train", 1)])
def test_synthetic_attributes_match_make_example(split, seed):
  src = pdata.SyntheticEdgesFaces(split, 10, seed=seed)
  idx = [0, 1, 7, 123]
  batch = src.attributes(idx)
  assert set(batch) == set(faces.ATTRIBUTE_NAMES)
  for j, i in enumerate(idx):
    ex = faces.make_example(i, seed=seed, split=src.split, height=16, width=16)
    assert src.attributes(i) == ex["attributes"]
    assert {k: int(v[j]) for k, v in batch.items()} == ex["attributes"]
  assert set(src.EDGE_ATTRIBUTES) == set(EDGE) <= set(faces.ATTRIBUTE_NAMES)


class _StubClassifier:
  """Predicts given codes (ignores the images); random features for FD."""

  def __init__(self, codes):
    self.codes = codes

  def predict(self, images):
    assert len(images) == len(next(iter(self.codes.values())))
    return self.codes

  def features(self, images):
    return np.random.default_rng(len(images)).normal(size=(len(images), 4))


def _config(**kw):
  c = config_lib.get_config()
  c.synthetic_num_test = 8
  c.update(kw)
  return c


def test_edge_attribute_agreement_uses_source_labels():
  c = _config(seed=2)
  truth = pdata.SyntheticEdgesFaces("test", 8, seed=2).attributes(np.arange(8))
  images = np.zeros((8, 4, 4, 3), np.float32)
  out = task_lib.edge_attribute_agreement(_StubClassifier(truth), images, c)
  assert list(out) == [f"agree/{k}" for k in EDGE] + ["agree/mean"]
  assert all(v == 1.0 for v in out.values())
  # One wrong mouth out of 8; explicit (reversed) indices are honoured.
  wrong = {k: v.copy() for k, v in truth.items()}
  wrong["mouth"][3] = (wrong["mouth"][3] + 1) % 3
  out = task_lib.edge_attribute_agreement(_StubClassifier(wrong), images, c)
  assert out["agree/mouth"] == 7 / 8 and out["agree/mean"] == pytest.approx(1 - 1 / 40)
  rev = {k: v[::-1] for k, v in truth.items()}
  out = task_lib.edge_attribute_agreement(_StubClassifier(rev), images, c, index=np.arange(8)[::-1])
  assert out["agree/mean"] == 1.0


def test_paired_metrics_reports_agreement(monkeypatch):
  truth = pdata.SyntheticEdgesFaces("test", 8, seed=0).attributes(np.arange(8))
  monkeypatch.setattr(fc, "load_classifier", lambda *a, **k: _StubClassifier(truth))
  rng = np.random.default_rng(0)
  fake, real = rng.uniform(-1, 1, (2, 8, 16, 16, 3)).astype(np.float32)
  out = task_lib.paired_metrics(fake, real, _config())
  assert {"L1", "PSNR", "SSIM", "FD", "agree/mean"} <= set(out)
  assert out["agree/mean"] == 1.0
  # BtoA translates faces to edges: no agreement; no judge: neither FD nor agreement.
  assert "agree/mean" not in task_lib.paired_metrics(fake, real, _config(direction="BtoA"))

  def missing(*a, **k):
    raise CheckpointError("no judge")

  monkeypatch.setattr(fc, "load_classifier", missing)
  assert set(task_lib.paired_metrics(fake, real, _config())) == {"L1", "PSNR", "SSIM"}
