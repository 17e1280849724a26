"""Evaluation metrics: accuracy, predictive likelihoods and uncertainty quality.

Pure functions of tensors, plus one streaming Keras metric (`ExpectedCalibrationError`)
that wraps them. Every function accepts NumPy arrays, Python lists or
`tf.Tensor`s, returns `tf.Tensor`s, and works both eagerly and inside `tf.function`. The
metrics are those used to compare a distilled student with its ensemble in [2]:

* accuracy and likelihood: `rmse`, `gaussian_nll` (a single Gaussian predictive, e.g. a
  student's), `gaussian_mixture_nll` (an equally weighted mixture, e.g. an ensemble's
  predictive);
* uncertainty quality: `sparsification_curve`, `sparsification_error` and `ause`, the area
  under the sparsification error curve of [1];
* agreement of two curves (e.g. a student's and an ensemble's uncertainty curves):
  `pearson_correlation`, `spearman_correlation` (Pearson of average ranks),
  `mean_relative_error`;
* classification, from integer labels [batch] and class probabilities [batch, classes]:
  `accuracy`, `categorical_nll` (probabilities clipped below at `epsilon`),
  `categorical_nll_from_logits`, `brier_score`, `expected_calibration_error` and
  `calibration_curve` (equal-width (lower, upper] bins or quantile bins) [3], and the
  streaming Keras metric `ExpectedCalibrationError`;
* ranking and detection with binary labels (1 = positive) and scores (higher = more
  likely positive): `auroc` (ties count 1/2, the Mann-Whitney U statistic), `aupr`
  (average precision), `roc_curve`, and the wrappers `misclassification_detection`
  (positive = misclassified, score = uncertainty) and `ood_detection` (positive =
  out-of-distribution) [4];
* ensemble-size equivalents: `optimal_temperature`, `calibrated_nll` and
  `cross_validated_nll` (temperature scaling of logits or log-probabilities, the latter
  with the test-time cross-validation of [5]), `deep_ensemble_equivalent` (DEE of [5]); these
  summarise a few scalars and work in NumPy float64, returning Python floats.

Dtypes: all floating inputs of one call are converted to a common float dtype, which is
the widest float dtype among the arguments that are `tf.Tensor`s, else the widest among the
NumPy arrays, else `tf.float32` (Python floats and integer arrays become `tf.float32`).
Outputs have that dtype. Class labels are integers (or integer-valued floats, or bools)
and do not take part in the dtype; ranking scores and uncertainties keep their own dtype
for sorting (int64 for integer scores) and only the float outputs follow the rule above.
Calibration sums and ranking counts are accumulated in float64 / int64 and cast at the end.

Validation: shape errors that can be seen statically (mismatched sizes, wrong rank, empty
input, bad `num_fractions` or `num_bins`) raise `ValueError` at call (or trace) time; with statically
unknown sizes inside `tf.function` the same checks run as graph assertions and raise
`tf.errors.InvalidArgumentError`. Value checks (NaN/Inf, non-positive variances, negative
errors, zero reference values) raise `ValueError` when executing eagerly and
`tf.errors.InvalidArgumentError` when run inside a graph. The classification value
checks are: labels are integers in [0, classes) (binary labels: 0 or 1, with both classes
present), probabilities are finite and in [0, 1] (exact 0 and 1 are valid), logits are
finite, scores have no NaN.

#### References

[1]: Eddy Ilg, Ozgun Cicek, Silvio Galesso, Aaron Klein, Osama Makansi, Frank Hutter,
     Thomas Brox. Uncertainty Estimates and Multi-Hypotheses Networks for Optical Flow.
     ECCV 2018. arXiv:1802.07095.

[2]: Jakob Lindqvist, Amanda Olmin, Fredrik Lindsten, Lennart Svensson. A general framework
     for ensemble distribution distillation. MLSP 2020. arXiv:2002.11531.

[3]: Chuan Guo, Geoff Pleiss, Yu Sun, Kilian Q. Weinberger. On Calibration of Modern
     Neural Networks. ICML 2017. arXiv:1706.04599.

[4]: Dan Hendrycks, Kevin Gimpel. A Baseline for Detecting Misclassified and
     Out-of-Distribution Examples in Neural Networks. ICLR 2017. arXiv:1610.02136.

[5]: Arsenii Ashukha, Alexander Lyzhov, Dmitry Molchanov, Dmitry Vetrov. Pitfalls of
     In-Domain Uncertainty Estimation and Ensembling in Deep Learning. ICLR 2020.
     arXiv:2002.06470.
"""

import numbers

import numpy as np
import tensorflow as tf

from tfp_distill import _dtypes
from tfp_distill._keras import keras

__all__ = [
    "rmse",
    "gaussian_nll",
    "gaussian_mixture_nll",
    "sparsification_curve",
    "sparsification_error",
    "ause",
    "pearson_correlation",
    "spearman_correlation",
    "mean_relative_error",
    "accuracy",
    "categorical_nll",
    "categorical_nll_from_logits",
    "brier_score",
    "expected_calibration_error",
    "calibration_curve",
    "ExpectedCalibrationError",
    "roc_curve",
    "auroc",
    "aupr",
    "misclassification_detection",
    "ood_detection",
    "optimal_temperature",
    "calibrated_nll",
    "cross_validated_nll",
    "deep_ensemble_equivalent",
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


def _paired_vectors(name, a, b):
  """a, b as float Tensors [batch] of one shape, batch >= 2, finite (checked)."""
  a, b = _to_float(name, a=a, b=b)
  _check_rank(name, "a", a, (1,), "[batch]")
  deps = _check_same_shape(name, "a", a, "b", b, "[batch]")
  deps += _check_nonempty(name, "a", a, "[batch]", min_size=2)
  return _with_deps(_finite(name, "a", a), deps), _finite(name, "b", b)


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
  a, b = _paired_vectors("pearson_correlation", a, b)
  a = a - tf.reduce_mean(a)
  b = b - tf.reduce_mean(b)
  # Divide by the largest magnitude first: the norm squares its inputs, which overflows
  # from ~1e19 (float32) and underflows below ~1e-19.
  a = tf.math.divide_no_nan(a, tf.reduce_max(tf.abs(a)))
  b = tf.math.divide_no_nan(b, tf.reduce_max(tf.abs(b)))
  a = a / tf.norm(a)
  b = b / tf.norm(b)
  return tf.clip_by_value(tf.reduce_sum(a * b), -1, 1)


def _average_ranks(x):
  """1-based ranks of the entries of x [n], tied entries sharing their mean rank."""
  order = tf.argsort(x, stable=True)
  sorted_x = tf.gather(x, order)
  _, group = tf.unique(sorted_x)            # sorted: one id per run of equal values
  positions = tf.range(1, tf.size(x) + 1, dtype=tf.float64)
  mean_rank = tf.math.unsorted_segment_mean(positions, group, tf.reduce_max(group) + 1)
  ranks_sorted = tf.gather(mean_rank, group)
  return tf.scatter_nd(order[:, None], ranks_sorted, tf.shape(x, out_type=order.dtype))


def spearman_correlation(a, b):
  """Spearman rank correlation of two vectors: the Pearson correlation of their ranks.

  ```none
  rho = pearson_correlation(rank(a), rank(b))
  ```
  with 1-based ascending ranks, tied values getting the mean of the ranks they span (as
  `scipy.stats.spearmanr`). It measures whether two uncertainties order examples alike,
  whatever their scales: e.g. a student's epistemic variance against its ensemble's,
  where a few large values dominate `pearson_correlation`. It is NaN if `a` or `b` is
  constant.

  Args:
    a: float array or Tensor [batch].
    b: float array or Tensor, the same shape as `a` ([batch]).

  Returns:
    rho: float Tensor [], a scalar in [-1, 1] (or NaN), the common dtype of a and b.

  Raises:
    ValueError: as `pearson_correlation`.

  #### References

  [1]: C. Spearman. The proof and measurement of association between two things. The
       American Journal of Psychology, 1904.
  """
  a, b = _paired_vectors("spearman_correlation", a, b)
  rho = pearson_correlation(_average_ranks(a), _average_ranks(b))
  return tf.cast(rho, a.dtype)


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


# ----------------------------------------------------------------------------------------
# Classification: validation helpers.
# ----------------------------------------------------------------------------------------

_BINNINGS = ("equal_width", "quantile")


def _check_num_bins(fn_name, num_bins):
  if isinstance(num_bins, (bool, np.bool_)) or not isinstance(num_bins, numbers.Integral):
    raise TypeError(
        f"{fn_name}: `num_bins` must be a Python int >= 1 (it sets the output shape "
        f"[bins]), got {num_bins!r} of type {type(num_bins).__name__}.")
  if num_bins < 1:
    raise ValueError(
        f"{fn_name}: `num_bins` must be >= 1 (the per-bin outputs have shape [bins] = "
        f"[num_bins]), got {num_bins}.")
  return int(num_bins)


def _check_binning(fn_name, binning):
  if not isinstance(binning, str) or binning not in _BINNINGS:
    raise ValueError(
        f"{fn_name}: `binning` must be 'equal_width' or 'quantile', got {binning!r}.")
  return binning


def _to_labels(fn_name, name, labels):
  """Converts labels to a Tensor of integer, float or bool dtype (no value checks)."""
  try:
    x = tf.convert_to_tensor(labels)
  except (TypeError, ValueError) as e:
    raise TypeError(
        f"{fn_name}: `{name}` must be an integer array or Tensor, got "
        f"{type(labels).__name__}: {e}") from None
  if x.dtype == tf.bool:
    return tf.cast(x, tf.int64)
  if not (x.dtype.is_integer or x.dtype.is_floating):
    raise TypeError(
        f"{fn_name}: `{name}` must hold integer labels, got dtype {x.dtype.name}.")
  return x


def _to_scores(fn_name, **named):
  """Converts score arguments to Tensors of one dtype, kept exact for sorting.

  int64 if every argument is integer (or bool), else the common float dtype of the
  module docstring.
  """
  tensors = []
  for name, value in named.items():
    try:
      x = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as e:
      raise TypeError(
          f"{fn_name}: `{name}` must be a real-valued array or Tensor, got "
          f"{type(value).__name__}: {e}") from None
    if x.dtype == tf.bool:
      x = tf.cast(x, tf.int64)
    if not (x.dtype.is_integer or x.dtype.is_floating):
      raise TypeError(
          f"{fn_name}: `{name}` must be real-valued, got dtype {x.dtype.name}.")
    tensors.append(x)
  if all(x.dtype.is_integer for x in tensors):
    return [tf.cast(x, tf.int64) for x in tensors]
  dtype = _float_dtype(named.values())
  return [tf.cast(x, dtype) if x.dtype != dtype else x for x in tensors]


def _not_nan(fn_name, name, x):
  """Value check that a float Tensor has no NaN (+-inf are allowed: they sort fine)."""
  if not x.dtype.is_floating:
    return x
  return _check_values(
      x, lambda t, m: tf.debugging.assert_equal(
          tf.reduce_any(tf.math.is_nan(t)), False, message=m),
      f"{fn_name}: `{name}` must not contain NaN values.")


def _check_class_labels(fn_name, name, labels, classes, classes_str, probs_name):
  """Value checks of class indices; returns int64 labels [batch]."""
  if labels.dtype.is_floating:
    labels = _finite(fn_name, name, labels)
    labels = _check_values(
        labels, lambda t, m: tf.debugging.assert_equal(t, tf.round(t), message=m),
        f"{fn_name}: `{name}` must hold integer class indices, but it has non-integer "
        f"values.")
  message = (f"{fn_name}: `{name}` must hold class indices in [0, classes) = "
             f"[0, {classes_str}), the classes of `{probs_name}` [batch, classes]; got a "
             f"label out of range (too many classes in the labels, or fewer columns in "
             f"`{probs_name}` than classes?).")
  labels = _check_values(
      labels, lambda t, m: tf.debugging.assert_non_negative(t, message=m), message)
  labels = _check_values(
      labels, lambda t, m: tf.debugging.assert_less(
          t, tf.cast(classes, t.dtype), message=m), message)
  return tf.cast(labels, tf.int64)


def _classification_inputs(fn_name, labels, probs, probs_name="probs", probabilities=True,
                           labels_name="labels", allow_empty=False):
  """Validates class labels [batch] and probabilities (or logits) [batch, classes].

  Returns:
    labels: int64 Tensor [batch].
    probs: float Tensor [batch, classes], of the float dtype of `probs`.
  """
  (probs,) = _to_float(fn_name, **{probs_name: probs})
  labels = _to_labels(fn_name, labels_name, labels)
  probs_expected = "[batch, classes]"
  _check_rank(fn_name, probs_name, probs, (2,), probs_expected)
  _check_rank(fn_name, labels_name, labels, (1,),
              "[batch] (integer class indices; for one-hot labels pass their argmax)")
  message = (f"{fn_name}: `{labels_name}` [batch] and `{probs_name}` [batch, classes] "
             f"must have the same batch size; got shapes {_shape_str(labels)} and "
             f"{_shape_str(probs)}.")
  deps = _check_shapes_equal(message, labels.shape, probs.shape[:1],
                             lambda: tf.shape(labels), lambda: tf.shape(probs)[:1])
  if not allow_empty:
    deps += _check_nonempty(fn_name, labels_name, labels, "[batch]")
  classes = tf.compat.dimension_value(probs.shape[1])
  classes_message = (f"{fn_name}: `{probs_name}` must have shape [batch, classes] with "
                     f"classes >= 1")
  if classes is not None and classes < 1:
    raise ValueError(f"{classes_message}; got shape {_shape_str(probs)}.")
  if classes is None:
    deps.append(tf.debugging.assert_positive(tf.shape(probs)[1],
                                             message=classes_message + "."))
  labels = _with_deps(labels, deps)
  probs = _with_deps(probs, deps)
  labels = _check_class_labels(
      fn_name, labels_name, labels, classes if classes is not None else tf.shape(probs)[1],
      str(classes) if classes is not None else "classes", probs_name)
  probs = _finite(fn_name, probs_name, probs)
  if probabilities:
    probs = _check_values(
        probs, lambda t, m: tf.debugging.assert_non_negative(t, message=m),
        f"{fn_name}: `{probs_name}` must hold probabilities in [0, 1], but it has "
        f"negative entries.")
    probs = _check_values(
        probs, lambda t, m: tf.debugging.assert_less_equal(
            t, tf.ones([], t.dtype), message=m),
        f"{fn_name}: `{probs_name}` must hold probabilities in [0, 1], but it has entries "
        f"greater than 1.")
  return labels, probs


def _binary_inputs(fn_name, labels, scores):
  """Validates binary labels [batch] (1 = positive) and real scores [batch]."""
  labels = _to_labels(fn_name, "labels", labels)
  (scores,) = _to_scores(fn_name, scores=scores)
  _check_rank(fn_name, "labels", labels, (1,), "[batch]")
  _check_rank(fn_name, "scores", scores, (1,), "[batch]")
  deps = _check_same_shape(fn_name, "labels", labels, "scores", scores, "[batch]")
  deps += _check_nonempty(fn_name, "labels", labels, "[batch]")
  labels = _with_deps(labels, deps)
  scores = _not_nan(fn_name, "scores", _with_deps(scores, deps))
  labels = _check_values(
      labels, lambda t, m: tf.debugging.assert_equal(
          tf.reduce_all((t == 0) | (t == 1)), True, message=m),
      f"{fn_name}: `labels` must be binary, 0 (negative) or 1 (positive), shape [batch].")
  return tf.cast(labels, tf.int64), scores


# ----------------------------------------------------------------------------------------
# Classification: accuracy, likelihood, Brier score.
# ----------------------------------------------------------------------------------------


def accuracy(labels, probs):
  """Classification accuracy: the fraction of examples whose argmax class is the label.

  ```none
  accuracy = 1/B sum_b [ argmax_k probs_bk == labels_b ]
  ```
  Ties in the argmax go to the lowest class index (as `tf.argmax`).

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    probs: float array or Tensor [batch, classes], predicted class probabilities in
      [0, 1] (rows need not be normalised: only their argmax is used).

  Returns:
    accuracy: float Tensor [], a scalar in [0, 1], the dtype of `probs` (float32 if it is
      not floating).

  Raises:
    ValueError: if `labels` is not [batch] or `probs` is not [batch, classes], the batch
      sizes differ, the batch is empty, `classes` is 0, or (eagerly) a label is not an
      integer in [0, classes) or `probs` has NaN, Inf or entries outside [0, 1].
  """
  labels, probs = _classification_inputs("accuracy", labels, probs)
  correct = tf.equal(tf.argmax(probs, axis=-1), labels)
  return tf.reduce_mean(tf.cast(correct, probs.dtype))


def categorical_nll(labels, probs, epsilon=1e-12):
  """Mean negative log-likelihood of the labels under predicted class probabilities.

  ```none
  nll = - 1/B sum_b log( max(probs_b[labels_b], epsilon) )
  ```
  The probability of the label is clipped below at `epsilon`, so a probability of
  exactly 0 gives the finite value -log(epsilon) (27.6 nats for the default 1e-12)
  instead of +inf. `epsilon` is cast to the dtype of `probs`; `epsilon=0` turns the
  clipping off (a zero probability then gives +inf). For logits, use
  `categorical_nll_from_logits`, which needs no clipping.

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    probs: float array or Tensor [batch, classes], predicted class probabilities in
      [0, 1].
    epsilon: Python float in [0, 1), the floor of the label's probability.

  Returns:
    nll: float Tensor [], a scalar (nats), the dtype of `probs`.

  Raises:
    ValueError: as `accuracy`, or if `epsilon` is not in [0, 1).
  """
  name = "categorical_nll"
  if not isinstance(epsilon, numbers.Real) or not 0 <= epsilon < 1:
    raise ValueError(f"{name}: `epsilon` must be a Python float in [0, 1), got "
                     f"{epsilon!r}.")
  labels, probs = _classification_inputs(name, labels, probs)
  label_probs = tf.gather(probs, labels, axis=1, batch_dims=1)        # [batch]
  label_probs = tf.maximum(label_probs, _dtypes.cast(epsilon, probs.dtype))
  return -tf.reduce_mean(tf.math.log(label_probs))


def categorical_nll_from_logits(labels, logits):
  """Mean negative log-likelihood of the labels under softmax(logits).

  ```none
  nll = - 1/B sum_b log_softmax(logits_b)[labels_b]
  log_softmax(z)_k = z_k - logsumexp_j z_j
  ```
  Computed with `tf.nn.log_softmax`, so it is finite for any finite logits (e.g. +-1e4).

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    logits: float array or Tensor [batch, classes], unnormalised log-probabilities.

  Returns:
    nll: float Tensor [], a scalar (nats), the dtype of `logits`.

  Raises:
    ValueError: if `labels` is not [batch] or `logits` is not [batch, classes], the batch
      sizes differ, the batch is empty, `classes` is 0, or (eagerly) a label is not an
      integer in [0, classes) or `logits` has NaN or Inf.
  """
  labels, logits = _classification_inputs(
      "categorical_nll_from_logits", labels, logits, probs_name="logits",
      probabilities=False)
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  return -tf.reduce_mean(tf.gather(log_probs, labels, axis=1, batch_dims=1))


def brier_score(labels, probs):
  """Brier score: mean squared distance of the probabilities from the one-hot label.

  ```none
  brier = 1/B sum_b sum_k (probs_bk - onehot(labels_b)_k)^2
  ```
  It lies in [0, 2] for normalised probabilities; lower is better.

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    probs: float array or Tensor [batch, classes], predicted class probabilities in
      [0, 1].

  Returns:
    brier: float Tensor [], a scalar, the dtype of `probs`.

  Raises:
    ValueError: as `accuracy`.

  #### References

  [1]: Glenn W. Brier. Verification of forecasts expressed in terms of probability.
       Monthly Weather Review, 78(1), 1950.
  """
  labels, probs = _classification_inputs("brier_score", labels, probs)
  one_hot = tf.one_hot(labels, tf.shape(probs)[1], dtype=probs.dtype)
  return tf.reduce_mean(tf.reduce_sum(tf.math.squared_difference(probs, one_hot), axis=-1))


# ----------------------------------------------------------------------------------------
# Classification: calibration.
# ----------------------------------------------------------------------------------------


def _quantile_edges(confidence, num_bins):
  """The interior quantile bin edges [bins - 1] (inverted-CDF empirical quantiles)."""
  sorted_confidence = tf.sort(confidence)
  n = tf.shape(confidence, out_type=tf.int64)[0]
  b = tf.range(1, num_bins, dtype=tf.int64)
  # ceil(b n / B) - 1 in exact integer arithmetic; in [0, n - 1] for 1 <= b <= B - 1.
  index = (b * n + num_bins - 1) // num_bins - 1
  return tf.gather(sorted_confidence, index)


def _calibration_bins(labels, probs, num_bins, binning, weights=None):
  """Per-bin sums of weights, confidences and correct predictions.

  Args:
    labels: int64 Tensor [batch].
    probs: float Tensor [batch, classes].
    num_bins: Python int >= 1.
    binning: "equal_width" or "quantile".
    weights: None or float64 Tensor [batch].

  Returns:
    counts: [bins], int64 if `weights` is None, else float64 (summed weights).
    confidence_sums: float64 Tensor [bins].
    correct_sums: float64 Tensor [bins].
  """
  confidence = tf.reduce_max(probs, axis=-1)                                 # [batch]
  correct = tf.cast(tf.equal(tf.argmax(probs, axis=-1), labels), tf.float64)
  if binning == "equal_width":
    edges = tf.cast(tf.range(1, num_bins), probs.dtype) / tf.cast(num_bins, probs.dtype)
  else:
    edges = _quantile_edges(confidence, num_bins)
  # Bin b holds edges[b - 1] < confidence <= edges[b] (with edges[-1] = -inf and
  # edges[B - 1] = +inf): the number of interior edges strictly below the confidence.
  bins = tf.searchsorted(edges, confidence, side="left")
  confidence = tf.cast(confidence, tf.float64)
  if weights is None:
    counts = tf.math.unsorted_segment_sum(tf.ones_like(bins, tf.int64), bins, num_bins)
  else:
    counts = tf.math.unsorted_segment_sum(weights, bins, num_bins)
    confidence = confidence * weights
    correct = correct * weights
  return (counts, tf.math.unsorted_segment_sum(confidence, bins, num_bins),
          tf.math.unsorted_segment_sum(correct, bins, num_bins))


def _ece_from_sums(counts, confidence_sums, correct_sums):
  total = tf.reduce_sum(tf.cast(counts, tf.float64))
  return tf.math.divide_no_nan(
      tf.reduce_sum(tf.abs(correct_sums - confidence_sums)), total)


# Shared docstring paragraphs, substituted for the `{binning}` / `{ranking}` lines.
_BINNING_DOC = """
  Confidence is the largest probability, c_b = max_k probs_bk, and a prediction is
  correct if its argmax (ties to the lowest class index) is the label. With
  `binning="equal_width"` the bins are (lower, upper] intervals with edges i / num_bins,
  i = 0..num_bins, each computed in the dtype of `probs`: a confidence exactly equal to
  an edge goes in the lower bin (0.5 is in (0.25, 0.5] for 4 bins) and a confidence of
  exactly 0 goes in the first bin. With `binning="quantile"` the interior edges are the
  empirical quantiles of the B confidences (the inverted-CDF quantile, i.e. the
  ceil(i B / num_bins)-th smallest confidence, i = 1..num_bins-1, which is an actual
  confidence), and bin i is again (edge_{i-1}, edge_i] with the outer edges -inf and
  +inf: without ties the bins hold floor or ceil of B / num_bins examples; equal
  confidences always share a bin, so with ties (e.g. many confidences of exactly 1) some
  bins hold more and some are empty. Per-bin sums are accumulated in float64."""


def expected_calibration_error(labels, probs, num_bins=15, binning="equal_width"):
  """Expected calibration error (ECE) of the top-class confidence.

  ```none
  ECE = sum_i (n_i / B) |acc_i - conf_i|
      = 1/B sum_i | sum_{b in bin i} (correct_b - c_b) |
  ```
  where bin i holds n_i of the B examples, acc_i is the fraction of them classified
  correctly and conf_i their mean confidence. Empty bins contribute 0. 0 is perfect
  calibration; lower is better.

  {binning}

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    probs: float array or Tensor [batch, classes], predicted class probabilities in
      [0, 1].
    num_bins: Python int >= 1, the number of bins. 15 equal-width bins follow [1]; with
      few examples, a few quantile bins (e.g. 4) keep every bin populated.
    binning: "equal_width" or "quantile", see above.

  Returns:
    ece: float Tensor [], a scalar in [0, 1], the dtype of `probs`.

  Raises:
    TypeError: if `num_bins` is not an integer.
    ValueError: as `accuracy`, or if `num_bins` < 1 or `binning` is unknown.

  #### Examples

  ```python
  ece = metrics.expected_calibration_error(labels, probs)              # 15 equal bins
  ece4 = metrics.expected_calibration_error(labels, probs, 4, "quantile")
  ```

  #### References

  [1]: Chuan Guo, Geoff Pleiss, Yu Sun, Kilian Q. Weinberger. On Calibration of Modern
       Neural Networks. ICML 2017. arXiv:1706.04599.

  [2]: Mahdi Pakdaman Naeini, Gregory F. Cooper, Milos Hauskrecht. Obtaining Well
       Calibrated Probabilities Using Bayesian Binning. AAAI 2015.

  [3]: Jeremy Nixon, Mike Dusenberry, Linchuan Zhang, Ghassen Jerfel, Dustin Tran.
       Measuring Calibration in Deep Learning. CVPR Workshops 2019. arXiv:1904.01685.
  """
  name = "expected_calibration_error"
  num_bins = _check_num_bins(name, num_bins)
  binning = _check_binning(name, binning)
  labels, probs = _classification_inputs(name, labels, probs)
  sums = _calibration_bins(labels, probs, num_bins, binning)
  return tf.cast(_ece_from_sums(*sums), probs.dtype)


def calibration_curve(labels, probs, num_bins=15, binning="equal_width"):
  """Per-bin mean confidence, accuracy and count, for reliability diagrams.

  ```none
  confidence_i = 1/n_i sum_{b in bin i} c_b
  accuracy_i   = 1/n_i sum_{b in bin i} correct_b
  count_i      = n_i
  ```
  The bins are those of `expected_calibration_error`, which equals
  sum_i count_i / B |accuracy_i - confidence_i|. Empty bins have count 0 and confidence
  and accuracy 0 (not NaN): mask them with `count > 0` before plotting.

  {binning}

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    probs: float array or Tensor [batch, classes], predicted class probabilities in
      [0, 1].
    num_bins: Python int >= 1, the number of bins.
    binning: "equal_width" or "quantile".

  Returns:
    confidence: float Tensor [bins], the mean confidence per bin, the dtype of `probs`.
    accuracy: float Tensor [bins], the accuracy per bin, the dtype of `probs`.
    count: int64 Tensor [bins], the number of examples per bin (sums to B).

  Raises:
    TypeError: if `num_bins` is not an integer.
    ValueError: as `expected_calibration_error`.

  #### References

  [1]: Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
       arXiv:1706.04599.
  """
  name = "calibration_curve"
  num_bins = _check_num_bins(name, num_bins)
  binning = _check_binning(name, binning)
  labels, probs = _classification_inputs(name, labels, probs)
  counts, confidence_sums, correct_sums = _calibration_bins(labels, probs, num_bins,
                                                            binning)
  n = tf.cast(counts, tf.float64)
  return (tf.cast(tf.math.divide_no_nan(confidence_sums, n), probs.dtype),
          tf.cast(tf.math.divide_no_nan(correct_sums, n), probs.dtype), counts)


for _fn in (expected_calibration_error, calibration_curve):
  if _fn.__doc__:   # None under `python -OO`.
    _fn.__doc__ = _fn.__doc__.replace("  {binning}", _BINNING_DOC[1:])


# ----------------------------------------------------------------------------------------
# Classification: ranking metrics (AUROC, AUPR) and detection.
# ----------------------------------------------------------------------------------------


def _ranked_counts(positive, scores):
  """Cumulative positives and negatives at every distinct threshold.

  Args:
    positive: int64 Tensor [batch] of 0/1.
    scores: Tensor [batch], int64 or float.

  Returns:
    tps, fps: int64 Tensors [thresholds + 1]: the numbers of positives and negatives
      with score >= t for each distinct score t in descending order, after a leading 0
      (the threshold +inf, nothing predicted positive).
  """
  order = tf.argsort(scores, direction="DESCENDING", stable=True)
  sorted_scores = tf.gather(scores, order)
  sorted_positive = tf.gather(positive, order)
  tps = tf.cumsum(sorted_positive)
  fps = tf.cumsum(1 - sorted_positive)
  # Keep the last position of every run of equal scores: tied examples enter together.
  last = tf.concat([tf.not_equal(sorted_scores[1:], sorted_scores[:-1]), [True]], axis=0)
  zero = tf.zeros([1], tf.int64)
  return (tf.concat([zero, tf.boolean_mask(tps, last)], axis=0),
          tf.concat([zero, tf.boolean_mask(fps, last)], axis=0))


def _class_totals(tps, fps, message):
  """(positives, negatives), int64 scalars, checked to be both > 0."""
  totals = _check_values(tf.stack([tps[-1], fps[-1]]),
                         lambda t, m: tf.debugging.assert_positive(t, message=m), message)
  return totals[0], totals[1]


def _auroc_from_counts(tps, fps, positives, negatives):
  # Trapezoid rule in integer counts: exact, and ties get credit 1/2.
  twice_area = tf.reduce_sum((fps[1:] - fps[:-1]) * (tps[1:] + tps[:-1]))
  return tf.cast(twice_area, tf.float64) / (
      2.0 * tf.cast(positives, tf.float64) * tf.cast(negatives, tf.float64))


def _aupr_from_counts(tps, fps, positives):
  tps64, fps64 = tf.cast(tps, tf.float64), tf.cast(fps, tf.float64)
  precision = tps64[1:] / (tps64[1:] + fps64[1:])   # every threshold predicts >= 1.
  return tf.reduce_sum((tps64[1:] - tps64[:-1]) * precision) / tf.cast(positives,
                                                                      tf.float64)


def _one_class_message(fn_name):
  return (f"{fn_name}: `labels` must contain both classes (at least one positive, 1, and "
          f"one negative, 0); with only one class present the metric is undefined.")


_RANKING_DOC = """
  Examples are ranked by score, higher = more likely positive; only the order of the
  scores matters, they keep their own dtype for sorting (integer or float; +-inf are
  allowed, NaN is not). Examples with equal scores pass a threshold together (one point
  per distinct score)."""


def roc_curve(labels, scores):
  """Receiver operating characteristic curve: false and true positive rates.

  ```none
  fpr_t = #{negatives with score >= t} / #negatives
  tpr_t = #{positives with score >= t} / #positives
  ```
  for each distinct score t in descending order, after the point (0, 0) (threshold
  +inf); the last point is (1, 1). The trapezoid area under (fpr, tpr) is `auroc`.

  {ranking}

  Args:
    labels: int (or bool) array or Tensor [batch], 1 = positive, 0 = negative.
    scores: real array or Tensor [batch], higher = more likely positive.

  Returns:
    fpr: float Tensor [thresholds + 1], non-decreasing from 0 to 1.
    tpr: float Tensor [thresholds + 1], non-decreasing from 0 to 1. Both have the float
      dtype of `scores` (float32 for integer scores); thresholds is the number of distinct
      scores.

  Raises:
    ValueError: if `labels` or `scores` is not [batch], their sizes differ, the batch is
      empty, or (eagerly) a label is not 0 or 1, only one class is present, or `scores`
      has NaN.
  """
  name = "roc_curve"
  dtype = _float_dtype([scores])
  labels, scores = _binary_inputs(name, labels, scores)
  tps, fps = _ranked_counts(labels, scores)
  positives, negatives = _class_totals(tps, fps, _one_class_message(name))
  fpr = tf.cast(fps, tf.float64) / tf.cast(negatives, tf.float64)
  tpr = tf.cast(tps, tf.float64) / tf.cast(positives, tf.float64)
  return tf.cast(fpr, dtype), tf.cast(tpr, dtype)


def auroc(labels, scores):
  """Area under the ROC curve, with ties counted as 1/2.

  ```none
  auroc = 1 / (P N) sum_{i positive} sum_{j negative} ( [s_i > s_j] + 1/2 [s_i == s_j] )
        = (R_+ - P (P + 1) / 2) / (P N)
  ```
  the probability that a random positive scores above a random negative; P and N are
  the numbers of positives and negatives, and R_+ is the sum of the positives' ranks
  among all scores (ascending, tied scores get their average rank), so that
  auroc = U / (P N) with U the Mann-Whitney U statistic of the positives. It equals the
  trapezoid area under `roc_curve`, which is how it is computed (exactly, in integer
  counts). 0.5 is chance; 1 is a perfect ranking.

  {ranking}

  Args:
    labels: int (or bool) array or Tensor [batch], 1 = positive, 0 = negative.
    scores: real array or Tensor [batch], higher = more likely positive.

  Returns:
    auroc: float Tensor [], a scalar in [0, 1], the float dtype of `scores` (float32 for
      integer scores).

  Raises:
    ValueError: as `roc_curve` (in particular if only one class is present).

  #### References

  [1]: H. B. Mann, D. R. Whitney. On a Test of Whether one of Two Random Variables is
       Stochastically Larger than the Other. Annals of Mathematical Statistics, 1947.

  [2]: Dan Hendrycks, Kevin Gimpel. A Baseline for Detecting Misclassified and
       Out-of-Distribution Examples in Neural Networks. ICLR 2017. arXiv:1610.02136.
  """
  name = "auroc"
  dtype = _float_dtype([scores])
  labels, scores = _binary_inputs(name, labels, scores)
  tps, fps = _ranked_counts(labels, scores)
  positives, negatives = _class_totals(tps, fps, _one_class_message(name))
  return tf.cast(_auroc_from_counts(tps, fps, positives, negatives), dtype)


def aupr(labels, scores):
  """Area under the precision-recall curve, as average precision.

  ```none
  aupr = sum_n (R_n - R_{n-1}) P_n
  P_n  = TP_n / (TP_n + FP_n),   R_n = TP_n / #positives,   R_0 = 0
  ```
  where n runs over the distinct scores in descending order and TP_n, FP_n count the
  positives and negatives with score >= the n-th distinct score. This is the
  step-function (not trapezoid) area, the definition of scikit-learn's
  `average_precision_score`; chance level is the fraction of positives.

  {ranking}

  Args:
    labels: int (or bool) array or Tensor [batch], 1 = positive, 0 = negative.
    scores: real array or Tensor [batch], higher = more likely positive.

  Returns:
    aupr: float Tensor [], a scalar in [0, 1], the float dtype of `scores` (float32 for
      integer scores).

  Raises:
    ValueError: as `roc_curve` (in particular if only one class is present).

  #### References

  [1]: Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution
       Examples in Neural Networks. ICLR 2017. arXiv:1610.02136.
  """
  name = "aupr"
  dtype = _float_dtype([scores])
  labels, scores = _binary_inputs(name, labels, scores)
  tps, fps = _ranked_counts(labels, scores)
  positives, _ = _class_totals(tps, fps, _one_class_message(name))
  return tf.cast(_aupr_from_counts(tps, fps, positives), dtype)


for _fn in (roc_curve, auroc, aupr):
  if _fn.__doc__:
    _fn.__doc__ = _fn.__doc__.replace("  {ranking}", _RANKING_DOC[1:])
del _fn


def misclassification_detection(labels, probs, uncertainty):
  """How well an uncertainty separates misclassified from correct predictions.

  The positive class is "misclassified" (argmax of `probs` != label, ties in the argmax
  to the lowest class index) and the score is `uncertainty`, so a good uncertainty is
  higher on errors:

  ```none
  auroc = auroc(argmax(probs) != labels, uncertainty)
  aupr  = aupr(argmax(probs) != labels, uncertainty)
  ```
  For a confidence (higher = more certain, e.g. the max probability) pass its negative.

  Args:
    labels: int array or Tensor [batch], class indices in [0, classes).
    probs: float array or Tensor [batch, classes], predicted class probabilities in
      [0, 1].
    uncertainty: real array or Tensor [batch], e.g. predictive entropy or mutual
      information; higher = more uncertain. Only its order matters.

  Returns:
    A dict with float Tensors [] (the common float dtype of `probs` and `uncertainty`):
    "auroc" and "aupr" (average precision, see `aupr`).

  Raises:
    ValueError: as `accuracy`; if `uncertainty` is not [batch] or its size differs; or
      (eagerly) if `uncertainty` has NaN or every prediction is correct or every one is
      wrong.

  #### References

  [1]: Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution
       Examples in Neural Networks. ICLR 2017. arXiv:1610.02136.

  [2]: Andrey Malinin, Bruno Mlodozeniec, Mark Gales. Ensemble Distribution
       Distillation. ICLR 2020. arXiv:1905.00076.
  """
  name = "misclassification_detection"
  dtype = _float_dtype([probs, uncertainty])
  labels, probs = _classification_inputs(name, labels, probs)
  (uncertainty,) = _to_scores(name, uncertainty=uncertainty)
  _check_rank(name, "uncertainty", uncertainty, (1,), "[batch]")
  deps = _check_same_shape(name, "labels", labels, "uncertainty", uncertainty, "[batch]")
  uncertainty = _not_nan(name, "uncertainty", _with_deps(uncertainty, deps))
  misclassified = tf.cast(tf.not_equal(tf.argmax(probs, axis=-1), labels), tf.int64)
  tps, fps = _ranked_counts(misclassified, uncertainty)
  positives, negatives = _class_totals(
      tps, fps,
      f"{name}: needs both misclassified and correctly classified examples; every "
      f"prediction is right or every one is wrong, so AUROC/AUPR are undefined.")
  return {"auroc": tf.cast(_auroc_from_counts(tps, fps, positives, negatives), dtype),
          "aupr": tf.cast(_aupr_from_counts(tps, fps, positives), dtype)}


def ood_detection(in_scores, out_scores):
  """How well a score separates out-of-distribution from in-distribution examples.

  Out-of-distribution (OOD) is the positive class and the score is e.g. an uncertainty
  (higher = more likely OOD):

  ```none
  labels = [0] * batch_in + [1] * batch_out,   scores = concat(in_scores, out_scores)
  auroc  = auroc(labels, scores),   aupr = aupr(labels, scores)
  ```
  AUPR depends on the ratio batch_out / batch_in (its chance level).

  Args:
    in_scores: real array or Tensor [batch_in], scores of in-distribution examples.
    out_scores: real array or Tensor [batch_out], scores of OOD examples. The two are
      converted to one dtype (int64 if both are integer, else their common float dtype).

  Returns:
    A dict with float Tensors [] (the common float dtype of the scores, float32 for
    integer scores): "auroc" and "aupr" (average precision, see `aupr`).

  Raises:
    ValueError: if a score array is not 1-D or is empty, or (eagerly) has NaN.

  #### References

  [1]: Hendrycks, Gimpel. A Baseline for Detecting Misclassified and Out-of-Distribution
       Examples in Neural Networks. ICLR 2017. arXiv:1610.02136.

  [2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
       arXiv:1905.00076.
  """
  name = "ood_detection"
  dtype = _float_dtype([in_scores, out_scores])
  in_scores, out_scores = _to_scores(name, in_scores=in_scores, out_scores=out_scores)
  _check_rank(name, "in_scores", in_scores, (1,), "[batch_in]")
  _check_rank(name, "out_scores", out_scores, (1,), "[batch_out]")
  deps = _check_nonempty(name, "in_scores", in_scores, "[batch_in]")
  deps += _check_nonempty(name, "out_scores", out_scores, "[batch_out]")
  in_scores = _not_nan(name, "in_scores", _with_deps(in_scores, deps))
  out_scores = _not_nan(name, "out_scores", _with_deps(out_scores, deps))
  scores = tf.concat([in_scores, out_scores], axis=0)
  labels = tf.concat([tf.zeros_like(in_scores, tf.int64),
                      tf.ones_like(out_scores, tf.int64)], axis=0)
  tps, fps = _ranked_counts(labels, scores)
  positives, negatives = tps[-1], fps[-1]
  return {"auroc": tf.cast(_auroc_from_counts(tps, fps, positives, negatives), dtype),
          "aupr": tf.cast(_aupr_from_counts(tps, fps, positives), dtype)}


# ----------------------------------------------------------------------------------------
# Streaming Keras metric.
# ----------------------------------------------------------------------------------------


@keras.utils.register_keras_serializable(package="tfp_distill")
class ExpectedCalibrationError(keras.metrics.Metric):
  """Streaming expected calibration error with equal-width bins.

  Accumulates, over all `update_state` calls, the per-bin (weighted) counts, sums of
  confidences and sums of correct predictions, and returns

  ```none
  ECE = sum_i | correct_sum_i - confidence_sum_i | / sum_i count_i
  ```
  which for unweighted data is exactly `expected_calibration_error(labels, probs,
  num_bins)` of all the batches concatenated (same (lower, upper] bins, see there). The
  state is float64 (exact counts up to 2^53); the result has the metric's dtype
  (float32). Before any update (or with total weight 0) the result is 0. Empty batches
  are allowed and change nothing.

  Args:
    num_bins: Python int >= 1, the number of equal-width bins on [0, 1].
    from_logits: Python bool; if True, `y_pred` holds logits and is passed through a
      softmax.
    name: str, the metric's name.

  #### Examples

  ```python
  model.compile(loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=[metrics.ExpectedCalibrationError(num_bins=15)])
  ```

  #### References

  [1]: Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
       arXiv:1706.04599.
  """

  def __init__(self, num_bins=15, from_logits=False, name="ece"):
    super().__init__(name=name)
    self.num_bins = _check_num_bins(type(self).__name__, num_bins)
    self.from_logits = bool(from_logits)
    self.bin_counts = self.add_weight(
        name="bin_counts", shape=[self.num_bins], initializer="zeros", dtype=tf.float64)
    self.bin_confidence_sums = self.add_weight(
        name="bin_confidence_sums", shape=[self.num_bins], initializer="zeros",
        dtype=tf.float64)
    self.bin_correct_sums = self.add_weight(
        name="bin_correct_sums", shape=[self.num_bins], initializer="zeros",
        dtype=tf.float64)

  # Plain TensorFlow ops with Python branches on static shapes only: Keras' autograph
  # conversion of update_state would add nothing but a slow first call.
  @tf.autograph.experimental.do_not_convert
  def update_state(self, y_true, y_pred, sample_weight=None):
    """Adds a batch to the per-bin sums.

    Args:
      y_true: int (or integer-valued float) array or Tensor [batch] or [batch, 1],
        class indices in [0, classes).
      y_pred: float array or Tensor [batch, classes]: probabilities in [0, 1], or logits
        if `from_logits`.
      sample_weight: None, or float array or Tensor [], [batch] or [batch, 1];
        non-negative per-example weights.

    Raises:
      ValueError: for shapes or values as in `expected_calibration_error` (an empty
        batch is allowed), or a sample_weight that is not [], [batch] or [batch, 1],
        negative or not finite.
    """
    name = type(self).__name__
    y_true = _to_labels(name, "y_true", y_true)
    if y_true.shape.rank == 2 and tf.compat.dimension_value(y_true.shape[1]) == 1:
      y_true = y_true[:, 0]
    labels, probs = _classification_inputs(
        name, y_true, y_pred, probs_name="y_pred", probabilities=not self.from_logits,
        labels_name="y_true", allow_empty=True)
    if self.from_logits:
      probs = tf.nn.softmax(probs, axis=-1)
    weights = None
    if sample_weight is not None:
      (weights,) = _to_float(name, sample_weight=sample_weight)
      weights = tf.cast(weights, tf.float64)
      if weights.shape.rank == 2 and tf.compat.dimension_value(weights.shape[1]) == 1:
        weights = weights[:, 0]
      _check_rank(name, "sample_weight", weights, (0, 1), "[], [batch] or [batch, 1]")
      if weights.shape.rank == 0:
        weights = tf.fill(tf.shape(labels), weights)
      deps = _check_same_shape(name, "y_true", labels, "sample_weight", weights,
                               "[batch]")
      weights = _finite(name, "sample_weight", _with_deps(weights, deps))
      weights = _check_values(
          weights, lambda t, m: tf.debugging.assert_non_negative(t, message=m),
          f"{name}: `sample_weight` must be non-negative.")
    counts, confidence_sums, correct_sums = _calibration_bins(
        labels, probs, self.num_bins, "equal_width", weights)
    self.bin_counts.assign_add(tf.cast(counts, tf.float64))
    self.bin_confidence_sums.assign_add(confidence_sums)
    self.bin_correct_sums.assign_add(correct_sums)

  def result(self):
    return tf.cast(_ece_from_sums(self.bin_counts, self.bin_confidence_sums,
                                  self.bin_correct_sums), self.dtype)

  def reset_state(self):
    for variable in (self.bin_counts, self.bin_confidence_sums, self.bin_correct_sums):
      variable.assign(tf.zeros_like(variable))

  def get_config(self):
    return {"num_bins": self.num_bins, "from_logits": self.from_logits, "name": self.name}


# ----------------------------------------------------------------------------------------
# Temperature scaling and the deep-ensemble equivalent (DEE).
# ----------------------------------------------------------------------------------------


def _scaled_nll(labels, logits, temperature):
  z = logits / temperature
  z = z - z.max(axis=-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  return float(-log_p[np.arange(len(labels)), labels].mean())


def _check_logits(fn_name, labels, logits):
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or len(labels) != len(logits) or len(labels) == 0:
    raise ValueError(f"{fn_name}: expected labels [batch] and logits [batch, classes] with "
                     f"batch >= 1, got {list(labels.shape)} and {list(logits.shape)}.")
  if labels.min() < 0 or labels.max() >= logits.shape[1]:
    raise ValueError(f"{fn_name}: labels must lie in [0, {logits.shape[1]}).")
  if not np.all(np.isfinite(logits)):
    raise ValueError(f"{fn_name}: logits contain NaN or Inf.")
  return labels, logits


def optimal_temperature(labels, logits, low=0.05, high=20.0, tolerance=1e-4):
  """The temperature T minimising the NLL of softmax(logits / T) (temperature scaling).

  Golden-section search over log T in [log low, log high] (the NLL is unimodal in T for
  logits that are not all equal per row). Pass log-probabilities (e.g. the log of an
  ensemble's mean probabilities) as `logits` to calibrate an ensemble as in [5].

  Args:
    labels: int array [batch].
    logits: float array [batch, classes].
    low, high: float > 0, the search interval.
    tolerance: float, width of the final interval in log T.

  Returns:
    float T.
  """
  labels, logits = _check_logits("optimal_temperature", labels, logits)
  a, b = np.log(low), np.log(high)
  ratio = (np.sqrt(5.) - 1.) / 2.
  c, d = b - ratio * (b - a), a + ratio * (b - a)
  fc, fd = (_scaled_nll(labels, logits, np.exp(v)) for v in (c, d))
  while b - a > tolerance:
    if fc < fd:
      b, d, fd = d, c, fc
      c = b - ratio * (b - a)
      fc = _scaled_nll(labels, logits, np.exp(c))
    else:
      a, c, fc = c, d, fd
      d = a + ratio * (b - a)
      fd = _scaled_nll(labels, logits, np.exp(d))
  return float(np.exp((a + b) / 2.))


def calibrated_nll(labels, logits, temperature=None):
  """NLL of softmax(logits / T) with T from `optimal_temperature` (or the one given).

  [5] fits T on the test set itself ("calibrated log-likelihood"); pass a temperature
  fitted on held-out data to avoid that optimism.

  Args:
    labels: int array [batch].
    logits: float array [batch, classes] (or log-probabilities).
    temperature: None or float > 0.

  Returns:
    float, mean NLL in nats.
  """
  labels, logits = _check_logits("calibrated_nll", labels, logits)
  if temperature is None:
    temperature = optimal_temperature(labels, logits)
  if not temperature > 0:
    raise ValueError(f"calibrated_nll: temperature must be > 0, got {temperature}.")
  return _scaled_nll(labels, logits, float(temperature))


def cross_validated_nll(labels, logits, repeats=5, seed=0):
  """Calibrated NLL with test-time cross-validation, as [5] computes it for DEE.

  ```none
  repeat `repeats` times: split the examples at random into halves A, B;
    NLL(B at the T fitted on A) and NLL(A at the T fitted on B)
  return the mean of the 2 * repeats values (each half weighted by its size)
  ```
  The temperature is never fitted on the examples it is scored on.

  Args:
    labels: int array [batch], batch >= 2.
    logits: float array [batch, classes] (or log-probabilities).
    repeats: int >= 1, random splits.
    seed: int, seeds the splits.

  Returns:
    float, mean NLL in nats.
  """
  labels, logits = _check_logits("cross_validated_nll", labels, logits)
  if len(labels) < 2 or int(repeats) < 1:
    raise ValueError(f"cross_validated_nll: need >= 2 examples and repeats >= 1, got "
                     f"{len(labels)} and {repeats}.")
  rng = np.random.default_rng(seed)
  total = 0.
  for _ in range(int(repeats)):
    order = rng.permutation(len(labels))
    halves = order[:len(order) // 2], order[len(order) // 2:]
    for fit, score in (halves, halves[::-1]):
      t = optimal_temperature(labels[fit], logits[fit])
      total += _scaled_nll(labels[score], logits[score], t) * len(score)
  return float(total / (int(repeats) * len(labels)))


def deep_ensemble_equivalent(nll, ensemble_nlls):
  """DEE [5]: the size of a deep ensemble whose (calibrated) NLL equals `nll`.

  ```none
  ensemble_nlls[l - 1] = NLL of a deep ensemble of l members, l = 1..M
  NLL_DE(l) interpolated linearly between integer sizes
  DEE = min { l >= 1 : NLL_DE(l) <= nll }
  ```
  A method no better than one member has DEE = 1; one better than the largest ensemble
  measured has an unknown DEE > M, returned as `inf`. If the curve is not monotone, the
  first crossing counts.

  Args:
    nll: float, the method's (calibrated) NLL.
    ensemble_nlls: float array [M], NLL of deep ensembles of sizes 1..M.

  Returns:
    float in [1, M], or inf.
  """
  curve = np.asarray(ensemble_nlls, np.float64).reshape(-1)
  if curve.size == 0 or not np.all(np.isfinite(curve)) or not np.isfinite(nll):
    raise ValueError("deep_ensemble_equivalent: need a finite nll and a non-empty finite "
                     f"ensemble_nlls [M], got {nll!r} and {curve.tolist()}.")
  if nll >= curve[0]:
    return 1.0
  for l in range(1, len(curve)):
    lo, hi = curve[l - 1], curve[l]
    if hi <= nll:
      return float(l + (lo - nll) / (lo - hi))   # sizes l and l + 1, linearly
  return float("inf")
