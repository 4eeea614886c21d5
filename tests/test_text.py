"""Tests for zoo.models.text (vocabulary, text encoders) and zoo.losses.embedding."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.errors import CaptionError, CheckpointError
from zoo.losses.embedding import ds_sje_loss, retrieval_accuracy
from zoo.models.text import CharCNNRNN, LSTMEncoder, Vocabulary, pooled_lengths

CAPTIONS = [
  "This bird has a red crown.",
  "A small bird with a red belly and black wings.",
  "the bird's wings are yellow-ish",
]


# --------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------


def test_word_vocab_build_order_min_count_max_size():
  vocab = Vocabulary.build(CAPTIONS, "word")
  assert vocab.tokens[:2] == ("<pad>", "<unk>")
  # "bird" x2, "a" x3, "red" x2, "." x2 -> most frequent first, ties alphabetical
  assert vocab.tokens[2:6] == ("a", ".", "bird", "red")
  assert "bird's" in vocab.tokens and "yellow-ish" in vocab.tokens
  assert len(vocab) == len(set(vocab.tokens))
  frequent = Vocabulary.build(CAPTIONS, "word", min_count=2)
  assert frequent.tokens == ("<pad>", "<unk>", "a", ".", "bird", "red", "wings")
  small = Vocabulary.build(CAPTIONS, "word", max_size=4)
  assert small.tokens == ("<pad>", "<unk>", "a", ".")


def test_word_encode_decode_round_trip():
  vocab = Vocabulary.build(CAPTIONS, "word")
  ids, lengths = vocab.encode(CAPTIONS, 16)
  chex.assert_shape(ids, (3, 16))
  chex.assert_shape(lengths, (3,))
  assert ids.dtype == np.int32 and lengths.dtype == np.int32
  np.testing.assert_array_equal(lengths, [7, 11, 5])
  assert (ids[0, 7:] == 0).all()
  assert vocab.decode(ids[0], lengths[0]) == "this bird has a red crown ."
  assert vocab.decode(ids[2]) == "the bird's wings are yellow-ish"


def test_char_default_vocab_round_trip_and_unknown():
  vocab = Vocabulary.default_chars()
  assert len(vocab) == 71 and vocab.kind == "char"
  ids, lengths = vocab.encode(["A  Red\tbird!", "héllo"], 20)
  np.testing.assert_array_equal(lengths, [11, 5])
  assert vocab.decode(ids[0], lengths[0]) == "a red bird!"
  assert ids[1, 1] == 1  # 'é' is not in Reed's alphabet
  assert vocab.decode(ids[1], lengths[1]) == "h<unk>llo"


def test_word_unknown_maps_to_one():
  vocab = Vocabulary.build(CAPTIONS, "word")
  ids, lengths = vocab.encode(["a blue bird"], 5)
  assert lengths[0] == 3
  assert ids[0, 1] == 1
  assert ids[0, 0] == vocab.token_id("a") and ids[0, 2] == vocab.token_id("bird")


def test_truncation_warns_once():
  vocab = Vocabulary.default_chars()
  with pytest.warns(UserWarning, match=r"2 of 3 captions .*max_len=5") as record:
    ids, lengths = vocab.encode(["a long caption", "short", "another long one"], 5)
  assert len(record) == 1
  np.testing.assert_array_equal(lengths, [5, 5, 5])
  assert vocab.decode(ids[0], lengths[0]) == "a lon"


@pytest.mark.parametrize("caption", ["", "   \n "])
def test_empty_caption_raises(caption):
  vocab = Vocabulary.default_chars()
  with pytest.raises(CaptionError, match="caption 1 is empty") as info:
    vocab.encode(["fine", caption], 8)
  assert isinstance(info.value, ValueError)
  assert "\n" not in str(info.value)


def test_all_unknown_caption_raises():
  vocab = Vocabulary.build(CAPTIONS, "word")
  with pytest.raises(CaptionError, match="no token in the word vocabulary.*'zebra quokka'"):
    vocab.encode(["a bird", "zebra quokka"], 8)


def test_save_load_round_trip(tmp_path):
  vocab = Vocabulary.build(CAPTIONS, "word")
  path = tmp_path / "sub" / "vocab.json"
  vocab.save(path)
  data = json.loads(path.read_text())
  assert data["format"] == "zoo.vocabulary/1" and data["kind"] == "word"
  assert Vocabulary.load(path) == vocab
  chars = Vocabulary.default_chars()
  chars.save(tmp_path / "chars.json")
  assert Vocabulary.load(tmp_path / "chars.json") == chars


@pytest.mark.parametrize(
  "content",
  [
    None,  # missing file
    "{not json",
    '{"format": "other/1", "kind": "word", "tokens": ["<pad>", "<unk>"]}',
    '{"format": "zoo.vocabulary/1", "kind": "word", "tokens": "abc"}',
    '{"format": "zoo.vocabulary/1", "kind": "byte", "tokens": ["<pad>", "<unk>"]}',
    '{"format": "zoo.vocabulary/1", "kind": "word", "tokens": ["<unk>", "<pad>"]}',
    '{"format": "zoo.vocabulary/1", "kind": "word", "tokens": ["<pad>", "<unk>", "a", "a"]}',
  ],
)
def test_load_malformed_raises_checkpoint_error(tmp_path, content):
  path = tmp_path / "vocab.json"
  if content is not None:
    path.write_text(content)
  with pytest.raises(CheckpointError) as info:
    Vocabulary.load(path)
  assert "\n" not in str(info.value) and str(path) in str(info.value)


# --------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------

CHAR_VOCAB = Vocabulary.default_chars()
CHAR_CAPTIONS = ["a red bird", "this small bird has black wings", "x"]


def _char_model():
  return CharCNNRNN(len(CHAR_VOCAB), conv_channels=(8, 12, 16), rnn_dim=10, embed_dim=6)


def _lstm_model():
  return LSTMEncoder(len(CHAR_VOCAB), embed_dim_in=8, hidden_dim=12, num_layers=2)


ENCODERS = {"char_cnn_rnn": _char_model, "lstm": _lstm_model}


def _random_params(model, ids, lengths):
  """Parameters of ``model`` drawn with numpy: ``eval_shape`` of ``init`` only traces, which
  spares compiling the initializers (many seconds on a loaded CPU)."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids, lengths)
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes)


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def encoder(request):
  """(model, params, jitted apply, ids [3, 32], lengths [3], output [3, F])."""
  model = ENCODERS[request.param]()
  ids, lengths = CHAR_VOCAB.encode(CHAR_CAPTIONS, 32)
  ids, lengths = jnp.asarray(ids), jnp.asarray(lengths)
  params = _random_params(model, ids, lengths)
  apply = jax.jit(model.apply)
  return model, params, apply, ids, lengths, apply(params, ids, lengths)


def test_pooled_lengths():
  np.testing.assert_array_equal(
    pooled_lengths(jnp.array([0, 1, 3, 4, 9, 10]), 3, 2), [0, 1, 1, 1, 1, 2]
  )


def test_encoder_shapes_and_dtypes(encoder):
  model, _, _, _, _, out = encoder
  size = model.embed_dim if isinstance(model, CharCNNRNN) else model.hidden_dim
  chex.assert_shape(out, (3, size))
  chex.assert_type(out, jnp.float32)
  chex.assert_tree_all_finite(out)
  assert not np.allclose(out[0], out[1])


def test_encoder_padding_invariance(encoder):
  _, params, apply, ids, lengths, out = encoder
  longer = jnp.pad(ids, ((0, 0), (0, 13)))
  np.testing.assert_allclose(apply(params, longer, lengths), out, atol=1e-5)
  # Whatever lies past `lengths` is never read.
  junk = jnp.where(jnp.arange(ids.shape[1])[None] >= lengths[:, None], 5, ids)
  np.testing.assert_allclose(apply(params, junk, lengths), out, atol=1e-5)


def test_encoder_batch_independence(encoder):
  _, params, apply, ids, lengths, out = encoder
  np.testing.assert_allclose(apply(params, ids[::-1], lengths[::-1]), out[::-1], atol=1e-5)
  n = int(lengths[0])
  alone = apply(params, ids[:1, :n], lengths[:1])  # the sequence alone, unpadded
  np.testing.assert_allclose(alone[0], out[0], atol=1e-5)


def test_encoder_jit_matches_eager_and_vmap(encoder):
  model, params, apply, ids, lengths, out = encoder
  np.testing.assert_allclose(model.apply(params, ids, lengths), out, atol=1e-5)
  stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
  both = jax.jit(jax.vmap(model.apply, in_axes=(0, None, None)))(stacked, ids, lengths)
  np.testing.assert_allclose(both[0], out, atol=1e-5)
  doubled = jax.tree.map(lambda p: 2 * p, params)
  np.testing.assert_allclose(both[1], apply(doubled, ids, lengths), atol=1e-5)


def test_encoder_gradients_finite_and_nonzero(encoder):
  _, params, apply, ids, lengths, _ = encoder

  def loss(p):
    return jnp.sum(jnp.sin(apply(p, ids, lengths)))

  grads = jax.jit(jax.grad(loss))(params)
  chex.assert_tree_all_finite(grads)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert jnp.any(g != 0), jax.tree_util.keystr(path)


@pytest.mark.parametrize("cell", ["lstm", "simple"])
def test_char_cnn_rnn_cells(cell):
  ids, lengths = CHAR_VOCAB.encode(CHAR_CAPTIONS, 40)
  model = CharCNNRNN(len(CHAR_VOCAB), conv_channels=(4, 4, 4), rnn=cell, rnn_dim=4, embed_dim=3)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(1), ids, lengths)[0])
  assert out.shape == (3, 3) and out.dtype == jnp.float32


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------


def test_ds_sje_hand_2x2():
  img = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  txt = jnp.array([[2.0, 0.0], [1.0, 1.0]])
  # s = img @ txt.T = [[2, 1], [0, 1]], margin 1
  # image rows: i=0 max(2, 1+1) - 2 = 0;   i=1 max(0+1, 1) - 1 = 0
  # text cols:  j=0 max(2, 0+1) - 2 = 0;   j=1 max(1+1, 1) - 1 = 1
  loss = ds_sje_loss(img, txt)
  chex.assert_shape(loss, (2,))
  np.testing.assert_allclose(loss, [0.0, 0.5], atol=1e-6)


def test_ds_sje_hand_3x3_with_and_without_labels():
  img = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  txt = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]])
  # s = [[1, 0, 0],
  #      [0, 2, 1],
  #      [1, 2, 1]], margin 0.5, every pair its own class:
  # image rows: max(1, .5, .5)-1 = 0;  max(.5, 2, 1.5)-2 = 0;  max(1.5, 2.5, 1)-1 = 1.5
  # text cols:  max(1, .5, 1.5)-1 = .5; max(.5, 2, 2.5)-2 = .5; max(.5, 1.5, 1)-1 = .5
  np.testing.assert_allclose(ds_sje_loss(img, txt, margin=0.5), [0.25, 0.25, 1.0], atol=1e-6)
  # labels [0, 1, 1]: examples 1 and 2 share a class, so Δ(1, 2) = 0
  # image rows: max(1, .5, .5)-1 = 0;  max(.5, 2, 1)-2 = 0;  max(1.5, 2, 1)-1 = 1
  # text cols:  max(1, .5, 1.5)-1 = .5; max(.5, 2, 2)-2 = 0;  max(.5, 1, 1)-1 = 0
  loss = ds_sje_loss(img, txt, labels=jnp.array([0, 1, 1]), margin=0.5)
  np.testing.assert_allclose(loss, [0.25, 0.0, 0.5], atol=1e-6)


def test_ds_sje_zero_when_separated_by_margin():
  img = 3.0 * jnp.eye(3)
  txt = jnp.eye(3)  # s = 3 I: every match beats every mismatch by 3 >= margin
  np.testing.assert_allclose(ds_sje_loss(img, txt, margin=1.0), 0.0, atol=1e-6)
  assert jnp.all(ds_sje_loss(img, txt, margin=4.0) > 0)


def test_ds_sje_gradient_sign():
  img = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  txt = jnp.array([[3.0, 0.0], [1.5, 1.2]])
  # s = [[3, 1.5], [0, 1.2]], no ties: image rows max(3, 2.5) - 3 = 0, max(1, 1.2) - 1.2 = 0;
  # text cols max(3, 1) - 3 = 0, max(2.5, 1.2) - 1.2 = 1.3.

  @jax.jit
  def mean_loss(i, t):
    return ds_sje_loss(i, t).mean()

  loss, (g_img, g_txt) = jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))(img, txt)
  np.testing.assert_allclose(loss, 1.3 / 4, rtol=1e-6)
  chex.assert_tree_all_finite((g_img, g_txt))
  # Only the text-side term of pair 1 is active: s[0, 1] + 1 - s[1, 1], so the
  # descent direction -g moves text 1 towards image 1 and away from image 0.
  g = np.asarray(g_txt)
  np.testing.assert_allclose(g, [[0.0, 0.0], [0.25, -0.25]], atol=1e-6)
  assert -g[1] @ np.asarray(img[1]) > 0 and -g[1] @ np.asarray(img[0]) < 0
  assert mean_loss(img - 0.1 * g_img, txt - 0.1 * g_txt) < loss


def test_ds_sje_jit_and_nonnegative():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  img = jax.random.normal(k1, (5, 4))
  txt = jax.random.normal(k2, (5, 4))
  loss = ds_sje_loss(img, txt)
  assert jnp.all(loss >= 0)
  np.testing.assert_allclose(jax.jit(ds_sje_loss)(img, txt), loss, rtol=1e-6)


def test_retrieval_accuracy_hand():
  q = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  c = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  # scores: [1, 0, -1] -> 0 (hit); [0, 1, 0] -> 1 (hit); [1, 1, -1] -> 0 (first tie, miss)
  np.testing.assert_allclose(retrieval_accuracy(q, c), 2 / 3, rtol=1e-6)
  match = jnp.eye(3, dtype=bool).at[2, 0].set(True)
  np.testing.assert_allclose(retrieval_accuracy(q, c, match=match), 1.0)
  assert float(jax.jit(retrieval_accuracy)(q, c)) == pytest.approx(2 / 3)
