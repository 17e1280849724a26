"""Tests for tfp_distill.heads: densities against SciPy, serialization round trips."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special
from scipy import stats

import tfp_distill as td
from tfp_distill._keras import keras

import tolerance


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
  # A Gaussian log density over E = 3 from the same loc and a softplus scale (6 eps:
  # TF's softplus is within 2-5 eps of log(1 + e^x) in both dtypes, + the floor).
  ulps, magnitude = tolerance.normal_log_density_bound(z, params[:, :3], scale, 6)
  tolerance.assert_close(dist.log_prob(z).numpy(), expected, dtype=dtype, ulps=ulps,
                         scale=magnitude)


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
  cov = tril.astype(np.float64) @ np.swapaxes(tril, 1, 2).astype(np.float64)
  expected = [stats.multivariate_normal(params[i, :e], cov[i]).logpdf(z[i])
              for i in range(4)]
  # SciPy's density from L L^T (an eigendecomposition of a covariance whose condition is
  # that of L squared, computed in float64 for both dtypes): a check of the formula, to
  # 1e-6 relative (measured 2e-13).
  reference, scale = tolerance.mvn_log_density(z, params[:, :e], tril)
  np.testing.assert_allclose(reference, expected, rtol=1e-6)
  # The rounding bound of the log density from the head's own L (see mvn_log_density).
  tolerance.assert_close(dist.log_prob(z).numpy(), reference, dtype=dtype, ulps=2 * e + 4,
                         scale=scale)


def test_predictive_head_equals_family_predictive():
  rng = np.random.default_rng(3)
  params = rng.normal(size=(6, 2)).astype(np.float32)
  y = rng.normal(size=(6, 1)).astype(np.float32)
  family = td.families.HeteroscedasticNormal(min_variance=0.01)
  head = td.heads.NormalPredictiveHead.new(params, 1, min_scale=0.01)
  # The same computation (the head is family.predictive(params)): equal, up to one
  # rounding of the log density.
  tolerance.assert_close(head.log_prob(y).numpy(), -family.nll(y, params).numpy(),
                         dtype=np.float32, ulps=1)


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
  # The same float32 ops on the same weights, perhaps in another graph: one forward pass
  # of Dense(8) on 3 inputs, relu, Dense on 8, (3 + 2) + 1 + (8 + 2) = 16 eps of the means.
  tolerance.assert_close(after.mean().numpy(), before.mean().numpy(), dtype=np.float32,
                         ulps=16)
  z = before.mean().numpy() + 0.3
  # The log density's own rounding (tolerance.normal_log_density_bound, scale 6 eps off)
  # and the params' 16 eps, which its terms carry with a gain of about their own size.
  ulps, magnitude = tolerance.normal_log_density_bound(
      z, before.mean().numpy(), before.stddev().numpy(), 6)
  tolerance.assert_close(after.log_prob(z).numpy(), before.log_prob(z).numpy(),
                         dtype=np.float32, ulps=ulps + 2 * 16, scale=magnitude)


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
  # exp (TF's: within 2 eps) and the floor's addition: 3 eps of alpha.
  tolerance.assert_close(dist.concentration.numpy(), alpha, dtype=dtype, ulps=3, scale=alpha)
  p = rng.dirichlet(np.ones(5), size=4)
  expected = [stats.dirichlet.logpdf(p[b], alpha[b]) for b in range(4)]
  # log p = sum_k (alpha_k - 1) log p_k + lgamma(alpha_0) - sum_k lgamma(alpha_k): 2 K + 1
  # terms (K = 5), each within a few eps (lgamma, log: 4; the products 2), summed: 2 K + 8
  # eps of sum |terms|; alpha's own 3 eps enter through d/d alpha = digamma + log p.
  a0 = alpha.sum(-1)
  log_p = np.log(p)
  terms = (np.abs(special.gammaln(alpha)) + np.abs((alpha - 1) * log_p)
           + alpha * (np.abs(special.digamma(alpha)) + np.abs(log_p))).sum(-1) + (
               np.abs(special.gammaln(a0)) + a0 * np.abs(special.digamma(a0)))
  tolerance.assert_close(dist.log_prob(p.astype(dtype)).numpy(), expected, dtype=dtype,
                         ulps=2 * 5 + 8, scale=terms)
  # alpha (3 eps each) over alpha_0 (their sum: 3 + K + 1): 2 (3) + K + 2 eps, relative.
  mean = alpha / alpha.sum(-1, keepdims=True)
  tolerance.assert_close(dist.mean().numpy(), mean, dtype=dtype, ulps=6 + 5 + 2, scale=mean)


def test_dirichlet_head_is_finite_for_extreme_logits():
  params = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)
  dist = td.heads.DirichletHead.new(params, 3)
  alpha = dist.concentration.numpy()
  assert np.all(np.isfinite(alpha)) and np.all(alpha >= 1e-3)
  # exp of the clipped 30 (TF's exp: within 2 eps) plus the floor: 3 eps of itself.
  tolerance.assert_close(alpha[0, 0], np.exp(30.0) + 1e-3, dtype=np.float32, ulps=3,
                         scale=np.exp(30.0))
  u = td.decompose(dist, td.families.CategoricalLogits(3))
  for value in u.values():
    assert np.all(np.isfinite(value.numpy()))


def test_categorical_head_is_a_one_hot_categorical():
  logits = np.array([[1.0, 2.0, 3.0]], np.float32)
  dist = td.heads.CategoricalHead.new(logits, 3)
  # softmax of K = 3 logits: exp (2 eps), a sum of K, a quotient: K + 3 eps, relative.
  exact = np.exp(logits.astype(np.float64)) / np.exp(logits.astype(np.float64)).sum()
  tolerance.assert_close(dist.mean().numpy(), exact, dtype=np.float32, ulps=3 + 3,
                         scale=exact)
  # A log-softmax entry: logsumexp (K + 3 eps of the logits' size and log K) and one
  # subtraction.
  log_z = np.log(np.exp(logits.astype(np.float64)).sum())
  tolerance.assert_close(dist.log_prob(np.array([[0., 0., 1.]], np.float32)).numpy(),
                         logits[:, 2] - log_z, dtype=np.float32, ulps=3 + 4,
                         scale=np.abs(logits).max() + log_z)
  params = td.heads.distribution_parameters(dist)
  np.testing.assert_array_equal(params["logits"].numpy(), logits)   # the same tensor


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
  # The same float32 ops on the same weights: a forward pass of Dense(8) on 3 inputs,
  # relu, Dense on 8 (16 eps of the params) and the head's mean, a softmax or alpha / alpha_0
  # over K = 4 (K + 3 eps of each value, the params' error carried with gain <= 1):
  # 16 + 7 eps of the probabilities, relative.
  want = model(x).mean().numpy()
  tolerance.assert_close(again(x).mean().numpy(), want, dtype=np.float32, ulps=16 + 7,
                         scale=want)
  with pytest.raises(ValueError, match=">= 2"):
    head_cls(1)
  with pytest.raises(ValueError, match=r"params of shape \[batch, 4\]"):
    head_cls(4)(tf.zeros([2, 5]))


def _targets_in_user_units(rng, rows=400, members=5, width=2):
  """z [rows, members, width]: members' outputs far from 0 and 1 (a price, an energy)."""
  centre = np.array([250.0, -40.0])[:width]
  row_mean = centre + 30.0 * rng.normal(size=(rows, 1, width))
  return row_mean + np.array([4.0, 0.2])[:width] * rng.normal(size=(rows, members, width))


@pytest.mark.parametrize("head_cls", [td.heads.NormalHead, td.heads.MultivariateNormalTriLHead])
def test_output_normalization_starts_at_the_targets_location_and_spread(head_cls):
  """An untrained student (Dense output h = 0) behind the inverted Normalization predicts
  the targets' mean over rows and members and, as its scale, the members' root-mean-square
  spread about their row mean; one unit of h moves a location by the targets' sd."""
  rng = np.random.default_rng(0)
  z = _targets_in_user_units(rng)
  head = head_cls(2)
  mean, variance = td.parameterization.output_normalization(head, z)
  layer = keras.layers.Normalization(mean=mean, variance=variance, invert=True)
  params = layer(np.zeros((1, head_cls.params_size(2)), np.float32))
  dist = head_cls.new(params, 2)
  want_loc = z.reshape(-1, 2).mean(0)
  want_spread = np.sqrt(np.var(z, axis=1).mean(0))
  # One cast to float32 of the mean, the layer's multiply-add by 0: 2 eps of |loc|.
  tolerance.assert_close(dist.mean().numpy()[0], want_loc, dtype=np.float32, ulps=2)
  # softplus(softplus^-1(s - floor)) + floor in float32: the casts, softplus, one add.
  stddev = dist.stddev().numpy()[0]
  tolerance.assert_close(stddev, want_spread, dtype=np.float32,
                         ulps=tolerance.FUNCTION_ULPS["softplus"] + 4)
  if head_cls is td.heads.MultivariateNormalTriLHead:
    tril = td.heads.distribution_parameters(dist)["scale_tril"].numpy()[0]
    assert tril[1, 0] == 0.0        # no correlation until trained
  moved = layer(np.eye(head_cls.params_size(2), dtype=np.float32)[:1])   # h_0 = 1
  step = head_cls.new(moved, 2).mean().numpy()[0, 0] - want_loc[0]
  np.testing.assert_allclose(step, z[..., 0].std(), rtol=1e-5)   # float32 of ~250: 1e-5


def test_output_normalization_of_the_predictive_head_is_the_ensemble_predictive():
  """NormalPredictiveHead over y: h = 0 gives the ensemble's predictive mean and variance
  averaged over rows (members' z = [mu, rho], variance softplus(rho) + floor)."""
  rng = np.random.default_rng(1)
  mu = _targets_in_user_units(rng, width=1)
  rho = rng.normal(3.0, 0.5, size=mu.shape)
  z = np.concatenate([mu, rho], axis=-1)
  head = td.heads.NormalPredictiveHead(1, min_scale=1e-3)
  mean, variance = td.parameterization.output_normalization(head, z)
  params = keras.layers.Normalization(mean=mean, variance=variance, invert=True)(
      np.zeros((1, 2), np.float32))
  dist = td.heads.NormalPredictiveHead.new(params, 1, min_scale=1e-3)
  var = np.logaddexp(0.0, rho) + 1e-3
  want_var = (var + (mu - mu.mean(1, keepdims=True)) ** 2).mean(1).mean()
  tolerance.assert_close(dist.mean().numpy()[0, 0], mu.mean(), dtype=np.float32, ulps=2)
  tolerance.assert_close(dist.variance().numpy()[0, 0], want_var, dtype=np.float32,
                         ulps=tolerance.FUNCTION_ULPS["softplus"] + 4)


def test_output_normalization_refuses_class_heads_and_other_widths():
  z = np.zeros((4, 3, 2))
  with pytest.raises(ValueError, match="NormalHead, MultivariateNormalTriLHead"):
    td.parameterization.output_normalization(td.heads.DirichletHead(2), z)
  with pytest.raises(ValueError, match="width 3, got width 2"):
    td.parameterization.output_normalization(td.heads.NormalHead(3), z)
  with pytest.raises(ValueError, match=r"\[rows, members, P\]"):
    td.parameterization.output_normalization(td.heads.NormalHead(2), z[0])


def test_constant_targets_keep_a_finite_normalization():
  """Targets that do not vary (one member, a constant output) give unit widths, not 0."""
  mean, variance = td.parameterization.output_normalization(td.heads.NormalHead(2),
                                                            np.full((5, 1, 2), 7.0))
  assert np.all(np.isfinite(mean)) and np.all(variance > 0)
  np.testing.assert_array_equal(mean[:2], [7.0, 7.0])
