"""Tests for the synthetic cartoon faces: renderer, captions, TFDS builder, grain pipeline."""

from __future__ import annotations

import itertools
import re
import sys

import numpy as np
import pytest

from zoo.data import faces
from zoo.data.faces.pipeline import FacesSource, faces_batches

L = faces.LABEL_IDS


def _attrs(seed: int) -> dict[str, int]:
  return {k: int(v[0]) for k, v in faces.sample_attributes(np.random.default_rng(seed), 1).items()}


def _dilate(mask: np.ndarray, r: int = 1) -> np.ndarray:
  """Binary dilation by a (2r+1) x (2r+1) square."""
  h, w = mask.shape
  padded = np.pad(mask, r)
  out = np.zeros_like(mask)
  for dy in range(2 * r + 1):
    for dx in range(2 * r + 1):
      out |= padded[dy : dy + h, dx : dx + w]
  return out


def _interior(mask: np.ndarray) -> np.ndarray:
  """Pixels whose whole 3x3 neighbourhood is in ``mask``."""
  return ~_dilate(~mask, 1)


# ----------------------------------------------------------------------------- schema


def test_schema():
  required = {
    "face_shape",
    "skin_tone",
    "hair_style",
    "hair_color",
    "eyes",
    "mouth",
    "glasses",
    "background_color",
  }
  assert required <= set(faces.ATTRIBUTES)
  assert faces.ATTRIBUTES["eyes"] == ("open", "closed")
  assert set(faces.ATTRIBUTES["mouth"]) == {"closed", "smiling", "open"}
  for name, vocab in faces.ATTRIBUTES.items():
    assert len(vocab) >= 2 and len(set(vocab)) == len(vocab), name
  assert faces.LABEL_PALETTE.shape == (len(faces.LABELS), 3)
  assert len({tuple(c) for c in faces.LABEL_PALETTE.tolist()}) == len(faces.LABELS)
  assert len(faces.SKIN_TONES) == len(faces.ATTRIBUTES["skin_tone"])
  assert len(faces.HAIR_COLORS) == len(faces.ATTRIBUTES["hair_color"])
  assert len(faces.BACKGROUND_COLORS) == len(faces.ATTRIBUTES["background_color"])


def test_sample_attributes_uniform_and_deterministic():
  a = faces.sample_attributes(np.random.default_rng(0), 6000)
  b = faces.sample_attributes(np.random.default_rng(0), 6000)
  for name, vocab in faces.ATTRIBUTES.items():
    np.testing.assert_array_equal(a[name], b[name])
    assert a[name].shape == (6000,)
    freq = np.bincount(a[name], minlength=len(vocab)) / 6000
    assert len(freq) == len(vocab)
    np.testing.assert_allclose(freq, 1 / len(vocab), atol=0.03)
  # independence (spot check): joint of two attributes close to product
  joint = np.histogram2d(a["eyes"], a["mouth"], bins=(2, 3))[0] / 6000
  np.testing.assert_allclose(joint, 1 / 6, atol=0.03)


# ----------------------------------------------------------------------------- renderer


def test_make_faces_deterministic_and_seeded():
  d1 = faces.make_faces(6, seed=3, height=32, width=32)
  d2 = faces.make_faces(6, seed=3, height=32, width=32)
  d3 = faces.make_faces(6, seed=4, height=32, width=32)
  assert d1["image"].shape == (6, 32, 32, 3) and d1["image"].dtype == np.uint8
  assert d1["label_map"].shape == (6, 32, 32) and d1["label_map"].dtype == np.uint8
  assert d1["edges"].shape == (6, 32, 32, 3) and d1["edges"].dtype == np.uint8
  assert len(d1["captions"]) == 6 and all(isinstance(c, str) for c in d1["captions"])
  for k in ("image", "label_map", "edges"):
    np.testing.assert_array_equal(d1[k], d2[k])
  assert d1["captions"] == d2["captions"]
  for k in faces.ATTRIBUTE_NAMES:
    np.testing.assert_array_equal(d1["attributes"][k], d2["attributes"][k])
  assert not np.array_equal(d1["image"], d3["image"])
  assert d1["captions"] != d3["captions"]
  # examples within one stream differ, and `start` slices the same stream
  assert len({x.tobytes() for x in d1["image"]}) == 6
  tail = faces.make_faces(3, seed=3, height=32, width=32, start=3)
  np.testing.assert_array_equal(tail["image"], d1["image"][3:])
  assert tail["captions"] == d1["captions"][3:]


def test_jitter_varies_geometry_but_not_attributes():
  a = _attrs(1)
  imgs = [faces.render_face(a, height=32, width=32, rng=s) for s in range(4)]
  assert len({x.tobytes() for x in imgs}) == 4
  np.testing.assert_array_equal(
    faces.render_face(a, height=32, width=32, rng=7),
    faces.render_face(a, height=32, width=32, rng=np.random.default_rng(7)),
  )
  # rng=None is the canonical, jitter-free face
  np.testing.assert_array_equal(
    faces.render_face(a, height=32, width=32), faces.render_face(a, height=32, width=32, rng=None)
  )


@pytest.mark.parametrize("hw", [(16, 16), (64, 64), (256, 256), (48, 64), (64, 32), (17, 23)])
def test_sizes_square_and_rectangular(hw):
  h, w = hw
  a = _attrs(2)
  ex = faces.render_example(a, height=h, width=w, rng=5)
  assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8
  assert ex["label_map"].shape == (h, w) and ex["label_map"].dtype == np.uint8
  assert ex["edges"].shape == (h, w) and ex["edges"].dtype == np.uint8
  lm = ex["label_map"]
  assert lm.max() < len(faces.LABELS)
  present = set(np.unique(lm).tolist())
  assert {L["background"], L["skin"], L["clothes"]} <= present
  if min(h, w) >= 32:
    assert {L["hair"], L["eyes"], L["mouth"]} <= present
  # the face is centred and scaled to the smaller side
  ys, xs = np.nonzero(lm == L["skin"])
  assert abs(xs.mean() - (w - 1) / 2) < 0.08 * min(h, w)
  side = min(h, w)
  assert 0.3 * side < xs.max() - xs.min() + 1 < 0.8 * side
  assert lm[0, 0] == L["background"] and lm[0, -1] == L["background"]
  if w > h:  # extra width is background
    assert (lm[:, : (w - h) // 2 - 1] == L["background"]).all()
  if h > w:  # extra height above the face is background
    assert (lm[: (h - w) // 2 - 1] == L["background"]).all()


def test_views_match_render_face_and_label_map():
  a = _attrs(3)
  ex = faces.render_example(a, height=40, width=48, rng=11)
  np.testing.assert_array_equal(ex["image"], faces.render_face(a, height=40, width=48, rng=11))
  np.testing.assert_array_equal(
    ex["label_map"], faces.render_label_map(a, height=40, width=48, rng=11)
  )
  # string codes are accepted
  named = faces.attribute_names_of(a)
  np.testing.assert_array_equal(ex["image"], faces.render_face(named, height=40, width=48, rng=11))


@pytest.mark.parametrize(
  "views", [("image",), ("image", "edges"), ("label_map", "caption"), ("caption",), ()]
)
def test_make_example_makes_only_the_views_asked_for(views):
  full = faces.make_example(5, seed=2, split="train", height=40, width=32)
  assert set(full) == set(faces.VIEWS) | {"attributes"}
  ex = faces.make_example(5, seed=2, split="train", height=40, width=32, views=views)
  assert set(ex) == set(views) | {"attributes"}
  for k in views:
    if k == "caption":
      assert ex[k] == full[k]
    else:
      np.testing.assert_array_equal(ex[k], full[k])
  assert ex["attributes"] == full["attributes"]
  with pytest.raises(ValueError, match="unknown views"):
    faces.make_example(5, views=("image", "segmentation"))


def test_invalid_inputs():
  a = _attrs(0)
  with pytest.raises(ValueError):
    faces.render_face(a, height=8, width=64)
  with pytest.raises(ValueError):
    faces.render_face(a, height=64, width=300)
  with pytest.raises(KeyError):
    faces.render_face({k: v for k, v in a.items() if k != "eyes"})
  with pytest.raises(ValueError):
    faces.render_face({**a, "glasses": 7})
  with pytest.raises(ValueError):
    faces.face_split("training", 2)


# Label regions in which flipping an attribute may change pixels.
_FLIP_REGIONS = {
  "face_shape": ("skin", "hair", "glasses"),
  "skin_tone": ("skin", "nose"),
  "hair_style": ("hair",),
  "hair_color": ("hair", "eyebrows"),
  "eyes": ("eyes",),
  "mouth": ("mouth",),
  "glasses": ("glasses",),
  "background_color": ("background",),
}


@pytest.mark.parametrize("name", faces.ATTRIBUTE_NAMES)
def test_each_attribute_value_changes_its_region(name):
  for base_seed in (0, 1):
    base = _attrs(100 + base_seed)
    if name == "hair_color":
      base["hair_style"] = 1  # hair visible and large
    for v, w in itertools.combinations(range(len(faces.ATTRIBUTES[name])), 2):
      a, b = {**base, name: v}, {**base, name: w}
      # Without anti-aliasing (supersample=1) each pixel shows exactly one part,
      # so changed pixels must lie exactly in the attribute's label region.
      x, y = (
        faces.render_example(t, height=64, width=64, rng=base_seed, supersample=1) for t in (a, b)
      )
      diff = np.any(x["image"] != y["image"], axis=-1)
      assert diff.sum() >= 4, (name, v, w)  # the value is visible
      region = np.zeros_like(diff)
      for lab in _FLIP_REGIONS[name]:
        region |= (x["label_map"] == L[lab]) | (y["label_map"] == L[lab])
      outside = diff & ~region
      assert outside.sum() == 0, (name, v, w, np.argwhere(outside)[:5])
      # Anti-aliased: changes stay within a pixel of the region.
      x, y = (faces.render_example(t, height=64, width=64, rng=base_seed) for t in (a, b))
      diff = np.any(x["image"] != y["image"], axis=-1)
      assert diff.sum() >= 4, (name, v, w)
      region = np.zeros_like(diff)
      for lab in _FLIP_REGIONS[name]:
        region |= (x["label_map"] == L[lab]) | (y["label_map"] == L[lab])
      assert (diff & ~_dilate(region, 1)).sum() <= 0.02 * diff.sum(), (name, v, w)


def test_label_map_aligned_with_colours():
  d = faces.make_faces(12, seed=5, height=64, width=64)
  checked = 0
  for i in range(12):
    a = {k: int(v[i]) for k, v in d["attributes"].items()}
    img, lm = d["image"][i].astype(int), d["label_map"][i]
    for lab, table, key in (
      ("hair", faces.HAIR_COLORS, "hair_color"),
      ("skin", faces.SKIN_TONES, "skin_tone"),
      ("background", faces.BACKGROUND_COLORS, "background_color"),
    ):
      inner = _interior(lm == L[lab])
      if inner.sum() == 0:
        continue
      ref = table[a[key]]
      err = np.abs(img[inner] - ref).max(-1)
      tol = 10  # colour jitter is at most 8 per channel
      if lab == "skin":  # ears are slightly shaded (and may blend with the face)
        err = np.minimum(err, np.abs(img[inner] - 0.93 * ref).max(-1))
        tol = 16
      err = err.max()
      assert err <= tol, (i, lab, err)
      checked += 1
    eyes = lm == L["eyes"]
    assert eyes.sum() > 0
    white = (img[eyes].min(axis=-1) > 200).sum()
    if a["eyes"] == 0:
      assert white >= 2, i  # open eyes show their white
    else:
      assert white == 0, i
    glasses = lm == L["glasses"]
    if a["glasses"]:
      assert glasses.sum() > 20 and img[_interior(glasses) | glasses].mean() < 90
    else:
      assert glasses.sum() == 0
  assert checked >= 30


def test_edge_map_unit():
  lm = np.zeros((6, 8), np.uint8)
  lm[:, 4:] = 1
  e = faces.edge_map(lm)
  assert e.dtype == np.uint8 and set(np.unique(e)) == {0, 255}
  assert (e[:, 3] == 0).all() and (np.delete(e, 3, axis=1) == 255).all()
  assert faces.edge_map(lm, rgb=True).shape == (6, 8, 3)
  img = np.zeros((6, 8, 3), np.uint8)
  img[3:] = 200
  e = faces.edge_map(img)
  assert (e[2] == 0).all() and (np.delete(e, 2, axis=0) == 255).all()
  assert (faces.edge_map(np.zeros((5, 5), np.uint8)) == 255).all()


def test_edges_nontrivial_and_aligned():
  d = faces.make_faces(6, seed=9, height=64, width=64)
  for i in range(6):
    e = d["edges"][i]
    assert (e[..., 0] == e[..., 1]).all() and (e[..., 0] == e[..., 2]).all()
    lines = e[..., 0] == 0
    assert set(np.unique(e)) == {0, 255}
    assert 0.03 < lines.mean() < 0.4
    # lines follow the segmentation: label boundaries are covered by edge lines
    label_lines = faces.edge_map(d["label_map"][i]) == 0
    assert (label_lines & ~_dilate(lines, 1)).sum() <= 0.02 * label_lines.sum()
    # ... and lie on colour jumps of the image
    colour_lines = faces.edge_map(d["image"][i], threshold=20) == 0
    assert (lines & _dilate(colour_lines, 1)).sum() >= 0.97 * lines.sum()
    assert 0.03 < lines.mean()
  # the edges of a different face are not aligned with this one
  other = d["edges"][1][..., 0] == 0
  assert (d["edges"][0][..., 0] == 0).sum() != (other & (d["edges"][0][..., 0] == 0)).sum()


def test_colorize_and_one_hot():
  lm = np.arange(len(faces.LABELS), dtype=np.uint8).reshape(1, -1)
  np.testing.assert_array_equal(faces.colorize_label_map(lm)[0], faces.LABEL_PALETTE)
  a = faces.sample_attributes(np.random.default_rng(0), 5)
  oh = faces.one_hot_attributes(a)
  assert oh.shape == (5, sum(faces.ATTRIBUTE_SIZES)) and oh.dtype == np.float32
  np.testing.assert_array_equal(oh.sum(-1), len(faces.ATTRIBUTES))
  off = 0
  for name, size in zip(faces.ATTRIBUTE_NAMES, faces.ATTRIBUTE_SIZES):
    np.testing.assert_array_equal(oh[:, off : off + size].argmax(-1), a[name])
    off += size


# ----------------------------------------------------------------------------- captions


def _mention_patterns(name: str, value: str) -> str:
  if name == "face_shape":
    return rf"\b{value}(-shaped)? face\b"
  if name == "skin_tone":
    return rf"\b{value} skin"
  if name == "hair_color":
    return rf"\b{value} hair\b"
  if name == "hair_style":
    return {
      "bald": r"\bbald\b",
      "short": r"\bshort\b",
      "long": r"\blong\b|down to the shoulders",
      "bun": r"\bbun\b",
      "curly": r"\bcurly\b",
    }[value]
  if name == "eyes":
    return rf"\b{value} eyes\b|\beyes (wide )?{value}\b"
  if name == "mouth":
    return {
      "closed": r"closed mouth|mouth closed",
      "smiling": r"\bsmil",
      "open": r"open mouth|mouth wide open",
    }[value]
  if name == "glasses":
    return {
      "none": r"\bno glasses\b",
      "round": r"\bround(-rimmed)? glasses",
      "square": r"\bsquare(-framed)? glasses",
    }[value]
  if name == "background_color":
    return rf"\b{value} (background|backdrop)\b|background is {value}\b"
  raise KeyError(name)


def test_captions_mention_every_attribute_and_nothing_else():
  rng = np.random.default_rng(0)
  attrs = faces.sample_attributes(rng, 300)
  for i in range(300):
    a = {k: int(v[i]) for k, v in attrs.items()}
    text = faces.caption(a, rng)
    assert text[0].isupper() and text.endswith("."), text
    for name, vocab in faces.ATTRIBUTES.items():
      for code, value in enumerate(vocab):
        found = re.search(_mention_patterns(name, value), text) is not None
        assert found == (code == a[name]), (name, value, text)


def test_captions_vary_and_are_deterministic():
  a = _attrs(4)
  texts = [faces.caption(a, np.random.default_rng(s)) for s in range(30)]
  assert len(set(texts)) >= 10
  # word order varies: the first-mentioned attribute is not always the same
  firsts = {
    min(
      (m.start(), n)
      for n in faces.ATTRIBUTE_NAMES
      if (m := re.search(_mention_patterns(n, faces.ATTRIBUTES[n][a[n]]), t))
    )[1]
    for t in texts
  }
  assert len(firsts) >= 3
  assert faces.caption(a, np.random.default_rng(3)) == faces.caption(a, np.random.default_rng(3))
  assert faces.caption(a, 3) == faces.caption(a, 3)


def test_captions_random_subset():
  rng = np.random.default_rng(1)
  counts = []
  for _ in range(200):
    a = _attrs(int(rng.integers(1 << 30)))
    text = faces.caption(a, rng, all_attributes=False)
    mentioned = [
      n
      for n in faces.ATTRIBUTE_NAMES
      if re.search(_mention_patterns(n, faces.ATTRIBUTES[n][a[n]]), text)
    ]
    wrong = [
      n
      for n in faces.ATTRIBUTE_NAMES
      for c, v in enumerate(faces.ATTRIBUTES[n])
      if c != a[n] and re.search(_mention_patterns(n, v), text)
    ]
    assert mentioned and not wrong, text
    counts.append(len(mentioned))
  assert min(counts) <= 2 and max(counts) == len(faces.ATTRIBUTES)


# ----------------------------------------------------------------------------- splits


def test_face_split_disjoint_streams():
  s = {sp: faces.face_split(sp, 4, seed=0, height=32, width=32) for sp in faces.SPLITS}
  for x, y in itertools.combinations(faces.SPLITS, 2):
    for i, j in itertools.product(range(4), range(4)):
      assert not np.array_equal(s[x]["image"][i], s[y]["image"][j])
  again = faces.face_split("valid", 4, seed=0, height=32, width=32)
  np.testing.assert_array_equal(again["image"], s["valid"]["image"])
  assert not np.array_equal(
    faces.face_split("valid", 4, seed=1, height=32, width=32)["image"], s["valid"]["image"]
  )


def test_make_faces_is_fast():
  import time

  t = time.perf_counter()
  faces.make_faces(100, seed=0, height=64, width=64)
  assert time.perf_counter() - t < 5.0  # ~0.2 s normally; 1000 faces take a few seconds


# ----------------------------------------------------------------------------- TFDS


def test_tfds_prepare_and_read_without_tensorflow(tmp_path):
  had_tf = "tensorflow" in sys.modules
  from zoo.data.faces.tfds import Faces

  builder = Faces(config="tiny", data_dir=str(tmp_path), file_format="array_record")
  builder.download_and_prepare()
  sources = builder.as_data_source()
  c = builder.builder_config
  assert {k: len(v) for k, v in sources.items()} == {
    "train": c.num_train,
    "valid": c.num_valid,
    "test": c.num_test,
  }
  assert builder.info.features["hair_style"].names == list(faces.ATTRIBUTES["hair_style"])
  for split, i in (("train", 0), ("train", c.num_train - 1), ("test", 5)):
    rec = sources[split][i]
    ref = faces.make_example(i, seed=c.seed, split=split, height=c.height, width=c.width)
    assert int(rec["index"]) == i
    np.testing.assert_array_equal(rec["image"], ref["image"])
    np.testing.assert_array_equal(rec["label_map"], ref["label_map"])
    np.testing.assert_array_equal(rec["edges"], ref["edges"])
    cap = rec["caption"]
    assert (cap.decode() if isinstance(cap, bytes) else cap) == ref["caption"]
    for name in faces.ATTRIBUTE_NAMES:
      assert int(rec[name]) == ref["attributes"][name]
  if not had_tf:
    assert "tensorflow" not in sys.modules


# ----------------------------------------------------------------------------- grain


def test_faces_source_deterministic_and_grain_compatible():
  import grain

  src = FacesSource("train", size=(32, 48), num_examples=50, seed=2)
  assert len(src) == 50
  x, y = src[7], FacesSource("train", size=(32, 48), num_examples=50, seed=2)[7]
  np.testing.assert_array_equal(x["image"], y["image"])
  assert x["image"].shape == (32, 48, 3) and x["label_map"].shape == (32, 48)
  assert x["edges"].shape == (32, 48, 3) and isinstance(x["caption"], str)
  ref = faces.face_split("train", 8, seed=2, height=32, width=48)
  np.testing.assert_array_equal(x["image"], ref["image"][7])
  assert x["caption"] == ref["captions"][7]
  assert {k: int(v) for k, v in x["attributes"].items()} == {
    k: int(v[7]) for k, v in ref["attributes"].items()
  }
  assert not np.array_equal(FacesSource("train", size=(32, 48), seed=3)[7]["image"], x["image"])
  assert not np.array_equal(FacesSource("test", size=(32, 48), seed=2)[7]["image"], x["image"])
  with pytest.raises(IndexError):
    src[50]
  ds = grain.MapDataset.source(src)
  assert len(ds) == 50
  np.testing.assert_array_equal(ds[7]["image"], x["image"])
  batched = ds.batch(4)
  assert batched[1]["image"].shape == (4, 32, 48, 3)
  np.testing.assert_array_equal(batched[1]["image"][3], x["image"])


_VIEWS = (
  "image",
  "image_uint8",
  "label_map",
  "edges",
  "attributes",
  "attributes_onehot",
  "caption",
)


def _assert_batches_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    if k == "attributes":
      for n in faces.ATTRIBUTE_NAMES:
        np.testing.assert_array_equal(a[k][n], b[k][n])
    elif k == "caption":
      assert a[k] == b[k]
    else:
      np.testing.assert_array_equal(a[k], b[k])


def test_faces_batches_layout_and_determinism():
  kw = dict(batch_size=4, size=32, num_examples=24, views=_VIEWS)
  s1 = faces_batches("train", seed=0, **kw)
  b = s1.batch(3)
  assert b["image"].shape == (4, 32, 32, 3) and b["image"].dtype == np.float32
  assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0
  np.testing.assert_allclose(b["image"], b["image_uint8"] / 127.5 - 1.0, atol=1e-5)
  assert b["label_map"].shape == (4, 32, 32) and b["label_map"].dtype == np.int32
  assert b["edges"].shape == (4, 32, 32, 3) and b["edges"].max() == 1.0
  assert all(v.dtype == np.int32 and v.shape == (4,) for v in b["attributes"].values())
  assert b["attributes_onehot"].shape == (4, sum(faces.ATTRIBUTE_SIZES))
  assert len(b["caption"]) == 4 and all(isinstance(c, str) for c in b["caption"])
  for j, i in enumerate(b["index"]):
    ex = s1.source[int(i)]
    np.testing.assert_array_equal(b["image_uint8"][j], ex["image"])
    assert b["caption"][j] == ex["caption"]
  _assert_batches_equal(b, faces_batches("train", seed=0, **kw).batch(3))
  assert not np.array_equal(faces_batches("train", seed=1, **kw).batch(3)["image"], b["image"])
  # each epoch is a permutation (no repeats), reshuffled between epochs
  assert len(s1) == 6
  ep0 = np.concatenate([s1.global_indices(k) for k in range(6)])
  ep1 = np.concatenate([s1.global_indices(k) for k in range(6, 12)])
  assert sorted(ep0.tolist()) == list(range(24)) == sorted(ep1.tolist())
  assert not np.array_equal(ep0, ep1)


def test_faces_batches_sharding():
  kw = dict(batch_size=6, size=16, num_examples=30, seed=4, views=_VIEWS)
  whole = faces_batches("valid", **kw)
  shards = [faces_batches("valid", process_index=p, process_count=2, **kw) for p in range(2)]
  for step in (0, 4, 7):  # 7 is in the second epoch
    full = whole.batch(step)
    parts = [s.batch(step) for s in shards]
    assert parts[0]["image"].shape[0] == 3
    cat = {}
    for k in full:
      if k == "attributes":
        cat[k] = {n: np.concatenate([p[k][n] for p in parts]) for n in faces.ATTRIBUTE_NAMES}
      elif k == "caption":
        cat[k] = parts[0][k] + parts[1][k]
      else:
        cat[k] = np.concatenate([p[k] for p in parts])
    _assert_batches_equal(full, cat)
    assert not set(parts[0]["index"].tolist()) & set(parts[1]["index"].tolist())
  with pytest.raises(ValueError):
    faces_batches("valid", process_index=0, process_count=4, **kw)


def test_faces_batches_resume():
  s = faces_batches(
    "train",
    batch_size=4,
    size=16,
    num_examples=20,
    seed=5,
    views=("image", "attributes", "caption"),
  )
  it = s.iterate(5)
  first, second = next(it), next(it)
  _assert_batches_equal(first, s.batch(5))
  _assert_batches_equal(second, s.batch(6))
  assert not np.array_equal(first["index"], second["index"])
  got = list(s.iterate(2, num_steps=3))
  assert len(got) == 3
  for k, b in zip((2, 3, 4), got):
    _assert_batches_equal(b, s.batch(k))


def _naive_block_mode(a, ss, ids):
  h, w = a.shape[0] // ss, a.shape[1] // ss
  out = np.zeros((h, w), np.uint8)
  for i in range(h):
    for j in range(w):
      block = a[i * ss : (i + 1) * ss, j * ss : (j + 1) * ss].ravel().tolist()
      votes = {k: block.count(k) for k in ids}
      out[i, j] = min(ids, key=lambda k: (-votes[k], k))  # most votes, then smaller id
  return out


@pytest.mark.parametrize("ss", [2, 4])
def test_block_mode_is_the_majority_with_ties_to_the_smaller_id(ss):
  from PIL import Image

  rng = np.random.default_rng(ss)
  a = np.repeat(np.repeat(rng.integers(0, 6, (6, 5)), ss, 0), ss, 1).astype(np.uint8)
  a[:ss, :] = rng.integers(0, 6, (ss, a.shape[1]))  # mixed blocks, ties included
  a[-ss:, :ss] = [[3, 1] * (ss // 2)] * ss  # an exact tie between 1 and 3
  got = faces._block_mode(Image.fromarray(a), ss, range(6))  # pylint: disable=protected-access
  np.testing.assert_array_equal(got, _naive_block_mode(a, ss, range(6)))
  assert got[-1, 0] == 1
