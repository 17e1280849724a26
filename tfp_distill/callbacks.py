"""Keras callbacks: a tqdm progress bar, and the temperature schedule of EnD^2.

#### References

[1]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
"""

import numpy as np
from tqdm.auto import tqdm

from tfp_distill._keras import keras

__all__ = ["ProgressBar", "StopOnNonFiniteLoss", "TemperatureAnnealing",
           "annealed_temperature"]


@keras.utils.register_keras_serializable(package="tfp_distill")
class ProgressBar(keras.callbacks.Callback):
  """One tqdm bar over epochs, showing the latest logs (loss, metrics).

  Args:
    description: str, the bar's label.
    disable: bool, turn the bar off (e.g. in tests).
    leave: bool, keep the finished bar on screen.
  """

  def __init__(self, description="training", disable=False, leave=True):
    super().__init__()
    self.description = description
    self.disable = disable
    self.leave = leave
    self._bar = None

  def on_train_begin(self, logs=None):
    self._bar = tqdm(total=self.params.get("epochs"), desc=self.description, unit="epoch",
                     disable=self.disable, leave=self.leave, dynamic_ncols=True)

  def on_epoch_end(self, epoch, logs=None):
    if logs:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
    self._bar.update(1)

  def on_train_end(self, logs=None):
    self._bar.close()

  def get_config(self):
    return {"description": self.description, "disable": self.disable, "leave": self.leave}

  @classmethod
  def from_config(cls, config):
    return cls(**config)


def annealed_temperature(epoch, initial=10.0, final=1.0, start_epoch=0, end_epoch=30):
  """The schedule of `TemperatureAnnealing` at a (0-based) epoch.

  ```none
  T(epoch) = initial                                  epoch <= start_epoch
           = initial + (final - initial) * (epoch - start_epoch) / (end_epoch - start_epoch)
           = final                                    epoch >= end_epoch
  ```
  """
  if epoch <= start_epoch:
    return float(initial)
  if epoch >= end_epoch:
    return float(final)
  fraction = (epoch - start_epoch) / (end_epoch - start_epoch)
  return float(initial + (final - initial) * fraction)


def _temperature_losses(loss):
  """The losses with a `temperature` variable inside a compiled loss (or dict/list)."""
  if loss is None:
    return []
  if isinstance(loss, dict):
    loss = list(loss.values())
  if isinstance(loss, (list, tuple)):
    return [l for item in loss for l in _temperature_losses(item)]
  return [loss] if hasattr(getattr(loss, "temperature", None), "assign") else []


@keras.utils.register_keras_serializable(package="tfp_distill")
class TemperatureAnnealing(keras.callbacks.Callback):
  """EnD^2's temperature schedule: constant, then linear decay to `final` ([1], sec 4).

  Sets `loss.temperature` (a `tf.Variable`) at the start of every epoch to
  `annealed_temperature(epoch, ...)`; the compiled training step reads the variable, so
  nothing retraces. With `loss=None` it drives every loss of the model being trained that
  has a `temperature` variable (`losses.DirichletNLL`, `losses.KnowledgeDistillation`).
  The current temperature is added to the epoch logs as "temperature".

  Args:
    loss: a loss with a `temperature` variable, or None (the model's compiled loss).
    initial: float, temperature up to `start_epoch`.
    final: float, temperature from `end_epoch` on (1.0: the members' own probabilities).
    start_epoch: int, last epoch at `initial` (0-based).
    end_epoch: int > start_epoch, first epoch at `final`.

  Raises:
    ValueError: for temperatures <= 0 or end_epoch <= start_epoch; at the start of training
      if no loss with a temperature is found.
  """

  def __init__(self, loss=None, initial=10.0, final=1.0, start_epoch=0, end_epoch=30):
    super().__init__()
    if not (initial > 0 and final > 0 and np.isfinite(initial) and np.isfinite(final)):
      raise ValueError(f"Temperatures must be finite and > 0, got initial={initial}, "
                       f"final={final}.")
    if int(end_epoch) <= int(start_epoch):
      raise ValueError(f"end_epoch ({end_epoch}) must be > start_epoch ({start_epoch}).")
    if isinstance(loss, dict):
      loss = keras.losses.deserialize(loss)
    self.loss = loss
    self.initial = float(initial)
    self.final = float(final)
    self.start_epoch = int(start_epoch)
    self.end_epoch = int(end_epoch)

  def _targets(self):
    if self.loss is not None:
      found = _temperature_losses(self.loss)
    else:
      compiled = getattr(self.model, "compiled_loss", None)
      found = (_temperature_losses(getattr(self.model, "distill_loss", None))  # Distiller
               or _temperature_losses(getattr(self.model, "loss", None)))
      if not found and compiled is not None:
        found = _temperature_losses(getattr(compiled, "_user_losses", None))
    if not found:
      raise ValueError("TemperatureAnnealing found no loss with a `temperature` variable "
                       "(td.losses.DirichletNLL or KnowledgeDistillation); pass it as "
                       "`loss`.")
    return found

  def temperature(self, epoch):
    return annealed_temperature(epoch, self.initial, self.final, self.start_epoch,
                                self.end_epoch)

  def on_epoch_begin(self, epoch, logs=None):
    value = self.temperature(epoch)
    for loss in self._targets():
      loss.temperature.assign(value)

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["temperature"] = float(self._targets()[0].temperature.numpy())

  def get_config(self):
    return {"loss": None if self.loss is None else keras.losses.serialize(self.loss),
            "initial": self.initial, "final": self.final,
            "start_epoch": self.start_epoch, "end_epoch": self.end_epoch}

  @classmethod
  def from_config(cls, config):
    return cls(**config)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
  """Stops training at the first batch whose loss is NaN or Inf, and records where.

  Unlike `keras.callbacks.TerminateOnNaN` it keeps the place (`where`: (epoch, batch,
  loss), 0-based) so the caller can say it, and the caller decides what to save: nothing,
  in `tfp-distill distill`, so no NaN weights are ever written. Checking every batch
  reads the loss back from the device once per step.
  """

  def __init__(self):
    super().__init__()
    self.where = None
    self.epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not np.isfinite(loss):
      self.where = (self.epoch, batch, float(loss))
      self.model.stop_training = True

  def message(self):
    """One line saying where the loss became non-finite (None if it did not)."""
    if self.where is None:
      return None
    epoch, batch, value = self.where
    return f"The training loss became {value} at epoch {epoch + 1}, batch {batch + 1}."
