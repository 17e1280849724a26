"""Tests for tfp_distill.uncertainty: closed forms, quadrature vs Monte Carlo, ensembles."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import integrate
from scipy import stats

import tfp_distill as td
from tfp_distill import uncertainty

import tolerance

FAMILY = td.families.HeteroscedasticNormal(event_size=1, min_variance=1e-3)


def _softplus(x):
  return np.logaddexp(0.0, x)


def _student_dist(head_cls, event, batch=5, seed=0, dtype=np.float64):
  params = np.random.default_rng(seed).normal(size=(batch, head_cls.params_size(2 * event)))
  return head_cls.new(params.astype(dtype), 2 * event, min_scale=0.05)


@pytest.mark.parametrize("head_cls", [td.heads.NormalHead, td.heads.MultivariateNormalTriLHead])
def test_quadrature_aleatoric_matches_scipy_integral(head_cls):
  dist = _student_dist(head_cls, 1)
  u = td.decompose(dist, FAMILY)
  loc, sd = dist.mean().numpy(), dist.stddev().numpy()
  expected = [integrate.quad(lambda r, b=b: (_softplus(r) + 1e-3) * stats.norm.pdf(
      r, loc[b, 1], sd[b, 1]), -np.inf, np.inf, epsabs=1e-13)[0] for b in range(5)]
  # Not rounding: 40 Gauss-Hermite nodes integrate polynomials of degree 79 exactly, and
  # softplus is none; measured 4e-12 relative against SciPy's adaptive integral (epsabs
  # 1e-13), float64 rounding is 1e4 times smaller. The bound is 25x the measured error.
  np.testing.assert_allclose(u["aleatoric"].numpy(), expected, rtol=1e-10)
  # float64: the head squares its scale (or sums the squares of a Cholesky row, 1 or 2
  # terms), TFP's stddev takes the square root and the test squares it again: 4
  # roundings of the variance.
  tolerance.assert_close(u["epistemic"].numpy(), sd[:, 0] ** 2, dtype=np.float64, ulps=4,
                         scale=sd[:, 0] ** 2)
  np.testing.assert_allclose(u["prediction"].numpy(), loc[:, 0], rtol=0, atol=0)
  # One float64 addition on either side of the same two numbers.
  tolerance.assert_close(u["total"].numpy(), u["aleatoric"] + u["epistemic"],
                         dtype=np.float64, ulps=1)


@pytest.mark.parametrize("event", [1, 2])
def test_closed_form_equals_monte_carlo(event):
  family = td.families.HeteroscedasticNormal(event_size=event, min_variance=1e-3)
  dist = _student_dist(td.heads.MultivariateNormalTriLHead, event, seed=event)
  exact = td.decompose(dist, family)
  mc = td.decompose(dist, family, method="monte_carlo", num_samples=200_000, seed=4)
  # 200k samples: the relative standard error of a sample variance is sqrt(2/n) = 0.3%,
  # and of the mean of softplus(rho) (a positive variable with a CV below ~1) under 0.3%;
  # 2% is over 5 sigma.
  for key in ("aleatoric", "epistemic", "total"):
    np.testing.assert_allclose(mc[key].numpy(), exact[key].numpy(), rtol=0.02)
  sd = dist.stddev().numpy()[:, :event]
  np.testing.assert_allclose(mc["prediction"].numpy().reshape(5, -1),
                             exact["prediction"].numpy().reshape(5, -1),
                             atol=float(5 * sd.max() / np.sqrt(200_000)))
  assert exact["prediction"].shape == ((5,) if event == 1 else (5, event))
  assert exact["total"].shape == (5,)


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("num_samples", [100, 7])
def test_common_draws_are_moment_matched(num_samples, antithetic):
  """The draws every example shares have sample mean 0 and sample covariance I (S >= 2 P;
  fewer are left as drawn): their error no longer moves a mean over many examples."""
  dim = 9
  loc = tf.zeros([3, dim], tf.float64)
  seed = tf.constant([4, 2], tf.int32)
  eps = uncertainty._noise(loc, num_samples, seed, True, antithetic).numpy()[:, 0]  # pylint: disable=protected-access
  assert eps.shape == (num_samples, dim)
  if num_samples < 2 * dim:
    size = (num_samples + 1) // 2 if antithetic else num_samples
    raw = tf.random.stateless_normal([size, 1, dim], seed=seed, dtype=tf.float64).numpy()
    raw = np.concatenate([raw, -raw])[:num_samples] if antithetic else raw
    np.testing.assert_array_equal(eps, raw[:, 0])
    return
  mean = eps.mean(axis=0)
  cov = (eps - mean).T @ (eps - mean) / num_samples
  # float64: a Cholesky factor and a triangular solve of a P x P matrix, then sums over S
  # draws of |eps| <= 5: each within (S + P) eps of S max|eps|^2 (Higham eq 3.5, 4.4; the
  # factor and the solve add P eps cond(C), cond(C) < 10 for S = 100 draws in P = 9).
  scale = float(np.max(np.abs(eps)) ** 2)
  tolerance.assert_close(mean, np.zeros(dim), dtype=np.float64,
                         ulps=num_samples + 10 * dim, scale=scale)
  tolerance.assert_close(cov, np.eye(dim), dtype=np.float64, ulps=num_samples + 10 * dim,
                         scale=scale)


@pytest.mark.parametrize("event", [1, 2])
def test_monte_carlo_epistemic_of_a_normal_over_z_is_exact(event):
  """With moment-matched common draws, the Monte Carlo variance of mu, loc + L eps over
  S draws, is L L^T's mu block exactly (up to rounding): 16 draws give the closed form,
  where independent draws would be off by sqrt(2 / 16) = 35% of it."""
  family = td.families.HeteroscedasticNormal(event_size=event, min_variance=1e-3)
  dist = _student_dist(td.heads.MultivariateNormalTriLHead, event, seed=event)
  exact = td.decompose(dist, family)
  mc = td.decompose(dist, family, method="monte_carlo", num_samples=16, seed=4)
  # As the draws' moments above (S = 16, P = 2 event), then loc + L eps (P products)
  # and a variance over S draws, each relative to sum |terms| <= the draws' max|eps|^2
  # times sum |L|^2 over the mu rows.
  scale = dist.scale.to_dense().numpy()[:, :event]
  terms = 25.0 * np.sum(scale ** 2, axis=(-2, -1))
  tolerance.assert_close(mc["epistemic"].numpy(), exact["epistemic"].numpy(),
                         dtype=np.float64, ulps=2 * (16 + 10 * 2 * event), scale=terms)


def test_monte_carlo_is_a_function_of_the_seed():
  dist = _student_dist(td.heads.NormalHead, 1)
  a = td.decompose(dist, FAMILY, method="monte_carlo", num_samples=50, seed=1)
  b = td.decompose(dist, FAMILY, method="monte_carlo", num_samples=50, seed=1)
  c = td.decompose(dist, FAMILY, method="monte_carlo", num_samples=50, seed=2)
  np.testing.assert_array_equal(a["aleatoric"].numpy(), b["aleatoric"].numpy())
  assert not np.allclose(a["aleatoric"].numpy(), c["aleatoric"].numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decompose_ensemble_is_the_law_of_total_variance(dtype):
  rng = np.random.default_rng(5)
  z = rng.normal(size=(6, 10, 2)).astype(dtype)
  u = td.decompose_ensemble(z, FAMILY)
  z64 = z.astype(np.float64)              # the references in float64, of the same inputs
  mu, var = z64[..., 0], _softplus(z64[..., 1]) + 1e-3
  # Variance of the equally weighted Gaussian mixture: E[y^2] - E[y]^2.
  mixture_var = np.mean(var + mu ** 2, axis=1) - np.mean(mu, axis=1) ** 2
  # Rounding bounds in `dtype` over m = 10 members, per example:
  #   prediction, a mean of m terms: m + 1 eps of mean |mu|;
  #   aleatoric, softplus (within 5 eps, see test_properties) + the floor (the float32
  #     constant 1e-3 rounds too), a mean of m: m + 7 eps of itself (positive terms);
  #   epistemic, mean((mu - mu_bar)^2): mu_bar's m + 1 eps of mean|mu| enters each
  #     deviation, doubled by the square, then m + 3 eps of the mean of squares:
  #     2 (m + 3) eps of mean|mu| max|mu - mu_bar| + variance;
  #   total, their sum, + 1.
  m = z.shape[1]
  mean_abs = np.abs(mu).mean(1)
  spread = mean_abs * np.abs(mu - mu.mean(1, keepdims=True)).max(1) + mu.var(1)
  tolerance.assert_close(u["prediction"].numpy(), mu.mean(1), dtype=dtype, ulps=m + 1,
                         scale=mean_abs)
  tolerance.assert_close(u["aleatoric"].numpy(), var.mean(1), dtype=dtype, ulps=m + 7,
                         scale=var.mean(1))
  tolerance.assert_close(u["epistemic"].numpy(), mu.var(1), dtype=dtype, ulps=2 * (m + 3),
                         scale=spread)
  tolerance.assert_close(u["total"].numpy(), mixture_var, dtype=dtype, ulps=3 * m + 14,
                         scale=var.mean(1) + spread)
  assert u["total"].dtype == dtype


def test_mixture_student_has_only_a_total():
  params = np.random.default_rng(6).normal(size=(4, 2))
  dist = td.heads.NormalPredictiveHead.new(params, 1)
  u = td.decompose(dist, FAMILY)
  assert set(u) == {"prediction", "total"}
  # The same float64 variance, summed over one event dimension: at most 1 rounding.
  tolerance.assert_close(u["total"].numpy(), dist.variance().numpy()[:, 0],
                         dtype=np.float64, ulps=1)


def test_errors():
  with pytest.raises(ValueError, match="at least 2"):
    td.decompose_ensemble(np.zeros((3, 1, 2)), FAMILY)
  with pytest.raises(ValueError, match="params_size=2"):
    td.decompose_ensemble(np.zeros((3, 4, 3)), FAMILY)
  with pytest.raises(ValueError, match="members, params"):
    td.decompose_ensemble(np.zeros((3, 2)), FAMILY)
  dist = _student_dist(td.heads.NormalHead, 2)       # event 4: fits neither 2 nor 1
  with pytest.raises(ValueError, match="event size 4"):
    td.decompose(dist, FAMILY)
  with pytest.raises(ValueError, match="method"):
    td.decompose(_student_dist(td.heads.NormalHead, 1), FAMILY, method="exact")


# ---------------------------------------------------------------------------------------
# Classification: entropy decomposition
# ---------------------------------------------------------------------------------------

from scipy import special  # noqa: E402

CLASSES = td.families.CategoricalLogits(4)


def _entropy(p):
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _numpy_terms(p):
  """Decomposition of probability vectors p [draws, batch, K] in NumPy."""
  p_bar = p.mean(0)
  total = _entropy(p_bar)
  aleatoric = _entropy(p).mean(0)
  log_p = np.log(p)
  epkl = (p * log_p).sum(-1).mean(0) - (p_bar * log_p.mean(0)).sum(-1)
  return {"prediction": p_bar, "total": total, "aleatoric": aleatoric,
          "epistemic": total - aleatoric, "epkl": epkl}


def test_dirichlet_closed_form_matches_numpy_sampling():
  rng = np.random.default_rng(0)
  alpha = rng.uniform(0.5, 6.0, size=(5, 4))
  dist = td.heads.DirichletHead.new(np.log(alpha - 1e-3), 4, min_scale=1e-3)
  u = td.decompose(dist, CLASSES)
  draws = np.stack([rng.dirichlet(a, size=400_000) for a in alpha], axis=1)
  reference = _numpy_terms(draws)
  # 4e5 draws: the standard error of each sample mean is < 1e-3 nats here.
  for key in ("total", "aleatoric", "epistemic", "epkl"):
    np.testing.assert_allclose(u[key].numpy(), reference[key], atol=4e-3, err_msg=key)
  # float64: the head's exp(log(alpha - 1e-3)) + 1e-3 is alpha within (|log alpha| + 3)
  # eps of alpha; alpha_0 sums K = 4 of them (+ 4 eps), and a ratio adds 1: relative
  # bounds of 2 (max|log alpha| + 3) + 4 + 1 eps (numerator and denominator each carry
  # the round trip) for the prediction, and (max|log alpha| + 3) + 4 + 1 for (K - 1) / alpha_0.
  trip = np.abs(np.log(alpha)).max() + 3
  prediction = alpha / alpha.sum(-1, keepdims=True)
  tolerance.assert_close(u["prediction"].numpy(), prediction, dtype=np.float64,
                         ulps=2 * trip + 5, scale=prediction)
  tolerance.assert_close(u["epkl"].numpy(), 3.0 / alpha.sum(-1), dtype=np.float64,
                         ulps=trip + 5, scale=3.0 / alpha.sum(-1))


def test_dirichlet_closed_form_equals_library_monte_carlo():
  alpha = np.random.default_rng(1).uniform(0.3, 4.0, size=(6, 4))
  dist = td.heads.DirichletHead.new(np.log(alpha), 4, min_scale=1e-9)
  exact = td.decompose(dist, CLASSES, method="closed_form")
  mc = td.decompose(dist, CLASSES, method="monte_carlo", num_samples=100_000, seed=3)
  # Monte Carlo, not rounding: with 1e5 draws the standard errors, measured over 8 seeds,
  # are <= 1.2e-3 nats (EPKL; under 5e-4 the entropies); 1e-2 is over 8 of them.
  for key in ("total", "aleatoric", "epistemic", "epkl"):
    np.testing.assert_allclose(mc[key].numpy(), exact[key].numpy(), atol=1e-2, err_msg=key)


@pytest.mark.parametrize("reference_class", [False, True])
@pytest.mark.parametrize("antithetic", [False, True])
def test_logit_normal_monte_carlo_matches_numpy(reference_class, antithetic):
  family = td.families.CategoricalLogits(4, reference_class=reference_class)
  p_size = family.params_size
  rng = np.random.default_rng(2)
  params = rng.normal(size=(3, td.heads.MultivariateNormalTriLHead.params_size(p_size)))
  dist = td.heads.MultivariateNormalTriLHead.new(params, p_size, min_scale=0.05)
  loc, tril = dist.loc.numpy(), dist.scale.to_dense().numpy()
  eps = rng.normal(size=(200_000, 3, p_size))
  logits = loc + np.einsum("bij,sbj->sbi", tril, eps)
  if reference_class:
    logits = np.concatenate([logits, np.zeros_like(logits[..., :1])], axis=-1)
  reference = _numpy_terms(special.softmax(logits, -1))
  u = td.decompose(dist, family, num_samples=20_000, seed=5, antithetic=antithetic)
  # 2e4 library samples; standard errors measured over 8 seeds: <= 3.3e-3 nats for the
  # entropies, <= 1.2e-2 for EPKL (a mean of log-ratios with heavier tails). Bounds at
  # 6 and 4 standard errors.
  for key, atol in (("total", 2e-2), ("aleatoric", 2e-2), ("epistemic", 2e-2),
                    ("epkl", 5e-2)):
    np.testing.assert_allclose(u[key].numpy(), reference[key], atol=atol, err_msg=key)
  np.testing.assert_allclose(u["prediction"].numpy(), reference["prediction"], atol=1e-2)


def _entropy_bound(log_p, k, m):
  """(ulps, scale) of an entropy or EPKL of K classes averaged over m draws, computed once.

  A log_softmax rounds each log p by eps (|log p| + 2 log K + 2), so sum_k p log p by
  eps (max|log p| + 2 log K + 2); the sums over K classes and m draws add (K + m) eps of
  sum |terms| <= max|log p|. (K + m + 8) eps (2 + 2 log K + max|log p|) covers both (as
  test_properties' entropy bound, with the drawn max|log p| in place of its worst case).
  """
  return k + m + 8, 2. + 2. * np.log(k) + float(np.abs(log_p).max())


def test_logit_normal_point_mass_has_no_epistemic_part():
  loc = np.array([[2.0, -1.0, 0.5, 0.0]], np.float32)
  # Scales of softplus(-30) + 1e-12 ~ 1e-12: the float32 draws loc + scale eps round to loc
  # (or within 1e-11 of it), so the results differ from the point mass's by rounding only.
  dist = td.heads.NormalHead.new(np.concatenate([loc, np.full_like(loc, -30.0)], -1), 4,
                                 min_scale=1e-12)
  u = td.decompose(dist, CLASSES, num_samples=64)
  p = special.softmax(loc.astype(np.float64), -1)
  # Entropies over m = 64 draws, each within the entropy bound of H(p); the mutual
  # information, their difference, within twice that of 0.
  ulps, scale = _entropy_bound(np.log(p), 4, 64)
  bound = dict(dtype=np.float32, scale=scale)
  tolerance.assert_close(u["epistemic"].numpy(), np.zeros(1), ulps=2 * ulps, **bound)
  tolerance.assert_close(u["total"].numpy(), _entropy(p), ulps=ulps, **bound)
  tolerance.assert_close(u["aleatoric"].numpy(), _entropy(p), ulps=ulps, **bound)


@pytest.mark.parametrize("rows", [1, 16])
@pytest.mark.parametrize("dtype", [np.float32, "bfloat16"])
def test_monte_carlo_draws_are_loc_plus_cholesky_times_noise(dtype, rows):
  """loc + L eps for every sample and row, in float32 and bfloat16 (the Monte Carlo path
  of a Gaussian over logits; a bfloat16 head brings bfloat16 here)."""
  rng = np.random.default_rng(9)
  tril = np.tril(rng.normal(size=(16, 3, 3)))
  as_dtype = lambda a: tf.cast(a, dtype)
  loc, scale, eps = (as_dtype(a) for a in (rng.normal(size=(16, 3)), tril,
                                           rng.normal(size=(100, rows, 3))))
  got = uncertainty._draw(loc, scale, eps, False)   # pylint: disable=protected-access
  assert got.shape == (100, 16, 3) and got.dtype == loc.dtype
  loc, scale, eps = (tf.cast(a, tf.float64).numpy() for a in (loc, scale, eps))
  want = loc + np.einsum("bij,sbj->sbi", scale, np.broadcast_to(eps, (100, 16, 3)))
  # A dot product of P = 3 products and the addition of loc, rounded to the dtype: within
  # (P + 2) eps of |L| |eps| + |loc|, elementwise.
  terms = np.abs(loc) + np.einsum("bij,sbj->sbi", np.abs(scale),
                                  np.broadcast_to(np.abs(eps), (100, 16, 3)))
  tolerance.assert_close(tf.cast(got, tf.float64).numpy(), want, dtype=dtype, ulps=3 + 2,
                         scale=terms)


def test_ensemble_entropy_decomposition_matches_pairwise_kl():
  rng = np.random.default_rng(3)
  z = rng.normal(scale=2.0, size=(4, 6, 4))
  u = td.decompose_ensemble(z, CLASSES)
  p = special.softmax(z, -1)                                      # [batch, M, K]
  reference = _numpy_terms(np.transpose(p, [1, 0, 2]))
  pairwise = np.mean([[np.sum(p[:, i] * (np.log(p[:, i]) - np.log(p[:, j])), -1)
                       for j in range(6)] for i in range(6)], axis=(0, 1))
  # float64 entropies of K = 4 classes over M = 6 members (36 pairs for the pairwise
  # KL): each side within the entropy bound, so within twice it of each other; the
  # epistemic part, a difference of two entropies, within four times.
  ulps, scale = _entropy_bound(np.log(p), 4, 36)
  bound = dict(dtype=np.float64, scale=scale)
  tolerance.assert_close(reference["epkl"], pairwise, ulps=2 * ulps, **bound)
  for key in ("total", "aleatoric", "epistemic", "epkl"):
    tolerance.assert_close(u[key].numpy(), reference[key], err_msg=key,
                           ulps=(4 if key == "epistemic" else 2) * ulps, **bound)
  centred = td.families.CategoricalLogits(4, reference_class=True)
  tolerance.assert_close(td.decompose_ensemble(centred.params(z), centred)["total"],
                         reference["total"], ulps=2 * ulps, **bound)


def test_categorical_student_has_prediction_and_total():
  logits = np.array([[1.0, 2.0, 3.0, 4.0]])
  u = td.decompose(td.heads.CategoricalHead.new(logits, 4), CLASSES)
  assert set(u) == {"prediction", "total"}
  # One float64 entropy of K = 4 classes on either side: twice the entropy bound.
  p = special.softmax(logits, -1)
  ulps, scale = _entropy_bound(np.log(p), 4, 1)
  tolerance.assert_close(u["total"].numpy(), _entropy(p), dtype=np.float64, ulps=2 * ulps,
                         scale=scale)


def test_classification_decompose_errors():
  normal = td.heads.NormalHead.new(np.zeros((2, 8)), 4)
  with pytest.raises(ValueError, match="no closed form"):
    td.decompose(normal, CLASSES, method="quadrature")
  with pytest.raises(ValueError, match="over its 3 logits"):
    td.decompose(normal, td.families.CategoricalLogits(4, reference_class=True))
  with pytest.raises(ValueError, match="Dirichlet over 4 classes"):
    td.decompose(td.heads.DirichletHead.new(np.zeros((2, 4)), 4),
                 td.families.CategoricalLogits(5))
  with pytest.raises(ValueError, match="at least 2"):
    td.decompose_ensemble(np.zeros((2, 1, 4)), CLASSES)
