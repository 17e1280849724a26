"""Rounding tolerances for the tests, derived from the dtype and the magnitude.

Two float computations of the same quantity (TF and a NumPy/SciPy reference, a stacked
model and its member loop, XLA and no XLA, one CPU's kernels and another's) differ by
rounding only, and how much depends on the dtype and on the size of what was rounded,
never on a constant: in float32, `atol=1e-6` is 8 eps at 1 but 2 units in the last place
of a value of 5 (the ResNet outputs whose test another CPU's summation order broke) and
less than one at 16. Every tolerance here is

```none
tol = ulps * eps(dtype) * scale
  eps(dtype)  machine epsilon, the spacing of floats at 1 (one rounding is <= eps/2 of its
              result): 2^-7 bfloat16, 2^-10 float16, 2^-23 float32, 2^-52 float64
  scale       max |desired|, or what the rounding errors are relative to (below)
  ulps        how many roundings the bound counts (below); each test's comment says which
```

The counts are worst-case bounds (Higham, Accuracy and Stability of Numerical Algorithms,
2nd ed. 2002, ch. 2-4), true for any summation order, blocking, thread split or SIMD width,
so a test that passes on one CPU passes on every CPU:

```none
one correctly rounded op (+ - * / sqrt, a cast)      <= eps/2 |result|
a sum of n terms t_i, in any order                   <= (n - 1) eps/2 sum_i |t_i|   (eq 4.4)
a dot product (a matmul or convolution entry)
  of n products x_i y_i                              <= n eps/2 sum_i |x_i y_i|     (eq 3.5)
a library function (exp, log, softplus, lgamma, ...) FUNCTION_ULPS eps |result| (measured)
errors of chained steps                              add up, each relative to its own scale
```

So `ulps` counts eps, not eps/2 (a factor 2 of headroom), and `scale` is the sum of
|terms| where terms cancel (a logsumexp, a variance, an entropy), because there the
result may be far smaller than the rounding of its terms. With `scale=None` it is
max |desired|, right when no term exceeds the result much.

Comparisons that are not rounding (Monte Carlo against its expectation, a training run
against another, bfloat16 against float32) are not bounded here: their tests state their
own tolerances, each with the reason in a comment.

#### Examples

```python
import tolerance

# 5 products summed per entry, + bias: a 6-term sum relative to sum |terms|.
tolerance.assert_close(got, want, dtype=np.float32, ulps=6, scale=np.abs(x) @ np.abs(w))
np.testing.assert_allclose(got, want, rtol=0,
                           atol=tolerance.atol(want, dtype=np.float32, ulps=4))
```
"""

import numpy as np
import tensorflow as tf
from scipy import linalg

__all__ = ["FUNCTION_ULPS", "assert_close", "atol", "eps", "magnitude", "model_roundings",
           "mvn_log_density", "normal_log_density_bound"]

#: TensorFlow's elementwise functions: their largest error in eps of |f(x)| (lgamma and
#: digamma: of max(|f(x)|, 1), as they cross zero), measured with TF 2.21 on x86-64 in
#: float32 and float64 over 2e5 points each (exp, softplus, sigmoid, tanh on [-80, 80];
#: log, log1p, sqrt on [1e-30, 1e30]; lgamma, digamma on [1e-3, 1e13]) against NumPy/SciPy
#: in float64, rounded up: measured 1.4, 1.7, 2.0, 2.3, 4.0, 3.8, 3.5, 0.5, 2.0, 7.1.
FUNCTION_ULPS = {"exp": 2, "log": 2, "log1p": 2, "expm1": 3, "softplus": 5, "sigmoid": 4,
                 "tanh": 4, "sqrt": 1, "lgamma": 3, "digamma": 8}


def eps(dtype):
  """Machine epsilon of a float dtype: the spacing of floats at 1 (2 units of rounding).

  Args:
    dtype: a NumPy, TensorFlow or string dtype ("bfloat16" included).

  Returns:
    float: 2^-7 (bfloat16), 2^-10 (float16), 2^-23 (float32), 2^-52 (float64).
  """
  return float(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps)


def magnitude(desired):
  """max |desired| over the finite entries (0.0 for none): the default scale.

  Args:
    desired: array-like of any shape.

  Returns:
    float.
  """
  a = np.abs(np.asarray(desired, dtype=np.float64))
  a = a[np.isfinite(a)]
  return float(a.max()) if a.size else 0.0


def atol(desired=None, *, dtype, ulps, scale=None):
  """The absolute tolerance `ulps * eps(dtype) * scale`.

  Args:
    desired: array-like, the reference; its max |entry| is the scale when `scale` is None.
    dtype: the dtype the compared computation ran in (the coarser of the two).
    ulps: float, the number of roundings (in eps) the bound counts.
    scale: None, a float, or an array broadcastable to `desired` (an elementwise bound,
      e.g. the sum of |terms| of each entry's reduction).

  Returns:
    float, or a float64 array of scale's shape.
  """
  if scale is None:
    if desired is None:
      raise ValueError("atol: give the reference `desired` or an explicit `scale`.")
    scale = magnitude(desired)
  tol = ulps * eps(dtype) * np.asarray(scale, dtype=np.float64)
  return float(tol) if tol.ndim == 0 else tol


def assert_close(actual, desired, *, dtype, ulps, scale=None, err_msg=""):
  """Asserts |actual - desired| <= ulps * eps(dtype) * scale, elementwise.

  NaNs must match NaNs and infinities must be equal; shapes must be equal (a scalar
  `desired` is compared with every entry).

  Args:
    actual: array-like, the computation under test.
    desired: array-like, the reference (same shape, or a scalar).
    dtype: the dtype the compared computation ran in (the coarser of the two).
    ulps: float, the number of roundings (in eps) the bound counts: say which in a comment.
    scale: None (max |desired|), a float, or an array broadcastable to `desired` (an
      elementwise magnitude, e.g. the sum of |terms| of each entry's reduction).
    err_msg: str, printed with a failure.

  Raises:
    AssertionError: naming the worst entry, its error and the tolerance there.
  """
  a = np.asarray(actual, dtype=np.float64)
  d = np.asarray(desired, dtype=np.float64)
  if d.ndim and a.shape != d.shape:
    raise AssertionError(f"shapes differ: actual {a.shape}, desired {d.shape}. {err_msg}")
  tol = np.broadcast_to(atol(d, dtype=dtype, ulps=ulps, scale=scale), a.shape)
  d = np.broadcast_to(d, a.shape)
  same = (a == d) | (np.isnan(a) & np.isnan(d))   # equal infinities, matching NaNs
  err = np.where(same, 0.0, np.abs(a - d))
  bad = ~(err <= tol)                               # NaN errors are violations
  if bad.any():
    excess = np.where(bad, np.nan_to_num(err - tol, nan=np.inf), -np.inf)
    where = tuple(int(i) for i in np.unravel_index(np.argmax(excess), a.shape))
    dtype_name = np.dtype(tf.as_dtype(dtype).as_numpy_dtype).name
    raise AssertionError(
        f"Not equal to {ulps} eps({dtype_name}) x scale: {int(bad.sum())} of {a.size} "
        f"entries differ more.\nworst at {where}: actual {a[where]!r}, desired "
        f"{d[where]!r}, |error| {err[where]:.3g} > tolerance {tol[where]:.3g}. {err_msg}")


def normal_log_density_bound(z, loc, scale, scale_ulps):
  """(ulps, magnitude) bounding the rounding of a diagonal Gaussian log density.

  ```none
  log p = sum_e -r_e^2 / 2 - log scale_e - log(2 pi) / 2,      r = (z - loc) / scale
  ```
  With the scale s = scale_ulps eps off (a softplus, 5, and its floor, 1: s = 6; a square
  root of that variance, 1 more), z - loc and the quotient make r 2 + s eps off, r^2 / 2
  2 (2 + s) + 1, log scale s + 1 (relative to 1), and the sum of 3 E terms adds 3 E: the
  log density is within (3 E + 3 s + 6) eps of sum_e (r_e^2 / 2 + |log scale_e| + 1).

  Args:
    z, loc, scale: float arrays [batch, E] (the exact values, e.g. float64).
    scale_ulps: float, the eps of relative error in the computed scale.

  Returns:
    (ulps: float, magnitude: float64 array [batch]), for `assert_close(..., ulps=ulps,
    scale=magnitude)`.
  """
  z, loc, scale = (np.asarray(a, dtype=np.float64) for a in (z, loc, scale))
  r = (z - loc) / scale
  event_size = r.shape[-1]
  return (3 * event_size + 3 * scale_ulps + 6,
          (r ** 2 / 2 + np.abs(np.log(scale)) + 1.).sum(-1))


def mvn_log_density(z, loc, tril):
  """float64 log N(z; loc, L L^T) from the Cholesky factor L, and the scale of its rounding.

  ```none
  x = L^-1 (z - loc)      a triangular solve: |x^ - x| <= d eps |L^-1| (|L| |x| + |z - loc|)
                          (Higham 2002, thm 8.5; + the subtraction)
  log p = -x.x / 2 - sum_i log L_ii - d log(2 pi) / 2
  ```
  A log density computed so from the same L in another dtype is within (2 d + 4) eps of
  `magnitude` = sum_i |x_i| dx_i + x.x / 2 + sum_i |log L_ii| + d, dx the solve's bound
  above without its d eps (the squares, logs and sums add d + 4). SciPy's
  multivariate_normal goes through L L^T, whose conditioning is L's squared: no
  reference at float64 precision.

  Args:
    z, loc: float arrays [batch, d].
    tril: float array [batch, d, d], lower triangular with a positive diagonal.

  Returns:
    (log_p [batch], magnitude [batch]), float64; the bound's ulps are 2 d + 4.
  """
  log_p, magnitude = [], []
  for zi, mi, li in zip(*(np.asarray(a, dtype=np.float64) for a in (z, loc, tril))):
    d = len(zi)
    x = linalg.solve_triangular(li, zi - mi, lower=True)
    dx = np.abs(np.linalg.inv(li)) @ (np.abs(li) @ np.abs(x) + np.abs(zi - mi))
    log_diag = np.log(np.diagonal(li))
    log_p.append(-x @ x / 2 - log_diag.sum() - d * np.log(2 * np.pi) / 2)
    magnitude.append(np.abs(x) @ dx + x @ x / 2 + np.abs(log_diag).sum() + d)
  return np.array(log_p), np.array(magnitude)


def model_roundings(model, batch=None):
  """How many eps (of the outputs' magnitude) two float evaluations of `model` may differ.

  A first-order count of the roundings on the way through the model: a layer with a
  kernel (Dense, Conv2D and their kin) computes dot products of fan-in products plus a
  bias (fan_in + 2 eps of their sum of |terms|); an average pool of n entries n + 1; any
  other layer a few (4: BatchNormalization's subtract, scale and shift, an activation, a
  merge, a head's softplus). Nested models are counted layer by layer. The layers' errors
  add up at the output, carried with the gain of the layers after them, which is of
  order 1 in freshly initialised models (He or Glorot weights, batch statistics at 0 and
  1). With `batch`, training: also the backward pass (each kernel's input gradient sums
  fan-out products, its kernel gradient batch x output positions) and
  BatchNormalization's batch mean and variance (two sums of batch x positions terms).

  Args:
    model: a built tf_keras or Keras 3 model.
    batch: None, or the training batch size.

  Returns:
    int.
  """
  count = 0
  for layer in model.layers:
    kind = type(layer).__name__
    if kind == "InputLayer":
      continue
    if hasattr(layer, "layers"):
      count += model_roundings(layer, batch)
      continue
    try:
      shape = layer.output_shape
    except AttributeError:       # Keras 3 layers have their symbolic output's shape
      shape = tuple(layer.output.shape)
    shape = shape[0] if isinstance(shape, list) else shape
    positions = int(np.prod(shape[1:-1])) if isinstance(shape, tuple) and len(shape) > 2 else 1
    kernel = getattr(layer, "kernel", None)
    if kernel is not None:
      count += int(np.prod(kernel.shape[:-1])) + 2
      if batch:
        count += int(np.prod(kernel.shape[:-2])) * int(kernel.shape[-1]) + batch * positions
    elif kind in ("GlobalAveragePooling2D", "AveragePooling2D"):
      window = (np.prod(layer.input_shape[1:-1]) if kind.startswith("Global")
                else np.prod(layer.pool_size))
      count += int(window) + 1
    else:
      count += 4
      if kind == "BatchNormalization" and batch:
        count += 2 * batch * positions
  return count
