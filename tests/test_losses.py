"""Tests for tfp_distill.losses against SciPy closed forms and numerical integration."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import integrate
from scipy import stats

import tfp_distill as td
from tfp_distill._keras import keras

import tolerance

FAMILY = td.families.HeteroscedasticNormal(event_size=1, min_variance=1e-3)


def _softplus(x):
  return np.logaddexp(0.0, x)


def _mvn_head(batch=4, event=2, seed=0, dtype=np.float64):
  params = np.random.default_rng(seed).normal(
      size=(batch, td.heads.MultivariateNormalTriLHead.params_size(event))).astype(dtype)
  return td.heads.MultivariateNormalTriLHead.new(params, event, min_scale=0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ensemble_nll_matches_scipy(dtype):
  dist = _mvn_head(dtype=dtype)
  z = np.random.default_rng(1).normal(size=(4, 5, 2)).astype(dtype)   # [batch, members, 2]
  loc, tril = dist.loc.numpy(), dist.scale.to_dense().numpy()
  cov = tril.astype(np.float64) @ np.swapaxes(tril, 1, 2).astype(np.float64)
  expected = [-np.mean([stats.multivariate_normal(loc[b], cov[b]).logpdf(z[b, m])
                        for m in range(5)]) for b in range(4)]
  # The float64 reference from the head's own L (tolerance.mvn_log_density); SciPy's,
  # through L L^T, checks its formula to 1e-6.
  log_p, magnitude = zip(*[tolerance.mvn_log_density(z[:, m], loc, tril) for m in range(5)])
  reference, magnitude = -np.mean(log_p, 0), np.mean(magnitude, 0)
  np.testing.assert_allclose(reference, expected, rtol=1e-6)
  # Each member's log density within (2 d + 4) eps of its magnitude (d = 2), and the mean
  # over M = 5 members M + 1 more.
  tolerance.assert_close(td.losses.ensemble_nll(z, dist).numpy(), reference, dtype=dtype,
                         ulps=2 * 2 + 4 + 5 + 1, scale=magnitude)


def test_ensemble_nll_in_tf_function_with_dynamic_batch():
  dist_params = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
  z = np.random.default_rng(3).normal(size=(3, 4, 2)).astype(np.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, 5]), tf.TensorSpec([None, None, 2])])
  def f(p, zz):
    return td.losses.ensemble_nll(zz, td.heads.MultivariateNormalTriLHead.new(p, 2))

  eager = td.losses.ensemble_nll(z, td.heads.MultivariateNormalTriLHead.new(dist_params, 2))
  # Either within the MVN log density's bound ((2 d + 4) eps, d = 2) and the mean over
  # M = 4 members (M + 1) of the float64 reference: twice that of each other.
  tril = td.heads.MultivariateNormalTriLHead.new(dist_params, 2).scale.to_dense().numpy()
  magnitude = np.mean([tolerance.mvn_log_density(z[:, m], dist_params[:, :2], tril)[1]
                       for m in range(4)], 0)
  tolerance.assert_close(f(dist_params, z).numpy(), eager.numpy(), dtype=np.float32,
                         ulps=2 * (2 * 2 + 4 + 4 + 1), scale=magnitude)


def _q_tilde_numeric(loc, cov, y, min_variance=1e-3):
  """int N(y; mu, softplus(rho) + c) N([mu, rho]; loc, cov) dmu drho, by 2-D quadrature."""
  v = stats.multivariate_normal(loc, cov)
  sd = np.sqrt(np.diag(cov))

  def integrand(mu, rho):
    return stats.norm.pdf(y, mu, np.sqrt(_softplus(rho) + min_variance)) * v.pdf([mu, rho])

  value, _ = integrate.dblquad(integrand, loc[1] - 9 * sd[1], loc[1] + 9 * sd[1],
                               loc[0] - 9 * sd[0], loc[0] + 9 * sd[0], epsabs=1e-11)
  return np.log(value)


def test_predictive_log_prob_full_covariance_matches_2d_integral():
  dist = _mvn_head(batch=3, event=2, seed=4)
  y = np.array([0.3, -1.0, 2.0])
  loc = dist.loc.numpy()
  cov = dist.covariance().numpy()
  expected = [_q_tilde_numeric(loc[b], cov[b], y[b]) for b in range(3)]
  # mu is integrated in closed form, rho by Gauss-Hermite. softplus bends sharply on the
  # scale of these wide rho marginals (sd up to 2): the default 40 nodes are good to ~1e-5
  # nats (20 nodes only to ~3e-3) and
  # 80 nodes are within 1e-7 of the 2-D reference (itself checked to 1e-11 on a grid).
  got = td.losses.predictive_log_prob(dist, FAMILY, y, num_points=80).numpy()
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
  got40 = td.losses.predictive_log_prob(dist, FAMILY, y).numpy()
  np.testing.assert_allclose(got40, expected, rtol=0, atol=5e-5)


def test_predictive_log_prob_diagonal_matches_product_of_1d_integrals():
  family = td.families.HeteroscedasticNormal(event_size=2)
  params = np.random.default_rng(5).normal(size=(2, 8))
  dist = td.heads.NormalHead.new(params, 4, min_scale=0.05)
  y = np.array([[0.1, -0.5], [1.0, 0.2]])
  loc, sd = dist.mean().numpy(), dist.stddev().numpy()
  expected, integration_error = [], 0.
  for b in range(2):
    total = 0.0
    for e in range(2):
      def integrand(rho, b=b, e=e):
        var = sd[b, e] ** 2 + _softplus(rho) + 1e-3   # mu integrated in closed form
        return stats.norm.pdf(y[b, e], loc[b, e], np.sqrt(var)) * stats.norm.pdf(
            rho, loc[b, 2 + e], sd[b, 2 + e])
      value, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-13)
      total += np.log(value)
      integration_error += 1e-13 / value          # SciPy's epsabs, carried by the log
    expected.append(total)
  got = td.losses.predictive_log_prob(dist, family, y, num_points=40).numpy()
  # Not only rounding: each log integral of the reference is within epsabs / value. The
  # 40 Gauss-Hermite nodes converge here (measured: 4e-16 from SciPy); their float64 sum
  # of 40 positive terms and the log, 40 + 8 eps per event (2), relative to 1.
  np.testing.assert_allclose(got, expected, rtol=0, atol=integration_error + tolerance.atol(
      dtype=np.float64, ulps=2 * (40 + 8), scale=1.))


def test_predictive_log_prob_monte_carlo_for_full_covariance_event_2():
  family = td.families.HeteroscedasticNormal(event_size=2)
  dist = _mvn_head(batch=2, event=4, seed=6)
  y = np.array([[0.1, -0.5], [1.0, 0.2]])
  # Reference: plain Monte Carlo over all of z with 400k draws (NumPy).
  rng = np.random.default_rng(7)
  loc, tril = dist.loc.numpy(), dist.scale.to_dense().numpy()
  expected = []
  for b in range(2):
    z = loc[b] + rng.normal(size=(400_000, 4)) @ tril[b].T
    dens = stats.norm.pdf(y[b], z[:, :2], np.sqrt(_softplus(z[:, 2:]) + 1e-3)).prod(-1)
    expected.append(np.log(dens.mean()))
  got = td.losses.predictive_log_prob(dist, family, y, num_samples=20_000, seed=3).numpy()
  # Both are Monte Carlo estimates; the Rao-Blackwellised one (mu integrated exactly) has
  # a relative standard error well under 1% with 20k draws: 0.02 nats is ~3 sigma.
  np.testing.assert_allclose(got, expected, atol=0.02)


def test_mixture_cross_entropy_matches_numeric_integral():
  rng = np.random.default_rng(8)
  z = rng.normal(size=(3, 4, 2))
  params = rng.normal(size=(3, 2))
  dist = td.heads.NormalPredictiveHead.new(params, 1, min_scale=1e-3)
  mu_s, sd_s = dist.mean().numpy()[:, 0], dist.stddev().numpy()[:, 0]
  expected = []
  for b in range(3):
    mus, sds = z[b, :, 0], np.sqrt(_softplus(z[b, :, 1]) + 1e-3)

    def integrand(y, b=b, mus=mus, sds=sds):
      p = np.mean(stats.norm.pdf(y, mus, sds))
      return -p * stats.norm.logpdf(y, mu_s[b], sd_s[b])

    value, _ = integrate.quad(integrand, -60, 60, limit=200, epsabs=1e-12)
    expected.append(value)
  got = td.losses.mixture_cross_entropy(z, dist, FAMILY).numpy()
  # The reference integral is within its epsabs, 1e-12; the closed form's float64 rounding
  # (M = 4 members' moments, a log and a quotient: M + 10 eps) is relative to its terms,
  # |cross-entropy| + |log sd| (measured: within 4e-16 relative).
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 + tolerance.atol(
      dtype=np.float64, ulps=4 + 10, scale=np.max(np.abs(expected) + np.abs(np.log(sd_s)))))


def test_keras_losses_reduce_to_the_batch_mean_and_add_the_labelled_term():
  dist = _mvn_head(batch=4, event=2, seed=9, dtype=np.float32)
  z = np.random.default_rng(10).normal(size=(4, 3, 2)).astype(np.float32)
  y = np.random.default_rng(11).normal(size=(4,)).astype(np.float32)
  per_example = td.losses.ensemble_nll(z, dist).numpy()
  # The same per-example values, then a mean over the batch of 4 on either side (float32
  # in TF and in NumPy): 2 (4 + 1) eps of mean |terms|.
  mean_bound = dict(dtype=np.float32, ulps=2 * (4 + 1))
  tolerance.assert_close(td.losses.EnsembleNLL()(z, dist).numpy(), per_example.mean(),
                         scale=np.abs(per_example).mean(), **mean_bound)
  loss = td.losses.EnsembleNLL(FAMILY, label_weight=0.5)
  label_term = 0.5 * td.losses.predictive_log_prob(dist, FAMILY, y).numpy()
  expected = per_example - label_term
  # + one product and one sum per example, relative to both terms.
  tolerance.assert_close(loss({"ensemble": z, "label": y}, dist).numpy(), expected.mean(),
                         dtype=np.float32, ulps=2 * (4 + 3),
                         scale=np.mean(np.abs(per_example) + np.abs(label_term)))
  # Without labels the labelled term is absent.
  tolerance.assert_close(loss(z, dist).numpy(), per_example.mean(),
                         scale=np.abs(per_example).mean(), **mean_bound)


@pytest.mark.parametrize("loss", [
    td.losses.EnsembleNLL(),
    td.losses.EnsembleNLL(FAMILY, label_weight=0.3, num_quadrature_points=10),
    td.losses.MixtureKL(td.families.HeteroscedasticNormal(2, 0.01)),
])
def test_loss_config_round_trip(loss):
  config = loss.get_config()
  again = type(loss).from_config(config)
  assert again.get_config() == config
  restored = keras.losses.deserialize(keras.losses.serialize(loss))
  assert type(restored) is type(loss) and restored.get_config() == config


def test_shape_and_pairing_errors():
  dist = _mvn_head(batch=4, event=2, dtype=np.float32)
  with pytest.raises(ValueError, match=r"\[batch, members, params\]"):
    td.losses.ensemble_nll(np.zeros([4, 2], np.float32), dist)
  with pytest.raises(ValueError, match=r"3 params per member"):
    td.losses.ensemble_nll(np.zeros([4, 5, 3], np.float32), dist)
  family2 = td.families.HeteroscedasticNormal(event_size=2)
  with pytest.raises(ValueError, match="params"):
    td.losses.EnsembleNLL(family2)(np.zeros([4, 5, 2], np.float32), dist)
  with pytest.raises(ValueError, match="over y"):
    td.losses.mixture_cross_entropy(np.zeros([4, 5, 2]), dist, FAMILY)
  with pytest.raises(ValueError, match="family"):
    td.losses.EnsembleNLL(label_weight=1.0)
  with pytest.raises(ValueError, match="ensemble"):
    td.losses.EnsembleNLL()({"z": np.zeros([4, 5, 2])}, dist)


# ---------------------------------------------------------------------------------------
# Classification: EnD^2, proxy Dirichlet, soft targets, Gaussian over logits
# ---------------------------------------------------------------------------------------

from scipy import special  # noqa: E402


def _dirichlet_student(batch=3, classes=4, seed=0, dtype=np.float64):
  params = np.random.default_rng(seed).normal(size=(batch, classes)).astype(dtype)
  return td.heads.DirichletHead.new(params, classes, min_scale=1e-3)


def _heated(logits, t, eps):
  p = special.softmax(logits / t, axis=-1)
  return (1 - eps) * p + eps / logits.shape[-1]


def _at_least_1(v):
  return np.maximum(np.abs(v), 1.)


def _dirichlet_log_density_scale(alpha, p):
  """What the rounding of log Dir(p; alpha) is relative to, per row ([..., K] -> [...]).

  ```none
  log Dir(p; alpha) = lgamma(alpha_0) - sum_k lgamma(alpha_k) + sum_k (alpha_k - 1) log p_k
  ```
  lgamma within 3 eps of max(|lgamma|, 1) (tolerance.FUNCTION_ULPS); p itself (a heated
  softmax) within K + 5 eps, so log p within K + 7 eps absolute; 2 K + 1 terms summed.
  Within (3 K + 12) eps of: sum of max(|lgamma|, 1) + sum_k |alpha_k - 1| (|log p_k| + 1).
  """
  return (_at_least_1(special.gammaln(alpha.sum(-1))) + _at_least_1(special.gammaln(alpha)).sum(-1)
          + (np.abs(alpha - 1) * (np.abs(np.log(p)) + 1)).sum(-1))


def _dirichlet_kl_scale(a, b):
  """What the rounding of KL(Dir(a) || Dir(b)) is relative to, per row ([..., K] -> [...]).

  Its terms (_dirichlet_kl_numpy): four lgammas (3 eps of max(|f|, 1)) and
  sum_k (a_k - b_k)(digamma(a_k) - digamma(a_0)) (digamma 8 eps of max(|f|, 1); a - b one
  rounding of |a| + |b|); 2 K + 4 terms summed. Within (2 K + 15) eps of this.
  """
  a0, b0 = a.sum(-1), b.sum(-1)
  return (_at_least_1(special.gammaln(a0)) + _at_least_1(special.gammaln(a)).sum(-1)
          + _at_least_1(special.gammaln(b0)) + _at_least_1(special.gammaln(b)).sum(-1)
          + ((np.abs(a - b) + np.abs(a) + np.abs(b))
             * (_at_least_1(special.digamma(a)) + _at_least_1(special.digamma(a0))[..., None])
             ).sum(-1))


def _kl_scale(p, log_p, log_q, k):
  """What the rounding of sum_k p_k (log p_k - log q_k) is relative to ([..., K] -> [...]).

  Each log-softmax is within eps (|log| + 2 log K + 2) (see test_properties), weighted by
  p and summed with the K terms: a KL averaged over m draws is within (K + m + 8) eps of
  sum_k p_k (|log p_k| + |log q_k| + 4 log K + 4), its softmax-weighted |terms|.
  """
  return (p * (np.abs(log_p) + np.abs(log_q) + 4 * np.log(k) + 4)).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_dirichlet_nll_matches_scipy(temperature):
  dist = _dirichlet_student()
  logits = np.random.default_rng(1).normal(scale=2.0, size=(3, 5, 4))   # [batch, M, K]
  eps = 1e-3
  alpha = dist.concentration.numpy() ** (1.0 / temperature)   # exp(s / T) (+ floor)
  p = _heated(logits, temperature, eps)
  expected = [-temperature ** 2 * np.mean([stats.dirichlet.logpdf(p[b, m], alpha[b])
                                           for m in range(5)]) for b in range(3)]
  got = td.losses.dirichlet_nll(logits, dist, temperature=temperature, smoothing=eps)
  # float64 Dirichlet log densities (T^2 times their bound, _dirichlet_log_density_scale)
  # averaged over M = 5 members (M + 1 more); alpha = exp(s / T) differs from the
  # reference's concentration ** (1 / T) by |log alpha| + 4 eps relative, which enters
  # through d/d alpha = digamma + log p: 2 (|log alpha| + 4) more of alpha (|digamma|
  # + |log p|) (both sides, rounded up).
  log_alpha = np.abs(np.log(alpha))[:, None]
  sensitivity = ((log_alpha + 4) * alpha[:, None] * (
      _at_least_1(special.digamma(alpha))[:, None] + np.abs(np.log(p)))).sum(-1)
  scale = temperature ** 2 * (_dirichlet_log_density_scale(alpha[:, None], p)
                              + sensitivity).mean(1)
  tolerance.assert_close(got.numpy(), expected, dtype=np.float64, ulps=3 * 4 + 12 + 5 + 1,
                         scale=scale)


def test_dirichlet_nll_float32_with_float64_compute_and_extreme_logits():
  dist = td.heads.DirichletHead.new(np.array([[1e4, -1e4, 0.0]], np.float32), 3)
  logits = np.array([[[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]], np.float32)
  for compute_dtype in (None, tf.float64):
    loss = td.losses.dirichlet_nll(logits, dist, smoothing=1e-4, compute_dtype=compute_dtype)
    assert loss.dtype == tf.float32 and np.all(np.isfinite(loss.numpy()))
  # Probabilities of exactly 0 without smoothing: the loss is +inf only if the student
  # puts alpha > 1 there; the gradient through the student stays finite.
  params = tf.Variable([[0.0, 0.0, 0.0]])
  with tf.GradientTape() as tape:
    loss = td.losses.dirichlet_nll(logits, td.heads.DirichletHead.new(params, 3))
  grad = tape.gradient(loss, params)
  assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(grad.numpy()))


def test_dirichlet_nll_reference_class_logits_give_the_same_loss():
  dist = _dirichlet_student()
  logits = np.random.default_rng(2).normal(size=(3, 5, 4))
  family = td.families.CategoricalLogits(4, reference_class=True)
  full = td.losses.dirichlet_nll(logits, dist)
  centred = td.losses.dirichlet_nll(family.params(logits), dist, family=family)
  # Centring rounds each logit by eps 2 max|l|, which moves log p by that; the rest is
  # the same Dirichlet log density computed twice (_dirichlet_log_density_scale each),
  # averaged over M = 5.
  alpha = dist.concentration.numpy()[:, None]
  p = special.softmax(logits, -1)
  scale = (_dirichlet_log_density_scale(alpha, p)
           + (np.abs(alpha - 1) * 2 * np.abs(logits).max()).sum(-1)).mean(1)
  tolerance.assert_close(centred.numpy(), full.numpy(), dtype=np.float64,
                         ulps=2 * (3 * 4 + 12 + 5 + 1), scale=scale)
  with pytest.raises(ValueError, match="over 4 classes"):
    td.losses.dirichlet_nll(logits[..., :3], dist)
  with pytest.raises(ValueError, match="family has 5 classes"):
    td.losses.dirichlet_nll(logits, dist, family=td.families.CategoricalLogits(5))
  with pytest.raises(TypeError, match="DirichletHead"):
    td.losses.dirichlet_nll(logits, td.heads.NormalHead.new(np.zeros((3, 8)), 4))


def _dirichlet_kl_numpy(a, b):
  a0, b0 = a.sum(-1), b.sum(-1)
  return (special.gammaln(a0) - special.gammaln(a).sum(-1) - special.gammaln(b0)
          + special.gammaln(b).sum(-1)
          + ((a - b) * (special.digamma(a) - special.digamma(a0)[..., None])).sum(-1))


def test_proxy_dirichlet_target_and_kl_match_numpy():
  logits = np.random.default_rng(4).normal(size=(3, 6, 4))
  p = _heated(logits, 1.0, 1e-4)
  p_bar = p.mean(1)
  mkl = np.mean([np.sum(p_bar * (np.log(p_bar) - np.log(p[:, m])), -1) for m in range(6)],
                axis=0)
  beta = p_bar * (3.0 / (2.0 * mkl + 1e-8))[:, None] + 1.0
  got = td.losses.proxy_dirichlet_target(logits, 4, compute_dtype=tf.float64)
  # float64 MKL: a KL of K = 4 classes averaged over M = 6 members, on either side within
  # (K + M + 8) eps of _kl_scale; beta - 1 carries its relative error (1 / MKL), + 3 eps.
  mkl_scale = np.mean([_kl_scale(p_bar, np.log(p_bar), np.log(p[:, m]), 4) for m in range(6)],
                      axis=0)
  tolerance.assert_close(got.numpy(), beta, dtype=np.float64, ulps=2 * (4 + 6 + 8) + 3,
                         scale=(beta - 1) * (mkl_scale / mkl)[:, None] + beta)
  beta = got.numpy()    # the KLs below against NumPy at the loss's own target
  dist = _dirichlet_student()
  alpha = dist.concentration.numpy()
  # KL(Dir || Dir) in float64 on either side: (2 K + 15) eps of _dirichlet_kl_scale.
  kl_bound = dict(dtype=np.float64, ulps=2 * (2 * 4 + 15), scale=_dirichlet_kl_scale(alpha,
                                                                                   beta))
  tolerance.assert_close(td.losses.proxy_dirichlet_kl(logits, dist).numpy(),
                         _dirichlet_kl_numpy(alpha, beta), **kl_bound)
  tolerance.assert_close(
      td.losses.proxy_dirichlet_kl(logits, dist, direction="forward").numpy(),
      _dirichlet_kl_numpy(beta, alpha), **kl_bound)
  # KL(Dir(beta) || Dir(beta)) = 0: the target is a fixed point of the loss. The head
  # gives back exp(log(beta - 1e-3)) + 1e-3, beta within (|log beta| + 3) eps relative: a
  # KL of second order in that, below its rounding (_dirichlet_kl_scale).
  at_target = td.heads.DirichletHead.new(np.log(beta - 1e-3), 4)
  tolerance.assert_close(td.losses.proxy_dirichlet_kl(logits, at_target).numpy(),
                         np.zeros(3), dtype=np.float64, ulps=2 * 4 + 15,
                         scale=_dirichlet_kl_scale(beta, beta))


def test_proxy_dirichlet_kl_is_exact_when_the_members_agree():
  # Identical members: MKL = 0, beta_0 = (K - 1) / 1e-8 = 3e8. In float32 lgamma of such
  # concentrations is off by thousands of nats; the loss computes in float64 and stays a
  # KL: non-negative, and equal to a NumPy float64 reference.
  logits = np.tile(np.array([[[4.0, 0.0, -2.0, 1.0]]], np.float32), (2, 5, 1))
  dist = td.heads.DirichletHead.new(np.array([[3.0, 0.5, -1.0, 1.0]] * 2, np.float32), 4)
  loss = td.losses.proxy_dirichlet_kl(logits, dist)
  assert loss.dtype == tf.float32 and np.all(loss.numpy() >= 0.0)
  beta = td.losses.proxy_dirichlet_target(logits, 4, compute_dtype=tf.float64).numpy()
  alpha = dist.concentration.numpy().astype(np.float64)
  want = _dirichlet_kl_numpy(alpha, beta)
  # Computed in float64 ((2 K + 15) eps of the KL's terms, whose lgammas of 3e8 are ~6e9
  # while the KL is ~1e3), returned in float32 (one rounding of the value).
  np.testing.assert_allclose(loss.numpy(), want, rtol=0, atol=(
      tolerance.atol(want, dtype=np.float32, ulps=1) + tolerance.atol(
          dtype=np.float64, ulps=2 * 4 + 15, scale=_dirichlet_kl_scale(alpha, beta).max())))


def _published_proxy_cost(member_logits, alpha, offset=1.0):
  """Ryabinin et al.'s `rkl_proxy_loss` written from the published formula, NumPy/SciPy."""
  p = special.softmax(member_logits, axis=-1)                      # [batch, M, K]
  p_bar = p.mean(1)
  k = p.shape[-1]
  mkl = np.mean(np.sum(p_bar[:, None] * (np.log(p_bar[:, None]) - np.log(p)), -1), axis=1)
  beta_0 = (k - 1) / (2 * mkl + 1e-8)
  a0 = alpha.sum(-1, keepdims=True)
  d = special.digamma(alpha) - special.digamma(a0)
  cross_entropy = -(p_bar * d).sum(-1)
  entropy = special.gammaln(alpha).sum(-1) - special.gammaln(a0[:, 0]) - ((alpha - 1) * d).sum(-1)
  return cross_entropy - entropy / (beta_0 + k * offset), beta_0


def _members_with_spread(scales, k=10, members=5, seed=0):
  """Member logits [len(scales), members, k]: a common base plus noise of the given sd."""
  rng = np.random.default_rng(seed)
  base = rng.normal(scale=2.0, size=(len(scales), 1, k))
  noise = rng.normal(size=(len(scales), members, k))
  return base + np.asarray(scales)[:, None, None] * noise


def test_proxy_dirichlet_cost_matches_the_published_formula():
  # Member spreads from 3 to 1e-4 give target precisions beta_0 from ~1 to ~1e7.
  scales = np.geomspace(3.0, 1e-4, 12)
  logits = _members_with_spread(scales)
  student = np.random.default_rng(1).normal(size=(12, 10))
  dist = td.heads.DirichletHead.new(student, 10, min_scale=1e-3)
  alpha = dist.concentration.numpy()
  want, beta_0 = _published_proxy_cost(logits, alpha)
  assert beta_0.min() < 3 and beta_0.max() > 1e7
  got = td.losses.proxy_dirichlet_cost(logits, dist, smoothing=0.0)
  # float64 throughout; digamma and lgamma of concentrations up to ~1e13 (the clip). The
  # cost, cross-entropy - entropy / (beta_0 + K): the cross-entropy's K = 10 terms
  # p_bar (digamma(alpha) - digamma(alpha_0)) (8 eps of max(|digamma|, 1) each); the
  # entropy's lgammas and digammas (_dirichlet_kl_scale's terms), divided by beta_0 + K,
  # whose relative error is MKL's (a KL over M = 5: (K + M + 8) eps of _kl_scale / MKL).
  # Each side within (2 K + 15) + (K + M + 8) eps of that: twice it of each other.
  p = special.softmax(logits, -1)
  p_bar = p.mean(1)
  mkl = np.mean(np.sum(p_bar[:, None] * (np.log(p_bar[:, None]) - np.log(p)), -1), axis=1)
  mkl_scale = np.mean([_kl_scale(p_bar, np.log(p_bar), np.log(p[:, m]), 10) for m in range(5)],
                      axis=0)
  cross_entropy = (p_bar * (_at_least_1(special.digamma(alpha)) + _at_least_1(
      special.digamma(alpha.sum(-1)))[:, None])).sum(-1)
  scale = cross_entropy + _dirichlet_kl_scale(alpha, alpha) / (beta_0 + 10) * (
      1 + mkl_scale / np.maximum(mkl, 1e-8))
  cost_bound = dict(dtype=np.float64, ulps=2 * ((2 * 10 + 15) + (10 + 5 + 8)), scale=scale)
  tolerance.assert_close(got.numpy(), want, **cost_bound)
  # The Keras loss with target="proxy" is this cost; "proxy_kl" the undivided KL.
  loss = td.losses.DirichletNLL(smoothing=0.0, target="proxy")
  tolerance.assert_close(loss.call(logits, dist).numpy(), want, **cost_bound)
  kl = td.losses.DirichletNLL(smoothing=0.0, target="proxy_kl").call(logits, dist)
  want_kl = td.losses.proxy_dirichlet_kl(logits, dist, smoothing=0.0).numpy()
  beta = td.losses.proxy_dirichlet_target(logits, 10, smoothing=0.0,
                                          compute_dtype=tf.float64).numpy()
  # The same float64 KL by two entries: within twice its bound of each other.
  tolerance.assert_close(kl.numpy(), want_kl, dtype=np.float64, ulps=2 * (2 * 10 + 15),
                         scale=_dirichlet_kl_scale(alpha, beta))


def test_proxy_cost_does_not_let_confident_examples_dominate():
  """The reason for the published division: per-example gradients of the undivided KL
  grow with the target's precision (here by > 1e5 from beta_0 ~ 1 to ~ 1e7); the
  published cost's stay within a small factor."""
  scales = np.array([3.0, 1e-4])
  logits = _members_with_spread(scales, seed=3)
  params = tf.Variable(np.zeros((2, 10)))

  def gradient_norms(loss_fn):
    with tf.GradientTape() as tape:
      loss = loss_fn(logits, td.heads.DirichletHead.new(params, 10))
    return np.linalg.norm(tape.gradient(loss, params).numpy(), axis=-1)

  kl = gradient_norms(lambda z, d: td.losses.proxy_dirichlet_kl(z, d))
  cost = gradient_norms(lambda z, d: td.losses.proxy_dirichlet_cost(z, d))
  assert kl[1] / kl[0] > 1e5, kl
  assert 0.1 < cost[1] / cost[0] < 10, cost


@pytest.mark.parametrize("members", [1, 4])
def test_proxy_cost_is_finite_when_the_members_agree(members):
  """MKL = 0 (identical members, or one member): beta_0 = (K - 1) / 1e-8, the entropy
  term vanishes and the cost is the expected cross-entropy to the members' mean."""
  logits = np.tile(np.array([[[4.0, 0.0, -2.0, 1.0]]]), (2, members, 1))
  dist = td.heads.DirichletHead.new(np.array([[3.0, 0.5, -1.0, 1.0]] * 2), 4)
  got = td.losses.proxy_dirichlet_cost(logits, dist, smoothing=0.0).numpy()
  assert np.all(np.isfinite(got))
  alpha = dist.concentration.numpy()
  p = special.softmax(logits[:, 0], -1)
  d = special.digamma(alpha) - special.digamma(alpha.sum(-1, keepdims=True))
  # The entropy term is divided by 3e8: below 1e-7 of the cross-entropy here.
  np.testing.assert_allclose(got, -(p * d).sum(-1), rtol=1e-6)
  loss = td.losses.DirichletNLL(target="proxy").call(logits.astype(np.float32), dist)
  assert np.all(np.isfinite(loss.numpy()))


def test_soft_target_kl_and_knowledge_distillation_match_numpy():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(3, 5, 4))
  student = rng.normal(size=(3, 4))
  labels = np.array([0, 3, 1])
  t = 3.0
  p_bar = special.softmax(logits / t, -1).mean(1)
  q = special.softmax(student / t, -1)
  kd = t ** 2 * np.sum(p_bar * (np.log(p_bar) - np.log(q)), -1)
  # float64 KLs of K = 4 classes (the mean over M = 5 members inside p_bar): each side
  # within (K + M + 8) eps of T^2 _kl_scale.
  kd_scale = t ** 2 * _kl_scale(p_bar, np.log(p_bar), np.log(q), 4)
  tolerance.assert_close(td.losses.soft_target_kl(logits, student, temperature=t).numpy(),
                         kd, dtype=np.float64, ulps=2 * (4 + 5 + 8), scale=kd_scale)
  ce = -special.log_softmax(student, -1)[np.arange(3), labels]
  loss = td.losses.KnowledgeDistillation(temperature=t, alpha=0.9, reduction="none")
  got = loss({"ensemble": logits, "label": labels}, student)
  # + the cross-entropy (a log-softmax: eps (|log q| + 2 log K + 2)) and the weighted sum.
  tolerance.assert_close(got.numpy(), 0.9 * kd + 0.1 * ce, dtype=np.float64,
                         ulps=2 * (4 + 5 + 8 + 3),
                         scale=kd_scale + np.abs(ce) + 2 * np.log(4) + 2)
  # Mixture distillation (T = 1) through a CategoricalHead student.
  family = td.families.CategoricalLogits(4)
  mixture = td.losses.MixtureKL(family, reduction="none")(
      logits, td.heads.CategoricalHead.new(student, 4))
  p1 = special.softmax(logits, -1).mean(1)
  log_q = special.log_softmax(student, -1)
  # As above at T = 1.
  tolerance.assert_close(
      mixture.numpy(), np.sum(p1 * (np.log(p1) - log_q), -1), dtype=np.float64,
      ulps=2 * (4 + 5 + 8), scale=_kl_scale(p1, np.log(p1), log_q, 4))


def test_ensemble_nll_over_centred_logits_matches_scipy():
  family = td.families.CategoricalLogits(4, reference_class=True)
  rng = np.random.default_rng(6)
  params = rng.normal(size=(3, 6))
  dist = td.heads.NormalHead.new(params, 3, min_scale=0.1)
  logits = rng.normal(size=(3, 5, 4))                       # the members give K logits
  z = logits[..., :3] - logits[..., 3:]
  scale = _softplus(params[:, 3:]) + 0.1
  expected = -np.mean(stats.norm.logpdf(z, params[:, None, :3], scale[:, None]).sum(-1), 1)
  loss = td.losses.EnsembleNLL(family, reduction="none")
  # float64 Gaussian log densities (E = 3, a softplus scale: tolerance's bound), of logits
  # centred in TF (2 max|l| eps absolute in z, so |r| 2 max|l| / scale eps in r^2 / 2),
  # averaged over M = 5 members (M + 1).
  ulps, magnitude = tolerance.normal_log_density_bound(
      z, params[:, None, :3], np.broadcast_to(scale[:, None], z.shape), 6)
  r = np.abs(z - params[:, None, :3]) / scale[:, None]
  centring = (r * 2 * np.abs(logits).max() / scale[:, None]).sum(-1)
  tolerance.assert_close(loss(logits, dist).numpy(), expected, dtype=np.float64,
                         ulps=ulps + 5 + 1, scale=(magnitude + centring).mean(1))
  with pytest.raises(ValueError, match="expects 4 logits"):
    loss(logits[..., :2], dist)
  # A pairing that makes no sense raises: EnsembleNLL over logits with a Dirichlet head.
  with pytest.raises(TypeError, match="DirichletNLL"):
    td.losses.EnsembleNLL(td.families.CategoricalLogits(4))(
        logits, td.heads.DirichletHead.new(np.zeros((3, 4)), 4))


def test_classification_label_terms():
  family = td.families.CategoricalLogits(3)
  labels = np.array([0, 2])
  logits = np.zeros((2, 4, 3))
  # Dirichlet: log q~(y) = log(alpha_y / alpha_0), closed form.
  dist = td.heads.DirichletHead.new(np.log(np.array([[2.0, 1.0, 1.0], [1.0, 1.0, 6.0]])),
                                    3, min_scale=1e-12)
  base = td.losses.DirichletNLL(family=family, reduction="none")(logits, dist)
  with_labels = td.losses.DirichletNLL(family=family, label_weight=0.5, reduction="none")(
      {"ensemble": logits, "label": labels}, dist)
  # float64: the label term, log of a quotient of exp(log a) + 1e-12 (a few eps, and
  # 1e-12 / alpha_0 from the floor), is the difference of two losses, each rounded
  # relative to its own size: 8 eps of |with_labels| + |base| + |label term|, + the floor.
  label_term = -0.5 * np.log([2.0 / 4.0, 6.0 / 8.0])
  np.testing.assert_allclose((with_labels - base).numpy(), label_term, rtol=0, atol=1e-12 + (
      tolerance.atol(dtype=np.float64, ulps=8, scale=np.max(
          np.abs(with_labels.numpy()) + np.abs(base.numpy()) + label_term))))
  # Gaussian over logits: Monte Carlo q~(y) = E[softmax(z)_y] against NumPy with 10^6
  # samples; 64 fixed samples give a relative error of a few percent at most here.
  params = np.array([[0.5, -0.2, 0.1, -1.0, -1.0, -1.0]] * 2)
  normal = td.heads.NormalHead.new(params, 3, min_scale=1e-3)
  nll_only = td.losses.EnsembleNLL(family, reduction="none")(logits, normal)
  total = td.losses.EnsembleNLL(family, label_weight=1.0, reduction="none")(
      {"ensemble": logits, "label": labels}, normal)
  scale = _softplus(params[0, 3:]) + 1e-3
  draws = params[0, :3] + scale * np.random.default_rng(0).normal(size=(10 ** 6, 3))
  reference = -np.log(special.softmax(draws, -1).mean(0))[labels]
  np.testing.assert_allclose((total - nll_only).numpy(), reference, rtol=0.05)
  with pytest.raises(ValueError, match=r"in \[0, 3\)"):
    td.losses.DirichletNLL(family=family, label_weight=1.0)(
        {"ensemble": logits, "label": np.array([0, 3])}, dist)


def test_dirichlet_nll_loss_config_and_temperature_variable():
  loss = td.losses.DirichletNLL(temperature=4.0, smoothing=1e-3,
                                family=td.families.CategoricalLogits(4), target="proxy",
                                compute_dtype="float64")
  loss.temperature.assign(2.0)
  config = loss.get_config()
  assert config["temperature"] == 2.0 and config["compute_dtype"] == "float64"
  again = keras.losses.deserialize(keras.losses.serialize(loss))
  assert isinstance(again, td.losses.DirichletNLL) and again.get_config() == config
  kd = td.losses.KnowledgeDistillation(temperature=2.0, alpha=0.9)
  assert keras.losses.deserialize(keras.losses.serialize(kd)).get_config() == kd.get_config()
  assert td.losses.DirichletNLL.from_config(
      td.losses.DirichletNLL(target="proxy_kl").get_config()).target == "proxy_kl"
  for bad in (dict(smoothing=1.0), dict(target="x"), dict(temperature=0.0),
              dict(label_weight=1.0)):
    with pytest.raises(ValueError):
      td.losses.DirichletNLL(**bad)


def _log_softmax_np(a):
  a = a - a.max(-1, keepdims=True)
  return a - np.log(np.exp(a).sum(-1, keepdims=True))


def test_member_kl_and_per_member_knowledge_distillation_match_numpy():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(5, 3, 4)) * 2
  s = rng.normal(size=(5, 3, 4)) * 2
  y = rng.integers(0, 4, size=5)
  t, a = 2.5, 0.9
  log_p, log_q = _log_softmax_np(z / t), _log_softmax_np(s / t)
  kl = t * t * (np.exp(log_p) * (log_p - log_q)).sum(-1).mean(-1)
  # float64 KLs of K = 4 classes averaged over M = 3 members: each side within
  # (K + M + 8) eps of T^2 _kl_scale.
  kl_scale = t * t * _kl_scale(np.exp(log_p), log_p, log_q, 4).mean(-1)
  kl_bound = dict(dtype=np.float64, ulps=2 * (4 + 3 + 8))
  tolerance.assert_close(td.losses.member_kl(z, s, temperature=t).numpy(), kl,
                         scale=kl_scale, **kl_bound)
  log_q1 = np.take_along_axis(_log_softmax_np(s), np.broadcast_to(y[:, None, None],
                                                                  (5, 3, 1)), axis=-1)[..., 0]
  ce = -log_q1.mean(-1)
  # Log-softmax entries (eps (|log q| + 2 log K + 2) each side) averaged over M = 3.
  ce_scale = (np.abs(log_q1) + 2 * np.log(4) + 2).mean(-1)
  tolerance.assert_close(td.losses.member_cross_entropy(y, s).numpy(), ce, dtype=np.float64,
                         ulps=2 * (1 + 3 + 1), scale=ce_scale)
  loss = td.losses.KnowledgeDistillation(temperature=t, alpha=a)
  got = loss.call({"ensemble": tf.constant(z), "label": tf.constant(y)}, tf.constant(s))
  # Their weighted sum: both bounds and 3 more roundings.
  tolerance.assert_close(got.numpy(), a * kl + (1 - a) * ce, scale=kl_scale + ce_scale,
                         dtype=np.float64, ulps=2 * (4 + 3 + 8) + 3)
  # A [batch, K] student still distils the ensemble's mean (unchanged behaviour): the
  # same KL computed twice, and one product.
  flat = loss.call(tf.constant(z), tf.constant(s[:, 0]))
  p_bar = np.exp(_log_softmax_np(z / t)).mean(1)
  flat_scale = t * t * _kl_scale(p_bar, np.log(p_bar), _log_softmax_np(s[:, 0] / t), 4)
  tolerance.assert_close(
      flat.numpy(), a * td.losses.soft_target_kl(z, s[:, 0], temperature=t).numpy(),
      scale=flat_scale, **kl_bound)


def test_member_kl_rejects_a_student_with_another_number_of_members():
  with pytest.raises(ValueError, match="one member per teacher"):
    td.losses.member_kl(np.zeros((2, 3, 4)), np.zeros((2, 2, 4)))


def test_predictive_kl_matches_numpy_for_each_student_kind():
  rng = np.random.default_rng(11)
  logits = rng.normal(size=(3, 5, 4)) * 2.0
  p_bar = special.softmax(logits, -1).mean(1)

  def kl(q):
    return np.sum(p_bar * (np.log(p_bar) - np.log(q)), -1)

  # Dirichlet: the student's predictive is alpha / alpha_0 exactly.
  log_alpha = rng.normal(size=(3, 4))
  dirichlet = td.heads.DirichletHead.new(log_alpha, 4, min_scale=1e-12)
  alpha = np.exp(log_alpha) + 1e-12          # the head's floor, too
  # float64 KLs of K = 4 (p_bar a mean over M = 5) on either side: (K + M + 8) eps of
  # _kl_scale; here the student's alpha (exp: 2 eps) over alpha_0 adds K + 3 to log q.
  q = alpha / alpha.sum(-1, keepdims=True)
  kl_bound = dict(dtype=np.float64, ulps=2 * (4 + 5 + 8 + 4 + 3))
  tolerance.assert_close(td.losses.predictive_kl(logits, dirichlet).numpy(), kl(q),
                         scale=_kl_scale(p_bar, np.log(p_bar), np.log(q), 4), **kl_bound)
  # Zero (to rounding) where the Dirichlet's mean is the ensemble's predictive: the head's
  # exp(log(50 p_bar)) is 50 p_bar within (|log 50 p_bar| + 3) eps, the rest as above.
  at_p_bar = td.heads.DirichletHead.new(np.log(p_bar * 50.0), 4, min_scale=1e-12)
  trip = np.abs(np.log(p_bar * 50.0)).max() + 3
  tolerance.assert_close(td.losses.predictive_kl(logits, at_p_bar).numpy(), np.zeros(3),
                         dtype=np.float64, ulps=2 * (4 + 5 + 8 + 4 + 3 + trip),
                         scale=_kl_scale(p_bar, np.log(p_bar), np.log(p_bar), 4))
  # Categorical: softmax of the student's logits.
  student = rng.normal(size=(3, 4))
  log_q = special.log_softmax(student, -1)
  tolerance.assert_close(
      td.losses.predictive_kl(logits, td.heads.CategoricalHead.new(student, 4)).numpy(),
      kl(np.exp(log_q)), scale=_kl_scale(p_bar, np.log(p_bar), log_q, 4), **kl_bound)
  # A Normal over centred logits: Monte Carlo mean of softmax([z, 0]); 4096 fixed draws
  # against NumPy with 10^6 (64 draws are off by up to 7% of these KLs).
  centred = td.families.CategoricalLogits(4, reference_class=True)
  params = np.concatenate([rng.normal(size=(3, 3)), np.full((3, 3), -1.0)], -1)
  normal = td.heads.NormalHead.new(params, 3, min_scale=1e-3)
  got = td.losses.predictive_kl(logits, normal, centred, num_samples=4096).numpy()
  scale = _softplus(params[:, 3:]) + 1e-3
  draws = params[:, None, :3] + scale[:, None] * np.random.default_rng(0).normal(
      size=(3, 10 ** 6, 3))
  q = special.softmax(np.concatenate([draws, np.zeros((3, 10 ** 6, 1))], -1), -1).mean(1)
  np.testing.assert_allclose(got, kl(q), rtol=0.02)
  with pytest.raises(ValueError, match="CategoricalLogits family"):
    td.losses.predictive_kl(logits, normal)


def test_predictive_weight_adds_the_term_and_round_trips():
  rng = np.random.default_rng(12)
  logits = rng.normal(size=(4, 5, 3))
  family = td.families.CategoricalLogits(3)
  dist = td.heads.DirichletHead.new(rng.normal(size=(4, 3)), 3)
  base = td.losses.DirichletNLL(temperature=2.0, family=family, reduction="none")
  with_term = td.losses.DirichletNLL(temperature=2.0, family=family, predictive_weight=0.7,
                                     reduction="none")
  # The predictive term is at T = 1 whatever the Dirichlet term's temperature. float64:
  # the difference of two losses, each rounded relative to its size (the Dirichlet term's
  # bound, _dirichlet_log_density_scale at T = 2 over M = 5, and the KL's), twice.
  with_value, base_value = with_term(logits, dist).numpy(), base(logits, dist).numpy()
  alpha = dist.concentration.numpy() ** 0.5
  p = _heated(logits, 2.0, 1e-4)                  # the loss's default smoothing is tiny
  scale = 4 * _dirichlet_log_density_scale(alpha[:, None], p).mean(1) + 2 * (
      np.abs(with_value) + np.abs(base_value))
  tolerance.assert_close(
      with_value - base_value, 0.7 * td.losses.predictive_kl(logits, dist, family).numpy(),
      dtype=np.float64, ulps=2 * (3 * 3 + 12 + 5 + 1), scale=scale)
  centred = td.families.CategoricalLogits(3, reference_class=True)
  normal = td.heads.MultivariateNormalTriLHead.new(rng.normal(size=(4, 5)), 2)
  nll = td.losses.EnsembleNLL(centred, reduction="none")(logits, normal)
  both = td.losses.EnsembleNLL(centred, predictive_weight=0.5, num_label_samples=32,
                               reduction="none")(logits, normal)
  # The same 32 draws (seed 1) in both: the difference of two float64 losses, each
  # within a few dozen eps of its own size (Gaussian log density over centred logits,
  # the KL of K = 3 over 32 draws), is the term: 2 (K + 32 + 8 + 3 E + 24) eps of
  # |both| + |nll| + |term|, E = 2.
  term = 0.5 * td.losses.predictive_kl(logits, normal, centred, 32, seed=1).numpy()
  tolerance.assert_close(
      (both - nll).numpy(), term, dtype=np.float64, ulps=2 * (3 + 32 + 8 + 6 + 24),
      scale=np.abs(both.numpy()) + np.abs(nll.numpy()) + np.abs(term) + 1)
  for loss in (td.losses.DirichletNLL(predictive_weight=0.3),
               td.losses.EnsembleNLL(centred, predictive_weight=0.3)):
    config = loss.get_config()
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.get_config() == config and again.predictive_weight == 0.3
  for bad in (-1.0, float("nan")):
    with pytest.raises(ValueError, match="predictive_weight"):
      td.losses.DirichletNLL(predictive_weight=bad)
  with pytest.raises(ValueError, match="CategoricalLogits"):
    td.losses.EnsembleNLL(predictive_weight=1.0)
