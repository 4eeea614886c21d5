"""Caption datasets you bring, as the text-to-image families' data (``data.source``): the
pair adapter and held-out captions (zoo.data.caption_pairs), judging without attributes,
T2F and the DCGAN (with its caption encoder) trained end to end on tiny folders, and bad
input through the launchers."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from tests.conftest import (
  FACE2TEXT_IMAGES,
  REED_CLASSES,
  reed_captions,
  write_face2text_folder,
  write_reed_folder,
)
from tests.test_dcgan_cls_task import tiny_config as dcgan_tiny_config
from tests.test_t2f import tiny_config as t2f_tiny_config
from zoo.data import caption_pairs, faces
from zoo.data.faces import captioned
from zoo.data import captions as caption_data
from zoo.data.captions import CaptionDataError
from zoo.errors import ConfigError
from zoo.eval import captions as caption_eval
from zoo.tasks import dcgan_cls, t2f
from zoo.tasks import text_encoder as text_task
from zoo.training import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_device():  # one device compiles faster; the families' own tests cover four
  return mesh_lib.make_mesh(jax.devices()[:1])


def _read(*parts) -> str:
  with open(os.path.join(*parts), encoding="utf-8") as f:
    return f.read()


def _data(root, data_dir, **kw):
  """A config's data section for the folder ``root`` prepared under ``data_dir``."""
  return ml_collections.ConfigDict(dict(source=str(root), data_dir=str(data_dir), seed=0, **kw))


# ---------------------------------------------------------------------------
# The adapter.
# ---------------------------------------------------------------------------


def test_pairs_flatten_every_caption_of_every_image(tmp_path):
  root = write_reed_folder(tmp_path / "cub")
  pairs = caption_pairs.open_pair_source(_data(root, tmp_path / "tfds"), "train", (8, 12))
  raw = caption_data.open_captions(root, "train", (8, 12))  # the folder read directly
  train_classes = list(REED_CLASSES)[:2]
  expect = [(c, i, k) for c in train_classes for i in range(3) for k in range(3 + i % 2)]
  assert len(pairs) == len(expect) == 20 and pairs.num_images == 6
  for j, (cls, i, k) in enumerate(expect):
    e = train_classes.index(cls) * 3 + i
    assert pairs.locate(j) == (e, k) and pairs.pair_index(e, k) == j
    item = pairs[j]
    assert set(item) == {"image", "caption", "face", "label", "class_id"}
    assert item["caption"] == reed_captions(cls, i)[k] == pairs.caption(j)[0]
    assert pairs.caption(j)[1:] == (None, None)  # real captions name no attributes
    assert item["face"] == e and item["label"] == item["class_id"] == e // 3
    assert item["image"].dtype == np.uint8 and item["image"].shape == (8, 12, 3)
    np.testing.assert_array_equal(item["image"], raw[e]["image"])  # through TFDS, unchanged
  with pytest.raises(IndexError):
    pairs[20]
  assert pairs.all_captions() == {
    t for cls in train_classes for i in range(3) for t in reed_captions(cls, i)
  }
  assert pairs.first_captions(2) == [reed_captions(train_classes[0], i)[0] for i in range(2)]

  faces = caption_pairs.open_pair_source(
    _data(write_face2text_folder(tmp_path / "f2t"), tmp_path / "tfds"), "train", (8, 8)
  )
  train_images = [im for im, split, _ in FACE2TEXT_IMAGES if split == "train"]
  assert len(faces) == 2 * len(train_images) and faces.locate(3) == (1, 1)
  assert [faces[2 * e]["class_id"] for e in range(len(train_images))] == list(range(6))
  assert faces[0]["label"] == -1 and not faces.has_classes  # each image its own class


def test_heldout_captions_are_unseen_one_per_test_image(tmp_path):
  root = write_reed_folder(tmp_path / "cub")
  test_dir = root / "text_c10" / "003.Green_bird"
  seen = reed_captions("001.Red_bird", 0)
  # Test image 0 opens with a training caption; image 2 has nothing but training captions.
  (test_dir / "Green_bird_0000.txt").write_text(f"{seen[1]}\nits own caption\n")
  (test_dir / "Green_bird_0002.txt").write_text(f"{seen[0]}\n{seen[2]}\n")
  data = _data(root, tmp_path / "tfds")
  train = caption_pairs.open_pair_source(data, "train", (8, 8))
  held = caption_pairs.heldout(data, 5, exclude=train.all_captions(), size=(8, 8))
  assert sorted(zip(held["face"].tolist(), held["caption"])) == [
    (0, "its own caption"),
    (1, reed_captions("003.Green_bird", 1)[0]),
  ]
  assert (held["label"] == 2).all() and held["image"].shape == (2, 8, 8, 3)
  assert "only 2 of the 3 test images" in held["reason"]
  again = caption_pairs.heldout(data, 5, exclude=train.all_captions(), size=(8, 8))
  assert again["caption"] == held["caption"]  # a fixed order, drawn from data.seed
  one = caption_pairs.heldout(data, 1, exclude=train.all_captions(), size=(8, 8))
  assert one["caption"] == held["caption"][:1] and one["reason"] == ""
  picky = caption_pairs.heldout(
    data, 5, exclude=train.all_captions(), size=(8, 8), accept=lambda t: "own" not in t
  )
  assert picky["caption"] == [reed_captions("003.Green_bird", 1)[0]]

  no_test = _data(write_reed_folder(tmp_path / "no_test", test_split=False), tmp_path / "tfds2")
  none = caption_pairs.heldout(no_test, 5, exclude=set(), size=(8, 8))
  assert none["caption"] == [] and none["image"].shape == (0, 8, 8, 3)
  assert "no 'test' split" in none["reason"]


def test_a_prepared_config_is_not_read_as_another_folder(tmp_path):
  data = _data(write_reed_folder(tmp_path / "cub"), tmp_path / "tfds")
  caption_pairs.open_pair_source(data, "train", (8, 8))
  other = _data(write_reed_folder(tmp_path / "flowers"), tmp_path / "tfds")  # same format and size
  with pytest.raises(CaptionDataError, match="prepared from .*cub, not .*flowers") as e:
    caption_pairs.open_pair_source(other, "train", (8, 8))
  assert "\n" not in str(e.value)
  other.data_dir = str(tmp_path / "tfds_flowers")
  assert len(caption_pairs.open_pair_source(other, "train", (8, 8))) == 20


def test_wrong_captions_and_judging_without_attributes():
  # The embedded faces: the previous example's caption, as np.roll(x, 1) gives it.
  np.testing.assert_array_equal(caption_eval.other_captions(4), [3, 0, 1, 2])
  np.testing.assert_array_equal(caption_eval.other_captions(3, [-1, -1, -1]), [2, 0, 1])
  np.testing.assert_array_equal(caption_eval.other_captions(3, [5, 5, 5]), [2, 0, 1])
  # With classes: the nearest earlier example of another class (cyclically).
  np.testing.assert_array_equal(caption_eval.other_captions(5, [0, 0, 1, 1, 2]), [4, 4, 1, 1, 3])
  right, wrong = np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 1.0])
  assert caption_eval.mismatch_rejection(right, wrong) == pytest.approx(2 / 3)
  # An example scored with its own caption does not count: none left, NaN.
  assert np.isnan(caption_eval.mismatch_rejection(right[:1], wrong[:1], others=np.array([0])))

  class Judge:  # the face classifier's interface
    def predict(self, x):
      raise AssertionError("no attributes: nothing to predict")

    def features(self, x):
      return np.asarray(x, np.float64).reshape(len(x), -1)[:, :3]

  x = np.random.default_rng(0).normal(size=(6, 2, 2, 3))
  out = caption_eval.judge(Judge(), x, x[::-1], scores=(right, wrong), others=np.array([2, 0, 1]))
  assert set(out) == {"eval/FD", "eval/mismatch_rejection"}
  assert out["eval/mismatch_rejection"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------
# The families on a folder.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tiny_face_classifier, tmp_path_factory):
  """The tiny face classifier as the judge, caption encoders in a temporary folder."""
  root = tmp_path_factory.mktemp("caption_sources")
  values = {"ZOO_FACE_CLASSIFIER": tiny_face_classifier, "ZOO_TEXT_ENCODER": str(root / "text")}
  with pytest.MonkeyPatch.context() as mp:
    for k, v in values.items():
      mp.setenv(k, v)
    yield root, values


@pytest.fixture(scope="module")
def folders(env):
  root, _ = env
  return {
    "reed": write_reed_folder(root / "cub"),
    "face2text": write_face2text_folder(root / "faces"),
    "reed_no_test": write_reed_folder(root / "cub_no_test", test_split=False),
    "tfds": root / "tfds",
  }


def _set(c, overrides):
  for k, v in overrides.items():
    section, _, key = k.rpartition(".")
    (c[section] if section else c)[key] = v
  return c


def _eval_keys_without_attributes(ev):
  assert ev["eval/FD"] >= 0 and np.isfinite(ev["eval/FD"])
  assert 0 <= ev["eval/mismatch_rejection"] <= 1
  assert not [k for k in ev if k.startswith("eval/acc")]


def _t2f_on(folders, name, **overrides):
  """A one-stage 4x4 T2F config on fixture folder ``name``."""
  return t2f_tiny_config(
    **{
      "schedule.resolution": (4, 4),
      "schedule.final_stable_images": 16,
      "data.source": str(folders[name]),
      "data.data_dir": str(folders["tfds"]),
      **overrides,
    }
  )


def test_t2f_trains_and_judges_on_a_reed_folder(folders, tmp_path):
  # One 4x4 stage of 2 steps; the fixture's images (14 to 51 pixels) are resized.
  c = _t2f_on(folders, "reed")
  workdir = str(tmp_path / "t2f")
  res = t2f.train_and_evaluate(c, workdir, mesh=_one_device(), log=None)
  assert res.step == 2
  ev = json.loads(_read(workdir, "eval.json"))
  _eval_keys_without_attributes(ev)
  rows = _read(workdir, "samples", "captions.txt")
  assert rows.count("a green bird") == 2  # held-out captions of the test class
  vocab = json.loads(_read(workdir, "vocab.json"))
  assert "bird" in json.dumps(vocab) and "green" not in json.dumps(vocab)
  assert json.loads(_read(workdir, "config.json"))["data"]["source"] == str(folders["reed"])


@pytest.mark.slow  # another T2F compile; the launcher table covers the refusal with eval on
def test_t2f_without_a_test_split_trains_with_evaluation_off(folders, tmp_path):
  c = _t2f_on(folders, "reed_no_test", **{"eval.num_samples": 0})
  workdir = str(tmp_path / "t2f")
  assert t2f.train_and_evaluate(c, workdir, log=None).step == 2
  rows = _read(workdir, "samples", "captions.txt").splitlines()
  assert rows == [f"row {i + 1}: {reed_captions('001.Red_bird', i)[0]}" for i in range(2)]
  assert not os.path.exists(os.path.join(workdir, "eval.json"))


@pytest.fixture(scope="module")
def face2text_encoder(folders, env):
  """A tiny caption encoder trained (2 steps) on the Face2Text folder."""
  root, _ = env
  c = _set(
    text_task.default_config("tiny"),
    {
      "num_steps": 2,
      "batch_size": 8,
      "eval.pool": 8,
      "data.source": str(folders["face2text"]),
      "data.data_dir": str(folders["tfds"]),
    },
  )
  workdir = str(root / "encoder_faces")
  result = text_task.train_and_evaluate(c, workdir, log_fn=lambda m: None)
  return workdir, result


def test_the_encoder_learns_from_the_folder_and_records_it(face2text_encoder, folders):
  workdir, result = face2text_encoder
  assert result.step == 2
  info = json.loads(_read(workdir, "eval.json"))
  assert info["data_source"] == os.path.realpath(folders["face2text"])
  # Two held-out captions, one per test image: a pool of 2, chance 1/2.
  assert info["eval"]["eval/retrieval_chance"] == pytest.approx(0.5)
  enc = text_task.load_text_encoder(workdir, data=_data(folders["face2text"], folders["tfds"]))
  assert enc.data_source == info["data_source"]
  with pytest.raises(ConfigError, match="trained on .*faces, not on .*cub") as e:
    text_task.load_text_encoder(workdir, data=_data(folders["reed"], folders["tfds"]))
  assert "\n" not in str(e.value)
  with pytest.raises(ConfigError, match="not on the embedded captioned faces"):
    text_task.check_encoder_data(workdir, ml_collections.ConfigDict({"source": ""}))
  # A folder's default encoder is its own, never the faces one.
  default = text_task.encoder_workdir_for(_data(folders["reed"], folders["tfds"]))
  assert default == text_task.default_workdir() + "_cub"


def test_dcgan_trains_and_judges_on_a_face2text_folder(face2text_encoder, folders, tmp_path):
  encoder_dir, _ = face2text_encoder
  c = dcgan_tiny_config(
    **{
      "num_steps": 2,
      "save_every": 0,
      "sample_every": 0,
      "data.source": str(folders["face2text"]),
      "data.data_dir": str(folders["tfds"]),
      "text.encoder_workdir": encoder_dir,
    }
  )
  workdir = str(tmp_path / "dcgan")
  res = dcgan_cls.train_and_evaluate(c, workdir, mesh=_one_device(), log=None)
  assert res.step == 2
  _eval_keys_without_attributes(json.loads(_read(workdir, "eval.json")))
  rows = _read(workdir, "samples", "captions.txt").splitlines()
  test_hair = {hair for _, split, hair in FACE2TEXT_IMAGES if split == "test"}
  assert len(rows) == 2 and all(any(f" {h} hair" in r for h in test_hair) for r in rows)
  # The same encoder for the Reed folder: refused before anything is written.
  c.data.source = str(folders["reed"])
  with pytest.raises(ConfigError, match="was trained on"):
    dcgan_cls.train_and_evaluate(c, str(tmp_path / "refused"), log=None)
  assert not os.path.exists(tmp_path / "refused")


# ---------------------------------------------------------------------------
# Bad input through the launchers: one line, exit 2, the workdir untouched.
# ---------------------------------------------------------------------------

_SMALL = {  # in case a check let a run through: it would stay tiny
  "t2f": [
    "--config.schedule.resolution=(4, 4)",
    "--config.schedule.batch_sizes=(8,)",
    "--config.schedule.final_stable_images=16",
    "--config.eval.num_samples=8",
  ],
  "dcgan_cls": ["--config.num_steps=2", "--config.batch_size=8", "--config.eval.num_samples=8"],
  "text_encoder": [
    "--config=launch/configs/text_encoder.py:tiny",
    "--config.num_steps=2",
    "--config.batch_size=4",
  ],
}


def _missing_image(folders, tmp):
  root = write_reed_folder(tmp / "cub_missing")
  (root / "text_c10" / "001.Red_bird" / "Red_bird_0009.txt").write_text("a lost red bird\n")
  return root


def _unknown_characters(folders, tmp):
  root = write_face2text_folder(tmp / "f2t_unknown")
  with (root / "captions.csv").open("a", encoding="utf-8") as f:
    f.write(f"{FACE2TEXT_IMAGES[0][0]},\u9ed2\u3044\u9aea,train\n")  # no Reed character
  return root


BAD = [
  ("t2f", lambda f, tmp: tmp / "nowhere", "does not exist"),
  ("dcgan_cls", lambda f, tmp: tmp, "is not a caption dataset"),
  ("text_encoder", _missing_image, "Red_bird_0009.txt has no image"),
  ("t2f", lambda f, tmp: f["reed_no_test"], "has no 'test' split"),
  ("dcgan_cls", lambda f, tmp: f["reed"], "was trained on"),
  ("text_encoder", _unknown_characters, "no character or word the caption encoder knows"),
]


@pytest.mark.parametrize(
  "launcher,source,needle",
  BAD,
  ids=["missing", "neither_format", "no_image", "no_test", "encoder", "unknown_chars"],
)
def test_bad_input_through_the_launchers(
  launcher, source, needle, folders, face2text_encoder, env, tmp_path
):
  _, values = env
  (tmp_path / "data").mkdir()
  src = source(folders, tmp_path / "data")
  workdir = tmp_path / "run"
  args = [
    *_SMALL[launcher],  # --config=... first: overrides apply to the file it names
    f"--config.data.source={src}",
    f"--config.data.data_dir={tmp_path / 'tfds'}",
    f"--workdir={workdir}",
  ]
  if launcher == "dcgan_cls":
    args.append(f"--config.text.encoder_workdir={face2text_encoder[0]}")
  p = subprocess.run(
    [sys.executable, "-m", f"launch.{launcher}", *args],
    cwd=REPO,
    env={**os.environ, **values},
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert p.returncode == 2, p.stderr[-3000:]
  errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and needle in errors[0], p.stderr[-3000:]
  assert "Traceback" not in p.stderr
  assert not workdir.exists()


def test_contradicting_captions_by_hand():
  # Table of 4 captions over 3 attributes: codes of the image each describes, and which
  # attributes each names.
  table = np.asarray([[0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0]])
  names = np.asarray([[1, 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]], bool)
  example = np.asarray([[0, 0, 0], [1, 1, 0]])
  # Contradictions of example 0: [0, 2, 2, 1]; of example 1: [2, 0, 1, 0].
  rng = np.random.default_rng(0)
  got = caption_pairs.contradicting_captions(example, table, names, rng, candidates=200)
  assert got.tolist() == [3, 2]
  # Nothing in the table contradicts an example it describes entirely: -1.
  none = caption_pairs.contradicting_captions(
    np.asarray([[0, 0, 0]]), table[:1], names[:1], rng, candidates=5
  )
  assert none.tolist() == [-1]


def test_twin_captions_differ_in_one_attribute_only():
  codes = np.stack(
    [
      [captioned.face_attributes(i, seed=0, split="test")[n] for n in faces.ATTRIBUTE_NAMES]
      for i in range(40)
    ]
  )
  j = faces.ATTRIBUTE_NAMES.index("background_color")
  right, wrong = captioned.twin_captions(codes, "background_color")
  assert (right, wrong) == captioned.twin_captions(codes, "background_color")  # deterministic
  colors = faces.ATTRIBUTES["background_color"]
  for r, w, c in zip(right, wrong, codes[:, j]):
    said = [x for x in colors if x in w.split(" ") or f"{x}." in w or f"{x}," in w]
    assert colors[c] in r and colors[c] not in said and len(said) == 1, (r, w)
    # the rest of the wording is the same
    assert r.replace(colors[c], said[0]) == w
  for name in faces.ATTRIBUTE_NAMES:
    right, wrong = captioned.twin_captions(codes, name)
    assert all(r != w for r, w in zip(right, wrong))


def test_attribute_rejection_by_hand():
  codes = np.stack(
    [
      [captioned.face_attributes(i, seed=0, split="test")[n] for n in faces.ATTRIBUTE_NAMES]
      for i in range(30)
    ]
  )
  real = np.arange(30, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 3), np.float32)
  colors = faces.ATTRIBUTES["background_color"]
  j = faces.ATTRIBUTE_NAMES.index("background_color")

  def score(x, caps):  # a D that checks the background colour and nothing else
    return np.asarray([colors[codes[int(f[0, 0, 0]), j]] in c for f, c in zip(x, caps)], float)

  r = caption_eval.attribute_rejection(score, real, codes, num=20)
  assert set(r) == {f"eval/rejection/{n}" for n in faces.ATTRIBUTE_NAMES}
  assert r["eval/rejection/background_color"] == 1.0
  assert r["eval/rejection/mouth"] == 0.0  # both captions say the right colour, or neither


def test_latent_diversity_by_hand():
  names, sizes = faces.ATTRIBUTE_NAMES, faces.ATTRIBUTE_SIZES
  k, n = 4, 3
  # Real faces: every attribute takes values 0 and 1, ten times each: two different faces
  # differ with probability 2 * 10 * 10 / (20 * 19) = 10 / 19.
  real = {a: np.array([0, 1] * 10) for a in names}
  mentions = np.zeros((n, len(names)), bool)
  mentions[:, 0] = True  # every caption names the first attribute: left out
  mentions[1, 1] = True  # caption 1 names the second: only captions 0 and 2 count there
  pred = {a: np.zeros(n * k, int) for a in names}  # one face per caption: 0
  pred[names[1]] = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 2, 2])
  pred[names[2]] = np.array([0, 1, 2, 3, 0, 0, 1, 1, 0, 0, 0, 0]) % sizes[2]
  r = caption_eval.latent_diversity(pred, mentions, real, latents=k)
  assert f"eval/diversity/{names[0]}" not in r
  # caption 0: pairs differ 4 of 6 (2/3); caption 2: values 0,1,2,2 -> 5 of 6 differ.
  assert r[f"eval/diversity/{names[1]}"] == pytest.approx((2 / 3 + 5 / 6) / 2 / (10 / 19))
  want2 = np.mean(
    [1 - np.sum(np.bincount(g) * (np.bincount(g) - 1)) / 12 for g in pred[names[2]].reshape(n, k)]
  ) / (10 / 19)
  assert r[f"eval/diversity/{names[2]}"] == pytest.approx(want2)
  assert r[f"eval/diversity/{names[3]}"] == 0.0  # z changes nothing
  vals = [v for key, v in r.items() if key != "eval/diversity"]
  assert r["eval/diversity"] == pytest.approx(np.mean(vals))
  # as diverse as real faces: 1
  same = {a: np.tile([0, 1], n * k // 2) for a in names}
  r = caption_eval.latent_diversity(same, mentions, real, latents=k)
  assert r[f"eval/diversity/{names[3]}"] == pytest.approx((1 - 4 / 12) / (10 / 19))
  with pytest.raises(ValueError):
    caption_eval.latent_diversity(pred, mentions, real, latents=1)
