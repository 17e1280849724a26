"""Corruptions: shape/dtype/range, severity monotone on real images, seeds, and each
corruption against a closed form or SciPy (an independent implementation)."""

import numpy as np
import pytest
from scipy import integrate
from scipy import ndimage
from scipy import stats

from tfp_distill.datasets import corruptions as C
from tfp_distill.datasets import images

import tolerance

NAMES = sorted(C.CORRUPTIONS)


@pytest.fixture(scope="module", name="fashion")
def fashion_fixture(load_or_skip):
  """256 Fashion-MNIST test images, float32 [256, 28, 28] in [0, 1]."""
  (_, _), (x_test, _) = load_or_skip(images.load_fashion_mnist)
  return images.preprocess(x_test[:256])[..., 0]


def _random_images(shape, dtype=np.float32, seed=0):
  return np.random.default_rng(seed).random(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 32, 32, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range(name, shape, dtype):
  x = _random_images(shape, dtype)
  for severity in (1, 5):
    y = C.corrupt(x, name, severity, seed=1)
    assert y.shape == x.shape and y.dtype == x.dtype, (name, severity)
    assert y.min() >= 0 and y.max() <= 1, (name, severity)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("name", NAMES)
def test_severity_is_monotone_on_fashion_mnist(fashion, name):
  # Mean |corrupted - clean| over 256 real images, same seed at every severity.
  change = [np.abs(C.corrupt(fashion, name, s, seed=3) - fashion).mean() for s in range(1, 6)]
  assert change[0] > 1e-3, (name, change)
  assert np.all(np.diff(change) > 0), (name, np.round(change, 4))


def test_severity_tables_are_monotone():
  increasing = [C.GAUSSIAN_NOISE_SIGMA, C.IMPULSE_NOISE_AMOUNT, C.SPECKLE_NOISE_SIGMA,
                C.GAUSSIAN_BLUR_SIGMA, C.DEFOCUS_BLUR_RADIUS, C.BRIGHTNESS_SHIFT,
                C.ROTATE_DEGREES, C.SHEAR_FACTOR]
  decreasing = [C.SHOT_NOISE_RATE, C.CONTRAST_FACTOR, C.PIXELATE_FACTOR]
  for table in increasing + decreasing:
    assert len(table) == 5
  for table in increasing:
    assert np.all(np.diff(table) > 0), table
  for table in decreasing:
    assert np.all(np.diff(table) < 0), table


@pytest.mark.parametrize("name", NAMES)
def test_seeds(name):
  x = _random_images((4, 16, 16))
  a = C.corrupt(x, name, 3, seed=7)
  np.testing.assert_array_equal(a, C.corrupt(x, name, 3, seed=7))
  np.testing.assert_array_equal(a, C.corrupt(x, name, 3, seed=[7]))   # same SeedSequence
  np.testing.assert_array_equal(x, _random_images((4, 16, 16)))        # input untouched
  b = C.corrupt(x, name, 3, seed=8)
  if name in C.STOCHASTIC_CORRUPTIONS:
    assert not np.array_equal(a, b), name
    with pytest.raises(ValueError, match="seed"):
      C.CORRUPTIONS[name](x, 3, seed=None)
  else:
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_and_contrast_closed_form(severity):
  x = _random_images((5, 9, 7, 3), np.float64) ** 2
  b = C.BRIGHTNESS_SHIFT[severity - 1]
  # float64, one addition on either side (pixels <= 1, shifts < 1: relative to 2).
  tolerance.assert_close(C.brightness(x, severity), np.minimum(x + b, 1.0),
                         dtype=np.float64, ulps=2, scale=2.)
  c = C.CONTRAST_FACTOR[severity - 1]
  # By hand: the mean of each image and channel over its 9 x 7 pixels.
  m = np.array([[x[i, :, :, k].sum() / 63 for k in range(3)] for i in range(5)])
  want = (x - m[:, None, None, :]) * c + m[:, None, None, :]
  # Means of 63 pixels (64 eps of pixels <= 1) in other orders, then 3 roundings:
  # 2 (64 + 3) eps of 1.
  tolerance.assert_close(C.contrast(x, severity), want, dtype=np.float64, ulps=2 * (64 + 3),
                         scale=1.)


def _censored_normal_std(sigma):
  """sd of clip(0.5 + N(0, sigma^2), 0, 1), by quadrature: the mean stays 0.5."""
  inside, _ = integrate.quad(lambda z: z * z * stats.norm.pdf(z, scale=sigma), -0.5, 0.5)
  return np.sqrt(inside + 0.25 * 2 * stats.norm.sf(0.5, scale=sigma))


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_noise_std_on_mid_grey(severity):
  x = np.full((64, 28, 28), 0.5)             # n = 50176 values
  y = C.gaussian_noise(x, severity, seed=severity)
  sigma = C.GAUSSIAN_NOISE_SIGMA[severity - 1]
  # The sd of a sample sd is ~ sigma / sqrt(2 n) = 0.32% of sigma; rtol 2% is > 6 of them.
  np.testing.assert_allclose(y.std(), _censored_normal_std(sigma), rtol=0.02)
  np.testing.assert_allclose(y.mean(), 0.5, atol=5 * sigma / np.sqrt(y.size))
  if severity <= 2:   # sigma <= 0.12: clipping at 0.5 / sigma >= 4.2 sd changes nothing
    np.testing.assert_allclose(y.std(), sigma, rtol=0.02)


@pytest.mark.parametrize("severity", [1, 2])
def test_shot_and_speckle_noise_moments_on_mid_grey(severity):
  x = np.full((64, 28, 28), 0.5)
  # Poisson(0.5 lam) / lam: mean 0.5, variance 0.5 / lam (no clipping below
  # P(Poisson(12.5) > 25) < 1e-3 for lam >= 25).
  lam = C.SHOT_NOISE_RATE[severity - 1]
  y = C.shot_noise(x, severity, seed=0)
  np.testing.assert_allclose(y.var(), 0.5 / lam, rtol=0.03)
  np.testing.assert_allclose(y.mean(), 0.5, atol=5 * np.sqrt(0.5 / lam / y.size))
  # x + x N(0, s^2): sd 0.5 s; 0.5 s <= 0.1 keeps clipping beyond 5 sd.
  s = C.SPECKLE_NOISE_SIGMA[severity - 1]
  np.testing.assert_allclose(C.speckle_noise(x, severity, seed=0).std(), 0.5 * s, rtol=0.02)


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_noise_fractions(severity):
  x = np.full((64, 28, 28), 0.5)
  y = C.impulse_noise(x, severity, seed=0)
  a = C.IMPULSE_NOISE_AMOUNT[severity - 1]
  tol = 5 * np.sqrt(a / 2 / y.size)   # 5 binomial sds
  np.testing.assert_allclose((y == 0).mean(), a / 2, atol=tol)
  np.testing.assert_allclose((y == 1).mean(), a / 2, atol=tol)
  assert np.all((y == 0) | (y == 1) | (y == 0.5))


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_blur_matches_scipy(severity):
  x = _random_images((3, 28, 28), np.float64)
  s = C.GAUSSIAN_BLUR_SIGMA[severity - 1]
  want = ndimage.gaussian_filter(x, sigma=(0, s, s), mode="reflect", truncate=4.0)
  # float64, on either side: the taps t = 2 r + 1 (exp and their normalising sum:
  # t + 4 eps each) and two passes of t-term sums with weights summing to 1 (2 t), all
  # relative to pixels <= 1.
  taps = 2 * int(4.0 * s + 0.5) + 1
  bound = dict(dtype=np.float64, ulps=2 * (2 * taps + taps + 4), scale=1.)
  tolerance.assert_close(C.gaussian_blur(x, severity), want, **bound)
  rgb = _random_images((2, 32, 32, 3), np.float64)
  want = ndimage.gaussian_filter(rgb, sigma=(0, s, s, 0), mode="reflect", truncate=4.0)
  tolerance.assert_close(C.gaussian_blur(rgb, severity), want, **bound)


@pytest.mark.parametrize("severity,taps", [(1, 5), (2, 9), (3, 13), (4, 21), (5, 29)])
def test_defocus_blur_matches_scipy(severity, taps):
  r = C.DEFOCUS_BLUR_RADIUS[severity - 1]
  # The disk by hand: offsets (i, j) with i^2 + j^2 <= r^2 (r = 1: the centre and its 4
  # neighbours; r = 1.5: the 3 x 3 square; ...).
  size = int(r)
  disk = np.array([[float(i * i + j * j <= r * r) for j in range(-size, size + 1)]
                   for i in range(-size, size + 1)])
  assert disk.sum() == taps
  x = _random_images((3, 28, 28), np.float64)
  want = ndimage.correlate(x, disk[None] / taps, mode="reflect")
  # float64: a sum of `taps` weighted pixels (weights 1 / taps, one rounding) on either
  # side: 2 (taps + 2) eps of pixels <= 1.
  tolerance.assert_close(C.defocus_blur(x, severity), want, dtype=np.float64,
                         ulps=2 * (taps + 2), scale=1.)


def test_pixelate_closed_form():
  x = _random_images((4, 28, 28), np.float64)
  # Severity 3 (f = 0.5): 28 -> 14 cells, i.e. the mean of each 2 x 2 block, repeated.
  assert C.PIXELATE_FACTOR[2] == 0.5
  blocks = x.reshape(4, 14, 2, 14, 2).mean(axis=(2, 4))
  want = blocks.repeat(2, axis=1).repeat(2, axis=2)
  # float64: two averaging matrix products over h and w rows of 28 (the zeros add
  # nothing; their weights one rounding each), against a mean of 4 (5): of pixels <= 1.
  tolerance.assert_close(C.pixelate(x, 3), want, dtype=np.float64, ulps=28 + 28 + 4 + 5,
                         scale=1.)
  # Area averaging keeps a constant image and, for any factor, its channels apart.
  for severity in range(1, 6):
    tolerance.assert_close(C.pixelate(np.full((1, 32, 32, 3), 0.3), severity), 0.3,
                           dtype=np.float64, ulps=32 + 32 + 4)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_rotate_matches_scipy(severity):
  x = _random_images((6, 28, 28), np.float64)
  y = C.rotate(x, severity, seed=severity)
  d = C.ROTATE_DEGREES[severity - 1]
  signs = []
  for img, out in zip(x, y):
    errors = [np.abs(out - ndimage.rotate(img, s * d, reshape=False, order=1,
                                          mode="nearest")).max() for s in (-1, 1)]
    assert min(errors) < 1e-9, errors     # bilinear on both sides: equal up to round-off
    signs.append(int(np.argmin(errors)))
  assert len(set(signs)) == 2             # with 6 images, both directions occur (seeded)


@pytest.mark.parametrize("severity", [1, 5])
def test_shear_matches_scipy(severity):
  x = _random_images((6, 20, 24), np.float64)
  y = C.shear(x, severity, seed=0)
  k = C.SHEAR_FACTOR[severity - 1]
  centre = np.array([9.5, 11.5])
  for img, out in zip(x, y):
    errors = []
    for s in (-1, 1):
      m = np.array([[1.0, 0.0], [s * k, 1.0]])       # (row, col) source = m (p - c) + c
      want = ndimage.affine_transform(img, m, offset=centre - m @ centre, order=1,
                                      mode="nearest")
      errors.append(np.abs(out - want).max())
    assert min(errors) < 1e-9, errors


def test_errors():
  x = _random_images((2, 8, 8))
  with pytest.raises(ValueError, match="known: .*gaussian_noise.*shot_noise"):
    C.corrupt(x, "fog", 1)
  for severity in (0, 6, 2.0, True, None):
    with pytest.raises(ValueError, match="severity"):
      C.corrupt(x, "contrast", severity)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    C.corrupt(x + 0.5, "brightness", 1)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    C.corrupt(np.where(x > 0.5, np.nan, x), "gaussian_blur", 1)
  with pytest.raises(ValueError, match="preprocess"):
    C.corrupt((x * 255).astype(np.uint8), "pixelate", 1)
  with pytest.raises(ValueError, match="shape"):
    C.corrupt(x[0], "rotate", 1)
