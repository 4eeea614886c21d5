"""The one batch stream primitive (zoo.data.stream.ShardedStream) and its users."""

import os

import numpy as np
import pytest

from zoo.data import stream as stream_lib
from zoo.data.faces import pipeline as faces_pipeline
from zoo.data.images import paired
from zoo.data.sketches import pipeline as sketch_pipeline
from zoo.data.sketches.synthetic import make_synthetic_sketches
from zoo.data.stream import ShardedStream

N = 23  # not a multiple of the batch sizes used below: remainders matter


class Numbers:
  """Source whose example ``i`` is ``i``."""

  def __init__(self, n=N):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return int(i)


def collate(items, indices):
  return {"x": np.asarray(items, np.float64), "index": np.asarray(indices)}


def noisy(x, rng):
  return x + rng.random()


def make(n=N, **kw):
  args = dict(batch_size=4, collate=collate, seed=3, stream_id=(1, 2), transform=noisy)
  args.update(kw)
  return ShardedStream(Numbers(n), **args)


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    if isinstance(a[k], dict):
      assert_batches_equal(a[k], b[k])
    else:
      np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_batch_k_is_a_pure_function_of_seed_and_k(drop_remainder):
  a, b = make(drop_remainder=drop_remainder), make(drop_remainder=drop_remainder)
  for k in (0, 1, 5, 6, 17, 40):
    assert_batches_equal(a.batch(k), b.batch(k))
  # A restart at step k (a fresh stream, no history) reads the same batches.
  restarted = make(drop_remainder=drop_remainder)
  for k in (17, 18):
    assert_batches_equal(restarted.batch(k), a.batch(k))
  assert not np.array_equal(a.batch(0)["index"], make(seed=4).batch(0)["index"])
  assert not np.array_equal(a.batch(0)["index"], make(stream_id=(1, 3)).batch(0)["index"])


@pytest.mark.parametrize("drop_remainder", [True, False])
@pytest.mark.parametrize("process_count", [2, 4])
def test_process_rows_concatenate_to_the_global_batch(drop_remainder, process_count):
  kw = dict(batch_size=8, drop_remainder=drop_remainder)
  whole = make(**kw)
  parts = [make(process_index=p, process_count=process_count, **kw) for p in range(process_count)]
  for k in (0, 2, 3, 9):  # 2 whole batches per epoch: 3 and 9 are in later epochs
    cat = [part.batch(k) for part in parts]
    assert all(len(c["x"]) == 8 // process_count for c in cat)
    assert_batches_equal(
      whole.batch(k), {key: np.concatenate([c[key] for c in cat]) for key in cat[0]}
    )
    np.testing.assert_array_equal(
      np.concatenate([p.indices(k) for p in parts]), whole.global_indices(k)
    )


def test_each_epoch_is_a_permutation():
  s = make(transform=None)
  assert len(s) == s.steps_per_epoch == N // 4
  epochs = [
    np.concatenate([s.global_indices(e * len(s) + k) for k in range(len(s))]) for e in range(3)
  ]
  for e, ep in enumerate(epochs):  # each example at most once; the remainder (N % B) dropped
    assert len(ep) == len(set(ep.tolist())) == 4 * (N // 4)
    np.testing.assert_array_equal(ep, s.permutation(e)[: len(ep)])
  assert not np.array_equal(epochs[0], epochs[1])
  # Without dropped remainders the epochs follow each other: every example exactly once.
  c = make(transform=None, drop_remainder=False)
  flat = np.concatenate([c.global_indices(k) for k in range(3 * N // 4 + 1)])
  for e in range(3):
    np.testing.assert_array_equal(np.sort(flat[e * N : (e + 1) * N]), np.arange(N))
    np.testing.assert_array_equal(flat[e * N : (e + 1) * N], c.permutation(e))
  # A batch larger than the source spans several epochs.
  big = make(transform=None, drop_remainder=False, batch_size=2 * N + 2)
  np.testing.assert_array_equal(np.sort(big.global_indices(0)[:N]), np.arange(N))
  # No shuffle: the source order, epoch after epoch.
  plain = make(transform=None, shuffle=False)
  np.testing.assert_array_equal(plain.global_indices(len(plain) + 1), np.arange(4, 8))


def test_per_row_rng_is_reproducible():
  s = make()
  b = s.batch(7)
  want = [i + s.row_rng(7, r).random() for i, r in zip(b["index"], range(4))]
  np.testing.assert_array_equal(b["x"], want)
  np.testing.assert_array_equal(make().batch(7)["x"], b["x"])
  noise = b["x"] - b["index"]
  assert len(set(noise.tolist())) == 4  # rows get different generators
  assert not np.array_equal(make().batch(8)["x"] - make().batch(8)["index"], noise)
  # The generator belongs to the stream position, so a process's rows get the same draws.
  p1 = make(process_index=1, process_count=2).batch(7)
  np.testing.assert_array_equal(p1["x"], b["x"][2:])
  # Keys are configurable (streams keep their historical seeds) and change the draws.
  keyed = make(permutation_key=(9, 9), row_key=(8, 8))
  perm = np.random.default_rng([9, 9, 0]).permutation(N)
  np.testing.assert_array_equal(keyed.global_indices(0), perm[:4])
  draws = [np.random.default_rng([8, 8, r]).random() for r in range(4)]
  np.testing.assert_array_equal(keyed.batch(0)["x"], perm[:4] + np.asarray(draws))


@pytest.mark.parametrize(
  "kw",
  [
    dict(batch_size=0),
    dict(batch_size=-4),
    dict(batch_size=6, process_count=4),
    dict(batch_size=4, process_index=2, process_count=2),
    dict(batch_size=4, process_index=-1, process_count=2),
    dict(batch_size=N + 1),  # fewer examples than one batch (with dropped remainders)
    dict(n=0, drop_remainder=False),
  ],
)
def test_bad_batch_sizes_raise(kw):
  with pytest.raises(ValueError):
    make(**kw)


def test_bad_steps_raise():
  s = make()
  with pytest.raises(ValueError):
    s.batch(-1)
  with pytest.raises(ValueError):
    s.iterate(-1)
  assert make(batch_size=N + 1, drop_remainder=False).batch(0)["x"].shape == (N + 1,)


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_iterate_equals_the_batch_sequence(drop_remainder):
  s = make(drop_remainder=drop_remainder, num_threads=2, prefetch=3)
  got = list(s.iterate(4, num_steps=12))
  assert len(got) == 12
  for k, b in zip(range(4, 16), got):
    assert_batches_equal(b, s.batch(k))
  it = s.iterate(9)  # endless
  for k in range(9, 14):
    assert_batches_equal(next(it), s.batch(k))
  # grain iterator state round-trips
  it0 = s.iterate(2)
  for _ in range(3):
    next(it0)
  it1 = s.iterate(2)
  it1.set_state(it0.get_state())
  assert_batches_equal(next(it1), s.batch(5))


def test_check_sharding():
  assert stream_lib.check_sharding(8, 1, 4) == 2
  with pytest.raises(ValueError, match="divisible by process_count=3"):
    stream_lib.check_sharding(8, 0, 3)


def test_every_domain_stream_is_a_sharded_stream(tmp_path):
  """The three training streams are ShardedStream users, not copies of its arithmetic."""
  faces = faces_pipeline.faces_batches("train", batch_size=2, size=16, num_examples=4)
  pairs = paired.PairedBatches(
    paired.open_source("", "train", synthetic_sizes={"train": 3}),
    batch_size=2,
    load_size=18,
    crop_size=16,
  )
  sketches = make_synthetic_sketches(seed=0, num_train=5, num_valid=1, num_test=1)["train"]
  strokes = sketch_pipeline.SketchTrainStream(
    sketches, batch_size=2, max_seq_len=max(len(s) for s in sketches), scale_factor=1.0
  )
  for s in (faces, pairs, strokes):
    assert isinstance(s, ShardedStream), type(s)
    # They use the shared batch/iterate/permutation, not their own.
    for name in ("batch", "iterate", "global_indices", "indices", "permutation", "row_rng"):
      assert getattr(type(s), name) is getattr(ShardedStream, name), (type(s), name)
    assert_batches_equal(next(s.iterate(1)), s.batch(1))


# ---------------------------------------------------------------------------
# Memo: the cache of costly sources, with misses drawn by worker processes.
# ---------------------------------------------------------------------------


class _Counting:
  def __init__(self):
    self.calls = []

  def __call__(self, key):
    self.calls.append(key)
    return np.full(3, key)


def test_memo_makes_each_item_once():
  load = _Counting()
  memo = stream_lib.Memo(load)
  got = memo.get_many([3, 1, 3]) + [memo.get(1), memo.get(2)]
  assert [int(x[0]) for x in got] == [3, 1, 3, 1, 2]
  assert sorted(load.calls) == [1, 2, 3] and len(memo) == 3
  uncached = stream_lib.Memo(load, cache=False)
  uncached.get(5), uncached.get(5)
  assert load.calls.count(5) == 2 and len(uncached) == 0


def test_memo_pickles_without_its_items():
  import pickle

  memo = stream_lib.Memo(np.arange, processes=2)
  memo.get(4)
  copy = pickle.loads(pickle.dumps(memo))
  assert len(copy) == 0 and copy.processes == 2 and copy.load is np.arange
  with pytest.raises(ValueError, match="processes"):
    stream_lib.Memo(np.arange, processes=-1)


def test_closing_a_source_stops_its_workers_and_keeps_its_items():
  from zoo.data.images import unconditional

  with unconditional.RenderedFaces("train", (16, 16), num_examples=8, processes=2) as src:
    first = src.get_many([3, 1, 3])
    pool = src._memo._pool  # pylint: disable=protected-access
    pids = list(pool._processes)  # pylint: disable=protected-access
    assert pids and src.num_cached == 2
  assert src._memo._pool is None  # pylint: disable=protected-access
  for pid in pids:  # shutdown(wait=True) joined them
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  assert src[3] is first[0]  # from the cache
  assert src.num_cached == 2


def test_faces_drawn_by_processes_equal_those_drawn_in_threads():
  from zoo.data.images import unconditional

  threads = unconditional.RenderedFaces("train", (32, 32), num_examples=64)
  procs = unconditional.RenderedFaces("train", (32, 32), num_examples=64, processes=2)
  try:
    a = ShardedStream(threads, batch_size=8, collate=unconditional.collate_images, seed=1)
    b = ShardedStream(procs, batch_size=8, collate=unconditional.collate_images, seed=1)
    seen = set()
    for k in (0, 3, 8, 9):  # 8, 9: the second epoch, partly from the cache
      x, y = a.batch(k), b.batch(k)
      np.testing.assert_array_equal(x["image"], y["image"])
      seen |= set(x["index"].tolist())
    assert procs.num_cached == len(seen)
  finally:
    procs.close()


def test_pairs_drawn_by_processes_equal_those_drawn_in_threads():
  def batches(processes):
    src = paired.open_source("", "train", synthetic_sizes={"train": 12}, processes=processes)
    s = paired.PairedBatches(src, batch_size=4, load_size=36, crop_size=32, seed=2)
    try:
      return [s.batch(k) for k in (0, 4)]
    finally:
      src.close()

  for x, y in zip(batches(0), batches(2)):
    for key in ("A", "B", "index"):
      np.testing.assert_array_equal(x[key], y[key])


def test_memo_workers_die_with_a_killed_parent():
  # The parent is SIGKILLed (no shutdown): its workers must neither keep the parent's
  # stdout open (subprocess.run would wait forever) nor live on.
  import os
  import subprocess
  import sys
  import textwrap
  import time

  code = textwrap.dedent(
    """
    import os, signal
    import numpy as np
    from zoo.data.stream import Memo
    memo = Memo(np.arange, processes=2)
    memo.get_many([1, 2, 3, 4])
    print(*[p for p in memo._pool._processes], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
  )
  pids = [int(p) for p in out.stdout.split()]
  assert len(pids) == 2, out.stderr[-2000:]
  deadline = time.monotonic() + 15
  alive = pids
  while alive and time.monotonic() < deadline:
    time.sleep(0.2)
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and _running(p)]
  assert not alive, f"memo workers {alive} outlived their parent"


def _running(pid):
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited


def test_memo_workers_do_not_rerun_an_unguarded_script(tmp_path):
  # Spawned workers would import the parent's main module: a script without an
  # ``if __name__ == '__main__'`` guard would start over in every worker.
  import os
  import subprocess
  import sys

  script = tmp_path / "unguarded.py"
  script.write_text(
    "import numpy as np\n"
    "from zoo.data.stream import Memo\n"
    "print('started', flush=True)\n"
    "print(sum(int(x.sum()) for x in Memo(np.arange, processes=2).get_many([3, 4, 5])))\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": root}
  out = subprocess.run(
    [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["started", str(3 + 6 + 10)]


def test_captioned_faces_drawn_by_processes_equal_those_drawn_in_threads():
  from zoo.data.faces import captioned

  threads = captioned.CaptionedFaces("train", (32, 32), num_faces=8, captions_per_face=2)
  procs = captioned.CaptionedFaces("train", (32, 32), num_faces=8, captions_per_face=2, processes=2)
  try:
    idx = [5, 0, 15, 4, 5]
    for x, y in zip([threads[i] for i in idx], procs.get_many(idx)):
      np.testing.assert_array_equal(x["image"], y["image"])
      assert x["caption"] == y["caption"] and x["face"] == y["face"]
    with pytest.raises(IndexError):
      procs.get_many([16])
  finally:
    procs.close()
