"""Keras 3 metrics: `td.metrics.ExpectedCalibrationError` on a Keras 3 `Metric`.

The functional metrics of `td.metrics` take tensors and arrays of any origin, so they
serve Keras 3 students as they are; only the streaming Keras metric needs a Keras 3 form.
"""

from tfp_distill import _keras3
from tfp_distill import parameterization as parameterization_lib
from tfp_distill.metrics import classification

keras = _keras3.tensorflow_module("td.keras3")

__all__ = ["ExpectedCalibrationError"]


@keras.saving.register_keras_serializable(package="tfp_distill")
class ExpectedCalibrationError(classification.ExpectedCalibrationErrorMixin,
                               keras.metrics.Metric):
  """Streaming ECE with equal-width bins: `td.metrics.ExpectedCalibrationError` in Keras 3.

  `y_pred` may be the output of a `td.keras3` classification head: the metric then reads
  the distribution's mean (the predictive class probabilities of a `DirichletHead` or a
  `CategoricalHead`), as a tf_keras head's output converts to its mean.

  Args: as `td.metrics.ExpectedCalibrationError`.
  """

  def update_state(self, y_true, y_pred, sample_weight=None):
    """Adds a batch to the per-bin sums; a Keras 3 head's output counts as its mean (the
    class probabilities)."""
    if parameterization_lib.is_distribution_like(y_pred):
      y_pred = parameterization_lib.get_distribution(y_pred).mean()
    super().update_state(y_true, y_pred, sample_weight)
