"""Keras callbacks: a tqdm progress bar, the temperature schedule of EnD^2, and a loud
stop on a non-finite loss.

#### References

[1]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
"""

import json
import os
import re
import shutil

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfp_distill._keras import keras

__all__ = ["EpochBackup", "EpochBackupMixin", "EpochSummaries", "EpochSummariesMixin",
           "NonFiniteLossError", "ProgressBar", "ProgressBarMixin", "ResumableEarlyStopping",
           "ResumableEarlyStoppingMixin", "StopOnNonFiniteLoss", "StopOnNonFiniteLossMixin",
           "TemperatureAnnealing", "TemperatureAnnealingMixin", "annealed_temperature"]


class ProgressBarMixin:
  """`ProgressBar` without its Keras base (mixed into a `Callback` of either Keras)."""

  def __init__(self, description="training", disable=False, leave=True):
    super().__init__()
    self.description = description
    self.disable = disable
    self.leave = leave
    self._bar = None

  def on_train_begin(self, logs=None):
    """Opens the bar over `params["epochs"]` epochs."""
    self._bar = tqdm(total=self.params.get("epochs"), desc=self.description, unit="epoch",
                     disable=self.disable, leave=self.leave, dynamic_ncols=True)

  def on_epoch_end(self, epoch, logs=None):
    """Advances the bar by one epoch and shows the epoch's logs beside it."""
    if logs:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
    self._bar.update(1)

  def on_train_end(self, logs=None):
    """Closes the bar."""
    self._bar.close()

  def get_config(self):
    """The constructor arguments (description, disable, leave), for Keras serialization."""
    return {"description": self.description, "disable": self.disable, "leave": self.leave}

  @classmethod
  def from_config(cls, config):
    """The callback whose constructor arguments are `config`."""
    return cls(**config)


@keras.utils.register_keras_serializable(package="tfp_distill")
class ProgressBar(ProgressBarMixin, keras.callbacks.Callback):
  """One tqdm bar over epochs, showing the latest logs (loss, metrics).

  Args:
    description: str, the bar's label.
    disable: bool, turn the bar off (e.g. in tests).
    leave: bool, keep the finished bar on screen.
  """


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


class TemperatureAnnealingMixin:
  """`TemperatureAnnealing` without its Keras base (mixed into a `Callback` of either
  Keras; `losses_module` is that Keras' `keras.losses`, to (de)serialize `loss`)."""

  losses_module = None

  def __init__(self, loss=None, initial=10.0, final=1.0, start_epoch=0, end_epoch=30):
    super().__init__()
    if not (initial > 0 and final > 0 and np.isfinite(initial) and np.isfinite(final)):
      raise ValueError(f"Temperatures must be finite and > 0, got initial={initial}, "
                       f"final={final}.")
    if int(end_epoch) <= int(start_epoch):
      raise ValueError(f"end_epoch ({end_epoch}) must be > start_epoch ({start_epoch}).")
    if isinstance(loss, dict):
      loss = self.losses_module.deserialize(loss)
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
    """The temperature for `epoch` (0-based; `annealed_temperature`)."""
    return annealed_temperature(epoch, self.initial, self.final, self.start_epoch,
                                self.end_epoch)

  def on_epoch_begin(self, epoch, logs=None):
    """Sets the `temperature` of every loss it drives to the schedule's value for `epoch`."""
    value = self.temperature(epoch)
    for loss in self._targets():
      loss.temperature.assign(value)

  def on_epoch_end(self, epoch, logs=None):
    """Adds the current temperature to the epoch's logs as "temperature"."""
    if logs is not None:
      logs["temperature"] = float(self._targets()[0].temperature.numpy())

  def get_config(self):
    """The constructor arguments (`loss` serialized, or None), for Keras serialization."""
    return {"loss": None if self.loss is None else self.losses_module.serialize(self.loss),
            "initial": self.initial, "final": self.final,
            "start_epoch": self.start_epoch, "end_epoch": self.end_epoch}

  @classmethod
  def from_config(cls, config):
    """The callback whose constructor arguments are `config` (a serialized loss is rebuilt)."""
    return cls(**config)


@keras.utils.register_keras_serializable(package="tfp_distill")
class TemperatureAnnealing(TemperatureAnnealingMixin, keras.callbacks.Callback):
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

  losses_module = keras.losses


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf loss (or gradient); the message says where and why."""


class StopOnNonFiniteLossMixin:
  """`StopOnNonFiniteLoss` without its Keras base (mixed into a `Callback` of either
  Keras)."""

  def __init__(self, raise_error=False):
    super().__init__()
    self.raise_error = bool(raise_error)
    self.where = None
    self.details = None
    self.epoch = 0
    self._first_step = 0

  def on_epoch_begin(self, epoch, logs=None):
    """Keeps the epoch and the model's step count at its start (to number the batches)."""
    self.epoch = epoch
    counter = getattr(self.model, "_train_counter", None)
    self._first_step = int(counter.numpy()) if counter is not None else 0

  def on_train_batch_end(self, batch, logs=None):
    """If the batch's loss is NaN/Inf or the model recorded a non-finite step, keeps `where`
    and `details` and stops training (raises `NonFiniteLossError` with `raise_error`)."""
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


class StopOnNonFiniteLoss(StopOnNonFiniteLossMixin, keras.callbacks.Callback):
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


def _learning_rate(model):
  """The optimizer's current learning rate as a float, or None."""
  try:
    return float(np.asarray(model.optimizer.learning_rate))
  except Exception:  # pylint: disable=broad-except
    return None


class ResumableEarlyStoppingMixin:
  """`ResumableEarlyStopping` without its Keras base (mixed into a `Callback` of either
  Keras)."""

  def __init__(self, monitor="val_loss", patience=5, start_from_epoch=0):
    super().__init__()
    if int(patience) < 1:
      raise ValueError(f"patience must be >= 1, got {patience}.")
    self.monitor = monitor
    self.patience = int(patience)
    self.start_from_epoch = int(start_from_epoch)
    self.state = {"best": None, "best_epoch": None, "wait": 0, "stopped_epoch": None}
    self.best_weights = None

  def get_state(self):
    """(JSON dict, {name: array}) of what a resumed run needs."""
    arrays = {}
    if self.best_weights is not None:
      arrays = {f"best_weight_{i}": w for i, w in enumerate(self.best_weights)}
    return dict(self.state), arrays

  def set_state(self, state, arrays):
    """Restores what `get_state` returned."""
    self.state = dict(state)
    names = sorted((k for k in arrays if k.startswith("best_weight_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    self.best_weights = [arrays[k] for k in names] if names else None

  def on_epoch_end(self, epoch, logs=None):
    """Keeps the lowest monitored value and its weights; stops training after `patience`
    epochs without a lower one."""
    current = (logs or {}).get(self.monitor)
    if current is None or not np.isfinite(current) or epoch < self.start_from_epoch:
      return
    if self.state["best"] is None or current < self.state["best"]:
      self.state.update(best=float(current), best_epoch=int(epoch), wait=0)
      self.best_weights = [np.array(w) for w in self.model.get_weights()]
      return
    self.state["wait"] += 1
    if self.state["wait"] >= self.patience:
      self.state["stopped_epoch"] = int(epoch)
      self.model.stop_training = True

  def restore_best(self, model=None):
    """Sets the best epoch's weights on `model` (default: the model being trained)."""
    if self.best_weights is not None:
      (model or self.model).set_weights(self.best_weights)

  def on_train_end(self, logs=None):
    """Restores the best epoch's weights on the model (`restore_best`)."""
    self.restore_best()


class ResumableEarlyStopping(ResumableEarlyStoppingMixin, keras.callbacks.Callback):
  """Early stopping on a monitored loss whose state can be saved with a backup.

  Keras' `EarlyStopping` keeps its best loss, patience count and best weights in memory
  only, so a run resumed from a backup would forget them (and end with other weights than
  an uninterrupted run). This one exposes them through `get_state` / `set_state`, which
  `EpochBackup` saves in the same atomic step as the model and optimizer: a resumed run
  continues with exactly the state the saved epoch ended with. At the end of training the
  best epoch's weights are restored (`restore_best`).

  Args:
    monitor: str, the logged value to minimise (e.g. "val_loss").
    patience: int >= 1, epochs without a lower value before stopping.
    start_from_epoch: int, epochs (0-based) before the first comparison (e.g. while the
      temperature is annealed the loss is not comparable across epochs).
  """


class EpochBackupMixin:
  """`EpochBackup` without its Keras base (mixed into a `Callback` of either
  Keras)."""

  def __init__(self, folder, stateful=(), fingerprint=None, keep=1):
    super().__init__()
    self.folder = os.fspath(folder)
    self.stateful = list(stateful)
    self.fingerprint = fingerprint
    self.keep = max(1, int(keep))
    self.history = {}
    self.finished = False

  # -- reading ---------------------------------------------------------------------------

  def latest(self):
    """The newest complete epoch folder's path, or None."""
    pointer = os.path.join(self.folder, "latest")
    if os.path.exists(pointer):
      with open(pointer, encoding="utf-8") as f:
        name = f.read().strip()
      if _EPOCH_DIR.fullmatch(name) and os.path.isdir(os.path.join(self.folder, name)):
        return os.path.join(self.folder, name)
    if not os.path.isdir(self.folder):
      return None
    done = sorted(n for n in os.listdir(self.folder) if _EPOCH_DIR.fullmatch(n))
    return os.path.join(self.folder, done[-1]) if done else None

  def check_fingerprint(self):
    """Raises ValueError if the backup was made by another job (names what differs)."""
    from tfp_distill import job_folder
    path = os.path.join(self.folder, "fingerprint.json")
    if self.fingerprint is None:
      return
    if not os.path.exists(path):
      raise ValueError(f"The backup in {self.folder} has no fingerprint.json (made by an "
                       "older version, or not by this job): it cannot be resumed safely. "
                       "Run without --resume to start afresh.")
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    differences = job_folder.fingerprint_differences(saved, self.fingerprint)
    if differences:
      raise ValueError(
          f"--resume: the backup in {self.folder} belongs to another job; it differs in "
          f"{'; '.join(differences)}. Resume with the first run's settings, or run "
          "without --resume to start afresh.")

  def restore(self, model):
    """Loads the newest saved epoch into `model` (built and compiled) and the callbacks.

    Returns:
      int, the first epoch to train (0 when there is nothing to restore). After the
      call, `history` holds the saved epochs' logs and `finished` says whether the saved
      run had already stopped (early stopping or its last epoch).

    Raises:
      ValueError: the fingerprint differs (see `check_fingerprint`).
    """
    self._remove_partial_epochs()
    latest = self.latest()
    if latest is None:
      return 0
    self.check_fingerprint()
    with open(os.path.join(latest, "state.json"), encoding="utf-8") as f:
      state = json.load(f)
    arrays = {}
    if os.path.exists(os.path.join(latest, "arrays.npz")):
      with np.load(os.path.join(latest, "arrays.npz"), allow_pickle=False) as saved:
        arrays = {k: saved[k] for k in saved.files}
    if len(state["callbacks"]) != len(self.stateful):
      raise ValueError(f"The backup in {self.folder} holds the state of "
                       f"{len(state['callbacks'])} callbacks, this run has "
                       f"{len(self.stateful)}: it was made by another job.")
    _build_optimizer(model)
    status = _checkpoint(model).read(os.path.join(latest, "ckpt"))
    status.assert_existing_objects_matched()
    for index, callback in enumerate(self.stateful):
      prefix = f"{index}/"
      callback.set_state(state["callbacks"][index],
                         {k[len(prefix):]: v for k, v in arrays.items()
                          if k.startswith(prefix)})
    self.history = {k: list(v) for k, v in state["history"].items()}
    self.finished = bool(state.get("finished", False))
    return int(state["epoch"]) + 1

  def _remove_partial_epochs(self):
    """Removes epochs whose writing was interrupted (never renamed into place)."""
    if os.path.isdir(self.folder):
      for name in os.listdir(self.folder):
        if _PARTIAL_EPOCH_DIR.fullmatch(name):
          shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)

  # -- writing ---------------------------------------------------------------------------

  def on_train_begin(self, logs=None):
    """Creates the folder, removes interrupted epochs and writes the fingerprint if absent."""
    os.makedirs(self.folder, exist_ok=True)
    self._remove_partial_epochs()
    path = os.path.join(self.folder, "fingerprint.json")
    if self.fingerprint is not None and not os.path.exists(path):
      tmp = f"{path}.tmp-{os.getpid()}"
      with open(tmp, "w", encoding="utf-8") as f:
        json.dump(self.fingerprint, f, indent=1, sort_keys=True)
      os.replace(tmp, path)

  def on_epoch_end(self, epoch, logs=None):
    """Adds the epoch's logs to `history` and saves the epoch (`save`); finished when
    training stops here or this was the last epoch."""
    for key, value in (logs or {}).items():
      self.history.setdefault(key, []).append(float(value))
    finished = bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", 0)
    self.save(epoch, finished)

  def save(self, epoch, finished=False):
    """Writes the state after `epoch` (0-based) atomically (see the class docstring)."""
    name = f"epoch-{int(epoch):06d}"
    tmp = os.path.join(self.folder, f"{name}.tmp-{os.getpid()}")
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)
    os.makedirs(tmp)
    _checkpoint(self.model).write(os.path.join(tmp, "ckpt"))
    states, arrays = [], {}
    for index, callback in enumerate(self.stateful):
      state, parts = callback.get_state()
      states.append(state)
      arrays.update({f"{index}/{k}": np.asarray(v) for k, v in parts.items()})
    if arrays:
      np.savez(os.path.join(tmp, "arrays.npz"), **arrays)
    with open(os.path.join(tmp, "state.json"), "w", encoding="utf-8") as f:
      json.dump({"epoch": int(epoch), "finished": finished, "history": self.history,
                 "callbacks": states}, f)
    target = os.path.join(self.folder, name)
    if os.path.isdir(target):                 # a resumed run redoing a saved epoch
      shutil.rmtree(target)
    os.replace(tmp, target)
    pointer = os.path.join(self.folder, "latest")
    with open(pointer + ".tmp", "w", encoding="utf-8") as f:
      f.write(name)
    os.replace(pointer + ".tmp", pointer)
    done = sorted(n for n in os.listdir(self.folder) if _EPOCH_DIR.fullmatch(n))
    for old in done[:-self.keep]:
      shutil.rmtree(os.path.join(self.folder, old), ignore_errors=True)
    self.finished = finished


class EpochBackup(EpochBackupMixin, keras.callbacks.Callback):
  """Saves the whole training state at every epoch's end, atomically, to resume a run.

  ```none
  folder/fingerprint.json     the job's fingerprint (td.job_folder.job_fingerprint)
  folder/epoch-000004/        the state after epoch 4 (0-based), complete:
      ckpt.*                  model and optimizer variables (tf.train.Checkpoint)
      state.json              epoch, history so far, each stateful callback's state
      arrays.npz              the stateful callbacks' arrays (early stopping's weights)
  folder/latest               "epoch-000004": the newest complete epoch
  ```
  Each epoch is written as `epoch-NNNNNN.tmp-PID` and renamed into place, then `latest`
  is replaced: a run killed at any instant leaves the previous epoch or this one, never a
  mixture. Keras' `BackupAndRestore` saves the model and optimizer only; a callback that
  wrote its own state beside it (early stopping's best loss and weights) would disagree
  with it after a kill between the two writes, and a resumed run would train other
  epochs. Here they are one directory.

  Before `fit`, call `restore(model)`: it checks the fingerprint (a backup made by another
  job is refused, naming what differs), loads the newest epoch into the model, its
  optimizer and the stateful callbacks, and returns where to start.

  Args:
    folder: str, the backup folder (created on the first save).
    stateful: callbacks with `get_state() -> (dict, {name: array})` and
      `set_state(dict, arrays)` (e.g. `ResumableEarlyStopping`).
    fingerprint: None or a JSON dict describing the job; stored, and compared on restore.
    keep: int >= 1, complete epochs kept on disk.
  """


_EPOCH_DIR = re.compile(r"epoch-\d{6}")
_PARTIAL_EPOCH_DIR = re.compile(r"epoch-\d{6}\.tmp-\d+")


def _checkpoint(model):
  optimizer = getattr(model, "optimizer", None)
  if optimizer is None:
    return tf.train.Checkpoint(model=model)
  return tf.train.Checkpoint(model=model, optimizer=optimizer)


def _build_optimizer(model):
  """Creates the optimizer's slot variables (idempotent), so a checkpoint restores them
  now rather than at the first step. Call inside the model's strategy scope."""
  build = getattr(getattr(model, "optimizer", None), "build", None)
  if callable(build):
    build(model.trainable_variables)


class EpochSummariesMixin:
  """`EpochSummaries` without its Keras base (mixed into a `Callback` of either
  Keras)."""

  def __init__(self, logdir):
    super().__init__()
    self.logdir = os.fspath(logdir)
    self._writers = {}

  def _writer(self, name):
    if name not in self._writers:
      self._writers[name] = tf.summary.create_file_writer(os.path.join(self.logdir, name))
    return self._writers[name]

  def on_epoch_end(self, epoch, logs=None):
    """Writes each log as the scalar "epoch_<name>" (train/ or validation/) and flushes."""
    for key, value in (logs or {}).items():
      part, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
      with self._writer(part).as_default():
        tf.summary.scalar(f"epoch_{name}", float(value), step=epoch)
    for writer in self._writers.values():
      writer.flush()

  def on_train_end(self, logs=None):
    """Closes the summary writers."""
    for writer in self._writers.values():
      writer.close()
    self._writers = {}


class EpochSummaries(EpochSummariesMixin, keras.callbacks.Callback):
  """TensorBoard scalars of every epoch's logs, written at the epoch's end only.

  ```none
  logdir/train/       events: loss, temperature, ... (the logs without "val_")
  logdir/validation/  events: the "val_" logs, under their names without the prefix
  ```
  The layout of Keras' `TensorBoard` callback for scalars, without its per-batch hooks:
  with small batches (1-3 ms) those dominated the step time (28-77 ms per batch in
  tf_keras 2.21). Writing needs TensorFlow only (tf.summary), not the tensorboard
  package, which is needed to view the logs.

  Args:
    logdir: str, the log folder.
  """
