"""Ranking and detection metrics: ROC curve, AUROC, AUPR, misclassification and OOD.

With binary labels (1 = positive) and scores (higher = more likely positive): `auroc`
(ties count 1/2, the Mann-Whitney U statistic), `aupr` (average precision), `roc_curve`,
and the wrappers `misclassification_detection` (positive = misclassified, score =
uncertainty) and `ood_detection` (positive = out-of-distribution) [1]. Ranks and counts
are accumulated in int64 / float64 and cast at the end.

#### References

[1]: Dan Hendrycks, Kevin Gimpel. A Baseline for Detecting Misclassified and
     Out-of-Distribution Examples in Neural Networks. ICLR 2017. arXiv:1610.02136.
"""

import tensorflow as tf

from tfp_distill.metrics._checks import (
    _binary_inputs, _check_nonempty, _check_rank, _check_same_shape, _check_values,
    _classification_inputs, _float_dtype, _not_nan, _to_scores, _with_deps)

__all__ = [
    "roc_curve",
    "auroc",
    "aupr",
    "misclassification_detection",
    "ood_detection",
]


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


# Shared docstring paragraph, substituted for the `{ranking}` lines.
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
