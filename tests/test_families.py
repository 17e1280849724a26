"""Tests for tfp_distill.families against SciPy closed forms."""

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
