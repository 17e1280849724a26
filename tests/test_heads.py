"""Tests for tfp_distill.heads: densities against SciPy, serialization round trips."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfp_distill as td
from tfp_distill._keras import keras


def _softplus(x):
  return np.logaddexp(0.0, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_head_matches_scipy(dtype):
  rng = np.random.default_rng(1)
  params = rng.normal(size=(5, 6)).astype(dtype)
  z = rng.normal(size=(5, 3)).astype(dtype)
  dist = td.heads.NormalHead.new(params, 3, min_scale=0.1)
  scale = _softplus(params[:, 3:]) + 0.1
  expected = stats.norm.logpdf(z, params[:, :3], scale).sum(-1)
  # TF's softplus uses a thresholded approximation: ~1e-9 relative error in float64.
  rtol = 1e-5 if dtype == np.float32 else 1e-8
  np.testing.assert_allclose(dist.log_prob(z).numpy(), expected, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mvn_tril_head_matches_scipy(dtype):
  rng = np.random.default_rng(2)
  e = 3
  params = rng.normal(size=(4, td.heads.MultivariateNormalTriLHead.params_size(e)))
  params = params.astype(dtype)
  z = rng.normal(size=(4, e)).astype(dtype)
  dist = td.heads.MultivariateNormalTriLHead.new(params, e, min_scale=1e-3)
  tril = dist.scale.to_dense().numpy()
  # The Cholesky factor must be lower triangular with a positive diagonal >= the floor.
  assert np.allclose(np.triu(tril, 1), 0)
  assert np.all(np.diagonal(tril, axis1=-2, axis2=-1) > 1e-3)
  expected = [stats.multivariate_normal(params[i, :e], tril[i] @ tril[i].T).logpdf(z[i])
              for i in range(4)]
  rtol = 1e-4 if dtype == np.float32 else 1e-10
  np.testing.assert_allclose(dist.log_prob(z).numpy(), expected, rtol=rtol)


def test_predictive_head_equals_family_predictive():
  rng = np.random.default_rng(3)
  params = rng.normal(size=(6, 2)).astype(np.float32)
  y = rng.normal(size=(6, 1)).astype(np.float32)
  family = td.families.HeteroscedasticNormal(min_variance=0.01)
  head = td.heads.NormalPredictiveHead.new(params, 1, min_scale=0.01)
  np.testing.assert_allclose(head.log_prob(y).numpy(), -family.nll(y, params).numpy(),
                             rtol=1e-6, atol=1e-6)


def test_params_sizes():
  assert td.heads.NormalHead.params_size(2) == 4
  assert td.heads.MultivariateNormalTriLHead.params_size(2) == 5
  assert td.heads.MultivariateNormalTriLHead.params_size(3) == 9
  assert td.heads.NormalPredictiveHead.params_size(1) == 2


HEADS = [td.heads.NormalHead, td.heads.MultivariateNormalTriLHead,
         td.heads.NormalPredictiveHead]


@pytest.mark.parametrize("head_cls", HEADS)
def test_config_round_trip(head_cls):
  head = head_cls(2, min_scale=0.05, convert_to_tensor_fn="mode", name="h")
  config = head.get_config()
  assert {"event_size", "min_scale", "convert_to_tensor_fn"} <= set(config)
  assert "make_distribution_fn" not in config and "function" not in config
  again = head_cls.from_config(config)
  assert again.get_config() == config
  params = np.random.default_rng(4).normal(size=(3, head_cls.params_size(2)))
  np.testing.assert_allclose(again(params.astype(np.float32)).mean().numpy(),
                             head(params.astype(np.float32)).mean().numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("head_cls", HEADS)
@pytest.mark.parametrize("fmt", ["keras", "tf"])
def test_model_save_load_gives_same_distribution(head_cls, fmt, tmp_path):
  model = td.models.mlp((3,), [8], head_cls.params_size(2), head=head_cls(2), seed=0)
  x = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
  path = str(tmp_path / ("m.keras" if fmt == "keras" else "m_tf"))
  model.save(path, save_format=None if fmt == "keras" else "tf")
  loaded = keras.models.load_model(path)
  before, after = model(x), loaded(x)
  np.testing.assert_allclose(after.mean().numpy(), before.mean().numpy(), rtol=0, atol=1e-7)
  z = before.mean().numpy() + 0.3
  np.testing.assert_allclose(after.log_prob(z).numpy(), before.log_prob(z).numpy(),
                             rtol=1e-6, atol=1e-6)


def test_wrong_params_size_raises():
  with pytest.raises(ValueError, match=r"params of shape \[batch, 5\]"):
    td.heads.MultivariateNormalTriLHead(2)(tf.zeros([3, 4]))
  with pytest.raises(ValueError, match="event_size"):
    td.heads.NormalHead(0)
  with pytest.raises(ValueError, match="convert_to_tensor_fn"):
    td.heads.NormalHead(1, convert_to_tensor_fn="median")


def test_distribution_parameters():
  params = np.random.default_rng(6).normal(size=(3, 5)).astype(np.float32)
  dist = td.heads.MultivariateNormalTriLHead(2)(params)
  p = td.heads.distribution_parameters(dist)
  assert p["loc"].shape == (3, 2) and p["scale_tril"].shape == (3, 2, 2)
  dist = td.heads.NormalHead(2)(params[:, :4])
  p = td.heads.distribution_parameters(dist)
  assert p["loc"].shape == (3, 2) and p["scale"].shape == (3, 2)


# ---------------------------------------------------------------------------------------
# Classification heads
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dirichlet_head_matches_scipy(dtype):
  rng = np.random.default_rng(3)
  params = rng.normal(size=(4, 5)).astype(dtype)
  dist = td.heads.DirichletHead.new(params, 5, min_scale=1e-3)
  alpha = np.exp(params.astype(np.float64)) + 1e-3
  np.testing.assert_allclose(dist.concentration.numpy(), alpha, rtol=1e-6)
  p = rng.dirichlet(np.ones(5), size=4)
  expected = [stats.dirichlet.logpdf(p[b], alpha[b]) for b in range(4)]
  # TF's lgamma differs from SciPy's by ~1e-10 relative; cancellation in the sum.
  rtol = 1e-4 if dtype == np.float32 else 1e-8
  np.testing.assert_allclose(dist.log_prob(p.astype(dtype)).numpy(), expected, rtol=rtol)
  np.testing.assert_allclose(dist.mean().numpy(), alpha / alpha.sum(-1, keepdims=True),
                             rtol=1e-5)


def test_dirichlet_head_is_finite_for_extreme_logits():
  params = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)
  dist = td.heads.DirichletHead.new(params, 3)
  alpha = dist.concentration.numpy()
  assert np.all(np.isfinite(alpha)) and np.all(alpha >= 1e-3)
  np.testing.assert_allclose(alpha[0, 0], np.exp(np.float32(30.0)) + 1e-3, rtol=1e-6)
  u = td.decompose(dist, td.families.CategoricalLogits(3))
  for value in u.values():
    assert np.all(np.isfinite(value.numpy()))


def test_categorical_head_is_a_one_hot_categorical():
  logits = np.array([[1.0, 2.0, 3.0]], np.float32)
  dist = td.heads.CategoricalHead.new(logits, 3)
  np.testing.assert_allclose(dist.mean().numpy(),
                             np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)
  np.testing.assert_allclose(dist.log_prob(np.array([[0., 0., 1.]], np.float32)).numpy(),
                             logits[:, 2] - np.log(np.exp(logits).sum()), rtol=1e-6)
  params = td.heads.distribution_parameters(dist)
  np.testing.assert_allclose(params["logits"].numpy(), logits)


@pytest.mark.parametrize("head_cls", [td.heads.DirichletHead, td.heads.CategoricalHead])
def test_classification_heads_round_trip(head_cls, tmp_path):
  head = head_cls(4, min_scale=1e-2)
  config = head.get_config()
  assert config["event_size"] == 4 and config["min_scale"] == 1e-2
  assert head_cls.from_config(config).get_config() == config
  model = td.models.mlp((3,), [8], head_cls.params_size(4), head=head_cls(4), seed=1)
  path = str(tmp_path / "student.keras")
  model.save(path)
  again = keras.models.load_model(path)
  x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
  np.testing.assert_allclose(again(x).mean().numpy(), model(x).mean().numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match=">= 2"):
    head_cls(1)
  with pytest.raises(ValueError, match=r"params of shape \[batch, 4\]"):
    head_cls(4)(tf.zeros([2, 5]))
