"""Classification metrics: accuracy, likelihood, Brier score and calibration.

From integer labels [batch] and class probabilities [batch, classes]: `accuracy`,
`categorical_nll` (probabilities clipped below at `epsilon`),
`categorical_nll_from_logits`, `brier_score`, `expected_calibration_error` and
`calibration_curve` (equal-width (lower, upper] bins or quantile bins) [1], and the
streaming Keras metric `ExpectedCalibrationError`.

#### References

[1]: Chuan Guo, Geoff Pleiss, Yu Sun, Kilian Q. Weinberger. On Calibration of Modern
     Neural Networks. ICML 2017. arXiv:1706.04599.
"""

import numbers

import tensorflow as tf

from tfp_distill import _dtypes
from tfp_distill._keras import keras
from tfp_distill.metrics._checks import (
    _check_binning, _check_num_bins, _check_rank, _check_same_shape, _check_values,
    _classification_inputs, _finite, _to_float, _to_labels, _with_deps)

__all__ = [
    "accuracy",
    "categorical_nll",
    "categorical_nll_from_logits",
    "brier_score",
    "expected_calibration_error",
    "calibration_curve",
    "ExpectedCalibrationError",
]


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


# Shared docstring paragraph, substituted for the `{binning}` lines.
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
del _fn


# ----------------------------------------------------------------------------------------
# Streaming Keras metric.
# ----------------------------------------------------------------------------------------


class ExpectedCalibrationErrorMixin:
  """`ExpectedCalibrationError` without its Keras base (mixed into a `Metric` of either
  Keras: `td.metrics.ExpectedCalibrationError` for tf_keras,
  `td.keras3.metrics.ExpectedCalibrationError` for Keras 3)."""

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
    """The ECE of all the batches so far (0 before any), in the metric's dtype."""
    return tf.cast(_ece_from_sums(self.bin_counts, self.bin_confidence_sums,
                                  self.bin_correct_sums), self.dtype)

  def reset_state(self):
    """Zeros the per-bin sums."""
    for variable in (self.bin_counts, self.bin_confidence_sums, self.bin_correct_sums):
      variable.assign(tf.zeros_like(variable))

  def get_config(self):
    """The metric's constructor arguments, for Keras serialization."""
    return {"num_bins": self.num_bins, "from_logits": self.from_logits, "name": self.name}


@keras.utils.register_keras_serializable(package="tfp_distill")
class ExpectedCalibrationError(ExpectedCalibrationErrorMixin, keras.metrics.Metric):
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
