"""Keras 3 callbacks: the progress bar, EnD^2's temperature schedule, the non-finite guard
and the resumable-job callbacks (early stopping with saved state, atomic epoch backups,
TensorBoard scalars per epoch).

The `td.callbacks` classes of the same names (one implementation each) on a Keras 3
`Callback`. Keras 3's own callbacks (`EarlyStopping`, `ModelCheckpoint`,
`BackupAndRestore`, ...) work with Keras 3 students and `td.keras3.Distiller` as they are.
"""

from tfp_distill import _keras3
from tfp_distill import callbacks as callbacks_lib

keras = _keras3.tensorflow_module("td.keras3")

__all__ = ["EpochBackup", "EpochSummaries", "NonFiniteLossError", "ProgressBar",
           "ResumableEarlyStopping", "StopOnNonFiniteLoss", "TemperatureAnnealing",
           "annealed_temperature"]

NonFiniteLossError = callbacks_lib.NonFiniteLossError
annealed_temperature = callbacks_lib.annealed_temperature


@keras.saving.register_keras_serializable(package="tfp_distill")
class ProgressBar(callbacks_lib.ProgressBarMixin, keras.callbacks.Callback):
  """One tqdm bar over epochs: `td.callbacks.ProgressBar` in Keras 3.

  Args: as `td.callbacks.ProgressBar`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class TemperatureAnnealing(callbacks_lib.TemperatureAnnealingMixin, keras.callbacks.Callback):
  """EnD^2's temperature schedule: `td.callbacks.TemperatureAnnealing` in Keras 3.

  Drives the `temperature` variable of `td.keras3.losses.DirichletNLL` /
  `KnowledgeDistillation` (given as `loss`, or found in the model's compiled loss or a
  `td.keras3.Distiller`'s loss). Args: as `td.callbacks.TemperatureAnnealing`.
  """

  losses_module = keras.losses


class StopOnNonFiniteLoss(callbacks_lib.StopOnNonFiniteLossMixin, keras.callbacks.Callback):
  """Stops training at the first non-finite loss and says where: the Keras 3 form of
  `td.callbacks.StopOnNonFiniteLoss` (`td.keras3.Distiller.fit` adds one by itself).

  Args: as `td.callbacks.StopOnNonFiniteLoss`.
  """


class ResumableEarlyStopping(callbacks_lib.ResumableEarlyStoppingMixin,
                             keras.callbacks.Callback):
  """Early stopping whose state `EpochBackup` saves: `td.callbacks.ResumableEarlyStopping`
  in Keras 3.

  Args: as `td.callbacks.ResumableEarlyStopping`.
  """


class EpochBackup(callbacks_lib.EpochBackupMixin, keras.callbacks.Callback):
  """The whole training state at every epoch's end, atomically, to resume a run:
  `td.callbacks.EpochBackup` in Keras 3 (a Keras 3 model and optimizer are written by
  `tf.train.Checkpoint` as tf_keras ones are).

  Args: as `td.callbacks.EpochBackup`.
  """


class EpochSummaries(callbacks_lib.EpochSummariesMixin, keras.callbacks.Callback):
  """TensorBoard scalars of every epoch's logs: `td.callbacks.EpochSummaries` in Keras 3.

  Args: as `td.callbacks.EpochSummaries`.
  """
