"""Tests for tfp_distill.Distiller: same loss as the tf.data path, training, labels."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras

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
  np.testing.assert_allclose(via_distiller, via_targets, rtol=1e-6)
  # Precomputed targets through the Distiller: the same again.
  precomputed = distiller.evaluate(td.teacher_targets(x, ens, batch_size=32), verbose=0)
  np.testing.assert_allclose(precomputed, via_targets, rtol=1e-6)


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
  np.testing.assert_allclose(with_labels - without, term, rtol=1e-5)


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
print("ok", losses)
"""


def test_distiller_under_mirrored_strategy_on_two_logical_cpus():
  import subprocess
  import sys
  out = subprocess.run([sys.executable, "-c", STRATEGY_SNIPPET], capture_output=True,
                       text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.startswith("ok")
