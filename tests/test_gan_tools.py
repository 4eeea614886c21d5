"""The latent toolkit (zoo.gan_tools) on the session's tiny StyleGAN run and a fresh ProGAN."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from zoo import gan_tools as gt
from zoo.data import faces
from zoo.errors import ConfigError
from zoo.models import progan as progan_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(tiny_stylegan_run):
  return gt.LatentModel.load(
    tiny_stylegan_run[0]
  )  # one instance: its compiled functions are reused


@pytest.fixture(scope="module")
def progan_model():
  cfg = dict(start=(4, 4), latent_dim=8, fmap_base=16, fmap_max=8)
  g, _ = progan_models.make_progan(cfg, 1)
  g_vars = progan_models.init_variables(g, jax.random.key(0))
  return gt.LatentModel("progan", "", 1, 1, g, g_vars, 1.0, 8)


class _Clf:
  """A stand-in face classifier: mouth 'open' for even images, 'closed' for odd ones."""

  def predict(self, images):
    n = len(images)
    return {"mouth": np.where(np.arange(n) % 2 == 0, 2, 0).astype(np.int32)}


def test_load_describes_the_run(model, tiny_stylegan_run):
  assert (model.family, model.space, model.step, model.stage) == ("stylegan", "w", 12, 1)
  assert model.resolution == (16, 16) and model.num_layers == 4
  assert model.latent_size == tiny_stylegan_run[1].state["g"]["stats"]["w_avg"].shape[0]
  assert [model.layer_shape(i)[:2] for i in range(4)] == [(8, 8), (8, 8), (16, 16), (16, 16)]


def test_images_do_not_depend_on_the_batch_and_psi_zero_is_one_image(model):
  w = model.sample(5, seed=0)
  imgs = model.images(w)
  assert imgs.shape == (5, 16, 16, 3) and imgs.dtype == np.float32
  np.testing.assert_allclose(model.images(w[2:4]), imgs[2:4], atol=1e-5)
  np.testing.assert_array_equal(model.sample(3, seed=0), w[:3])  # latent i: seed and i only
  assert np.abs(imgs - imgs[0]).max() > 1e-3
  flat = model.images(w, psi=0.0)
  assert np.abs(flat - flat[0]).max() < 1e-5
  # psi with a cutoff past the last layer truncates everything; cutoff 0 nothing.
  np.testing.assert_allclose(model.images(w, psi=0.0, cutoff=4), flat, atol=1e-5)
  np.testing.assert_allclose(model.images(w, psi=0.0, cutoff=0), imgs, atol=1e-5)
  np.testing.assert_allclose(model.images(model.styles(w)), imgs, atol=1e-5)  # per-layer input


def test_features_and_local_edit_stay_in_the_region(model):
  w = model.sample(3, seed=1)
  base = model.features(w)
  assert {k: v.shape[1:] for k, v in base.items()} == {i: model.layer_shape(i) for i in range(4)}
  region = (0.5, 0.25, 1.0, 0.75)  # rows 4-7, cols 2-5 of the 8x8 layer 1
  d = gt.local_edit_delta(model, 1, [0, 3], region, 2.0)
  assert d.shape == (8, 8, 8) and d.sum() == pytest.approx(2.0 * 2 * 4 * 4)
  assert set(np.flatnonzero(d.any(axis=(0, 1)))) == {0, 3}
  edited = model.features(w, [1, 2], edits={1: d})
  delta1 = edited[1] - base[1]
  np.testing.assert_allclose(delta1, np.broadcast_to(d, delta1.shape), atol=1e-5)  # exactly d
  assert np.abs(edited[2] - base[2]).max() > 1e-4  # later layers see it
  img = gt.local_edit(model, w, 1, [0, 3], region, 2.0)
  assert np.abs(img - model.images(w)).max() > 1e-4
  np.testing.assert_allclose(
    gt.local_edit(model, w, 1, [0], region, 0.0), model.images(w), atol=1e-5
  )


def test_style_codes_and_style_edits(model):
  w = model.sample(3, seed=2)
  imgs, codes = model.style_codes(w)
  np.testing.assert_allclose(imgs, model.images(w), atol=1e-5)
  slices = model.style_slices()
  assert [s.stop - s.start for s in slices] == [2 * model.layer_shape(i)[2] for i in range(4)]
  assert codes.shape == (3, model.style_size) == (3, slices[-1].stop)
  # A layer's style biases are its output's spatial means.
  feats = model.features(w, [2])[2]
  c = model.layer_shape(2)[2]
  np.testing.assert_allclose(codes[:, slices[2]][:, c:], feats.mean((1, 2)), atol=1e-4)
  # A style edit of layer 2 moves that layer's style by exactly delta, and no earlier one.
  delta = np.zeros(model.style_size, np.float32)
  delta[slices[2].start + 1] = 0.5
  edits = model.style_edit_of(delta)
  assert set(edits) == {2}
  edited = model._run(w, psi=1.0, style_edits=edits, styles=(1, 2))[2]  # pylint: disable=protected-access
  np.testing.assert_allclose(
    edited[2] - codes[:, slices[2]], np.broadcast_to(delta[slices[2]], (3, 2 * c)), atol=1e-5
  )
  np.testing.assert_allclose(edited[1], codes[:, slices[1]], atol=1e-6)
  assert np.abs(model.images(w, style_edits=edits) - imgs).max() > 1e-4
  with pytest.raises(ConfigError, match="style edit must be"):
    model.style_edit_of(delta[:-1])
  with pytest.raises(ConfigError, match="style edit of layer 2"):
    model.images(w, style_edits={2: np.zeros(3)})


def test_feature_diff_finds_the_channels_that_differ(model):
  w = model.sample(4, seed=2)
  same = gt.feature_diff(model, 2, w, w)
  assert np.abs(same.diff).max() == 0
  f = model.features(w, [2])[2]
  diff = gt.feature_diff(model, 2, w[:1], w[1:2])
  np.testing.assert_allclose(diff.diff, f[0] - f[1], atol=1e-5)
  energy = np.sum(diff.diff**2, axis=(0, 1))
  assert diff.channels(1) == [int(np.argmax(energy))]
  p = diff.pattern([1], (0.0, 0.0, 0.5, 0.5))
  assert np.count_nonzero(p[..., [0, *range(2, p.shape[-1])]]) == 0
  assert np.count_nonzero(p[8:, :, 1]) == 0 and np.count_nonzero(p[8:, 8:, 1]) == 0
  y, x = diff.peak(diff.channels(1)[0])
  assert 0 < y < 1 and 0 < x < 1


def test_attribute_vectors_are_mean_differences_and_round_trip(model, tmp_path):
  n = 24
  labels = {"mouth": np.arange(n) % 3, "glasses": np.zeros(n, int)}
  vecs = gt.attribute_vectors(model, n, labels=labels, min_count=8, seed=4)
  w = model.sample(n, seed=4)
  assert set(vecs.names) == {"mouth=0", "mouth=1", "mouth=2", "glasses=0"}
  np.testing.assert_allclose(vecs["mouth=1"], w[1::3].mean(0) - w.mean(0), atol=1e-5)
  np.testing.assert_allclose(vecs["glasses=0"], 0, atol=1e-5)
  assert vecs.counts["mouth=2"] == 8
  assert gt.attribute_vectors(model, n, labels=labels, min_count=9, seed=4).names == ["glasses=0"]
  path = vecs.save_csv(str(tmp_path / "v.csv"))
  back = gt.AttributeVectors.load_csv(path, model)
  for k in vecs.names:
    np.testing.assert_allclose(back[k], vecs[k], rtol=1e-6, atol=1e-7)
  assert (back.family, back.space, back.size, back.step) == ("stylegan", "w", model.latent_size, 12)
  edited = gt.edit(w, back, {"mouth=1": 2.0, "mouth=2": -1.0})
  np.testing.assert_allclose(edited, w + 2 * vecs["mouth=1"] - vecs["mouth=2"], atol=1e-5)


class _Latents:
  """Stands in for a LatentModel whose samples are given latents."""

  space, family, step = "w", "stylegan", 3

  def __init__(self, latents):
    self.latents = latents
    self.latent_size = latents.shape[1]

  def sample(self, n, seed=0):
    del seed
    return self.latents[:n]


def test_regression_vectors_hold_the_other_attributes_fixed():
  rng = np.random.default_rng(0)
  n, dim = 600, 5
  mouth = rng.integers(0, 3, n)
  # skin tone follows the mouth most of the time, as a generator may tie them
  skin = np.where(rng.random(n) < 0.8, (mouth == 2).astype(int), rng.integers(0, 2, n))
  e_mouth, e_skin = rng.normal(size=(3, dim)), rng.normal(size=(2, dim))
  w = (e_mouth[mouth] + e_skin[skin]).astype(np.float32)
  labels = {"mouth": mouth, "skin_tone": skin}
  m = _Latents(w)
  reg = gt.attribute_vectors(m, n, labels=labels, min_count=1, method="regression")
  mean = gt.attribute_vectors(m, n, labels=labels, min_count=1)
  assert (reg.method, mean.method) == ("regression", "mean")
  want = e_mouth[2] - e_mouth[0]
  np.testing.assert_allclose(reg["mouth=2"] - reg["mouth=0"], want, atol=1e-4)
  np.testing.assert_allclose(
    reg["skin_tone=1"] - reg["skin_tone=0"], e_skin[1] - e_skin[0], atol=1e-4
  )
  # the mean difference also carries the skin tone that comes with mouth 2
  assert np.abs(mean["mouth=2"] - mean["mouth=0"] - want).max() > 0.1
  # centred like mean differences: the frequency-weighted mean of an attribute's vectors is 0
  freq = np.bincount(mouth) / n
  np.testing.assert_allclose(sum(f * reg[f"mouth={v}"] for v, f in enumerate(freq)), 0, atol=1e-4)


def test_regression_vectors_of_one_attribute_are_mean_differences(model, tmp_path):
  n = 24
  labels = {"mouth": np.arange(n) % 3}
  reg = gt.attribute_vectors(model, n, labels=labels, min_count=8, seed=4, method="regression")
  mean = gt.attribute_vectors(model, n, labels=labels, min_count=8, seed=4)
  for k in mean.names:
    np.testing.assert_allclose(reg[k], mean[k], atol=1e-5)
  back = gt.AttributeVectors.load_csv(reg.save_csv(str(tmp_path / "r.csv")), model)
  assert back.method == "regression"
  with pytest.raises(ConfigError, match="method='lasso', expected one of mean, regression"):
    gt.attribute_vectors(model, n, labels=labels, method="lasso")


def test_attribute_vectors_from_a_classifier(model):
  vecs = gt.attribute_vectors(model, 10, classifier=_Clf(), min_count=5, seed=0)
  assert vecs.names == ["mouth=closed", "mouth=open"]  # the classifier's codes, named


def test_relabel_needs_a_conditional_run(model):
  with pytest.raises(ConfigError, match="conditional run"):
    gt.relabel(model, model.sample_z(1), {"mouth": "open"})


def test_decorrelate_removes_the_projection():
  a, b = np.array([3.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])
  np.testing.assert_allclose(gt.decorrelate(a, b), [0.0, 1.0, 0.0])
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=16), rng.normal(size=16)
  assert abs(gt.decorrelate(a, b) @ b) < 1e-4
  np.testing.assert_allclose(gt.decorrelate(a, np.zeros(16)), a)


def test_slerp_and_interpolation_end_at_the_endpoints(model):
  z = model.sample_z(2, seed=5)
  s = gt.slerp(z[0], z[1], np.linspace(0, 1, 5))
  np.testing.assert_allclose(s[0], z[0], atol=1e-5)
  np.testing.assert_allclose(s[-1], z[1], atol=1e-5)
  # Orthogonal unit vectors: the midpoint is on the unit circle, not inside it.
  e = gt.slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), [0.5])
  np.testing.assert_allclose(e[0], [np.sqrt(0.5)] * 2, atol=1e-6)
  for space in ("w", "z"):
    path = gt.interpolate(model, z[0], z[1], 4, space=space)
    np.testing.assert_allclose(path[[0, -1]], model.to_latent(z), atol=1e-5)
  w = gt.interpolate(model, z[0], z[1], 3, space="w")
  np.testing.assert_allclose(w[1], w[[0, 2]].mean(0), atol=1e-5)


def test_grids_and_style_ranges(model):
  assert gt.style_ranges(model) == {"coarse": (0, 2), "middle": (2, 4), "fine": (4, 4)}
  grid, ranges = gt.mixing_grid(model, rows=2, cols=3)
  # one header row + 2 rows per non-empty range, 64-pixel tiles, 1-pixel gaps
  assert grid.shape == (1 + 5 * 65, 1 + 4 * 65, 3)
  assert gt.truncation_grid(model, [1.0, 0.5, 0.0], n=2).shape == (1 + 2 * 65, 1 + 3 * 65, 3)
  view = gt.feature_map_view(np.linspace(-1, 1, 8 * 8 * 4).reshape(8, 8, 4), scale=1.0)
  assert view.shape[2] == 3
  # negative -> blue, positive -> red
  assert view[2, 2, 2] > view[2, 2, 0] and view[-3, -3, 0] > view[-3, -3, 2]


def test_mixing_at_every_layer_from_b_is_b(model):
  wa, wb = model.sample(1, 0), model.sample(1, 1)
  ws = np.repeat(wa[:, None], 4, 1)
  ws[:, 0:4] = wb[:, None]
  np.testing.assert_allclose(model.images(ws), model.images(wb), atol=1e-5)


def test_mouth_animation_opens_and_closes(model):
  mouth = gt.find_mouth_edit(model, classifier=_Clf(), n=8, layer=2)
  assert mouth.layer == 2 and mouth.examples == 4
  mask = gt.region_mask((16, 16), gt.MOUTH_REGION)
  assert np.count_nonzero(mouth.pattern[~mask]) == 0 and np.abs(mouth.pattern).max() > 0
  w = model.sample(1, seed=7)
  frames = gt.mouth_animation(model, w[0], mouth, frames=6)
  assert frames.shape == (6, 16, 16, 3)
  np.testing.assert_allclose(frames[0], model.images(w)[0], atol=1e-5)  # strength 0
  change = np.abs(frames - frames[0]).mean(axis=(1, 2, 3))
  assert change[3] == change.max() > 0  # widest at the middle frame
  np.testing.assert_allclose(change[1], change[5], atol=1e-5)  # symmetric


def test_progan_latents_are_z(progan_model):
  m = progan_model
  assert (m.space, m.latent_size, m.resolution) == ("z", 8, (8, 8))
  z = m.sample(3, seed=0)
  np.testing.assert_array_equal(z, m.sample_z(3, seed=0))
  assert m.images(z).shape == (3, 8, 8, 3)
  path = gt.interpolate(m, z[0], z[1], 5)
  np.testing.assert_allclose(path[[0, -1]], z[:2], atol=1e-5)
  with pytest.raises(ConfigError, match="psi must be 1"):
    m.images(z, psi=0.5)
  with pytest.raises(ConfigError, match="need a StyleGAN run"):
    m.features(z)
  with pytest.raises(ConfigError, match="'w'"):
    gt.interpolate(m, z[0], z[1], 5, space="w")
  with pytest.raises(ConfigError, match="style-range edits need a StyleGAN run"):
    m.layer_range("coarse")
  assert m.layer_range("") is None


def test_style_range_edit_moves_those_layers_only(model):
  assert model.layer_range("coarse") == (0, 2) and model.layer_range("1-2") == (1, 3)
  assert model.layer_range("all") is None and model.layer_range((2, 4)) == (2, 4)
  w = model.sample(3, seed=0)
  v = np.linspace(-1, 1, model.latent_size, dtype=np.float32)
  x = gt.edit(w, None, [(v, 2.0)], layers=(1, 3), num_layers=model.num_layers)
  assert x.shape == (3, model.num_layers, model.latent_size)
  np.testing.assert_array_equal(x[:, [0, 3]], np.stack([w, w], 1))
  np.testing.assert_allclose(x[:, 1:3], np.stack([w + 2 * v] * 2, 1), rtol=1e-6)
  # Per-layer latents in, the same edit: and every layer is the plain edit.
  np.testing.assert_array_equal(
    gt.edit(np.repeat(w[:, None], 4, 1), None, [(v, 2.0)], layers=(1, 3)), x
  )
  every = gt.edit(w, None, [(v, 2.0)], layers=(0, 4), num_layers=4)
  np.testing.assert_allclose(
    model.images(every), model.images(gt.edit(w, None, [(v, 2.0)])), atol=1e-5
  )
  assert np.abs(model.images(x) - model.images(every)).max() > 1e-3


@pytest.mark.parametrize(
  "call, words",
  [
    (lambda m, w: m.images(w, psi=1.5), "psi=1.5 must be in"),
    (lambda m, w: m.images(w, psi="x"), "psi="),
    (lambda m, w: m.images(w[:, :3]), "latents must be"),
    (lambda m, w: m.images(w * np.nan), "non-finite"),
    (lambda m, w: m.features(w, [4]), "layer 4 does not exist"),
    (lambda m, w: m.features(w, [1.5]), "must be an integer"),
    (lambda m, w: gt.local_edit(m, w, 1, [8], (0, 0, 1, 1), 1.0), r"channels \[8\] do not exist"),
    (lambda m, w: gt.local_edit(m, w, 1, [0], (0.5, 0, 1.2, 1), 1.0), "region"),
    (lambda m, w: gt.local_edit(m, w, 1, [0], (0.6, 0, 0.5, 1), 1.0), "region"),
    (lambda m, w: gt.local_edit(m, w, 1, [0], (0, 0, 1, 1), np.ones(3)), "delta must be"),
    (lambda m, w: m.images(w, edits={1: np.ones((2, 2))}), "the edit of layer 1"),
    (lambda m, w: m.images(w, cutoff=9), "cutoff=9"),
    (lambda m, w: gt.interpolate(m, w[0, :8], w[1, :8], 1), "steps=1"),
    (lambda m, w: gt.edit(w, None, [(np.ones(3), 1.0)]), "edit vector of size"),
    (lambda m, w: m.layer_range("2-9"), "not a range of this generator's layers 0..3"),
    (lambda m, w: m.layer_range("3-1"), "not a range"),
    (lambda m, w: m.layer_range("top"), "expected coarse, middle, fine, all or LO-HI"),
    (lambda m, w: gt.edit(w, None, [(w[0], 1.0)], layers=(0, 2)), "needs num_layers"),
    (lambda m, w: gt.edit(w, None, [(w[0], 1.0)], layers=(0, 9), num_layers=4), "do not fit"),
  ],
)
def test_bad_input_is_one_line(model, call, words):
  w = model.sample(2, seed=0)
  with pytest.raises(ConfigError, match=words) as e:
    call(model, w)
  assert "\n" not in str(e.value)


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_bad_csv_is_refused(model, tmp_path):
  v = gt.attribute_vectors(model, 4, labels={"mouth": [0, 0, 1, 1]}, min_count=2)
  good = v.save_csv(str(tmp_path / "good.csv"))
  other = gt.AttributeVectors(
    {"a": np.zeros(3, np.float32)}, {"a": 1}, "w", 3, "stylegan", 1
  ).save_csv(str(tmp_path / "other.csv"))
  lines = open(good).read().splitlines()
  cases = {
    other: "model is a stylegan w-space of size",
    _write(tmp_path / "plain.csv", "name,count,v0\na,1,0\n"): "not a zoo attribute-vector CSV",
    _write(
      tmp_path / "short.csv", "\n".join(lines[:2] + [lines[2].rsplit(",", 1)[0]])
    ): "values, the header says",
    _write(
      tmp_path / "nan.csv",
      "\n".join(lines[:2] + [lines[2].replace(lines[2].split(",")[2], "x", 1)]),
    ): "not a number",
    str(tmp_path / "missing.csv"): "cannot read",
    _write(
      tmp_path / "method.csv", "\n".join([lines[0] + " method=pca", *lines[1:]])
    ): "method='pca'",
  }
  for path, words in cases.items():
    with pytest.raises(ConfigError, match=words):
      gt.AttributeVectors.load_csv(path, model)
  with pytest.raises(ConfigError, match="no attribute vector 'hat=on'"):
    gt.AttributeVectors.load_csv(good, model)["hat=on"]


def _launch(*args):
  return subprocess.run(
    [sys.executable, "-m", "launch.stylegan", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_cli_writes_pictures_and_refuses_bad_input(tiny_stylegan_run, tmp_path):
  workdir = tiny_stylegan_run[0]
  out = tmp_path / "out"
  r = _launch(
    "--workdir", workdir, "--mode=truncation", "--psis=1,0.5,0", "--num=2", f"--output={out}"
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert os.listdir(out) == ["truncation.png"]
  r = _launch("--workdir", workdir, "--mode=features", "--layer=9", f"--output={tmp_path / 'bad'}")
  assert (
    r.returncode == 2
    and r.stderr.strip() == "error: layer 9 does not exist; this generator has layers 0..3"
  )
  assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
  "mode, kw, words",
  [
    ("truncation", dict(psi=2.0), "psi=2.0 must be in [0, 1]"),
    ("truncation", dict(psis="1,-1"), "--psis: psi=-1.0"),
    ("truncation", dict(num=0), "--num=0 must be >= 1"),
    ("features", dict(layer=4), "layer 4 does not exist"),
    ("edit", dict(edit_spec="mouth=open:1"), "no attribute vectors at"),
    ("animate", dict(edit_spec="hat"), "animate knows the mouth only"),
    ("judge", dict(), "no attribute vectors at"),
    ("attributes", dict(vector_method="pca"), "--vector_method='pca', expected one of"),
    ("paint", dict(), "--mode='paint'"),
  ],
)
def test_bad_tool_input_writes_nothing(tiny_stylegan_run, tmp_path, mode, kw, words):
  workdir = tiny_stylegan_run[0]
  before = sorted(os.listdir(workdir))
  dest = tmp_path / "bad"
  with pytest.raises(ConfigError) as e:
    gt.run_tool(mode, workdir, output=str(dest), log=None, **kw)
  assert words in str(e.value) and "\n" not in str(e.value)
  assert not dest.exists() and sorted(os.listdir(workdir)) == before


def test_edit_mode_with_vectors(model, tiny_stylegan_run, tmp_path):
  vecs = gt.attribute_vectors(model, 8, labels={"mouth": np.arange(8) % 2}, min_count=2)
  path = vecs.save_csv(str(tmp_path / "v.csv"))
  kw = dict(vectors=path, output=str(tmp_path / "o"), log=None, num=2)
  with pytest.raises(ConfigError, match="no attribute vector 'mouth=open'"):
    gt.run_tool("edit", tiny_stylegan_run[0], edit_spec="mouth=open:1", **kw)
  with pytest.raises(ConfigError, match="is not a strength"):
    gt.run_tool("edit", tiny_stylegan_run[0], edit_spec="mouth=1:x", **kw)
  [png] = gt.run_tool("edit", tiny_stylegan_run[0], edit_spec="mouth=1:1,mouth=0:-0.5", **kw)
  assert os.path.basename(png) == "edit_mouth_1_1_mouth_0_0_5.png" and os.path.getsize(png) > 0
  [png] = gt.run_tool("edit", tiny_stylegan_run[0], edit_spec="mouth=1:1", layers="0-1", **kw)
  assert os.path.basename(png) == "edit_mouth_1_1_layers0-1.png"
  with pytest.raises(ConfigError, match="layers='fine' is not a range"):  # 4 layers: no fine
    gt.run_tool("edit", tiny_stylegan_run[0], edit_spec="mouth=1:1", layers="fine", **kw)


class _BrightnessClf:
  """A stand-in classifier that looks at the images: mouth 'open' when brighter than 0."""

  def predict(self, images):
    return {
      "mouth": np.where(images.mean(axis=(1, 2, 3)) > 0, 2, 0),
      "eyes": np.zeros(len(images), int),
    }

  def features(self, images):
    return images.reshape(len(images), -1)[:, :3].astype(np.float64)


def _vectors(model):
  rng = np.random.default_rng(0)
  vecs = {
    k: rng.normal(size=model.latent_size).astype(np.float32) for k in ("mouth=closed", "mouth=open")
  }
  return gt.AttributeVectors(
    vecs, {k: 1 for k in vecs}, "w", model.latent_size, "stylegan", model.step
  )


def test_judge_edit_counts_flips_and_keeps(model):
  vecs = _vectors(model)
  r = gt.judge_edit(model, vecs, "mouth", "closed", "open", n=6, classifier=_Clf())
  # _Clf calls every even image of a batch open: 3 of the 6 edited closed mouths.
  assert r["flip"] == 0.5 and r["keep_min"] == 1.0 and r["pixel_change"] > 0
  still = gt.judge_edit(
    model, vecs, "mouth", "closed", "open", n=6, strength=0.0, classifier=_Clf()
  )
  assert still["pixel_change"] == 0.0
  coarse = gt.judge_edit(
    model, vecs, "mouth", "closed", "open", n=6, classifier=_Clf(), layers="coarse"
  )
  assert coarse["flip"] == 0.5 and 0 < coarse["pixel_change"] != r["pixel_change"]
  with pytest.raises(ConfigError, match="has no value 'wide'"):
    gt.judge_edit(model, vecs, "mouth", "closed", "wide", n=6, classifier=_Clf())


def test_judge_mouth_edit_compares_with_the_global_vector(model):
  vecs = _vectors(model)
  mouth = gt.find_mouth_edit(model, classifier=_Clf(), n=8, layer=2)
  r = gt.judge_mouth_edit(model, mouth, vecs, n=4, classifier=_Clf())
  assert r["local_flip"] == 0.5 and r["global_flip"] == 0.5
  assert r["global_outside"] > 0 and r["outside_ratio"] == pytest.approx(
    r["local_outside"] / r["global_outside"]
  )


def test_truncation_curve_loses_diversity_at_psi_zero(model):
  rows = gt.truncation_curve(
    model,
    [1.0, 0.0],
    n=16,
    classifier=_BrightnessClf(),
    real_images=model.images(model.sample(16, 9)),
  )
  assert [r["psi"] for r in rows] == [1.0, 0.0]
  assert rows[1]["diversity_bits"] == 0.0  # one image, one prediction
  assert rows[1]["FD"] > 0 and np.isfinite(rows[0]["FD"])
  svg = gt.line_chart_svg([1, 0], {"FD": [r["FD"] for r in rows]}, xlabel="psi")
  assert svg.startswith("<svg") and svg.count("<circle") == 2


def check_caption_model(workdir: str, family: str) -> None:
  """The toolkit on a trained text-conditional run (called by the T2F and DCGAN-CLS
  modules, whose trained runs these are)."""
  with pytest.raises(ConfigError, match="give one"):
    gt.LatentModel.load(workdir)
  m = gt.LatentModel.load(workdir, caption="a smiling person with red hair")
  assert (m.family, m.space, m.caption) == (family, "z", "a smiling person with red hair")
  z = m.sample(3, seed=1)
  imgs = m.images(z)
  assert imgs.shape[0] == 3 and imgs.shape[1:3] == m.resolution
  np.testing.assert_allclose(m.images(z[1:2]), imgs[1:2], atol=1e-5)
  path = gt.interpolate(m, z[0], z[1], 4)
  np.testing.assert_allclose(path[[0, -1]], z[:2], atol=1e-5)
  vecs = gt.attribute_vectors(m, 6, labels={"mouth": [0, 1] * 3}, min_count=3)
  assert vecs.family == family and vecs.size == z.shape[1]
  with pytest.raises(ConfigError, match="psi must be 1"):
    m.images(z, psi=0.5)
  # One restore, any caption: with_caption re-binds the caption without reloading.
  later = gt.LatentModel.load(workdir, require_caption=False)
  with pytest.raises(ConfigError, match="give one"):
    later.images(z)
  np.testing.assert_allclose(later.with_caption(m.caption).images(z), imgs, atol=1e-5)
  other = later.with_caption("a person with black hair and glasses")
  assert other.caption != m.caption and not np.allclose(other.images(z), imgs)
  with pytest.raises(ConfigError, match="empty"):
    later.with_caption("  ")


def check_conditional_model(workdir: str, noise_dim: int) -> None:
  """The toolkit on a trained conditional StyleGAN run (called by tests/test_stylegan.py,
  whose run it is): ``z`` carries a drawn label, and the label moves ``w``."""
  m = gt.LatentModel.load(workdir)
  label_dim = sum(faces.ATTRIBUTE_SIZES)
  assert (m.space, m.label_dim, m.latent_dim) == ("w", label_dim, noise_dim + label_dim)
  z = m.sample_z(64, seed=3)
  np.testing.assert_array_equal(m.sample_z(2, seed=3), z[:2])  # latent i: seed and i only
  groups = np.split(z[:, noise_dim:], np.cumsum(faces.ATTRIBUTE_SIZES)[:-1], axis=1)
  for size, g in zip(faces.ATTRIBUTE_SIZES, groups):
    assert set(np.unique(g)) == {0.0, 1.0} and (g.sum(1) == 1).all()  # one-hot
    assert len(np.unique(g.argmax(1))) == size  # every value is drawn
  w = m.to_latent(z[:2])
  assert w.shape == (2, m.latent_size)
  other = z[:2].copy()
  other[:, noise_dim:] = other[::-1, noise_dim:]  # same noise, the other's label
  assert np.abs(m.to_latent(other) - w).max() > 1e-4
  path = gt.interpolate(m, z[0], z[1], 3, space="z")  # slerped noise, lerped label
  np.testing.assert_allclose(path[[0, -1]], w, atol=1e-5)
  assert m.images(path).shape == (3, *m.resolution, 3)
  vecs = gt.attribute_vectors(m, 6, labels={"mouth": [0, 2] * 3}, min_count=3)
  assert vecs.space == "w" and vecs.size == m.latent_size
  # relabel: one attribute's one-hot replaced, the noise and the other labels kept.
  mouth = faces.ATTRIBUTE_NAMES.index("mouth")
  lo = noise_dim + sum(faces.ATTRIBUTE_SIZES[:mouth])
  hi = lo + faces.ATTRIBUTE_SIZES[mouth]
  opened = gt.relabel(m, z[:4], {"mouth": "open"})
  want = np.eye(hi - lo)[faces.ATTRIBUTES["mouth"].index("open")]
  np.testing.assert_array_equal(opened[:, lo:hi], np.broadcast_to(want, (4, hi - lo)))
  np.testing.assert_array_equal(
    np.delete(opened, np.s_[lo:hi], 1), np.delete(z[:4], np.s_[lo:hi], 1)
  )
  np.testing.assert_array_equal(
    gt.relabel(m, opened, {"mouth": 1}), gt.relabel(m, z[:4], {"mouth": 1})
  )
  for values, words in (({"hat": "red"}, "unknown attribute"), ({"mouth": 9}, "no value 9")):
    with pytest.raises(ConfigError, match=words):
      gt.relabel(m, z[:1], values)
  # The label edit judged with a stand-in classifier: mouth 'closed' (0) for odd images.
  r = gt.judge_relabel(m, "mouth", "closed", "open", n=4, classifier=_Clf())
  assert r["flip"] == 0.5 and r["keep_min"] == 1.0 and r["pixel_change"] > 0


class _FeatureClf(_Clf):
  """The stand-in classifier with features for the FD of the truncation curve."""

  def features(self, images):
    return np.asarray(images, np.float64).reshape(len(images), -1)[:, :4]


def test_judge_mode_writes_the_judged_numbers(tiny_stylegan_run, tmp_path, monkeypatch):
  workdir = tiny_stylegan_run[0]
  monkeypatch.setattr(gt, "_default_classifier", lambda c: c or _FeatureClf())
  m = gt.LatentModel.load(workdir)
  vectors = gt.attribute_vectors(
    m, 8, labels={"mouth": ["closed", "open"] * 4}, min_count=2, method="regression"
  ).save_csv(str(tmp_path / "v.csv"))
  out = tmp_path / "judged"
  gt.run_tool("judge", workdir, num=4, psis="1,0", vectors=vectors, output=str(out), log=None)
  r = json.loads((out / "judge.json").read_text())
  assert r["vector_method"] == "regression" and r["n"] == 4
  # the stand-in calls even-indexed images open: half of the 4 edited images flip
  assert r["edit mouth closed->open"]["flip"] == 0.5
  assert "edit eyes open->closed" not in r  # no eyes vectors in the file
  assert [row["psi"] for row in r["truncation"]] == [1.0, 0.0]
  assert all(np.isfinite(row["FD"]) and row["diversity_bits"] == 1.0 for row in r["truncation"])
  assert (out / "truncation_curve.svg").exists()
  # --psi truncates the judged samples too: at psi = 0 every image, edited or not, is the
  # average one, so no edit changes a pixel
  gt.run_tool(
    "judge", workdir, num=4, psi=0.0, psis="1", vectors=vectors, output=str(out), log=None
  )
  r = json.loads((out / "judge.json").read_text())
  assert r["psi"] == 0.0 and r["edit mouth closed->open"]["pixel_change"] == 0.0
  assert r["mouth local edit"]["global_outside"] == 0.0
