"""Keras callbacks: a tqdm progress bar for long training runs (more come with EnD^2)."""

from tqdm.auto import tqdm

from tfp_distill._keras import keras

__all__ = ["ProgressBar"]


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
