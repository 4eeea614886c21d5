"""zoo.eval.metrics: Fréchet distance, attribute accuracy, L1 / PSNR / SSIM."""

import numpy as np
import pytest

from zoo.eval import metrics

METHODS = ["eigh"] + (["scipy"] if metrics.HAVE_SCIPY else [])


# ---------------------------------------------------------------------------
# Fréchet distance.
# ---------------------------------------------------------------------------


def _gauss(rng, n, d, mean=0.0, scale=1.0):
  return rng.normal(size=(n, d)) * scale + mean


@pytest.mark.parametrize("method", METHODS + ["auto"])
def test_fd_self_same_distribution_and_shifted(method):
  rng = np.random.default_rng(0)
  a, b = _gauss(rng, 2000, 8), _gauss(rng, 2000, 8)
  assert metrics.frechet_distance(a, a, method=method) == pytest.approx(0.0, abs=1e-6)
  same = metrics.frechet_distance(a, b, method=method)
  assert 0.0 <= same < 0.05
  shifted = metrics.frechet_distance(a, b + 1.0, method=method)  # |mu diff|^2 = 8
  assert shifted == pytest.approx(8.0, rel=0.05)
  noisy = metrics.frechet_distance(a, _gauss(rng, 2000, 8, scale=3.0), method=method)
  assert noisy > 100 * same
  # 8 * (3 - 1)^2 = 32 for isotropic covariances 1 vs 9.
  assert noisy == pytest.approx(32.0, rel=0.1)


@pytest.mark.parametrize("method", METHODS)
def test_fd_matches_hand_computation_1d_and_diagonal(method):
  # 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2.
  fd = metrics.frechet_distance_from_statistics([1.0], [[4.0]], [3.0], [[9.0]], method=method)
  assert fd == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)
  # Diagonal: sum over dims of (m1-m2)^2 + (sqrt(v1) - sqrt(v2))^2.
  m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
  v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
  want = np.sum((m1 - m2) ** 2 + (np.sqrt(v1) - np.sqrt(v2)) ** 2)
  fd = metrics.frechet_distance_from_statistics(m1, np.diag(v1), m2, np.diag(v2), method=method)
  assert fd == pytest.approx(want, rel=1e-9)
  # From samples: the statistics are the sample mean and unbiased covariance.
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(50, 1)), 2 + 3 * rng.normal(size=(50, 1))
  want = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
  assert metrics.frechet_distance(x, y, method=method) == pytest.approx(want, rel=1e-9)


def test_fd_methods_agree_on_full_and_singular_covariances():
  if not metrics.HAVE_SCIPY:
    pytest.skip("scipy not installed")
  rng = np.random.default_rng(2)
  mix = rng.normal(size=(16, 16))
  a = rng.normal(size=(400, 16)) @ mix
  b = rng.normal(size=(400, 16)) @ mix * 1.3 + 0.2
  got = [metrics.frechet_distance(a, b, method=m) for m in ("scipy", "eigh")]
  assert got[0] == pytest.approx(got[1], rel=1e-6)
  # Dead ReLU-like units: zero-variance dimensions make both covariances singular.
  a2, b2 = np.maximum(a, 0), np.maximum(b, 0)
  a2[:, :3] = 0
  b2[:, 2:5] = 0
  got = [metrics.frechet_distance(a2, b2, method=m) for m in ("scipy", "eigh")]
  assert got[0] == pytest.approx(got[1], rel=1e-4)


def test_fd_input_checks():
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.zeros((1, 3)), np.zeros((10, 3)))
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.zeros((10,)), np.zeros((10,)))
  with pytest.raises(ValueError):
    metrics.frechet_distance(np.zeros((10, 3)), np.zeros((10, 3)), method="magic")


def test_classifier_frechet_distance_uses_features():
  class Identity:
    def features(self, images):
      return np.asarray(images).reshape(len(images), -1)

  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(500, 2, 2)), rng.normal(size=(500, 2, 2)) + 2.0
  assert metrics.classifier_frechet_distance(Identity(), a, b) == pytest.approx(
    metrics.frechet_distance(a.reshape(500, 4), b.reshape(500, 4))
  )


# ---------------------------------------------------------------------------
# Attribute accuracy.
# ---------------------------------------------------------------------------


def test_attribute_accuracy():
  target = {"a": np.array([0, 1, 2, 1]), "b": np.array([1, 1, 0, 0])}
  pred = {"a": np.array([0, 1, 0, 1]), "b": np.array([1, 1, 0, 0]), "extra": np.zeros(4)}
  acc = metrics.attribute_accuracy(pred, target)
  assert acc == {"a": 0.75, "b": 1.0, "mean": 0.875}
  with pytest.raises(KeyError):
    metrics.attribute_accuracy({"a": pred["a"]}, target)
  with pytest.raises(ValueError):
    metrics.attribute_accuracy({"a": np.zeros(3), "b": np.zeros(4)}, target)


# ---------------------------------------------------------------------------
# L1 / PSNR / SSIM.
# ---------------------------------------------------------------------------


def test_l1_and_psnr_hand_values():
  t = np.zeros((2, 4, 4, 3))
  p = t.copy()
  p[0] += 0.1  # constant error 0.1
  p[1, :2] += 0.2  # error 0.2 on half the pixels: MSE 0.02, L1 0.1
  np.testing.assert_allclose(metrics.l1(p, t), [0.1, 0.1])
  got = metrics.psnr(p, t, data_range=2.0)
  np.testing.assert_allclose(got, [10 * np.log10(4 / 0.01), 10 * np.log10(4 / 0.02)])
  # uint8-style range: a constant error of 1 gives 20 log10(255) = 48.13 dB.
  u = np.full((1, 8, 8), 100.0)
  assert metrics.psnr(u + 1, u, data_range=255)[0] == pytest.approx(20 * np.log10(255))
  assert np.isinf(metrics.psnr(t, t, data_range=2.0)).all()
  assert metrics.batch_mean(metrics.l1(p, t)) == pytest.approx(0.1)
  with pytest.raises(ValueError):
    metrics.psnr(p, t[:, :3], data_range=2.0)


def _ssim_reference(x, y, data_range, win=11, sigma=1.5, k1=0.01, k2=0.03):
  """Straightforward per-pixel SSIM (Wang et al. 2004) of one 2-D image pair."""
  r = np.arange(win) - (win - 1) / 2
  w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
  w /= w.sum()
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  vals = []
  for i in range(x.shape[0] - win + 1):
    for j in range(x.shape[1] - win + 1):
      px, py = x[i : i + win, j : j + win], y[i : i + win, j : j + win]
      mx, my = np.sum(w * px), np.sum(w * py)
      vx, vy = np.sum(w * (px - mx) ** 2), np.sum(w * (py - my) ** 2)
      cxy = np.sum(w * (px - mx) * (py - my))
      vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
  return float(np.mean(vals))


def test_ssim_identical_noise_and_reference():
  rng = np.random.default_rng(4)
  x = rng.uniform(-1, 1, size=(1, 16, 14, 3))
  x = (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3  # some structure
  assert metrics.ssim(x, x, data_range=2.0)[0] == pytest.approx(1.0)
  values = [
    metrics.ssim(x + s * rng.normal(size=x.shape), x, data_range=2.0)[0] for s in (0.02, 0.1, 0.3)
  ]
  assert 1.0 > values[0] > values[1] > values[2]
  # Matches the per-pixel reference, averaged over channels.
  y = x + 0.15 * rng.normal(size=x.shape)
  want = np.mean([_ssim_reference(y[0, ..., ch], x[0, ..., ch], 2.0) for ch in range(3)])
  assert metrics.ssim(y, x, data_range=2.0)[0] == pytest.approx(want, rel=1e-10)
  # Grey images without a channel axis; a batch gives one value per example.
  g = np.concatenate([y[..., 0], x[..., 0]])
  got = metrics.ssim(g, np.concatenate([x[..., 0], x[..., 0]]), data_range=2.0)
  assert got.shape == (2,)
  assert got[0] == pytest.approx(_ssim_reference(y[0, ..., 0], x[0, ..., 0], 2.0))
  assert got[1] == pytest.approx(1.0)
  with pytest.raises(ValueError):
    metrics.ssim(x[:, :8], x[:, :8], data_range=2.0)


def test_ssim_constant_images_and_image_metrics():
  # Two constant images: SSIM reduces to the luminance term (2 a b + C1) / (a^2 + b^2 + C1).
  a, b = np.full((1, 12, 12), 0.2), np.full((1, 12, 12), 0.6)
  c1 = (0.01 * 1.0) ** 2
  want = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
  assert metrics.ssim(a, b, data_range=1.0)[0] == pytest.approx(want)
  out = metrics.image_metrics(a, b, data_range=1.0)
  assert out["l1"] == pytest.approx(0.4)
  assert out["psnr"] == pytest.approx(10 * np.log10(1 / 0.16))
  assert out["ssim"] == pytest.approx(want)
  assert "ssim" not in metrics.image_metrics(a[:, :8, :8], b[:, :8, :8], data_range=1.0)


def test_discriminator_overfitting_is_adas_r_v():
  # (E[train] - E[heldout]) / (E[train] - E[fake]) = (3 - 2) / (3 - -1)
  train, heldout, fake = np.array([2.0, 4.0]), np.array([1.0, 3.0]), np.array([-2.0, 0.0])
  assert metrics.discriminator_overfitting(train, heldout, fake) == pytest.approx(0.25)
  assert metrics.discriminator_overfitting(train, train, fake) == 0.0  # no overfitting
  assert metrics.discriminator_overfitting(train, fake, fake) == 1.0  # held-out reals = fakes
  assert np.isnan(metrics.discriminator_overfitting(train, heldout, train))
