"""Keras callbacks: a tqdm progress bar, the temperature schedule of EnD^2, and a loud
stop on a non-finite loss.

#### References

[1]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
"""

import numpy as np
from tqdm.auto import tqdm

from tfp_distill._keras import keras

__all__ = ["NonFiniteLossError", "ProgressBar", "StopOnNonFiniteLoss",
           "TemperatureAnnealing", "annealed_temperature"]


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


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf loss (or gradient); the message says where and why."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
  """Stops training at the first batch whose loss is NaN or Inf, and says where.

  Unlike `keras.callbacks.TerminateOnNaN` it keeps the place (`where`: (epoch, batch,
  loss), 0-based) and, when the model is a `td.Distiller`, the batch's statistics
  (`details`: `Distiller.nonfinite_report()`: the step, how many examples were
  non-finite and the first of them, the inputs', targets' and gradient's ranges), and
  `message()` says all of it in one paragraph. With `raise_error=True` it raises
  `NonFiniteLossError` at once, so code after `fit` (a `save`) does not run; otherwise
  the caller decides (in `tfp-distill distill`: nothing is saved). `td.Distiller.fit`
  adds one with `raise_error=True` by itself. Checking every batch reads one value back
  from the device per `steps_per_execution` group.
  """

  def __init__(self, raise_error=False):
    super().__init__()
    self.raise_error = bool(raise_error)
    self.where = None
    self.details = None
    self.epoch = 0
    self._first_step = 0

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch
    counter = getattr(self.model, "_train_counter", None)
    self._first_step = int(counter.numpy()) if counter is not None else 0

  def on_train_batch_end(self, batch, logs=None):
    report = getattr(self.model, "nonfinite_report", None)
    details = report() if callable(report) else None
    loss = (logs or {}).get("loss")
    if details is None and (loss is None or np.isfinite(loss)):
      return
    if details is not None:
      self.details = details
      batch = details["step"] - self._first_step
      if not np.isfinite(details["loss"]) or loss is None:
        loss = details["loss"]
    self.where = (self.epoch, int(batch), float(loss))
    self.model.stop_training = True
    if self.raise_error:
      raise NonFiniteLossError(self.message())

  def message(self):
    """One paragraph saying where the loss became non-finite (None if it did not)."""
    if self.where is None:
      return None
    epoch, batch, value = self.where
    text = f"The training loss became {value} at epoch {epoch + 1}, batch {batch + 1}."
    d = self.details
    if d is None:
      return text
    rows = (f"{d['nonfinite_examples']} of {d['batch_size']} per-example losses "
            f"non-finite" + (f", the first at row {d['first_nonfinite_example']}"
                             if d["first_nonfinite_example"] >= 0 else ""))
    stats = "; ".join(
        f"{name} min {d[key + '_min']:.4g}, max {d[key + '_max']:.4g}, mean |.| "
        f"{d[key + '_mean_abs']:.4g}, {d[key + '_nonfinite']} non-finite"
        for name, key in (("inputs", "input"), ("targets", "target")))
    if np.isfinite(d["loss"]):   # a multi-replica step: the record is the first replica's
      rows = (f"(the statistics are of the first replica's share, whose loss "
              f"{d['loss']:.4g} was finite) " + rows)
    lr = _learning_rate(self.model)
    return (f"{text[:-1]} (step {d['step'] + 1}): {rows}; {stats}; gradient norm "
            f"{d['gradient_norm']:.4g} over its finite entries, {d['gradient_nonfinite']} "
            f"non-finite" + (f"; learning rate {lr:.4g}" if lr is not None else "")
            + (". That step's update and any after it were not applied: the student keeps "
               "the weights it had before it." if d.get("update") == "skipped" else
               ". That step and any after it were applied with zero gradients: the "
               "student's weights stay finite.")
            + " Lower the learning rate or check those inputs.")


def _learning_rate(model):
  """The optimizer's current learning rate as a float, or None."""
  try:
    return float(np.asarray(model.optimizer.learning_rate))
  except Exception:  # pylint: disable=broad-except
    return None
