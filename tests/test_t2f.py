"""T2F end to end: staged training with a jointly trained caption encoder, growth, judging
by the captions, SIGKILL mid-fade and resume, generate / interpolate / export, bad input."""

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from launch.configs import t2f as config_lib
from zoo.data import faces
from zoo.gan import core, progressive
from zoo.errors import CaptionError, CheckpointError, ConfigError, ZooError
from zoo.models import export as export_lib
from zoo.models import t2f as models
from zoo.models.progan import channels_at
from zoo.models.text import Vocabulary
from zoo.tasks import t2f as task_lib
from zoo.tasks import text_encoder as text_task
from zoo.training import checkpoint as ckpt_lib
from zoo.training import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 4x4 -> 8x8 -> 16x16; 4 steps per phase: stage 0 = steps 0-3, stage 1 fades in steps
# 4-7 and is stable in 8-11, stage 2 fades in 12-15 and is stable in 16-19.
TINY = {
  "model.latent_dim": 8,
  "model.ca_dim": 8,
  "model.embed_dim": 8,
  "model.hidden_dim": 8,
  "model.num_layers": 1,
  "model.cond_dim": 4,
  "model.fmap_base": 32,
  "model.fmap_max": 8,
  "schedule.resolution": (16, 16),
  "schedule.fade_images": 32,
  "schedule.stable_images": 32,
  "schedule.final_stable_images": 32,
  "schedule.batch_sizes": (8, 8, 8),
  "data.num_faces": 16,
  "data.captions_per_face": 2,
  "eval.num_samples": 8,
  "num_captions": 2,
  "num_latents": 2,
  "log_every": 1,
  "save_every": 0,
  "sample_every": 0,
  "async_checkpoints": False,
}


def tiny_config(variant=None, **overrides):
  c = config_lib.get_config(variant)
  for k, v in {**TINY, **overrides}.items():
    section, _, key = k.rpartition(".")
    (c[section] if section else c)[key] = v
  return c


def _task(c=None):
  c = c or tiny_config()
  vocab = task_lib.build_vocabulary(c)
  return task_lib.T2FTask(c, mesh_lib.make_mesh(jax.devices()[:1]), vocab=vocab, log=None)


def _flat(tree):
  return {
    jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
  }


def test_configs_and_schedule():
  s = progressive.make_schedule(tiny_config())
  assert s.starts == (0, 4, 12) and s.fades == (0, 4, 4) and s.total == 20
  paper = config_lib.get_config("paper")
  ps = progressive.make_schedule(paper)
  assert ps.num_stages == 5 and ps.resolution(4) == (64, 64)
  g, d = models.make_t2f(paper.model, 4, vocab_size=100)
  assert g.ca_dim + g.latent_dim == 256 and g.num_layers == 3 and g.hidden_dim == 256
  assert d.cond_features == 256 and d.cond_dim == 128
  default = progressive.make_schedule(config_lib.get_config())
  assert default.resolution(default.num_stages - 1) == (32, 32)
  task_lib.validate_config(config_lib.get_config())
  for arg in ("pretrained", "paper,pretrained"):
    c = config_lib.get_config(arg)
    assert c.model.text_encoder == "pretrained" and c.loss.kl_weight == 0.05
    assert progressive.make_schedule(c).num_stages == (5 if "paper" in arg else 4)
  assert config_lib.get_config().model.text_encoder == "lstm"
  assert config_lib.get_config().model.conditioning == "concat"
  c = config_lib.get_config("pretrained,projection")
  assert (c.model.conditioning, c.model.text_encoder) == ("projection", "pretrained")
  assert config_lib.get_config("projection_map").model.conditioning == "projection_map"
  assert config_lib.get_config().loss.balanced_mismatch
  c = config_lib.get_config("pretrained,projection,gan_cls")
  assert (c.loss.d_loss, c.loss.g_loss, c.loss.reg) == ("logistic", "nonsaturating", "r1")
  assert (c.loss.drift, c.loss.ca_noise, c.loss.kl_weight) == (0.0, 0.0, 0.0)
  task_lib.validate_config(c)
  best = config_lib.get_config("best")
  assert (best.model.conditioning, best.model.text_encoder) == ("projection", "pretrained")
  assert (best.loss.d_loss, best.loss.reg, best.loss.kl_weight) == ("logistic", "r1", 0.0)
  m = best.model
  widths = [channels_at(level, fmap_base=m.fmap_base, fmap_max=m.fmap_max) for level in range(4)]
  assert widths == [256, 128, 64, 32], widths  # the default's widths doubled at every level
  assert progressive.make_schedule(best).total == 20_000
  task_lib.validate_config(best)
  for bad in ("papr", "default,paper", "paper,best"):
    with pytest.raises(ValueError, match="variant"):
      config_lib.get_config(bad)


@pytest.fixture(scope="module")
def trained(judges, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("t2f") / "run")
  return workdir, task_lib.train_and_evaluate(tiny_config(), workdir, log=None)


def test_train_grows_judges_and_writes_samples(trained):
  workdir, res = trained
  assert res.step == 20
  g = res.state["g"]["params"]
  assert {"encoder", "ca", "generator"} == set(g)
  assert {"block_16x16", "to_rgb_16x16", "to_rgb_8x8"} <= set(g["generator"])
  assert "to_rgb_4x4" not in g["generator"]  # two levels down: dropped by the growth
  assert {"compress", "conv_cond"} <= set(res.state["d"]["params"]["block_4x4"])
  assert "encoder" not in res.state["d"]["params"] and "g_ema" in res.state
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True, async_save=False)
  assert {s: ck.read_meta(s)["stage"] for s in ck.all_steps()} == {4: 0, 12: 1, 20: 2}
  for h in res.history:
    for k in ("loss", "D", "G", "KL", "D_wrong_score", "D_gp", "G_grad_norm"):
      assert np.isfinite(h[k]), (k, h)
  assert [h["alpha"] for h in res.history if h["step"] in (5, 7)] == pytest.approx([0.0, 0.5])
  assert [e["step"] for e in res.eval_history] == [4, 12, 20]
  ev = res.eval_history[-1]
  assert 0 <= ev["eval/acc_mentioned"] <= 1 and ev["eval/FD"] >= 0 and ev["eval/stage"] == 2
  assert 0 <= ev["eval/mismatch_rejection"] <= 1 or np.isnan(ev["eval/mismatch_rejection"])
  assert "eval/D_overfitting" in ev
  assert 0 <= ev["eval/rejection/eyes"] <= 1
  assert ev["eval/diversity"] >= 0 and "eval/diversity/hair_style" in ev
  assert os.path.exists(os.path.join(workdir, "eval.json"))
  samples = set(os.listdir(os.path.join(workdir, "samples")))
  for name in ("stage0_4x4_00000004.png", "stage1_8x8_00000012.png", "timelapse.gif"):
    assert name in samples
  assert {"latest.png", "captions.txt", "captioned.png"} <= samples
  assert Image.open(os.path.join(workdir, "samples", "timelapse.gif")).n_frames == 3
  vocab = Vocabulary.load(os.path.join(workdir, "vocab.json"))
  assert (
    vocab.kind == "word"
    and len(vocab) == res.state["g"]["params"]["encoder"]["embed"]["embedding"].shape[0]
  )


def test_d_scores_blend_reals_but_not_samples_during_a_fade(trained):
  _, res = trained
  task = _task()
  x = np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  text = task.encode(["a smiling person with red hair"] * 4)
  step = 14  # stage 2, in its fade
  assert 0 < task._alpha(step) < 1  # pylint: disable=protected-access
  real = task.d_scores(res.state, x, text, step)
  fake = task.d_scores(res.state, x, text, step, real=False)
  fn = task._fn("score", 2)  # pylint: disable=protected-access
  gv, dv = core.net_variables(res.state["g"]), core.net_variables(res.state["d"])
  a = task._alpha(step)  # pylint: disable=protected-access
  blended = progressive.lod_blend(jnp.asarray(x), a, 2)
  np.testing.assert_allclose(
    real, np.asarray(fn(gv, dv, blended, text, a)).reshape(-1), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    fake, np.asarray(fn(gv, dv, x, text, a)).reshape(-1), rtol=1e-5, atol=1e-6
  )
  assert np.abs(real - fake).max() > 1e-4


def test_encoder_and_ca_are_trained_jointly_with_g(trained):
  _, res = trained
  c = tiny_config()
  task = _task(c)
  init_key, _ = jax.random.split(jax.random.key(c.seed))  # the loop's init key
  first = jax.device_get(task.init_state(init_key, 0))["g"]["params"]
  last = jax.device_get(res.state)["g"]["params"]
  before, after = _flat(first["encoder"]), _flat(last["encoder"])
  assert before.keys() == after.keys()
  # (The loop initialises under jit: the same values up to float rounding, hence > 1e-4:
  # Adam moves a weight by ~lr = 1e-3 a step.)
  for k in before:
    if "embed" not in k:  # the LSTM: every weight moved
      assert np.abs(before[k] - after[k]).max() > 1e-4, k
  # Embedding rows move for the words the captions use, never for <pad> / <unk>.
  emb0, emb1 = (t["['embed']['embedding']"] for t in (before, after))
  moved = np.abs(emb1 - emb0).max(axis=1)
  assert (moved[2:] > 1e-4).all() and (moved[:2] < 1e-5).all()
  for k, v in _flat(first["ca"]).items():
    assert np.abs(v - _flat(last["ca"])[k]).max() > 1e-4, k


@pytest.mark.slow  # ProGAN's growth tests cover the surgery in the default set
def test_growth_keeps_old_leaves_bit_identical():
  task = _task()
  state = jax.device_get(task.init_state(jax.random.key(1), 0))
  for stage in (1, 2):
    grown = jax.device_get(task.grow(state, jax.random.key(10 + stage), stage))
    old, new = _flat(state), _flat(grown)
    carried = [k for k in old if k in new]
    assert any("['encoder']" in k for k in carried) and any("['ca']" in k for k in carried)
    for k in carried:
      assert old[k].dtype == new[k].dtype and np.array_equal(old[k], new[k]), k
    for part in ("encoder", "ca"):  # stage-independent: carried whole
      assert _flat(grown["g"]["params"][part]).keys() == _flat(state["g"]["params"][part]).keys()
    res = task.schedule.resolution(stage)
    assert f"block_{res[0]}x{res[1]}" in grown["g"]["params"]["generator"]
    # Grown at alpha = 0, G draws what the previous stage drew, pixel-repeated.
    g_old, _ = task.networks(stage - 1)
    g_new, _ = task.networks(stage)
    ids, lengths = task.encode(["A bald person.", "A person with red hair and glasses."])
    lat = task.latents(2, 0)
    zd = task.config.model.latent_dim
    args = (ids, lengths, lat[:, :zd])
    a = g_old.apply({"params": state["g"]["params"]}, *args, 1.0, eps=lat[:, zd:])[0]
    b = g_new.apply({"params": grown["g"]["params"]}, *args, 0.0, eps=lat[:, zd:])[0]
    np.testing.assert_allclose(np.repeat(np.repeat(a, 2, 1), 2, 2), b, rtol=1e-5, atol=1e-5)
    state = grown


def test_discriminator_widths_apart_from_the_generator():
  c = tiny_config()
  c.model.d_fmap_base = 4 * c.model.fmap_base
  g, d = models.make_t2f(c.model, 1, vocab_size=20)
  assert (g.fmap_base, d.fmap_base) == (c.model.fmap_base, 4 * c.model.fmap_base)
  assert d.fmap_max == g.fmap_max == c.model.fmap_max


@pytest.mark.parametrize("conditioning", ["projection", "projection_map"])
def test_projection_discriminator_is_bilinear_in_the_condition(conditioning):
  """model.conditioning='projection': D(x, c) = head(x) + <EqualizedDense(c), phi(x)>, so
  two conditions' scores differ by the inner product computed by hand from dense0's
  output ('projection_map': from the flattened 4x4 map that dense0 reads), and the last
  block has no compressor; growth carries the projection."""
  c = tiny_config(**{"model.conditioning": conditioning})
  _, d = models.make_t2f(c.model, 1, vocab_size=20)
  assert d.conditioning == conditioning
  feat = d.cond_features
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 3)), jnp.float32)
  c1, c2 = (
    jnp.asarray(np.random.default_rng(s).standard_normal((3, feat)), jnp.float32) for s in (1, 2)
  )
  v = d.init(jax.random.key(0), x, c1, 0.5)
  last = v["params"]["block_4x4"]
  apply = jax.jit(lambda v, x, c: d.apply(v, x, c, 0.5, capture_intermediates=True))
  s1, inter = apply(v, x, c1)
  s2, _ = apply(v, x, c2)
  block = inter["intermediates"]["block_4x4"]
  if conditioning == "projection":
    phi = jax.nn.leaky_relu(block["dense0"]["__call__"][0], 0.2)
  else:
    phi = jax.nn.leaky_relu(block["conv_cond"]["__call__"][0], 0.2).reshape(3, -1)
  assert "compress" not in last and last["text_embed"]["kernel"].shape == (feat, phi.shape[1])
  assert phi.shape[1] == (8 if conditioning == "projection" else 4 * 4 * d._nf(0))
  k = np.asarray(last["text_embed"]["kernel"], np.float64) / np.sqrt(feat)  # equalized lr
  want = np.sum(((np.asarray(c1) - np.asarray(c2)) @ k) * np.asarray(phi), axis=1)
  assert np.abs(want).min() > 1e-3
  np.testing.assert_allclose(s1 - s2, want, rtol=1e-4, atol=1e-5)
  task = _task(c)
  state = jax.device_get(task.init_state(jax.random.key(1), 0))
  grown = jax.device_get(task.grow(state, jax.random.key(2), 1))
  np.testing.assert_array_equal(
    state["d"]["params"]["block_4x4"]["text_embed"]["kernel"],
    grown["d"]["params"]["block_4x4"]["text_embed"]["kernel"],
  )


def test_condition_on_the_ca_output_without_gradient_through_d():
  c = tiny_config(**{"model.d_condition": "ca", "loss.cond_grad": False})
  task = _task(c)
  _, d = task.networks(0)
  assert d.cond_features == c.model.ca_dim
  state = task.init_state(jax.random.key(0), 0)
  batch = next(task.train_batches(0))
  new, metrics = jax.jit(task.train_step, static_argnums=4)(state, batch, jax.random.key(1), 0, 0)
  assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["KL"]))
  moved = jax.tree.map(
    lambda a, b: float(jnp.abs(a - b).max()), state["g"]["params"]["ca"], new["g"]["params"]["ca"]
  )
  assert max(jax.tree.leaves(moved)) > 0


def test_near_miss_images_are_d_wrong_pairs():
  """loss.mismatch_pairs='near_miss': every batch row carries the image of a face that
  contradicts the row's caption in exactly one attribute it names, and D's
  matching-aware term scores that image with the row's own condition."""
  c = tiny_config(**{"loss.mismatch_pairs": "near_miss"})
  task = _task(c)
  src = task.source
  batch = next(task.train_batches(0))
  x = batch["wrong_image"]
  assert x.shape == batch["image"].shape
  near = task.near_misses()
  faces_ = np.stack([task_lib.image_data.to_float(src[i]["image"]) for i in range(len(src))])
  small = task_lib.image_data.downsample(faces_, faces_.shape[1] // x.shape[1])
  tokens, _ = task.encode(task.train_captions)
  for row in range(len(x)):
    which = np.flatnonzero(np.abs(small - x[row]).max((1, 2, 3)) < 1e-6)  # pairs of that face
    own = np.flatnonzero((tokens == batch["tokens"][row]).all(1))  # the row's caption
    if all((near[j] < 0).all() for j in own):  # no near miss: the previous row's image
      np.testing.assert_array_equal(x[row], batch["image"][row - 1])
      continue
    assert any(set(near[j]) & set(which) for j in own), row
    for j in own:  # each near miss contradicts exactly one attribute caption j names
      _, mentions, attrs = src.caption(j)
      for i in set(near[j]) - {-1}:
        other = src.caption(int(i))[2]
        assert sum(attrs[n] != other[n] for n, m in zip(faces.ATTRIBUTE_NAMES, mentions) if m) == 1
  state = task.init_state(jax.random.key(0), 0)
  obj = task.objective(0, 1.0)
  z = np.zeros((len(batch["lengths"]), c.model.latent_dim), np.float32)
  fake = obj.g_apply(core.generator_variables(state), batch, z, jax.random.key(3), 0)
  dv = {"params": state["d"]["params"]}
  _, (metrics, _) = obj.d_loss(dv, batch, fake, jax.random.key(4), 0)
  wrong = obj.d_apply(dv, batch["wrong_image"], fake["cond"], 0)
  np.testing.assert_allclose(metrics["D_wrong_score"], jnp.mean(wrong), rtol=1e-5)
  _, m = jax.jit(task.train_step, static_argnums=4)(state, batch, jax.random.key(1), 0, 0)
  assert np.isfinite(float(m["loss"]))


def test_near_miss_pairs_need_the_embedded_faces(tmp_path):
  c = tiny_config(**{"loss.mismatch_pairs": "near_miss", "data.source": str(tmp_path)})
  with pytest.raises(ConfigError, match="near_miss.*caption folder has no attributes"):
    task_lib.validate_config(c)


def test_near_misses_by_hand():
  from zoo.data.faces import captioned

  # faces (attribute codes) and which attributes their captions name
  attrs = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
  mentions = np.array(
    [[True, True, False], [False, True, False], [True, True, False], [False, False, True]]
  )
  near = captioned.near_misses(attrs, mentions, k=50, seed=0)
  # caption j against face i: how many attributes j names that face i does not have
  assert set(near[0]) == {1}  # caption 0 says (0, 0): face 2 misses twice, face 3 not
  assert set(near[1]) == {0, 3}  # says attribute 1 = 1: face 2 has it
  assert set(near[2]) == {1}  # says (1, 1): faces 0 and 3 miss twice
  assert set(near[3]) == {0, 1, 2}  # says attribute 2 = 1
  lonely = captioned.near_misses(attrs[:1], mentions[:1], k=3)
  assert (lonely == -1).all()  # a caption never misses its own face


def test_near_misses_are_every_near_miss_drawn_uniformly():
  """Against brute force on random faces: the draws cover exactly the pairs that
  contradict exactly one named attribute, each about equally often (a pooled chi-square;
  drawing the attribute uniformly instead of the pair would fail it)."""
  from zoo.data.faces import captioned

  rng = np.random.default_rng(5)
  chi2, dof = 0.0, 0
  for trial in range(4):
    attrs = rng.integers(0, 3, (60, 4))
    mentions = rng.random((60, 4)) < 0.6
    near = captioned.near_misses(attrs, mentions, k=4000, seed=trial)
    assert near.shape == (60, 4000) and near.dtype == np.int64
    for j in range(60):
      truth = np.flatnonzero(((attrs != attrs[j]) & mentions[j]).sum(1) == 1)
      if not len(truth):
        assert (near[j] == -1).all()
        continue
      assert set(near[j].tolist()) == set(truth.tolist()), j
      counts = np.bincount(np.searchsorted(truth, near[j]), minlength=len(truth))
      expected = 4000 / len(truth)
      chi2 += float(((counts - expected) ** 2 / expected).sum())
      dof += len(truth) - 1
  assert dof > 500
  assert abs(chi2 - dof) / np.sqrt(2 * dof) < 5, (chi2, dof)


def test_ca_noise_scales_the_conditioning_noise():
  # loss.ca_noise = 0: G trains and draws on c = mu (the CA's noise is off); 1 (the default)
  # is StackGAN's c = mu + sigma eps. Training and sampling scale eps alike.
  for scale in (0.0, 1.0):
    task = _task(tiny_config(**{"model.d_condition": "ca", "loss.ca_noise": scale}))
    state = task.init_state(jax.random.key(0), 0)
    batch = next(task.train_batches(0))
    g_apply = task.objective(0, 1.0).g_apply
    z = np.zeros((len(batch["lengths"]), task.config.model.latent_dim), np.float32)
    out = g_apply(core.generator_variables(state), batch, z, jax.random.key(3), 0)
    gap = float(jnp.abs(out["cond"] - out["mu"]).max())
    assert (gap == 0.0) == (scale == 0.0), (scale, gap)
    lat = task.latents(2, 0)
    other = lat.copy()
    other[:, task.config.model.latent_dim :] *= -1  # the same z, other CA noise
    captions = ["A person with blond hair."] * 2
    a, b = (task.generate_for(state, captions, x, 0) for x in (lat, other))
    assert (np.abs(a - b).max() == 0.0) == (scale == 0.0)


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
  assert len(paths) == 4 and len(gifs) == 2 and Image.open(gifs[0]).n_frames == 4
  out = task_lib.export(workdir, output=str(tmp_path / "export"), log=None)
  exp = export_lib.load(out)
  assert exp.info["resolution"] == [16, 16] and exp.info["stage"] == 2
  vocab = Vocabulary.load(os.path.join(out, exp.info["vocabulary"]))
  task, state, step = task_lib.restore_task(workdir)
  assert vocab == task.vocab
  captions = ["A person with blond hair.", "A bald figure with glasses."]
  lat = task.latents(2, 5)
  zd = exp.info["latent_dim"]
  ids, lengths = vocab.encode(captions, exp.info["max_len"])
  theirs, _ = exp.module.apply(
    exp.variables, ids, lengths, lat[:, :zd], exp.info["alpha"], eps=lat[:, zd:]
  )
  ours = task.generate_for(state, captions, lat, step)
  np.testing.assert_allclose(np.clip(theirs, -1, 1), ours, rtol=1e-5, atol=1e-5)


def test_pretrained_caption_encoder_takes_the_lstms_place(judges, tmp_path):
  # t2f.py:pretrained: the session's frozen caption encoder embeds the captions; G keeps
  # only the CA and the generator, D reads the encoder's embedding, and the export carries
  # the encoder (text/) so that its user needs no training code to draw.
  # Two stages (8x8 -> 16x16) of two steps per phase keep it cheap.
  phases = {f"schedule.{k}_images": 16 for k in ("fade", "stable", "final_stable")}
  c = tiny_config("pretrained", **phases, **{"model.start": (8, 8), "schedule.batch_sizes": (8,)})
  workdir = str(tmp_path / "run")
  res = task_lib.train_and_evaluate(c, workdir, log=None)
  enc = text_task.load_text_encoder(judges["ZOO_TEXT_ENCODER"])
  g = res.state["g"]["params"]
  assert set(g) == {"ca", "generator"} and res.step == 6
  assert g["ca"]["kernel"].shape[0] == enc.embed_dim
  compress = res.state["d"]["params"]["block_8x8"]["compress"]["kernel"]
  assert compress.shape[0] == enc.embed_dim
  assert 0 <= res.eval_history[-1]["eval/acc_mentioned"] <= 1
  task, state, step = task_lib.restore_task(workdir)
  captions = ["A person with blond hair.", "A bald figure with glasses."]
  np.testing.assert_array_equal(task.encode(captions)[0], enc.embed(captions))
  lat = task.latents(2, 5)
  ours = task.generate_for(state, captions, lat, step)
  out = task_lib.export(workdir, output=str(tmp_path / "export"), log=None)
  exp = export_lib.load(out)
  zd = c.model.latent_dim
  theirs, _ = exp.module.apply(
    exp.variables,
    text_task.load_text_encoder(os.path.join(out, exp.info["text_encoder"])).embed(captions),
    lat[:, :zd],
    exp.info["alpha"],
    eps=lat[:, zd:],
    method="synthesize",
  )
  np.testing.assert_allclose(np.clip(theirs, -1, 1), ours, rtol=1e-5, atol=1e-5)
  assert not np.allclose(ours[0], ours[1])  # two captions, two pictures
  with pytest.raises(ConfigError, match="text_encoder"):
    models.make_t2f(c.model, 0, vocab_size=3)  # no embedding size given


_KILLER = textwrap.dedent(
  """
  import os, signal, sys
  sys.path.insert(0, {repo!r})
  from tests.test_t2f import tiny_config
  from zoo.tasks import t2f
  from zoo.training import checkpoint as ckpt_lib

  save = ckpt_lib.Checkpointer.save
  def save_then_die(self, step, state, meta=None, **kw):
    save(self, step, state, meta, **kw)
    if step == {kill_at}:
      self.wait()
      os.kill(os.getpid(), signal.SIGKILL)
  ckpt_lib.Checkpointer.save = save_then_die
  t2f.train_and_evaluate(tiny_config(**{overrides!r}), sys.argv[1], log=None)
  """
)


@pytest.mark.slow  # ~2.5 min on 2 busy cores: a subprocess run killed at step 6, then resumed
def test_sigkill_mid_fade_then_resume_matches_uninterrupted(trained, tmp_path):
  workdir, straight = trained
  victim = str(tmp_path / "killed")
  overrides = {"save_every": 3, "eval.num_samples": 0}
  script = _KILLER.format(repo=REPO, kill_at=6, overrides=overrides)  # stage 1, alpha = 0.5
  p = subprocess.run([sys.executable, "-c", script, victim], cwd=REPO, capture_output=True)
  assert p.returncode == -9, p.stderr.decode()[-2000:]
  ck = ckpt_lib.Checkpointer(os.path.join(victim, "checkpoints"), read_only=True, async_save=False)
  assert ck.latest_step() == 6 and ck.read_meta(6)["stage"] == 1
  vocab = open(os.path.join(victim, "vocab.json")).read()
  # The resumed run reloads the vocabulary, finishes the fade, grows to stage 2 and ends
  # where the straight one did.
  resumed = task_lib.train_and_evaluate(tiny_config(**overrides), victim, log=None)
  assert resumed.step == 20
  assert open(os.path.join(victim, "vocab.json")).read() == vocab
  chex.assert_trees_all_close(
    jax.device_get(resumed.state), jax.device_get(straight.state), rtol=1e-5, atol=1e-5
  )


@pytest.mark.slow
def test_one_device_matches_four(trained, tmp_path):
  _, four = trained
  one = task_lib.train_and_evaluate(
    tiny_config(**{"eval.num_samples": 0}),
    str(tmp_path / "one"),
    mesh=mesh_lib.make_mesh(jax.devices()[:1]),
    log=None,
  )
  chex.assert_trees_all_close(
    jax.device_get(one.state), jax.device_get(four.state), rtol=1e-4, atol=1e-4
  )


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


def _launch(*args):
  return subprocess.run(
    [sys.executable, "-m", "launch.t2f", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )


@pytest.mark.parametrize(
  "caption, needle",
  [
    ("   ", "is empty"),
    # The launcher's error path is the same; the slow set covers the second message too.
    pytest.param(
      "xylophone quokka \u4e2d\u6587", "no token in the word vocabulary", marks=pytest.mark.slow
    ),
  ],
)
def test_bad_captions_one_line(trained, caption, needle):
  workdir, _ = trained
  p = _launch("--workdir", workdir, "--mode", "generate", "--caption", caption)
  assert p.returncode == 2, p.stderr[-2000:]
  lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("error:")]
  assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


def test_bad_captions_in_python(trained):
  workdir, _ = trained
  with pytest.raises(CaptionError):
    task_lib.interpolate(workdir, "A bald person.", "", log=None)


def test_generate_without_checkpoint(tmp_path):
  with pytest.raises(CheckpointError):
    task_lib.generate(str(tmp_path / "nothing"), "A bald person.", log=None)
  os.makedirs(tmp_path / "novocab" / "checkpoints" / "4")
  with pytest.raises(CheckpointError):  # checkpoints but no vocab.json
    task_lib.workdir_vocabulary(str(tmp_path / "novocab"), tiny_config())


@pytest.mark.parametrize(
  "overrides, words",
  [
    ({"model.d_condition": "pixels"}, "d_condition"),
    ({"model.conditioning": "sum"}, "conditioning"),
    ({"model.ca_dim": 0}, "ca_dim"),
    ({"loss.kl_weight": -1.0}, "kl_weight"),
    ({"loss.ca_noise": -0.5}, "ca_noise"),
    ({"loss.mismatch_pairs": "twin"}, "mismatch_pairs"),
    ({"loss.mismatch_pairs": "near_miss", "loss.matching_aware": False}, "mismatch_pairs"),
    (
      {"loss.d_loss": "logistic", "loss.g_loss": "nonsaturating", "loss.balanced_mismatch": False},
      "matching_aware",
    ),
    ({"schedule.resolution": (24, 24)}, "not model.start"),
    ({"text.max_len": 0}, "max_len"),
    ({"data.num_faces": 2}, "fewer than the largest batch"),
    ({"data.render_processes": -2}, "data.render_processes"),
    ({"schedule.resolution": (8, 8)}, "16 to 256 pixels"),  # smaller than the faces come
  ],
)
def test_bad_config_is_one_line(tmp_path, overrides, words):
  with pytest.raises(ZooError) as e:
    task_lib.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "w"), log=None)
  msg = str(e.value)
  assert words in msg and "\n" not in msg
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_latent_toolkit_draws_for_one_caption(trained):
  from tests.test_gan_tools import check_caption_model  # pylint: disable=g-import-not-at-top

  check_caption_model(trained[0], "t2f")
