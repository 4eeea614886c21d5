"""Text encoding shared by the text-to-image GANs of the zoo.

Three pieces:

* :class:`Vocabulary` -- turns captions into padded int32 token ids, either
  character-level (the char-CNN-RNN of Reed et al. 2016, "Learning Deep
  Representations of Fine-Grained Visual Descriptions") or word-level (the
  LSTM encoder of T2F). Id 0 is ``<pad>``, id 1 is ``<unk>``.
* :class:`CharCNNRNN` -- Reed's hybrid char-CNN-RNN: one-hot characters ->
  1-D convolutions with max-pooling -> a recurrent layer -> mean of the hidden
  states over time -> linear projection. Used as the text encoder of
  GAN-CLS / GAN-INT (Reed et al. 2016, "Generative Adversarial Text to Image
  Synthesis").
* :class:`LSTMEncoder` -- T2F's encoder: word embedding -> stacked LSTM ->
  hidden state at the last valid step.

Both encoders take ``tokens int32 [B, L]`` and ``lengths int32 [B]`` and are
exactly invariant to anything stored past ``lengths`` (extra padding, or any
other ids): the padded tail is masked, never read.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import CaptionError, CheckpointError, ConfigError

Array = jax.Array

__all__ = [
  "PAD",
  "PAD_ID",
  "REED_ALPHABET",
  "UNK",
  "UNK_ID",
  "CharCNNRNN",
  "LSTMEncoder",
  "Vocabulary",
  "pooled_lengths",
  "tokenize",
]

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
_SPECIALS = (PAD, UNK)
_FORMAT = "zoo.vocabulary/1"
_KINDS = ("char", "word")
_WORD_RE = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")

# The alphabet of Reed et al. (icml2016 / cvpr2016 data): 70 characters as
# written there, with '-' appearing twice, so 69 distinct characters.
REED_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "


def tokenize(text: str, kind: str) -> list[str]:
  """Split one caption into tokens.

  * ``'char'``: lowercased characters, with every run of whitespace collapsed
    to one space and leading/trailing whitespace dropped.
  * ``'word'``: lowercased words (letters/digits, with inner ``'`` or ``-``,
    e.g. ``"bird's"``, ``"yellow-ish"``) and single punctuation characters.
  """
  if kind == "char":
    return list(" ".join(text.lower().split()))
  if kind == "word":
    return _WORD_RE.findall(text.lower())
  raise ConfigError(f"vocabulary kind must be one of {_KINDS}, got {kind!r}")


def _short(caption: str, limit: int = 60) -> str:
  """The caption quoted on one line (``repr`` escapes newlines), cut at ``limit``."""
  if len(caption) > limit:
    caption = caption[:limit] + "..."
  return repr(caption)


@dataclass(frozen=True)
class Vocabulary:
  """A token <-> id mapping; id 0 is ``<pad>``, id 1 is ``<unk>``.

  Attributes:
    kind: ``'char'`` or ``'word'`` (see :func:`tokenize`).
    tokens: the token of each id; ``tokens[0] == '<pad>'``,
      ``tokens[1] == '<unk>'``, no duplicates.
  """

  kind: str
  tokens: tuple[str, ...]
  _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

  def __post_init__(self):
    if self.kind not in _KINDS:
      raise ConfigError(f"vocabulary kind must be one of {_KINDS}, got {self.kind!r}")
    tokens = tuple(self.tokens)
    if tokens[:2] != _SPECIALS:
      raise ConfigError(f"vocabulary must start with {_SPECIALS}, got {tokens[:2]}")
    if not all(isinstance(t, str) and t for t in tokens):
      raise ConfigError("vocabulary tokens must be non-empty strings")
    if len(set(tokens)) != len(tokens):
      dup = [t for t, n in collections.Counter(tokens).items() if n > 1]
      raise ConfigError(f"vocabulary has duplicate tokens: {dup[:5]}")
    object.__setattr__(self, "tokens", tokens)
    object.__setattr__(self, "_index", {t: i for i, t in enumerate(tokens)})

  # ------------------------------------------------------------------ build

  @classmethod
  def build(
    cls, captions: Iterable[str], kind: str, *, min_count: int = 1, max_size: int = 0
  ) -> Vocabulary:
    """Vocabulary of the tokens of ``captions``.

    Tokens are ordered by decreasing count, ties alphabetically (so the result
    is deterministic).

    Args:
      captions: the training captions.
      kind: ``'char'`` or ``'word'``.
      min_count: keep tokens seen at least this many times.
      max_size: if > 0, the total size ``len(vocab)`` *including* ``<pad>``
        and ``<unk>`` is at most this (the most frequent tokens are kept);
        0 means no limit.
    """
    if kind not in _KINDS:
      raise ConfigError(f"vocabulary kind must be one of {_KINDS}, got {kind!r}")
    if min_count < 1:
      raise ConfigError(f"min_count must be >= 1, got {min_count}")
    if max_size != 0 and max_size < len(_SPECIALS) + 1:
      raise ConfigError(f"max_size must be 0 (no limit) or >= 3, got {max_size}")
    if isinstance(captions, str):
      raise TypeError("captions must be a sequence of strings, not one string")
    counts: collections.Counter[str] = collections.Counter()
    for caption in captions:
      counts.update(tokenize(caption, kind))
    for special in _SPECIALS:
      counts.pop(special, None)
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    if max_size:
      kept = kept[: max_size - len(_SPECIALS)]
    return cls(kind, _SPECIALS + tuple(kept))

  @classmethod
  def default_chars(cls) -> Vocabulary:
    """Character vocabulary over Reed's fixed alphabet (needs no data).

    Lowercase letters, digits, ``-,;.!?:'"/\\|_@#$%^&*~`+=<>()[]{}`` and
    space: 69 distinct characters, 71 ids with ``<pad>`` and ``<unk>``.
    """
    return cls("char", _SPECIALS + tuple(dict.fromkeys(REED_ALPHABET)))

  # ------------------------------------------------------------- encoding

  def __len__(self) -> int:
    return len(self.tokens)

  def token_id(self, token: str) -> int:
    """Id of ``token``; ``UNK_ID`` (1) if unknown."""
    return self._index.get(token, UNK_ID)

  def encode(self, captions: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode a batch of captions.

    Args:
      captions: ``B`` strings.
      max_len: the padded length ``L``; longer captions are truncated to it
        (one ``UserWarning`` per call says how many).

    Returns:
      ``(ids, lengths)``: ``ids`` int32 ``[B, L]`` padded with 0 (unknown
      tokens are 1), ``lengths`` int32 ``[B]`` in ``[1, L]``.

    Raises:
      CaptionError: a caption is empty (after stripping whitespace) or none of
        its (kept) tokens is in the vocabulary.
    """
    if isinstance(captions, str):
      raise TypeError("captions must be a sequence of strings, not one string")
    if max_len < 1:
      raise ConfigError(f"max_len must be >= 1, got {max_len}")
    captions = list(captions)
    ids = np.zeros((len(captions), max_len), np.int32)
    lengths = np.zeros((len(captions),), np.int32)
    truncated = 0
    for b, caption in enumerate(captions):
      toks = tokenize(caption, self.kind)
      if not toks:
        raise CaptionError(f"caption {b} is empty: {_short(caption)}")
      if len(toks) > max_len:
        truncated += 1
        toks = toks[:max_len]
      row = [self._index.get(t, UNK_ID) for t in toks]
      if all(i == UNK_ID for i in row):
        raise CaptionError(
          f"caption {b} has no token in the {self.kind} vocabulary "
          f"({len(self)} tokens): {_short(caption)}"
        )
      ids[b, : len(row)] = row
      lengths[b] = len(row)
    if truncated:
      warnings.warn(
        f"{truncated} of {len(captions)} captions were longer than max_len={max_len} "
        f"{self.kind} tokens and were truncated",
        stacklevel=2,
      )
    return ids, lengths

  def decode(self, ids, length: int | None = None) -> str:
    """Text of one encoded caption (``ids`` ``[L]``).

    Reads the first ``length`` ids (all if None), dropping ``<pad>``; unknown
    ids show as ``<unk>``. Characters are joined directly, words with spaces.
    """
    ids = np.asarray(ids).reshape(-1)
    if length is not None:
      ids = ids[: int(length)]
    toks = [self.tokens[i] if 0 <= i < len(self) else UNK for i in ids.tolist() if i != PAD_ID]
    return ("" if self.kind == "char" else " ").join(toks)

  # ---------------------------------------------------------------- files

  def save(self, path: str | os.PathLike) -> None:
    """Write the vocabulary as JSON (atomically: a temp file then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": _FORMAT, "kind": self.kind, "tokens": list(self.tokens)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=0)
      os.replace(tmp, path)
    except BaseException:
      pathlib.Path(tmp).unlink(missing_ok=True)
      raise

  @classmethod
  def load(cls, path: str | os.PathLike) -> Vocabulary:
    """Read a file written by :meth:`save`.

    Raises:
      CheckpointError: the file is missing, unreadable or not a vocabulary.
    """
    path = pathlib.Path(path)
    try:
      data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
      raise CheckpointError(f"vocabulary file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
      msg = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise CheckpointError(f"cannot read vocabulary file {path}: {msg}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
      raise CheckpointError(f"{path} is not a vocabulary file (expected format {_FORMAT!r})")
    tokens = data.get("tokens")
    if not isinstance(tokens, list):
      raise CheckpointError(f"malformed vocabulary file {path}: 'tokens' is not a list")
    try:
      return cls(data.get("kind"), tuple(tokens))
    except ConfigError as e:
      raise CheckpointError(f"malformed vocabulary file {path}: {e}") from None


# --------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------


def _time_mask(lengths: Array, steps: int) -> Array:
  """``[B, T]`` bool, True at the valid steps ``t < lengths[b]``."""
  return jnp.arange(steps)[None, :] < lengths[:, None]


def pooled_lengths(lengths: Array, pool_size: int, num_pools: int) -> Array:
  """Valid lengths after ``num_pools`` max-pools of size/stride ``pool_size``.

  Each pool maps ``n`` valid steps to ``ceil(n / pool_size)`` (the last window
  may be partial), so a non-empty caption keeps at least one step.
  """
  for _ in range(num_pools):
    lengths = (lengths + pool_size - 1) // pool_size
  return lengths


def _make_cell(kind: str, features: int, name: str) -> nn.RNNCellBase:
  if kind == "gru":
    return nn.GRUCell(features, name=name)
  if kind == "lstm":
    return nn.OptimizedLSTMCell(features, name=name)
  if kind == "simple":
    return nn.SimpleCell(features, name=name)
  raise ConfigError(f"rnn cell must be 'gru', 'lstm' or 'simple', got {kind!r}")


class CharCNNRNN(nn.Module):
  """Reed et al.'s char-CNN-RNN text encoder.

  ``tokens [B, L]`` -> one-hot ``[B, L, V]`` (``<pad>`` and every step past
  ``lengths`` are all-zero vectors) -> for each of ``conv_channels``: Conv1D
  (kernel ``kernel_size``) + ReLU, followed by a max-pool of size and stride
  ``pool_size`` after every conv but the last -> recurrent layer (``rnn``
  cell, ``rnn_dim`` units) -> mean of its hidden states over the valid steps
  -> Dense(``embed_dim``).

  Lengths through the CNN: the convolutions are length-preserving (zero
  padding ``((k - 1) // 2, k // 2)`` as 'SAME') and after every conv the
  steps at or past the valid length are set to 0; each max-pool pads the
  sequence with zeros to a multiple of ``pool_size`` and maps ``n`` valid steps
  to ``ceil(n / pool_size)`` (:func:`pooled_lengths`). Since activations are
  ReLU outputs (>= 0), the zeros never win a max over a window that holds a
  valid step. The recurrent layer is causal, so its outputs at valid steps
  never see the padded tail, and the mean divides by the number of valid steps.
  Hence the output is exactly independent of what lies past ``lengths`` and
  of the padded length ``L``.

  The reference (cvpr2016 ``HybridCNN``) uses 'VALID' convs of 384/512/256
  channels over a fixed length of 201 characters and averages over all steps,
  padding included; the 'SAME' convs and the masking are the intended
  differences (pass ``conv_channels=(384, 512, 256)`` for the paper's widths).

  Attributes:
    vocab_size: number of token ids (``len(vocab)``).
    conv_channels: output channels of each conv.
    kernel_size: conv kernel width.
    pool_size: max-pool size and stride.
    rnn: ``'gru'``, ``'lstm'`` or ``'simple'`` (Elman RNN).
    rnn_dim: recurrent units.
    embed_dim: output size (1024 in the paper).
  """

  vocab_size: int
  conv_channels: Sequence[int] = (64, 128, 256)
  kernel_size: int = 4
  pool_size: int = 3
  rnn: str = "gru"
  rnn_dim: int = 256
  embed_dim: int = 1024

  @nn.compact
  def __call__(self, tokens: Array, lengths: Array) -> Array:
    """``tokens`` int32 ``[B, L]``, ``lengths`` int32 ``[B]`` -> float32 ``[B, embed_dim]``."""
    steps = tokens.shape[1]
    lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, steps)
    mask = _time_mask(lengths, steps) & (tokens != PAD_ID)
    x = jax.nn.one_hot(tokens, self.vocab_size, dtype=jnp.float32) * mask[..., None]
    k = self.kernel_size
    padding = [((k - 1) // 2, k // 2)]
    for i, ch in enumerate(self.conv_channels):
      x = nn.Conv(ch, (k,), padding=padding, name=f"conv{i}")(x)
      x = nn.relu(x) * _time_mask(lengths, x.shape[1])[..., None]
      if i < len(self.conv_channels) - 1:
        b, t, c = x.shape
        extra = -t % self.pool_size
        x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
        x = x.reshape(b, (t + extra) // self.pool_size, self.pool_size, c).max(axis=2)
        lengths = pooled_lengths(lengths, self.pool_size, 1)
    h = nn.RNN(_make_cell(self.rnn, self.rnn_dim, "rnn"))(x, seq_lengths=lengths)
    valid = _time_mask(lengths, h.shape[1])[..., None]
    count = jnp.maximum(lengths, 1)[:, None].astype(h.dtype)
    mean = jnp.sum(jnp.where(valid, h, 0.0), axis=1) / count
    return nn.Dense(self.embed_dim, name="proj")(mean).astype(jnp.float32)


class LSTMEncoder(nn.Module):
  """T2F's caption encoder: word embedding -> LSTM stack -> last valid hidden state.

  ``tokens [B, L]`` -> Embed(``vocab_size``, ``embed_dim_in``) ->
  ``num_layers`` LSTM layers of ``hidden_dim`` units -> the top layer's hidden
  state at step ``lengths[b] - 1`` (zeros when ``lengths[b] == 0``).

  The LSTMs are causal, so the state at the last valid step never depends on
  the padded tail; unlike the T2F code (which reads the final step of the
  padded batch) the result is the same however much padding follows.

  Attributes:
    vocab_size: number of token ids (``len(vocab)``).
    embed_dim_in: word embedding size.
    hidden_dim: LSTM units (and output size).
    num_layers: stacked LSTM layers.
  """

  vocab_size: int
  embed_dim_in: int = 256
  hidden_dim: int = 256
  num_layers: int = 1

  @nn.compact
  def __call__(self, tokens: Array, lengths: Array) -> Array:
    """``tokens`` int32 ``[B, L]``, ``lengths`` int32 ``[B]`` -> float32 ``[B, hidden_dim]``."""
    if self.num_layers < 1:
      raise ConfigError(f"num_layers must be >= 1, got {self.num_layers}")
    steps = tokens.shape[1]
    lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, steps)
    x = nn.Embed(self.vocab_size, self.embed_dim_in, name="embed")(tokens)
    for i in range(self.num_layers):
      x = nn.RNN(nn.OptimizedLSTMCell(self.hidden_dim, name=f"lstm{i}"))(x, seq_lengths=lengths)
    last = jnp.clip(lengths - 1, 0, steps - 1)
    h = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
    return jnp.where(lengths[:, None] > 0, h, 0.0).astype(jnp.float32)
