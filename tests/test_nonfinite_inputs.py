"""Rows of NaN or Inf never come back as plausible numbers: td.predict_uncertainty,
td.Ensemble and the exported serving signature (before: a NaN row gave a prediction of
about [0.335, 0.336, 0.329] and an epistemic value of 0.233, because a fused
MatMul+BiasAdd+Relu kernel maps NaN to 0)."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td

FAMILY = td.families.CategoricalLogits(3)


@pytest.fixture(scope="module", name="models")
def models_fixture():
  members = [td.models.mlp((4,), [8], 3, seed=s) for s in range(3)]
  student = td.models.mlp((4,), [8], 3, head=td.heads.DirichletHead(3), seed=7)
  x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
  bad = x.copy()
  bad[2, 1] = np.nan
  bad[4, 0] = np.inf
  return td.Ensemble(members), student, x, bad


def test_predict_uncertainty_names_the_row_or_gives_nan(models):
  ensemble, student, x, bad = models
  for model in (student, ensemble):
    with pytest.raises(ValueError, match=r"2 input row\(s\) hold NaN or Inf, the first is "
                       r"row 2; pass nonfinite='nan'"):
      td.predict_uncertainty(model, FAMILY, bad)
    clean = td.predict_uncertainty(model, FAMILY, x)
    out = td.predict_uncertainty(model, FAMILY, bad, nonfinite="nan")
    for key, value in out.items():
      assert np.all(np.isnan(value[[2, 4]])), key
      # The other rows are the clean rows' values: the same graph on the same rows.
      np.testing.assert_array_equal(value[[0, 1, 3, 5]], clean[key][[0, 1, 3, 5]])
  with pytest.raises(ValueError, match="num_samples must be an int >= 1, got 0"):
    td.predict_uncertainty(student, FAMILY, x, num_samples=0)
  with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
    td.decompose(student(x), FAMILY, num_samples=0)


def test_the_ensemble_raises_eagerly_and_gives_nan_in_a_graph(models):
  ensemble, _, x, bad = models
  with pytest.raises(ValueError, match=r"td.Ensemble: 2 input row\(s\) hold NaN or Inf, "
                     "the first is row 2"):
    ensemble(bad)
  z = tf.function(lambda t: ensemble(t))(tf.constant(bad)).numpy()
  assert np.all(np.isnan(z[[2, 4]]))
  np.testing.assert_array_equal(z[[0, 1, 3, 5]], ensemble(x).numpy()[[0, 1, 3, 5]])


def test_the_served_signature_gives_nan_rows(models, tmp_path):
  _, student, x, bad = models
  path = td.export_saved_model(student, FAMILY, str(tmp_path / "served"))
  serve = tf.saved_model.load(path).signatures["serving_default"]
  clean = serve(x=tf.constant(x))
  out = serve(x=tf.constant(bad))
  for key, value in out.items():
    value = value.numpy()
    assert np.all(np.isnan(value[[2, 4]])), key
    np.testing.assert_array_equal(value[[0, 1, 3, 5]], clean[key].numpy()[[0, 1, 3, 5]])
