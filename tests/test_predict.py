"""td.predict_uncertainty: the same numbers as td.decompose, batched, compiled once."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill import predict as predict_lib

import tolerance

CLASSES = td.families.CategoricalLogits(4)
REGRESSION = td.families.HeteroscedasticNormal()


def _x(n=11, d=3, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _dirichlet_student():
  return td.models.mlp((3,), [8], 4, head=td.heads.DirichletHead(4), seed=1)


# Rounding counts (tests/tolerance.py) of the pieces compared below, in float32 eps:
# the students' forward pass (tolerance.model_roundings: 19 for an MLP 3 -> 8 -> P), and
# the decompositions: a Dirichlet's closed form (alpha = exp + floor 3, alpha_0 a sum of
# K = 4, digamma 8, K-term entropies: K + 19); Gauss-Hermite over 40 nodes (softplus 5,
# the 40-term sum: 45 + 8); an ensemble's M = 3 Gaussians (means and variances over M:
# 3 M + 10); entropies of K classes over m draws (test_properties' bound,
# (K + m + 8) (2 + log K)^2).
DIRICHLET = 4 + 19
QUADRATURE = 45 + 8


def _entropies(k, m):
  return int((k + m + 8) * (2 + np.log(k)) ** 2)


def _assert_same(got, want, *, ulps):
  """got == want up to `ulps` eps(float32) of each output's magnitude + 1.

  The outputs (probabilities, entropies of K = 4 classes, variances) are of order 1, and
  the decompositions pass their inputs' rounding on with a gain of order 1 here (params of
  order 1), so the bound is the sum of the pieces' counts, relative to max|output| + 1.
  """
  assert set(got) == set(want)
  for key in want:
    assert isinstance(got[key], np.ndarray)
    want_key = np.asarray(want[key])
    tolerance.assert_close(got[key], want_key, dtype=np.float32, ulps=ulps,
                           scale=tolerance.magnitude(want_key) + 1, err_msg=key)


@pytest.mark.parametrize("batch_size", [1, 4, 11, 1024])
def test_student_equals_decompose_for_any_batch_size(batch_size):
  student, x = _dirichlet_student(), _x()
  got = td.predict_uncertainty(student, CLASSES, x, batch_size=batch_size)
  # Closed form, float32, the same ops (in other batches): equal up to rounding.
  _assert_same(got, td.decompose(student(x), CLASSES),
               ulps=tolerance.model_roundings(student) + DIRICHLET)
  assert got["prediction"].shape == (11, 4) and got["epistemic"].shape == (11,)


def test_regression_and_ensemble_and_batch_ensemble():
  x = _x()
  head = td.heads.MultivariateNormalTriLHead
  student = td.models.mlp((3,), [8], head.params_size(2), head=head(2), seed=2)
  _assert_same(td.predict_uncertainty(student, REGRESSION, x, batch_size=5),
               td.decompose(student(x), REGRESSION),
               ulps=tolerance.model_roundings(student) + QUADRATURE)
  members = [td.models.mlp((3,), [8], 2, seed=s) for s in range(3)]
  for vectorize in (True, False):
    ens = td.Ensemble(members, family=REGRESSION, vectorize=vectorize)
    _assert_same(td.predict_uncertainty(ens, REGRESSION, x, batch_size=4),
                 td.decompose_ensemble(ens(x), REGRESSION),
                 ulps=tolerance.model_roundings(members[0]) + 3 * 3 + 10)
  images = np.random.default_rng(1).uniform(size=(6, 28, 28, 1)).astype(np.float32)
  batch_ensemble = td.models.batch_ensemble_cnn(num_classes=4, ensemble_size=3,
                                                filters=(4, 8), dense_units=8, seed=0)
  _assert_same(td.predict_uncertainty(batch_ensemble, CLASSES, images, batch_size=4),
               td.decompose_ensemble(batch_ensemble(images), CLASSES),
               ulps=tolerance.model_roundings(batch_ensemble) + _entropies(4, 3))


def test_monte_carlo_student_is_batch_invariant():
  student = td.models.mlp((3,), [8], td.heads.NormalHead.params_size(4),
                          head=td.heads.NormalHead(4), seed=3)
  x = _x()
  want = td.decompose(student(x), CLASSES, num_samples=64, seed=5)
  # Common noise (the default): every example uses the same draws, so any batch split
  # gives td.decompose's numbers.
  # The same draws: the forward pass, loc + L eps (P + 2) and the entropies over 64 draws.
  for batch_size in (1, 3, 1024):
    _assert_same(td.predict_uncertainty(student, CLASSES, x, batch_size=batch_size,
                                        num_samples=64, seed=5), want,
                 ulps=tolerance.model_roundings(student) + 4 + 2 + _entropies(4, 64))
  # Independent draws per example: other numbers, the same expectation. 4000 samples: the
  # Monte Carlo error of these entropies is below ~1e-2 (|H| <= log 4); 0.05 is > 5 sigma.
  a = td.predict_uncertainty(student, CLASSES, x, batch_size=3, num_samples=4000,
                             common_noise=False)
  b = td.decompose(student(x), CLASSES, num_samples=4000, seed=9)
  for key in ("total", "aleatoric", "epistemic"):
    np.testing.assert_allclose(a[key], b[key].numpy(), atol=0.05)


def test_datasets_batched_unbatched_and_labelled():
  student, x = _dirichlet_student(), _x()
  want = td.decompose(student(x), CLASSES)
  y = np.arange(11) % 4
  for ds in (tf.data.Dataset.from_tensor_slices(x).batch(3),
             tf.data.Dataset.from_tensor_slices(x),                 # single examples
             tf.data.Dataset.from_tensor_slices((x, y)).batch(5),
             tf.data.Dataset.from_tensor_slices(x.astype(np.float64)).batch(4)):
    _assert_same(td.predict_uncertainty(student, CLASSES, ds, batch_size=4), want,
                 ulps=tolerance.model_roundings(student) + DIRICHLET)


def test_the_compiled_function_is_reused():
  student, x = _dirichlet_student(), _x()
  td.predict_uncertainty(student, CLASSES, x, batch_size=4)
  cache = getattr(student, predict_lib._CACHE_ATTRIBUTE)   # pylint: disable=protected-access
  assert len(cache) == 1
  fn = next(iter(cache.values()))
  td.predict_uncertainty(student, CLASSES, x[:7], batch_size=2)   # other batch sizes
  td.predict_uncertainty(student, CLASSES, tf.data.Dataset.from_tensor_slices(x).batch(5))
  assert len(cache) == 1 and next(iter(cache.values())) is fn
  td.predict_uncertainty(student, CLASSES, x, num_samples=7)   # other settings: a new one
  assert len(cache) == 2
  # The cache is not part of the model: it saves and reloads as before.
  assert all("predict" not in v.name for v in student.variables)


def test_agrees_with_the_exported_saved_model(tmp_path):
  student, x = _dirichlet_student(), _x()
  path = td.export_saved_model(student, CLASSES, str(tmp_path / "student"))
  served = tf.saved_model.load(path).signatures["serving_default"]
  out = served(x=tf.constant(x))
  got = td.predict_uncertainty(student, CLASSES, x, batch_size=4)
  _assert_same(got, {key: out[key].numpy() for key in got},   # (it serves params too)
               ulps=tolerance.model_roundings(student) + DIRICHLET)


def test_xla_agrees():
  student, x = _dirichlet_student(), _x()
  got = td.predict_uncertainty(student, CLASSES, x, jit_compile=True)
  # XLA fuses and reorders float32 arithmetic and has its own exp, log and digamma
  # (a few eps each, counted twice more).
  _assert_same(got, td.decompose(student(x), CLASSES),
               ulps=tolerance.model_roundings(student) + DIRICHLET + 2 * (2 + 2 + 8))


def test_bad_input_is_refused_clearly():
  student, x = _dirichlet_student(), _x()
  member = td.models.mlp((3,), [8], 4, seed=0)           # logits [batch, 4]: not a student
  with pytest.raises(ValueError, match="fits neither"):
    td.predict_uncertainty(member, CLASSES, x)
  wrong_family = td.Ensemble([td.models.mlp((3,), [8], 2, seed=s) for s in range(2)])
  with pytest.raises(ValueError, match="params"):
    td.predict_uncertainty(wrong_family, CLASSES, x)
  with pytest.raises(ValueError, match="empty"):
    td.predict_uncertainty(student, CLASSES, x[:0])
  with pytest.raises(ValueError, match="no batches"):
    td.predict_uncertainty(student, CLASSES, tf.data.Dataset.from_tensor_slices(x).take(0))
  for bad in (0, -3, 2.5, True):
    with pytest.raises(ValueError, match="batch_size"):
      td.predict_uncertainty(student, CLASSES, x, batch_size=bad)
  with pytest.raises(ValueError, match="numeric"):
    td.predict_uncertainty(lambda t: t, CLASSES, np.array([["a"], ["b"]]))
  with pytest.raises(ValueError, match="Dataset must yield"):
    td.predict_uncertainty(student, CLASSES,
                           tf.data.Dataset.from_tensor_slices({"x": x}).batch(2))
