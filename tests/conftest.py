"""Test setup: 4 virtual CPU devices so multi-device sharding is exercised everywhere.

The flags must be set before JAX initialises its backend, so they live here.
Single-device runs use a mesh over ``jax.devices()[:1]``.

Compilation, not computation, dominates the suite on a CPU: tests train tiny networks
for a few steps, and resume tests compile the same programs two or three times. So the
tests (and the launcher subprocesses they start, through the environment) share JAX's
persistent compilation cache, a fresh directory per session unless
``JAX_COMPILATION_CACHE_DIR`` is set, and XLA compiles without its slower backend
optimisations and with its older CPU fusion emitters, which build the small programs of
the tests several times faster. These change how long programs take to build, not the
operations they run (elementwise math may differ in the last bits).
"""

import atexit
import os
import pathlib
import shutil
import tempfile

#: XLA flags for a faster build (see above), also for the subprocesses the tests start.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def xla_flags(devices: int) -> str:
  """``XLA_FLAGS`` for a subprocess with ``devices`` CPU devices that builds as fast as
  the tests do."""
  return " ".join((f"--xla_force_host_platform_device_count={devices}", *FAST_COMPILE_FLAGS))


for _flag in ("--xla_force_host_platform_device_count=4", *FAST_COMPILE_FLAGS):
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
  _cache = tempfile.mkdtemp(prefix="zoo-jax-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# A test that needs the face classifier or caption encoder points these at the session's
# tiny ones. Unset, the zoo would train the full-size models in ./runs (many minutes), so
# here they name a path below a plain file: such a test fails at once, naming the variable.
_guard = tempfile.mkdtemp(prefix="zoo-test-guard-")
atexit.register(shutil.rmtree, _guard, ignore_errors=True)
for _var in ("ZOO_FACE_CLASSIFIER", "ZOO_TEXT_ENCODER"):
  pathlib.Path(_guard, f"{_var}-was-not-set-by-this-test").touch()
  os.environ.setdefault(_var, os.path.join(_guard, f"{_var}-was-not-set-by-this-test", "run"))

import csv  # noqa: E402
import socket  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHEEP = REPO.parent / "shared" / "data" / "aaron_sheep.npz"


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


#: The test modules that take longest, started first so that the pytest-xdist workers end
#: together (``--no-loadscope-reorder`` in pyproject.toml keeps this order; by default
#: xdist starts the modules with the most tests first). The rest follow in file order.
LONGEST_FIRST = (
  "test_explore",
  "test_progan_task",
  "test_stylegan",
  "test_t2f",
  "test_pix2pix",
  "test_sketch_rnn_train",
  "test_workdir_safety",
  "test_fsdp",
  "test_multiprocess",
  "test_gan_tools",
  "test_sketch_api",
  "test_caption_sources",
  "test_dcgan_cls_task",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(pathlib.Path(str(item.path)).stem, len(rank)))


@pytest.fixture
def sheep_path():
  if not SHEEP.exists():
    pytest.skip(
      f"real dataset not found at {SHEEP} (aaron_sheep.npz, CC BY-NC 4.0); "
      "place it there to run this test"
    )
  return SHEEP


# ---------------------------------------------------------------------------
# Caption dataset folders and a tiny face classifier (text-to-image tests).
# ---------------------------------------------------------------------------

#: Class dir -> colour of the tiny Reed-format fixture; the last class is the test split.
REED_CLASSES = {"001.Red_bird": "red", "002.Blue_bird": "blue", "003.Green_bird": "green"}
_ADJECTIVES = ("short", "long", "spotted", "striped")


def _random_image(path, width, height, seed):
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def _write_lines(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def reed_captions(cls: str, i: int) -> list[str]:
  """The captions of image ``i`` of class ``cls`` in :func:`write_reed_folder` (3 or 4)."""
  colour = REED_CLASSES[cls]
  return [f"a {colour} bird number {i} with {a} wings" for a in _ADJECTIVES[: 3 + i % 2]]


def write_reed_folder(root, *, test_split: bool = True):
  """A tiny caption dataset in Reed's CUB layout at ``root``: :data:`REED_CLASSES` x 3
  images of mixed sizes (``.jpg`` and ``.png``), 3 or 4 captions each
  (:func:`reed_captions`); the first two classes are ``'train'``, the last ``'test'``
  (``testclasses.txt`` is left out with ``test_split=False``). Returns ``root``."""
  classes = list(REED_CLASSES)
  for c, cls in enumerate(classes):
    for i in range(3):
      name = f"{cls.split('.')[1]}_{i:04d}"
      ext = ".png" if i == 1 else ".jpg"
      _random_image(
        root / "images" / cls / f"{name}{ext}", 20 + 9 * i + 3 * c, 14 + 6 * c, 10 * c + i
      )
      _write_lines(root / "text_c10" / cls / f"{name}.txt", reed_captions(cls, i))
  _write_lines(root / "trainvalclasses.txt", classes[:2])
  if test_split:
    _write_lines(root / "testclasses.txt", classes[2:])
  return root


#: (image, split, hair) of the tiny Face2Text fixture: 6 'train' images, 2 'test'.
FACE2TEXT_IMAGES = [
  (f"faces/{i:02d}.png", "test" if i in (2, 5) else "train", hair)
  for i, hair in enumerate(("black", "blond", "red", "brown", "grey", "white", "dark", "fair"))
]


def write_face2text_folder(root):
  """A tiny Face2Text-style caption dataset at ``root``: the images of
  :data:`FACE2TEXT_IMAGES` (mixed sizes) and one ``captions.csv`` (``image``, ``caption``,
  ``split``) with two captions per image. Returns ``root``."""
  root.mkdir(parents=True, exist_ok=True)
  with (root / "captions.csv").open("w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["image", "caption", "split"])
    for i, (image, split, hair) in enumerate(FACE2TEXT_IMAGES):
      _random_image(root / image, 16 + 5 * i, 30 - 2 * i, 100 + i)
      w.writerow([image, f"a person with {hair} hair", split])
      w.writerow([image, f"a smiling person with {hair} hair, looking left", split])
  return root


@pytest.fixture(scope="session")
def tiny_face_classifier(tmp_path_factory):
  """The workdir of a tiny face classifier trained once per session; point
  ``ZOO_FACE_CLASSIFIER`` at it (``monkeypatch.setenv``) where a task needs the judge."""
  from zoo.tasks import face_classifier as fc_task  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp("tiny_face_classifier") / "clf")
  fc_task.get_or_train_classifier(
    workdir, config=fc_task.default_config("tiny"), log_fn=lambda m: None
  )
  return workdir


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory, tiny_face_classifier):
  """``(workdir, result)`` of a tiny caption encoder trained once per session on the
  embedded captioned faces, judged by the session's tiny face classifier; point
  ``ZOO_TEXT_ENCODER`` at it where a task needs it."""
  from zoo.tasks import text_encoder as text_task  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp("tiny_text_encoder") / "text")
  # Without this the encoder would train the full-size default classifier in ./runs.
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("ZOO_FACE_CLASSIFIER", tiny_face_classifier)
    result = text_task.train_and_evaluate(
      text_task.default_config("tiny"), workdir, log_fn=lambda m: None
    )
  return workdir, result


@pytest.fixture(scope="module")
def judges(tiny_face_classifier, tiny_text_encoder):
  """The session's tiny face classifier and caption encoder, found through their
  environment variables (``ZOO_FACE_CLASSIFIER``, ``ZOO_TEXT_ENCODER``) by the module's
  tests; returns that environment."""
  env = {"ZOO_FACE_CLASSIFIER": tiny_face_classifier, "ZOO_TEXT_ENCODER": tiny_text_encoder[0]}
  with pytest.MonkeyPatch.context() as mp:
    for k, v in env.items():
      mp.setenv(k, v)
    yield env


@pytest.fixture(scope="session")
def tiny_stylegan_run(tmp_path_factory):
  """``(workdir, result)`` of the 12-step tiny StyleGAN run of ``tests/test_stylegan.py``
  (8x8 -> 16x16), trained once per session; tests must not write into it."""
  from tests.test_stylegan import tiny_config  # pylint: disable=g-import-not-at-top
  from zoo.tasks import stylegan  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp("stylegan") / "run")
  return workdir, stylegan.train_and_evaluate(tiny_config(), workdir, log=None)
