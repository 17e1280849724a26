"""Image corruptions at severities 1..5, in NumPy (after ImageNet-C / MNIST-C).

Every corruption maps float images in [0, 1], `[n, h, w]` or `[n, h, w, c]`, to images of
the same shape and dtype, clipped to [0, 1]. Stochastic ones take a `seed` (an int or a
sequence of ints for `np.random.default_rng`) and use no global state: the same seed
gives the same output. The severity parameters are the module-level tuples below, index
`severity - 1`, each monotone in severity.

```none
gaussian_noise   x + N(0, s^2)                      s = GAUSSIAN_NOISE_SIGMA
shot_noise       Poisson(x * lam) / lam             lam = SHOT_NOISE_RATE (decreasing)
impulse_noise    each value -> 0 or 1 w.p. a/2 each  a = IMPULSE_NOISE_AMOUNT
speckle_noise    x + x * N(0, s^2)                  s = SPECKLE_NOISE_SIGMA
gaussian_blur    Gaussian filter, sd s pixels       s = GAUSSIAN_BLUR_SIGMA
defocus_blur     mean over a disk of radius r       r = DEFOCUS_BLUR_RADIUS
contrast         (x - m) * c + m, m the image mean  c = CONTRAST_FACTOR (decreasing)
brightness       x + b                              b = BRIGHTNESS_SHIFT
pixelate         area-downsample to f*h x f*w, then nearest-upsample   f = PIXELATE_FACTOR
rotate           rotation about the centre by +-d degrees (sign random per image)
                                                    d = ROTATE_DEGREES
shear            horizontal shear x' = x +- k (y - centre) (sign random per image)
                                                    k = SHEAR_FACTOR
```

Filters reflect at the border (half-sample symmetric, SciPy's mode "reflect"); the
spatial transforms sample bilinearly and repeat the edge pixels outside the image. The
noise is independent per value (per channel for colour images); the contrast mean is per
image and channel. Written without SciPy, which is only a test dependency.

#### Examples

```python
from tfp_distill.datasets import corruptions, images
(_, _), (x, y) = images.load_fashion_mnist()
x = images.preprocess(x)[..., 0]                        # float32 [10000, 28, 28]
x_c = corruptions.corrupt(x, "gaussian_blur", severity=3)
```

#### References

[1]: Hendrycks, Dietterich. Benchmarking neural network robustness to common corruptions
     and perturbations. ICLR 2019. arXiv:1903.12261.
[2]: Mu, Gilmer. MNIST-C: a robustness benchmark for computer vision. arXiv:1906.02337.
"""

import numpy as np

__all__ = [
    "BRIGHTNESS_SHIFT",
    "CONTRAST_FACTOR",
    "CORRUPTIONS",
    "DEFOCUS_BLUR_RADIUS",
    "GAUSSIAN_BLUR_SIGMA",
    "GAUSSIAN_NOISE_SIGMA",
    "IMPULSE_NOISE_AMOUNT",
    "PIXELATE_FACTOR",
    "ROTATE_DEGREES",
    "SHEAR_FACTOR",
    "SHOT_NOISE_RATE",
    "SPECKLE_NOISE_SIGMA",
    "STOCHASTIC_CORRUPTIONS",
    "brightness",
    "contrast",
    "corrupt",
    "defocus_blur",
    "gaussian_blur",
    "gaussian_noise",
    "impulse_noise",
    "pixelate",
    "rotate",
    "shear",
    "shot_noise",
    "speckle_noise",
]

# Severity 1..5 -> parameter. Noise levels are ImageNet-C's; the blur and spatial ones are
# scaled for 28x28 and 32x32 images.
GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_NOISE_RATE = (60.0, 25.0, 12.0, 5.0, 3.0)
IMPULSE_NOISE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
SPECKLE_NOISE_SIGMA = (0.15, 0.2, 0.35, 0.45, 0.6)
GAUSSIAN_BLUR_SIGMA = (0.5, 0.75, 1.0, 1.25, 1.5)
DEFOCUS_BLUR_RADIUS = (1.0, 1.5, 2.0, 2.5, 3.0)
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
PIXELATE_FACTOR = (0.8, 0.65, 0.5, 0.4, 0.3)
ROTATE_DEGREES = (10.0, 20.0, 30.0, 40.0, 50.0)
SHEAR_FACTOR = (0.1, 0.2, 0.3, 0.4, 0.5)


def _check_images(x):
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"corruptions take float images in [0, 1]; got dtype {x.dtype} "
                     "(uint8 images: use images.preprocess or x / 255).")
  if x.ndim not in (3, 4):
    raise ValueError(f"images must be [n, h, w] or [n, h, w, c]; got shape {list(x.shape)}.")
  if x.size and not (np.all(x >= 0) and np.all(x <= 1)):
    raise ValueError("image values must lie in [0, 1] (NaN is refused); got range "
                     f"[{np.nanmin(x)}, {np.nanmax(x)}].")
  return x


def _param(table, severity):
  if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not (
      1 <= severity <= 5):
    raise ValueError(f"severity must be an int in 1..5; got {severity!r}.")
  return table[int(severity) - 1]


def _rng(seed):
  if seed is None:
    raise ValueError("stochastic corruptions need an explicit seed (int or ints); got None.")
  return np.random.default_rng(seed)


def _finish(y, x):
  return np.clip(y, 0.0, 1.0).astype(x.dtype)


def _as_nhwc(x):
  """float64 [n, h, w, c] and a function that restores x's rank."""
  y = x.astype(np.float64)
  if x.ndim == 3:
    return y[..., None], lambda z: z[..., 0]
  return y, lambda z: z


def gaussian_noise(x, severity, seed=0):
  """Adds N(0, s^2) noise, s = GAUSSIAN_NOISE_SIGMA[severity - 1].

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x, clip(x + noise, 0, 1).
  """
  x = _check_images(x)
  s = _param(GAUSSIAN_NOISE_SIGMA, severity)
  return _finish(x + s * _rng(seed).standard_normal(x.shape), x)


def shot_noise(x, severity, seed=0):
  """Poisson noise: Poisson(x * lam) / lam, lam = SHOT_NOISE_RATE[severity - 1].

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  lam = _param(SHOT_NOISE_RATE, severity)
  return _finish(_rng(seed).poisson(x.astype(np.float64) * lam) / lam, x)


def impulse_noise(x, severity, seed=0):
  """Salt and pepper: each value becomes 0 or 1 with probability a / 2 each.

  a = IMPULSE_NOISE_AMOUNT[severity - 1].

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  a = _param(IMPULSE_NOISE_AMOUNT, severity)
  u = _rng(seed).random(x.shape)
  y = np.where(u < a / 2, 0.0, np.where(u < a, 1.0, x))
  return _finish(y, x)


def speckle_noise(x, severity, seed=0):
  """Multiplicative noise: x + x * N(0, s^2), s = SPECKLE_NOISE_SIGMA[severity - 1].

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  s = _param(SPECKLE_NOISE_SIGMA, severity)
  return _finish(x + x * s * _rng(seed).standard_normal(x.shape), x)


def _filter_axis(y, kernel, axis):
  """Correlates y with a symmetric odd 1-D kernel along `axis`, reflecting at the edges."""
  r = len(kernel) // 2
  pad = [(0, 0)] * y.ndim
  pad[axis] = (r, r)
  padded = np.pad(y, pad, mode="symmetric")
  n = y.shape[axis]
  out = np.zeros_like(y)
  for k, w in enumerate(kernel):
    out += w * np.take(padded, np.arange(k, k + n), axis=axis)
  return out


def gaussian_blur(x, severity):
  """Gaussian filter with sd s = GAUSSIAN_BLUR_SIGMA[severity - 1] pixels.

  ```none
  kernel(i) ~ exp(-i^2 / (2 s^2)), |i| <= int(4 s + 0.5), normalised; separable.
  ```

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  s = _param(GAUSSIAN_BLUR_SIGMA, severity)
  r = int(4.0 * s + 0.5)
  kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
  kernel /= kernel.sum()
  y, restore = _as_nhwc(x)
  return _finish(restore(_filter_axis(_filter_axis(y, kernel, 1), kernel, 2)), x)


def _disk(radius):
  r = int(np.floor(radius))
  i, j = np.mgrid[-r:r + 1, -r:r + 1]
  disk = (i ** 2 + j ** 2 <= radius ** 2).astype(np.float64)
  return disk / disk.sum()


def defocus_blur(x, severity):
  """Mean over a disk of radius r = DEFOCUS_BLUR_RADIUS[severity - 1] pixels.

  ```none
  kernel(i, j) ~ 1[i^2 + j^2 <= r^2], normalised (r = 1: 5 taps, ..., r = 3: 29 taps).
  ```

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  kernel = _disk(_param(DEFOCUS_BLUR_RADIUS, severity))
  r = kernel.shape[0] // 2
  y, restore = _as_nhwc(x)
  _, h, w, _ = y.shape
  padded = np.pad(y, [(0, 0), (r, r), (r, r), (0, 0)], mode="symmetric")
  out = np.zeros_like(y)
  for di, dj in zip(*np.nonzero(kernel)):
    out += kernel[di, dj] * padded[:, di:di + h, dj:dj + w]
  return _finish(restore(out), x)


def contrast(x, severity):
  """Shrinks towards the image mean: (x - m) * c + m, c = CONTRAST_FACTOR[severity - 1].

  m is the mean over height and width, per image (and channel).

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  c = _param(CONTRAST_FACTOR, severity)
  y = x.astype(np.float64)
  m = y.mean(axis=(1, 2), keepdims=True)
  return _finish((y - m) * c + m, x)


def brightness(x, severity):
  """Adds b = BRIGHTNESS_SHIFT[severity - 1] to every value, clip(x + b, 0, 1).

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  return _finish(x.astype(np.float64) + _param(BRIGHTNESS_SHIFT, severity), x)


def _pixelate_matrix(n, m):
  """[n, n]: area-average n pixels down to m cells, then nearest-upsample back to n."""
  down = np.zeros((m, n))
  for i in range(m):
    a, b = i * n / m, (i + 1) * n / m
    for j in range(int(np.floor(a)), min(n, int(np.ceil(b)))):
      down[i, j] = max(0.0, min(b, j + 1) - max(a, j))
  down /= down.sum(axis=1, keepdims=True)
  up = np.zeros((n, m))
  up[np.arange(n), np.minimum(((np.arange(n) + 0.5) * m / n).astype(int), m - 1)] = 1.0
  return up @ down


def pixelate(x, severity):
  """Area-downsamples by f = PIXELATE_FACTOR[severity - 1], then upsamples (nearest).

  ```none
  28 x 28 -> 22, 18, 14, 11, 8 cells a side; 32 x 32 -> 26, 21, 16, 13, 10.
  ```

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  f = _param(PIXELATE_FACTOR, severity)
  y, restore = _as_nhwc(x)
  _, h, w, _ = y.shape
  ph = _pixelate_matrix(h, max(1, int(round(h * f))))
  pw = _pixelate_matrix(w, max(1, int(round(w * f))))
  y = np.einsum("ij,njkc->nikc", ph, y)
  return _finish(restore(np.einsum("lk,nikc->nilc", pw, y)), x)


def _warp(y, matrices):
  """Bilinear resampling of y [n, h, w, c]: output pixel p reads y at A_i (p - o) + o.

  o is the image centre ((h - 1) / 2, (w - 1) / 2); matrices: [n, 2, 2] over (row, col);
  positions outside the image take the nearest edge pixel.
  """
  n, h, w, _ = y.shape
  centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  grid = np.stack([rows, cols], -1).reshape(-1, 2) - centre            # [h*w, 2]
  src = np.einsum("nab,pb->npa", matrices, grid) + centre              # [n, h*w, 2]
  r = np.clip(src[..., 0], 0, h - 1)
  c = np.clip(src[..., 1], 0, w - 1)
  r0 = np.minimum(np.floor(r).astype(int), h - 2) if h > 1 else np.zeros_like(r, int)
  c0 = np.minimum(np.floor(c).astype(int), w - 2) if w > 1 else np.zeros_like(c, int)
  r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
  fr, fc = (r - r0)[..., None], (c - c0)[..., None]
  b = np.arange(n)[:, None]
  out = ((1 - fr) * (1 - fc) * y[b, r0, c0] + (1 - fr) * fc * y[b, r0, c1]
         + fr * (1 - fc) * y[b, r1, c0] + fr * fc * y[b, r1, c1])
  return out.reshape(y.shape)


def _signs(seed, n):
  return np.where(_rng(seed).random(n) < 0.5, -1.0, 1.0)


def rotate(x, severity, seed=0):
  """Rotates each image about its centre by +-d degrees, d = ROTATE_DEGREES[severity - 1].

  The sign is drawn per image from `seed`; bilinear sampling, edge pixels repeated.

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  theta = np.deg2rad(_param(ROTATE_DEGREES, severity)) * _signs(seed, len(x))
  cos, sin = np.cos(theta), np.sin(theta)
  matrices = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
  y, restore = _as_nhwc(x)
  return _finish(restore(_warp(y, matrices)), x)


def shear(x, severity, seed=0):
  """Shears each image horizontally: column += +-k (row - centre), k = SHEAR_FACTOR[...].

  The sign is drawn per image from `seed`; bilinear sampling, edge pixels repeated.

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x.
  """
  x = _check_images(x)
  k = _param(SHEAR_FACTOR, severity) * _signs(seed, len(x))
  matrices = np.zeros((len(x), 2, 2))
  matrices[:, 0, 0] = matrices[:, 1, 1] = 1.0
  matrices[:, 1, 0] = k
  y, restore = _as_nhwc(x)
  return _finish(restore(_warp(y, matrices)), x)


#: Name -> function(x, severity[, seed]).
CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "defocus_blur": defocus_blur,
    "contrast": contrast,
    "brightness": brightness,
    "pixelate": pixelate,
    "rotate": rotate,
    "shear": shear,
}

#: The corruptions that draw random numbers (they take a `seed`).
STOCHASTIC_CORRUPTIONS = frozenset(
    {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "rotate", "shear"})


def corrupt(x, name, severity, seed=0):
  """Applies corruption `name` at `severity` (the seed goes to stochastic ones only).

  Args:
    x: float [n, h, w] or [n, h, w, c] in [0, 1].
    name: a key of `CORRUPTIONS`.
    severity: int in 1..5.
    seed: int or sequence of ints.

  Returns:
    same shape and dtype as x, in [0, 1].

  Raises:
    ValueError: unknown name (listing the known ones), severity outside 1..5, images
      that are not float in [0, 1] or not of rank 3 or 4.
  """
  if name not in CORRUPTIONS:
    raise ValueError(f"Unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}.")
  if name in STOCHASTIC_CORRUPTIONS:
    return CORRUPTIONS[name](x, severity, seed=seed)
  return CORRUPTIONS[name](x, severity)
