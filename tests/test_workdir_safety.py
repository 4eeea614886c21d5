"""A workdir never loses a run (issue 8): resume checks, the lock, checkpoint fallback and
one-line errors, through the real launchers.

Each launcher gets one tiny workdir (config.json + checkpoints at steps 1 and 2), made
once per module through the task's own ``run_info``/``init_state`` (no training step
is compiled). Every refused command must exit 2 with exactly one ``error:`` line, no
traceback, and leave the workdir's checkpoints and ``config.json`` byte-identical.
One command (Sketch-RNN) really resumes: past a damaged newest checkpoint, a stale lock
and a data change allowed by ``--allow_config_change``.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, xla_flags
from zoo.errors import CheckpointError, ZooError
from zoo.training import checkpoint as ckpt_lib
from zoo.training import loop
from zoo.training import workdir as workdir_lib
from zoo.training import restore as restore_lib


#: tensorstore's callbacks for a failed read may reach a closed event loop later (caught
#: as unraisable exceptions by pytest; the launchers keep them off stderr).
NOISY = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# The launchers' tiny configs, as --config.KEY=VALUE overrides.
SKETCH = {
  "batch_size": 8,
  "enc_rnn_size": 8,
  "dec_rnn_size": 16,
  "z_size": 4,
  "num_mixture": 2,
  "hyper_num_units": 8,
  "hyper_embedding_size": 4,
  "num_samples": 2,
  "eval_batch_size": 8,
  "num_steps": 4,
  "log_every": 1,
  "save_every": 0,
  "eval_every": 0,
  "sample_every": 0,
}
PIX2PIX = {
  "crop_size": 32,
  "load_size": 36,
  "ngf": 8,
  "ndf": 8,
  "batch_size": 4,
  "num_steps": 4,
  "synthetic_num_train": 16,
  "synthetic_num_val": 4,
  "synthetic_num_test": 4,
  "num_samples": 2,
  "num_workers": 0,
  "eval_every": 0,
  "sample_every": 0,
}
PROGAN = {
  "model.latent_dim": 8,
  "model.fmap_base": 32,
  "model.fmap_max": 8,
  "schedule.resolution": (16, 16),
  "schedule.fade_images": 32,
  "schedule.stable_images": 32,
  "schedule.final_stable_images": 32,
  "schedule.batch_sizes": (8, 8, 8),
  "data.num_train": 16,
  "eval.num_samples": 4,
  "eval.fd": "off",
  "num_samples": 4,
  "sample_every": 0,
}
FACES = {"num_steps": 4, "num_train": 64}


def _cli_value(v) -> str:
  return f"({','.join(map(str, v))})" if isinstance(v, tuple) else str(v)


def _args(overrides: dict) -> list[str]:
  return [f"--config.{k}={_cli_value(v)}" for k, v in overrides.items()]


def _config(cfg_module, overrides: dict, variant=None):
  c = cfg_module.get_config(variant)
  for k, v in overrides.items():
    section, _, key = k.rpartition(".")
    (c[section] if section else c)[key] = v
  return c


def _env():
  return dict(os.environ, XLA_FLAGS=xla_flags(1))


def _run(launcher: str, workdir, *args, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", f"launch.{launcher}", "--workdir", str(workdir), *args],
    cwd=REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _snapshot(workdir) -> dict[str, bytes]:
  """Every file of ``checkpoints/`` and ``config.json``, by path."""
  workdir = pathlib.Path(workdir)
  out = {}
  for p in sorted((workdir / "checkpoints").rglob("*")):
    if p.is_file():
      out[str(p.relative_to(workdir))] = p.read_bytes()
  if (workdir / "config.json").exists():
    out["config.json"] = (workdir / "config.json").read_bytes()
  return out


def _assert_one_line_error(p: subprocess.CompletedProcess, words: str) -> str:
  assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
  assert "Traceback" not in p.stderr, p.stderr[-3000:]
  errors = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, p.stderr[-3000:]
  assert p.stderr.strip().splitlines()[-1] == errors[0], p.stderr[-3000:]
  assert "Event loop is closed" not in p.stderr
  assert words in errors[0], errors[0]
  return errors[0]


def _fabricate(workdir: str, task, run_config: dict, *, staged: bool = False) -> str:
  """A workdir as a run that saved at steps 1 and 2 leaves it (the initial state)."""
  init = functools.partial(task.init_state, stage=0) if staged else task.init_state
  state = jax.device_get(jax.jit(init)(jax.random.key(0)))
  ck = ckpt_lib.Checkpointer(ckpt_lib.checkpoint_dir(workdir), async_save=False)
  meta = {"task": task.name, **({"stage": 0} if staged else {})}
  for step in (1, 2):
    ck.save(step, state, meta)
  ck.close()
  ckpt_lib.write_run_config(workdir, run_config)
  return workdir


@pytest.fixture(scope="module")
def sketch_run(tmp_path_factory):
  from launch.configs import sketch_rnn as cfg
  from zoo.tasks import sketch_rnn as task_lib

  c = _config(cfg, SKETCH)
  task = task_lib.build_task(c, mesh=None)
  workdir = str(tmp_path_factory.mktemp("sketch") / "run")
  return _fabricate(workdir, task, task_lib.run_info(task))


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
  from launch.configs import pix2pix as cfg
  from zoo.tasks import pix2pix as task_lib

  c = _config(cfg, PIX2PIX)
  task = task_lib.build_task(c)
  workdir = str(tmp_path_factory.mktemp("pix2pix") / "run")
  return _fabricate(workdir, task, task_lib.run_info(c))


@pytest.fixture(scope="module")
def progan_run(tmp_path_factory):
  from launch.configs import progan as cfg
  from zoo.tasks import progan as task_lib
  from zoo.training import mesh as mesh_lib

  c = _config(cfg, PROGAN)
  task = task_lib.ProGANTask(c, mesh_lib.make_mesh(jax.devices()[:1]), log=None)
  workdir = str(tmp_path_factory.mktemp("progan") / "run")
  return _fabricate(workdir, task, workdir_lib.jsonable(c), staged=True)


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
  from launch.configs import face_classifier as cfg
  from zoo.tasks import face_classifier as task_lib

  c = _config(cfg, FACES, "tiny")
  task = task_lib.build_task(c)
  workdir = str(tmp_path_factory.mktemp("faces") / "run")
  return _fabricate(workdir, task, workdir_lib.jsonable(c))


RUNS = {
  "sketch_rnn": ("sketch_run", [], SKETCH),
  "pix2pix": ("pix2pix_run", [], PIX2PIX),
  "progan": ("progan_run", [], PROGAN),
  "face_classifier": ("faces_run", ["--config=launch/configs/face_classifier.py:tiny"], FACES),
}

# (launcher, extra arguments, words in the error line). Run against the launcher's workdir.
CASES = [
  ("sketch_rnn", ["--config.bogus_key=3"], "unknown config key 'bogus_key'"),
  ("sketch_rnn", ["--config=launch/configs/sketch_rnn.py:nope"], "variant 'nope'"),
  ("sketch_rnn", ["--config=launch/configs/no_such_file.py"], "does not exist"),
  ("sketch_rnn", ["--config.max_to_keep=0"], "max_to_keep=0"),
  ("sketch_rnn", ["--config.num_samples=0"], "num_samples=0"),
  ("sketch_rnn", ["--config.max_seq_len=3"], "no training sketch"),
  ("sketch_rnn", ["--config.z_size=8"], "z_size: run has 4, config has 8"),
  ("sketch_rnn", ["--config.learning_rate=0.01"], "--allow_config_change"),
  ("sketch_rnn", ["--config.max_seq_len=60"], "derived.scale_factor: run has"),
  ("sketch_rnn", ["--config.num_steps=1"], "already at step 2"),
  # An architecture change is refused even with the override flag.
  ("sketch_rnn", ["--config.dec_rnn_size=8", "--allow_config_change"], "dec_rnn_size"),
  ("pix2pix", ["--config.ngf=16"], "ngf: run has 8, config has 16"),
  ("pix2pix", ["--config.lr=0.001"], "lr: run has 0.0002, config has 0.001"),
  ("progan", ["--config.model.bogus=1"], "unknown config key 'model.bogus'"),
  ("progan", ["--config.model.fmap_max=16"], "model.fmap_max: run has 8, config has 16"),
  ("progan", ["--config.optim.lr=0.002"], "optim.lr: run has 0.001"),
  ("face_classifier", ["--config.feature_dim=32"], "feature_dim: run has 16"),
  ("face_classifier", ["--config.weight_decay=0.001"], "--allow_config_change"),
]


def _launch_args(launcher: str, extra: list[str]) -> list[str]:
  _, head, overrides = RUNS[launcher]
  head = list(head)
  config_args = [a for a in extra if a.startswith("--config=")]
  if config_args:  # --config=FILE must precede its --config.KEY overrides
    head = config_args
  rest = [a for a in extra if not a.startswith("--config=")]
  return head + _args(overrides) + rest


@pytest.mark.parametrize(
  "launcher,extra,words", CASES, ids=[f"{c[0]}:{' '.join(c[1])}" for c in CASES]
)
def test_refused_in_one_line_and_nothing_changes(request, launcher, extra, words):
  workdir = request.getfixturevalue(RUNS[launcher][0])
  before = _snapshot(workdir)
  assert before and "config.json" in before
  p = _run(launcher, workdir, *_launch_args(launcher, extra))
  _assert_one_line_error(p, words)
  assert _snapshot(workdir) == before
  assert not os.path.exists(os.path.join(workdir, workdir_lib.HISTORY_FILE))


@pytest.mark.parametrize("launcher", ["sketch_rnn", "pix2pix", "progan", "face_classifier"])
def test_second_process_on_a_workdir_is_refused(request, launcher):
  workdir = request.getfixturevalue(RUNS[launcher][0])
  before = _snapshot(workdir)
  with workdir_lib.lock(workdir):
    p = _run(launcher, workdir, *_launch_args(launcher, []))
  line = _assert_one_line_error(p, "is in use by process")
  assert str(os.getpid()) in line
  assert _snapshot(workdir) == before


def test_workdir_that_is_a_file(tmp_path):
  f = tmp_path / "afile"
  f.write_text("x")
  _assert_one_line_error(_run("sketch_rnn", f, *_args(SKETCH)), "is a file")
  _assert_one_line_error(_run("sketch_rnn", f / "sub", *_args(SKETCH)), "is a file")
  assert f.read_text() == "x"


def test_url_workdir_is_refused_not_made_a_local_folder():
  url = "gs://some-bucket/zoo-test-run"
  _assert_one_line_error(_run("sketch_rnn", url, *_args(SKETCH)), "is a gs:// URL")
  assert not (REPO / "gs:").exists()
  for call in (workdir_lib.check_usable, restore_lib.read_config):
    with pytest.raises(CheckpointError, match="mount the bucket"):
      call(url)


def _damage(workdir, step: int, kind: str) -> None:
  d = pathlib.Path(ckpt_lib.checkpoint_dir(str(workdir))) / str(step)
  if kind == "truncated":  # the array data files, cut short as by a kill mid-write
    data = [p for p in (d / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data
    for p in data:
      with open(p, "r+b") as fh:
        fh.truncate(p.stat().st_size // 2)
  elif kind == "no_metadata":
    (d / "state" / "_METADATA").unlink()
  elif kind == "empty":
    shutil.rmtree(d)
    d.mkdir()
  else:
    raise ValueError(kind)


@NOISY
def test_resume_past_a_damaged_checkpoint_a_stale_lock_and_an_allowed_change(sketch_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(sketch_run, workdir)
  _damage(workdir, 2, "truncated")
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (workdir / workdir_lib.LOCK_FILE).write_text(
    json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "then"})
  )
  p = _run(
    "sketch_rnn",
    workdir,
    *_args({**SKETCH, "num_steps": 3, "learning_rate": 0.002}),
    "--allow_config_change",
  )
  assert p.returncode == 0, p.stderr[-3000:]
  out = p.stdout
  assert f"took over the lock of {workdir} left by process {dead.pid}" in out
  assert "skipped the damaged step-2 checkpoint (its data is unreadable" in out
  assert "resumed from step 1" in out
  assert "continuing with changed settings (--allow_config_change): learning_rate" in out
  assert ckpt_lib.list_steps(str(workdir / "checkpoints")) == [1, 3]
  assert (workdir / workdir_lib.DAMAGED_DIR / "2").is_dir()
  assert json.loads((workdir / "config.json").read_text())["learning_rate"] == 0.002
  events = [json.loads(l) for l in (workdir / workdir_lib.HISTORY_FILE).read_text().splitlines()]
  assert [e["event"] for e in events] == ["damaged_checkpoint", "config_change"]
  change = events[1]["changes"]
  assert change["learning_rate"] == {"run": 0.001, "config": 0.002, "kind": "data"}
  assert change["num_steps"]["kind"] == "free" and events[1]["step"] == 1
  assert events[1]["allowed_by"] == "--allow_config_change"
  assert (workdir / workdir_lib.LOCK_FILE).read_text() == ""  # released


# ---------------------------------------------------------------------------
# Damaged checkpoints (what a kill during a save leaves), each of the three kinds.
# ---------------------------------------------------------------------------

KINDS = {
  "truncated": "its data is unreadable",
  "no_metadata": "its metadata file state/_METADATA is missing",
  "empty": "its folder is empty",
}


@NOISY
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sampling_api_falls_back_to_the_newest_intact_checkpoint(
  sketch_run, tmp_path, kind, capsys
):
  from zoo.sketch import SketchModel

  workdir = tmp_path / "run"
  shutil.copytree(sketch_run, workdir)
  _damage(workdir, 2, kind)
  m = SketchModel.load(workdir)
  assert m.step == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("warning: skipped the step-2 checkpoint")
  assert KINDS[kind] in err[0] and "using step 1" in err[0]
  assert ckpt_lib.list_steps(str(workdir / "checkpoints")) == [1, 2]  # read-only: untouched
  # Every checkpoint damaged: one line.
  _damage(workdir, 1, "empty")
  with pytest.raises(CheckpointError) as e:
    SketchModel.load(workdir)
  assert "every checkpoint" in str(e.value) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
  """A toy run saved at steps 2 and 4, and the state an uninterrupted run reaches."""
  from tests.toy_task import ToyTask

  root = tmp_path_factory.mktemp("toy")
  res = loop.train(ToyTask(), loop.LoopConfig(**TOY), str(root / "run"), log_fn=lambda m: None)
  return str(root / "run"), jax.device_get(res.state["params"]["w"])


TOY = dict(num_steps=4, save_every=2, log_every=2, async_checkpoints=False)


@NOISY
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_loop_resumes_from_the_newest_intact_checkpoint(toy_runs, tmp_path, kind):
  from tests.toy_task import ToyTask

  template, w_full = toy_runs
  workdir = str(tmp_path / "run")
  shutil.copytree(template, workdir)
  _damage(workdir, 4, kind)
  said = []
  res = loop.train(ToyTask(), loop.LoopConfig(**TOY), workdir, log_fn=said.append)
  text = "\n".join(said)
  assert "skipped the damaged step-4 checkpoint" in text and KINDS[kind] in text
  assert "resuming from step 2" in text and "resumed from step 2" in text
  assert res.step == 4  # trained steps 3 and 4 again, as the uninterrupted run did
  np.testing.assert_allclose(jax.device_get(res.state["params"]["w"]), w_full, rtol=1e-6)
  assert os.path.isdir(os.path.join(workdir, workdir_lib.DAMAGED_DIR, "4"))
  assert ckpt_lib.list_steps(ckpt_lib.checkpoint_dir(workdir)) == [2, 4]


# ---------------------------------------------------------------------------
# The shared pieces, in process.
# ---------------------------------------------------------------------------


def test_resume_keys_classify_flat_and_sectioned_configs():
  keys = workdir_lib.ResumeKeys(shape=("model", "z_size"), free=("num_steps", "eval"))
  saved = {"model": {"a": 1, "b": [1, 2]}, "z_size": 4, "lr": 0.1, "num_steps": 5, "old": 1}
  new = {"model": {"a": 2, "b": (1, 2)}, "z_size": 4, "lr": 0.2, "num_steps": 9, "new": 1}
  changes = {c.key: c.kind for c in workdir_lib.differences(saved, new, keys)}
  assert changes == {"model.a": "shape", "lr": "data", "num_steps": "free"}
  with pytest.raises(ZooError, match="model.a: run has 1, config has 2"):
    workdir_lib.check_resume("w", saved, new, keys, allow_change=True)
  del new["model"]["a"], saved["model"]["a"]
  with pytest.raises(ZooError, match="lr: run has 0.1, config has 0.2"):
    workdir_lib.check_resume("w", saved, new, keys)
  assert len(workdir_lib.check_resume("w", saved, new, keys, allow_change=True)) == 2


def test_run_config_overlay_restores_the_run_s_values_in_the_config_s_types():
  import ml_collections

  base = ml_collections.ConfigDict(
    {
      "model": {"start": (4, 4), "width": 16},
      "schedule": {"batch_sizes": (16,), "lr": 1e-3},
      "seed": 0,
      "new_key": "kept",
    }
  )
  saved = {
    "model": {"start": [4, 2], "width": 32},
    "schedule": {"batch_sizes": [16, 8, 4], "lr": 1},  # JSON wrote 1.0 as 1
    "seed": 3,
    "derived": {"scale": 2.5},  # not a config key: skipped
  }
  c = workdir_lib.run_config_overlay(base, saved, {"model.width": 64})
  assert c.model.start == (4, 2) and isinstance(c.model.start, tuple)
  assert c.schedule.batch_sizes == (16, 8, 4)
  assert c.schedule.lr == 1.0 and isinstance(c.schedule.lr, float)
  assert (c.seed, c.model.width, c.new_key) == (3, 64, "kept")
  assert "derived" not in c and base.model.width == 16  # base untouched
  with pytest.raises(ZooError, match="config.json has seed='x'"):
    workdir_lib.run_config_overlay(base, {"seed": "x"})


def test_rerun_with_only_the_workdir_resumes_the_run_as_trained(sketch_run, tmp_path):
  # The run was trained with overrides (batch 8, z 4, ...): a rerun that names only the
  # workdir and a longer num_steps takes those from its config.json, not the defaults.
  workdir = tmp_path / "run"
  shutil.copytree(sketch_run, workdir)
  p = _run("sketch_rnn", workdir, "--config.num_steps=3")
  assert p.returncode == 0, p.stderr[-3000:]
  assert "using the run's config" in p.stdout and "num_steps from the command line" in p.stdout
  assert "resumed from step 2" in p.stdout
  assert ckpt_lib.list_steps(str(workdir / "checkpoints"))[-1] == 3
  saved = json.loads((workdir / "config.json").read_text())
  assert {k: saved[k] for k in SKETCH if k != "num_steps"} == {
    k: v for k, v in SKETCH.items() if k != "num_steps"
  }
  assert saved["num_steps"] == 3
  # An explicit --config is the file's values: compared with the run's, refused.
  p = _run("sketch_rnn", workdir, "--config=launch/configs/sketch_rnn.py")
  _assert_one_line_error(p, "run has 4, config has")


def test_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(tmp_path):
  import threading

  workdir = str(tmp_path / "w")
  seen = []
  with workdir_lib.lock(workdir):
    with workdir_lib.lock(workdir):  # the holder may re-enter (get_or_train -> train)
      pass

    def other():
      try:
        with workdir_lib.lock(workdir):
          seen.append("got it")
      except CheckpointError as e:
        seen.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
  assert "is in use by process" in seen[0]
  with workdir_lib.lock(workdir):  # released
    pass


@pytest.mark.parametrize("bad", [{"max_to_keep": 0}, {"save_every": -1}, {"num_steps": 0}])
def test_loop_config_keys_that_keep_checkpoints_are_validated(bad):
  with pytest.raises(ZooError, match=next(iter(bad))):
    loop.LoopConfig(**{"num_steps": 5, **bad})


def test_sketch_eval_covers_a_split_smaller_than_the_eval_batch(sketch_run):
  from launch.configs import sketch_rnn as cfg
  from zoo.tasks import sketch_rnn as task_lib
  from zoo.training import mesh as mesh_lib

  c = _config(cfg, {**SKETCH, "eval_batch_size": 16})
  task = task_lib.build_task(c, mesh=mesh_lib.make_mesh(jax.devices()[:1]))
  state = jax.jit(task.init_state)(jax.random.key(0))
  task.splits = {**task.splits, "tiny": task.splits["valid"][:3], "two": task.splits["valid"][:16]}
  small = task.evaluate_split(state, "tiny")
  assert small and all(np.isfinite(v) for v in small.values())
  # A weighted mean: the 3 sketches score as the mean of their own scores.
  singles = []
  for i in range(3):
    task.splits["one"] = task.splits["valid"][i : i + 1]
    singles.append(task.evaluate_split(state, "one")["r_cost"])
  assert small["r_cost"] == pytest.approx(np.mean(singles), rel=1e-5)


def test_16_bit_greyscale_pngs_are_scaled_not_binarised(tmp_path):
  from zoo.data.images import paired, unconditional

  grey = (np.arange(32 * 64, dtype=np.uint32).reshape(32, 64) * 32).astype(np.uint16)
  folder = tmp_path / "imgs"
  (folder / "train").mkdir(parents=True)
  Image.fromarray(grey).save(folder / "train" / "a.png")
  assert Image.open(folder / "train" / "a.png").mode.startswith("I;16")
  img = unconditional.open_images(str(folder / "train"), "train", (32, 32))[0]
  assert len(np.unique(img)) > 100  # a plain convert('RGB') leaves 2 levels
  a, b = paired.AlignedFolder(str(folder / "train"), direction="AtoB").read(0)
  np.testing.assert_array_equal(a[..., 0], ((grey[:, :32].astype(np.int64) + 128) // 257))
  assert b.max() > 200 and len(np.unique(b)) > 100
  Image.fromarray(np.full((32, 64), 0.5, np.float32)).save(tmp_path / "f.tiff")
  from zoo.data.images.decode import to_rgb8

  with pytest.raises(ZooError, match="floating-point"):
    to_rgb8(Image.open(tmp_path / "f.tiff"))
