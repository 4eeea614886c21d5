"""The faces attribute classifier: training through the loop, loading, API, caching, FD."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from launch.configs import face_classifier as cfg_lib
from zoo.data import faces
from zoo.data.faces import pipeline as faces_pipeline
from zoo.errors import CheckpointError
from zoo.eval import face_classifier as fc
from zoo.eval import metrics
from zoo.tasks import face_classifier as task_lib
from zoo.training import mesh as mesh_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _real_faces(start, n, size=16, split="test"):
  stream = faces_pipeline.faces_batches(
    split, batch_size=n, size=size, num_examples=start + n, shuffle=False
  )
  items = [stream.source[i] for i in range(start, start + n)]
  return faces_pipeline.collate(items, ("image", "attributes"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A tiny classifier (16 px, ~30 steps) trained through the shared loop, once."""
  workdir = str(tmp_path_factory.mktemp("face_classifier"))
  messages = []
  clf = task_lib.get_or_train_classifier(
    workdir, cfg_lib.get_config("tiny"), log_fn=messages.append
  )
  return workdir, clf, messages


def test_trains_through_loop_and_exports(tiny):
  workdir, clf, messages = tiny
  assert any("training it" in m for m in messages)
  assert fc.is_trained(workdir)
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  with open(os.path.join(workdir, "eval.json")) as f:
    ev = json.load(f)
  assert ev["step"] == cfg_lib.get_config("tiny").num_steps
  accs = {k: v for k, v in ev["eval"].items() if k.startswith("test16/acc/")}
  assert len(accs) == len(faces.ATTRIBUTE_NAMES) + 1
  assert all(0.0 <= v <= 1.0 for v in accs.values())
  logged = [json.loads(line) for line in open(os.path.join(workdir, "tb", "metrics.jsonl"))]
  losses = [r["train/loss"] for r in logged if "train/loss" in r]
  assert losses[-1] < losses[0]  # it learns
  assert clf.info["step"] == ev["step"]
  assert clf.input_size == 16 and clf.feature_dim == 16


def test_predict_features_logits_shapes(tiny):
  _, clf, _ = tiny
  real = _real_faces(0, 12)
  pred = clf.predict(real["image"])
  assert list(pred) == list(faces.ATTRIBUTE_NAMES)
  assert all(v.shape == (12,) and v.dtype == np.int32 for v in pred.values())
  for k, v in pred.items():
    assert v.min() >= 0 and v.max() < len(faces.ATTRIBUTES[k])
  logits = clf.logits(real["image"])
  assert {k: v.shape for k, v in logits.items()} == {
    k: (12, len(vs)) for k, vs in faces.ATTRIBUTES.items()
  }
  feats = clf.features(real["image"])
  assert feats.shape == (12, 16) and feats.dtype == np.float32
  # uint8 input == the same images as float in [-1, 1].
  u8 = np.round((real["image"] + 1) * 127.5).astype(np.uint8)
  np.testing.assert_allclose(clf.features(u8), feats, atol=1e-4)
  # Any size: larger, rectangular, grey (no channel axis), jax arrays.
  for shape in [(5, 32, 32, 3), (5, 24, 40, 3), (5, 40, 24, 3), (5, 20, 20)]:
    x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    assert clf.features(jnp.asarray(x)).shape == (5, 16)
    assert all(v.shape == (5,) for v in clf.predict(x).values())
  acc = clf.accuracy(real["image"], real["attributes"])
  assert set(acc) == set(faces.ATTRIBUTE_NAMES) | {"mean"}


def test_chunking_matches_one_pass(tiny):
  workdir, clf, _ = tiny
  small = fc.FaceClassifier.load(workdir, batch_size=8)
  x = _real_faces(0, 21)["image"]
  np.testing.assert_allclose(small.features(x), clf.features(x), atol=1e-5)
  np.testing.assert_allclose(small.features(x[:3]), clf.features(x)[:3], atol=1e-5)


def test_prepare_images_crops_face_square_and_resizes():
  x = np.zeros((1, 8, 12, 3), np.float32)
  x[:, :, 2:10] = 1.0  # the centred 8x8 square
  out = fc.prepare_images(jnp.asarray(x), 8)
  np.testing.assert_allclose(out, 1.0)
  y = fc.prepare_images(jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 1))), 16)
  assert y.shape == (2, 16, 16, 3)
  z = fc.prepare_images(jnp.ones((2, 64, 64, 3)) * 0.5, 32)
  assert z.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(z, 0.5, atol=1e-6)
  with pytest.raises(ValueError):
    fc.prepare_images(jnp.ones((2, 16, 16, 4)), 16)


def test_native_render_size_and_resized_render_agree_roughly(tiny):
  # A face rendered at 32 px and resized to the 16 px input is close to the 16 px render.
  _, clf, _ = tiny
  a = _real_faces(0, 16, size=16)["image"]
  b = _real_faces(0, 16, size=32)["image"]
  fa, fb = clf.features(a), clf.features(b)
  other = clf.features(_real_faces(100, 16, size=16)["image"])
  assert np.linalg.norm(fa - fb) < np.linalg.norm(fa - other)


def test_classifier_fd_real_vs_real_much_smaller_than_noise(tiny):
  _, clf, _ = tiny
  real_a = _real_faces(0, 128)["image"]
  real_b = _real_faces(128, 128)["image"]
  noise = np.random.default_rng(0).uniform(-1, 1, size=real_a.shape).astype(np.float32)
  fd_rr = metrics.classifier_frechet_distance(clf, real_a, real_b)
  fd_nr = metrics.classifier_frechet_distance(clf, noise, real_b)
  assert fd_rr >= 0.0
  assert fd_nr > 5 * fd_rr, (fd_rr, fd_nr)


def test_get_or_train_caches(tiny, monkeypatch):
  workdir, clf, _ = tiny
  mtime = os.path.getmtime(os.path.join(fc.export_dir(workdir), "classifier.msgpack"))

  def fail(*args, **kwargs):
    raise AssertionError("retrained a cached classifier")

  monkeypatch.setattr(task_lib, "train_and_evaluate", fail)
  again = task_lib.get_or_train_classifier(workdir, cfg_lib.get_config("tiny"))
  assert os.path.getmtime(os.path.join(fc.export_dir(workdir), "classifier.msgpack")) == mtime
  x = _real_faces(0, 4)["image"]
  np.testing.assert_allclose(again.features(x), clf.features(x), atol=1e-6)
  # The export directory itself and the env default also load it.
  assert fc.load_classifier(fc.export_dir(workdir)).feature_dim == 16
  monkeypatch.setenv(fc.ENV_WORKDIR, workdir)
  assert fc.default_classifier_workdir() == os.path.abspath(workdir)
  assert task_lib.get_or_train_classifier().model_config == clf.model_config


def test_load_missing_is_one_line_error(tmp_path):
  with pytest.raises(CheckpointError, match="no trained face classifier") as e:
    fc.FaceClassifier.load(str(tmp_path))
  assert "\n" not in str(e.value)


def test_cli_rejects_bad_config(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "launch.face_classifier",
      "--config",
      "launch/configs/face_classifier.py:tiny",
      "--config.num_train=0",
      "--workdir",
      str(tmp_path / "w"),
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1].startswith("error: bad face_classifier config")


@pytest.mark.slow
def test_default_config_reaches_98_percent(tmp_path):
  """The default run (a few minutes on a CPU): >= 98 % on every attribute at 32 and 64 px.

  On one device, like ``python -m launch.face_classifier`` on a CPU: thousands of steps of
  4 virtual CPU devices can abort in XLA's all-reduce rendezvous (40 s termination
  timeout) when the machine is overloaded. The tiny runs above cover 4-device sharding.
  """
  c = cfg_lib.get_config()
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  task_lib.train_and_evaluate(c, str(tmp_path), mesh=mesh)
  clf = fc.FaceClassifier.load(str(tmp_path))
  ev = clf.info["eval"]
  for size in (32, 64):
    assert ev[f"test{size}/acc_min"] >= 0.98, task_lib.format_eval(ev)


def test_loads_the_legacy_export_format(tiny, tmp_path):
  """Exports written before zoo.models.export (classifier.json + params.msgpack) still load."""
  import flax.serialization  # pylint: disable=g-import-not-at-top

  _, clf, _ = tiny
  d = tmp_path / fc.EXPORT_SUBDIR
  d.mkdir()
  (d / "params.msgpack").write_bytes(flax.serialization.to_bytes(jax.device_get(clf.params)))
  meta = {
    "format": fc.LEGACY_FORMAT,
    "model": clf.model_config,
    "attributes": {k: len(v) for k, v in faces.ATTRIBUTES.items()},
    "step": 5,
  }
  (d / "classifier.json").write_text(json.dumps(meta))
  assert fc.is_trained(str(tmp_path))
  old = fc.FaceClassifier.load(str(tmp_path))
  assert old.info["step"] == 5 and old.model_config == clf.model_config
  x = _real_faces(0, 4)["image"]
  np.testing.assert_allclose(old.features(x), clf.features(x), atol=1e-6)
  # Saving it again writes the current format, which then loads as well.
  old.save(str(tmp_path / "again"))
  with open(tmp_path / "again" / fc.EXPORT_SUBDIR / "classifier.json") as f:
    assert json.load(f)["format"] == fc.EXPORT_FORMAT
  np.testing.assert_allclose(
    fc.FaceClassifier.load(str(tmp_path / "again")).features(x), clf.features(x), atol=1e-6
  )
