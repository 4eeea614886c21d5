"""Grain training stream and eval batches (zoo.data.sketches.pipeline)."""

import numpy as np
import pytest

from zoo.data.sketches import strokes as S
from zoo.data.sketches.pipeline import SketchTrainStream, eval_batches, prepare_splits
from zoo.data.sketches.synthetic import make_synthetic_sketches

MAX_LEN = 100


@pytest.fixture(scope="module")
def data():
  splits = make_synthetic_sketches(seed=1, num_train=40, num_valid=13, num_test=5)
  return prepare_splits(splits, max_seq_len=MAX_LEN)


def stream(data, **kw):
  splits, max_len, scale = data
  args = dict(batch_size=8, max_seq_len=max_len, scale_factor=scale, seed=0, num_threads=2)
  args.update(kw)
  return SketchTrainStream(splits["train"], **args)


def assert_batches_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_prepare_splits():
  raw = {
    "train": [np.array([[2000, 0, 0], [0, 4, 1]], np.int16), np.zeros((5, 3), np.int16)],
    "valid": [np.zeros((7, 3), np.int16)],
    "test": [np.zeros((2, 3), np.int16)],
  }
  raw["train"][1][:, 0] = 3
  out, max_len, scale = prepare_splits(raw)
  assert max_len == 7 and len(out["valid"]) == 1
  assert (
    out["train"][0].dtype == np.float32 and out["train"][0][0, 0] == 1000
  )  # clamped, not normalised
  assert scale == pytest.approx(S.normalizing_scale_factor(out["train"]))
  out, max_len, _ = prepare_splits(raw, max_seq_len=4)
  assert max_len == 4 and len(out["train"]) == 1 and out["valid"] == [] and len(out["test"]) == 1


def test_batch_format(data):
  st = stream(data)
  b = st.batch(0)
  assert set(b) == {"strokes", "seq_len"}
  assert b["strokes"].shape == (8, MAX_LEN + 1, 5) and b["strokes"].dtype == np.float32
  assert b["seq_len"].shape == (8,) and b["seq_len"].dtype == np.int32
  np.testing.assert_array_equal(b["strokes"][:, 0], [[0, 0, 1, 0, 0]] * 8)
  for row, n in zip(b["strokes"], b["seq_len"]):
    assert (row[1 : n + 1, 4] == 0).all() and (row[n + 1 :, 4] == 1).all()
    np.testing.assert_array_equal(row[1 : n + 1, 2] + row[1 : n + 1, 3], 1)


def test_no_augmentation_gives_normalised_sketches(data):
  splits, max_len, scale = data
  st = stream(data, random_scale_factor=0.0, augment_stroke_prob=0.0)
  b = st.batch(2)
  ref, ref_len = S.to_stroke5(
    S.normalize([splits["train"][i] for i in st.indices(2)], scale), max_len
  )
  np.testing.assert_allclose(b["strokes"], ref, rtol=1e-6)
  np.testing.assert_array_equal(b["seq_len"], ref_len)
  # With augmentation the same rows differ (scaled, some points dropped).
  aug = stream(data).batch(2)
  assert not np.allclose(aug["strokes"], b["strokes"])
  assert (aug["seq_len"] <= b["seq_len"]).all()


def test_deterministic_per_seed_and_step(data):
  a, b = stream(data), stream(data)
  assert_batches_equal(a.batch(7), b.batch(7))
  assert not np.array_equal(a.batch(7)["strokes"], a.batch(8)["strokes"])
  assert not np.array_equal(a.batch(7)["strokes"], stream(data, seed=1).batch(7)["strokes"])


def test_elements_do_not_depend_on_batch_size(data):
  """Element e is a pure function of (seed, e): batch 1 of size 8 == batches 2, 3 of size 4."""
  big = stream(data, batch_size=8).batch(1)
  small = [stream(data, batch_size=4).batch(k) for k in (2, 3)]
  for key in big:
    np.testing.assert_array_equal(big[key], np.concatenate([s[key] for s in small]))


def test_iterate_resumes_exactly(data):
  st = stream(data)
  it = st.iterate(5)
  for step in (5, 6, 7):
    assert_batches_equal(next(it), st.batch(step))
  # grain iterator state round-trips too
  it0 = st.iterate(0)
  for _ in range(3):
    next(it0)
  state = it0.get_state()
  it1 = st.iterate(0)
  it1.set_state(state)
  assert_batches_equal(next(it1), st.batch(3))


@pytest.mark.parametrize("pc", [2, 4])
def test_process_shards_concatenate_to_global_batch(data, pc):
  full = stream(data).batch(9)
  shards = [stream(data, process_index=p, process_count=pc).batch(9) for p in range(pc)]
  for s in shards:
    assert s["strokes"].shape[0] == 8 // pc
  for k in full:
    np.testing.assert_array_equal(np.concatenate([s[k] for s in shards]), full[k])
  it_shard = stream(data, process_index=1, process_count=pc).iterate(9)
  assert_batches_equal(next(it_shard), shards[1])


def test_epochs_reshuffled(data):
  st = stream(data, batch_size=10)  # 40 train sketches: 4 steps per epoch
  assert st.steps_per_epoch == 4
  epochs = [np.concatenate([st.indices(4 * e + k) for k in range(4)]) for e in range(3)]
  for ep in epochs:
    assert sorted(ep.tolist()) == list(range(40))  # each epoch a permutation
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
  assert not np.array_equal(epochs[0], np.arange(40))


def test_validation_errors(data):
  with pytest.raises(ValueError, match="divisible by process_count=3"):
    stream(data, batch_size=8, process_count=3)
  with pytest.raises(ValueError, match="process_index"):
    stream(data, process_index=2, process_count=2)
  with pytest.raises(ValueError, match="max_seq_len"):
    stream(data, max_seq_len=10)


def test_eval_batches(data):
  splits, max_len, scale = data
  valid = splits["valid"]  # 13 sketches
  bs = eval_batches(valid, batch_size=4, max_seq_len=max_len, scale_factor=scale)
  assert len(bs) == 3  # remainder dropped
  ref, ref_len = S.to_stroke5(S.normalize(valid[:12], scale), max_len)
  np.testing.assert_allclose(np.concatenate([b["strokes"] for b in bs]), ref, rtol=1e-6)
  np.testing.assert_array_equal(np.concatenate([b["seq_len"] for b in bs]), ref_len)
  assert all((b["weights"] == 1).all() for b in bs)
  again = eval_batches(valid, batch_size=4, max_seq_len=max_len, scale_factor=scale)
  np.testing.assert_array_equal(again[1]["strokes"], bs[1]["strokes"])  # no augmentation

  padded = eval_batches(
    valid, batch_size=4, max_seq_len=max_len, scale_factor=scale, drop_remainder=False
  )
  assert len(padded) == 4 and padded[-1]["weights"].tolist() == [1, 0, 0, 0]
  assert padded[-1]["strokes"].shape == (4, max_len + 1, 5)

  shards = [
    eval_batches(
      valid, batch_size=4, max_seq_len=max_len, scale_factor=scale, process_index=p, process_count=2
    )
    for p in range(2)
  ]
  for k, b in enumerate(bs):
    np.testing.assert_array_equal(
      np.concatenate([shards[0][k]["strokes"], shards[1][k]["strokes"]]), b["strokes"]
    )
  with pytest.raises(ValueError, match="divisible"):
    eval_batches(valid, batch_size=5, max_seq_len=max_len, scale_factor=scale, process_count=2)
