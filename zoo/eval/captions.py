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
  pairs where that caption does not describe the face (:func:`mismatch_rejection`).
"""

from __future__ import annotations

import numpy as np

from zoo.data import faces

__all__ = ["caption_accuracy", "describes_previous", "judge", "mismatch_rejection"]


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


def mismatch_rejection(right_scores, wrong_scores, attributes, mentions) -> float:
  """Fraction of faces i with ``right_scores[i] > wrong_scores[i]`` (D's scores of face i
  with its own caption and with caption ``i - 1``), over the faces that caption ``i - 1``
  does not describe; NaN when it describes them all."""
  keep = ~describes_previous(attributes, mentions)
  right, wrong = np.asarray(right_scores), np.asarray(wrong_scores)
  return float(np.mean(right[keep] > wrong[keep])) if keep.any() else float("nan")


def judge(
  classifier, fake, real, attributes, mentions, *, fd: bool = True, scores=None
) -> dict[str, float]:
  """The caption metrics of the module docstring.

  Args:
    classifier: a :class:`zoo.eval.face_classifier.FaceClassifier`.
    fake: samples [n, H, W, 3] in [-1, 1], sample i drawn for held-out caption i.
    real: the held-out test faces [n, H, W, 3] in [-1, 1] (for the FD).
    attributes, mentions: of the held-out captions, [n, A].
    fd: compute ``eval/FD``.
    scores: optional ``(right, wrong)`` D scores for ``eval/mismatch_rejection``.
  """
  from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

  out = caption_accuracy(classifier.predict(fake), attributes, mentions)
  if fd:
    out["eval/FD"] = float(
      em.frechet_distance(classifier.features(fake), classifier.features(real))
    )
  if scores is not None:
    out["eval/mismatch_rejection"] = mismatch_rejection(*scores, attributes, mentions)
  return out
