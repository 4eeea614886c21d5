"""The explorer (``zoo.explore``, ``launch.explore``): its API through FastAPI's test
client, a real server on localhost under concurrent requests, the launcher, and the
pages in a real browser (Playwright driving Debian's Chromium; ``.ci/run`` installs it).

Every run is a tiny one trained here in seconds: a Sketch-RNN VAE, a pix2pix model,
StyleGAN (the session's), and a text-conditional DCGAN for the caption box.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, free_port
from zoo import gan_tools as gt
from zoo.errors import ConfigError
from zoo.explore import backends as B
from zoo.explore import server as S
from zoo.training import pictures

ARTIFACTS = pathlib.Path(os.environ.get("ZOO_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ---------------------------------------------------------------------------
# Runs, backends, app
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory, tiny_stylegan_run, judges):
  from tests.test_dcgan_cls_task import tiny_config as dcgan_config
  from tests.test_pix2pix import tiny_config as p2p_config
  from tests.test_sketch_rnn_train import tiny_config as sketch_config
  from zoo.tasks import dcgan_cls, pix2pix, sketch_rnn

  root = tmp_path_factory.mktemp("explore_runs")
  out = {"stylegan": tiny_stylegan_run[0]}
  out["sketch"] = str(root / "sketch")
  sketch_rnn.train_and_evaluate(
    sketch_config(conditional=True, eval_every=0, sample_every=0), out["sketch"]
  )
  out["p2p"] = str(root / "p2p")
  pix2pix.train_and_evaluate(p2p_config(), out["p2p"])
  out["dcgan"] = str(root / "dcgan")
  dcgan_cls.train_and_evaluate(dcgan_config(eval_every=0, sample_every=0), out["dcgan"], log=None)
  return out


@pytest.fixture(scope="module")
def loaded(workdirs):
  return {name: B.load_backend(w) for name, w in workdirs.items()}


@pytest.fixture(scope="module")
def client(loaded):
  from fastapi.testclient import TestClient

  return TestClient(S.create_app(loaded), raise_server_exceptions=False)


def post(client, run, action, body):
  return client.post(f"/api/runs/{run}/{action}", json=body)


def ok(client, run, action, body):
  r = post(client, run, action, body)
  assert r.status_code == 200, r.text
  return r.json()


def pixels(url: str) -> np.ndarray:
  assert url.startswith("data:image/png;base64,")
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def data_url(img: np.ndarray, fmt: str = "PNG") -> str:
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format=fmt)
  return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------


def test_detect_and_find_runs(workdirs, tiny_face_classifier, tmp_path):
  assert B.detect_family(workdirs["sketch"]) == "sketch_rnn"
  assert B.detect_family(workdirs["p2p"]) == "pix2pix"
  assert B.detect_family(workdirs["stylegan"]) == "stylegan"
  assert B.detect_family(workdirs["dcgan"]) == "dcgan_cls"
  assert B.detect_family(tiny_face_classifier) is None  # no page for a classifier
  # A folder of runs: nested, with a classifier and a stray folder that are skipped.
  for name in ("sketch", "p2p"):
    shutil.copytree(workdirs[name], tmp_path / "runs" / "group" / name)
  shutil.copytree(tiny_face_classifier, tmp_path / "runs" / "clf")
  (tmp_path / "runs" / "empty").mkdir()
  found = B.find_runs(str(tmp_path / "runs"))
  assert [os.path.basename(f) for f in found] == ["p2p", "sketch"]
  assert B.run_names(["a/run", "b/run", "c/x"]) == ["run", "run-2", "x"]
  with pytest.raises(ConfigError, match="not a directory"):
    B.find_runs(str(tmp_path / "nothing"))
  with pytest.raises(ConfigError, match="can show"):
    B.load_backend(tiny_face_classifier)


def test_runs_listing(client):
  runs = {r["name"]: r for r in client.get("/api/runs").json()}
  assert {n: r["kind"] for n, r in runs.items()} == {
    "stylegan": "generator",
    "sketch": "sketch",
    "p2p": "translate",
    "dcgan": "generator",
  }
  sg = runs["stylegan"]
  assert sg["truncation"] and sg["space"] == "w" and sg["caption"] is None
  assert len(sg["layers"]) == 4 and all(len(s) == 3 for s in sg["layers"])  # 8x8 -> 16x16
  assert runs["dcgan"]["caption"] and not runs["dcgan"]["truncation"]
  assert runs["sketch"]["conditional"] is True
  assert runs["p2p"]["size"] == [32, 32]
  page = client.get("/")
  assert page.status_code == 200 and "zoo explorer" in page.text
  assert "function select" in client.get("/static/app.js").text


# ---------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------


def test_generator_image_matches_the_toolkit(client, workdirs):
  a = ok(client, "stylegan", "image", {"seed": 3})
  m = gt.LatentModel.load(workdirs["stylegan"])
  want = m.images(m.sample(1, 3))[0]
  got = pixels(a["image"])
  assert got.shape == (16, 16, 3)
  np.testing.assert_allclose(got, pictures.to_uint8(want), atol=1)
  np.testing.assert_allclose(a["z"], m.sample_z(1, 3)[0], atol=1e-6)
  # The same request gives the same image; another seed another image; z overrides seed.
  assert ok(client, "stylegan", "image", {"seed": 3})["image"] == a["image"]
  assert ok(client, "stylegan", "image", {"seed": 4})["image"] != a["image"]
  assert ok(client, "stylegan", "image", {"seed": 0, "z": a["z"]})["image"] == a["image"]


def test_truncation_and_mixing(client):
  full = ok(client, "stylegan", "image", {"seed": 1})["image"]
  assert ok(client, "stylegan", "image", {"seed": 1, "psi": 0.5})["image"] != full
  zero = [ok(client, "stylegan", "image", {"seed": s, "psi": 0})["image"] for s in (1, 2)]
  assert zero[0] == zero[1]  # psi = 0: every latent becomes w_avg
  mixed = ok(client, "stylegan", "image", {"seed": 1, "mix": {"seed": 9, "lo": 0, "hi": 2}})
  assert mixed["image"] != full
  same = ok(client, "stylegan", "image", {"seed": 1, "mix": {"seed": 1, "lo": 0, "hi": 2}})
  assert same["image"] == full  # mixing in one's own styles changes nothing


def test_interpolation_endpoints(client):
  out = ok(client, "stylegan", "interpolate", {"seed_a": 5, "seed_b": 6, "steps": 5})
  assert len(out["images"]) == 5
  for url, seed in ((out["images"][0], 5), (out["images"][-1], 6)):
    ends = pixels(ok(client, "stylegan", "image", {"seed": seed})["image"]).astype(int)
    assert np.abs(pixels(url).astype(int) - ends).max() <= 1


def test_feature_maps_and_local_edit(client, loaded):
  layer = 2  # the first 16x16 layer
  h, w, c = loaded["stylegan"].describe()["layers"][layer]
  out = ok(client, "stylegan", "features", {"seed": 2, "layer": layer})
  assert out["shape"] == [h, w, c] and len(out["tiles"]) == c
  assert out["image"] == ok(client, "stylegan", "image", {"seed": 2})["image"]
  tile = pixels(out["tiles"][0])
  assert tile.shape[0] == tile.shape[1] >= 32
  base = pixels(out["image"]).astype(int)
  edit = {"layer": layer, "channels": [0, 1], "region": [0.25, 0.25, 0.75, 0.75], "delta": 8.0}
  edited = pixels(ok(client, "stylegan", "image", {"seed": 2, "edit": edit})["image"]).astype(int)
  assert np.abs(edited - base).max() > 5
  nothing = dict(edit, delta=0.0)
  assert (
    pixels(ok(client, "stylegan", "image", {"seed": 2, "edit": nothing})["image"]) == base
  ).all()
  # The tiles show the edited feature maps, with the image they make.
  f1 = ok(client, "stylegan", "features", {"seed": 2, "layer": layer, "edit": edit})
  assert f1["tiles"][0] != out["tiles"][0]
  assert (pixels(f1["image"]) == edited).all()


def test_attribute_vectors_on_demand_and_sliders(client, loaded):
  out = ok(client, "stylegan", "attributes", {"n": 64, "min_count": 4})
  names = out["attributes"]
  assert names and out["attributes_source"] == "computed from 64 samples (mean)"
  assert {r["name"]: r for r in client.get("/api/runs").json()}["stylegan"]["attributes"] == names
  base = ok(client, "stylegan", "image", {"seed": 7})["image"]
  moved = ok(client, "stylegan", "image", {"seed": 7, "attributes": {names[0]: 2.0}})["image"]
  assert moved != base
  assert ok(client, "stylegan", "image", {"seed": 7, "attributes": {names[0]: 0}})["image"] == base
  r = post(client, "stylegan", "image", {"seed": 7, "attributes": {"no=such": 1.0}})
  assert r.status_code == 400 and "no attribute vector" in r.json()["error"]
  reg = ok(client, "stylegan", "attributes", {"n": 64, "min_count": 4, "method": "regression"})
  assert reg["attributes"] == names and reg["attributes_source"].endswith("(regression)")


def test_mouth_animation(client, loaded):
  b = loaded["stylegan"]
  m = b.model
  layer = m.num_layers - 2
  pattern = np.zeros(m.layer_shape(layer), np.float32)
  pattern[..., 0] = 6.0
  b._mouth = gt.MouthEdit(layer, pattern, [0], gt.MOUTH_REGION, 1)  # a known edit
  out = ok(client, "stylegan", "mouth", {"seed": 2, "frames": 6})
  assert len(out["frames"]) == 6 and out["layer"] == layer
  frames = [pixels(f).astype(int) for f in out["frames"]]
  still = pixels(ok(client, "stylegan", "image", {"seed": 2})["image"]).astype(int)
  assert np.abs(frames[0] - still).max() <= 1  # strength 0 at the first frame
  assert np.abs(frames[3] - still).max() > 5  # widest at the middle


def test_caption_box(client):
  a = ok(client, "dcgan", "image", {"seed": 1, "caption": "a person with red hair"})["image"]
  b = ok(client, "dcgan", "image", {"seed": 1, "caption": "a person with black hair"})["image"]
  assert a != b
  assert (
    ok(client, "dcgan", "image", {"seed": 1, "caption": "a person with red hair"})["image"] == a
  )
  out = ok(client, "dcgan", "interpolate", {"seed_a": 0, "seed_b": 1, "steps": 3, "caption": "x"})
  assert len(out["images"]) == 3


# ---------------------------------------------------------------------------
# pix2pix and Sketch-RNN
# ---------------------------------------------------------------------------


def test_translate_matches_the_generator(client, loaded, workdirs):
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  got = pixels(ok(client, "p2p", "translate", {"image": data_url(img)})["image"])
  b = loaded["p2p"]
  x = img.astype(np.float32)[None] / 127.5 - 1
  want = np.asarray(b._gen(b.g_vars, x, np.zeros((1,), np.int32)))[0]
  assert np.abs(got.astype(int) - pictures.to_uint8(want).astype(int)).max() <= 1
  # A canvas drawing: transparent pixels are white paper; any size is resized.
  rgba = np.zeros((100, 60, 4), np.uint8)
  white = np.full((100, 60, 3), 255, np.uint8)
  a = ok(client, "p2p", "translate", {"image": data_url(rgba)})["image"]
  assert a == ok(client, "p2p", "translate", {"image": data_url(white)})["image"]
  assert pixels(a).shape == (32, 32, 3)
  jpeg = ok(client, "p2p", "translate", {"image": data_url(white, "JPEG")})
  assert pixels(jpeg["image"]).shape == (32, 32, 3)


def test_sketch_sample_complete_interpolate(client, loaded):
  out = ok(client, "sketch", "sample", {"n": 3, "temperature": 0.5, "seed": 1})
  assert len(out["sketches"]) == 3
  assert out == ok(client, "sketch", "sample", {"n": 3, "temperature": 0.5, "seed": 1})
  prefix = [[0, 0, 0], [10, 5, 0], [8, -3, 1], [-20, 10, 0], [5, 5, 1]]
  out = ok(client, "sketch", "complete", {"strokes": prefix, "n": 2, "seed": 0})
  assert out["prefix_rows"] == len(prefix) and len(out["sketches"]) == 2
  for s in out["sketches"]:
    np.testing.assert_allclose(np.asarray(s[: len(prefix)]), prefix, atol=1e-3)
    assert all(len(r) == 3 and r[2] in (0, 1) for r in s)
  # sketch-rnn-js stroke-5 rows are read the same way.
  js = [[dx, dy, 1 - p, p, 0] for dx, dy, p in prefix] + [[0, 0, 0, 0, 1]]
  assert ok(client, "sketch", "complete", {"strokes": js, "n": 2, "seed": 0}) == out
  inter = ok(client, "sketch", "interpolate", {"a": prefix, "steps": 4, "seed": 0})
  assert len(inter["sketches"]) == 4


# ---------------------------------------------------------------------------
# Bad input: 4xx with one line, never a traceback
# ---------------------------------------------------------------------------

BIG_PNG = data_url(np.zeros((4, 3000, 3), np.uint8))
BAD = [
  ("nope", "image", {}, 404, "no run named"),
  ("stylegan", "translate", {}, 404, "no action"),
  ("stylegan", "image", {"seed": -1}, 400, "seed"),
  ("stylegan", "image", {"seed": "abc"}, 400, "integer"),
  ("stylegan", "image", {"seed": True}, 400, "integer"),
  ("stylegan", "image", {"psi": 1.5}, 400, "psi"),
  ("stylegan", "image", {"z": [1, 2]}, 400, "z must be"),
  ("stylegan", "image", {"caption": "hello"}, 400, "takes no caption"),
  ("stylegan", "image", {"attributes": [1]}, 400, "attributes"),
  ("stylegan", "image", {"mix": {"seed": 1, "lo": 3, "hi": 1}}, 400, "mix.lo"),
  ("stylegan", "features", {"layer": 99}, 400, "layer 99 does not exist"),
  (
    "stylegan",
    "attributes",
    {"n": 64, "method": "pca"},
    400,
    "method='pca', expected one of mean, regression",
  ),
  (
    "stylegan",
    "image",
    {"edit": {"layer": 0, "channels": [9999], "region": [0, 0, 1, 1], "delta": 1}},
    400,
    "channels",
  ),
  (
    "stylegan",
    "image",
    {"edit": {"layer": 0, "channels": [0], "region": [0.5, 0, 0.2, 1], "delta": 1}},
    400,
    "region",
  ),
  ("stylegan", "interpolate", {"steps": 100}, 400, "steps"),
  ("stylegan", "mouth", {"frames": 1000}, 400, "frames"),
  ("dcgan", "image", {"caption": "x" * 400}, 400, "caption"),
  ("dcgan", "image", {"psi": 0.5}, 400, "truncation"),
  ("dcgan", "features", {"layer": 0}, 400, "StyleGAN"),
  ("p2p", "translate", {}, 400, "data:image"),
  ("p2p", "translate", {"image": "data:image/png;base64,@@@"}, 400, "decoded"),
  ("p2p", "translate", {"image": "data:text/html;base64,AAAA"}, 400, "data:image"),
  ("p2p", "translate", {"image": BIG_PNG}, 400, "at most 2048"),
  ("sketch", "complete", {}, 400, "strokes"),
  ("sketch", "complete", {"strokes": [[1, 2]]}, 400, "rows of 5"),
  ("sketch", "complete", {"strokes": [[1, 2, 2]]}, 400, "pen_lift"),
  ("sketch", "complete", {"strokes": [[1e6, 0, 0]]}, 400, "beyond"),
  ("sketch", "complete", {"strokes": [[0, 0, 0]] * 5000}, 400, "at most"),
  ("sketch", "complete", {"strokes": [[1, 0, 0]], "n": 50}, 400, "n=50"),
  ("sketch", "sample", {"temperature": 0}, 400, "temperature"),
  ("sketch", "sample", {"n": "4"}, 400, "integer"),
]


@pytest.mark.parametrize("run,action,body,status,match", BAD)
def test_bad_requests(client, run, action, body, status, match):
  r = post(client, run, action, body)
  assert r.status_code == status, r.text
  msg = r.json()["error"]
  assert match in msg and "\n" not in msg and "Traceback" not in msg


@pytest.mark.parametrize(
  "body,status",
  [(b"{not json", 400), (b"[1, 2]", 400), (b"\xff\xfe", 400), (b"NaN", 400)],
)
def test_bad_bodies(client, body, status):
  r = client.post("/api/runs/stylegan/image", content=body)
  assert r.status_code == status and "error" in r.json()


def test_sketch_nan_and_large_body(client):
  r = client.post(
    "/api/runs/sketch/complete",
    content=b'{"strokes": [[NaN, 0, 0]]}',
    headers={"content-type": "application/json"},
  )
  assert r.status_code == 400 and "non-finite" in r.json()["error"]
  r = client.post("/api/runs/p2p/translate", content=b"{" + b" " * (S.MAX_BODY + 1) + b"}")
  assert r.status_code == 413


def test_no_file_outside_the_app(client):
  for path in (
    "/static/../../../../etc/passwd",
    "/static/..%2F..%2Fserver.py",
    "/static/index.html",
    "/static/backends.py",
  ):
    r = client.get(path)
    assert r.status_code == 404, path
    assert "import" not in r.text and "root:" not in r.text


# ---------------------------------------------------------------------------
# A real server: concurrent tabs, and the launcher
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(loaded):
  """A uvicorn server on a free localhost port, in a thread, over the loaded runs."""
  import uvicorn

  port = free_port()
  config = uvicorn.Config(S.create_app(loaded), host="127.0.0.1", port=port, log_level="error")
  srv = uvicorn.Server(config)
  t = threading.Thread(target=srv.run, daemon=True)
  t.start()
  deadline = time.time() + 30
  while not srv.started:
    assert time.time() < deadline, "the server did not start"
    time.sleep(0.05)
  yield f"http://127.0.0.1:{port}"
  srv.should_exit = True
  t.join(10)


def http_post(url: str, body: dict) -> dict:
  req = urllib.request.Request(
    url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
  )
  with urllib.request.urlopen(req, timeout=120) as r:
    return json.loads(r.read())


def test_concurrent_requests_from_several_tabs(live):
  white = data_url(np.full((32, 32, 3), 255, np.uint8))
  jobs = [("stylegan", "image", {"seed": s % 5, "psi": 0.8}) for s in range(12)]
  jobs += [("p2p", "translate", {"image": white})] * 4
  jobs += [("sketch", "sample", {"n": 2, "seed": s % 2}) for s in range(4)]
  jobs += [("dcgan", "image", {"seed": s % 3, "caption": f"hair {s % 2}"}) for s in range(6)]
  alone = {
    json.dumps(j, sort_keys=True): http_post(f"{live}/api/runs/{j[0]}/{j[1]}", j[2]) for j in jobs
  }
  with ThreadPoolExecutor(8) as pool:
    together = list(pool.map(lambda j: http_post(f"{live}/api/runs/{j[0]}/{j[1]}", j[2]), jobs * 2))
  for j, out in zip(jobs * 2, together):
    assert out == alone[json.dumps(j, sort_keys=True)], j[:2]


def test_launcher_errors(tmp_path, tiny_face_classifier):
  cases = [
    ([], "no runs"),
    (["--workdir", str(tmp_path / "missing")], "does not exist"),
    (["--workdir", tiny_face_classifier], "can show"),
    (["--runs", str(tmp_path)], "no runs the explorer can show"),
    (["--workdir", str(tmp_path), "--port", "70000"], "--port"),
  ]
  for args, match in cases:
    p = subprocess.run(
      [sys.executable, "-m", "launch.explore", *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=120,
    )
    assert p.returncode == 2, (args, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], (args, lines)


def test_launcher_serves_on_localhost(workdirs):
  port = free_port()
  p = subprocess.Popen(
    [sys.executable, "-m", "launch.explore", "--workdir", workdirs["p2p"], "--port", str(port)],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  try:
    lines = []
    deadline = time.time() + 180
    while time.time() < deadline:
      line = p.stdout.readline()
      assert line or p.poll() is None, "".join(lines)
      lines.append(line)
      if "serving on" in line:
        break
    assert f"http://localhost:{port}/" in lines[-1], "".join(lines)
    for _ in range(100):  # uvicorn binds just after the line is printed
      try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=10) as r:
          runs = json.loads(r.read())
        break
      except urllib.error.URLError:
        time.sleep(0.1)
    assert [r["family"] for r in runs] == ["pix2pix"]
    # Only on the loopback interface.
    conns = (
      shutil.which("ss") and subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    )
    if conns:
      listening = [l for l in conns.splitlines() if f":{port} " in l]
      assert listening and all("127.0.0.1" in l for l in listening), listening
  finally:
    p.terminate()
    p.wait(30)


# ---------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
  if CHROMIUM is None:
    pytest.skip("Chromium not installed (.ci/run installs Debian's chromium package)")
  pw_api = pytest.importorskip("playwright.sync_api")
  ARTIFACTS.mkdir(parents=True, exist_ok=True)
  with pw_api.sync_playwright() as pw:
    b = pw.chromium.launch(
      executable_path=CHROMIUM,
      args=[
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    )
    yield b
    b.close()


@pytest.fixture
def page(browser, live):
  p = browser.new_page(viewport={"width": 1280, "height": 1000})
  errors = []
  p.on("pageerror", lambda e: errors.append(str(e)))
  p.set_default_timeout(120_000)
  yield p
  p.close()
  assert not errors, errors


def open_run(page, live, name):
  page.goto(f"{live}/?run={name}")
  page.wait_for_selector(f"nav button.active[data-run='{name}']")


def wait_version(page, selector, above: int) -> None:
  page.wait_for_function(
    "([s, v]) => Number(document.querySelector(s).dataset.version) > v", arg=[selector, above]
  )


def version(page, selector) -> int:
  return int(page.get_attribute(selector, "data-version"))


def test_browser_generator_slider_and_feature_edit(page, live):
  open_run(page, live, "stylegan")
  wait_version(page, "#gen-image", 0)
  before = page.get_attribute("#gen-image", "src")
  v = version(page, "#gen-image")
  page.locator("#psi").fill("0.3")  # moving the truncation slider redraws the image
  wait_version(page, "#gen-image", v)
  assert page.get_attribute("#gen-image", "src") != before
  # Feature maps: click a tile, the edited image differs from the unedited one.
  page.wait_for_selector("#tiles img.tile")
  page.wait_for_function(  # the edit view shows the current image, unedited
    "document.querySelector('#edited-image').src === document.querySelector('#gen-image').src"
  )
  unedited = page.get_attribute("#edited-image", "src")
  v = version(page, "#edited-image")
  page.locator("#edit-strength").fill("20")
  page.locator("#tiles img.tile").nth(0).click()
  wait_version(page, "#edited-image", v)
  assert page.get_attribute("#edited-image", "src") != unedited
  page.click("#interp-go")
  page.wait_for_function("document.querySelectorAll('#interp-strip img').length === 8")
  page.screenshot(path=str(ARTIFACTS / "explore_generator.png"), full_page=True)


def test_browser_caption_box(page, live):
  open_run(page, live, "dcgan")
  wait_version(page, "#gen-image", 0)
  before = page.get_attribute("#gen-image", "src")
  v = version(page, "#gen-image")
  page.locator("#caption").fill("a person with blond hair and no glasses")
  wait_version(page, "#gen-image", v)
  assert page.get_attribute("#gen-image", "src") != before
  assert page.is_hidden("#features-section") and page.is_hidden("#psi-row")
  page.screenshot(path=str(ARTIFACTS / "explore_caption.png"), full_page=True)


def draw(page, selector, points):
  box = page.locator(selector).bounding_box()
  x0, y0 = box["x"], box["y"]
  page.mouse.move(x0 + points[0][0], y0 + points[0][1])
  page.mouse.down()
  for x, y in points[1:]:
    page.mouse.move(x0 + x, y0 + y, steps=4)
  page.mouse.up()


def test_browser_draw_and_translate(page, live):
  open_run(page, live, "p2p")
  wait_version(page, "#translated", 0)  # the blank page is translated on opening
  blank = page.get_attribute("#translated", "src")
  v = version(page, "#translated")
  draw(page, "#draw-canvas", [(40, 40), (200, 60), (180, 200), (60, 180)])
  wait_version(page, "#translated", v)
  assert page.get_attribute("#translated", "src") != blank
  page.screenshot(path=str(ARTIFACTS / "explore_pix2pix.png"), full_page=True)


def test_browser_draw_and_complete(page, live):
  open_run(page, live, "sketch")
  draw(page, "#sketch-canvas", [(60, 60), (150, 80), (200, 160)])
  draw(page, "#sketch-canvas", [(100, 200), (160, 260)])
  page.wait_for_function(
    "document.querySelectorAll('#completions canvas').length === 4 &&"
    " [...document.querySelectorAll('#completions canvas')].every(c => c.dataset.done === '1')"
  )
  inked = page.evaluate(
    """[...document.querySelectorAll('#completions canvas')].map(c => {
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })"""
  )
  assert all(n > 50 for n in inked), inked  # every completion drew the prefix at least
  rows = page.evaluate("Number(document.querySelector('#completions canvas').dataset.rows)")
  assert rows >= 7  # the prefix's points (two strokes) and whatever the model added
  page.screenshot(path=str(ARTIFACTS / "explore_sketch.png"), full_page=True)
  # Export: the completions as sketch-rnn-js stroke-5 JSON, each ending [0, 0, 0, 0, 1].
  with page.expect_download() as dl:
    page.click("#sketch-export")
  exported = json.loads(pathlib.Path(dl.value.path()).read_text())
  assert len(exported) == 4 and all(s[-1] == [0, 0, 0, 0, 1] for s in exported)
  # Import a sketch-rnn-js file: it becomes the drawing, and the model completes it.
  page.click("#sketch-clear")
  js = [[10, 0, 1, 0, 0], [0, 10, 1, 0, 0], [-10, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
  path = ARTIFACTS / "imported_sketch.json"
  path.write_text(json.dumps(js))
  page.set_input_files("#sketch-import", str(path))
  page.wait_for_function(
    "document.querySelectorAll('#completions canvas').length === 4 &&"
    " [...document.querySelectorAll('#completions canvas')].every(c => c.dataset.done === '1')"
  )
  assert page.evaluate("Number(document.querySelector('#completions canvas').dataset.rows)") >= 3
