"""Caption datasets from a local folder (zoo.data.captions): Reed and Face2Text formats, TFDS."""

import csv
import hashlib
import json
import sys

import numpy as np
import pytest
from PIL import Image

from zoo.data import captions as cap
from zoo.data.captions import CaptionDataError, open_captions
from zoo.data.images.unconditional import center_crop_resize
from zoo.errors import ConfigError, ZooError

SIZE = (16, 24)


def _image(path, w, h, seed, mode="RGB"):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  img = Image.fromarray(x)
  img = img.convert(mode) if mode != "RGB" else img
  img.save(path)
  return path


def _lines(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return path


def _ten(name):
  return [f"{name} caption {k}" for k in range(10)]


# Class dir -> image names (CUB-like layout); sizes vary on purpose.
CUB = {
  "001.Black_footed_Albatross": ["Black_Footed_Albatross_0001", "Black_Footed_Albatross_0002"],
  "002.Laysan_Albatross": ["Laysan_Albatross_0001"],
  "003.Sooty_Albatross": ["Sooty_Albatross_0001", "Sooty_Albatross_0002"],
}


def make_cub(root, *, trainval=True, test=True, allclasses=True):
  sizes = [(40, 30), (20, 50), (64, 64), (33, 17), (24, 16)]
  k = 0
  for cls, names in CUB.items():
    for name in names:
      ext = ".png" if k == 1 else ".jpg"
      w, h = sizes[k % len(sizes)]
      _image(root / "images" / cls / f"{name}{ext}", w, h, seed=k)
      caps = _ten(name)
      if k == 0:
        caps = ["", caps[0], "   ", *caps[1:], ""]  # empty lines are skipped
      _lines(root / "text_c10" / cls / f"{name}.txt", caps)
      k += 1
  # Reed's own Torch files sit next to the data; they are never read.
  (root / "images" / "001.Black_footed_Albatross.t7").write_bytes(b"\x80torch")
  (root / "text_c10" / "001.Black_footed_Albatross.t7").write_bytes(b"\x80torch")
  classes = list(CUB)
  if allclasses:
    _lines(root / "allclasses.txt", classes)
  if trainval:
    _lines(root / "trainvalclasses.txt", [classes[1], classes[0], ""])
  if test:
    _lines(root / "testclasses.txt", [classes[2]])
  return root


def make_flowers(root):
  for i in range(1, 7):
    name = f"image_{i:05d}"
    _image(root / "jpg" / f"{name}.jpg", 30 + 3 * i, 25 + 2 * i, seed=100 + i)
    _lines(root / "text_c10" / f"class_{1 + (i - 1) // 2:05d}" / f"{name}.txt", _ten(name))
  _lines(root / "trainvalclasses.txt", ["class_00001", "class_00002"])
  _lines(root / "valclasses.txt", ["class_00002"])
  _lines(root / "testclasses.txt", ["class_00003"])
  return root


FACES = [f"faces/{i:03d}.png" for i in range(20)]
FALLBACK_TEST = ["faces/008.png", "faces/016.png"]  # pinned: fallback_split is SHA-256 based


def face_rows():
  """(image, caption, split) rows: two captions for the even images, one for the odd ones."""
  rows = []
  for i, name in enumerate(FACES):
    split = "test" if i % 5 == 0 else "train"
    rows.append((name, f"a face number {i}, smiling", split))
    if i % 2 == 0:
      rows.append((name, f'she has "dark" hair {i}', split))
  return rows


def make_faces(root, kind="json", *, with_split=False):
  for i, name in enumerate(FACES):
    _image(root / name, 20 + i, 28 - i % 7, seed=200 + i, mode="L" if i == 3 else "RGB")
  rows = face_rows()
  if kind == "json":
    by_image = {}
    for image, text, split in rows:
      by_image.setdefault(image, []).append(text)
    items = []
    for image, texts in by_image.items():
      item = {"image": image, "caption": texts[0] if len(texts) == 1 else texts}
      if with_split:
        item["split"] = next(s for im, _, s in rows if im == image)
      items.append(item)
    (root / "captions.json").write_text(json.dumps(items), encoding="utf-8")
  else:
    delim = "," if kind == "csv" else "\t"
    header = ["image", "caption"] + (["split"] if with_split else []) + ["annotator"]
    path = root / f"captions.{kind}"
    with path.open("w", newline="", encoding="utf-8") as f:
      if kind == "csv":
        w = csv.writer(f)
        w.writerow(header)
        for image, text, split in rows:
          w.writerow([image, text] + ([split] if with_split else []) + ["x"])
      else:
        f.write(delim.join(header) + "\n")
        for image, text, split in rows:
          f.write(delim.join([image, text] + ([split] if with_split else []) + ["x"]) + "\n")
  return root


# ----------------------------------------------------------------------------- Reed


def test_reed_cub_splits_captions_labels_and_resizing(tmp_path):
  root = make_cub(tmp_path / "cvpr2016_cub")
  assert cap.detect_format(root) == "reed"
  assert cap.available_splits(root) == ("train", "test")
  train = open_captions(root, "train", SIZE)
  test = open_captions(root, "test", 16)
  assert train.format == "reed" and train.class_names == tuple(CUB)
  assert train.filenames == (
    "001.Black_footed_Albatross/Black_Footed_Albatross_0001.jpg",
    "001.Black_footed_Albatross/Black_Footed_Albatross_0002.png",
    "002.Laysan_Albatross/Laysan_Albatross_0001.jpg",
  )
  assert train.labels == (0, 0, 1) and test.labels == (2, 2) and len(test) == 2
  ex = train[0]
  assert set(ex) == {"image", "captions", "label", "index"}
  assert ex["captions"] == tuple(_ten("Black_Footed_Albatross_0001"))  # empty lines skipped
  assert ex["label"] == 0 and ex["index"] == 0 and isinstance(ex["label"], int)
  assert len(train[2]["captions"]) == 10 and train[-1]["index"] == 2
  for src in (train, test):
    for i in range(len(src)):
      img = src[i]["image"]
      assert img.dtype == np.uint8 and img.shape == (*src.size, 3)
      with Image.open(src.paths[i]) as im:
        np.testing.assert_array_equal(img, center_crop_resize(im, src.size))
  assert test[0]["image"].shape == (16, 16, 3)
  with pytest.raises(IndexError):
    train[3]
  with pytest.raises(CaptionDataError, match="valclasses.txt"):
    open_captions(root, "validation", SIZE)
  with pytest.raises(ConfigError):
    open_captions(root, "dev", SIZE)


def test_reed_flowers_flat_image_folder_and_validation(tmp_path):
  root = make_flowers(tmp_path / "cvpr2016_flowers")
  assert cap.available_splits(root) == ("train", "validation", "test")
  train = open_captions(root, "train", SIZE, format="reed")
  val = open_captions(root, "valid", SIZE)
  test = open_captions(root, "test", SIZE, cache=True)
  assert train.image_dir == root / "jpg" and train.class_names == (
    "class_00001",
    "class_00002",
    "class_00003",
  )
  assert train.filenames == tuple(f"image_{i:05d}.jpg" for i in range(1, 5))
  assert train.labels == (0, 0, 1, 1) and val.labels == (1, 1) and test.labels == (2, 2)
  assert val.split == "validation" and val.filenames == train.filenames[2:]
  assert test[1]["captions"] == tuple(_ten("image_00006"))
  assert test[1]["image"] is test[1]["image"]  # cached
  assert train[3]["image"].shape == (16, 24, 3)


def test_reed_split_files_are_optional(tmp_path):
  root = make_cub(tmp_path / "a", trainval=False, allclasses=False)
  src = open_captions(root, "train", SIZE)
  assert src.labels == (0, 0, 1)  # every class not in testclasses.txt
  root = make_cub(tmp_path / "b", trainval=False, test=False)
  assert len(open_captions(root, "train", SIZE)) == 5
  assert cap.available_splits(root) == ("train",)
  with pytest.raises(CaptionDataError, match="testclasses.txt") as e:
    open_captions(root, "test", SIZE)
  assert "\n" not in str(e.value)


def test_image_dir_outside_root(tmp_path):
  root = make_cub(tmp_path / "cub")
  (root / "images").rename(tmp_path / "CUB_200_2011_images")
  with pytest.raises(CaptionDataError, match="no image folder"):
    open_captions(root, "train", SIZE)
  src = open_captions(root, "train", SIZE, image_dir=tmp_path / "CUB_200_2011_images")
  assert len(src) == 3


# ----------------------------------------------------------------------------- Face2Text


@pytest.mark.parametrize("kind", ["json", "csv", "tsv"])
def test_face2text_formats_agree_with_explicit_split(tmp_path, kind):
  root = make_faces(tmp_path / kind, kind, with_split=True)
  assert cap.detect_format(root) == "face2text"
  train = open_captions(root, "train", SIZE)
  test = open_captions(root, "test", SIZE)
  assert test.filenames == tuple(FACES[::5]) and len(train) == 16
  assert set(train.filenames) | set(test.filenames) == set(FACES)
  assert train.labels == (-1,) * 16 and train.class_names == ()
  ex = test[0]
  assert ex["captions"] == ("a face number 0, smiling", 'she has "dark" hair 0')
  assert ex["label"] == -1 and ex["image"].shape == (16, 24, 3)
  i = train.filenames.index("faces/003.png")  # greyscale, 23x25
  assert train[i]["captions"] == ("a face number 3, smiling",)
  assert train[i]["image"].shape == (16, 24, 3)
  assert {train[j]["image"].shape for j in range(len(train))} == {(16, 24, 3)}


def test_face2text_fallback_split_is_deterministic(tmp_path):
  root = make_faces(tmp_path / "f", "csv")
  for name in FACES:
    digest = hashlib.sha256(name.encode()).hexdigest()
    assert cap.fallback_split(name) == ("test" if int(digest[:8], 16) % 10 == 0 else "train")
  test = open_captions(root, "test", SIZE)
  assert test.filenames == tuple(FALLBACK_TEST)
  train = open_captions(root, "train", SIZE)
  assert train.filenames == tuple(n for n in FACES if n not in FALLBACK_TEST)
  again = open_captions(make_faces(tmp_path / "g", "json"), "train", SIZE)
  assert again.filenames == train.filenames and again.captions == train.captions
  assert cap.available_splits(root) == ("train", "test")
  with pytest.raises(CaptionDataError, match="holds no images"):
    open_captions(root, "validation", SIZE)


# ----------------------------------------------------------------------------- stream


def test_sharded_stream_batches(tmp_path):
  src = open_captions(make_faces(tmp_path / "f", "json"), "train", SIZE)
  stream = cap.caption_batches(src, batch_size=4, seed=3)
  a, b = stream.batch(2), stream.batch(2)
  assert a["image"].shape == (4, 16, 24, 3) and a["image"].dtype == np.float32
  assert a["label"].dtype == np.int32 and a["index"].dtype == np.int64
  assert a["caption"] == b["caption"] and len(a["captions"]) == 4
  for c, cs, i in zip(a["caption"], a["captions"], a["index"]):
    assert c in cs and cs == src.captions[int(i)]
  np.testing.assert_array_equal(a["image_uint8"], b["image_uint8"])
  assert len(next(iter(stream.iterate(0, 1)))["caption"]) == 4


# ----------------------------------------------------------------------------- bad input


def _corrupt(root):
  (root / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0001.jpg").write_bytes(b"junk")


def _only_t7(root):
  for p in (root / "images").rglob("*.*g"):
    p.unlink()


def _caption_without_image(root):
  _lines(root / "text_c10" / "002.Laysan_Albatross" / "Laysan_Albatross_0099.txt", ["a bird"])


def _image_without_caption(root):
  _image(root / "images" / "003.Sooty_Albatross" / "Sooty_Albatross_0077.jpg", 9, 9, 0)


def _empty_captions(root):
  _lines(root / "text_c10" / "001.Black_footed_Albatross" / "Black_Footed_Albatross_0002.txt", [])


def _overlap(root):
  _lines(root / "testclasses.txt", ["003.Sooty_Albatross", "002.Laysan_Albatross"])


def _unknown_class(root):
  _lines(root / "trainvalclasses.txt", ["001.Black_footed_Albatross", "004.Nope"])


REED_BAD = [
  (_corrupt, "Laysan_Albatross_0001.jpg", "unreadable image"),
  (_only_t7, "images", "no images"),
  (_caption_without_image, "Laysan_Albatross_0099.txt", "Laysan_Albatross_0099.jpg"),
  (_image_without_caption, "Sooty_Albatross_0077.jpg", "Sooty_Albatross_0077.txt"),
  (_empty_captions, "Black_Footed_Albatross_0002.txt", "all lines are empty"),
  (_overlap, "trainvalclasses.txt", "testclasses.txt"),
  (_unknown_class, "trainvalclasses.txt", "004.Nope"),
]


@pytest.mark.parametrize("damage,names,also", REED_BAD, ids=[f[0].__name__ for f in REED_BAD])
def test_reed_bad_input_is_one_line(tmp_path, damage, names, also):
  root = make_cub(tmp_path / "cub")
  damage(root)
  with pytest.raises(CaptionDataError) as e:
    open_captions(root, "train", SIZE)
  msg = str(e.value)
  assert isinstance(e.value, ZooError) and isinstance(e.value, ValueError)
  assert "\n" not in msg and names in msg and also in msg, msg


def _json(root, items):
  (root / "captions.json").write_text(json.dumps(items), encoding="utf-8")


FACE_BAD = [
  (lambda r: _json(r, [{"image": "faces/404.png", "caption": "x"}]), "404.png", "entry 0"),
  (lambda r: _json(r, []), "captions.json", "no images"),
  (lambda r: _json(r, {"image": "a"}), "captions.json", "list"),
  (lambda r: (r / "captions.json").write_text("[{", encoding="utf-8"), "captions.json", "JSON"),
  (
    lambda r: _json(r, [{"image": FACES[0], "caption": ["", " "]}]),
    "captions.json",
    "faces/000.png",
  ),
  (lambda r: _json(r, [{"image": "/etc/passwd", "caption": "x"}]), "captions.json", "relative"),
  (lambda r: _json(r, [{"image": "../x.png", "caption": "x"}]), "captions.json", "relative"),
  (
    lambda r: _json(
      r,
      [
        {"image": FACES[0], "caption": "x", "split": "train"},
        {"image": FACES[1], "caption": "y"},
      ],
    ),
    "entry 1",
    "no split",
  ),
  (
    lambda r: _json(
      r,
      [
        {"image": FACES[0], "caption": "x", "split": "train"},
        {"image": FACES[0], "caption": "y", "split": "test"},
      ],
    ),
    "entry 1",
    "entry 0",
  ),
  (
    lambda r: _json(r, [{"image": FACES[0], "caption": "x", "split": "holdout"}]),
    "entry 0",
    "holdout",
  ),
  (lambda r: _lines(r / "captions.csv", ["image,text", "a.png,x"]), "captions.csv", "'caption'"),
  (lambda r: _lines(r / "captions.tsv", ["image\tcaption"]), "captions.tsv", "no images"),
  (lambda r: (r / FACES[2]).write_bytes(b"\x89PNG\r\n\x1a\nbroken"), "faces/002.png", "unreadable"),
]


@pytest.mark.parametrize("damage,names,also", FACE_BAD, ids=[str(i) for i in range(len(FACE_BAD))])
def test_face2text_bad_input_is_one_line(tmp_path, damage, names, also):
  root = make_faces(tmp_path / "f", "json")
  if not (names.startswith("faces/") and "unreadable" in also):
    (root / "captions.json").unlink()
  damage(root)
  with pytest.raises(CaptionDataError) as e:
    open_captions(root, "train", SIZE)
  msg = str(e.value)
  assert isinstance(e.value, ZooError) and "\n" not in msg
  assert names in msg and also in msg, msg


def test_root_and_format_errors(tmp_path):
  with pytest.raises(CaptionDataError, match="nowhere.*does not exist"):
    open_captions(tmp_path / "nowhere", "train", SIZE)
  (tmp_path / "empty").mkdir()
  with pytest.raises(CaptionDataError, match="not a caption dataset"):
    open_captions(tmp_path / "empty", "train", SIZE)
  root = make_faces(tmp_path / "two", "json")
  _lines(root / "captions.csv", ["image,caption"])
  with pytest.raises(CaptionDataError, match="captions.json and captions.csv"):
    open_captions(root, "train", SIZE)
  with pytest.raises(CaptionDataError, match="text_c10"):
    open_captions(make_faces(tmp_path / "f", "json"), "train", SIZE, format="reed")
  with pytest.raises(ConfigError):
    open_captions(tmp_path / "f", "train", SIZE, format="coco")
  with pytest.raises(ConfigError):
    open_captions(tmp_path / "f", "train", (0, 8))


def test_corrupt_payload_found_on_read(tmp_path):
  root = make_cub(tmp_path / "cub")
  p = root / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0001.jpg"
  p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # truncated data
  src = open_captions(root, "train", SIZE, verify=False)
  with pytest.raises(CaptionDataError, match="Laysan_Albatross_0001.jpg") as e:
    src[2]
  assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- TFDS


def test_tfds_builder_prepares_the_same_examples(tmp_path):
  had_tf = "tensorflow" in sys.modules
  data_dir = tmp_path / "tfds"
  for root, fmt, splits in (
    (make_flowers(tmp_path / "flowers"), "reed", ("train", "validation", "test")),
    (make_faces(tmp_path / "faces", "tsv"), "face2text", ("train", "test")),
  ):
    prepared = cap.prepare_captions(root, size=SIZE, data_dir=data_dir)
    assert sorted(prepared) == sorted(splits)
    assert (data_dir / "zoo_captions" / f"{fmt}_16x24" / "1.0.0").is_dir()
    for split in splits:
      ref, got = open_captions(root, split, SIZE), prepared[split]
      assert len(got) == len(ref)
      for i in range(len(ref)):
        a, b = ref[i], got[i]
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["captions"] == b["captions"] and a["label"] == b["label"]
        assert a["index"] == b["index"] == i and got.filename(i) == ref.filenames[i]
  builder = cap.CaptionedImagesBuilder(
    config="reed_64", data_dir=str(data_dir), file_format="array_record"
  )
  assert builder.builder_config.format == "reed" and "text_c10" in (
    builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  )
  assert cap.captions_config("reed", 64) is builder.builder_config
  if not had_tf:
    assert "tensorflow" not in sys.modules


def test_tfds_missing_manual_dir_is_one_line(tmp_path):
  with pytest.raises(CaptionDataError, match="nothere") as e:
    cap.prepare_captions(tmp_path / "nothere", format="reed", data_dir=tmp_path / "tfds")
  assert "\n" not in str(e.value)
