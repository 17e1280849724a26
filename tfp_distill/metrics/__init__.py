"""Evaluation metrics: accuracy, predictive likelihoods and uncertainty quality.

Pure functions of tensors, plus one streaming Keras metric (`ExpectedCalibrationError`)
that wraps them. Every function accepts NumPy arrays, Python lists or
`tf.Tensor`s, returns `tf.Tensor`s, and works both eagerly and inside `tf.function`. The
metrics are those used to compare a distilled student with its ensemble in [2]; every
name below is importable from `tfp_distill.metrics`, and lives in:

* `regression`: accuracy and likelihood, `rmse`, `gaussian_nll` (a single Gaussian
  predictive, e.g. a student's), `gaussian_mixture_nll` (an equally weighted mixture,
  e.g. an ensemble's predictive); uncertainty quality, `sparsification_curve`,
  `sparsification_error` and `ause`, the area under the sparsification error curve of
  [1]; agreement of two curves (e.g. a student's and an ensemble's uncertainty curves),
  `pearson_correlation`, `spearman_correlation` (Pearson of average ranks),
  `mean_relative_error`;
* `classification`, from integer labels [batch] and class probabilities
  [batch, classes]: `accuracy`, `categorical_nll` (probabilities clipped below at
  `epsilon`), `categorical_nll_from_logits`, `brier_score`, `expected_calibration_error`
  and `calibration_curve` (equal-width (lower, upper] bins or quantile bins) [3], and the
  streaming Keras metric `ExpectedCalibrationError`;
* `detection`, ranking with binary labels (1 = positive) and scores (higher = more
  likely positive): `auroc` (ties count 1/2, the Mann-Whitney U statistic), `aupr`
  (average precision), `roc_curve`, and the wrappers `misclassification_detection`
  (positive = misclassified, score = uncertainty) and `ood_detection` (positive =
  out-of-distribution) [4];
* `fidelity`: `uncertainty_fidelity`, how faithfully one model's per-example
  uncertainties follow another's (correlations, size ratio, relative errors defined
  where the reference is zero): what reports compare a student with its ensemble by;
* `temperature`, ensemble-size equivalents: `optimal_temperature`, `calibrated_nll` and
  `cross_validated_nll` (temperature scaling of logits or log-probabilities, the latter
  with the test-time cross-validation of [5]), `deep_ensemble_equivalent` (DEE of [5]);
  these summarise a few scalars and work in NumPy float64, returning Python floats;
* `_checks` (private): the input conversion and validation shared by the above.

Dtypes: all floating inputs of one call are converted to a common float dtype, which is
the widest float dtype among the arguments that are `tf.Tensor`s, else the widest among the
NumPy arrays, else `tf.float32` (Python floats and integer arrays become `tf.float32`).
Outputs have that dtype. Class labels are integers (or integer-valued floats, or bools)
and do not take part in the dtype; ranking scores and uncertainties keep their own dtype
for sorting (int64 for integer scores) and only the float outputs follow the rule above.
Calibration sums and ranking counts are accumulated in float64 / int64 and cast at the end.

Validation: shape errors that can be seen statically (mismatched sizes, wrong rank, empty
input, bad `num_fractions` or `num_bins`) raise `ValueError` at call (or trace) time; with
statically unknown sizes inside `tf.function` the same checks run as graph assertions and raise
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

from tfp_distill.metrics.classification import (
    ExpectedCalibrationError, accuracy, brier_score, calibration_curve, categorical_nll,
    categorical_nll_from_logits, expected_calibration_error)
from tfp_distill.metrics.fidelity import uncertainty_fidelity
from tfp_distill.metrics.detection import (
    aupr, auroc, misclassification_detection, ood_detection, roc_curve)
from tfp_distill.metrics.regression import (
    ause, gaussian_mixture_nll, gaussian_nll, mean_relative_error, pearson_correlation,
    rmse, sparsification_curve, sparsification_error, spearman_correlation)
from tfp_distill.metrics.temperature import (
    calibrated_nll, cross_validated_nll, deep_ensemble_equivalent, optimal_temperature)

# Spelled out (not summed from the modules) so that pyflakes and the docs see it.
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
    "uncertainty_fidelity",
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
