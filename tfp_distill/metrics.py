"""Evaluation metrics: accuracy, predictive likelihoods and uncertainty quality.

Pure functions of tensors. Every function accepts NumPy arrays, Python lists or
`tf.Tensor`s, returns `tf.Tensor`s, and works both eagerly and inside `tf.function`. The
metrics are those used to compare a distilled student with its ensemble in [2]:

* accuracy and likelihood: `rmse`, `gaussian_nll` (a single Gaussian predictive, e.g. a
  student's), `gaussian_mixture_nll` (an equally weighted mixture, e.g. an ensemble's
  predictive);
* uncertainty quality: `sparsification_curve`, `sparsification_error` and `ause`, the area
  under the sparsification error curve of [1];
* agreement of two curves (e.g. a student's and an ensemble's uncertainty curves):
  `pearson_correlation`, `mean_relative_error`.

Dtypes: all floating inputs of one call are converted to a common float dtype, which is
the widest float dtype among the arguments that are `tf.Tensor`s, else the widest among the
NumPy arrays, else `tf.float32` (Python floats and integer arrays become `tf.float32`).
Outputs have that dtype.

Validation: shape errors that can be seen statically (mismatched sizes, wrong rank, empty
input, bad `num_fractions`) raise `ValueError` at call (or trace) time; with statically
unknown sizes inside `tf.function` the same checks run as graph assertions and raise
`tf.errors.InvalidArgumentError`. Value checks (NaN/Inf, non-positive variances, negative
errors, zero reference values) raise `ValueError` when executing eagerly and
`tf.errors.InvalidArgumentError` when run inside a graph.

#### References

[1]: Eddy Ilg, Ozgun Cicek, Silvio Galesso, Aaron Klein, Osama Makansi, Frank Hutter,
     Thomas Brox. Uncertainty Estimates and Multi-Hypotheses Networks for Optical Flow.
     ECCV 2018. arXiv:1802.07095.

[2]: Jakob Lindqvist, Amanda Olmin, Fredrik Lindsten, Lennart Svensson. A general framework
     for ensemble distribution distillation. MLSP 2020. arXiv:2002.11531.
"""

import numbers

import numpy as np
import tensorflow as tf

__all__ = [
    "rmse",
    "gaussian_nll",
    "gaussian_mixture_nll",
    "sparsification_curve",
    "sparsification_error",
    "ause",
    "pearson_correlation",
    "mean_relative_error",
]

_LOG_2PI = float(np.log(2.0 * np.pi))


# ----------------------------------------------------------------------------------------
# Conversion and validation helpers.
# ----------------------------------------------------------------------------------------


def _float_dtype(values):
  """The common float dtype of `values` (see the module docstring)."""
  tensor_dtypes = []
  array_dtypes = []
  for value in values:
    if tf.is_tensor(value):
      tensor_dtypes.append(tf.as_dtype(value.dtype))
    elif isinstance(value, (np.ndarray, np.generic)):
      try:
        array_dtypes.append(tf.as_dtype(value.dtype))
      except TypeError:
        pass
  for group in (tensor_dtypes, array_dtypes):
    floats = [d for d in group if d.is_floating]
    if floats:
      return max(floats, key=lambda d: d.size)
  return tf.float32


def _to_float(fn_name, **named):
  """Converts keyword arguments to Tensors of one common float dtype, in order."""
  dtype = _float_dtype(named.values())
  out = []
  for name, value in named.items():
    try:
      x = tf.convert_to_tensor(value, dtype_hint=dtype)
    except (TypeError, ValueError) as e:
      raise TypeError(
          f"{fn_name}: `{name}` must be a real-valued array or Tensor, got "
          f"{type(value).__name__}: {e}") from None
    if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype == tf.bool):
      raise TypeError(
          f"{fn_name}: `{name}` must be real-valued, got dtype {x.dtype.name}.")
    out.append(tf.cast(x, dtype) if x.dtype != dtype else x)
  return out


def _shape_str(x):
  return str(x.shape.as_list()) if x.shape.rank is not None else "<unknown rank>"


def _check_rank(fn_name, name, x, ranks, expected):
  """Raises ValueError unless `x` has a statically known rank in `ranks`."""
  if x.shape.rank is None:
    raise ValueError(
        f"{fn_name}: `{name}` must have a statically known rank; expected shape "
        f"{expected}.")
  if x.shape.rank not in ranks:
    raise ValueError(
        f"{fn_name}: `{name}` must have shape {expected}, got shape {_shape_str(x)} "
        f"(rank {x.shape.rank}).")


def _check_shapes_equal(message, a_shape, b_shape, a_dynamic, b_dynamic):
  """Static check of two (partial) shapes; returns a graph assertion if not static.

  Args:
    message: str, the error message.
    a_shape, b_shape: tf.TensorShape of equal rank.
    a_dynamic, b_dynamic: callables returning the dynamic shapes, int32 Tensors.

  Returns:
    A list with a graph assertion when the shapes are not both fully defined (empty
    otherwise).

  Raises:
    ValueError: if the static shapes are incompatible.
  """
  if a_shape.rank != b_shape.rank or not a_shape.is_compatible_with(b_shape):
    raise ValueError(message)
  if a_shape.is_fully_defined() and b_shape.is_fully_defined():
    return []
  return [tf.debugging.assert_equal(a_dynamic(), b_dynamic(), message=message)]


def _check_nonempty(fn_name, name, x, expected, min_size=1):
  """Raises ValueError if `x` statically has fewer than `min_size` elements.

  Returns a list with a graph assertion when the number of elements is not static.
  """
  size = x.shape.num_elements()
  message = (f"{fn_name}: `{name}` must have shape {expected} with at least {min_size} "
             f"element(s)")
  if size is not None:
    if size < min_size:
      raise ValueError(f"{message}; got shape {_shape_str(x)} ({size} elements).")
    return []
  return [tf.debugging.assert_greater_equal(tf.size(x), min_size, message=message + ".")]


def _check_values(x, assertion, message):
  """Runs a value assertion: ValueError eagerly, a graph assertion otherwise.

  Args:
    x: Tensor.
    assertion: callable (x, message) -> assertion, e.g. `tf.debugging.assert_all_finite`.
    message: str.

  Returns:
    `x`, with a control dependency on the assertion when building a graph.

  Raises:
    ValueError: eagerly, if the assertion fails.
  """
  if tf.executing_eagerly():
    try:
      assertion(x, message)
    except tf.errors.InvalidArgumentError:
      raise ValueError(message) from None
    return x
  check = assertion(x, message)
  if check is None:
    return x
  with tf.control_dependencies([check]):
    return tf.identity(x)


def _finite(fn_name, name, x):
  return _check_values(
      x, tf.debugging.assert_all_finite,
      f"{fn_name}: `{name}` must be finite, but it contains NaN or Inf values.")


def _positive(fn_name, name, x):
  return _check_values(
      x, lambda t, m: tf.debugging.assert_positive(t, message=m),
      f"{fn_name}: `{name}` must be strictly positive.")


def _with_deps(x, assertions):
  if not assertions:
    return x
  with tf.control_dependencies(assertions):
    return tf.identity(x)


def _check_same_shape(fn_name, a_name, a, b_name, b, expected):
  message = (f"{fn_name}: `{a_name}` and `{b_name}` must have the same shape {expected}; "
             f"got shapes {_shape_str(a)} and {_shape_str(b)}.")
  return _check_shapes_equal(message, a.shape, b.shape,
                             lambda: tf.shape(a), lambda: tf.shape(b))


def _check_num_fractions(fn_name, num_fractions):
  if isinstance(num_fractions, (bool, np.bool_)) or not isinstance(
      num_fractions, numbers.Integral):
    raise TypeError(
        f"{fn_name}: `num_fractions` must be a Python int >= 1 (it sets the output shape "
        f"[fractions]), got {num_fractions!r} of type {type(num_fractions).__name__}.")
  if num_fractions < 1:
    raise ValueError(
        f"{fn_name}: `num_fractions` must be >= 1 (the outputs have shape "
        f"[fractions] = [num_fractions]), got {num_fractions}.")
  return int(num_fractions)


# ----------------------------------------------------------------------------------------
# Accuracy and predictive likelihood.
# ----------------------------------------------------------------------------------------


def rmse(y, prediction):
  """Root mean squared error over all elements.

  ```none
  rmse = sqrt( 1/N sum_n (y_n - prediction_n)^2 )
  ```
  where n runs over all N elements (batch and event).

  Args:
    y: float array or Tensor [batch] or [batch, event], the targets.
    prediction: float array or Tensor, the same shape as `y` ([batch] or [batch, event]).

  Returns:
    rmse: float Tensor [], a scalar.

  Raises:
    ValueError: if `y` is not [batch] or [batch, event], the shapes differ, the batch is
      empty, or (eagerly) an input contains NaN or Inf.
  """
  name = "rmse"
  y, prediction = _to_float(name, y=y, prediction=prediction)
  expected = "[batch] or [batch, event]"
  _check_rank(name, "y", y, (1, 2), expected)
  deps = _check_same_shape(name, "y", y, "prediction", prediction, expected)
  deps += _check_nonempty(name, "y", y, expected)
  y = _with_deps(_finite(name, "y", y), deps)
  prediction = _finite(name, "prediction", prediction)
  return tf.sqrt(tf.reduce_mean(tf.math.squared_difference(y, prediction)))


def _normal_log_prob(y, mean, variance):
  return -0.5 * (_LOG_2PI + tf.math.log(variance)
                 + tf.math.squared_difference(y, mean) / variance)


def gaussian_nll(y, mean, variance):
  """Mean negative log density of y under a Gaussian predictive N(mean, variance).

  ```none
  nll = - 1/B sum_b sum_e log N(y_be; mean_be, variance_be)
  log N(y; mu, var) = -1/2 (log(2 pi) + log var + (y - mu)^2 / var)
  ```
  The event dimension (if any) is summed over (a diagonal Gaussian); the batch is averaged.

  Args:
    y: float array or Tensor [batch] or [batch, event], the targets.
    mean: float array or Tensor, the same shape as `y` ([batch] or [batch, event]).
    variance: float array or Tensor, the same shape as `y` ([batch] or [batch, event]);
      strictly positive.

  Returns:
    nll: float Tensor [], a scalar (nats).

  Raises:
    ValueError: if `y` is not [batch] or [batch, event], the shapes differ, the batch is
      empty, or (eagerly) an input contains NaN or Inf or a variance is not positive.
  """
  name = "gaussian_nll"
  y, mean, variance = _to_float(name, y=y, mean=mean, variance=variance)
  expected = "[batch] or [batch, event]"
  _check_rank(name, "y", y, (1, 2), expected)
  deps = _check_same_shape(name, "y", y, "mean", mean, expected)
  deps += _check_same_shape(name, "y", y, "variance", variance, expected)
  deps += _check_nonempty(name, "y", y, expected)
  y = _with_deps(_finite(name, "y", y), deps)
  mean = _finite(name, "mean", mean)
  variance = _positive(name, "variance", _finite(name, "variance", variance))
  log_prob = _normal_log_prob(y, mean, variance)
  if log_prob.shape.rank == 2:
    log_prob = tf.reduce_sum(log_prob, axis=-1)
  return -tf.reduce_mean(log_prob)


def gaussian_mixture_nll(y, means, variances):
  """Mean negative log density of y under an equally weighted Gaussian mixture.

  This is the NLL of an ensemble's predictive: member m predicts N(means_m, variances_m)
  and the ensemble predicts their uniform mixture. The mixture density is computed in log
  space with logsumexp.

  ```none
  nll = - 1/B sum_b log( 1/M sum_m N(y_b; means_bm, variances_bm) )
      = - 1/B sum_b [ logsumexp_m( sum_e log N(y_be; means_bme, variances_bme) ) - log M ]
  ```
  With an event dimension, each member's Gaussian is diagonal over the event (its log
  density is summed over `event` before the logsumexp over members).

  Args:
    y: float array or Tensor [batch] or [batch, event], the targets.
    means: float array or Tensor [batch, members] (if `y` is [batch]) or
      [batch, members, event] (if `y` is [batch, event]), the members' means.
    variances: float array or Tensor, the same shape as `means` ([batch, members] or
      [batch, members, event]), the members' variances; strictly positive.

  Returns:
    nll: float Tensor [], a scalar (nats).

  Raises:
    ValueError: if the shapes do not fit each other as above (including a batch-size
      mismatch, an empty batch or zero members), or (eagerly) an input contains NaN or Inf
      or a variance is not positive.

  #### References

  [1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
       distillation. 2020. arXiv:2002.11531.
  """
  name = "gaussian_mixture_nll"
  y, means, variances = _to_float(name, y=y, means=means, variances=variances)
  _check_rank(name, "y", y, (1, 2), "[batch] or [batch, event]")
  expected = ("[batch, members]" if y.shape.rank == 1 else "[batch, members, event]")
  y_expected = "[batch]" if y.shape.rank == 1 else "[batch, event]"
  _check_rank(name, "means", means, (y.shape.rank + 1,),
              f"{expected} (for y of shape {y_expected})")
  deps = _check_same_shape(name, "means", means, "variances", variances, expected)
  message = (f"{name}: `means` must have shape {expected} for `y` of shape {y_expected} "
             f"(the same batch and event sizes); got `y` shape {_shape_str(y)} and "
             f"`means` shape {_shape_str(means)}.")
  member_axis_dropped = means.shape[:1].concatenate(means.shape[2:])
  deps += _check_shapes_equal(
      message, y.shape, member_axis_dropped, lambda: tf.shape(y),
      lambda: tf.concat([tf.shape(means)[:1], tf.shape(means)[2:]], axis=0))
  deps += _check_nonempty(name, "y", y, y_expected)
  members = tf.compat.dimension_value(means.shape[1])
  if members is not None and members < 1:
    raise ValueError(f"{name}: `means` has no members (shape {_shape_str(means)}); "
                     f"expected shape {expected} with members >= 1.")
  if members is None:
    deps.append(tf.debugging.assert_positive(
        tf.shape(means)[1],
        message=f"{name}: `means` must have shape {expected} with members >= 1."))
  y = _with_deps(_finite(name, "y", y), deps)
  means = _finite(name, "means", means)
  variances = _positive(name, "variances", _finite(name, "variances", variances))
  log_prob = _normal_log_prob(y[:, tf.newaxis], means, variances)  # [batch, members, ...]
  if log_prob.shape.rank == 3:
    log_prob = tf.reduce_sum(log_prob, axis=-1)                    # [batch, members]
  num_members = tf.cast(tf.shape(means)[1], log_prob.dtype)
  mixture_log_prob = tf.reduce_logsumexp(log_prob, axis=1) - tf.math.log(num_members)
  return -tf.reduce_mean(mixture_log_prob)


# ----------------------------------------------------------------------------------------
# Sparsification.
# ----------------------------------------------------------------------------------------


def _sparsification_inputs(name, errors, uncertainty, num_fractions):
  """Validates and converts the inputs of the sparsification functions."""
  num_fractions = _check_num_fractions(name, num_fractions)
  (errors,) = _to_float(name, errors=errors)
  try:
    uncertainty = tf.convert_to_tensor(uncertainty)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name}: `uncertainty` must be a real-valued array or Tensor: "
                    f"{e}") from None
  if not (uncertainty.dtype.is_floating or uncertainty.dtype.is_integer):
    raise TypeError(f"{name}: `uncertainty` must be real-valued, got dtype "
                    f"{uncertainty.dtype.name}.")
  _check_rank(name, "errors", errors, (1,), "[batch]")
  _check_rank(name, "uncertainty", uncertainty, (1,), "[batch]")
  deps = _check_same_shape(name, "errors", errors, "uncertainty", uncertainty, "[batch]")
  deps += _check_nonempty(name, "errors", errors, "[batch]")
  errors = _with_deps(_finite(name, "errors", errors), deps)
  errors = _check_values(
      errors, lambda t, m: tf.debugging.assert_non_negative(t, message=m),
      f"{name}: `errors` must be non-negative (e.g. squared errors).")
  if uncertainty.dtype.is_floating:
    uncertainty = _finite(name, "uncertainty", uncertainty)
  return errors, uncertainty, num_fractions


def _curve(errors, key, num_fractions):
  """Normalised mean of the kept errors after removing the largest-`key` points."""
  dtype = errors.dtype
  # Stable sort: among equal keys the point with the lower index comes first, i.e. it is
  # removed first.
  order = tf.argsort(key, direction="DESCENDING", stable=True)
  sorted_errors = tf.gather(errors, order)
  # kept_sums[k] = sum of sorted_errors[k:], the errors left after removing k points.
  kept_sums = tf.cumsum(sorted_errors, reverse=True)
  n = tf.shape(errors, out_type=tf.int64)[0]
  # floor(i / F * n) in exact integer arithmetic; k <= n - ceil(n / F) <= n - 1, so at
  # least one point is always kept (the minimum is a safeguard).
  removed = (tf.range(num_fractions, dtype=tf.int64) * n) // num_fractions
  removed = tf.minimum(removed, n - 1)
  kept_mean = tf.gather(kept_sums, removed) / tf.cast(n - removed, dtype)
  full_mean = kept_sums[0] / tf.cast(n, dtype)
  curve = tf.math.divide_no_nan(kept_mean, full_mean)
  fractions = tf.cast(tf.range(num_fractions), dtype) / tf.cast(num_fractions, dtype)
  return fractions, curve


def sparsification_curve(errors, uncertainty, num_fractions=100, oracle=False):
  """Sparsification curve: normalised error of the points kept after removing the most
  uncertain ones.

  Points are sorted by `uncertainty`, most uncertain first (or, for the oracle curve, by
  the `errors` themselves, largest first). For each fraction f_i the floor(f_i B) first
  points are removed and the mean error of the remaining ones is divided by the mean
  error of all B points:

  ```none
  f_i      = i / F,                         i = 0, ..., F - 1   (F = num_fractions)
  k_i      = floor(f_i B)                   (computed exactly in integers; k_i <= B - 1)
  curve_i  = [ 1/(B - k_i) sum_{j >= k_i} e_(j) ] / [ 1/B sum_j e_j ]
  ```
  where e_(0), e_(1), ... are the errors in the sorted order. With squared errors the
  curve is the MSE of the kept points relative to the full-set MSE, and curve_0 = 1.

  Ties are broken by a stable sort: points with equal uncertainty (or equal error, for
  the oracle) keep their original order, so the one with the lower index is removed
  first. At least one point is always kept. If all errors are zero the curve is all zeros.

  Args:
    errors: float array or Tensor [batch], non-negative per-point errors (e.g. squared
      errors).
    uncertainty: real array or Tensor [batch], per-point uncertainty (e.g. predictive
      variance); larger means more uncertain. Only its order matters; it keeps its own
      dtype for sorting. Ignored (apart from validation) when `oracle=True`.
    num_fractions: Python int >= 1, the number F of fractions; sets the output shape
      [fractions] = [F].
    oracle: Python bool; if True, sort by `errors` instead of `uncertainty` (the oracle
      curve, the best possible ordering).

  Returns:
    fractions: float Tensor [fractions], the removed fractions i / F, the dtype of
      `errors`.
    curve: float Tensor [fractions], the normalised mean error of the kept points.

  Raises:
    TypeError: if `num_fractions` is not an integer.
    ValueError: if `errors` or `uncertainty` is not [batch], their batch sizes differ,
      the batch is empty, `num_fractions` < 1, or (eagerly) an input contains NaN or Inf
      or `errors` has a negative entry.

  #### References

  [1]: Ilg et al. Uncertainty Estimates and Multi-Hypotheses Networks for Optical Flow.
       ECCV 2018. arXiv:1802.07095.
  """
  errors, uncertainty, num_fractions = _sparsification_inputs(
      "sparsification_curve", errors, uncertainty, num_fractions)
  return _curve(errors, errors if oracle else uncertainty, num_fractions)


def sparsification_error(errors, uncertainty, num_fractions=100):
  """Sparsification error: the model's sparsification curve minus the oracle's.

  ```none
  sparsification_error_i = curve_i(sorted by uncertainty) - curve_i(sorted by errors)
  ```
  The oracle removes the largest errors first, which minimises the mean of the kept
  errors for every fraction, so the sparsification error is >= 0 (up to rounding) and is
  0 exactly when the uncertainty orders the points like their errors.

  Args:
    errors: float array or Tensor [batch], non-negative per-point errors (e.g. squared
      errors).
    uncertainty: real array or Tensor [batch], per-point uncertainty; larger means more
      uncertain.
    num_fractions: Python int >= 1, the number F of fractions.

  Returns:
    fractions: float Tensor [fractions], the removed fractions i / F, i = 0..F-1.
    error: float Tensor [fractions], the model curve minus the oracle curve (see
      `sparsification_curve`).

  Raises:
    TypeError: if `num_fractions` is not an integer.
    ValueError: as `sparsification_curve`.

  #### References

  [1]: Ilg et al. Uncertainty Estimates and Multi-Hypotheses Networks for Optical Flow.
       ECCV 2018. arXiv:1802.07095.
  """
  return _sparsification_error("sparsification_error", errors, uncertainty, num_fractions)


def _sparsification_error(name, errors, uncertainty, num_fractions):
  errors, uncertainty, num_fractions = _sparsification_inputs(
      name, errors, uncertainty, num_fractions)
  fractions, model_curve = _curve(errors, uncertainty, num_fractions)
  _, oracle_curve = _curve(errors, errors, num_fractions)
  return fractions, model_curve - oracle_curve


def ause(errors, uncertainty, num_fractions=100):
  """Area under the sparsification error curve (AUSE).

  The trapezoid rule over the F fractions f_i = i / F, i.e. the curve is integrated over
  [0, (F - 1) / F], not [0, 1] (the last point, where every point would be removed, is
  not part of the curve):

  ```none
  ause = sum_{i=0}^{F-2} (f_{i+1} - f_i) (s_i + s_{i+1}) / 2
  ```
  where s is `sparsification_error(errors, uncertainty, F)`. Lower is better; 0 means the
  uncertainty orders the points exactly like their errors. With F = 1 the area is 0.

  Args:
    errors: float array or Tensor [batch], non-negative per-point errors (e.g. squared
      errors).
    uncertainty: real array or Tensor [batch], per-point uncertainty; larger means more
      uncertain.
    num_fractions: Python int >= 1, the number F of fractions.

  Returns:
    ause: float Tensor [], a scalar.

  Raises:
    TypeError: if `num_fractions` is not an integer.
    ValueError: as `sparsification_curve`.

  #### References

  [1]: Ilg et al. Uncertainty Estimates and Multi-Hypotheses Networks for Optical Flow.
       ECCV 2018. arXiv:1802.07095.

  [2]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
       distillation. 2020. arXiv:2002.11531.
  """
  fractions, error = _sparsification_error("ause", errors, uncertainty, num_fractions)
  return tf.reduce_sum((fractions[1:] - fractions[:-1]) * (error[1:] + error[:-1])) / 2


# ----------------------------------------------------------------------------------------
# Agreement of two curves.
# ----------------------------------------------------------------------------------------


def pearson_correlation(a, b):
  """Pearson correlation coefficient of two vectors.

  ```none
  r = sum_n (a_n - mean(a)) (b_n - mean(b))
      / sqrt( sum_n (a_n - mean(a))^2  sum_n (b_n - mean(b))^2 )
  ```
  computed as the inner product of the centred, unit-normalised vectors and clipped to
  [-1, 1]. It is NaN if `a` or `b` is constant.

  Args:
    a: float array or Tensor [batch], e.g. a student's uncertainty curve [fractions].
    b: float array or Tensor, the same shape as `a` ([batch]), e.g. the ensemble's curve.

  Returns:
    r: float Tensor [], a scalar in [-1, 1] (or NaN).

  Raises:
    ValueError: if `a` or `b` is not [batch], their sizes differ, they have fewer than 2
      elements, or (eagerly) an input contains NaN or Inf.
  """
  name = "pearson_correlation"
  a, b = _to_float(name, a=a, b=b)
  _check_rank(name, "a", a, (1,), "[batch]")
  deps = _check_same_shape(name, "a", a, "b", b, "[batch]")
  deps += _check_nonempty(name, "a", a, "[batch]", min_size=2)
  a = _with_deps(_finite(name, "a", a), deps)
  b = _finite(name, "b", b)
  a = a - tf.reduce_mean(a)
  b = b - tf.reduce_mean(b)
  a = a / tf.norm(a)
  b = b / tf.norm(b)
  return tf.clip_by_value(tf.reduce_sum(a * b), -1, 1)


def mean_relative_error(estimate, reference):
  """Mean relative error of an estimate with respect to a reference.

  ```none
  mre = 1/N sum_n |estimate_n - reference_n| / |reference_n|
  ```

  Args:
    estimate: float array or Tensor [batch] (any shape equal to `reference`'s), e.g. a
      student's uncertainty curve [fractions].
    reference: float array or Tensor, the same shape as `estimate` ([batch]), e.g. the
      ensemble's curve; no entry may be zero.

  Returns:
    mre: float Tensor [], a scalar.

  Raises:
    ValueError: if the shapes differ or are not at least [batch], the input is empty,
      or (eagerly) an input contains NaN or Inf or `reference` has a zero entry.
  """
  name = "mean_relative_error"
  estimate, reference = _to_float(name, estimate=estimate, reference=reference)
  _check_rank(name, "estimate", estimate, range(1, 33), "[batch]")
  deps = _check_same_shape(name, "estimate", estimate, "reference", reference, "[batch]")
  deps += _check_nonempty(name, "estimate", estimate, "[batch]")
  estimate = _with_deps(_finite(name, "estimate", estimate), deps)
  reference = _finite(name, "reference", reference)
  reference = _check_values(
      reference, lambda t, m: tf.debugging.assert_none_equal(
          t, tf.zeros([], t.dtype), message=m),
      f"{name}: `reference` must have no zero entries (the error is relative to it).")
  return tf.reduce_mean(tf.abs(estimate - reference) / tf.abs(reference))
