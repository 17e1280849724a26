"""Tests for tfp_distill.perturb: ODS against finite differences, ranges, reproducibility."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill import perturb
from tfp_distill._keras import keras

import tolerance


def _member(seed, dim=4, classes=3, dtype="float64"):
  inputs = keras.Input((dim,), dtype=dtype)
  h = keras.layers.Dense(5, activation="tanh", dtype=dtype,
                         kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
  out = keras.layers.Dense(classes, dtype=dtype,
                           kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(h)
  return keras.Model(inputs, out)


@pytest.fixture(scope="module")
def teacher():
  return td.Ensemble([_member(10 * m) for m in range(3)],
                     family=td.families.CategoricalLogits(3))


def _softmax(a):
  e = np.exp(a - a.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("cls", [perturb.ODS, perturb.ConfODS])
def test_ods_step_equals_a_finite_difference_reference(teacher, cls):
  x = np.random.default_rng(0).uniform(0.2, 0.8, size=(6, 4))
  seed = tf.constant([3, 7], tf.int64)
  ods = cls(step_size=0.05, temperature=2.0, clip=None)
  j, w = ods.draw(seed, 6, 3, 3)
  j, w = int(j), w.numpy()
  member = teacher.members[j]

  def objective(xi, b):   # sum_k w_k softmax(f_j(x) / T)_k for example b
    return float(np.sum(w[b] * _softmax(member(xi[None]).numpy()[0] / 2.0)))

  h = 1e-6
  grad = np.zeros_like(x)
  for b in range(6):
    for d in range(4):
      e = np.zeros(4)
      e[d] = h
      grad[b, d] = (objective(x[b] + e, b) - objective(x[b] - e, b)) / (2 * h)
  g, p = ods.direction(tf.constant(x), teacher, seed)
  # Central differences in float64 on a smooth function: error ~h^2 ~1e-12, round-off ~1e-10.
  # (A finite-difference truncation and cancellation bound, not a count of roundings.)
  np.testing.assert_allclose(g.numpy(), grad, atol=1e-8)
  # The member's float64 logits computed again (tolerance.model_roundings eps of their
  # size, which a softmax turns into relative errors of p) and a softmax of K = 3 at
  # T = 2 (K + 3) on either side: relative to p (1 + max|logits|).
  logits = member(x).numpy()
  want = _softmax(logits / 2.0)
  tolerance.assert_close(p.numpy(), want, dtype=np.float64,
                         ulps=2 * (tolerance.model_roundings(member) + 3 + 3),
                         scale=want * (1 + np.abs(logits).max()))
  step = 0.05 * np.sqrt(4) * grad / np.linalg.norm(grad, axis=1, keepdims=True)
  if cls is perturb.ConfODS:
    step *= p.numpy().max(-1, keepdims=True)
  # The reference step is built from the finite-difference gradient (within 1e-8 above,
  # of gradients of order 1e-1, times a step of 0.1): a truncation bound, not rounding.
  np.testing.assert_allclose(ods(tf.constant(x), teacher, seed).numpy(), x + step,
                             atol=1e-7)


def test_ods_respects_the_input_range_and_is_reproducible(teacher):
  x = tf.constant(np.random.default_rng(1).uniform(size=(32, 4)))
  ods = perturb.ODS(step_size=2.0)       # a step far larger than the box
  a = ods(x, teacher, tf.constant([1, 2], tf.int64))
  assert np.all(a.numpy() >= 0.0) and np.all(a.numpy() <= 1.0)
  assert np.any(a.numpy() != x.numpy())
  np.testing.assert_array_equal(a.numpy(), ods(x, teacher, tf.constant([1, 2], tf.int64)))
  b = ods(x, teacher, tf.constant([1, 3], tf.int64))
  assert not np.allclose(a.numpy(), b.numpy())
  # Every teacher gets chosen for some seed (j ~ U{0, 1, 2}).
  drawn = {int(ods.draw(tf.constant([s, 0], tf.int64), 1, 3, 3)[0]) for s in range(30)}
  assert drawn == {0, 1, 2}


def test_perturbed_targets_are_the_teachers_outputs_on_the_perturbed_inputs(teacher):
  x = np.random.default_rng(2).uniform(size=(40, 4))
  ds = td.teacher_targets(x, teacher, batch_size=8, perturbation=perturb.ConfODS(0.1),
                          seed=0)
  for x_batch, z in ds.take(2):
    assert not np.any(np.all(np.isclose(x_batch.numpy()[:, None], x[None]), axis=-1))
    # The teacher's float64 forward pass again (in the data pipeline's graph).
    tolerance.assert_close(z.numpy(), teacher(x_batch).numpy(), dtype=np.float64,
                           ulps=tolerance.model_roundings(teacher.members[0]))


def test_distiller_trains_with_ods(teacher):
  distiller = td.Distiller(
      td.models.mlp((4,), [8], 3, head=td.heads.CategoricalHead(3), seed=1), teacher,
      loss=td.losses.KnowledgeDistillation(temperature=2.0),
      perturbation=perturb.ODS(0.05))
  distiller.compile(keras.optimizers.Adam(1e-2))
  history = distiller.fit(np.random.default_rng(3).uniform(size=(64, 4)).astype("float64"),
                          batch_size=16, epochs=2, verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("labels_on", ["clean", "perturbed"])
def test_distiller_puts_the_label_term_on_the_chosen_input(teacher, labels_on):
  # Nam et al.'s students: (1 - a) CE(y, s(x)) + a T^2 KL(p_bar_T(x') || s_T(x')), with x'
  # the ODS batch; labels_on="perturbed" takes the CE on s(x') instead. NumPy reference.
  t, a = 2.0, 0.7
  rng = np.random.default_rng(5)
  x = rng.uniform(0.2, 0.8, size=(12, 4))
  y = rng.integers(0, 3, size=12)
  student = td.models.mlp((4,), [8], 3, head=td.heads.CategoricalHead(3), seed=1)
  ods = perturb.ODS(0.1, temperature=1.5)
  distiller = td.Distiller(student, teacher, td.losses.KnowledgeDistillation(t, a),
                           perturbation=ods, seed=9, labels_on=labels_on)
  distiller.compile(keras.optimizers.Adam(1e-3))
  got = distiller.evaluate(x, y, batch_size=12, verbose=0)

  x_pert = ods(tf.constant(x), teacher, tf.constant([9, 0], tf.int64)).numpy()
  assert np.abs(x_pert - x).max() > 1e-3
  logits = lambda v: td.losses.distillation.as_student_logits(student(v)).numpy().astype(
      np.float64)
  p_bar = _softmax(teacher(x_pert).numpy() / t).mean(1)
  log_s_t = np.log(_softmax(logits(x_pert) / t))
  kl = np.sum(p_bar * (np.log(p_bar) - log_s_t), -1)
  ce_input = x if labels_on == "clean" else x_pert
  ce = -np.log(_softmax(logits(ce_input))[np.arange(12), y])
  # float32 loss: the student's forward pass again (tolerance.model_roundings eps of its
  # logits, which log-softmaxes carry absolutely), the KL of K = 3 over M = 3 members
  # (K + M + 8 eps of its p-weighted |log|s), the cross-entropy (2 log K + 2 + |ce|) and
  # the mean over 12 examples (13): relative to those terms' mean.
  max_logit = max(np.abs(logits(x_pert)).max(), np.abs(logits(ce_input)).max())
  terms = np.mean(a * t ** 2 * np.sum(p_bar * (np.abs(np.log(p_bar)) + np.abs(log_s_t)), -1)
                  + (1 - a) * np.abs(ce)) + 2 * np.log(3) + 2 + max_logit
  tolerance.assert_close(got, np.mean(a * t ** 2 * kl + (1 - a) * ce), dtype=np.float32,
                         ulps=tolerance.model_roundings(student) + 3 + 3 + 8 + 13,
                         scale=terms)


def test_distiller_labels_on_clean_needs_a_label_term(teacher):
  student = td.models.mlp((4,), [8], 3, head=td.heads.CategoricalHead(3), seed=1)
  x = np.random.default_rng(6).uniform(size=(8, 4))
  y = np.zeros(8, np.int64)

  def custom(targets, dist):   # a plain callable: no label_term to split off
    del dist
    return tf.reduce_sum(targets["ensemble"], [1, 2])

  distiller = td.Distiller(student, teacher, custom, perturbation=perturb.ODS(0.05))
  distiller.compile(keras.optimizers.Adam(1e-3))
  with pytest.raises(ValueError, match='labels_on="perturbed"'):
    distiller.evaluate(x, y, batch_size=8, verbose=0)
  with pytest.raises(ValueError, match="labels_on"):
    td.Distiller(student, teacher, custom, labels_on="both")
  # MixtureKL ignores labels: no clean pass needed, no error.
  mixture = td.Distiller(student, teacher, td.losses.MixtureKL(td.families.CategoricalLogits(3)),
                         perturbation=perturb.ODS(0.05))
  mixture.compile(keras.optimizers.Adam(1e-3))
  assert np.isfinite(mixture.evaluate(x, y, batch_size=8, verbose=0))


def test_gaussian_noise_and_configs():
  x = tf.fill([20000, 1], 0.5)
  out = perturb.Gaussian(0.1)(x, None, tf.constant([0, 1], tf.int64)).numpy()
  # 2e4 draws of N(0.5, 0.1^2), essentially never clipped: sd within 3%.
  assert abs(out.std() - 0.1) < 0.003 and out.min() >= 0.0 and out.max() <= 1.0
  for p in (perturb.Gaussian(0.3, clip=None), perturb.ODS(0.1, 2.0),
            perturb.ConfODS(0.2, clip=(-1, 1))):
    again = perturb.get({"class_name": type(p).__name__, "config": p.get_config()})
    assert type(again) is type(p) and again.get_config() == p.get_config()
  for bad in (lambda: perturb.ODS(0.0), lambda: perturb.ODS(0.1, temperature=-1),
              lambda: perturb.Gaussian(0.1, clip=(1, 0)), lambda: perturb.get("x")):
    with pytest.raises(ValueError):
      bad()


def _regression_member(seed, dim=3):
  inputs = keras.Input((dim,), dtype="float64")
  h = keras.layers.Dense(6, activation="tanh", dtype="float64",
                         kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
  out = keras.layers.Dense(2, dtype="float64",
                           kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(h)
  return keras.Model(inputs, out)   # [mu, rho] of a HeteroscedasticNormal


def test_mean_disagreement_step_equals_a_finite_difference_reference(tmp_path):
  family = td.families.HeteroscedasticNormal()
  teacher = td.Ensemble([_regression_member(20 * m) for m in range(4)], family=family)
  x = np.random.default_rng(1).normal(size=(5, 3))

  def variance_of_means(xi):   # NumPy: Var_m mu_m(x) with the population variance
    mus = np.array([m(xi[None]).numpy()[0, 0] for m in teacher.members])
    return mus.var()

  h = 1e-6
  grad = np.zeros_like(x)
  for b in range(5):
    for d in range(3):
      e = np.zeros(3)
      e[d] = h
      grad[b, d] = (variance_of_means(x[b] + e) - variance_of_means(x[b] - e)) / (2 * h)
  p = perturb.MeanDisagreement(step_size=0.1, family=family)
  seed = tf.constant([5, 2], tf.int64)
  moved = p(tf.constant(x), teacher, seed).numpy()
  u = tf.random.stateless_uniform([5, 1], seed=seed, dtype=tf.float64).numpy()
  unit = grad / np.linalg.norm(grad, axis=1, keepdims=True)
  # Against the finite-difference direction (truncation ~h^2, cancellation ~1e-10 / h in
  # the gradient, times a step of 0.17): not a count of roundings.
  np.testing.assert_allclose(moved, x + u * 0.1 * np.sqrt(3) * unit, atol=1e-7)
  # The step goes up the disagreement (first order): v(x') > v(x) for small steps.
  small = perturb.MeanDisagreement(step_size=1e-3, family=family)(tf.constant(x), teacher,
                                                                   seed).numpy()
  assert all(variance_of_means(small[b]) > variance_of_means(x[b]) for b in range(5))
  np.testing.assert_array_equal(p(tf.constant(x), teacher, seed).numpy(), moved)
  again = perturb.get({"class_name": "MeanDisagreement", "config": p.get_config()})
  assert again.get_config() == p.get_config()
  assert isinstance(again.family, td.families.HeteroscedasticNormal)
  clipped = perturb.MeanDisagreement(step_size=5.0, family=family, clip=(-0.5, 0.5))(
      tf.constant(x), teacher, seed).numpy()
  assert clipped.min() >= -0.5 and clipped.max() <= 0.5


def test_mean_disagreement_rejects_non_ensemble_targets():
  member = _regression_member(0)
  with pytest.raises(ValueError, match="members, params"):
    perturb.MeanDisagreement(0.1)(tf.zeros([2, 3], tf.float64), member)
