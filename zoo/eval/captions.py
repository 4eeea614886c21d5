"""Judging a text-to-face model by its captions, shared by the text-conditional families
(:mod:`zoo.tasks.dcgan_cls`, :mod:`zoo.tasks.t2f`).

The family draws samples for held-out captions of test faces
(:func:`zoo.data.faces.captioned.heldout_pairs`: ``attributes`` [n, A] and ``mentions``
[n, A], which attributes each caption names) and :func:`judge` scores them:

* ``eval/acc/<attribute>``: the face classifier's accuracy on the samples for that
  attribute, over the captions that mention it; ``eval/acc_mentioned`` over every
  mentioned (caption, attribute);
* ``eval/FD``: classifier Fréchet distance between the samples and the test faces;
* ``eval/mismatch_rejection`` (when D's scores are given): the fraction of real test faces
  D scores higher with their own caption than with the previous face's caption, over the
  pairs where that caption does not describe the face (:func:`mismatch_rejection`);
* ``eval/rejection/<attribute>`` (:func:`attribute_rejection`): the same with a wrong
  caption that differs from the right one in that attribute only. A D that checks only
  salient attributes (the background) gives its G no reason to draw the small ones.
* ``eval/diversity`` and ``eval/diversity/<attribute>`` (:func:`latent_diversity`): how
  much the latent varies what a caption leaves open. A G that follows its captions by
  drawing one face per caption scores high accuracy and 0 here; real faces score 1.

Real caption datasets (:mod:`zoo.data.caption_pairs`) have no attributes: :func:`judge`
with ``attributes=None`` reports ``eval/FD`` and ``eval/mismatch_rejection`` only, and the
other caption an image is scored with is chosen by :func:`other_captions`: the nearest
earlier held-out example (cyclically) of another class when the data has classes (Reed),
else the previous example, which is another image (one held-out caption per image).
"""

from __future__ import annotations

import numpy as np

from zoo.data import faces
from zoo.data.faces import captioned

__all__ = [
  "attribute_rejection",
  "caption_accuracy",
  "describes_previous",
  "latent_diversity",
  "sample_diversity",
  "judge",
  "mismatch_rejection",
  "other_captions",
]


def caption_accuracy(pred, attributes, mentions) -> dict[str, float]:
  """``eval/acc/<attribute>`` and ``eval/acc_mentioned`` of classifier predictions
  ``pred`` (``{attribute: int [n]}``) against the caption's ``attributes`` [n, A]."""
  correct = np.stack(
    [np.asarray(pred[k]) == attributes[:, i] for i, k in enumerate(faces.ATTRIBUTE_NAMES)], 1
  )
  out = {}
  for i, k in enumerate(faces.ATTRIBUTE_NAMES):
    if mentions[:, i].any():
      out[f"eval/acc/{k}"] = float(correct[mentions[:, i], i].mean())
  out["eval/acc_mentioned"] = float(correct[mentions].mean())
  return out


def describes_previous(attributes, mentions) -> np.ndarray:
  """bool [n]: whether the caption of example ``i - 1`` (rolled) describes face ``i``
  (every attribute it mentions has face i's value)."""
  wrong_mentions, wrong_attrs = np.roll(mentions, 1, axis=0), np.roll(attributes, 1, axis=0)
  return np.all((attributes == wrong_attrs) | ~wrong_mentions, axis=1)


def other_captions(n: int, labels=None) -> np.ndarray:
  """int [n]: the example whose caption example ``i`` is scored with by D as the wrong
  one. ``i - 1`` (cyclically; the embedded faces); with ``labels`` (int [n], ``-1`` =
  no class) that are all >= 0 and not all equal, the nearest earlier example (cyclically)
  of another label."""
  prev = (np.arange(n) - 1) % max(n, 1)
  if labels is None:
    return prev
  labels = np.asarray(labels)
  if n < 2 or (labels < 0).any() or (labels == labels[0]).all():
    return prev
  out = prev.copy()
  for i in range(n):
    for d in range(1, n):
      j = (i - d) % n
      if labels[j] != labels[i]:
        out[i] = j
        break
  return out


def mismatch_rejection(
  right_scores, wrong_scores, attributes=None, mentions=None, *, others=None
) -> float:
  """Fraction of faces i with ``right_scores[i] > wrong_scores[i]`` (D's scores of face i
  with its own caption and with another one), over the faces that other caption does not
  describe; NaN when it describes them all.

  With ``attributes`` and ``mentions`` the other caption is caption ``i - 1``, and it
  describes face i when the face has every attribute it names. Without them (real data)
  every face counts, except one scored with its own caption (``others[i] == i``, from
  :func:`other_captions`, when given)."""
  right, wrong = np.asarray(right_scores), np.asarray(wrong_scores)
  if attributes is not None:
    keep = ~describes_previous(attributes, mentions)
  elif others is not None:
    keep = np.asarray(others) != np.arange(len(right))
  else:
    keep = np.ones(len(right), bool)
  return float(np.mean(right[keep] > wrong[keep])) if keep.any() else float("nan")


def attribute_rejection(
  score, real, attributes, *, num: int = 500, seed: int = 0
) -> dict[str, float]:
  """``{'eval/rejection/<attribute>': r}``: for every face attribute, the fraction of the
  first ``num`` real faces ``real`` (codes ``attributes [n, A]``) that D scores higher
  with a caption naming the attribute than with its twin that says another value
  (:func:`zoo.data.faces.captioned.twin_captions`); 0.5 is chance.

  ``score(images, captions) -> D's scores [n]``."""
  real, attributes = real[:num], np.asarray(attributes)[:num]
  out = {}
  for name in faces.ATTRIBUTE_NAMES:
    right, wrong = captioned.twin_captions(attributes, name, seed=seed)
    out[f"eval/rejection/{name}"] = float(np.mean(score(real, right) > score(real, wrong)))
  return out


def _disagreement(values: np.ndarray, size: int) -> float:
  """Probability that two different draws among ``values`` (int [k]) differ."""
  k = len(values)
  c = np.bincount(values, minlength=size).astype(np.float64)
  return float(1.0 - np.sum(c * (c - 1)) / (k * (k - 1)))


def latent_diversity(pred, mentions, real_pred, *, latents: int) -> dict[str, float]:
  """How much the latent varies the attributes a caption does not name.

  Args:
    pred: classifier predictions ``{attribute: int [n * latents]}`` of samples for ``n``
      captions, caption-major (samples ``i * latents ... (i + 1) * latents - 1`` share
      caption ``i`` and differ only in the latent).
    mentions: bool [n, A], which attributes each caption names.
    real_pred: predictions ``{attribute: int [m]}`` of real faces.
    latents: samples per caption (>= 2).

  Returns:
    ``eval/diversity/<attribute>``: over the captions that do not name the attribute, the
    probability that two samples of one caption are predicted different values, divided
    by the same probability for two real faces, ``1 - sum_v p_v^2`` (the attributes of
    the synthetic faces are drawn independently, so a caption's other attributes do not
    change it); ``eval/diversity``: their mean. NaN-free: attributes every caption names,
    or that never vary among the real faces, are left out.
  """
  if latents < 2:
    raise ValueError(f"latents must be >= 2, got {latents}")
  mentions = np.asarray(mentions, bool)
  out = {}
  for j, name in enumerate(faces.ATTRIBUTE_NAMES):
    size = faces.ATTRIBUTE_SIZES[j]
    real = _disagreement(np.asarray(real_pred[name]), size)
    open_ = np.flatnonzero(~mentions[:, j])
    if not len(open_) or real <= 0:
      continue
    groups = np.asarray(pred[name]).reshape(len(mentions), latents)[open_]
    out[f"eval/diversity/{name}"] = float(np.mean([_disagreement(g, size) for g in groups]) / real)
  if out:
    out["eval/diversity"] = float(np.mean(list(out.values())))
  return out


def sample_diversity(
  classifier, draw, real, mentions, *, captions: int = 100, latents: int = 10
) -> dict[str, float]:
  """:func:`latent_diversity` of ``latents`` samples for each of the first ``captions``.

  ``draw(rows)`` returns images [len(rows), H, W, 3] for caption indices ``rows``, each
  with a latent of its own; ``real`` are real faces [m, H, W, 3] in [-1, 1]."""
  m = min(captions, len(mentions))
  fake = draw(np.repeat(np.arange(m), latents))
  return latent_diversity(
    classifier.predict(fake), np.asarray(mentions)[:m], classifier.predict(real), latents=latents
  )


def judge(
  classifier,
  fake,
  real,
  attributes=None,
  mentions=None,
  *,
  fd: bool = True,
  scores=None,
  others=None,
) -> dict[str, float]:
  """The caption metrics of the module docstring.

  Args:
    classifier: a :class:`zoo.eval.face_classifier.FaceClassifier`.
    fake: samples [n, H, W, 3] in [-1, 1], sample i drawn for held-out caption i.
    real: the held-out test faces [n, H, W, 3] in [-1, 1] (for the FD).
    attributes, mentions: of the held-out captions, [n, A]; None (real captions): no
      accuracy keys.
    fd: compute ``eval/FD``.
    scores: optional ``(right, wrong)`` D scores for ``eval/mismatch_rejection``.
    others: without attributes, which example's caption gave the wrong scores
      (:func:`other_captions`).
  """
  from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

  out = {}
  if attributes is not None:
    out.update(caption_accuracy(classifier.predict(fake), attributes, mentions))
  if fd:
    out["eval/FD"] = float(
      em.frechet_distance(classifier.features(fake), classifier.features(real))
    )
  if scores is not None:
    out["eval/mismatch_rejection"] = mismatch_rejection(
      *scores, attributes, mentions, others=others
    )
  return out
