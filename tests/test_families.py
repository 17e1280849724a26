"""Tests for tfp_distill.families against SciPy closed forms."""

import json

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfp_distill as td


def _softplus(x):
  return np.logaddexp(0.0, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("event_size", [1, 3])
def test_heteroscedastic_normal_matches_scipy(dtype, event_size):
  rng = np.random.default_rng(0)
  family = td.families.HeteroscedasticNormal(event_size=event_size, min_variance=1e-2)
  z = rng.normal(size=(7, 2 * event_size)).astype(dtype)
  y = rng.normal(size=(7, event_size)).astype(dtype)
  mu, rho = z[:, :event_size], z[:, event_size:]
  var = _softplus(rho) + 1e-2
  expected_nll = -stats.norm.logpdf(y, mu, np.sqrt(var)).sum(-1)
  expected_entropy = stats.norm.entropy(mu, np.sqrt(var)).sum(-1)
  # TF's softplus uses a thresholded approximation: ~1e-9 relative error in float64.
  rtol = 1e-5 if dtype == np.float32 else 1e-8
  np.testing.assert_allclose(family.nll(y, z).numpy(), expected_nll, rtol=rtol, atol=rtol)
  np.testing.assert_allclose(family.variance(z).numpy(), var, rtol=rtol)
  np.testing.assert_allclose(family.mean(z).numpy(), mu, rtol=0, atol=0)
  np.testing.assert_allclose(family.entropy(z).numpy(), expected_entropy, rtol=rtol, atol=rtol)
  assert family.predictive(z).batch_shape == [7]
  assert family.predictive(z).event_shape == [event_size]


def test_nll_accepts_rank1_labels_for_event_size_1():
  family = td.families.HeteroscedasticNormal()
  z = np.array([[0.5, -1.0], [1.0, 2.0]], np.float32)
  y = np.array([0.0, 1.0], np.float32)
  np.testing.assert_allclose(family.nll(y, z).numpy(), family.nll(y[:, None], z).numpy(),
                             rtol=0, atol=0)


def test_params_size_and_config_round_trip():
  family = td.families.HeteroscedasticNormal(event_size=2, min_variance=0.5)
  assert family.params_size == 4
  again = td.families.get(td.families.serialize(family))
  assert again == family and again.get_config() == {"event_size": 2, "min_variance": 0.5}


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="event_size"):
    td.families.HeteroscedasticNormal(event_size=0)
  with pytest.raises(ValueError, match="min_variance"):
    td.families.HeteroscedasticNormal(min_variance=0.0)
  family = td.families.HeteroscedasticNormal()
  with pytest.raises(ValueError, match=r"params_size=2"):
    family.variance(tf.zeros([3, 5]))


# ---------------------------------------------------------------------------------------
# CategoricalLogits
# ---------------------------------------------------------------------------------------


def _log_softmax(x):
  return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def test_categorical_logits_reference_class_centring():
  family = td.families.CategoricalLogits(4, reference_class=True)
  assert family.params_size == 3
  logits = np.random.default_rng(0).normal(size=(5, 4))
  z = family.params(logits).numpy()
  np.testing.assert_allclose(z, logits[:, :3] - logits[:, 3:], atol=1e-12)
  # Centring changes the logits by a constant per row: identical probabilities.
  np.testing.assert_allclose(family.probs(z).numpy(), np.exp(_log_softmax(logits)),
                             atol=1e-12)
  np.testing.assert_allclose(family.logits(z).numpy()[:, 3], 0.0)
  # Without a reference class z is the K logits themselves.
  plain = td.families.CategoricalLogits(4)
  np.testing.assert_array_equal(plain.params(logits).numpy(), logits)


@pytest.mark.parametrize("reference_class", [False, True])
def test_categorical_logits_nll_and_entropy_match_numpy(reference_class):
  family = td.families.CategoricalLogits(3, reference_class=reference_class)
  logits = np.array([[1.0, 2.0, 3.0], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
  labels = np.array([2, 1, 0])
  log_p = _log_softmax(logits)
  nll = family.nll(labels, logits).numpy()
  np.testing.assert_allclose(nll, -log_p[np.arange(3), labels], rtol=1e-12)
  assert np.all(np.isfinite(nll))   # 2e4 nats for the +-1e4 row, not inf
  p = np.exp(log_p)
  np.testing.assert_allclose(family.entropy(logits).numpy(),
                             -np.sum(np.where(p > 0, p * log_p, 0.0), -1), atol=1e-12)
  assert float(family.predictive(logits).log_prob(2)[0]) == pytest.approx(log_p[0, 2])


def test_categorical_logits_bad_input():
  family = td.families.CategoricalLogits(3, reference_class=True)
  with pytest.raises(ValueError, match="num_classes must be >= 2"):
    td.families.CategoricalLogits(1)
  with pytest.raises(ValueError, match="expects 3 logits"):
    family.params(np.zeros((2, 5)))
  with pytest.raises(ValueError, match=r"Labels must be integers in \[0, 3\)"):
    family.nll(np.array([0, 3]), np.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"in \[0, 3\)"):
    family.nll(np.array([-1, 0]), np.zeros((2, 3)))


def test_categorical_logits_serializes():
  family = td.families.CategoricalLogits(10, reference_class=True)
  again = td.families.get(td.families.serialize(family))
  assert again == family and again.params_size == 9
  assert json.loads(json.dumps(td.families.serialize(family)))["config"] == {
      "num_classes": 10, "reference_class": True}
