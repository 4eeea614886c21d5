"""Text-conditional DCGAN and its caption encoder end to end: training, judging by the
captions, generate / interpolate / export, SIGKILL resume, devices, bad input."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image

from launch.configs import dcgan_cls as config_lib
from zoo.data.faces import captioned
from zoo.gan import core
from zoo.errors import CaptionError, CheckpointError, ConfigError
from zoo.models import export as export_lib
from zoo.tasks import dcgan_cls as task_lib
from zoo.tasks import text_encoder as text_task
from zoo.training import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = {
  "model.resolution": 32,
  "model.ngf": 8,
  "model.ndf": 8,
  "model.latent_dim": 8,
  "model.proj_dim": 8,
  "data.num_faces": 24,
  "data.captions_per_face": 2,
  "batch_size": 8,
  "num_steps": 6,
  "eval.num_samples": 16,
  "num_captions": 2,
  "num_latents": 2,
  "log_every": 1,
  "save_every": 3,
  "eval_every": 0,
  "sample_every": 3,
}


def tiny_config(variant=None, **overrides):
  c = config_lib.get_config(variant)
  for k, v in {**TINY, **overrides}.items():
    section, _, key = k.rpartition(".")
    (c[section] if section else c)[key] = v
  return c


def test_match_matrix_by_hand():
  attrs = np.array([[0, 1], [0, 2], [1, 1]])
  mentions = np.array([[True, False], [False, True], [True, True]])
  expect = np.array(
    [  # caption 0 names attribute 0 = 0: images 0 and 1
      [True, True, False],
      # caption 1 names attribute 1 = 2: image 1 only
      [False, True, False],
      # caption 2 names both (1, 1): image 2 only
      [False, False, True],
    ]
  )
  np.testing.assert_array_equal(text_task.match_matrix(attrs, mentions), expect)


def test_heldout_captions_are_unseen_and_deterministic():
  train = captioned.CaptionedFaces("train", (32, 32), num_faces=50, captions_per_face=3)
  seen = train.all_captions()
  a = captioned.heldout_pairs(20, exclude=seen, with_images=False)
  b = captioned.heldout_pairs(20, exclude=seen, with_images=False)
  assert a["caption"] == b["caption"] and not set(a["caption"]) & seen
  assert a["mentions"].any(axis=1).all()  # every caption names something


def test_text_encoder_trains_exports_and_embeds(judges, tiny_text_encoder):
  env, result = judges, tiny_text_encoder[1]
  assert result.step == 20
  enc = text_task.load_text_encoder(env["ZOO_TEXT_ENCODER"])
  e = enc.embed(["A bald person.", "A person with red hair and round glasses."])
  assert e.shape == (2, 16) and np.isfinite(e).all()
  ev = enc_eval = __import__("json").load(open(os.path.join(env["ZOO_TEXT_ENCODER"], "eval.json")))
  assert 0 <= ev["eval"]["eval/retrieval_top1"] <= 1 and enc_eval["step"] == 20
  with pytest.raises(CaptionError):
    enc.embed([""])


def test_embedding_in_length_order_equals_padding_every_caption_to_max_len(judges):
  enc = text_task.load_text_encoder(judges["ZOO_TEXT_ENCODER"])
  caps = ["A bald person.", "Smiling. " * 12, "A person with red hair and round glasses.", "Eyes."]
  tok, ln = enc.vocab.encode(caps, enc.max_len)
  assert tok.shape[1] > 100  # the reference pads all to max_len
  full = np.asarray(
    text_task._maybe_unit(text_task._apply_encoder(enc.module, enc.params, tok, ln), enc.normalize)
  )
  np.testing.assert_allclose(enc.embed(caps), full, atol=1e-5)
  # several batches, each cut to its own length, come back in the captions' order
  batched = text_task._embed(
    enc.module, enc.params, enc.vocab, enc.max_len, caps, enc.normalize, batch=3
  )
  np.testing.assert_allclose(batched, full, atol=1e-5)


@pytest.fixture(scope="module")
def trained(judges, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dcgan") / "run")
  return workdir, task_lib.train_and_evaluate(tiny_config(), workdir, log=None)


def test_train_writes_samples_and_judges_by_captions(trained):
  workdir, res = trained
  assert res.step == 6
  for h in res.history:
    assert np.isfinite(h["loss"]) and np.isfinite(h["D"])
    assert "D_wrong_score" in h and "G_int" in h  # GAN-CLS and GAN-INT both on
  ev = res.eval_history[-1]
  assert 0 <= ev["eval/acc_mentioned"] <= 1 and ev["eval/FD"] >= 0
  assert 0 <= ev["eval/mismatch_rejection"] <= 1
  assert np.isfinite(ev["eval/D_overfitting"])
  assert 0 <= ev["eval/rejection/mouth"] <= 1 and 0 <= ev["eval/rejection/background_color"] <= 1
  assert ev["eval/diversity"] >= 0 and "eval/diversity/hair_style" in ev
  samples = os.listdir(os.path.join(workdir, "samples"))
  assert {"latest.png", "captions.txt", "captioned.png", "timelapse.gif"} <= set(samples)
  assert Image.open(os.path.join(workdir, "samples", "latest.png")).size[0] > 0


@pytest.mark.parametrize(
  "variant,keys,absent",
  [
    pytest.param("gan", set(), {"D_wrong_score", "G_int"}, marks=pytest.mark.slow),
    pytest.param("gan_cls", {"D_wrong_score"}, {"G_int"}, marks=pytest.mark.slow),
    pytest.param("gan_int", {"G_int"}, {"D_wrong_score"}, marks=pytest.mark.slow),
  ],
)
def test_the_four_objectives_are_selectable(judges, variant, keys, absent):
  c = tiny_config(variant, **{"eval.num_samples": 0})
  task = task_lib.DCGANCLSTask(
    c, mesh_lib.make_mesh(jax.devices()[:1]), encoder=text_task.load_text_encoder(), log=None
  )
  state = task.init_state(jax.random.key(0))
  batch = next(task.train_batches(0))
  _, metrics = jax.jit(task.train_step)(state, batch, jax.random.key(1), 0)
  assert keys <= set(metrics) and not absent & set(metrics)
  assert np.isfinite(float(metrics["loss"]))


def test_contradicting_wrong_captions(judges):
  c = tiny_config(**{"eval.num_samples": 0, "objective.wrong_caption": "contradicting"})
  task = task_lib.DCGANCLSTask(
    c, mesh_lib.make_mesh(jax.devices()[:1]), encoder=text_task.load_text_encoder(), log=None
  )
  batch = next(task.train_batches(0))
  again = next(task.train_batches(0))
  np.testing.assert_array_equal(batch["wrong_emb"], again["wrong_emb"])  # resumable
  attrs, mentions = task._contradict  # pylint: disable=protected-access
  # Which training caption each wrong embedding is, and the example's own image.
  dist = ((batch["wrong_emb"][:, None] - task.table[None]) ** 2).sum(-1)
  wrong = dist.argmin(1)
  own = ((batch["emb"][:, None] - task.table[None]) ** 2).sum(-1).argmin(1)
  counts = (mentions[wrong] & (attrs[wrong] != attrs[own])).sum(-1)
  assert (counts >= 1).all()
  # GAN-CLS's D loss uses them: the rolled batch (the paper's) gives another loss.
  state = task.init_state(jax.random.key(0))
  d_vars = core.net_variables(state["d"])
  fake = {"image": batch["image"][::-1]}

  def d_loss(b):
    return float(task.objective.d_loss(d_vars, b, fake, jax.random.key(0), 0)[0])

  rolled = {k: v for k, v in batch.items() if k != "wrong_emb"}
  explicit = {**rolled, "wrong_emb": np.roll(batch["emb"], 1, axis=0)}
  assert d_loss(rolled) == pytest.approx(d_loss(explicit), rel=1e-6)
  assert abs(d_loss(batch) - d_loss(rolled)) > 1e-6
  with pytest.raises(ConfigError, match="wrong_caption"):
    task_lib.validate_config(tiny_config(**{"objective.wrong_caption": "hardest"}))
  with pytest.raises(ConfigError, match="name attributes"):
    task_lib.validate_config(
      tiny_config(**{"objective.wrong_caption": "contradicting", "data.source": "/tmp/cub"})
    )


def test_generate_interpolate_export(trained, tmp_path):
  workdir, _ = trained
  png = task_lib.generate(
    workdir, "A smiling person with red hair.", num=4, output=str(tmp_path / "g.png"), log=None
  )
  assert Image.open(png).size[0] > 0
  paths = task_lib.interpolate(
    workdir,
    "A bald person.",
    "A person with long black hair.",
    steps=3,
    output=str(tmp_path / "i"),
    log=None,
  )
  gifs = [p for p in paths if p.endswith(".gif")]
  assert len(gifs) == 2 and Image.open(gifs[0]).n_frames == 4  # 3 forward, 1 back
  out = task_lib.export(workdir, output=str(tmp_path / "export"), log=None)
  exp = export_lib.load(out)
  enc = text_task.load_text_encoder(os.path.join(out, "text"))
  task, state, _ = task_lib.restore_task(workdir)
  emb = enc.embed(["A person with blond hair.", "A bald figure."])
  z = task.latents(2, 5)
  theirs = exp.module.apply(exp.variables, z, emb, train=False)
  np.testing.assert_allclose(theirs, task.generate(state, z, emb), atol=1e-5)


def test_ema_generator_samples_exports_and_resumes(judges, tmp_path):
  """With ``ema.half_life_images`` the EMA G, with batch statistics of its own, draws the
  samples and the export; a resumed run continues it exactly; switching it off on resume
  is refused."""
  keys = {"eval.num_samples": 0, "ema.half_life_images": 16, "num_steps": 4, "save_every": 2}
  c = tiny_config(**keys)
  straight = task_lib.train_and_evaluate(c, str(tmp_path / "straight"), log=None)
  split = str(tmp_path / "split")
  task_lib.train_and_evaluate(tiny_config(**{**keys, "num_steps": 2}), split, log=None)
  resumed = task_lib.train_and_evaluate(c, split, log=None)
  a, b = jax.device_get(straight.state), jax.device_get(resumed.state)
  assert "g_ema_collections" in b
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)

  task, state, _ = task_lib.restore_task(split)
  z, emb = task.latents(3, 1), task.encoder.embed(["A bald person.", "A person.", "Red hair."])
  ema_vars = {"params": state["g_ema"], **state["g_ema_collections"]}
  np.testing.assert_allclose(
    task.generate(state, z, emb), task.g.apply(ema_vars, z, emb, train=False), atol=1e-6
  )
  raw = task.g.apply(
    {"params": state["g"]["params"], "batch_stats": state["g"]["batch_stats"]}, z, emb, train=False
  )
  assert np.abs(task.generate(state, z, emb) - raw).max() > 1e-4
  exp = export_lib.load(task_lib.export(split, output=str(tmp_path / "export"), log=None))
  np.testing.assert_allclose(
    exp.module.apply(exp.variables, z, emb, train=False), task.generate(state, z, emb), atol=1e-5
  )
  with pytest.raises(ConfigError, match="ema.half_life_images"):
    task_lib.train_and_evaluate(
      tiny_config(**{**keys, "ema.half_life_images": 0, "num_steps": 6}), split, log=None
    )


_KILLER = textwrap.dedent(
  """
  import os, signal, sys
  sys.path.insert(0, {repo!r})
  from tests.test_dcgan_cls_task import tiny_config
  from zoo.tasks import dcgan_cls
  from zoo.training import checkpoint as ckpt_lib

  save = ckpt_lib.Checkpointer.save
  def save_then_die(self, step, state, meta=None, **kw):
    save(self, step, state, meta, **kw)
    if step == 3:
      self.wait()
      os.kill(os.getpid(), signal.SIGKILL)
  ckpt_lib.Checkpointer.save = save_then_die
  dcgan_cls.train_and_evaluate(tiny_config(), sys.argv[1], log=None)
  """
)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(trained, judges, tmp_path):
  workdir, straight = trained
  env = judges
  killed = str(tmp_path / "killed")
  script = tmp_path / "killer.py"
  script.write_text(_KILLER.format(repo=REPO))
  p = subprocess.run(
    [sys.executable, str(script), killed],
    env={**os.environ, **env},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert p.returncode == -9, p.stderr[-2000:]
  resumed = task_lib.train_and_evaluate(tiny_config(), killed, log=None)
  assert resumed.step == 6
  a, b = jax.device_get(straight.state), jax.device_get(resumed.state)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_four_devices_match_one(judges, tmp_path):
  # with the EMA G and its batch statistics, which the default run does not keep
  c = tiny_config(
    **{"eval.num_samples": 0, "sample_every": 0, "save_every": 0, "ema.half_life_images": 16}
  )
  one = task_lib.train_and_evaluate(
    c, str(tmp_path / "one"), mesh=mesh_lib.make_mesh(jax.devices()[:1]), log=None
  )
  four = task_lib.train_and_evaluate(
    c, str(tmp_path / "four"), mesh=mesh_lib.make_mesh(jax.devices()[:4]), log=None
  )
  np.testing.assert_allclose(
    [h["loss"] for h in one.history], [h["loss"] for h in four.history], rtol=1e-5
  )
  a, b = jax.device_get(one.state), jax.device_get(four.state)
  # Leaf by leaf would fail on noise: the tiny caption encoder's embeddings share most of
  # their direction, so D's text-projection bias feeds batch norm an almost constant
  # shift and its gradient is rounding noise, which Adam scales up to steps of ~lr. So
  # each network's parameters as a whole, and what the networks compute.
  for net in ("g", "d", "g_ema", "g_ema_collections"):
    x, y = (np.concatenate([np.ravel(v) for v in jax.tree.leaves(t[net])]) for t in (a, b))
    assert np.linalg.norm(x - y) <= 1e-4 * np.linalg.norm(x), net
  task, _, _ = task_lib.restore_task(str(tmp_path / "one"))
  z, emb = task.latents(4, 3), task.encoder.embed(["A bald person.", "Red hair."] * 2)
  np.testing.assert_allclose(task.generate(a, z, emb), task.generate(b, z, emb), atol=1e-4)
  real = task.generate(a, task.latents(4, 4), emb)
  for s, t in zip(task_lib._d_scores(task, a, real, emb), task_lib._d_scores(task, b, real, emb)):
    np.testing.assert_allclose(s, t, rtol=1e-4, atol=1e-4)


def _launch(*args, env=None):
  return subprocess.run(
    [sys.executable, "-m", "launch.dcgan_cls", *args],
    cwd=REPO,
    env={**os.environ, **(env or {})},
    capture_output=True,
    text=True,
    timeout=300,
  )


@pytest.mark.parametrize(
  "args,needle",
  [
    (["--mode", "generate", "--caption", "   "], "is empty"),
    pytest.param(
      ["--mode", "generate", "--caption", "\u4e2d\u6587"], "no token in the", marks=pytest.mark.slow
    ),
  ],
)
def test_bad_captions_one_line(trained, judges, args, needle):
  workdir, _ = trained
  p = _launch("--workdir", workdir, *args, env=judges)
  assert p.returncode == 2, p.stderr[-2000:]
  lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("error:")]
  assert len(lines) == 1 and needle in lines[0].lower() and "Traceback" not in p.stderr


def test_generate_without_checkpoint_one_line(judges, tmp_path):
  with pytest.raises(CheckpointError):
    task_lib.generate(str(tmp_path / "nothing"), "A bald person.", log=None)


def test_ds_sje_loss_with_a_match_matrix_by_hand():
  from zoo.losses.embedding import ds_sje_loss

  img = np.array([[1.0, 0.0], [0.0, 1.0]])
  txt = np.array([[1.0, 0.0], [1.0, 0.0]])
  # s[image, text] = [[1, 1], [0, 0]]. Text 0 describes both images, text 1 only image 1.
  match = np.array([[True, True], [False, True]])
  # image 0: max(0 + 1, Δ=1 (text 1 does not describe it) + 1) - 1 = 1
  # image 1: max(0 + 0, 0 + 0) - 0 = 0
  # text 0: max(0 + 1, 0 + 0) - 1 = 0; text 1: max(1 + 1, 0 + 0) - 0 = 2
  got = ds_sje_loss(img, txt, match=match, margin=1.0)
  np.testing.assert_allclose(got, [(1 + 0) / 2, (0 + 2) / 2])


def test_ds_sje_sum_counts_every_violation_by_hand():
  from zoo.losses.embedding import ds_sje_loss

  img = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  txt = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
  # s = [[1, 0, 0], [0, 1, 0], [1, 1, 0]], diagonal [1, 1, 0], margin 1, own text only.
  # sum, image side: rows 0, 1 violate nothing; row 2: (1 + 1 - 0) twice = 4.
  # sum, text side: column 0: image 2 gives 1 + 1 - 1 = 1; column 1 likewise 1;
  # column 2: images 0 and 1 each give 1 + 0 - 0 = 1, so 2.
  got = ds_sje_loss(img, txt, margin=1.0, aggregate="sum")
  np.testing.assert_allclose(got, [0.5, 0.5, 3.0])
  # max keeps the worst violation only: row 2 -> 2, column 2 -> 1.
  np.testing.assert_allclose(ds_sje_loss(img, txt, margin=1.0), [0.5, 0.5, 1.5])


def test_latent_toolkit_draws_for_one_caption(trained):
  from tests.test_gan_tools import check_caption_model  # pylint: disable=g-import-not-at-top

  check_caption_model(trained[0], "dcgan_cls")


def test_config_variants():
  for objective, want in config_lib.OBJECTIVES.items():
    c = config_lib.get_config(objective)
    assert (c.objective.cls, c.objective.int_beta) == (want["cls"], want["int_beta"])
    assert c.model.conditioning == "concat" and c.model.resolution == 32
  c = config_lib.get_config("gan_cls,paper,projection")
  assert (c.model.conditioning, c.model.resolution, c.objective.int_beta) == ("projection", 64, 0.0)
  assert config_lib.get_config("gan_int_cls,projection").model.ngf == 16
  for bad in ("gan_cls,wide", "projection", "gan,,bogus"):
    with pytest.raises(ValueError):
      config_lib.get_config(bad)
