"""Evaluation metrics for generated images (numpy, float64; jax arrays are accepted).

Conventions: images are ``[b, H, W, C]`` (or ``[b, H, W]`` for one channel). The
per-example metrics (:func:`l1`, :func:`psnr`, :func:`ssim`) return one value per
example, shape ``[b]``. :func:`batch_mean` and :func:`image_metrics` average them.

- :func:`attribute_accuracy`: per-attribute accuracy of predicted class codes, and their mean.
- :func:`attribute_agreement`: the same for a chosen subset of attributes.
- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature
  sets (FID when the features come from Inception; here usually from
  :class:`zoo.eval.face_classifier.FaceClassifier`, see :func:`classifier_frechet_distance`).
- :func:`l1`, :func:`psnr`, :func:`ssim`: paired image metrics (pix2pix-style evaluation).
- :func:`discriminator_overfitting`: how much more D trusts its training reals than
  held-out ones (StyleGAN2-ADA's ``r_v``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

try:  # scipy is optional: used for the standard FID matrix square root when present.
  import scipy.linalg as _scipy_linalg
except ImportError:  # pragma: no cover - depends on the environment
  _scipy_linalg = None

HAVE_SCIPY = _scipy_linalg is not None
FD_METHODS = ("auto", "scipy", "eigh")


# ---------------------------------------------------------------------------
# Classification.
# ---------------------------------------------------------------------------


def attribute_accuracy(pred: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, float]:
  """Per-attribute accuracy of predicted codes, plus ``'mean'`` over the attributes.

  Args:
    pred: ``{attribute: int[b]}`` predicted class codes (e.g. ``FaceClassifier.predict``).
    target: ``{attribute: int[b]}`` true codes. Every attribute of ``target`` is scored and
      must be in ``pred``; extra keys in ``pred`` are ignored.

  Returns:
    ``{attribute: fraction correct, ..., 'mean': unweighted mean over the attributes}``.
  """
  missing = [k for k in target if k not in pred]
  if missing:
    raise KeyError(f"pred has no predictions for attributes {missing}")
  if "mean" in target:
    raise ValueError("'mean' is reserved for the average; rename that attribute")
  out = {}
  for name, t in target.items():
    p, t = np.asarray(pred[name]).reshape(-1), np.asarray(t).reshape(-1)
    if p.shape != t.shape:
      raise ValueError(f"{name}: pred has {p.shape[0]} entries, target {t.shape[0]}")
    if not t.size:
      raise ValueError(f"{name}: no examples to score")
    out[name] = float(np.mean(p == t))
  out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
  return out


def attribute_tv_distance(
  pred_a: Mapping[str, Any],
  pred_b: Mapping[str, Any],
  *,
  num_classes: Mapping[str, int] | None = None,
) -> dict[str, float]:
  """Total-variation distance between two sets' class distributions, per attribute.

  ``TV(p, q) = 1/2 sum_c |p_c - q_c|`` with ``p``, ``q`` the class frequencies of
  attribute codes in ``pred_a`` and ``pred_b`` (e.g. classifier predictions on samples
  and on real images); 0 = same distribution, 1 = disjoint. Adds ``'max'``.
  """
  out = {}
  for name in pred_b:
    a, b = np.asarray(pred_a[name]).reshape(-1), np.asarray(pred_b[name]).reshape(-1)
    if not a.size or not b.size:
      raise ValueError(f"{name}: no examples")
    k = int(max(a.max(initial=0), b.max(initial=0)) + 1)
    if num_classes is not None:
      k = max(k, int(num_classes[name]))
    p = np.bincount(a, minlength=k) / a.size
    q = np.bincount(b, minlength=k) / b.size
    out[name] = float(0.5 * np.abs(p - q).sum())
  out["max"] = max(out.values()) if out else float("nan")
  return out


def attribute_agreement(
  pred: Mapping[str, Any], target: Mapping[str, Any], names: Sequence[str] | None = None
) -> dict[str, float]:
  """How often predicted attributes agree with the true ones, for ``names`` only.

  :func:`attribute_accuracy` restricted to the attributes ``names`` (default: all those of
  ``target``), in that order, plus ``'mean'`` over them. For example, the face classifier's
  predictions on translated images against the source faces' labels (pix2pix).
  """
  names = list(target) if names is None else list(names)
  if not names:
    raise ValueError("attribute_agreement needs at least one attribute name")
  missing = [k for k in names if k not in target]
  if missing:
    raise KeyError(f"target has no labels for attributes {missing}")
  return attribute_accuracy(pred, {k: target[k] for k in names})


# ---------------------------------------------------------------------------
# Fréchet distance.
# ---------------------------------------------------------------------------


def discriminator_overfitting(train_scores, heldout_scores, fake_scores) -> float:
  """StyleGAN2-ADA's overfitting heuristic ``r_v`` (Karras et al. 2020, eq. 1).

  ``r_v = (E[D(train)] - E[D(heldout)]) / (E[D(train)] - E[D(fake)])`` from D's raw
  scores (logits or critic values, any shapes) of training reals, held-out reals and
  generated images: 0 when D scores held-out reals like its training set, 1 when it
  scores them like fakes. NaN when D scores training reals and fakes alike.
  """
  train, heldout, fake = (
    float(np.mean(np.asarray(s, np.float64))) for s in (train_scores, heldout_scores, fake_scores)
  )
  den = train - fake
  return (train - heldout) / den if den != 0 else float("nan")


def feature_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
  """Mean ``[F]`` and covariance ``[F, F]`` (unbiased, ``ddof=1``) of features ``[n, F]``."""
  f = np.asarray(feats, np.float64)
  if f.ndim != 2:
    raise ValueError(f"features must be [n, F], got shape {f.shape}")
  if f.shape[0] < 2:
    raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
  return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((c + c.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """``tr sqrt(sigma1 sigma2)`` as ``tr sqrt(sqrt(s1) s2 sqrt(s1))`` (a symmetric PSD matrix).

  ``s1 s2`` and ``sqrt(s1) s2 sqrt(s1)`` = ``A B`` and ``B A`` with ``A = sqrt(s1)``,
  ``B = sqrt(s1) s2`` have the same eigenvalues, which are real and non-negative.
  """
  s = _psd_sqrt(sigma1)
  m = s @ sigma2 @ s
  ev = np.linalg.eigvalsh((m + m.T) / 2)
  return float(np.sum(np.sqrt(np.clip(ev, 0.0, None))))


def _trace_sqrt_product_scipy(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float | None:
  """The reference FID computation (``scipy.linalg.sqrtm(s1 @ s2)``); None if it fails."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    covmean = _scipy_linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
      # As in the reference implementation: regularise singular products.
      offset = np.eye(sigma1.shape[0]) * eps
      covmean = _scipy_linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if not np.all(np.isfinite(covmean)):
    return None
  tr = np.trace(covmean)
  if np.iscomplexobj(tr):
    if abs(tr.imag) > 1e-3 * max(1.0, abs(tr.real)):
      return None
    tr = tr.real
  return float(tr)


def frechet_distance_from_statistics(
  mu1, sigma1, mu2, sigma2, *, method: str = "auto", eps: float = 1e-6
) -> float:
  """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

  ``FD = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2))``.

  Args:
    method: how ``tr sqrt(sigma1 sigma2)`` is computed. ``'scipy'``: the reference FID
      code's ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` (with an ``eps`` ridge when the
      product is singular); ``'eigh'``: the symmetric form
      ``tr sqrt(sqrt(sigma1) sigma2 sqrt(sigma1))`` from eigen-decompositions (stable for
      singular covariances, no scipy needed); ``'auto'``: scipy when it is installed and
      its result is finite and (nearly) real, else eigh. Both agree to numerical precision.
  """
  if method not in FD_METHODS:
    raise ValueError(f"method={method!r}, expected one of {FD_METHODS}")
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(
      f"inconsistent shapes: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}"
    )
  tr_covmean = None
  if method == "scipy" or (method == "auto" and HAVE_SCIPY):
    if not HAVE_SCIPY:
      raise ImportError("method='scipy' needs scipy; use method='eigh'")
    tr_covmean = _trace_sqrt_product_scipy(sigma1, sigma2, eps)
    if tr_covmean is None and method == "scipy":
      raise FloatingPointError("scipy.linalg.sqrtm failed on sigma1 @ sigma2; use method='eigh'")
  if tr_covmean is None:
    tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
  diff = mu1 - mu2
  fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
  return max(fd, 0.0)


def frechet_distance(feats_a, feats_b, *, method: str = "auto") -> float:
  """Fréchet distance between Gaussians fitted to features ``[n_a, F]`` and ``[n_b, F]``.

  Means and unbiased covariances as in the reference FID code; see
  :func:`frechet_distance_from_statistics` for ``method``. The estimate is biased upwards
  for small ``n`` (two samples of one distribution give a small positive value), so
  compare distances computed with the same sample sizes.
  """
  mu1, s1 = feature_statistics(feats_a)
  mu2, s2 = feature_statistics(feats_b)
  if mu1.shape != mu2.shape:
    raise ValueError(f"feature sizes differ: {mu1.shape[0]} vs {mu2.shape[0]}")
  return frechet_distance_from_statistics(mu1, s1, mu2, s2, method=method)


def classifier_frechet_distance(classifier, images_a, images_b, *, method: str = "auto") -> float:
  """Fréchet distance between two image sets in a classifier's feature space.

  ``classifier`` is anything with ``features(images) -> [n, F]``, normally a
  :class:`zoo.eval.face_classifier.FaceClassifier` (which accepts any image size, float
  in [-1, 1] or uint8). Use the same number of images on both sides when comparing
  distances (the estimate depends on the sample size).
  """
  return frechet_distance(
    classifier.features(images_a), classifier.features(images_b), method=method
  )


# ---------------------------------------------------------------------------
# Paired image metrics (per example).
# ---------------------------------------------------------------------------


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
  p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  if p.shape != t.shape:
    raise ValueError(f"pred shape {p.shape} != target shape {t.shape}")
  if p.ndim < 2:
    raise ValueError(f"expected a batch of images [b, H, W(, C)], got shape {p.shape}")
  return p, t


def l1(pred, target) -> np.ndarray:
  """Mean absolute error of each example (over all pixels and channels): ``[b]``."""
  p, t = _pair(pred, target)
  return np.abs(p - t).reshape(p.shape[0], -1).mean(axis=1)


def psnr(pred, target, *, data_range: float) -> np.ndarray:
  """Peak signal-to-noise ratio of each example in dB: ``10 log10(data_range^2 / MSE)``, ``[b]``.

  ``data_range`` is the span of valid pixel values (2.0 for images in [-1, 1], 255 for
  uint8). Identical images give ``inf``.
  """
  if data_range <= 0:
    raise ValueError(f"data_range must be > 0, got {data_range}")
  p, t = _pair(pred, target)
  mse = np.square(p - t).reshape(p.shape[0], -1).mean(axis=1)
  with np.errstate(divide="ignore"):
    return 10.0 * np.log10(float(data_range) ** 2 / mse)


def gaussian_window(win_size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """Normalised 1-D Gaussian ``[win_size]`` (the 2-D window is its outer product)."""
  x = np.arange(win_size, dtype=np.float64) - (win_size - 1) / 2.0
  g = np.exp(-(x * x) / (2.0 * sigma * sigma))
  return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """Separable 'valid' filtering of ``x [b, H, W, C]`` with ``g`` along H and W."""
  win = g.shape[0]
  x = np.lib.stride_tricks.sliding_window_view(x, win, axis=1) @ g  # [b, H', W, C]
  return np.lib.stride_tricks.sliding_window_view(x, win, axis=2) @ g  # [b, H', W', C]


def ssim(
  pred,
  target,
  *,
  data_range: float,
  win_size: int = 11,
  sigma: float = 1.5,
  k1: float = 0.01,
  k2: float = 0.03,
) -> np.ndarray:
  """Structural similarity of each example (Wang et al. 2004), ``[b]``.

  Local means, variances and covariance use an ``win_size`` x ``win_size`` Gaussian window
  (``sigma`` 1.5) with population (unweighted-by-n) statistics;
  ``SSIM = ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
  with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` and ``L = data_range``. The map covers the
  positions where the window fits inside the image ('valid'; equivalently, the borders of
  a full-size map are cropped, as in the paper's code and scikit-image's
  ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``); it is
  averaged over positions, then over channels.

  Args:
    pred, target: ``[b, H, W, C]`` or ``[b, H, W]``, both in the same value range.
    data_range: span of valid values (2.0 for [-1, 1], 255 for uint8).
  """
  if data_range <= 0:
    raise ValueError(f"data_range must be > 0, got {data_range}")
  p, t = _pair(pred, target)
  if p.ndim == 3:
    p, t = p[..., None], t[..., None]
  if p.ndim != 4:
    raise ValueError(f"expected [b, H, W, C] or [b, H, W], got shape {p.shape}")
  if min(p.shape[1:3]) < win_size:
    raise ValueError(
      f"images {p.shape[1]}x{p.shape[2]} are smaller than the {win_size}x{win_size} SSIM window"
    )
  g = gaussian_window(win_size, sigma)
  mu_x, mu_y = _filter_valid(p, g), _filter_valid(t, g)
  sxx = _filter_valid(p * p, g) - mu_x * mu_x
  syy = _filter_valid(t * t, g) - mu_y * mu_y
  sxy = _filter_valid(p * t, g) - mu_x * mu_y
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
  den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
  return (num / den).mean(axis=(1, 2)).mean(axis=-1)


def batch_mean(per_example) -> float:
  """Mean of per-example values ``[b]`` (e.g. from :func:`psnr`) as a Python float."""
  v = np.asarray(per_example, np.float64)
  if not v.size:
    raise ValueError("no values to average")
  return float(v.mean())


def image_metrics(pred, target, *, data_range: float) -> dict[str, float]:
  """Batch means of :func:`l1`, :func:`psnr` and :func:`ssim` (``ssim`` skipped for images
  smaller than its 11x11 window)."""
  out = {
    "l1": batch_mean(l1(pred, target)),
    "psnr": batch_mean(psnr(pred, target, data_range=data_range)),
  }
  shape = np.shape(pred)
  if len(shape) >= 3 and min(shape[1:3]) >= 11:
    out["ssim"] = batch_mean(ssim(pred, target, data_range=data_range))
  return out
