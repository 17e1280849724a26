"""Tests for tfp_distill.families against SciPy closed forms."""

import json

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfp_distill as td

import tolerance


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
  var = _softplus(rho.astype(np.float64)) + 1e-2      # float64 references of the inputs
  expected_nll = -stats.norm.logpdf(y, mu, np.sqrt(var)).sum(-1)
  expected_entropy = stats.norm.entropy(mu, np.sqrt(var)).sum(-1)
  # The variance: softplus (TF's: within 5 eps of log(1 + e^x)) and the floor, 6 eps.
  tolerance.assert_close(family.variance(z).numpy(), var, dtype=dtype, ulps=6, scale=var)
  # The NLL: a Gaussian log density whose scale, the root of that variance, is 7 eps off.
  ulps, magnitude = tolerance.normal_log_density_bound(y, mu, np.sqrt(var), 7)
  tolerance.assert_close(family.nll(y, z).numpy(), expected_nll, dtype=dtype, ulps=ulps,
                         scale=magnitude)
  np.testing.assert_allclose(family.mean(z).numpy(), mu, rtol=0, atol=0)
  # The entropy, sum_e log(2 pi e var_e) / 2: each log 6 + 1 eps (relative to 1), the sum
  # of E terms E eps of their |sum|: (E + 8) eps of sum_e (|log(2 pi e var_e)| / 2 + 1).
  terms = (np.abs(np.log(2 * np.pi * np.e * var)) / 2 + 1).sum(-1)
  tolerance.assert_close(family.entropy(z).numpy(), expected_entropy, dtype=dtype,
                         ulps=event_size + 8, scale=terms)
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
  # One float64 subtraction on either side.
  tolerance.assert_close(z, logits[:, :3] - logits[:, 3:], dtype=np.float64, ulps=1,
                         scale=2 * np.abs(logits).max())
  # Centring changes the logits by a constant per row: identical probabilities, up to
  # rounding. Each side is a softmax of K = 4 (exp, a sum of K, a quotient: K + 3 eps)
  # of logits rounded by centring (an absolute 2 max|l| eps in the exponent): each p
  # within (K + 3 + 2 max|l|) eps of itself, twice that of the other side.
  p = np.exp(_log_softmax(logits))
  tolerance.assert_close(family.probs(z).numpy(), p, dtype=np.float64, ulps=2,
                         scale=p * (4 + 3 + 2 * np.abs(logits).max()))
  np.testing.assert_array_equal(family.logits(z).numpy()[:, 3], 0.0)   # appended zeros
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
  # float64 log-softmax on either side (max-shifted): each log p within
  # eps (|log p| + 2 log K + 2) (see test_properties), twice that of the other side.
  log_bound = np.abs(log_p) + 2 * np.log(3) + 2
  tolerance.assert_close(nll, -log_p[np.arange(3), labels], dtype=np.float64, ulps=2,
                         scale=log_bound[np.arange(3), labels])
  assert np.all(np.isfinite(nll))   # 2e4 nats for the +-1e4 row, not inf
  p = np.exp(log_p)
  # The entropy: those log p weighted by p, and a sum of K = 3 terms p log p, twice:
  # 2 (K + 1) eps of sum_k p_k (|log p_k| + 2 log K + 2).
  tolerance.assert_close(family.entropy(logits).numpy(),
                         -np.sum(np.where(p > 0, p * log_p, 0.0), -1), dtype=np.float64,
                         ulps=2 * (3 + 1), scale=(p * log_bound).sum(-1))
  assert float(family.predictive(logits).log_prob(2)[0]) == pytest.approx(
      log_p[0, 2], rel=0, abs=tolerance.atol(dtype=np.float64, ulps=2,
                                              scale=log_bound[0, 2]))


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
