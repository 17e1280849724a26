"""Tests for tfp_distill.Distiller: same loss as the tf.data path, training, labels."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras

import tolerance

FAMILY = td.families.HeteroscedasticNormal()
HEAD = td.heads.MultivariateNormalTriLHead


def _setup():
  ens = td.Ensemble([td.models.mlp((1,), [8], 2, seed=s) for s in range(4)], family=FAMILY)
  student = td.models.mlp((1,), [8], HEAD.params_size(2), head=HEAD(2), seed=7)
  return ens, student


@pytest.mark.parametrize("loss_fn", [
    lambda: td.losses.EnsembleNLL(),
    lambda: td.losses.MixtureKL(FAMILY),
])
def test_distiller_loss_equals_student_fit_loss_on_the_same_batch(loss_fn):
  ens, student = _setup()
  if isinstance(loss_fn(), td.losses.MixtureKL):
    student = td.models.mlp((1,), [8], 2, head=td.heads.NormalPredictiveHead(1), seed=7)
  x = np.linspace(-3, 3, 32, dtype=np.float32)[:, None]
  student.compile(keras.optimizers.Adam(1e-3), loss=loss_fn())
  via_targets = student.evaluate(td.teacher_targets(x, ens, batch_size=32), verbose=0)
  distiller = td.Distiller(student, ens, loss=loss_fn())
  distiller.compile(keras.optimizers.Adam(1e-3))
  via_distiller = distiller.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(32),
                                     verbose=0)
  # The same float32 ops in other graphs: the members' forward pass (model_roundings,
  # carried into the loss with a gain of order 1), each member's log density (2 d + 4,
  # d = 2), the means over M = 4 members and 32 examples: relative to |loss| + 1.
  bound = dict(dtype=np.float32, scale=abs(via_targets) + 1,
               ulps=tolerance.model_roundings(ens.members[0]) + 8 + 5 + 33)
  tolerance.assert_close(via_distiller, via_targets, **bound)
  # Precomputed targets through the Distiller: the same again.
  precomputed = distiller.evaluate(td.teacher_targets(x, ens, batch_size=32), verbose=0)
  tolerance.assert_close(precomputed, via_targets, **bound)


def test_distiller_trains_the_student_only():
  ens, student = _setup()
  teacher_before = [v.numpy().copy() for v in ens.variables]
  x = np.random.default_rng(0).uniform(-3, 3, (256, 1)).astype(np.float32)
  distiller = td.Distiller(student, ens, loss=td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-2))
  history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(32), epochs=8,
                          verbose=0).history["loss"]
  assert history[-1] < history[0] - 1.0, history
  for before, v in zip(teacher_before, ens.variables):
    np.testing.assert_array_equal(before, v.numpy())


def test_distiller_with_labels_uses_the_labelled_term():
  ens, student = _setup()
  x = np.linspace(-3, 3, 16, dtype=np.float32)[:, None]
  y = np.sin(x[:, 0])
  loss = td.losses.EnsembleNLL(FAMILY, label_weight=1.0)
  distiller = td.Distiller(student, ens, loss=loss)
  distiller.compile(keras.optimizers.Adam(1e-3))
  with_labels = distiller.evaluate(x, y, batch_size=16, verbose=0)
  without = distiller.evaluate(x, batch_size=16, verbose=0)
  dist = student(x)
  term = -td.losses.predictive_log_prob(dist, FAMILY, y).numpy().mean()
  # A difference of two float32 losses (each: the members' forward pass, log densities,
  # means over M = 4 and 16 examples) against the label term (Gauss-Hermite over 40
  # nodes: 53, its mean over 16: 17), relative to the sizes of all three.
  loss_ulps = tolerance.model_roundings(ens.members[0]) + 8 + 5 + 17
  tolerance.assert_close(with_labels - without, term, dtype=np.float32,
                         ulps=2 * loss_ulps + 53 + 17,
                         scale=abs(with_labels) + abs(without) + abs(term))


STRATEGY_SNIPPET = """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tfp_distill as td
from tfp_distill._keras import keras
family = td.families.HeteroscedasticNormal()
head = td.heads.MultivariateNormalTriLHead
ens = td.Ensemble([td.models.mlp((1,), [8], 2, seed=s) for s in range(3)], family=family)
x = np.linspace(-3, 3, 128, dtype=np.float32)[:, None]
data = tf.data.Dataset.from_tensor_slices(x).batch(32)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  student = td.models.mlp((1,), [8], head.params_size(2), head=head(2), seed=1)
  distiller = td.Distiller(student, ens, loss=td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-2))
assert strategy.num_replicas_in_sync == 2
losses = distiller.fit(data, epochs=3, verbose=0).history["loss"]
# The replicated loss equals the single-device loss of the same student on the same data.
single = td.Distiller(student, ens, loss=td.losses.EnsembleNLL())
single.compile(keras.optimizers.Adam(1e-2))
ref = single.evaluate(data, verbose=0)
mirrored = distiller.evaluate(data, verbose=0)
assert abs(ref - mirrored) < 1e-4 * max(1.0, abs(ref)), (ref, mirrored)
assert losses[-1] < losses[0], losses
# A divergent batch under two replicas: the run raises, and the weights stay finite
# (zero-gradient updates: the optimizer's all-reduce cannot sit in a branch).
bad = x.copy()
bad[70] = 1e30                                    # step 2 (0-based), replica 0's share
try:
  distiller.fit(tf.data.Dataset.from_tensor_slices(bad).batch(32), epochs=2, verbose=0)
  raise AssertionError("no NonFiniteLossError")
except td.callbacks.NonFiniteLossError as error:
  assert "at epoch 1, batch 3 (step 3)" in str(error), error
  assert "zero gradients" in str(error), error
assert all(np.isfinite(w).all() for w in student.get_weights())
print("ok", losses)
"""


@pytest.mark.slow
def test_distiller_under_mirrored_strategy_on_two_logical_cpus():
  import subprocess
  import sys
  out = subprocess.run([sys.executable, "-c", STRATEGY_SNIPPET], capture_output=True,
                       text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.startswith("ok")


def _divergent_data(rows=160, bad_row=75, batch=16):
  x = np.random.default_rng(0).normal(size=(rows, 1)).astype(np.float32)
  x[bad_row] = 1e30                  # finite, but the student's loss there overflows
  return x, tf.data.Dataset.from_tensor_slices(x).batch(batch)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_divergent_step_stops_fit_loudly_and_is_not_applied(jit_compile):
  """Row 75 is row 11 of batch 4 (0-based): fit raises at that step with its statistics,
  and the student's weights are exactly those after the four batches before it."""
  ens, student = _setup()
  initial = student.get_weights()
  x, data = _divergent_data()
  distiller = td.Distiller(student, ens, loss=td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile,
                    steps_per_execution=3)   # the bad step is inside a group of three
  with pytest.raises(td.callbacks.NonFiniteLossError) as raised:
    distiller.fit(data, epochs=3, verbose=0)
  message = str(raised.value)
  assert "at epoch 1, batch 5 (step 5)" in message
  assert "1 of 16 per-example losses non-finite, the first at row 11" in message
  assert "inputs min" in message and "max 1e+30" in message
  assert "were not applied" in message and "learning rate 0.01" in message
  report = distiller.nonfinite_report()
  assert report["step"] == 4 and report["first_nonfinite_example"] == 11
  # 1e30 stored in float32: one rounding.
  assert report["input_max"] == pytest.approx(1e30, rel=0, abs=tolerance.atol(
      1e30, dtype=np.float32, ulps=1))
  assert int(distiller.optimizer.iterations.numpy()) == 4   # steps 0-3 only
  # The same student trained on the first four batches alone.
  ens2, reference = _setup()
  reference.set_weights(initial)
  clean = td.Distiller(reference, ens2, loss=td.losses.EnsembleNLL())
  clean.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
  clean.fit(tf.data.Dataset.from_tensor_slices(x[:64]).batch(16), epochs=1, verbose=0)
  # Not a rounding bound: four Adam steps (lr 1e-2) on the same batches from the same
  # start, one run in groups of three steps per execution; Adam divides by each
  # gradient's running RMS, so a rounding-level change of a gradient near 0 could move a
  # step by O(lr). Measured equal; 1e-6 relative and 1e-7 absolute allow a few eps of
  # the weights (of order 1) while a step skipped or applied twice moves them by ~1e-2.
  for a, b in zip(student.get_weights(), reference.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Until reset, later fits apply nothing and raise again at their first step.
  with pytest.raises(td.callbacks.NonFiniteLossError):
    distiller.fit(tf.data.Dataset.from_tensor_slices(x[:32]).batch(16), verbose=0)
  distiller.reset_nonfinite()
  distiller.fit(tf.data.Dataset.from_tensor_slices(x[:32]).batch(16), verbose=0)
  assert int(distiller.optimizer.iterations.numpy()) == 6


def test_on_nonfinite_ignore_is_plain_keras_and_a_users_callback_decides():
  ens, student = _setup()
  _, data = _divergent_data()
  distiller = td.Distiller(student, ens, loss=td.losses.EnsembleNLL(), on_nonfinite="ignore")
  distiller.compile(keras.optimizers.Adam(1e-2))
  history = distiller.fit(data, epochs=1, verbose=0)           # no error: Keras' behaviour
  assert not np.isfinite(history.history["loss"][-1])
  assert not all(np.isfinite(w).all() for w in student.get_weights())
  # A StopOnNonFiniteLoss of the user's (raise_error=False) replaces the raising one.
  ens, student = _setup()
  distiller = td.Distiller(student, ens, loss=td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-2))
  stop = td.callbacks.StopOnNonFiniteLoss()
  distiller.fit(data, epochs=2, verbose=0, callbacks=[stop])
  assert stop.where[:2] == (0, 4) and stop.details["step"] == 4
  assert all(np.isfinite(w).all() for w in student.get_weights())
  with pytest.raises(ValueError, match="on_nonfinite"):
    td.Distiller(student, ens, loss=td.losses.EnsembleNLL(), on_nonfinite="warn")


def test_the_guard_handles_sparse_gradients_of_an_embedding_student():
  """An Embedding layer's gradient is an IndexedSlices: the checks read its values."""
  ids = np.arange(64, dtype=np.int32)[:, None] % 10
  z = np.random.default_rng(0).normal(size=(64, 3, 2)).astype(np.float32)
  inputs = keras.Input((1,), dtype="int32")
  hidden = keras.layers.Flatten()(keras.layers.Embedding(10, 4)(inputs))
  student = keras.Model(inputs, HEAD(2)(keras.layers.Dense(HEAD.params_size(2))(hidden)))
  distiller = td.Distiller(student, None, td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-2))
  before = student.get_weights()[0].copy()
  history = distiller.fit(ids, z, batch_size=16, epochs=2, verbose=0)
  assert np.isfinite(history.history["loss"]).all()
  assert not np.allclose(before, student.get_weights()[0])     # the embedding trained
  z[40, 1] = 3e38                                               # batch 2: overflows
  with pytest.raises(td.callbacks.NonFiniteLossError, match="at epoch 1, batch 3"):
    distiller.fit(ids, z, batch_size=16, epochs=1, verbose=0, shuffle=False)
