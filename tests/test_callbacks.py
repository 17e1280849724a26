"""Tests for tfp_distill.callbacks."""

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill._keras import keras

import tolerance


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


def test_annealed_temperature_schedule():
  # Constant 10 through epoch 2, linear to 1 at epoch 5: 10, 10, 10, 7, 4, 1, 1.
  values = [td.callbacks.annealed_temperature(e, 10.0, 1.0, 2, 5) for e in range(7)]
  # Python floats: a linear interpolation (a difference, a quotient, a product and a sum:
  # 4 eps of the values' size, 10).
  tolerance.assert_close(values, [10, 10, 10, 7, 4, 1, 1], dtype=np.float64, ulps=4,
                         scale=10.)


def _dirichlet_student():
  return td.models.mlp((3,), [8], 4, head=td.heads.DirichletHead(4), seed=0)


def test_temperature_annealing_drives_the_loss_without_retracing():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  z = rng.normal(size=(64, 5, 4)).astype(np.float32)
  loss = td.losses.DirichletNLL(temperature=10.0)
  student = _dirichlet_student()
  student.compile(keras.optimizers.Adam(1e-3), loss=loss)
  seen = []
  probe = keras.callbacks.LambdaCallback(
      on_epoch_end=lambda epoch, logs: seen.append(float(loss.temperature.numpy())))
  history = student.fit(x, z, batch_size=32, epochs=6, verbose=0, callbacks=[
      td.callbacks.TemperatureAnnealing(None, 10.0, 1.0, 2, 5), probe])
  # Those values stored in a float32 variable: one rounding of <= 10 (and the float64
  # interpolation's 4 eps, far below it).
  bound = dict(dtype=np.float32, ulps=1 + 1, scale=10.)
  tolerance.assert_close(seen, [10, 10, 10, 7, 4, 1], **bound)
  tolerance.assert_close(history.history["temperature"], seen, **bound)
  assert np.all(np.isfinite(history.history["loss"]))
  # The temperature is a variable read by the compiled step: annealing over six epochs
  # traces the step exactly as often as one epoch at a fixed temperature does.
  baseline = _dirichlet_student()
  baseline.compile(keras.optimizers.Adam(1e-3), loss=td.losses.DirichletNLL(10.0))
  baseline.fit(x, z, batch_size=32, epochs=1, verbose=0)
  assert (student.train_function.experimental_get_tracing_count()
          == baseline.train_function.experimental_get_tracing_count())


def test_temperature_annealing_with_the_distiller_and_round_trip():
  rng = np.random.default_rng(1)
  members = [td.models.mlp((3,), [4], 4, seed=s) for s in range(3)]
  teacher = td.Ensemble(members, family=td.families.CategoricalLogits(4))
  loss = td.losses.KnowledgeDistillation(temperature=4.0)
  student = td.models.mlp((3,), [8], 4, head=td.heads.CategoricalHead(4), seed=2)
  distiller = td.Distiller(student, teacher, loss=loss)
  distiller.compile(keras.optimizers.Adam(1e-3))
  callback = td.callbacks.TemperatureAnnealing(None, 4.0, 2.0, 0, 1)
  distiller.fit(rng.normal(size=(32, 3)).astype(np.float32), batch_size=16, epochs=2,
                verbose=0, callbacks=[callback])
  assert float(loss.temperature.numpy()) == 2.0
  config = td.callbacks.TemperatureAnnealing(loss, 4.0, 2.0, 0, 1).get_config()
  again = td.callbacks.TemperatureAnnealing.from_config(config)
  assert isinstance(again.loss, td.losses.KnowledgeDistillation)
  assert again.get_config() == config
  with pytest.raises(ValueError, match="end_epoch"):
    td.callbacks.TemperatureAnnealing(None, 4.0, 1.0, 3, 3)
  plain = keras.Sequential([keras.layers.Dense(1)])
  plain.compile("sgd", loss="mse")
  with pytest.raises(ValueError, match="no loss with a `temperature`"):
    plain.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1, verbose=0,
              callbacks=[td.callbacks.TemperatureAnnealing()])


def test_stop_on_non_finite_loss_says_where():
  x = np.ones((64, 2), np.float32)
  x[40] = np.inf                                    # batch 2 (0-based, batches of 16)
  model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
  model.compile("sgd", "mse")
  stop = td.callbacks.StopOnNonFiniteLoss()
  history = model.fit(x, np.zeros(64, np.float32), batch_size=16, epochs=3, shuffle=False,
                      verbose=0, callbacks=[stop])
  assert stop.where[:2] == (0, 2) and not np.isfinite(stop.where[2])
  assert stop.message().startswith("The training loss became ") and stop.message().endswith(
      "at epoch 1, batch 3.")
  assert len(history.history["loss"]) == 1          # stopped in the first epoch
  assert td.callbacks.StopOnNonFiniteLoss().message() is None
