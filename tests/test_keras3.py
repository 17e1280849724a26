"""Keras 3 students (td.keras3) against the tf_keras ones: one set of functions, two Keras.

- the heads, losses, metric and callbacks of both Keras compute the same values from the
  same inputs (they are one implementation: `td.parameterization`, the `*Mixin` classes);
- the Keras workflow runs under both (parametrized over `KERAS`): `fit` on arrays and on
  `td.teacher_targets`, the Distiller (labels, perturbation, the non-finite guard), stock
  callbacks, `.keras` files reloaded in a clean process, `td.predict_uncertainty`,
  `td.decompose`, `td.export_saved_model`;
- students of the two Keras with the same weights give the same parameters and
  uncertainties; Keras 3 members train vectorized as they train side by side;
- another Keras 3 backend is refused in one line, and `import tfp_distill` still works.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras as tf_keras

import tolerance

keras3 = pytest.importorskip("keras")
k3 = td.keras3

KERAS = [2, 3]


class Kit:
  """The names of one Keras: its module and tfp_distill's modules for it."""

  def __init__(self, version):
    self.version = version
    if version == 2:
      self.keras, self.heads, self.losses = tf_keras, td.heads, td.losses
      self.callbacks, self.metrics, self.Distiller = td.callbacks, td.metrics, td.Distiller
      self.models = td.models
    else:
      self.keras, self.heads, self.losses = keras3, k3.heads, k3.losses
      self.callbacks, self.metrics, self.Distiller = k3.callbacks, k3.metrics, k3.Distiller
      self.models = k3.models


# Heads: (head name, event size, raw params of the right width).
HEAD_CASES = [("NormalHead", 3), ("MultivariateNormalTriLHead", 3),
              ("NormalPredictiveHead", 2), ("DirichletHead", 4), ("CategoricalHead", 4)]


def _raw(name, event_size, rows=6, seed=0):
  size = getattr(td.heads, name).params_size(event_size)
  return np.random.default_rng(seed).normal(size=(rows, size)).astype(np.float32) * 2


@pytest.mark.parametrize("name,event_size", HEAD_CASES)
def test_heads_of_both_keras_give_the_same_distribution(name, event_size):
  raw = _raw(name, event_size)
  dist2 = getattr(td.heads, name)(event_size, min_scale=0.05)(tf.constant(raw))
  head3 = getattr(k3.heads, name)(event_size, min_scale=0.05)
  out3 = head3(tf.constant(raw))
  assert out3.shape == (6, head3.output_size(event_size))
  p2 = td.heads.distribution_parameters(dist2)
  p3 = td.heads.distribution_parameters(out3)     # the Keras 3 output carries its head
  assert sorted(p2) == sorted(p3)
  # One function (td.parameterization) on the same params: equal to the bit; the
  # Keras 3 head's distribution is rebuilt from its output, which only concatenates and
  # slices (exact) or fills a triangle (exact).
  for key in p2:
    np.testing.assert_array_equal(p3[key].numpy(), p2[key].numpy(), err_msg=key)
  unwrap = td.parameterization.unwrap
  assert type(unwrap(td.heads.get_distribution(out3))) is type(
      unwrap(td.heads.get_distribution(dist2)))
  # student.predict gives the parameters; Head.distribution makes the distribution.
  rebuilt = td.heads.distribution_parameters(
      getattr(k3.heads, name).distribution(out3.numpy()))
  for key in p2:
    np.testing.assert_array_equal(rebuilt[key].numpy(), p2[key].numpy(), err_msg=key)


@pytest.mark.parametrize("name,event_size", HEAD_CASES)
def test_keras3_heads_round_trip_their_config_and_check_shapes(name, event_size):
  cls = getattr(k3.heads, name)
  head = cls(event_size, min_scale=0.01, name="h")
  again = cls.from_config(head.get_config())
  assert again.get_config() == head.get_config()
  assert (again.event_size, again.min_scale) == (event_size, 0.01)
  with pytest.raises(ValueError, match=r"params_size\(") as k3_error:
    head(tf.zeros([2, cls.params_size(event_size) + 1]))
  with pytest.raises(ValueError, match=r"params_size\(") as k2_error:
    getattr(td.heads, name)(event_size, min_scale=0.01)(
        tf.zeros([2, cls.params_size(event_size) + 1]))
  size = cls.params_size(event_size)
  message = (f"{name}(event_size={event_size}) takes params of shape [batch, {size}] (= "
             f"{name}.params_size({event_size})), got shape [2, {size + 1}].")
  assert message in str(k3_error.value) and message in str(k2_error.value)
  if cls.min_event_size == 2:
    with pytest.raises(ValueError, match="needs event_size"):
      cls(1)


def test_keras3_heads_compute_in_float32_under_mixed_precision():
  keras3.mixed_precision.set_global_policy("mixed_float16")
  try:
    head = k3.heads.DirichletHead(3)
    out = head(tf.zeros([2, 3], tf.float16))
  finally:
    keras3.mixed_precision.set_global_policy("float32")
  assert head.compute_dtype == "float32" and out.dtype == tf.float32


def _dirichlet_case():
  raw = _raw("DirichletHead", 4)
  z = np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float32)
  return "DirichletHead", 4, raw, z


LOSS_CASES = {
    "ensemble_nll_regression": (
        "MultivariateNormalTriLHead", 2, lambda L, f: L.EnsembleNLL(), "regression"),
    "ensemble_nll_diagonal_labels": (
        "NormalHead", 2,
        lambda L, f: L.EnsembleNLL(family=f, label_weight=0.5), "regression"),
    "ensemble_nll_logits": (
        "MultivariateNormalTriLHead", 3,
        lambda L, f: L.EnsembleNLL(td.families.CategoricalLogits(4, reference_class=True),
                                   predictive_weight=0.3), "logits"),
    "dirichlet_nll": (
        "DirichletHead", 4,
        lambda L, f: L.DirichletNLL(temperature=2.5, family=f, label_weight=0.2,
                                    predictive_weight=0.1), "classification"),
    "proxy_dirichlet": (
        "DirichletHead", 4, lambda L, f: L.DirichletNLL(target="proxy", family=f),
        "classification"),
    "mixture_kl_regression": (
        "NormalPredictiveHead", 1, lambda L, f: L.MixtureKL(f), "regression"),
    "mixture_kl_classification": (
        "CategoricalHead", 4, lambda L, f: L.MixtureKL(f), "classification"),
    "knowledge_distillation": (
        "CategoricalHead", 4,
        lambda L, f: L.KnowledgeDistillation(temperature=2.0, alpha=0.7, family=f),
        "classification"),
}


def _loss_inputs(task, rows=6, members=5, seed=3):
  rng = np.random.default_rng(seed)
  if task == "regression":
    family = td.families.HeteroscedasticNormal(1)
    z = rng.normal(size=(rows, members, 2)).astype(np.float32)
    labels = rng.normal(size=(rows,)).astype(np.float32)
  else:
    family = td.families.CategoricalLogits(4)
    z = rng.normal(size=(rows, members, 4)).astype(np.float32) * 2
    labels = rng.integers(0, 4, rows)
  return family, z, labels


@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_losses_of_both_keras_give_the_same_values(case):
  name, event_size, make, task = LOSS_CASES[case]
  family, z, labels = _loss_inputs(task)
  raw = _raw(name, event_size, seed=4)
  y_pred2 = getattr(td.heads, name)(event_size)(tf.constant(raw))
  y_pred3 = getattr(k3.heads, name)(event_size)(tf.constant(raw))
  loss2, loss3 = make(td.losses, family), make(k3.losses, family)
  assert isinstance(loss3, keras3.losses.Loss)
  targets = {"ensemble": z, "label": labels}
  values2 = loss2.call(targets, y_pred2).numpy()
  values3 = loss3.call(targets, y_pred3).numpy()
  assert values2.shape == (6,) and np.all(np.isfinite(values2))
  # The same functions of the same distribution parameters (the heads agree to the bit,
  # above): equal to the bit.
  np.testing.assert_array_equal(values3, values2)
  # Through Keras 3's Loss.__call__ (its reduction: the mean over the batch), on z.
  mean3 = float(loss3(z, y_pred3))
  mean2 = float(loss2.call(z, y_pred2).numpy().mean())
  # A mean of 6 values in float32: 6 eps of the sum of |values| (tolerance.py, eq 4.4).
  tolerance.assert_close(mean3, mean2, dtype=np.float32, ulps=6,
                         scale=np.abs(loss2.call(z, y_pred2).numpy()).mean())
  config = loss3.get_config()
  again = type(loss3).from_config(config)
  assert again.get_config() == config


def test_knowledge_distillation_per_member_logits_in_keras3():
  family, z, labels = _loss_inputs("classification", members=3)
  logits = np.random.default_rng(5).normal(size=(6, 3, 4)).astype(np.float32)
  loss2 = td.losses.KnowledgeDistillation(temperature=2.0, alpha=0.5)
  loss3 = k3.losses.KnowledgeDistillation(temperature=2.0, alpha=0.5)
  targets = {"ensemble": z, "label": labels}
  np.testing.assert_array_equal(loss3.call(targets, tf.constant(logits)).numpy(),
                                loss2.call(targets, tf.constant(logits)).numpy())


def test_keras3_loss_refuses_a_student_without_a_head():
  with pytest.raises(TypeError, match="td.keras3.heads"):
    k3.losses.EnsembleNLL().call(np.zeros((2, 3, 2), np.float32), tf.zeros([2, 5]))
  with pytest.raises(TypeError, match="Dirichlet student"):
    k3.losses.DirichletNLL().call(np.zeros((2, 3, 4), np.float32),
                                  k3.heads.CategoricalHead(4)(tf.zeros([2, 4])))


def test_expected_calibration_error_of_both_keras_agree_over_uneven_batches():
  rng = np.random.default_rng(6)
  logits = rng.normal(size=(50, 4)).astype(np.float32) * 2
  labels = rng.integers(0, 4, 50)
  metric2 = td.metrics.ExpectedCalibrationError(num_bins=10)
  metric3 = k3.metrics.ExpectedCalibrationError(num_bins=10)
  for start, stop in ((0, 7), (7, 30), (30, 50)):
    metric2.update_state(labels[start:stop], tf.nn.softmax(logits[start:stop]))
    # A Keras 3 head's output: the metric reads the distribution's mean.
    metric3.update_state(labels[start:stop],
                         k3.heads.CategoricalHead(4)(tf.constant(logits[start:stop])))
  # The same float64 bin sums of the same probabilities (softmax computed twice the same
  # way): equal to the bit.
  assert float(metric3.result()) == float(metric2.result())
  expected = td.metrics.expected_calibration_error(labels, tf.nn.softmax(logits),
                                                   num_bins=10)
  # Streaming and one-shot: the same bins; sums in another order (float32 result of
  # float64 sums: one rounding to float32, 1 eps).
  tolerance.assert_close(float(metric3.result()), float(expected), dtype=np.float32,
                         ulps=1)
  metric3.reset_state()
  assert float(metric3.result()) == 0.0
  assert k3.metrics.ExpectedCalibrationError.from_config(
      metric3.get_config()).num_bins == 10


# ---------------------------------------------------------------------------------------
# The Keras workflow, under both Keras.


@pytest.fixture(scope="module")
def classification_teacher():
  family = td.families.CategoricalLogits(3)
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 240)
  x = (rng.normal(size=(240, 2)) + 2.0 * np.eye(3)[y][:, :2]).astype(np.float32)
  ensemble = td.train_ensemble(
      lambda seed: td.models.mlp((2,), [16], 3, seed=seed), (x, y), family,
      num_members=3, epochs=3, seed=0, verbose=0)
  return family, x, y, ensemble


@pytest.fixture(scope="module")
def regression_teacher():
  family = td.families.HeteroscedasticNormal()
  x, y = td.datasets.sinusoid(200, seed=0)
  ensemble = td.train_ensemble(
      lambda seed: td.keras3.models.mlp((1,), [16], family.params_size, seed=seed),
      (x, y), family, num_members=3, epochs=3, seed=0, verbose=0)
  return family, x, y, ensemble


def _student(kit, name, event_size, input_shape=(2,), seed=7):
  head_cls = getattr(kit.heads, name)
  return kit.models.mlp(input_shape, [16], head_cls.params_size(event_size),
                        head=head_cls(event_size), seed=seed)


@pytest.mark.parametrize("version", KERAS)
def test_fit_on_arrays_with_temperature_annealing(version, classification_teacher):
  kit = Kit(version)
  family, x, y, ensemble = classification_teacher
  student = _student(kit, "DirichletHead", 3)
  assert isinstance(student, kit.keras.Model)
  loss = kit.losses.DirichletNLL(temperature=2.5, family=family)
  annealing = kit.callbacks.TemperatureAnnealing(loss, 2.5, 1.0, 1, 3)
  student.compile(kit.keras.optimizers.Adam(1e-2), loss=loss)
  history = student.fit(x, ensemble.predict_targets(x), epochs=4, batch_size=64, verbose=0,
                        callbacks=[annealing, kit.callbacks.ProgressBar(disable=True)])
  assert history.history["temperature"] == [2.5, 2.5, 1.75, 1.0]
  assert np.all(np.isfinite(history.history["loss"]))
  u = td.predict_uncertainty(student, family, x)
  assert set(u) == {"prediction", "total", "aleatoric", "epistemic", "epkl"}
  np.testing.assert_allclose(u["prediction"].sum(-1), 1.0, rtol=0, atol=tolerance.atol(
      dtype=np.float32, ulps=4, scale=1.0))   # a mean of 3 probabilities: a few roundings


@pytest.mark.parametrize("version", KERAS)
def test_fit_on_teacher_targets_and_stock_callbacks(version, regression_teacher, tmp_path):
  kit = Kit(version)
  family, x, _, ensemble = regression_teacher
  student = _student(kit, "MultivariateNormalTriLHead", 2, input_shape=(1,))
  student.compile(kit.keras.optimizers.Adam(1e-3), loss=kit.losses.EnsembleNLL())
  targets = td.teacher_targets(td.targets.uniform_inputs(-5., 5., 256), ensemble,
                               batch_size=64)
  suffix = ".keras" if version == 3 else ".h5"
  callbacks = [kit.keras.callbacks.EarlyStopping(monitor="loss", patience=5),
               kit.keras.callbacks.ModelCheckpoint(str(tmp_path / f"best{suffix}"),
                                                   monitor="loss")]
  if version == 3:
    callbacks.append(kit.keras.callbacks.BackupAndRestore(str(tmp_path / "backup")))
  history = student.fit(targets, epochs=2, verbose=0, callbacks=callbacks)
  assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))
  assert (tmp_path / f"best{suffix}").exists()
  u = td.predict_uncertainty(student, family, x)
  d = td.decompose(student(x[:5]), family)
  # predict_uncertainty is td.decompose of the same outputs in one compiled graph (the
  # same quadrature: its 40-node sums and a softplus, within 64 eps of the largest term).
  for key in d:
    tolerance.assert_close(u[key][:5], d[key].numpy(), dtype=np.float32, ulps=64,
                           err_msg=key)


@pytest.mark.parametrize("version", KERAS)
def test_distiller_labels_perturbation_and_the_nonfinite_guard(version,
                                                               classification_teacher):
  kit = Kit(version)
  family, x, y, ensemble = classification_teacher
  student = _student(kit, "CategoricalHead", 3)
  loss = kit.losses.KnowledgeDistillation(temperature=2.0, alpha=0.8, family=family)
  distiller = kit.Distiller(student, ensemble, loss=loss, perturbation=td.perturb.Gaussian(
      0.1), seed=3)
  distiller.compile(kit.keras.optimizers.Adam(1e-2))
  history = distiller.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=2,
                          verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  # Precomputed targets, as td.teacher_targets yields them (labels included).
  history = distiller.fit(td.teacher_targets((x, y), ensemble, batch_size=64), epochs=1,
                          verbose=0)
  assert np.isfinite(history.history["loss"][-1])
  # A non-finite step (targets holding Inf in row 5 of the second batch) is not applied,
  # nor any after it, and fit says where.
  z = ensemble.predict_targets(x[:128])
  z[64 + 5] = np.inf
  plain = kit.Distiller(student, ensemble, loss=loss)
  plain.compile(kit.keras.optimizers.Adam(1e-2))
  plain.fit(tf.data.Dataset.from_tensor_slices((x[:64], z[:64])).batch(64), verbose=0)
  before = [np.array(w) for w in student.get_weights()]
  with pytest.raises(td.callbacks.NonFiniteLossError, match="batch 2") as raised:
    plain.fit(tf.data.Dataset.from_tensor_slices((x[:128], z)).batch(64), epochs=2,
              verbose=0)
  assert "the first at row 5" in str(raised.value)
  assert plain.nonfinite_report()["first_nonfinite_example"] == 5
  # Steps applied: the first fit's and this fit's first batch; not the bad one, nor any
  # later: a second fit raises at once and changes nothing.
  assert int(plain.optimizer.iterations.numpy()) == 2
  after = [np.array(w) for w in student.get_weights()]
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))
  with pytest.raises(td.callbacks.NonFiniteLossError):
    plain.fit(tf.data.Dataset.from_tensor_slices((x[:64], z[:64])).batch(64), verbose=0)
  for a, b in zip(after, student.get_weights()):
    np.testing.assert_array_equal(a, np.array(b))


@pytest.mark.slow
@pytest.mark.parametrize("version", KERAS)
def test_student_file_reloads_in_a_clean_process(version, classification_teacher,
                                                 tmp_path):
  kit = Kit(version)
  family, x, _, ensemble = classification_teacher
  student = _student(kit, "DirichletHead", 3)
  loss = kit.losses.DirichletNLL(temperature=2.0, family=family)
  student.compile(kit.keras.optimizers.Adam(1e-2), loss=loss)
  student.fit(x, ensemble.predict_targets(x), epochs=1, batch_size=64, verbose=0)
  path = tmp_path / "student.keras"
  student.save(path)
  np.save(tmp_path / "x.npy", x[:10])
  expected = td.predict_uncertainty(student, family, x[:10])
  imports = ("import keras, tfp_distill.keras3" if version == 3
             else "import tf_keras as keras")
  code = textwrap.dedent(f"""
      import numpy as np
      import tfp_distill as td
      {imports}
      student = keras.models.load_model({str(path)!r})
      family = td.families.CategoricalLogits(3)
      u = td.predict_uncertainty(student, family, np.load({str(tmp_path / "x.npy")!r}))
      np.savez({str(tmp_path / "u.npz")!r}, **u)
      print(type(student.loss).__name__, float(student.loss.temperature.numpy()))
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split()[-2:] == ["DirichletNLL", "2.0"]
  got = np.load(tmp_path / "u.npz")
  # The same weights and graph in another process: the same numbers.
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("version", KERAS)
def test_epoch_backup_resumes_a_distiller_exactly(version, regression_teacher, tmp_path):
  """6 epochs with early stopping and TensorBoard scalars; separately 3, then a state
  restored from the backup and 3 more: the same weights and stopping state."""
  kit = Kit(version)
  family, x, _, ensemble = regression_teacher

  def run(folder, epochs, resume=False):
    student = _student(kit, "NormalHead", 2, input_shape=(1,), seed=11)
    distiller = kit.Distiller(student, ensemble, loss=kit.losses.EnsembleNLL())
    distiller.compile(kit.keras.optimizers.Adam(1e-2))
    stopping = kit.callbacks.ResumableEarlyStopping("loss", patience=2)
    backup = kit.callbacks.EpochBackup(folder, [stopping], fingerprint={"settings": {"a": 1}})
    summaries = kit.callbacks.EpochSummaries(tmp_path / f"logs_{os.path.basename(folder)}")
    start = backup.restore(distiller) if resume else 0
    distiller.fit(tf.data.Dataset.from_tensor_slices(x[:96]).batch(32), epochs=epochs,
                  initial_epoch=start, verbose=0, callbacks=[stopping, backup, summaries])
    return student, stopping, backup

  whole, whole_stop, whole_backup = run(str(tmp_path / "whole"), 6)
  run(str(tmp_path / "parts"), 3)
  resumed, resumed_stop, resumed_backup = run(str(tmp_path / "parts"), 6, resume=True)
  for a, b in zip(whole.get_weights(), resumed.get_weights()):
    # The same float32 ops in the same order from the same restored state: equal bit for
    # bit (the teacher is not trained, the batches come in the same order).
    np.testing.assert_array_equal(np.array(a), np.array(b))
  assert resumed_stop.state == whole_stop.state
  assert resumed_backup.history == whole_backup.history
  assert os.listdir(tmp_path / "logs_whole" / "train")


def _copy_weights(source, target):
  """Copies a model's weights into the same architecture in the other Keras."""
  values = [np.array(w) for w in source.get_weights()]
  assert [v.shape for v in values] == [tuple(w.shape) for w in target.get_weights()]
  target.set_weights(values)


@pytest.mark.parametrize("name,event_size,task", [
    ("MultivariateNormalTriLHead", 2, "regression"), ("NormalHead", 2, "regression"),
    ("NormalPredictiveHead", 1, "regression"), ("DirichletHead", 3, "classification"),
    ("CategoricalHead", 3, "classification")])
def test_students_of_both_keras_with_the_same_weights_agree(name, event_size, task,
                                                            tmp_path):
  family = (td.families.HeteroscedasticNormal() if task == "regression"
            else td.families.CategoricalLogits(3))
  x = np.random.default_rng(8).normal(size=(32, 2)).astype(np.float32) * 2
  student2 = _student(Kit(2), name, event_size)
  student3 = _student(Kit(3), name, event_size)
  _copy_weights(student2, student3)
  raw2 = tf_keras.Model(student2.inputs[0], student2.layers[-2].output)(x).numpy()
  raw3 = keras3.Model(student3.inputs[0], student3.layers[-2].output)(x).numpy()
  # The backbones' raw params: the same weights, layers of the two Keras that may fuse
  # their matmul, bias and activation differently (tolerance.model_roundings).
  ulps = tolerance.model_roundings(tf_keras.Model(student2.inputs,
                                                  student2.layers[-2].output))
  tolerance.assert_close(raw3, raw2, dtype=np.float32, ulps=ulps)
  # From the same raw params the heads, decompositions and exports are one set of
  # functions; so the whole student's outputs differ by the raw params' rounding at
  # most, carried through the head (a softplus, exp or sqrt: gain <= max(1, |f'|)) and
  # the decomposition (40-node quadrature sums, entropies of K = 3 probabilities). The
  # bound: raw params' ulps + 64, relative to the largest output, and the uncertainty
  # functions' derivatives are below 4 on these inputs (logits and log-scales of |.| < 8).
  u2 = td.predict_uncertainty(student2, family, x)
  u3 = td.predict_uncertainty(student3, family, x)
  assert sorted(u2) == sorted(u3)
  for key in u2:
    tolerance.assert_close(u3[key], u2[key], dtype=np.float32, ulps=4 * (ulps + 64),
                           scale=1.0 + tolerance.magnitude(u2[key]), err_msg=key)
  # The SavedModels: the same signature keys; served values equal the in-memory ones.
  for student, folder in ((student2, "s2"), (student3, "s3")):
    td.export_saved_model(student, family, str(tmp_path / folder))
  served2 = tf.saved_model.load(str(tmp_path / "s2")).signatures["serving_default"]
  served3 = tf.saved_model.load(str(tmp_path / "s3")).signatures["serving_default"]
  out2, out3 = served2(x=tf.constant(x)), served3(x=tf.constant(x))
  assert sorted(out2) == sorted(out3)
  for key in u3:
    # The served graph and predict_uncertainty's: the same ops (64 eps, as above).
    tolerance.assert_close(out3[key].numpy(), u3[key], dtype=np.float32, ulps=64,
                           scale=1.0 + tolerance.magnitude(u3[key]), err_msg=key)


@pytest.mark.parametrize("builder,kwargs,input_shape", [
    ("mlp", dict(input_shape=(3,), hidden_units=[8, 8], output_size=4), (3,)),
    ("small_cnn", dict(output_size=4, filters=(4, 8), dense_units=16, dropout=0.1),
     (28, 28, 1)),
    ("resnet18_cifar", dict(input_shape=(16, 16, 3), output_size=4, width=2, l2=1e-4),
     (16, 16, 3)),
])
def test_builtin_backbones_have_the_same_architecture_in_both_keras(builder, kwargs,
                                                                    input_shape):
  model2 = getattr(td.models, builder)(seed=0, **kwargs)
  model3 = getattr(k3.models, builder)(seed=0, **kwargs)
  assert isinstance(model3, keras3.Model)
  assert model3.count_params() == model2.count_params()
  assert ([type(l).__name__ for l in model3.layers]
          == [type(l).__name__ for l in model2.layers])
  _copy_weights(model2, model3)
  x = np.random.default_rng(9).uniform(size=(3,) + input_shape).astype(np.float32)
  # Inference with the same weights: the layers' roundings (tolerance.model_roundings).
  tolerance.assert_close(model3(x, training=False).numpy(), model2(x, training=False).numpy(),
                         dtype=np.float32, ulps=tolerance.model_roundings(model2))
  assert td.models.keras_module(head=k3.heads.NormalHead(1)) is keras3
  with pytest.raises(ValueError, match="keras_version"):
    td.models.mlp((1,), [2], 2, keras_version=4)


@pytest.mark.slow
def test_keras3_distiller_under_a_mirrored_strategy_on_two_logical_cpus():
  code = textwrap.dedent("""
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      import keras
      import numpy as np
      import tfp_distill as td
      family = td.families.HeteroscedasticNormal()
      members = [td.keras3.models.mlp((1,), [8], 2, seed=s) for s in range(3)]
      ensemble = td.Ensemble(members, family=family)
      strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
      with strategy.scope():
        Head = td.keras3.heads.NormalHead
        student = td.keras3.models.mlp((1,), [8], Head.params_size(2), head=Head(2), seed=0)
        distiller = td.keras3.Distiller(student, ensemble,
                                        loss=td.keras3.losses.EnsembleNLL())
        distiller.compile(keras.optimizers.Adam(1e-2))
      x = np.linspace(-3, 3, 64, dtype="float32")[:, None]
      history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=2,
                              verbose=0)
      print(strategy.num_replicas_in_sync, *history.history["loss"])
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert out.returncode == 0, out.stderr[-3000:]
  replicas, *losses = out.stdout.split()[-3:]
  assert replicas == "2" and all(np.isfinite(float(v)) for v in losses)


# ---------------------------------------------------------------------------------------
# Keras 3 members: vectorized training and inference.


def test_keras3_members_train_vectorized_as_they_train_side_by_side():
  family = td.families.HeteroscedasticNormal()
  x, y = td.datasets.sinusoid(128, seed=1)

  def build(seed):
    return k3.models.mlp((1,), [8], family.params_size, seed=seed)

  stacked = td.train_ensemble(build, (x, y), family, num_members=3, epochs=2,
                              batch_size=32, seed=0, verbose=0, vectorize=True)
  looped = td.train_ensemble(build, (x, y), family, num_members=3, epochs=2,
                             batch_size=32, seed=0, verbose=0, vectorize=False)
  assert stacked.training_vectorized and not looped.training_vectorized
  for m_stacked, m_looped in zip(stacked.members, looped.members):
    for a, b in zip(m_stacked.get_weights(), m_looped.get_weights()):
      # Statistical, not rounding: 8 Adam steps from the same weights and batches; a
      # batched matmul and M matmuls sum in other orders (float32), and Adam's first
      # steps move every weight by ~lr whatever the gradient's size, so rounding in a
      # gradient near 0 can flip a step: 1e-3 absolute is 8 steps x the learning rate
      # (1e-3) / 8, far below the weights' own scale (~0.5).
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)
  z = tf.constant(x[:16])
  separate = tf.stack([m(z, training=False) for m in stacked.members], axis=1).numpy()
  vectorized = td.Ensemble(stacked.members, family=family, vectorize=True)
  assert vectorized.vectorized
  # One matmul per layer against M (fan-in 1 and 8: model_roundings of the member).
  ulps = 2 * (8 + 2) + 8
  tolerance.assert_close(vectorized(z).numpy(), separate, dtype=np.float32, ulps=ulps)
  # On a CPU the trained ensemble runs its members one by one in a tf.function graph,
  # `separate` eagerly: the graph may fuse a layer's matmul, bias and activation
  # (oneDNN), so the two agree to the member's roundings, not bitwise (an AMD EPYC gave
  # 1 ulp on 20 of 96 outputs).
  tolerance.assert_close(stacked(z).numpy(), separate, dtype=np.float32,
                         ulps=tolerance.model_roundings(stacked.members[0]))


def test_keras3_members_of_other_architectures_do_not_stack():
  members = [k3.models.mlp((2,), [4], 3, seed=0), k3.models.mlp((2,), [5], 3, seed=1)]
  assert "differ" in str(k3.vectorized.vectorization_blocker(members))
  ensemble = td.Ensemble(members, vectorize="auto")
  assert not ensemble.vectorized
  with pytest.raises(td.vectorized.NotVectorizableError, match="differ"):
    td.Ensemble(members, vectorize=True)


# ---------------------------------------------------------------------------------------
# Backends and imports.


def test_another_backend_is_refused_in_one_line_and_tfp_distill_still_imports():
  code = textwrap.dedent("""
      import tfp_distill as td
      print("imported", td.heads.DirichletHead.params_size(3))
      try:
        import tfp_distill.keras3
      except ImportError as error:
        print("refused:", error)
      try:
        td.models.mlp((1,), [2], 2, keras_version=3)
      except ImportError as error:
        print("refused:", error)
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "KERAS_BACKEND": "numpy",
                                         "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.strip().splitlines()
  assert lines[0] == "imported 3"
  refusals = [l for l in lines if l.startswith("refused:")]
  assert len(refusals) == 2
  for line in refusals:
    assert "KERAS_BACKEND=numpy" in line and "KERAS_BACKEND=tensorflow" in line
