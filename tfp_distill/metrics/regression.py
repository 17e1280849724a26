"""Regression metrics: accuracy, predictive likelihood and uncertainty quality.

`rmse`, `gaussian_nll` (a single Gaussian predictive, e.g. a student's),
`gaussian_mixture_nll` (an equally weighted mixture, e.g. an ensemble's predictive);
`sparsification_curve`, `sparsification_error` and `ause`, the area under the
sparsification error curve of [1]; and the agreement of two curves (e.g. a student's and
an ensemble's uncertainty curves), `pearson_correlation`, `spearman_correlation` (Pearson
of average ranks) and `mean_relative_error`, as used in [2].

#### References

[1]: Eddy Ilg, Ozgun Cicek, Silvio Galesso, Aaron Klein, Osama Makansi, Frank Hutter,
     Thomas Brox. Uncertainty Estimates and Multi-Hypotheses Networks for Optical Flow.
     ECCV 2018. arXiv:1802.07095.

[2]: Jakob Lindqvist, Amanda Olmin, Fredrik Lindsten, Lennart Svensson. A general framework
     for ensemble distribution distillation. MLSP 2020. arXiv:2002.11531.
"""

import numpy as np
import tensorflow as tf

from tfp_distill.metrics._checks import (
    _check_nonempty, _check_num_fractions, _check_rank, _check_same_shape,
    _check_shapes_equal, _check_values, _finite, _positive, _shape_str, _to_float,
    _with_deps)

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
]

_LOG_2PI = float(np.log(2.0 * np.pi))


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
