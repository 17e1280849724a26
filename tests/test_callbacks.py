"""Tests for tfp_distill.callbacks."""

import numpy as np

import tfp_distill as td
from tfp_distill._keras import keras


def test_progress_bar_round_trip_and_fit():
  bar = td.callbacks.ProgressBar("distil", disable=True, leave=False)
  again = td.callbacks.ProgressBar.from_config(bar.get_config())
  assert again.get_config() == {"description": "distil", "disable": True, "leave": False}
  model = keras.Sequential([keras.layers.Dense(1)])
  model.compile("sgd", loss="mse")
  x = np.zeros((8, 2), np.float32)
  shown = td.callbacks.ProgressBar("distil", leave=False)
  history = model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[shown])
  assert len(history.history["loss"]) == 3
  assert shown._bar.n == 3   # one tick per epoch
